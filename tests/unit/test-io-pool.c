/* SPDX-License-Identifier: MIT */
/* Description: io/ buffer pool: alignment and size classes, reuse, heap fallback, and fixed buffers used by I/O on both backends. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/internal.h"        /* nr_fixed_buf, nr_fixed_file */
#include "io/loop.h"
#include "io/pool.h"

#define KiB 1024ul
#define MiB (1024ul * 1024)

static bool in_arena(struct io_pool *p, const void *buf, size_t len)
{
    size_t alen;
    const char *a = io_pool_arena(p, &alen);

    return a && (const char *)buf >= a && (const char *)buf + len <= a + alen;
}

/* Boundary sizes: aligned (P1), usable to the last byte, and sized by class. */
static void test_pool_boundaries(void **state)
{
    static const struct { size_t len, class_size; } sizes[] = {
        { 1,        4 * KiB },
        { 4096,     4 * KiB },
        { 4097,     8 * KiB },
        { 64 * KiB, 64 * KiB },
        { 64 * KiB + 1, 128 * KiB },
        { 1 * MiB,  1 * MiB },
        { 32 * MiB, 32 * MiB },
    };
    enum { N = sizeof sizes / sizeof sizes[0] };
    void *bufs[N][2];
    struct io_pool *p;
    size_t alen;

    (void)state;
    /* Room for two of each, 32 MiB included. */
    assert_int_equal(io_pool_create(100 * MiB, &p), 0);
    assert_non_null(io_pool_arena(p, &alen));
    assert_int_equal(alen, 100 * MiB);
    /* Keep them all until the end, so each pair is fresh from the bump. */
    for (size_t i = 0; i < N; i++) {
        char *a = io_pool_get(p, sizes[i].len);
        char *b = io_pool_get(p, sizes[i].len);

        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal((uintptr_t)a % 4096, 0);
        assert_int_equal((uintptr_t)b % 4096, 0);
        assert_true(in_arena(p, a, sizes[i].len));
        assert_true(in_arena(p, b, sizes[i].len));
        /* One class size apart. */
        assert_int_equal((size_t)(b - a), sizes[i].class_size);
        memset(a, 0xa5, sizes[i].len);
        memset(b, 0x5a, sizes[i].len);
        bufs[i][0] = a;
        bufs[i][1] = b;
    }
    for (size_t i = 0; i < N; i++) {
        io_pool_put(p, bufs[i][0], sizes[i].len);
        io_pool_put(p, bufs[i][1], sizes[i].len);
    }
    assert_null(io_pool_get(p, IO_POOL_MAX_BUF + 1));
    io_pool_destroy(p);
}

static void test_pool_reuse(void **state)
{
    struct io_pool *p;
    void *a, *b, *c;

    (void)state;
    assert_int_equal(io_pool_create(8 * MiB, &p), 0);
    a = io_pool_get(p, 64 * KiB);
    io_pool_put(p, a, 64 * KiB);
    b = io_pool_get(p, 4 * KiB);                 /* another class: not a */
    assert_ptr_not_equal(a, b);
    c = io_pool_get(p, 60 * KiB);                /* same class: a again */
    assert_ptr_equal(a, c);
    io_pool_put(p, b, 4 * KiB);
    io_pool_put(p, c, 60 * KiB);
    io_pool_destroy(p);
}

/* An exhausted arena falls back to the heap; buffers still aligned, and put
 * tells the two apart (P2). */
static void test_pool_exhaustion(void **state)
{
    struct io_pool *p, *none;
    void *a, *b, *c, *d;
    size_t alen;

    (void)state;
    assert_int_equal(io_pool_create(1, &p), 0);  /* rounds up to 2 MiB */
    io_pool_arena(p, &alen);
    assert_int_equal(alen, 2 * MiB);
    a = io_pool_get(p, 1 * MiB);
    b = io_pool_get(p, 1 * MiB);
    c = io_pool_get(p, 1 * MiB);
    assert_true(in_arena(p, a, 1 * MiB));
    assert_true(in_arena(p, b, 1 * MiB));
    assert_non_null(c);
    assert_false(in_arena(p, c, 1));
    assert_int_equal((uintptr_t)c % 4096, 0);
    memset(c, 1, 1 * MiB);
    io_pool_put(p, c, 1 * MiB);
    /* Arena buffers come back to the arena, not the heap. */
    io_pool_put(p, a, 1 * MiB);
    d = io_pool_get(p, 1 * MiB);
    assert_ptr_equal(a, d);
    io_pool_put(p, d, 1 * MiB);
    io_pool_put(p, b, 1 * MiB);
    io_pool_destroy(p);

    assert_int_equal(io_pool_create(0, &none), 0);
    assert_null(io_pool_arena(none, &alen));
    assert_int_equal(alen, 0);
    a = io_pool_get(none, 4097);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a % 4096, 0);
    memset(a, 2, 8192);                          /* class-sized (P3) */
    io_pool_put(none, a, 4097);
    io_pool_destroy(none);

    a = io_alloc_aligned(10000);
    assert_int_equal((uintptr_t)a % 4096, 0);
    memset(a, 3, 10000);
    io_free_aligned(a, 10000);
}

/* ------------------------------------------------------------------------
 * Fixed buffers, through both backends.
 */

struct treq {
    struct io_req req;
    int           res;
    unsigned     *ndone;
};

static void treq_done(struct io_req *r, int res)
{
    struct treq *t = (struct treq *)r;

    t->res = res;
    (*t->ndone)++;
}

