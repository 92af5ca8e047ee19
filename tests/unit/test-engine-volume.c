/* SPDX-License-Identifier: MIT */
/* Description: volumes: open errors and edges, request validation, flush, sync and worker-side I/O. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "testutil.h"

#define BLK  PC_BLOCK_SIZE
#define MIB  ((uint64_t)TU_MIB)

static void make_file(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)size), 0);
    close(fd);
}

/* -1 when the path does not exist. */
static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* ------------------------------------------------------------------------ */

static void test_volume_open_errors(void **state)
{
    static const char long_name[] =
        "v123456789012345678901234567890123456789012345678901234567890123";   /* 64 */
    enum kind { MISSING, FILE_1M, FILE_5000, FILE_EMPTY, DIRECTORY, DEVNULL };
    static const struct {
        const char *what;
        const char *name;
        enum kind   kind;
        uint64_t    size;
        unsigned    flags;
        int         code;
        const char *want;        /* in the message, besides being non-empty */
    } rows[] = {
        { "missing file, no create",       "v1", MISSING, MIB, 0, -ENOENT, "v1" },
        { "missing file, create, size 0",  "v2", MISSING, 0, PC_VOL_CREATE, -ENOENT, "v2" },
        { "existing file, larger size",    "v3", FILE_1M, 2 * MIB, PC_VOL_CREATE, -EINVAL, "v3" },
        { "existing file, smaller size",   "v4", FILE_1M, MIB / 2, 0, -EINVAL, "v4" },
        { "size 4097",                     "v5", MISSING, 4097, PC_VOL_CREATE, -EINVAL, "v5" },
        { "size 1000",                     "v6", MISSING, 1000, PC_VOL_CREATE, -EINVAL, "v6" },
        { "existing file of 5000 bytes",   "v7", FILE_5000, 0, 0, -EINVAL, "v7" },
        { "existing empty file",           "v8", FILE_EMPTY, 0, 0, -EINVAL, "v8" },
        { "a directory",                   "v9", DIRECTORY, 0, 0, -EISDIR, "v9" },
        { "a directory, create",           "v10", DIRECTORY, MIB, PC_VOL_CREATE, -EISDIR, "v10" },
        { "a character device",            "v11", DEVNULL, 0, 0, -ENOTBLK, "v11" },
        { "empty name",                    "", MISSING, MIB, PC_VOL_CREATE, -EINVAL, "name" },
        { "name with a space",             "a b", MISSING, MIB, PC_VOL_CREATE, -EINVAL, "a b" },
        { "name with a slash",             "a/b", MISSING, MIB, PC_VOL_CREATE, -EINVAL, "a/b" },
        { "name not ASCII",                "v\xc3\xbc", MISSING, MIB, PC_VOL_CREATE, -EINVAL,
          "v\xc3\xbc" },
        { "64-character name",             long_name, MISSING, MIB, PC_VOL_CREATE, -EINVAL,
          long_name },
        { "duplicate name",                "dup", MISSING, MIB, PC_VOL_CREATE, -EEXIST, "dup" },
    };
    struct tu_eng *f = tu_eng_get(state);
    struct pc_error err = { 0 };
    char path[4096];
    unsigned bad = 0;

    snprintf(path, sizeof path, "%s/dup-first", f->dir);
    assert_int_equal(pc_volume_open(f->e, "dup", path, MIB, PC_VOL_CREATE, NULL, &err), 0);

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct pc_volume *v = NULL;
        int64_t before;
        switch (rows[i].kind) {
        case MISSING:
            snprintf(path, sizeof path, "%s/missing%zu", f->dir, i);
            break;
        case FILE_1M:
        case FILE_5000:
        case FILE_EMPTY:
            snprintf(path, sizeof path, "%s/file%zu", f->dir, i);
            make_file(path, rows[i].kind == FILE_1M ? MIB : rows[i].kind == FILE_5000 ? 5000 : 0);
            break;
        case DIRECTORY:
            snprintf(path, sizeof path, "%s/dir%zu", f->dir, i);
            assert_int_equal(mkdir(path, 0700), 0);
            break;
        case DEVNULL:
            snprintf(path, sizeof path, "/dev/null");
            break;
        }
        before = file_size(path);
        memset(&err, 0, sizeof err);
        int r = pc_volume_open(f->e, rows[i].name, path, rows[i].size, rows[i].flags, &v, &err);
        printf("%-30s -> %d \"%s\"\n", rows[i].what, r, err.msg);
        if (r != rows[i].code || err.code != r || !err.msg[0] || !strstr(err.msg, rows[i].want)) {
            print_error("%s: got %d \"%s\"; want %d naming \"%s\"\n", rows[i].what, r, err.msg,
                        rows[i].code, rows[i].want);
            bad++;
        }
        if (r == 0)
            assert_int_equal(pc_volume_close(v, NULL), 0);
        /* A refused open leaves the file system as it was. */
        if (rows[i].kind != DEVNULL && rows[i].kind != DIRECTORY && file_size(path) != before) {
            print_error("%s: %s went from %lld to %lld bytes\n", rows[i].what, path,
                        (long long)before, (long long)file_size(path));
            bad++;
        }
        if (rows[i].name[0] && strcmp(rows[i].name, "dup") != 0 &&
            pc_volume_find(f->e, rows[i].name)) {
            print_error("%s: volume %s exists after a failed open\n", rows[i].what, rows[i].name);
            bad++;
        }
    }
    if (bad)
        fail_msg("%u wrong answers", bad);
}

