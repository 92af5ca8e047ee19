/* SPDX-License-Identifier: MIT */
/* Description: the mapping state machine: create errors, commands out of state, offline targets, limits. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "testutil.h"

#define BLK   PC_BLOCK_SIZE
#define G     (64u * TU_KIB)
#define SIZE  (16u * G)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* err is filled, non-empty, and names what it should (NULL: no check). */
static bool msg_ok(const struct pc_error *err, int code, const char *a, const char *b)
{
    return err->code == code && err->msg[0] &&
           (!a || strstr(err->msg, a)) && (!b || strstr(err->msg, b));
}

/* ------------------------------------------------------------------------ */

/* Every way pc_map_create can refuse, and the message naming the culprit. */
static void test_states_create_errors(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *srcA = tu_vol_new(f, "srcA", SIZE), *srcB = tu_vol_new(f, "srcB", SIZE);
    struct tu_vol *tgtA = tu_vol_new(f, "tgtA", SIZE), *tgtB = tu_vol_new(f, "tgtB", SIZE);
    struct tu_vol *tgtC = tu_vol_new(f, "tgtC", SIZE), *half = tu_vol_new(f, "half", SIZE / 2);
    static const char long_name[] =
        "m123456789012345678901234567890123456789012345678901234567890123";   /* 64 */
    tu_map(f, "m1", srcA, tgtA, G, 0, 0);
    tu_map(f, "m2", srcB, tgtC, G, 0, 0);
    const struct {
        const char    *what;
        const char    *name;
        struct tu_vol *s, *t;
        uint32_t       grain;
        int            copy_rate, clean_rate;
        int            code;
        const char    *want1, *want2;   /* substrings of the message */
    } rows[] = {
        { "same volume twice",          "x1", srcA, srcA, G, 0, 0, -EINVAL, "srcA", NULL },
        { "size mismatch",              "x2", srcA, half, G, 0, 0, -EINVAL, "srcA", "half" },
        { "target of another mapping",  "x3", srcB, tgtA, G, 0, 0, -EBUSY, "tgtA", "m1" },
        { "grain 2 KiB",                "x4", srcA, tgtB, 2 * TU_KIB, 0, 0, -EINVAL, "2048", NULL },
        { "grain 3 KiB",                "x5", srcA, tgtB, 3 * TU_KIB, 0, 0, -EINVAL, "3072", NULL },
        { "grain 2 MiB",                "x6", srcA, tgtB, 2 * TU_MIB, 0, 0, -EINVAL, "2097152",
          NULL },
        { "copy rate 151",              "x7", srcA, tgtB, G, 151, 0, -EINVAL, "151", NULL },
        { "copy rate -5",               "x8", srcA, tgtB, G, -5, 0, -EINVAL, "-5", NULL },
        { "clean rate 151",             "x9", srcA, tgtB, G, 0, 151, -EINVAL, "151", NULL },
        { "clean rate -5",              "x10", srcA, tgtB, G, 0, -5, -EINVAL, "-5", NULL },
        { "cascade: target is a source", "x11", srcA, srcB, G, 0, 0, -EOPNOTSUPP, "srcB", NULL },
        { "cascade: source is a target", "x12", tgtA, tgtB, G, 0, 0, -EOPNOTSUPP, "tgtA", NULL },
        { "grain unlike the source's",  "x13", srcA, tgtB, 4 * G, 0, 0, -EINVAL, "srcA", NULL },
        { "duplicate name",             "m1", srcA, tgtB, G, 0, 0, -EEXIST, "m1", NULL },
        { "empty name",                 "",   srcA, tgtB, G, 0, 0, -EINVAL, "name", NULL },
        { "64-character name",          long_name, srcA, tgtB, G, 0, 0, -EINVAL, long_name, NULL },
        /* It names the metadata file: a '/' would put that elsewhere. */
        { "name with a '/'",            "a/b", srcA, tgtB, G, 0, 0, -EINVAL, "a/b", "letters" },
        { "no target",                  "x17", srcA, NULL, G, 0, 0, -EINVAL, "target", NULL },
    };
    unsigned bad = 0;

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct pc_map_opts o = {
            .name = rows[i].name, .source = rows[i].s->v, .target = rows[i].t ? rows[i].t->v : NULL,
            .grain_size = rows[i].grain, .copy_rate = rows[i].copy_rate,
            .clean_rate = rows[i].clean_rate,
        };
        struct pc_error err = { 0 };
        struct pc_map *m = NULL;
        int r = pc_map_create(f->e, &o, &m, &err);
        printf("%-28s -> %d \"%s\"\n", rows[i].what, r, err.msg);
        if (r != rows[i].code || !msg_ok(&err, rows[i].code, rows[i].want1, rows[i].want2)) {
            print_error("%s: got %d \"%s\"; want %d, naming %s%s%s\n", rows[i].what, r, err.msg,
                        rows[i].code, rows[i].want1, rows[i].want2 ? " and " : "",
                        rows[i].want2 ? rows[i].want2 : "");
            bad++;
        }
        if (r == 0)
            assert_int_equal(pc_map_delete(m, true, NULL), 0);
    }
    /* Nothing half-made: tgtB still takes a mapping, and only m1, m2 exist. */
    assert_null(pc_map_find(f->e, "x1"));
    assert_null(pc_map_find(f->e, "x13"));
    tu_map(f, "ok", srcA, tgtB, G, 0, 0);
    if (bad)
        fail_msg("%u of %zu create errors were wrong", bad, sizeof rows / sizeof rows[0]);
}

