/* SPDX-License-Identifier: MIT */
/* Description: io/ one-shot polls: readable, writable, hang-up, re-arm, cancel, no depth slot, on both backends. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/loop.h"
#include "io/pool.h"

/* Set around io_loop_submit/io_loop_poll_cancel: a done() that sees it set breaks I1. */
static bool in_call;

struct tpoll {
    struct io_req req;
    int           res;
    int           calls;
    unsigned     *ndone;
    /* optional: cancel this one from our done() */
    struct io_loop *l;
    struct tpoll   *cancel;
};

static void tpoll_done(struct io_req *r, int res)
{
    struct tpoll *t = (struct tpoll *)r;

    assert_false(in_call);              /* I1 */
    t->res = res;
    t->calls++;
    (*t->ndone)++;
    if (t->cancel) {
        io_loop_poll_cancel(t->l, &t->cancel->req);
        t->cancel = NULL;
    }
}

static void tpoll_init(struct tpoll *t, unsigned *ndone, int fd, unsigned events)
{
    memset(t, 0, sizeof *t);
    t->req.op = IO_OP_POLL;
    t->req.fd = fd;
    t->req.len = events;
    t->req.done = tpoll_done;
    t->ndone = ndone;
    t->res = INT_MIN;
}

static void submit(struct io_loop *l, struct io_req *r)
{
    in_call = true;
    io_loop_submit(l, r);
    in_call = false;
}

