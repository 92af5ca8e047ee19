/* SPDX-License-Identifier: MIT */
/* Description: io/ reads, writes, DSYNC, syncs, EOF, bad fds and the pending queue, on both backends. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/loop.h"
#include "io/pool.h"

#define BLK 4096u

/* Set around io_loop_submit: a done() that sees it set breaks I1. */
static bool in_submit;

struct treq {
    struct io_req req;
    int           res;
    int           calls;
    unsigned     *ndone;
};

static void treq_done(struct io_req *r, int res)
{
    struct treq *t = (struct treq *)r;

    assert_false(in_submit);            /* I1 */
    t->res = res;
    t->calls++;
    (*t->ndone)++;
}

static void submit(struct io_loop *l, struct io_req *r)
{
    in_submit = true;
    io_loop_submit(l, r);
    in_submit = false;
}

static void treq_init(struct treq *t, unsigned *ndone, uint8_t op, int fd,
                      void *buf, uint32_t len, uint64_t off)
{
    memset(t, 0, sizeof *t);
    t->req.op = op;
    t->req.fd = fd;
    t->req.buf = buf;
    t->req.len = len;
    t->req.off = off;
    t->req.done = treq_done;
    t->ndone = ndone;
    t->res = INT_MIN;
}

/* Turn the loop until *n reaches want (failing after 30 s). */
static void run_until(struct io_loop *l, unsigned *n, unsigned want)
{
    uint64_t end = io_now_ns() + 30ull * 1000000000u;

    while (*n < want) {
        assert_true(io_loop_run_once(l, true) >= 0);
        assert_true(io_now_ns() < end);
    }
}

/* A loop on the backend named by *state; skip when io_uring is refused. */
static struct io_loop *open_loop(void **state, unsigned depth)
{
    const char *name = *state;
    struct io_loop *l;

    assert_int_equal(io_loop_create(name, depth, &l), 0);
    if (strcmp(name, io_loop_backend_name(l)) != 0) {
        io_loop_destroy(l);
        skip();                          /* io_uring refused: environment */
    }
    return l;
}

/* An unlinked temp file, O_DIRECT when the file system allows it. */
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

static void fill(unsigned char *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 12));
}

static void test_rw_pattern(void **state)
{
    enum { N = 16, CHUNK = 64 * 1024 };
    struct io_loop *l = open_loop(state, 8);
    int fd = open_tmp();
    unsigned char *w = io_alloc_aligned(N * CHUNK), *r = io_alloc_aligned(N * CHUNK);
    struct treq t[N];
    unsigned n = 0;

    fill(w, N * CHUNK, 1);
    memset(r, 0, N * CHUNK);
    for (unsigned i = 0; i < N; i++) {
        treq_init(&t[i], &n, IO_OP_WRITE, fd, w + i * CHUNK, CHUNK, (uint64_t)i * CHUNK);
        submit(l, &t[i].req);
    }
    run_until(l, &n, N);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(t[i].res, CHUNK);
        assert_int_equal(t[i].calls, 1);
    }
    n = 0;
    for (unsigned i = 0; i < N; i++) {
        treq_init(&t[i], &n, IO_OP_READ, fd, r + i * CHUNK, CHUNK, (uint64_t)i * CHUNK);
        submit(l, &t[i].req);
    }
    run_until(l, &n, N);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(t[i].res, CHUNK);
    assert_memory_equal(w, r, N * CHUNK);
    assert_int_equal(io_loop_inflight(l), 0);

    io_free_aligned(w, N * CHUNK);
    io_free_aligned(r, N * CHUNK);
    close(fd);
    io_loop_destroy(l);
}

/* 256 requests on a loop of depth 4: the pending queue feeds the slots. */
static void test_rw_many_in_flight(void **state)
{
    enum { N = 256, DEPTH = 4 };
    struct io_loop *l = open_loop(state, DEPTH);
    int fd = open_tmp();
    unsigned char *w = io_alloc_aligned(N * BLK), *r = io_alloc_aligned(N * BLK);
    struct treq *t = calloc(N, sizeof *t);
    unsigned n = 0;

    fill(w, N * BLK, 2);
    for (unsigned i = 0; i < N; i++) {
        treq_init(&t[i], &n, IO_OP_WRITE, fd, w + i * BLK, BLK, (uint64_t)i * BLK);
        submit(l, &t[i].req);
    }
    assert_int_equal(io_loop_inflight(l), N);
    run_until(l, &n, N);
    assert_int_equal(io_loop_inflight(l), 0);
    for (unsigned i = 0; i < N; i++)
        assert_int_equal(t[i].res, BLK);

    /* Reads in reverse order, so each lands where only its own offset fits. */
    n = 0;
    for (unsigned i = 0; i < N; i++) {
        unsigned k = N - 1 - i;

        treq_init(&t[i], &n, IO_OP_READ, fd, r + k * BLK, BLK, (uint64_t)k * BLK);
        submit(l, &t[i].req);
    }
    assert_int_equal(io_loop_inflight(l), N);
    run_until(l, &n, N);
    for (unsigned i = 0; i < N; i++) {
        assert_int_equal(t[i].res, BLK);
        assert_int_equal(t[i].calls, 1);
    }
    assert_memory_equal(w, r, N * BLK);

    free(t);
    io_free_aligned(w, N * BLK);
    io_free_aligned(r, N * BLK);
    close(fd);
    io_loop_destroy(l);
}