/* The edges that must be accepted, as recorded. */
static void test_states_create_boundaries(void **state)
{
    const struct {
        uint32_t grain;
        int      copy_rate, clean_rate;
        uint32_t want_grain;
        int      want_copy, want_clean;
    } rows[] = {
        { 4 * TU_KIB, 0, 0, 4 * TU_KIB, 0, 0 },
        { TU_MIB, 150, 150, TU_MIB, 150, 150 },
        { 0, PC_RATE_UNLIMITED, PC_RATE_UNLIMITED, PC_GRAIN_DEFAULT, PC_RATE_UNLIMITED,
          PC_RATE_UNLIMITED },
        { 256 * TU_KIB, -1, -1, 256 * TU_KIB, PC_RATE_DEFAULT, PC_RATE_DEFAULT },
        { 8 * TU_KIB, 1, 100, 8 * TU_KIB, 1, 100 },
    };
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);

    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct pc_map_opts o = {
            .name = NULL, .source = s->v, .target = t->v, .grain_size = rows[i].grain,
            .copy_rate = rows[i].copy_rate, .clean_rate = rows[i].clean_rate,
        };
        struct pc_error err = { 0 };
        struct pc_map *m = NULL;
        if (pc_map_create(f->e, &o, &m, &err) != 0)
            fail_msg("row %zu: %s", i, err.msg);
        struct pc_map_info info = tu_info(m);
        assert_true(info.name[0] != 0);
        assert_ptr_equal(pc_map_find(f->e, info.name), m);
        assert_string_equal(info.source, "s");
        assert_string_equal(info.target, "t");
        assert_int_equal(info.state, PC_MAP_IDLE_OR_COPIED);
        assert_int_equal(info.grain_size, rows[i].want_grain);
        assert_int_equal(info.grains, (SIZE + rows[i].want_grain - 1) / rows[i].want_grain);
        assert_int_equal(info.copy_rate, rows[i].want_copy);
        assert_int_equal(info.clean_rate, rows[i].want_clean);
        assert_int_equal(pc_map_delete(m, false, &err), 0);
    }
}

/* Starting a copying mapping again is refused and changes nothing. */
static void test_states_start_twice(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = tu_map(f, "twice", s, t, G, 0, PC_RATE_UNLIMITED);
    tu_start(m, s, t);
    tu_write(f, s, 0, G);
    int r = pc_map_start(m, &err);
    printf("second start: %d \"%s\"\n", r, err.msg);
    assert_true(r < 0);
    assert_true(msg_ok(&err, r, "twice", NULL));
    assert_int_equal(tu_info(m).state, PC_MAP_COPYING);
    tu_check_all(f, t);     /* still the first point in time */

    err.msg[0] = 0;
    r = pc_map_prepare(m, &err);
    assert_true(r < 0);
    assert_true(msg_ok(&err, r, "twice", NULL));
    assert_int_equal(tu_info(m).state, PC_MAP_COPYING);
}

