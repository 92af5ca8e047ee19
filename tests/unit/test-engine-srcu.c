/* SPDX-License-Identifier: MIT */
/*
 * Grace periods: srcu_sync() waits for every read section that began before
 * it — also when two threads synchronize at once.
 *
 * Regression: two concurrent srcu_sync() calls flipped the phase twice, and
 * the second returned at once while a section from before both was still
 * open (the first waits on phase 0, the second on phase 1).  A start's write
 * hold then did not drain writes in flight, which the model test caught as
 * a target reading data written after its point in time.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engine/internal.h"

struct reader {
    struct io_msg    msg;
    struct io_timer  timer;
    int              idx;
    _Atomic int      phase;      /* 0 before, 1 in section, 2 after */
};

static void reader_exit(struct io_timer *t)
{
    struct reader *r = t->priv;
    srcu_unlock(pc_worker_self(), r->idx);
    atomic_store(&r->phase, 2);
}

/* On a worker: enter a section and hold it for 100 ms. */
static void reader_enter(struct io_msg *msg)
{
    struct reader *r = msg->priv;
    struct pc_worker *w = pc_worker_self();
    r->idx = srcu_lock(w);
    atomic_store(&r->phase, 1);
    r->timer.fn = reader_exit;
    r->timer.priv = r;
    io_loop_timer_arm(w->loop, &r->timer, 100 * 1000 * 1000ull);
}

static void *sync_thread(void *arg)
{
    srcu_sync(arg);
    return NULL;
}

static void test_concurrent_syncs(void **state)
{
    (void)state;
    struct pc_engine_opts eo = { .workers = 2 };
    struct pc_engine *e;
    struct pc_error err;
    assert_int_equal(pc_engine_create(&eo, &e, &err), 0);

    for (int round = 0; round < 3; round++) {
        struct reader r = { 0 };
        pthread_t first;
        engine_post(&e->workers[round % 2], &r.msg, reader_enter, &r);
        while (atomic_load(&r.phase) != 1)
            usleep(100);
        /* One synchronizer is waiting for the reader ... */
        pthread_create(&first, NULL, sync_thread, e);
        usleep(10 * 1000);
        /* ... a second one, called while the reader is still in, must wait too. */
        srcu_sync(e);
        int phase = atomic_load(&r.phase);
        pthread_join(first, NULL);
        while (atomic_load(&r.phase) != 2)
            usleep(100);
        if (phase != 2)
            fail_msg("round %d: srcu_sync returned while a section begun before it was open",
                     round);
    }
    pc_engine_destroy(e);
}

/* A single synchronizer, readers on both workers. */
static void test_single_sync(void **state)
{
    (void)state;
    struct pc_engine_opts eo = { .workers = 2 };
    struct pc_engine *e;
    struct pc_error err;
    struct reader r[2] = { 0 };
    assert_int_equal(pc_engine_create(&eo, &e, &err), 0);
    for (int i = 0; i < 2; i++)
        engine_post(&e->workers[i], &r[i].msg, reader_enter, &r[i]);
    for (int i = 0; i < 2; i++)
        while (atomic_load(&r[i].phase) != 1)
            usleep(100);
    srcu_sync(e);
    for (int i = 0; i < 2; i++)
        assert_int_equal(atomic_load(&r[i].phase), 2);
    pc_engine_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_sync),
        cmocka_unit_test(test_concurrent_syncs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