static void test_volume_open_edges(void **state)
{
    static const char name63[] =
        "v12345678901234567890123456789012345678901234567890123456789012";     /* 63 */
    struct tu_eng *f = tu_eng_get(state);
    struct pc_error err = { 0 };
    struct pc_volume *v;
    char path[4096];
    struct stat st;

    /* Created sparse, at the size asked, under the longest name. */
    snprintf(path, sizeof path, "%s/new", f->dir);
    assert_int_equal(pc_volume_open(f->e, name63, path, 8 * MIB, PC_VOL_CREATE, &v, &err), 0);
    assert_int_equal(pc_volume_size(v), 8 * MIB);
    assert_string_equal(pc_volume_name(v), name63);
    assert_ptr_equal(pc_volume_find(f->e, name63), v);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 8 * MIB);
    assert_true(st.st_blocks * 512 < (blkcnt_t)MIB);
    assert_int_equal(pc_volume_close(v, &err), 0);
    assert_null(pc_volume_find(f->e, name63));

    /* Existing file: size 0 takes its size; the exact size is accepted;
     * PC_VOL_CREATE on an existing file of the right size just opens it. */
    static const struct { uint64_t size; unsigned flags; } opens[] = {
        { 0, 0 }, { 8 * MIB, 0 }, { 8 * MIB, PC_VOL_CREATE }, { 0, PC_VOL_CREATE },
    };
    for (size_t i = 0; i < sizeof opens / sizeof opens[0]; i++) {
        assert_int_equal(pc_volume_open(f->e, "again", path, opens[i].size, opens[i].flags, &v,
                                        &err), 0);
        assert_int_equal(pc_volume_size(v), 8 * MIB);
        assert_int_equal(pc_volume_close(v, &err), 0);
    }

    /* The smallest volume: one block. */
    snprintf(path, sizeof path, "%s/tiny", f->dir);
    assert_int_equal(pc_volume_open(f->e, "tiny", path, BLK, PC_VOL_CREATE, &v, &err), 0);
    assert_int_equal(pc_volume_size(v), BLK);

    /* Buffered on request; direct when the file system takes O_DIRECT. */
    snprintf(path, sizeof path, "%s/buffered", f->dir);
    assert_int_equal(pc_volume_open(f->e, "buffered", path, MIB, PC_VOL_CREATE | PC_VOL_BUFFERED,
                                    &v, &err), 0);
    assert_false(pc_volume_direct(v));
    int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
    bool fs_direct = fd >= 0;
    if (fd >= 0)
        close(fd);
    snprintf(path, sizeof path, "%s/direct", f->dir);
    assert_int_equal(pc_volume_open(f->e, "direct", path, MIB, PC_VOL_CREATE, &v, &err), 0);
    assert_int_equal(pc_volume_direct(v), fs_direct);
}

/* Requests that validation must refuse, on reads and writes alike; none
 * may change a byte. */