static void do_io(struct io_loop *l, uint8_t op, int fd, void *buf, uint32_t len, uint64_t off)
{
    struct treq t;
    unsigned n = 0;

    memset(&t, 0, sizeof t);
    t.req.op = op;
    t.req.fd = fd;
    t.req.buf = buf;
    t.req.len = len;
    t.req.off = off;
    t.req.done = treq_done;
    t.ndone = &n;
    io_loop_submit(l, &t.req);
    while (n == 0)
        assert_true(io_loop_run_once(l, true) >= 0);
    assert_int_equal(t.res, (int)len);
}

static int open_tmp(void)
{
    const char *dir = getenv("TMPDIR");
    char path[PATH_MAX];
    int fd;

    if (!dir || !*dir)
        dir = "/tmp";
    snprintf(path, sizeof path, "%s/pitcopy-io-XXXXXX", dir);
    fd = mkostemp(path, O_DIRECT);
    if (fd < 0 && errno == EINVAL) {
        snprintf(path, sizeof path, "%s/pitcopy-io-XXXXXX", dir);
        fd = mkostemp(path, 0);
    }
    assert_true(fd >= 0);
    unlink(path);
    return fd;
}

static void test_pool_fixed_buffers(void **state)
{
    const char *name = *state;
    bool uring = strcmp(name, "uring") == 0;
    struct io_loop *l;
    struct io_pool *p;
    unsigned char *w, *r, *heap;
    void *arena;
    size_t alen;
    uint64_t fixed_before;
    int fd, ret;

    assert_int_equal(io_loop_create(name, 8, &l), 0);
    if (strcmp(name, io_loop_backend_name(l)) != 0) {
        io_loop_destroy(l);
        skip();
    }
    assert_int_equal(io_pool_create(4 * MiB, &p), 0);
    arena = io_pool_arena(p, &alen);
    ret = io_loop_add_buffers(l, arena, alen);
    if (ret == -ENOMEM || ret == -EPERM) {
        /* RLIMIT_MEMLOCK too small to pin 4 MiB: environment. */
        io_pool_destroy(p);
        io_loop_destroy(l);
        skip();
    }
    assert_int_equal(ret, 0);
    if (uring)
        assert_int_equal(io_loop_add_buffers(l, arena, alen), -EBUSY);

    fd = open_tmp();
    assert_int_equal(io_loop_add_file(l, fd), 0);
    w = io_pool_get(p, 256 * KiB);
    r = io_pool_get(p, 256 * KiB);
    assert_true(in_arena(p, w, 256 * KiB));
    for (size_t i = 0; i < 256 * KiB; i++)
        w[i] = (unsigned char)(i * 13 + (i >> 9));
    memset(r, 0, 256 * KiB);

    do_io(l, IO_OP_WRITE, fd, w, 256 * KiB, 0);
    do_io(l, IO_OP_READ, fd, r, 256 * KiB, 0);
    assert_memory_equal(w, r, 256 * KiB);
    assert_int_equal(l->nr_fixed_buf, uring ? 2 : 0);
    assert_int_equal(l->nr_fixed_file, uring ? 2 : 0);

    /* A buffer outside the arena takes the plain path, and works. */
    fixed_before = l->nr_fixed_buf;
    heap = io_alloc_aligned(64 * KiB);
    do_io(l, IO_OP_READ, fd, heap, 64 * KiB, 64 * KiB);
    assert_memory_equal(heap, w + 64 * KiB, 64 * KiB);
    assert_int_equal(l->nr_fixed_buf, fixed_before);
    io_free_aligned(heap, 64 * KiB);

    assert_int_equal(l->nr_fixed_file, uring ? 3 : 0);

    /* After remove_file the plain fd is used again. */
    io_loop_remove_file(l, fd);
    do_io(l, IO_OP_READ, fd, r, 4 * KiB, 0);
    assert_int_equal(l->nr_fixed_file, uring ? 3 : 0);
    assert_int_equal(l->nr_fixed_buf, fixed_before + (uring ? 1 : 0));

    /* Removed while a request on it is queued but not yet submitted: the
     * request still completes (uring submits before it empties the slot). */
    {
        struct treq t;
        unsigned n = 0;

        assert_int_equal(io_loop_add_file(l, fd), 0);
        memset(&t, 0, sizeof t);
        t.req.op = IO_OP_READ;
        t.req.fd = fd;
        t.req.buf = r;
        t.req.len = 4 * KiB;
        t.req.done = treq_done;
        t.ndone = &n;
        io_loop_submit(l, &t.req);
        io_loop_remove_file(l, fd);
        while (n == 0)
            assert_true(io_loop_run_once(l, true) >= 0);
        assert_int_equal(t.res, 4 * KiB);
        assert_int_equal(l->nr_fixed_file, uring ? 4 : 0);
    }

    io_pool_put(p, w, 256 * KiB);
    io_pool_put(p, r, 256 * KiB);
    close(fd);
    io_loop_destroy(l);
    io_pool_destroy(p);
}

#define BOTH(f) \
    { #f "/uring", f, NULL, NULL, (void *)"uring" }, \
    { #f "/aio",   f, NULL, NULL, (void *)"aio" }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_boundaries),
        cmocka_unit_test(test_pool_reuse),
        cmocka_unit_test(test_pool_exhaustion),
        BOTH(test_pool_fixed_buffers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