static void test_rw_dsync(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    int fd = open_tmp();
    unsigned char *w = io_alloc_aligned(4 * BLK), *r = io_alloc_aligned(4 * BLK);
    struct treq t;
    unsigned n = 0;

    fill(w, 4 * BLK, 3);
    treq_init(&t, &n, IO_OP_WRITE, fd, w, 4 * BLK, 8 * BLK);
    t.req.flags = IO_F_DSYNC;
    submit(l, &t.req);
    run_until(l, &n, 1);
    assert_int_equal(t.res, 4 * BLK);

    treq_init(&t, &n, IO_OP_READ, fd, r, 4 * BLK, 8 * BLK);
    submit(l, &t.req);
    run_until(l, &n, 2);
    assert_int_equal(t.res, 4 * BLK);
    assert_memory_equal(w, r, 4 * BLK);

    io_free_aligned(w, 4 * BLK);
    io_free_aligned(r, 4 * BLK);
    close(fd);
    io_loop_destroy(l);
}

static void test_rw_fsync_fdatasync(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    int fd = open_tmp();
    unsigned char *w = io_alloc_aligned(BLK);
    struct treq t[3];
    unsigned n = 0;

    fill(w, BLK, 4);
    treq_init(&t[0], &n, IO_OP_WRITE, fd, w, BLK, 0);
    submit(l, &t[0].req);
    run_until(l, &n, 1);
    assert_int_equal(t[0].res, BLK);

    treq_init(&t[1], &n, IO_OP_FSYNC, fd, NULL, 0, 0);
    treq_init(&t[2], &n, IO_OP_FDATASYNC, fd, NULL, 0, 0);
    submit(l, &t[1].req);
    submit(l, &t[2].req);
    run_until(l, &n, 3);
    assert_int_equal(t[1].res, 0);
    assert_int_equal(t[2].res, 0);

    io_free_aligned(w, BLK);
    close(fd);
    io_loop_destroy(l);
}

/* I2: a read that runs into end of file fails, however it starts. */
static void test_rw_eof_is_eio(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    int fd = open_tmp();
    unsigned char *w = io_alloc_aligned(2 * BLK), *r = io_alloc_aligned(4 * BLK);
    struct treq t[3];
    unsigned n = 0;

    fill(w, 2 * BLK, 5);
    treq_init(&t[0], &n, IO_OP_WRITE, fd, w, 2 * BLK, 0);
    submit(l, &t[0].req);
    run_until(l, &n, 1);
    assert_int_equal(t[0].res, 2 * BLK);

    /* Wholly past the end; and straddling it (a short read, then 0). */
    treq_init(&t[1], &n, IO_OP_READ, fd, r, BLK, 256 * BLK);
    treq_init(&t[2], &n, IO_OP_READ, fd, r, 4 * BLK, 0);
    submit(l, &t[1].req);
    submit(l, &t[2].req);
    run_until(l, &n, 3);
    assert_int_equal(t[1].res, -EIO);
    assert_int_equal(t[2].res, -EIO);
    assert_int_equal(t[2].calls, 1);

    io_free_aligned(w, 2 * BLK);
    io_free_aligned(r, 4 * BLK);
    close(fd);
    io_loop_destroy(l);
}

/* I2: a short read is resubmitted for the rest.  A pipe gives one for sure:
 * it holds half the request, and a thread writes the other half later. */
struct pipe_writer {
    int fd;
    unsigned char *half;
};

static void *pipe_write_later(void *arg)
{
    struct pipe_writer *pw = arg;

    usleep(50 * 1000);
    assert_int_equal(write(pw->fd, pw->half, BLK), BLK);
    return NULL;
}

static void test_rw_short_read_resubmitted(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    unsigned char *w = io_alloc_aligned(2 * BLK), *r = io_alloc_aligned(2 * BLK);
    struct pipe_writer pw;
    pthread_t th;
    int pfd[2];
    struct treq t;
    unsigned n = 0;

    assert_int_equal(pipe(pfd), 0);
    fill(w, 2 * BLK, 8);
    memset(r, 0, 2 * BLK);
    assert_int_equal(write(pfd[1], w, BLK), BLK);
    pw.fd = pfd[1];
    pw.half = w + BLK;
    assert_int_equal(pthread_create(&th, NULL, pipe_write_later, &pw), 0);

    treq_init(&t, &n, IO_OP_READ, pfd[0], r, 2 * BLK, 0);
    submit(l, &t.req);
    run_until(l, &n, 1);
    assert_int_equal(t.res, 2 * BLK);
    assert_int_equal(t.calls, 1);
    assert_memory_equal(w, r, 2 * BLK);

    pthread_join(th, NULL);
    close(pfd[0]);
    close(pfd[1]);
    io_free_aligned(w, 2 * BLK);
    io_free_aligned(r, 2 * BLK);
    io_loop_destroy(l);
}