static void test_volume_io_validation(void **state)
{
    const uint64_t size = MIB;
    static const struct {
        const char *what;
        uint64_t    off;
        uint32_t    len;
        size_t      buf_off;     /* added to an aligned buffer */
        int         code;
    } rows[] = {
        { "offset 512",                   512, BLK, 0, -EINVAL },
        { "offset 4095",                  4095, BLK, 0, -EINVAL },
        { "length 512",                   0, 512, 0, -EINVAL },
        { "length 4097",                  0, 4097, 0, -EINVAL },
        { "length 0",                     0, 0, 0, -EINVAL },
        { "buffer + 512",                 0, BLK, 512, -EINVAL },
        { "buffer + 2048",                BLK, 2 * BLK, 2048, -EINVAL },
        { "length PC_MAX_IO + 4096",      0, PC_MAX_IO + BLK, 0, -EINVAL },
        { "offset = size",                MIB, BLK, 0, -ENOSPC },
        { "last block + one more",        MIB - BLK, 2 * BLK, 0, -ENOSPC },
        { "offset 2^63",                  1ull << 63, BLK, 0, -ENOSPC },
        { "offset + length wraps",        UINT64_MAX - (BLK - 1), 2 * BLK, 0, -ENOSPC },
        { "last block",                   MIB - BLK, BLK, 0, 0 },
        { "whole volume",                 0, MIB, 0, 0 },
    };
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *tv = tu_vol_new(f, "v", size);
    uint8_t *buf = pc_buf_alloc_any(PC_MAX_IO + 2 * BLK);
    unsigned bad = 0;

    assert_non_null(buf);
    tu_write(f, tv, 0, size);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        for (int op = PC_IO_READ; op <= PC_IO_WRITE; op++) {
            uint8_t *b = buf + rows[i].buf_off;
            if (op == PC_IO_WRITE) {
                if (rows[i].code == 0)
                    memcpy(b, tv->img + rows[i].off, rows[i].len);   /* rewrite the same bytes */
                else
                    memset(b, 0xa5, PC_MAX_IO + BLK);
            }
            int r = pc_io_sync(f->e, (enum pc_io_op)op, tv->v, rows[i].off, rows[i].len, b, 0);
            if (r != rows[i].code) {
                print_error("%s %s: got %d, want %d\n", op == PC_IO_READ ? "read" : "write",
                            rows[i].what, r, rows[i].code);
                bad++;
            }
        }
    }
    assert_int_equal(pc_io_sync(f->e, (enum pc_io_op)7, tv->v, 0, BLK, buf, 0), -EINVAL);
    pc_buf_free_any(buf, PC_MAX_IO + 2 * BLK);
    tu_check_all(f, tv);
    if (bad)
        fail_msg("%u wrong answers", bad);
}

/* FLUSH succeeds (offset and length ignored); FUA writes land. */
static void test_volume_flush_fua(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *tv = tu_vol_new(f, "v", MIB);
    uint8_t *buf = pc_buf_alloc_any(64 * TU_KIB);

    assert_int_equal(pc_io_sync(f->e, PC_IO_FLUSH, tv->v, 0, 0, NULL, 0), 0);
    tu_write(f, tv, 0, 64 * TU_KIB);
    assert_int_equal(pc_io_sync(f->e, PC_IO_FLUSH, tv->v, 0, 0, NULL, 0), 0);
    assert_int_equal(pc_io_sync(f->e, PC_IO_FLUSH, tv->v, 12345, 7, NULL, 0), 0);

    tu_fill(buf, 64 * TU_KIB, 4242);
    assert_int_equal(pc_io_sync(f->e, PC_IO_WRITE, tv->v, 128 * TU_KIB, 64 * TU_KIB, buf,
                                PC_IO_FUA), 0);
    memcpy(tv->img + 128 * TU_KIB, buf, 64 * TU_KIB);
    tu_check_all(f, tv);
    assert_true(tu_raw_equals(tv, 0, MIB, tv->img));
    pc_buf_free_any(buf, 64 * TU_KIB);
}

struct syncer {
    struct tu_eng *f;
    struct tu_vol *tv;
    unsigned       id;
    pthread_t      th;
    int            err;
};

#define NSYNC   8
#define SLICE   (128u * TU_KIB)

static void *syncer_main(void *arg)
{
    struct syncer *s = arg;
    uint8_t *w = pc_buf_alloc_any(SLICE), *r = pc_buf_alloc_any(SLICE);
    uint64_t off = (uint64_t)s->id * SLICE;

    for (unsigned round = 0; round < 20 && !s->err; round++) {
        tu_fill(w, SLICE, s->id * 1000 + round);
        s->err = pc_io_sync(s->f->e, PC_IO_WRITE, s->tv->v, off, SLICE, w, 0);
        if (!s->err)
            s->err = pc_io_sync(s->f->e, PC_IO_READ, s->tv->v, off, SLICE, r, 0);
        if (!s->err && memcmp(w, r, SLICE) != 0)
            s->err = -EILSEQ;
    }
    pc_buf_free_any(w, SLICE);
    pc_buf_free_any(r, SLICE);
    return NULL;
}

