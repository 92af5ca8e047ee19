/* SPDX-License-Identifier: MIT */
/* Description: persistent metadata over an orderly restart: bits, progress, every state and chain order come back as they were. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "metautil.h"
#include "testutil.h"
#include "engine/meta.h"

#define BLK   PC_BLOCK_SIZE
#define G     (64u * TU_KIB)
#define NG    64u
#define SIZE  ((uint64_t)NG * G)

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Whether any block of the journal ring of the file at path holds anything. */
static bool journal_written(const char *path)
{
    char blk[META_BLOCK];
    for (unsigned i = 0; i < META_JOURNAL_BLOCKS; i++) {
        mu_block_read(path, META_JOURNAL_BLOCK + i, blk);
        for (unsigned j = 0; j < META_BLOCK; j++)
            if (blk[j])
                return true;
    }
    return false;
}

/* ------------------------------------------------------------------------ */

/*
 * Copy-on-write, target writes (whole and partial) and some background copy;
 * an orderly shutdown; a new engine recovers the mapping: same state, same
 * grains split, same start time and rate, target and source read the same.
 * The recovered bits then steer the data path (a source write to a split
 * grain copies nothing), and the copy finishes and survives another restart.
 * With durability none nothing is journalled (D5), yet an orderly shutdown
 * keeps every bit.
 */