/* Stop is refused unless copying or prepared. */
static void test_states_stop_out_of_state(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = tu_map(f, "stopper", s, t, G, PC_RATE_UNLIMITED, PC_RATE_UNLIMITED);
    assert_int_equal(pc_map_stop(m, &err), -EINVAL);             /* never started */
    assert_true(msg_ok(&err, -EINVAL, "stopper", NULL));
    assert_int_equal(tu_info(m).state, PC_MAP_IDLE_OR_COPIED);

    tu_start(m, s, t);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    err.msg[0] = 0;
    assert_int_equal(pc_map_stop(m, &err), -EINVAL);             /* copied */
    assert_true(msg_ok(&err, -EINVAL, "stopper", NULL));
    assert_int_equal(tu_info(m).state, PC_MAP_IDLE_OR_COPIED);
    assert_true(tu_info(m).target_online);
    tu_check_all(f, t);

    assert_int_equal(pc_map_set_copy_rate(m, 0, &err), 0);
    tu_start(m, s, t);
    assert_int_equal(pc_map_stop(m, &err), 0);
    tu_wait(m, PC_MAP_STOPPED);
    err.msg[0] = 0;
    assert_int_equal(pc_map_stop(m, &err), -EINVAL);             /* stopped */
    assert_true(msg_ok(&err, -EINVAL, "stopper", NULL));
    assert_int_equal(tu_info(m).state, PC_MAP_STOPPED);
}

