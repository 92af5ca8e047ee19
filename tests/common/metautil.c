/* SPDX-License-Identifier: MIT */
/* tests/common/metautil.c — see metautil.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <cmocka.h>

#include "metautil.h"
#include "io/fault.h"

#define MU_BLOCK 4096u

static void dir_of(const char *path, char *out, size_t len)
{
    snprintf(out, len, "%s", path);
    char *slash = strrchr(out, '/');
    assert_non_null(slash);
    *slash = 0;
}

void mu_meta_path(const struct tu_vol *tgt, const char *map, char *out, size_t len)
{
    char dir[4096];
    dir_of(tgt->path, dir, sizeof dir);
    assert_true((size_t)snprintf(out, len, "%s/%s.meta", dir, map) < len);
}

static struct pc_map *map_open(struct tu_eng *f, const char *name, struct tu_vol *src,
                               struct tu_vol *tgt, uint32_t grain, int copy_rate,
                               enum pc_durability d, bool recover)
{
    return mu_map_ex(f, name, src, tgt, grain, copy_rate, d, recover, false);
}

struct pc_map *mu_map_ex(struct tu_eng *f, const char *name, struct tu_vol *src,
                         struct tu_vol *tgt, uint32_t grain, int copy_rate,
                         enum pc_durability d, bool recover, bool incremental)
{
    char path[4200];
    mu_meta_path(tgt, name, path, sizeof path);
    struct pc_map_opts o = {
        .name = name, .source = src->v, .target = tgt->v, .grain_size = grain,
        .copy_rate = copy_rate, .clean_rate = -1, .meta_path = path, .durability = d,
        .recover = recover, .incremental = incremental,
    };
    struct pc_error err = { 0 };
    struct pc_map *m = NULL;

    if (pc_map_create(f->e, &o, &m, &err) != 0)
        fail_msg("%s mapping %s: %s", recover ? "recover" : "create", name, err.msg);
    return m;
}

struct pc_map *mu_map(struct tu_eng *f, const char *name, struct tu_vol *src,
                      struct tu_vol *tgt, uint32_t grain, int copy_rate,
                      enum pc_durability d)
{
    return map_open(f, name, src, tgt, grain, copy_rate, d, false);
}

struct pc_map *mu_recover(struct tu_eng *f, const char *name, struct tu_vol *src,
                          struct tu_vol *tgt, uint32_t grain, enum pc_durability d)
{
    return map_open(f, name, src, tgt, grain, -1, d, true);
}

/* Copy from → to, leaving all-zero blocks as holes (volumes are sparse). */
static void copy_sparse(const char *from, const char *to)
{
    enum { CH = 1 << 20 };
    static const char zero[MU_BLOCK];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    char *buf = malloc(CH);
    struct stat st;

    assert_true(in >= 0 && out >= 0);
    assert_non_null(buf);
    assert_int_equal(fstat(in, &st), 0);
    assert_int_equal(ftruncate(out, st.st_size), 0);
    for (off_t off = 0; off < st.st_size;) {
        ssize_t n = pread(in, buf, CH, off);
        assert_true(n > 0);
        for (ssize_t b = 0; b < n; b += MU_BLOCK) {
            size_t len = (size_t)(n - b < MU_BLOCK ? n - b : MU_BLOCK);
            if (memcmp(buf + b, zero, len) != 0)
                assert_int_equal(pwrite(out, buf + b, len, off + b), (ssize_t)len);
        }
        off += n;
    }
    free(buf);
    close(in);
    close(out);
}

void mu_snapshot(struct tu_eng *f, const char *sub)
{
    char from[4096], to[4096];
    assert_non_null(f->vols);
    dir_of(f->vols->path, from, sizeof from);
    snprintf(to, sizeof to, "%s/%s", f->dir, sub);
    assert_int_equal(mkdir(to, 0700), 0);
    DIR *d = opendir(from);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));) {
        char a[8300], b[8300];
        struct stat st;
        snprintf(a, sizeof a, "%s/%s", from, de->d_name);
        if (stat(a, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        snprintf(b, sizeof b, "%s/%s", to, de->d_name);
        copy_sparse(a, b);
    }
    closedir(d);
}

void mu_restart(struct tu_eng *f, const char *sub)
{
    struct pc_engine_opts eo = { .workers = 2, .io_backend = f->backend };
    struct pc_error err = { 0 };

    pc_engine_destroy(f->e);
    f->e = NULL;
    if (pc_engine_create(&eo, &f->e, &err) != 0)
        fail_msg("engine on %s: %s", f->backend, err.msg);
    for (struct tu_vol *tv = f->vols; tv; tv = tv->next) {
        if (sub)
            snprintf(tv->path, sizeof tv->path, "%s/%s/%s", f->dir, sub, tv->name);
        if (pc_volume_open(f->e, tv->name, tv->path, tv->size, 0, &tv->v, &err) != 0)
            fail_msg("volume %s: %s", tv->name, err.msg);
    }
}

void mu_block_read(const char *path, uint64_t blockno, void *blk)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    ssize_t n = pread(fd, blk, MU_BLOCK, (off_t)(blockno * MU_BLOCK));
    assert_true(n >= 0);
    memset((char *)blk + n, 0, MU_BLOCK - (size_t)n);
    close(fd);
}

void mu_block_write(const char *path, uint64_t blockno, const void *blk)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, blk, MU_BLOCK, (off_t)(blockno * MU_BLOCK)), MU_BLOCK);
    close(fd);
}

void mu_flip(const char *path, uint64_t off)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    unsigned char c;
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, (off_t)off), 1);
    c = (unsigned char)~c;
    assert_int_equal(pwrite(fd, &c, 1, (off_t)off), 1);
    close(fd);
}

uint64_t mu_block_sum(const void *blk, size_t sum_off)
{
    char copy[MU_BLOCK];
    memcpy(copy, blk, MU_BLOCK);
    memset(copy + sum_off, 0, 8);
    return XXH64(copy, MU_BLOCK, 0);
}

bool mu_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

uint64_t mu_wait_stable(struct pc_map *m)
{
    struct timespec ts = { 0, 100 * 1000 * 1000 };
    uint64_t last = tu_info(m).grains_split;
    for (int i = 0; i < 300; i++) {
        nanosleep(&ts, NULL);
        uint64_t now = tu_info(m).grains_split;
        if (now == last)
            return now;
        last = now;
    }
    fail_msg("mapping %s: grains_split still changing after 30 s", tu_info(m).name);
    return 0;
}

void mu_fault(const char *path, const char *rest)
{
    char rule[4400];
    snprintf(rule, sizeof rule, "%s:%s", path, rest);
    assert_int_equal(io_fault_add(rule), 0);
}