static void cancel(struct io_loop *l, struct io_req *r)
{
    in_call = true;
    io_loop_poll_cancel(l, r);
    in_call = false;
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

/* A few turns that must not block: nothing may complete. */
static void run_idle(struct io_loop *l, unsigned *n)
{
    unsigned before = *n;

    for (int i = 0; i < 5; i++)
        assert_true(io_loop_run_once(l, false) >= 0);
    assert_int_equal(*n, before);
}

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

static void make_pipe(int p[2])
{
    assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
}

static void test_poll_readable(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    struct tpoll t;
    unsigned n = 0;
    int p[2];

    make_pipe(p);
    tpoll_init(&t, &n, p[0], POLLIN);
    submit(l, &t.req);
    run_idle(l, &n);                     /* empty pipe: not ready */
    assert_int_equal(io_loop_inflight(l), 1);
    assert_int_equal(write(p[1], "x", 1), 1);
    run_until(l, &n, 1);
    assert_int_equal(t.calls, 1);
    assert_true(t.res > 0 && (t.res & POLLIN));
    assert_int_equal(io_loop_inflight(l), 0);
    close(p[0]);
    close(p[1]);
    io_loop_destroy(l);
}

static void test_poll_writable(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    struct tpoll t;
    unsigned n = 0;
    char buf[4096];
    int p[2];

    make_pipe(p);
    tpoll_init(&t, &n, p[1], POLLOUT);
    submit(l, &t.req);                   /* empty pipe: writable at once */
    run_until(l, &n, 1);
    assert_true(t.res > 0 && (t.res & POLLOUT));

    /* Fill it: no longer writable until a reader makes room. */
    memset(buf, 'y', sizeof buf);
    while (write(p[1], buf, sizeof buf) > 0)
        ;
    assert_int_equal(errno, EAGAIN);
    tpoll_init(&t, &n, p[1], POLLOUT);
    n = 0;
    submit(l, &t.req);
    run_idle(l, &n);
    while (read(p[0], buf, sizeof buf) > 0)
        ;
    run_until(l, &n, 1);
    assert_int_equal(t.calls, 1);
    assert_true(t.res & POLLOUT);
    close(p[0]);
    close(p[1]);
    io_loop_destroy(l);
}

static void test_poll_hangup(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    struct tpoll t;
    unsigned n = 0;
    int p[2];

    make_pipe(p);
    tpoll_init(&t, &n, p[0], POLLIN);
    submit(l, &t.req);
    run_idle(l, &n);
    close(p[1]);                         /* the peer goes away */
    run_until(l, &n, 1);
    assert_true(t.res & POLLHUP);
    close(p[0]);
    io_loop_destroy(l);
}

/* One-shot: a fired poll does not fire again until it is submitted again. */
static void test_poll_rearm(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    struct tpoll t;
    unsigned n = 0;
    char c;
    int p[2];

    make_pipe(p);
    for (int round = 0; round < 50; round++) {
        tpoll_init(&t, &n, p[0], POLLIN);
        n = 0;
        submit(l, &t.req);
        run_idle(l, &n);
        assert_int_equal(write(p[1], "z", 1), 1);
        run_until(l, &n, 1);
        assert_int_equal(t.calls, 1);
        assert_true(t.res & POLLIN);
        assert_int_equal(read(p[0], &c, 1), 1);
        run_idle(l, &n);                 /* fired once, stays quiet */
        assert_int_equal(t.calls, 1);
    }
    close(p[0]);
    close(p[1]);
    io_loop_destroy(l);
}

static void test_poll_cancel(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    struct tpoll t;
    unsigned n = 0;
    int p[2];

    make_pipe(p);
    tpoll_init(&t, &n, p[0], POLLIN);
    submit(l, &t.req);
    run_idle(l, &n);
    cancel(l, &t.req);
    run_until(l, &n, 1);
    assert_int_equal(t.calls, 1);
    assert_int_equal(t.res, -ECANCELED);
    assert_int_equal(io_loop_inflight(l), 0);

    /* The fd can be polled again after a cancel. */
    tpoll_init(&t, &n, p[0], POLLIN);
    n = 0;
    submit(l, &t.req);
    assert_int_equal(write(p[1], "x", 1), 1);
    run_until(l, &n, 1);
    assert_true(t.res & POLLIN);

    /* Cancelling one that was submitted in the same turn, before the loop
     * ever ran: still exactly one completion. */
    tpoll_init(&t, &n, p[1], POLLOUT);
    n = 0;
    submit(l, &t.req);
    cancel(l, &t.req);
    run_until(l, &n, 1);
    assert_true(t.res == -ECANCELED || (t.res & POLLOUT));
    run_idle(l, &n);
    assert_int_equal(t.calls, 1);
    close(p[0]);
    close(p[1]);
    io_loop_destroy(l);
}

/* A cancel from a done() that races with the target's own firing in the
 * same turn: exactly one completion, whichever wins. */
static void test_poll_cancel_race(void **state)
{
    enum { ROUNDS = 100 };
    struct io_loop *l = open_loop(state, 4);
    int p[2], q[2];
    unsigned fired = 0, cancelled = 0;

    make_pipe(p);
    make_pipe(q);
    assert_int_equal(write(p[1], "a", 1), 1);
    assert_int_equal(write(q[1], "b", 1), 1);
    for (int i = 0; i < ROUNDS; i++) {
        struct tpoll a, b;
        unsigned n = 0;

        tpoll_init(&a, &n, p[0], POLLIN);
        tpoll_init(&b, &n, q[0], POLLIN);
        /* Whichever completes first cancels the other. */
        a.l = b.l = l;
        a.cancel = &b;
        b.cancel = &a;
        submit(l, &a.req);
        submit(l, &b.req);
        run_until(l, &n, 2);
        run_idle(l, &n);
        assert_int_equal(a.calls, 1);
        assert_int_equal(b.calls, 1);
        for (struct tpoll *t = &a; t; t = t == &a ? &b : NULL) {
            if (t->res == -ECANCELED)
                cancelled++;
            else {
                assert_true(t->res & POLLIN);
                fired++;
            }
        }
    }
    assert_int_equal(fired + cancelled, 2 * ROUNDS);
    assert_true(fired >= ROUNDS);
    assert_int_equal(io_loop_inflight(l), 0);
    close(p[0]);
    close(p[1]);
    close(q[0]);
    close(q[1]);
    io_loop_destroy(l);
}

/* Both directions of one socket at once, through a dup() for the second. */
static void test_poll_both_directions(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    struct tpoll r, w;
    unsigned n = 0;
    int sv[2], wfd;

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    wfd = dup(sv[0]);
    assert_true(wfd >= 0);
    tpoll_init(&r, &n, sv[0], POLLIN);
    tpoll_init(&w, &n, wfd, POLLOUT);
    submit(l, &r.req);
    submit(l, &w.req);
    run_until(l, &n, 1);                 /* writable at once */
    assert_int_equal(w.calls, 1);
    assert_true(w.res & POLLOUT);
    assert_int_equal(r.calls, 0);
    assert_int_equal(write(sv[1], "q", 1), 1);
    run_until(l, &n, 2);
    assert_true(r.res & POLLIN);
    close(wfd);
    close(sv[0]);
    close(sv[1]);
    io_loop_destroy(l);
}

/* Polls take no depth slot: many outstanding on a depth-2 loop, and writes
 * still go through. */
static void test_poll_no_slot(void **state)
{
    enum { NP = 64, NW = 16, BLK = 4096 };
    struct io_loop *l = open_loop(state, 2);
    struct tpoll *t = calloc(NP, sizeof *t);
    int (*p)[2] = calloc(NP, sizeof *p);
    unsigned n = 0, nw = 0;
    struct tpoll wr[NW];
    char path[] = "/tmp/pitcopy-poll-XXXXXX";
    int fd = mkstemp(path);
    char *buf = io_alloc_aligned(BLK);

    assert_true(fd >= 0);
    unlink(path);
    memset(buf, 'w', BLK);
    for (int i = 0; i < NP; i++) {
        make_pipe(p[i]);
        tpoll_init(&t[i], &n, p[i][0], POLLIN);
        submit(l, &t[i].req);
    }
    for (int i = 0; i < NW; i++) {
        memset(&wr[i], 0, sizeof wr[i]);
        wr[i].req.op = IO_OP_WRITE;
        wr[i].req.fd = fd;
        wr[i].req.buf = buf;
        wr[i].req.len = BLK;
        wr[i].req.off = (uint64_t)i * BLK;
        wr[i].req.done = tpoll_done;
        wr[i].ndone = &nw;
        submit(l, &wr[i].req);
    }
    run_until(l, &nw, NW);
    for (int i = 0; i < NW; i++)
        assert_int_equal(wr[i].res, BLK);
    assert_int_equal(n, 0);
    assert_int_equal(io_loop_inflight(l), NP);
    for (int i = 0; i < NP; i++)
        assert_int_equal(write(p[i][1], "x", 1), 1);
    run_until(l, &n, NP);
    for (int i = 0; i < NP; i++) {
        assert_int_equal(t[i].calls, 1);
        assert_true(t[i].res & POLLIN);
        close(p[i][0]);
        close(p[i][1]);
    }
    assert_int_equal(io_loop_inflight(l), 0);
    io_free_aligned(buf, BLK);
    close(fd);
    free(t);
    free(p);
    io_loop_destroy(l);
}

/* A poll on a closed fd fails through done(), not in submit (I1). */
static void test_poll_bad_fd(void **state)
{
    struct io_loop *l = open_loop(state, 4);
    struct tpoll t;
    unsigned n = 0;
    int p[2];

    make_pipe(p);
    close(p[0]);
    close(p[1]);
    tpoll_init(&t, &n, p[0], POLLIN);
    submit(l, &t.req);
    run_until(l, &n, 1);
    /* io_uring fails the request; epoll_ctl refuses the fd. */
    assert_int_equal(t.res, -EBADF);
    io_loop_destroy(l);
}

#define BOTH(f) \
    { #f "/uring", f, NULL, NULL, (void *)"uring" }, \
    { #f "/aio",   f, NULL, NULL, (void *)"aio" }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_poll_readable),
        BOTH(test_poll_writable),
        BOTH(test_poll_hangup),
        BOTH(test_poll_rearm),
        BOTH(test_poll_cancel),
        BOTH(test_poll_cancel_race),
        BOTH(test_poll_both_directions),
        BOTH(test_poll_no_slot),
        BOTH(test_poll_bad_fd),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
