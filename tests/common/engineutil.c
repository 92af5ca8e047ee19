/* SPDX-License-Identifier: MIT */
/* tests/common/engineutil.c — see engineutil.h. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "testutil.h"

#define CHUNK (4u * TU_MIB)     /* largest single check read */

int tu_eng_setup(void **state)
{
    const char *backend = *state;
    struct pc_engine_opts eo = { .workers = 2, .io_backend = backend };
    struct pc_error err = { 0 };
    struct tu_eng *f = calloc(1, sizeof *f);

    if (!f)
        return -1;
    f->backend = backend;
    f->seed = 1;
    f->dir = tu_tmpdir("engine");
    if (!f->dir) {
        free(f);
        return -1;
    }
    if (pc_engine_create(&eo, &f->e, &err) != 0) {
        fprintf(stderr, "engine on %s: %s\n", backend, err.msg);
        tu_rmdir(f->dir);
        free(f);
        return -1;
    }
    f->refused = strcmp(pc_engine_io_backend(f->e), backend) != 0;
    *state = f;
    return 0;
}

int tu_eng_teardown(void **state)
{
    struct tu_eng *f = *state;

    pc_engine_destroy(f->e);
    while (f->vols) {
        struct tu_vol *tv = f->vols;
        f->vols = tv->next;
        pc_buf_free_any(tv->img, tv->size);
        free(tv);
    }
    tu_rmdir(f->dir);
    free(f);
    return 0;
}

struct tu_eng *tu_eng_get(void **state)
{
    struct tu_eng *f = *state;

    if (f->refused) {
        printf("backend %s refused here (engine runs %s): skipping\n", f->backend,
               pc_engine_io_backend(f->e));
        skip();
    }
    return f;
}

struct tu_vol *tu_vol_new(struct tu_eng *f, const char *name, uint64_t size)
{
    struct tu_vol *tv = calloc(1, sizeof *tv);
    struct pc_error err = { 0 };

    assert_non_null(tv);
    snprintf(tv->name, sizeof tv->name, "%s", name);
    snprintf(tv->path, sizeof tv->path, "%s/%s", f->dir, name);
    tv->size = size;
    tv->img = pc_buf_alloc_any(size);
    assert_non_null(tv->img);
    memset(tv->img, 0, size);
    tv->next = f->vols;
    f->vols = tv;
    if (pc_volume_open(f->e, name, tv->path, size, PC_VOL_CREATE, &tv->v, &err) != 0)
        fail_msg("volume %s: %s", name, err.msg);
    return tv;
}

int tu_io(struct tu_eng *f, enum pc_io_op op, struct tu_vol *tv, uint64_t off,
          uint32_t len, void *buf)
{
    return pc_io_sync(f->e, op, tv->v, off, len, buf, 0);
}

void tu_write(struct tu_eng *f, struct tu_vol *tv, uint64_t off, uint64_t len)
{
    uint8_t *buf = pc_buf_alloc_any(len);
    int r;

    assert_non_null(buf);
    assert_true(off + len <= tv->size);
    tu_fill(buf, len, f->seed++);
    /* One request unless it is longer than the engine takes. */
    for (uint64_t at = 0; at < len; at += PC_MAX_IO) {
        uint32_t n = (uint32_t)(len - at < PC_MAX_IO ? len - at : PC_MAX_IO);
        r = pc_io_sync(f->e, PC_IO_WRITE, tv->v, off + at, n, buf + at, 0);
        if (r != 0)
            fail_msg("write of %s at %llu+%u: %s", tv->name, (unsigned long long)(off + at),
                     n, strerror(-r));
    }
    memcpy(tv->img + off, buf, len);
    pc_buf_free_any(buf, len);
}