/* A bad fd fails through done(), and its neighbours in the batch still run. */
static void test_rw_bad_fd(void **state)
{
    struct io_loop *l = open_loop(state, 8);
    int fd = open_tmp();
    int bad = open_tmp();
    unsigned char *w = io_alloc_aligned(2 * BLK);
    struct treq t[4];
    unsigned n = 0;

    close(bad);                          /* a number that is surely not open */
    fill(w, 2 * BLK, 6);
    treq_init(&t[0], &n, IO_OP_WRITE, fd, w, BLK, 0);
    treq_init(&t[1], &n, IO_OP_WRITE, bad, w, BLK, 0);
    treq_init(&t[2], &n, IO_OP_FSYNC, bad, NULL, 0, 0);
    treq_init(&t[3], &n, IO_OP_WRITE, fd, w + BLK, BLK, BLK);
    for (int i = 0; i < 4; i++)
        submit(l, &t[i].req);
    assert_int_equal(n, 0);
    run_until(l, &n, 4);
    assert_int_equal(t[0].res, BLK);
    assert_int_equal(t[1].res, -EBADF);
    assert_int_equal(t[2].res, -EBADF);
    assert_int_equal(t[3].res, BLK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(t[i].calls, 1);
    assert_int_equal(io_loop_inflight(l), 0);

    io_free_aligned(w, 2 * BLK);
    close(fd);
    io_loop_destroy(l);
}

/* A done() that submits again: a chain of 200 on depth 2, with invalid
 * requests mixed in; no done() ever runs inside io_loop_submit (I1). */
struct chain {
    struct treq   t;
    struct io_loop *l;
    int           fd;
    unsigned char *buf;
    unsigned      left;
    unsigned      ok, einval;
};

static void chain_done(struct io_req *r, int res)
{
    struct chain *c = (struct chain *)r;

    assert_false(in_submit);
    if (res == -EINVAL)
        c->einval++;
    else if (res == (int)BLK)
        c->ok++;
    else
        fail_msg("unexpected result %d", res);
    if (--c->left == 0)
        return;
    memset(&c->t.req, 0, sizeof c->t.req);
    c->t.req.done = chain_done;
    c->t.req.fd = c->fd;
    c->t.req.buf = c->buf;
    c->t.req.len = BLK;
    c->t.req.off = (uint64_t)(c->left % 8) * BLK;
    /* Every fifth one is an op no backend knows: it fails with -EINVAL. */
    c->t.req.op = c->left % 5 == 0 ? 200 : IO_OP_WRITE;
    submit(c->l, &c->t.req);
}

static void test_rw_done_never_in_submit(void **state)
{
    struct io_loop *l = open_loop(state, 2);
    int fd = open_tmp();
    struct chain c[3];
    uint64_t end = io_now_ns() + 30ull * 1000000000u;

    for (int i = 0; i < 3; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].l = l;
        c[i].fd = fd;
        c[i].buf = io_alloc_aligned(BLK);
        fill(c[i].buf, BLK, 7);
        c[i].left = 200;
        c[i].t.req.op = IO_OP_WRITE;
        c[i].t.req.fd = fd;
        c[i].t.req.buf = c[i].buf;
        c[i].t.req.len = BLK;
        c[i].t.req.off = (uint64_t)i * BLK;
        c[i].t.req.done = chain_done;
        submit(l, &c[i].t.req);
    }
    while (c[0].left || c[1].left || c[2].left) {
        assert_true(io_loop_run_once(l, true) >= 0);
        assert_true(io_now_ns() < end);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].ok + c[i].einval, 200);
        assert_int_equal(c[i].einval, 39);      /* left = 195, 190, …, 5 */
        io_free_aligned(c[i].buf, BLK);
    }
    assert_int_equal(io_loop_inflight(l), 0);
    close(fd);
    io_loop_destroy(l);
}

#define BOTH(f) \
    { #f "/uring", f, NULL, NULL, (void *)"uring" }, \
    { #f "/aio",   f, NULL, NULL, (void *)"aio" }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_rw_pattern),
        BOTH(test_rw_many_in_flight),
        BOTH(test_rw_dsync),
        BOTH(test_rw_fsync_fdatasync),
        BOTH(test_rw_eof_is_eio),
        BOTH(test_rw_short_read_resubmitted),
        BOTH(test_rw_bad_fd),
        BOTH(test_rw_done_never_in_submit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
