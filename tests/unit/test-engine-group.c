/* SPDX-License-Identifier: MIT */
/* Description: consistency groups: one point in time for all members, dependent writes, split, rules. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "testutil.h"

#define BLK    PC_BLOCK_SIZE
#define G      (64u * TU_KIB)
#define SIZE   (4u * TU_MIB)
#define NREC   (SIZE / BLK)

static struct pc_group *group_new(struct tu_eng *f, const char *name)
{
    struct pc_group *g = NULL;
    struct pc_error err = { 0 };
    int r = pc_group_create(f->e, name, &g, &err);
    if (r)
        fail_msg("pc_group_create %s: %s", name, err.msg);
    return g;
}

static void join(struct pc_map *m, struct pc_group *g)
{
    struct pc_error err = { 0 };
    int r = pc_map_set_group(m, g, &err);
    if (r)
        fail_msg("pc_map_set_group: %s", err.msg);
}

static enum pc_map_state group_state(struct pc_group *g)
{
    struct pc_group_info gi;
    pc_group_info(g, &gi);
    return gi.state;
}

/* Every member's target reads its source as at the group's start, and the
 * sources' later writes reach none of them. */
static void test_group_one_point_in_time(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s1 = tu_vol_new(f, "s1", SIZE), *s2 = tu_vol_new(f, "s2", SIZE);
    struct tu_vol *t1a = tu_vol_new(f, "t1a", SIZE), *t1b = tu_vol_new(f, "t1b", SIZE);
    struct tu_vol *t2 = tu_vol_new(f, "t2", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s1, 0, SIZE);
    tu_write(f, s2, 0, SIZE);
    struct pc_group *g = group_new(f, "cg");
    struct pc_group_info gi;
    pc_group_info(g, &gi);
    assert_true(gi.empty);
    assert_int_equal(pc_group_start(g, &err), -EINVAL);          /* empty: nothing to start */
    assert_non_null(strstr(err.msg, "empty"));

    struct pc_map *m1a = tu_map(f, "m1a", s1, t1a, G, 0, 0);
    struct pc_map *m1b = tu_map(f, "m1b", s1, t1b, G, 0, 0);   /* two members, one source */
    struct pc_map *m2 = tu_map(f, "m2", s2, t2, G, 0, 0);
    join(m1a, g);
    join(m1b, g);
    join(m2, g);
    struct pc_map *ms[4];
    assert_int_equal(pc_group_members(g, ms, 4), 3);
    assert_ptr_equal(ms[0], m1a);
    assert_ptr_equal(ms[2], m2);

    /* Members go through the group. */
    assert_int_equal(pc_map_start(m1a, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "consistency group cg"));
    assert_int_equal(pc_map_prepare(m2, &err), -EBUSY);

    assert_int_equal(pc_group_prepare(g, &err), 0);
    assert_int_equal(group_state(g), PC_MAP_PREPARED);
    assert_int_equal(pc_group_start(g, &err), 0);
    assert_int_equal(group_state(g), PC_MAP_COPYING);
    memcpy(t1a->img, s1->img, SIZE);
    memcpy(t1b->img, s1->img, SIZE);
    memcpy(t2->img, s2->img, SIZE);
    pc_group_info(g, &gi);
    assert_true(gi.start_ns > 0);
    assert_int_equal(tu_info(m1a).start_hold_ns, gi.start_hold_ns);
    assert_string_equal(tu_info(m2).group, "cg");

    tu_write(f, s1, 0, SIZE / 2);
    tu_write(f, s2, SIZE / 4, SIZE / 2);
    tu_write(f, t1b, G, 3 * G);
    tu_check_all(f, t1a);
    tu_check_all(f, t1b);
    tu_check_all(f, t2);
    tu_check_all(f, s1);
    tu_check_all(f, s2);

    /* A member cannot leave while copying; the group stops as one. */
    assert_int_equal(pc_map_set_group(m1a, NULL, &err), -EBUSY);
    assert_int_equal(pc_map_stop(m2, &err), -EBUSY);
    assert_int_equal(pc_group_stop(g, true, &err), -EINVAL);   /* split needs progress 100 */
    assert_non_null(strstr(err.msg, "progress 100"));
    assert_int_equal(pc_group_stop(g, false, &err), 0);
    tu_wait(m1a, PC_MAP_STOPPED);
    tu_wait(m1b, PC_MAP_STOPPED);
    tu_wait(m2, PC_MAP_STOPPED);
    assert_int_equal(group_state(g), PC_MAP_STOPPED);

    /* Delete: refused with members unless forced; forced leaves them alone. */
    assert_int_equal(pc_group_delete(g, false, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "3 mappings"));
    assert_int_equal(pc_group_delete(g, true, &err), 0);
    assert_null(pc_group_find(f->e, "cg"));
    assert_string_equal(tu_info(m1a).group, "");
    tu_start(m1a, s1, t1a);                                     /* stand-alone again */
    tu_check_all(f, t1a);
}

/*
 * A database writes its log record, waits for it, then the table record —
 * to two volumes.  Starting the group under that load, no target pair may
 * hold a table record whose log record it lacks.
 */
struct writer {
    struct tu_eng     *f;
    struct tu_vol     *log, *table;
    _Atomic bool       stop;
    _Atomic unsigned   done;
    int                err;       /* the writer's first failure (cmocka asserts only on the main thread) */
};