void tu_check(struct tu_eng *f, struct tu_vol *tv, uint64_t off, uint64_t len)
{
    uint8_t *buf = pc_buf_alloc_any(CHUNK);

    assert_non_null(buf);
    for (uint64_t at = off; at < off + len; at += CHUNK) {
        uint32_t n = (uint32_t)(off + len - at < CHUNK ? off + len - at : CHUNK);
        int r = pc_io_sync(f->e, PC_IO_READ, tv->v, at, n, buf, 0);
        if (r != 0)
            fail_msg("read of %s at %llu+%u: %s", tv->name, (unsigned long long)at, n,
                     strerror(-r));
        if (memcmp(buf, tv->img + at, n) != 0) {
            uint32_t i = 0;
            while (buf[i] == tv->img[at + i])
                i++;
            fail_msg("%s: byte %llu reads 0x%02x, expected 0x%02x", tv->name,
                     (unsigned long long)(at + i), buf[i], tv->img[at + i]);
        }
    }
    pc_buf_free_any(buf, CHUNK);
}

void tu_check_all(struct tu_eng *f, struct tu_vol *tv)
{
    tu_check(f, tv, 0, tv->size);
}

void tu_check_offline(struct tu_eng *f, struct tu_vol *tv)
{
    uint8_t *buf = pc_buf_alloc_any(PC_BLOCK_SIZE);

    assert_non_null(buf);
    memset(buf, 0xee, PC_BLOCK_SIZE);
    assert_int_equal(tu_io(f, PC_IO_READ, tv, 0, PC_BLOCK_SIZE, buf), -EIO);
    assert_int_equal(tu_io(f, PC_IO_WRITE, tv, 0, PC_BLOCK_SIZE, buf), -EIO);
    pc_buf_free_any(buf, PC_BLOCK_SIZE);
}

void tu_raw_read(struct tu_vol *tv, uint64_t off, size_t len, void *buf)
{
    int fd = open(tv->path, O_RDONLY | O_CLOEXEC);
    size_t done = 0;

    assert_true(fd >= 0);
    while (done < len) {
        ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
        assert_true(n > 0);
        done += (size_t)n;
    }
    close(fd);
}

bool tu_raw_equals(struct tu_vol *tv, uint64_t off, size_t len, const uint8_t *want)
{
    uint8_t *buf = malloc(len);
    bool same;

    assert_non_null(buf);
    tu_raw_read(tv, off, len, buf);
    same = memcmp(buf, want, len) == 0;
    free(buf);
    return same;
}

bool tu_raw_zero(struct tu_vol *tv, uint64_t off, size_t len)
{
    uint8_t *buf = malloc(len);
    bool zero = true;

    assert_non_null(buf);
    tu_raw_read(tv, off, len, buf);
    for (size_t i = 0; i < len && zero; i++)
        zero = buf[i] == 0;
    free(buf);
    return zero;
}

struct pc_map *tu_map(struct tu_eng *f, const char *name, struct tu_vol *src,
                      struct tu_vol *tgt, uint32_t grain, int copy_rate, int clean_rate)
{
    struct pc_map_opts o = {
        .name = name, .source = src->v, .target = tgt->v, .grain_size = grain,
        .copy_rate = copy_rate, .clean_rate = clean_rate,
    };
    struct pc_error err = { 0 };
    struct pc_map *m = NULL;

    if (pc_map_create(f->e, &o, &m, &err) != 0)
        fail_msg("create mapping %s: %s", name, err.msg);
    return m;
}

void tu_start(struct pc_map *m, struct tu_vol *src, struct tu_vol *tgt)
{
    struct pc_error err = { 0 };

    if (pc_map_start(m, &err) != 0)
        fail_msg("start: %s", err.msg);
    memcpy(tgt->img, src->img, src->size);
}

struct pc_map_info tu_info(struct pc_map *m)
{
    struct pc_map_info info;

    assert_int_equal(pc_map_info(m, &info), 0);
    return info;
}

void tu_wait(struct pc_map *m, enum pc_map_state state)
{
    int r = pc_map_wait(m, state, 30000);

    if (r != 0) {
        struct pc_map_info info = tu_info(m);
        fail_msg("mapping %s: still %s (%u%%) after 30 s waiting for %s: %s", info.name,
                 pc_map_state_name(info.state), info.progress, pc_map_state_name(state),
                 strerror(-r));
    }
}