/* Delete refuses active mappings without force; force stops them first. */
static void test_states_delete_busy(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE);
    struct tu_vol *t0 = tu_vol_new(f, "t0", SIZE), *t1 = tu_vol_new(f, "t1", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m0 = tu_map(f, "older", s, t0, G, 0, PC_RATE_UNLIMITED);
    struct pc_map *m1 = tu_map(f, "busy", s, t1, G, 0, PC_RATE_UNLIMITED);
    tu_start(m0, s, t0);
    tu_start(m1, s, t1);
    /* All grains but the last into t1: the copy stays incomplete, so the
     * stop ends in stopped (a whole image would end in idle_or_copied). */
    tu_write(f, s, 0, SIZE - G);

    assert_int_equal(pc_map_delete(m1, false, &err), -EBUSY);   /* copying */
    assert_true(msg_ok(&err, -EBUSY, "busy", NULL));
    assert_ptr_equal(pc_map_find(f->e, "busy"), m1);
    assert_int_equal(tu_info(m1).state, PC_MAP_COPYING);

    /* Stopping (held there by clean rate 1: 15 grains at 128 KiB/s). */
    assert_int_equal(pc_map_set_clean_rate(m1, 1, &err), 0);
    assert_int_equal(pc_map_stop(m1, &err), 0);
    assert_int_equal(tu_info(m1).state, PC_MAP_STOPPING);
    err.msg[0] = 0;
    assert_int_equal(pc_map_delete(m1, false, &err), -EBUSY);
    assert_true(msg_ok(&err, -EBUSY, "busy", NULL));
    assert_int_equal(pc_map_set_clean_rate(m1, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m1, PC_MAP_STOPPED);
    assert_int_equal(pc_map_delete(m1, false, &err), 0);        /* stopped: no force needed */
    assert_null(pc_map_find(f->e, "busy"));
    tu_check_all(f, t0);

    /* Force on a copying mapping: stopped, cleaned (nothing older), gone. */
    assert_int_equal(pc_map_delete(m0, true, &err), 0);
    assert_null(pc_map_find(f->e, "older"));
    uint8_t *buf = pc_buf_alloc_any(G);
    assert_int_equal(tu_io(f, PC_IO_READ, t0, 0, G, buf), 0);   /* a plain volume again */
    pc_buf_free_any(buf, G);
    assert_int_equal(pc_volume_close(t0->v, &err), 0);
    assert_int_equal(pc_volume_close(t1->v, &err), 0);
    assert_int_equal(pc_volume_close(s->v, &err), 0);
}

/* prepare -> prepared -> stop -> stopped -> start, the target offline until started. */
static void test_states_prepare_stop_start(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = tu_map(f, "prep", s, t, G, 0, PC_RATE_UNLIMITED);
    tu_check_all(f, t);                                     /* idle: a plain volume */
    assert_true(tu_info(m).target_online);

    assert_int_equal(pc_map_prepare(m, &err), 0);
    assert_int_equal(tu_info(m).state, PC_MAP_PREPARED);
    assert_false(tu_info(m).target_online);
    tu_check_offline(f, t);
    assert_int_equal(pc_map_prepare(m, &err), 0);           /* again: still prepared */
    assert_int_equal(tu_info(m).state, PC_MAP_PREPARED);

    assert_int_equal(pc_map_stop(m, &err), 0);
    assert_int_equal(tu_info(m).state, PC_MAP_STOPPED);
    assert_false(tu_info(m).target_online);
    tu_check_offline(f, t);

    assert_int_equal(pc_map_prepare(m, &err), 0);           /* stopped -> prepared */
    assert_int_equal(tu_info(m).state, PC_MAP_PREPARED);
    tu_write(f, s, G, G);                                   /* source stays writable */
    tu_start(m, s, t);
    assert_int_equal(tu_info(m).state, PC_MAP_COPYING);
    assert_true(tu_info(m).target_online);
    tu_check_all(f, t);

    /* copying -> stop: stopped before complete, offline; start again: online. */
    assert_int_equal(pc_map_stop(m, &err), 0);
    tu_wait(m, PC_MAP_STOPPED);
    assert_false(tu_info(m).target_online);
    tu_check_offline(f, t);
    tu_write(f, s, 0, G);
    tu_start(m, s, t);                                      /* stopped -> copying directly */
    assert_true(tu_info(m).target_online);
    tu_check_all(f, t);
}

/* A mapping whose copy completed, prepared again and then stopped: the
 * target still holds that whole image, so it is online (offline only
 * "stopping/stopped before its copy was complete"). */
static void test_states_stopped_complete_online(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = tu_map(f, "done", s, t, G, PC_RATE_UNLIMITED, PC_RATE_UNLIMITED);
    tu_start(m, s, t);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    tu_write(f, s, 0, SIZE);                       /* the target keeps the old image */

    assert_int_equal(pc_map_prepare(m, &err), 0);
    assert_false(tu_info(m).target_online);
    tu_check_offline(f, t);
    assert_int_equal(pc_map_stop(m, &err), 0);
    struct pc_map_info info = tu_info(m);
    assert_int_equal(info.state, PC_MAP_STOPPED);
    assert_true(info.complete);
    assert_true(info.target_online);
    tu_check_all(f, t);
}

/* A stop after every grain was split (nocopy, whole target rewritten): the
 * target holds a whole image, so it stays online (pitcopy.h: offline only
 * "before its copy was complete"; info.complete: "every grain split"). */
static void test_states_stop_when_all_split(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE), *t = tu_vol_new(f, "t", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = tu_map(f, "split", s, t, G, 0, PC_RATE_UNLIMITED);
    tu_start(m, s, t);
    tu_write(f, t, 0, SIZE);
    struct pc_map_info before = tu_info(m);
    assert_int_equal(before.grains_split, before.grains);
    assert_int_equal(before.progress, 100);

    assert_int_equal(pc_map_stop(m, &err), 0);
    for (int i = 0; i < 3000 && tu_info(m).state == PC_MAP_STOPPING; i++)
        usleep(10 * 1000);
    struct pc_map_info after = tu_info(m);
    printf("all %llu grains split: complete=%d; after stop: %s, target %s\n",
           (unsigned long long)before.grains, before.complete, pc_map_state_name(after.state),
           after.target_online ? "online" : "offline");
    assert_true(before.complete);                    /* "every grain split" */
    assert_true(after.target_online);
    tu_check_all(f, t);
}

/* At most PC_MAX_TARGETS mappings per source; all of them started at once work. */
static void test_states_256_limit(void **state)
{
    const uint64_t vs = 4 * TU_KIB;
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", vs), *t[PC_MAX_TARGETS + 1];
    struct pc_map *m[PC_MAX_TARGETS];
    struct pc_error err = { 0 };
    char name[32];

    tu_write(f, s, 0, vs);
    for (unsigned i = 0; i <= PC_MAX_TARGETS; i++) {
        snprintf(name, sizeof name, "t%u", i);
        t[i] = tu_vol_new(f, name, vs);
    }
    for (unsigned i = 0; i < PC_MAX_TARGETS; i++) {
        snprintf(name, sizeof name, "m%u", i);
        m[i] = tu_map(f, name, s, t[i], 0, 0, PC_RATE_UNLIMITED);
    }
    struct pc_map_opts o = { .name = "one-too-many", .source = s->v,
                             .target = t[PC_MAX_TARGETS]->v, .copy_rate = 0 };
    assert_int_equal(pc_map_create(f->e, &o, NULL, &err), -ENOSPC);
    printf("257th: \"%s\"\n", err.msg);
    assert_true(msg_ok(&err, -ENOSPC, "s ", NULL) || msg_ok(&err, -ENOSPC, "source s", NULL));
    assert_null(pc_map_find(f->e, "one-too-many"));

    /* The longest chain: one copy, to the newest; the oldest reads the start. */
    for (unsigned i = 0; i < PC_MAX_TARGETS; i++)
        tu_start(m[i], s, t[i]);
    tu_write(f, s, 0, vs);
    assert_true(tu_raw_equals(t[PC_MAX_TARGETS - 1], 0, vs, t[PC_MAX_TARGETS - 1]->img));
    assert_true(tu_raw_zero(t[0], 0, vs));
    for (unsigned i = 0; i < PC_MAX_TARGETS; i += 51)
        tu_check_all(f, t[i]);
    tu_check_all(f, t[PC_MAX_TARGETS - 1]);

    /* One gone, one more fits. */
    assert_int_equal(pc_map_delete(m[7], true, &err), 0);
    assert_int_equal(pc_map_create(f->e, &o, NULL, &err), 0);
}

/* A volume in a mapping cannot be closed, as source or target, in any state. */
static void test_states_volume_close_busy(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s-busy", SIZE), *t = tu_vol_new(f, "t-busy", SIZE);
    struct pc_error err = { 0 };
    struct pc_map *m = tu_map(f, "m", s, t, G, 0, PC_RATE_UNLIMITED);

    for (int phase = 0; phase < 3; phase++) {
        if (phase == 1)
            tu_start(m, s, t);
        if (phase == 2) {
            assert_int_equal(pc_map_stop(m, &err), 0);
            tu_wait(m, PC_MAP_STOPPED);
        }
        err.msg[0] = 0;
        assert_int_equal(pc_volume_close(s->v, &err), -EBUSY);
        assert_true(msg_ok(&err, -EBUSY, "s-busy", NULL));
        err.msg[0] = 0;
        assert_int_equal(pc_volume_close(t->v, &err), -EBUSY);
        assert_true(msg_ok(&err, -EBUSY, "t-busy", NULL));
    }
    assert_int_equal(pc_map_delete(m, false, &err), 0);
    assert_int_equal(pc_volume_close(s->v, &err), 0);
    assert_int_equal(pc_volume_close(t->v, &err), 0);
    assert_null(pc_volume_find(f->e, "s-busy"));
}

/* Destroying an engine stops background work: it does not clean every
 * mapping at its clean rate first (16 grains at rate 1 would take 8 s). */
static void test_states_destroy_is_prompt(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "s", SIZE);
    struct tu_vol *t0 = tu_vol_new(f, "t0", SIZE), *t1 = tu_vol_new(f, "t1", SIZE);

    struct pc_map *m0 = tu_map(f, "m0", s, t0, G, 0, 1);
    struct pc_map *m1 = tu_map(f, "m1", s, t1, G, 0, 1);
    tu_start(m0, s, t0);
    tu_start(m1, s, t1);
    tu_write(f, s, 0, SIZE);
    double t = now_s();
    pc_engine_destroy(f->e);
    f->e = NULL;
    t = now_s() - t;
    printf("pc_engine_destroy took %.2f s\n", t);
    assert_true(t < 2.0);
}

