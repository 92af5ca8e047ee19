/* SPDX-License-Identifier: MIT */
/* Description: io_loop_post from 4 threads runs every message once, in per-poster order (I3); io_loop_stop ends io_loop_run. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/loop.h"

#define POSTERS  4
#define PER_POSTER 100000u

struct post_test {
    struct io_loop *l;
    pthread_t       loop_thread;
    pthread_t       loop_self;      /* set by the loop thread itself */
    int             run_result;
    /* Written by the loop thread only, read by main after the join. */
    uint32_t        next_seq[POSTERS];
    unsigned        out_of_order;
    unsigned        wrong_thread;
    _Atomic unsigned received;
};

struct tmsg;

struct poster {
    struct post_test *pt;
    unsigned          id;
    struct tmsg      *msgs;         /* PER_POSTER of them */
};

/* A message with a way back to its test. */
struct tmsg {
    struct io_msg     msg;
    struct post_test *pt;
};

/* priv packs the poster id and the sequence number. */
static void msg_run(struct io_msg *m)
{
    struct post_test *pt = ((struct tmsg *)m)->pt;
    uintptr_t v = (uintptr_t)m->priv;
    unsigned id = (unsigned)(v >> 32);
    uint32_t seq = (uint32_t)v;

    if (!pthread_equal(pthread_self(), pt->loop_self))
        pt->wrong_thread++;
    if (seq != pt->next_seq[id])
        pt->out_of_order++;
    pt->next_seq[id] = seq + 1;
    atomic_fetch_add_explicit(&pt->received, 1, memory_order_release);
}

static void *poster_main(void *arg)
{
    struct poster *p = arg;
    struct tmsg *m = p->msgs;

    for (uint32_t i = 0; i < PER_POSTER; i++) {
        m[i].msg.fn = msg_run;
        m[i].msg.priv = (void *)(((uintptr_t)p->id << 32) | i);
        m[i].pt = p->pt;
        io_loop_post(p->pt->l, &m[i].msg);
    }
    return NULL;
}

static void *loop_main(void *arg)
{
    struct post_test *pt = arg;

    pt->loop_self = pthread_self();
    io_loop_set_owner(pt->l);
    pt->run_result = io_loop_run(pt->l);
    return NULL;
}

/* A loop on the backend named by *state; skip when io_uring is refused. */
static struct io_loop *open_loop(void **state)
{
    const char *name = *state;
    struct io_loop *l;

    assert_int_equal(io_loop_create(name, 64, &l), 0);
    if (strcmp(name, io_loop_backend_name(l)) != 0) {
        io_loop_destroy(l);
        skip();
    }
    return l;
}

static void test_post_order_and_once(void **state)
{
    struct post_test *pt = calloc(1, sizeof *pt);
    struct poster p[POSTERS];
    pthread_t th[POSTERS];
    uint64_t end;

    pt->l = open_loop(state);
    atomic_init(&pt->received, 0);
    /* Created here, run there: the loop thread calls io_loop_set_owner. */
    assert_int_equal(pthread_create(&pt->loop_thread, NULL, loop_main, pt), 0);
    for (unsigned i = 0; i < POSTERS; i++) {
        p[i].pt = pt;
        p[i].id = i;
        p[i].msgs = calloc(PER_POSTER, sizeof(struct tmsg));
        assert_non_null(p[i].msgs);
        assert_int_equal(pthread_create(&th[i], NULL, poster_main, &p[i]), 0);
    }
    for (unsigned i = 0; i < POSTERS; i++)
        pthread_join(th[i], NULL);

    end = io_now_ns() + 60ull * 1000000000u;
    while (atomic_load_explicit(&pt->received, memory_order_acquire) < POSTERS * PER_POSTER) {
        assert_true(io_now_ns() < end);
        usleep(1000);
    }
    io_loop_stop(pt->l);                 /* from main, not the loop thread */
    pthread_join(pt->loop_thread, NULL);

    assert_int_equal(pt->run_result, 0);
    assert_int_equal(atomic_load(&pt->received), POSTERS * PER_POSTER);
    assert_int_equal(pt->out_of_order, 0);
    assert_int_equal(pt->wrong_thread, 0);
    for (unsigned i = 0; i < POSTERS; i++) {
        assert_int_equal(pt->next_seq[i], PER_POSTER);
        free(p[i].msgs);
    }
    io_loop_destroy(pt->l);
    free(pt);
}

/* io_loop_stop from another thread ends an idle io_loop_run, and the loop
 * can then be run again and stopped again. */
static void test_post_stop_idle(void **state)
{
    struct post_test *pt = calloc(1, sizeof *pt);

    pt->l = open_loop(state);
    for (int round = 0; round < 2; round++) {
        pt->run_result = -1;
        assert_int_equal(pthread_create(&pt->loop_thread, NULL, loop_main, pt), 0);
        usleep(50 * 1000);               /* let it block */
        io_loop_stop(pt->l);
        pthread_join(pt->loop_thread, NULL);
        assert_int_equal(pt->run_result, 0);
    }
    io_loop_destroy(pt->l);
    free(pt);
}

#define BOTH(f) \
    { #f "/uring", f, NULL, NULL, (void *)"uring" }, \
    { #f "/aio",   f, NULL, NULL, (void *)"aio" }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_post_order_and_once),
        BOTH(test_post_stop_idle),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
