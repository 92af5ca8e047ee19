/* SPDX-License-Identifier: MIT */
/* Description: restore: a target copied back onto its source while the source's other targets keep their points in time. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "testutil.h"

#define G      (64u * TU_KIB)
#define NG     32u
#define SIZE   ((uint64_t)NG * G)

/* R: T -> S, restoring S; S's image becomes T's. */
static void restore(struct pc_map *r, struct tu_vol *s, struct tu_vol *t)
{
    struct pc_error err = { 0 };
    int rc = pc_map_start_restore(r, &err);
    if (rc)
        fail_msg("pc_map_start_restore: %s", err.msg);
    memcpy(s->img, t->img, SIZE);
}

static void check(struct tu_eng *f, struct tu_vol **v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        tu_check_all(f, v[i]);
}

/* The restore of the nightly batch: P copying (nocopy), S written after the
 * flash; the restore makes S the flash again at once, T keeps it, S and T
 * stay independently writable, and the background copy finishes the job. */
static void test_restore_from_copying_target(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct tu_vol *all[] = { s, t };
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *p = tu_map(f, "p", s, t, G, 0, 0);
    tu_start(p, s, t);
    tu_write(f, s, 3 * G + 4096, 5 * G);          /* the batch step that failed */
    tu_write(f, t, 20 * G, G / 2);                /* somebody wrote the copy too */
    check(f, all, 2);

    struct pc_map *r = tu_map(f, "r", t, s, G, 0, 0);
    assert_int_equal(pc_map_start(r, &err), -EINVAL);        /* a restore, not a cascade */
    assert_non_null(strstr(err.msg, "restore"));
    restore(r, s, t);
    struct pc_map_info ri = tu_info(r);
    assert_true(ri.restoring);
    assert_string_equal(ri.partner, "p");
    assert_int_equal(ri.state, PC_MAP_COPYING);
    check(f, all, 2);

    /* Writes to both, partial and whole grains, each over unrestored grains. */
    tu_write(f, s, 4 * G + 8192, 4096);
    tu_write(f, s, 10 * G, 2 * G);
    tu_write(f, t, 4 * G, G);                     /* T's own change must not reach S */
    tu_write(f, t, 12 * G + 4096, 8192);
    check(f, all, 2);

    /* Nothing else of S's may start or stop meanwhile. */
    assert_int_equal(pc_map_stop(p, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "being restored"));
    assert_int_equal(pc_map_delete(p, true, &err), -EBUSY);

    assert_int_equal(pc_map_set_copy_rate(r, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(r, PC_MAP_IDLE_OR_COPIED);
    ri = tu_info(r);
    assert_false(ri.restoring);
    assert_true(ri.complete);
    check(f, all, 2);
    /* S is plain again: the forward mapping goes on as before. */
    tu_write(f, s, 0, SIZE);
    check(f, all, 2);
    assert_int_equal(pc_map_delete(r, false, &err), 0);
    tu_check_all(f, t);
}

/* Other targets of S keep their own points in time through the restore. */
static void test_restore_keeps_other_targets(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct tu_vol *a = tu_vol_new(f, "a", SIZE), *b = tu_vol_new(f, "b", SIZE);
    struct tu_vol *all[] = { s, t, a, b };

    tu_write(f, s, 0, SIZE);
    struct pc_map *ma = tu_map(f, "ma", s, a, G, 0, 0);    /* older than the restore point */
    tu_start(ma, s, a);
    tu_write(f, s, 0, SIZE / 2);
    struct pc_map *p = tu_map(f, "p", s, t, G, 0, 0);
    tu_start(p, s, t);
    tu_write(f, s, G, 6 * G);
    struct pc_map *mb = tu_map(f, "mb", s, b, G, 0, 0);    /* newer than P */
    tu_start(mb, s, b);
    tu_write(f, s, 2 * G, 20 * G);
    check(f, all, 4);

    struct pc_map *r = tu_map(f, "r", t, s, G, 0, 0);
    restore(r, s, t);
    check(f, all, 4);
    tu_write(f, s, 5 * G + 4096, 3 * G);
    tu_write(f, t, 15 * G, 4 * G);
    tu_write(f, b, 7 * G, G);
    tu_write(f, a, 25 * G, 4096);
    check(f, all, 4);
    struct pc_error err = { 0 };
    assert_int_equal(pc_map_set_copy_rate(r, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(r, PC_MAP_IDLE_OR_COPIED);
    check(f, all, 4);
    tu_write(f, s, 0, SIZE);
    check(f, all, 4);
}

/* A complete copy out of S's chain restores from T's own file. */
static void test_restore_from_full_copy(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct tu_vol *all[] = { s, t };
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *p = tu_map(f, "p", s, t, G, PC_RATE_UNLIMITED, 0);
    tu_start(p, s, t);
    tu_wait(p, PC_MAP_IDLE_OR_COPIED);
    tu_write(f, s, 0, SIZE / 4);
    struct pc_map *r = tu_map(f, "r", t, s, G, 0, 0);
    restore(r, s, t);
    tu_write(f, t, 0, G);
    tu_write(f, s, SIZE - G, G);
    check(f, all, 2);

    /* Stopped unfinished: S is offline until restarted; the restart reads T anew. */
    assert_int_equal(pc_map_stop(r, &err), 0);
    assert_int_equal(tu_info(r).state, PC_MAP_STOPPED);
    tu_check_offline(f, s);
    tu_check_all(f, t);
    restore(r, s, t);
    check(f, all, 2);
    assert_int_equal(pc_map_set_copy_rate(r, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(r, PC_MAP_IDLE_OR_COPIED);
    check(f, all, 2);
}

static void test_restore_rules(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct tu_vol *x = tu_vol_new(f, "x", SIZE);
    struct pc_error err = { 0 };
    struct pc_map *m = NULL;

    struct pc_map *p = tu_map(f, "p", s, t, G, 0, 0);
    /* Grain sizes must match; a third volume cannot join the cascade. */
    struct pc_map_opts o = { .name = "r256", .source = t->v, .target = s->v, .grain_size = 256 << 10,
                             .copy_rate = 0, .clean_rate = 0 };
    assert_int_equal(pc_map_create(f->e, &o, &m, &err), -EINVAL);
    o = (struct pc_map_opts){ .name = "tx", .source = t->v, .target = x->v, .copy_rate = 0,
                              .clean_rate = 0 };
    assert_int_equal(pc_map_create(f->e, &o, &m, &err), -EOPNOTSUPP);
    struct pc_map *r = tu_map(f, "r", t, s, G, 0, 0);
    /* T holds no image while P is idle and never copied... */
    assert_int_equal(pc_map_start_restore(r, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "whole image"));
    assert_int_equal(pc_map_start_restore(p, &err), -EINVAL);   /* P is the forward one */
    assert_int_equal(pc_map_delete(p, false, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "restore mapping"));
    tu_start(p, s, t);
    restore(r, s, t);
    /* ...and a restoring mapping is deleted only when forced. */
    assert_int_equal(pc_map_delete(r, false, &err), -EBUSY);
    struct pc_map *mx = tu_map(f, "mx", s, x, G, 0, 0);
    assert_int_equal(pc_map_start(mx, &err), -EBUSY);
    assert_non_null(strstr(err.msg, "being restored"));
    assert_int_equal(pc_map_delete(r, true, &err), 0);
    /* S keeps what it has, and is online again: its image is T's. */
    tu_check_all(f, s);
    tu_start(mx, s, x);
    assert_int_equal(pc_map_delete(p, true, &err), 0);
}

/* A restore changes S without host writes: an incremental mapping of S must
 * copy everything on its next start (the model test found this). */
static void test_restore_then_incremental_restart(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct tu_vol *x = tu_vol_new(f, "x", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *p = tu_map(f, "p", s, t, G, 0, 0);
    tu_start(p, s, t);
    tu_write(f, s, 0, SIZE);                  /* S and T now differ everywhere */
    struct pc_map_opts o = { .name = "mx", .source = s->v, .target = x->v, .grain_size = G,
                             .copy_rate = PC_RATE_UNLIMITED, .clean_rate = 0,
                             .incremental = true };
    struct pc_map *mx = NULL;
    assert_int_equal(pc_map_create(f->e, &o, &mx, &err), 0);
    tu_start(mx, s, x);
    tu_wait(mx, PC_MAP_IDLE_OR_COPIED);

    struct pc_map *r = tu_map(f, "r", t, s, G, PC_RATE_UNLIMITED, 0);
    restore(r, s, t);
    tu_wait(r, PC_MAP_IDLE_OR_COPIED);
    tu_write(f, s, G, 4096);                  /* one host change after the restore */
    tu_start(mx, s, x);                       /* must copy all of S, not one grain */
    tu_wait(mx, PC_MAP_IDLE_OR_COPIED);
    tu_check_all(f, x);
    tu_check_all(f, s);
}

/* A group of restores starts at one instant; if one cannot start, none does. */
static void test_restore_group(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s1 = tu_vol_new(f, "s1", SIZE), *t1 = tu_vol_new(f, "t1", SIZE);
    struct tu_vol *s2 = tu_vol_new(f, "s2", SIZE), *t2 = tu_vol_new(f, "t2", SIZE);
    struct tu_vol *all[] = { s1, t1, s2, t2 };
    struct pc_error err = { 0 };
    struct pc_group *g = NULL;

    tu_write(f, s1, 0, SIZE);
    tu_write(f, s2, 0, SIZE);
    struct pc_map *p1 = tu_map(f, "p1", s1, t1, G, 0, 0);
    struct pc_map *p2 = tu_map(f, "p2", s2, t2, G, 0, 0);
    tu_start(p1, s1, t1);
    struct pc_map *r1 = tu_map(f, "r1", t1, s1, G, 0, 0);
    struct pc_map *r2 = tu_map(f, "r2", t2, s2, G, 0, 0);
    assert_int_equal(pc_group_create(f->e, "rg", &g, &err), 0);
    assert_int_equal(pc_map_set_group(r1, g, &err), 0);
    assert_int_equal(pc_map_set_group(r2, g, &err), 0);
    assert_int_equal(pc_group_start(g, &err), -EINVAL);       /* not as a plain start */
    /* p2 never started: t2 holds no image, so neither restore starts. */
    assert_int_equal(pc_group_start_restore(g, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "whole image"));
    assert_false(tu_info(r1).restoring);
    tu_check_all(f, s1);

    tu_start(p2, s2, t2);
    tu_write(f, s1, 0, SIZE / 2);
    tu_write(f, s2, SIZE / 4, SIZE / 2);
    assert_int_equal(pc_group_start_restore(g, &err), 0);
    memcpy(s1->img, t1->img, SIZE);
    memcpy(s2->img, t2->img, SIZE);
    struct pc_group_info gi;
    pc_group_info(g, &gi);
    assert_int_equal(gi.state, PC_MAP_COPYING);
    assert_int_equal(tu_info(r1).start_hold_ns, tu_info(r2).start_hold_ns);   /* one hold */
    check(f, all, 4);
    tu_write(f, s2, G, 3 * G);
    check(f, all, 4);
    assert_int_equal(pc_map_set_copy_rate(r1, PC_RATE_UNLIMITED, &err), 0);
    assert_int_equal(pc_map_set_copy_rate(r2, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(r1, PC_MAP_IDLE_OR_COPIED);
    tu_wait(r2, PC_MAP_IDLE_OR_COPIED);
    check(f, all, 4);
}

/* Reads of S never fail while a restore starts and finishes (the model test
 * once caught one in the instant between idle_or_copied and the detach). */
struct reader {
    struct tu_eng   *f;
    struct tu_vol   *v;
    _Atomic bool     stop;
    int              err;
    unsigned         reads;
};

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    uint8_t *buf = pc_buf_alloc_any(G);
    while (buf && !atomic_load(&rd->stop) && !rd->err) {
        rd->err = tu_io(rd->f, PC_IO_READ, rd->v, (uint64_t)(rd->reads % NG) * G, G, buf);
        rd->reads++;
    }
    pc_buf_free_any(buf, G);
    return NULL;
}

static void test_restore_reads_never_fail(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *p = tu_map(f, "p", s, t, G, PC_RATE_UNLIMITED, 0);
    tu_start(p, s, t);
    tu_wait(p, PC_MAP_IDLE_OR_COPIED);
    struct pc_map *r = tu_map(f, "r", t, s, G, PC_RATE_UNLIMITED, 0);
    struct reader rd = { .f = f, .v = s };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, reader_main, &rd), 0);
    for (unsigned round = 0; round < 40 && !rd.err; round++) {
        tu_write(f, s, (uint64_t)(round % NG) * G, G);
        assert_int_equal(pc_map_start_restore(r, &err), 0);
        memcpy(s->img, t->img, SIZE);
        tu_wait(r, PC_MAP_IDLE_OR_COPIED);
    }
    atomic_store(&rd.stop, true);
    pthread_join(th, NULL);
    print_message("%u reads of s during 40 restores\n", rd.reads);
    if (rd.err)
        fail_msg("a read of s failed during a restore: %s", strerror(-rd.err));
    tu_check_all(f, s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_restore_from_copying_target),
        TU_BOTH(test_restore_keeps_other_targets),
        TU_BOTH(test_restore_from_full_copy),
        TU_BOTH(test_restore_rules),
        TU_BOTH(test_restore_then_incremental_restart),
        TU_BOTH(test_restore_group),
        TU_BOTH(test_restore_reads_never_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
