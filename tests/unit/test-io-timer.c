/* SPDX-License-Identifier: MIT */
/* Description: io/ timers fire in deadline order and never early; cancel works; a timer re-armed from its callback fires again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/loop.h"

#define MS 1000000ull

struct ttimer {
    struct io_timer t;
    uint64_t        earliest;   /* the deadline it must not beat */
    uint64_t        fired_at;
    int             fired;
    int             order;
    int            *next_order;
    /* Re-arming and cancelling from the callback. */
    int             rearm_left;
    uint64_t        rearm_delay;
    struct io_loop *l;
    struct io_timer *cancel_me;
};

static void ttimer_fire(struct io_timer *t)
{
    struct ttimer *tt = (struct ttimer *)t;
    uint64_t now = io_now_ns();

    assert_false(t->armed);
    assert_true(now >= tt->earliest);           /* not early */
    tt->fired_at = now;
    tt->fired++;
    tt->order = (*tt->next_order)++;
    if (tt->cancel_me)
        io_loop_timer_cancel(tt->l, tt->cancel_me);
    if (tt->rearm_left > 0) {
        tt->rearm_left--;
        tt->earliest = io_now_ns() + tt->rearm_delay;
        io_loop_timer_arm(tt->l, t, tt->rearm_delay);
    }
}

static void ttimer_arm(struct io_loop *l, struct ttimer *tt, int *next_order, uint64_t delay)
{
    memset(tt, 0, sizeof *tt);
    tt->t.fn = ttimer_fire;
    tt->l = l;
    tt->next_order = next_order;
    tt->earliest = io_now_ns() + delay;
    io_loop_timer_arm(l, &tt->t, delay);
    assert_true(tt->t.armed);
}

static struct io_loop *open_loop(void **state)
{
    const char *name = *state;
    struct io_loop *l;

    assert_int_equal(io_loop_create(name, 8, &l), 0);
    if (strcmp(name, io_loop_backend_name(l)) != 0) {
        io_loop_destroy(l);
        skip();
    }
    return l;
}

/* Turn the loop until *order reaches want (failing after 10 s). */
static void run_until(struct io_loop *l, int *order, int want)
{
    uint64_t end = io_now_ns() + 10000 * MS;

    while (*order < want) {
        assert_true(io_loop_run_once(l, true) >= 0);
        assert_true(io_now_ns() < end);
    }
}

static void test_timer_deadline_order(void **state)
{
    static const uint64_t delay_ms[] = { 40, 10, 30, 0, 20, 20 };
    enum { N = sizeof delay_ms / sizeof delay_ms[0] };
    struct io_loop *l = open_loop(state);
    struct ttimer tt[N];
    int order = 0;

    for (int i = 0; i < N; i++)
        ttimer_arm(l, &tt[i], &order, delay_ms[i] * MS);
    run_until(l, &order, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(tt[i].fired, 1);
    /* By deadline; the two 20 ms ones in the order they were armed. */
    assert_int_equal(tt[3].order, 0);
    assert_int_equal(tt[1].order, 1);
    assert_int_equal(tt[4].order, 2);
    assert_int_equal(tt[5].order, 3);
    assert_int_equal(tt[2].order, 4);
    assert_int_equal(tt[0].order, 5);
    io_loop_destroy(l);
}

/* A blocking turn sleeps until the nearest deadline, not forever. */
static void test_timer_wakes_blocking_turn(void **state)
{
    struct io_loop *l = open_loop(state);
    struct ttimer tt;
    int order = 0;
    uint64_t t0 = io_now_ns();
    int n = 0;

    ttimer_arm(l, &tt, &order, 30 * MS);
    while (n == 0)
        n = io_loop_run_once(l, true);
    assert_int_equal(n, 1);
    assert_int_equal(tt.fired, 1);
    assert_true(io_now_ns() - t0 >= 30 * MS);
    assert_true(io_now_ns() - t0 < 5000 * MS);
    io_loop_destroy(l);
}

static void test_timer_cancel(void **state)
{
    struct io_loop *l = open_loop(state);
    struct ttimer a, b, c, d;
    int order = 0;

    /* Cancelled before it is due. */
    ttimer_arm(l, &a, &order, 10 * MS);
    ttimer_arm(l, &b, &order, 30 * MS);
    io_loop_timer_cancel(l, &a.t);
    assert_false(a.t.armed);
    io_loop_timer_cancel(l, &a.t);               /* twice: harmless */
    run_until(l, &order, 1);
    assert_int_equal(a.fired, 0);
    assert_int_equal(b.fired, 1);

    /* Cancelled by the callback of a timer due in the same turn. */
    ttimer_arm(l, &c, &order, 5 * MS);
    ttimer_arm(l, &d, &order, 5 * MS);
    c.cancel_me = &d.t;
    usleep(20 * 1000);                           /* both due now */
    run_until(l, &order, 2);
    assert_int_equal(c.fired, 1);
    assert_int_equal(io_loop_run_once(l, false), 0);
    assert_int_equal(d.fired, 0);
    assert_false(d.t.armed);
    io_loop_destroy(l);
}

static void test_timer_rearm_from_callback(void **state)
{
    struct io_loop *l = open_loop(state);
    struct ttimer tt, zero;
    int order = 0;

    ttimer_arm(l, &tt, &order, 2 * MS);
    tt.rearm_left = 4;
    tt.rearm_delay = 3 * MS;
    run_until(l, &order, 5);
    assert_int_equal(tt.fired, 5);
    assert_false(tt.t.armed);

    /* Re-armed with no delay: it fires again on a later turn, not in a
     * loop inside this one. */
    order = 0;
    ttimer_arm(l, &zero, &order, 0);
    zero.rearm_left = 3;
    assert_int_equal(io_loop_run_once(l, false), 1);
    assert_int_equal(zero.fired, 1);
    run_until(l, &order, 4);
    assert_int_equal(zero.fired, 4);
    io_loop_destroy(l);
}

#define BOTH(f) \
    { #f "/uring", f, NULL, NULL, (void *)"uring" }, \
    { #f "/aio",   f, NULL, NULL, (void *)"aio" }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_timer_deadline_order),
        BOTH(test_timer_wakes_blocking_turn),
        BOTH(test_timer_cancel),
        BOTH(test_timer_rearm_from_callback),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