static void test_states_names(void **state)
{
    static const struct { int s; const char *name; } rows[] = {
        { PC_MAP_IDLE_OR_COPIED, "idle_or_copied" },
        { PC_MAP_PREPARING,      "preparing" },
        { PC_MAP_PREPARED,       "prepared" },
        { PC_MAP_COPYING,        "copying" },
        { PC_MAP_STOPPING,       "stopping" },
        { PC_MAP_STOPPED,        "stopped" },
        { PC_MAP_SUSPENDED,      "suspended" },
        { PC_MAP_SUSPENDED + 1,  "unknown" },
        { -1,                    "unknown" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        assert_string_equal(pc_map_state_name((enum pc_map_state)rows[i].s), rows[i].name);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_states_create_errors),
        TU_BOTH(test_states_create_boundaries),
        TU_BOTH(test_states_start_twice),
        TU_BOTH(test_states_stop_out_of_state),
        TU_BOTH(test_states_delete_busy),
        TU_BOTH(test_states_prepare_stop_start),
        TU_BOTH(test_states_stopped_complete_online),
        TU_BOTH(test_states_stop_when_all_split),
        TU_BOTH(test_states_256_limit),
        TU_BOTH(test_states_volume_close_busy),
        TU_BOTH(test_states_destroy_is_prompt),
        cmocka_unit_test(test_states_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