static void record(uint8_t *buf, unsigned n)
{
    memset(buf, 0, BLK);
    memcpy(buf, &n, sizeof n);
    memcpy(buf + BLK - sizeof n, &n, sizeof n);
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = pc_buf_alloc_any(BLK);       /* O_DIRECT: 4 KiB aligned */
    for (unsigned n = 1; buf && !atomic_load(&w->stop) && n < NREC && !w->err; n++) {
        record(buf, n);
        w->err = tu_io(w->f, PC_IO_WRITE, w->log, (uint64_t)n * BLK, BLK, buf);
        if (!w->err)
            w->err = tu_io(w->f, PC_IO_WRITE, w->table, (uint64_t)n * BLK, BLK, buf);
        if (!w->err)
            atomic_store(&w->done, n);
    }
    if (!buf)
        w->err = -ENOMEM;
    pc_buf_free_any(buf, BLK);
    atomic_store(&w->stop, true);
    return NULL;
}

/* The highest record n with block n holding record n, scanning from 1. */
static unsigned last_record(struct tu_eng *f, struct tu_vol *v)
{
    uint8_t *buf = pc_buf_alloc_any(BLK);
    unsigned last = 0;
    for (unsigned n = 1; n < NREC; n++) {
        assert_int_equal(tu_io(f, PC_IO_READ, v, (uint64_t)n * BLK, BLK, buf), 0);
        unsigned a, b;
        memcpy(&a, buf, sizeof a);
        memcpy(&b, buf + BLK - sizeof b, sizeof b);
        if (a != n || b != n)
            break;
        last = n;
    }
    pc_buf_free_any(buf, BLK);
    return last;
}

static void test_group_dependent_writes(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct pc_error err = { 0 };
    unsigned rounds = 12, mismatched = 0;

    for (unsigned round = 0; round < rounds; round++) {
        char name[32];
        snprintf(name, sizeof name, "log%u", round);
        struct tu_vol *log = tu_vol_new(f, name, SIZE);
        snprintf(name, sizeof name, "table%u", round);
        struct tu_vol *table = tu_vol_new(f, name, SIZE);
        snprintf(name, sizeof name, "logc%u", round);
        struct tu_vol *logc = tu_vol_new(f, name, SIZE);
        snprintf(name, sizeof name, "tablec%u", round);
        struct tu_vol *tablec = tu_vol_new(f, name, SIZE);
        snprintf(name, sizeof name, "cg%u", round);
        struct pc_group *g = group_new(f, name);
        snprintf(name, sizeof name, "ml%u", round);
        join(tu_map(f, name, log, logc, G, 0, 0), g);
        snprintf(name, sizeof name, "mt%u", round);
        join(tu_map(f, name, table, tablec, G, 0, 0), g);
        assert_int_equal(pc_group_prepare(g, &err), 0);

        struct writer w = { .f = f, .log = log, .table = table };
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, writer_main, &w), 0);
        /* Start at a different moment each round. */
        while (atomic_load(&w.done) < 20 + round * 37 && !atomic_load(&w.stop))
            usleep(50);
        unsigned before = atomic_load(&w.done);
        assert_int_equal(pc_group_start(g, &err), 0);
        unsigned at_start = atomic_load(&w.done);
        usleep(2000);
        atomic_store(&w.stop, true);
        pthread_join(th, NULL);
        if (w.err)
            fail_msg("the writer failed: %s", strerror(-w.err));

        unsigned l = last_record(f, logc), t = last_record(f, tablec);
        /* The table never runs ahead of the log; at most one record apart. */
        assert_true(t <= l);
        assert_true(l <= t + 1);
        /* The instant is inside the start call: records done before it are
         * in, and at most the one in flight when it returned. */
        assert_true(l >= before);
        assert_true(l <= at_start + 1);
        mismatched += l != t;
        assert_int_equal(pc_group_stop(g, false, &err), 0);
        print_message("round %u: start after record %u, copies hold log %u table %u\n",
                      round, at_start, l, t);
    }
    print_message("%u of %u starts fell between a log and its table record\n",
                  mismatched, rounds);
}

/* Stop with split: only at progress 100; the target stays a whole image. */
static void test_split(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE);
    struct tu_vol *old = tu_vol_new(f, "old", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *mo = tu_map(f, "mold", s, old, G, 0, 0);
    tu_start(mo, s, old);
    struct pc_map *m = tu_map(f, "m", s, t, G, 0, 0);
    tu_start(m, s, t);
    assert_int_equal(pc_map_stop_split(m, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "progress 100"));
    /* Writes split every grain of the newest target. */
    tu_write(f, s, 0, SIZE);
    assert_true(tu_info(m).complete);
    /* The older mapping reads the grains it lacks through t: split must
     * hand them over (at full speed: the clean rate is 0 here). */
    assert_int_equal(pc_map_stop_split(m, &err), 0);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    struct pc_map_info mi = tu_info(m);
    assert_true(mi.target_online);
    assert_int_equal(mi.progress, 100);
    tu_check_all(f, t);
    tu_check_all(f, old);
    tu_write(f, t, 0, G);            /* independent now */
    tu_check_all(f, old);
    tu_check_all(f, s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_group_one_point_in_time),
        TU_BOTH(test_group_dependent_writes),
        TU_BOTH(test_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