/* pc_io_sync from several non-worker threads at once. */
static void test_volume_sync_threads(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *tv = tu_vol_new(f, "v", NSYNC * SLICE);
    struct syncer s[NSYNC];

    assert_null(pc_worker_self());
    for (unsigned i = 0; i < NSYNC; i++) {
        s[i] = (struct syncer){ .f = f, .tv = tv, .id = i };
        assert_int_equal(pthread_create(&s[i].th, NULL, syncer_main, &s[i]), 0);
    }
    for (unsigned i = 0; i < NSYNC; i++) {
        pthread_join(s[i].th, NULL);
        if (s[i].err)
            fail_msg("thread %u: %s", i, strerror(-s[i].err));
    }
}

/* On a worker: pc_io_sync refuses (it would wait on itself); pc_io_submit
 * completes on the same worker, never inside the submit call, validation
 * failures included. */
struct on_worker {
    struct pc_msg     msg;
    struct tu_eng    *f;
    struct tu_vol    *tv;
    struct pc_worker *w;
    struct pc_io      io[2];
    void             *buf;           /* from the worker's pool */
    uint8_t           copy[BLK];     /* what io[0] read */
    bool              in_submit;
    int               ndone;         /* worker only */
    int               sync_res;
    int               res[2];
    bool              wrong_thread, inside_submit;
    _Atomic bool      finished;
};

static void ow_done(struct pc_io *io, int res)
{
    struct on_worker *o = io->priv;
    o->res[io - o->io] = res;
    if (pc_worker_self() != o->w)
        o->wrong_thread = true;
    if (o->in_submit)
        o->inside_submit = true;
    if (++o->ndone == 2) {
        memcpy(o->copy, o->buf, BLK);
        pc_buf_free(o->w, o->buf, BLK);    /* back to the pool on its own worker */
        atomic_store(&o->finished, true);
    }
}

static void ow_run(struct pc_msg *msg)
{
    struct on_worker *o = msg->arg;
    uint8_t blk[16];

    o->w = pc_worker_self();
    o->sync_res = pc_io_sync(o->f->e, PC_IO_READ, o->tv->v, 0, sizeof blk, blk, 0);
    o->buf = pc_buf_alloc(o->w, BLK);
    o->io[0] = (struct pc_io){ .op = PC_IO_READ, .vol = o->tv->v, .off = BLK, .len = BLK,
                               .buf = o->buf, .done = ow_done, .priv = o };
    o->io[1] = (struct pc_io){ .op = PC_IO_READ, .vol = o->tv->v, .off = 512, .len = BLK,
                               .buf = o->buf, .done = ow_done, .priv = o };
    o->in_submit = true;
    pc_io_submit(o->w, &o->io[0]);
    pc_io_submit(o->w, &o->io[1]);
    o->in_submit = false;
}

static void test_volume_worker_calls(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *tv = tu_vol_new(f, "v", MIB);

    tu_write(f, tv, 0, MIB);
    for (unsigned wi = 0; wi < pc_engine_workers(f->e); wi++) {
        struct on_worker *o = calloc(1, sizeof *o);
        assert_non_null(o);
        o->f = f;
        o->tv = tv;
        o->msg.fn = ow_run;
        o->msg.arg = o;
        pc_worker_post(pc_engine_worker(f->e, wi), &o->msg);
        for (int i = 0; i < 10000 && !atomic_load(&o->finished); i++)
            usleep(1000);
        assert_true(atomic_load(&o->finished));
        assert_ptr_equal(o->w, pc_engine_worker(f->e, wi));
        assert_int_equal(pc_worker_index(o->w), wi);
        assert_int_equal(o->sync_res, -EDEADLK);
        assert_int_equal(o->res[0], 0);
        assert_int_equal(o->res[1], -EINVAL);
        assert_false(o->wrong_thread);
        assert_false(o->inside_submit);
        assert_memory_equal(o->copy, tv->img + BLK, BLK);
        free(o);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_volume_open_errors),
        TU_BOTH(test_volume_open_edges),
        TU_BOTH(test_volume_io_validation),
        TU_BOTH(test_volume_flush_fua),
        TU_BOTH(test_volume_sync_threads),
        TU_BOTH(test_volume_worker_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