static void roundtrip(void **state, enum pc_durability d)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    struct pc_error err = { 0 };
    char path[4200];

    tu_write(f, s, 0, SIZE);                   /* every grain differs from zero */
    struct pc_map *m = mu_map(f, "m", s, t, G, 0, d);
    tu_start(m, s, t);
    tu_write(f, s, 1 * G, G);                  /* COW: whole grain */
    tu_write(f, s, 2 * G + BLK, BLK);          /* COW: partial */
    tu_write(f, s, 4 * G + G / 2, G);          /* COW: grains 4 and 5 */
    tu_write(f, t, 10 * G, G);                 /* target: whole grain */
    tu_write(f, t, 11 * G + 3 * BLK, 2 * BLK); /* target: partial, merged */
    assert_int_equal(tu_info(m).grains_split, 6);

    /* Some background copy (1 MiB/s: a few grains an eighth of a second),
     * then none, so the count holds still. */
    assert_int_equal(pc_map_set_copy_rate(m, 40, &err), 0);
    for (int i = 0; i < 3000 && tu_info(m).grains_split < 20; i++)
        sleep_ms(10);
    assert_int_equal(pc_map_set_copy_rate(m, 0, &err), 0);
    mu_wait_stable(m);
    struct pc_map_info before = tu_info(m);
    assert_int_equal(before.state, PC_MAP_COPYING);
    assert_true(before.grains_split >= 20 && before.grains_split <= NG - 8);
    tu_check_all(f, t);

    mu_restart(f, NULL);
    mu_meta_path(t, "m", path, sizeof path);
    /* D5: with durability none the journal is never written. */
    assert_int_equal(journal_written(path), d == PC_DURABILITY_STRICT);
    m = mu_recover(f, "m", s, t, G, d);
    pc_engine_resume(f->e);
    struct pc_map_info after = tu_info(m);
    assert_string_equal(after.invalid, "");
    assert_int_equal(after.state, PC_MAP_COPYING);
    assert_int_equal(after.grains_split, before.grains_split);
    assert_int_equal(after.progress, before.progress);
    assert_int_equal(after.start_ns, before.start_ns);
    assert_int_equal(after.copy_rate, 0);
    assert_false(after.complete);
    assert_true(after.target_online);
    assert_true(after.persistent);
    assert_int_equal(after.durability, d);
    assert_false(mu_exists(strcat(path, ".corrupt")));
    tu_check_all(f, t);
    tu_check_all(f, s);

    /* The bits are live: a split grain takes no copy, an unsplit one does. */
    tu_write(f, s, 1 * G, G);
    assert_int_equal(tu_info(m).grains_split, before.grains_split);
    tu_write(f, s, (NG - 1) * G, BLK);
    assert_int_equal(tu_info(m).grains_split, before.grains_split + 1);
    tu_check_all(f, t);

    /* Finish the copy; copied survives a restart too. */
    assert_int_equal(pc_map_set_copy_rate(m, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    mu_restart(f, NULL);
    m = mu_recover(f, "m", s, t, G, d);
    pc_engine_resume(f->e);
    after = tu_info(m);
    assert_int_equal(after.state, PC_MAP_IDLE_OR_COPIED);
    assert_true(after.complete);
    assert_true(after.target_online);
    assert_int_equal(after.grains_split, NG);
    assert_int_equal(after.copy_rate, PC_RATE_UNLIMITED);
    tu_check_all(f, t);
    tu_check_all(f, s);
}

static void test_meta_roundtrip_strict(void **state)
{
    roundtrip(state, PC_DURABILITY_STRICT);
}

static void test_meta_roundtrip_none(void **state)
{
    roundtrip(state, PC_DURABILITY_NONE);
}

/*
 * Every state a mapping can be left in comes back: never started
 * (idle_or_copied, nothing split), copied (complete, online), stopped before
 * its copy was done (offline, not invalid), and prepared, which persists as
 * the state it came from (meta.c persisted_state).
 */
static void test_meta_states(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    static const char *const names[] = { "idle", "copied", "stopped", "prepared" };
    enum { N = 4 };
    struct tu_vol *s[N], *t[N];
    struct pc_map *m[N];
    struct pc_error err = { 0 };

    for (int i = 0; i < N; i++) {
        char sn[16], tn[16];
        snprintf(sn, sizeof sn, "s%d", i);
        snprintf(tn, sizeof tn, "t%d", i);
        s[i] = tu_vol_new(f, sn, SIZE);
        t[i] = tu_vol_new(f, tn, SIZE);
        tu_write(f, s[i], 0, SIZE);
        m[i] = mu_map(f, names[i], s[i], t[i], G, 0, PC_DURABILITY_STRICT);
    }
    /* copied */
    tu_start(m[1], s[1], t[1]);
    assert_int_equal(pc_map_set_copy_rate(m[1], PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m[1], PC_MAP_IDLE_OR_COPIED);
    tu_write(f, t[1], 3 * G, BLK);             /* a plain volume now */
    /* stopped, incomplete */
    tu_start(m[2], s[2], t[2]);
    tu_write(f, s[2], 5 * G, G);
    assert_int_equal(pc_map_stop(m[2], &err), 0);
    tu_wait(m[2], PC_MAP_STOPPED);
    /* prepared, from stopped */
    tu_start(m[3], s[3], t[3]);
    assert_int_equal(pc_map_stop(m[3], &err), 0);
    tu_wait(m[3], PC_MAP_STOPPED);
    assert_int_equal(pc_map_prepare(m[3], &err), 0);
    assert_int_equal(tu_info(m[3]).state, PC_MAP_PREPARED);

    mu_restart(f, NULL);
    for (int i = N; i-- > 0;)
        m[i] = mu_recover(f, names[i], s[i], t[i], G, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    static const struct {
        enum pc_map_state state;
        bool complete, online;
        uint64_t split;
    } want[N] = {
        { PC_MAP_IDLE_OR_COPIED, false, true,  0 },
        { PC_MAP_IDLE_OR_COPIED, true,  true,  NG },
        { PC_MAP_STOPPED,        false, false, 1 },
        { PC_MAP_STOPPED,        false, false, 0 },
    };
    for (int i = 0; i < N; i++) {
        struct pc_map_info in = tu_info(m[i]);
        if (in.state != want[i].state || in.complete != want[i].complete ||
            in.target_online != want[i].online || in.invalid[0])
            fail_msg("%s: recovered %s complete=%d online=%d invalid='%s'", names[i],
                     pc_map_state_name(in.state), in.complete, in.target_online, in.invalid);
        if (want[i].state != PC_MAP_STOPPED)
            assert_int_equal(in.grains_split, want[i].split);
    }
    tu_check_all(f, t[0]);
    tu_check_all(f, t[1]);
    tu_check_offline(f, t[2]);
    tu_check_offline(f, t[3]);
    /* The stopped ones start again from their recovered state. */
    tu_start(m[2], s[2], t[2]);
    tu_start(m[3], s[3], t[3]);
    tu_write(f, s[2], 5 * G, G);
    tu_check_all(f, t[2]);
    tu_check_all(f, t[3]);
}

/*
 * A mapping shut down while stopping (cleaning its grains into the older
 * target, which reads through it) comes back stopping, in its chain; once
 * pc_engine_resume runs, the cleaning finishes and the older target keeps
 * its point in time.
 */
static void test_meta_stopping_resumes(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE);
    struct tu_vol *t1 = tu_vol_new(f, "t1", SIZE), *t2 = tu_vol_new(f, "t2", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m1 = mu_map(f, "m1", s, t1, G, 0, PC_DURABILITY_STRICT);
    struct pc_map *m2 = mu_map(f, "m2", s, t2, G, 0, PC_DURABILITY_STRICT);
    tu_start(m1, s, t1);
    tu_start(m2, s, t2);
    tu_write(f, s, 0, 40 * G);                 /* 40 grains copied to t2 only */
    assert_int_equal(tu_info(m1).grains_split, 0);
    assert_int_equal(tu_info(m2).grains_split, 40);
    /* 128 KiB/s: two grains a second; the restart comes long before 40. */
    assert_int_equal(pc_map_set_clean_rate(m2, 1, &err), 0);
    assert_int_equal(pc_map_stop(m2, &err), 0);
    assert_int_equal(tu_info(m2).state, PC_MAP_STOPPING);

    mu_restart(f, NULL);
    m1 = mu_recover(f, "m1", s, t1, G, PC_DURABILITY_STRICT);
    m2 = mu_recover(f, "m2", s, t2, G, PC_DURABILITY_STRICT);
    struct pc_map_info in2 = tu_info(m2);
    assert_int_equal(in2.state, PC_MAP_STOPPING);
    assert_int_equal(in2.clean_rate, 1);
    assert_int_equal(tu_info(m1).state, PC_MAP_COPYING);
    tu_check_all(f, t1);                        /* through t2, still in the chain */
    pc_engine_resume(f->e);
    assert_int_equal(pc_map_set_clean_rate(m2, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m2, PC_MAP_STOPPED);
    assert_true(tu_info(m1).grains_split >= 40);
    assert_int_equal(tu_info(m1).dependent_mappings, 0);
    tu_check_all(f, t1);
    tu_check_offline(f, t2);
    tu_write(f, s, 50 * G, G);                  /* copies to t1 now */
    tu_check_all(f, t1);
}

/*
 * Three mappings of one source started in order, recovered in other
 * orders: each rejoins the chain by its start sequence.  Seen from outside:
 * dependent_mappings, a source write copying to the newest target only
 * (its backing file gets the grain, the older ones' stay empty), a target
 * write feeding the next older target first, and every target reading its
 * own point in time.
 */
static void test_meta_chain_order(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t[3];
    struct pc_map *m[3];
    static const char *const names[3] = { "m1", "m2", "m3" };
    static const int orders[][3] = { { 2, 1, 0 }, { 1, 2, 0 }, { 0, 2, 1 } };

    tu_write(f, s, 0, SIZE);
    for (int i = 0; i < 3; i++) {
        char tn[16];
        snprintf(tn, sizeof tn, "t%d", i + 1);
        t[i] = tu_vol_new(f, tn, SIZE);
        m[i] = mu_map(f, names[i], s, t[i], G, 0, PC_DURABILITY_STRICT);
    }
    for (int i = 0; i < 3; i++) {
        tu_start(m[i], s, t[i]);
        tu_write(f, s, (uint64_t)(2 * i) * G, 4 * G);   /* grains 2i..2i+3 */
    }
    for (int i = 0; i < 3; i++)
        tu_check_all(f, t[i]);

    uint64_t g = 20;                            /* a fresh grain per round */
    for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
        uint64_t split[3];
        mu_restart(f, NULL);
        for (int j = 0; j < 3; j++) {
            int i = orders[o][j];
            m[i] = mu_recover(f, names[i], s, t[i], G, PC_DURABILITY_STRICT);
        }
        pc_engine_resume(f->e);
        for (int i = 0; i < 3; i++) {
            struct pc_map_info in = tu_info(m[i]);
            assert_int_equal(in.state, PC_MAP_COPYING);
            if ((int)in.dependent_mappings != i)
                fail_msg("order %zu: %s has %u dependent mappings, expected %d", o,
                         names[i], in.dependent_mappings, i);
            split[i] = in.grains_split;
            tu_check_all(f, t[i]);
        }
        /* Source write: one copy, to the newest. */
        tu_write(f, s, g * G, G);
        assert_int_equal(tu_info(m[2]).grains_split, split[2] + 1);
        assert_int_equal(tu_info(m[1]).grains_split, split[1]);
        assert_int_equal(tu_info(m[0]).grains_split, split[0]);
        assert_false(tu_raw_zero(t[2], g * G, G));
        assert_true(tu_raw_zero(t[1], g * G, G));
        assert_true(tu_raw_zero(t[0], g * G, G));
        /* Target write to t2 on an unsplit grain: t1 gets its copy first. */
        tu_write(f, t[1], (g + 1) * G + BLK, BLK);
        assert_int_equal(tu_info(m[0]).grains_split, split[0] + 1);
        assert_false(tu_raw_zero(t[0], (g + 1) * G, G));
        for (int i = 0; i < 3; i++)
            tu_check_all(f, t[i]);
        g += 2;
    }
}

/*
 * A copied mapping that older ones still read through stays in its chain
 * (map.c M2) and comes back there: the older target reads its point in
 * time through it, and a write to its target first gives the older target
 * its copy (I3).
 */
static void test_meta_copied_in_chain(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE);
    struct tu_vol *t1 = tu_vol_new(f, "t1", SIZE), *t2 = tu_vol_new(f, "t2", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m1 = mu_map(f, "m1", s, t1, G, 0, PC_DURABILITY_STRICT);
    struct pc_map *m2 = mu_map(f, "m2", s, t2, G, 0, PC_DURABILITY_STRICT);
    tu_start(m1, s, t1);
    tu_start(m2, s, t2);
    assert_int_equal(pc_map_set_copy_rate(m2, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m2, PC_MAP_IDLE_OR_COPIED);
    assert_int_equal(tu_info(m1).dependent_mappings, 0);
    assert_int_equal(tu_info(m1).grains_split, 0);
    tu_write(f, s, 0, SIZE);                    /* t1 now reads only through t2 */
    tu_check_all(f, t1);

    mu_restart(f, NULL);
    m2 = mu_recover(f, "m2", s, t2, G, PC_DURABILITY_STRICT);
    m1 = mu_recover(f, "m1", s, t1, G, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    struct pc_map_info in = tu_info(m2);
    assert_int_equal(in.state, PC_MAP_IDLE_OR_COPIED);
    assert_true(in.complete);
    assert_int_equal(in.dependent_mappings, 1);  /* still in the chain, above m1 */
    tu_check_all(f, t1);
    tu_check_all(f, t2);
    tu_write(f, t2, 7 * G + BLK, BLK);
    assert_int_equal(tu_info(m1).grains_split, 1);
    tu_check_all(f, t1);
    tu_check_all(f, t2);
}

/* A control path that needs the metadata file fails cleanly without it. */
static void test_meta_missing_file(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    char path[4200], aside[4300];

    mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);
    mu_restart(f, NULL);
    mu_meta_path(t, "m", path, sizeof path);
    assert_int_equal(unlink(path), 0);
    struct pc_map *m = mu_recover(f, "m", s, t, G, PC_DURABILITY_STRICT);
    struct pc_map_info in = tu_info(m);
    assert_int_equal(in.state, PC_MAP_STOPPED);
    assert_non_null(strstr(in.invalid, "cannot open"));
    assert_non_null(strstr(in.invalid, path));
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    assert_false(mu_exists(aside));            /* nothing to move aside */
    assert_true(mu_exists(path));              /* a fresh file */
    tu_check_offline(f, t);
    tu_start(m, s, t);
    tu_check_all(f, t);
}

/*
 * A file that cannot be moved aside is not replaced either: the create
 * fails naming both problems, and the file stays for the next attempt.
 */
static void test_meta_cannot_move_aside(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    char path[4200], aside[4300], inside[4400];
    struct pc_error err = { 0 };

    mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);
    mu_restart(f, NULL);
    mu_meta_path(t, "m", path, sizeof path);
    mu_flip(path, 100);
    mu_flip(path, META_BLOCK + 100);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    snprintf(inside, sizeof inside, "%s/x", aside);
    assert_int_equal(mkdir(aside, 0700), 0);     /* rename() onto it fails */
    FILE *fp = fopen(inside, "w");
    assert_non_null(fp);
    fclose(fp);
    struct pc_map_opts o = {
        .name = "m", .source = s->v, .target = t->v, .grain_size = G, .copy_rate = 0,
        .clean_rate = -1, .meta_path = path, .recover = true,
    };
    struct pc_map *m = NULL;
    assert_true(pc_map_create(f->e, &o, &m, &err) < 0);
    assert_non_null(strstr(err.msg, "neither superblock slot is valid"));
    assert_non_null(strstr(err.msg, "cannot move it aside"));
    assert_null(pc_map_find(f->e, "m"));
    assert_true(mu_exists(path));
    /* Once the way is clear, the same call brings it back stopped. */
    assert_int_equal(unlink(inside), 0);
    assert_int_equal(rmdir(aside), 0);
    assert_int_equal(pc_map_create(f->e, &o, &m, &err), 0);
    assert_int_equal(tu_info(m).state, PC_MAP_STOPPED);
    assert_true(mu_exists(aside));
}

/* A metadata path without a directory is relative to the working directory. */
static void test_meta_relative_path(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    struct pc_error err = { 0 };
    char cwd[4096];

    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(f->dir), 0);
    struct pc_map_opts o = {
        .name = "m", .source = s->v, .target = t->v, .grain_size = G, .copy_rate = 0,
        .clean_rate = -1, .meta_path = "rel.meta",
    };
    struct pc_map *m = NULL;
    int r = pc_map_create(f->e, &o, &m, &err);
    if (r == 0) {
        tu_start(m, s, t);
        tu_write(f, s, 3 * G, G);
        mu_restart(f, NULL);
        o.source = s->v;
        o.target = t->v;
        o.recover = true;
        r = pc_map_create(f->e, &o, &m, &err);
    }
    assert_int_equal(chdir(cwd), 0);
    if (r != 0)
        fail_msg("rel.meta: %s", err.msg);
    assert_int_equal(tu_info(m).state, PC_MAP_COPYING);
    assert_int_equal(tu_info(m).grains_split, 1);
    tu_check_all(f, t);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_meta_roundtrip_strict),
        TU_BOTH(test_meta_roundtrip_none),
        TU_BOTH(test_meta_states),
        TU_BOTH(test_meta_stopping_resumes),
        TU_BOTH(test_meta_chain_order),
        TU_BOTH(test_meta_copied_in_chain),
        TU_BOTH(test_meta_missing_file),
        TU_BOTH(test_meta_cannot_move_aside),
        TU_BOTH(test_meta_relative_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
