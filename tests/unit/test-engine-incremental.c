/* SPDX-License-Identifier: MIT */
/* Description: incremental mappings: restarts copy only changed grains; the change recording survives crashes (durable before the write) or is distrusted. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static struct pc_map *imap(struct tu_eng *f, const char *name, struct tu_vol *s,
                           struct tu_vol *t, int rate, bool incremental)
{
    struct pc_map_opts o = {
        .name = name, .source = s->v, .target = t->v, .grain_size = G,
        .copy_rate = rate, .clean_rate = -1, .incremental = incremental,
    };
    struct pc_error err = { 0 };
    struct pc_map *m = NULL;
    if (pc_map_create(f->e, &o, &m, &err) != 0)
        fail_msg("create mapping %s: %s", name, err.msg);
    return m;
}

static void set_rate(struct pc_map *m, int rate)
{
    struct pc_error err = { 0 };
    assert_int_equal(pc_map_set_copy_rate(m, rate, &err), 0);
}

/* Start, let the copy finish, and check the target is a whole image. */
static void copy_fully(struct tu_eng *f, struct pc_map *m, struct tu_vol *s, struct tu_vol *t)
{
    tu_start(m, s, t);
    set_rate(m, PC_RATE_UNLIMITED);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    assert_true(tu_info(m).complete);
    tu_check_all(f, t);
}

/* Source writes, a partial target write and a whole-grain target write
 * mark 4 grains; the restart copies just those. */
static void test_incr_restart_copies_changed(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    tu_write(f, s, 0, SIZE);
    struct pc_map *m = imap(f, "m", s, t, 0, true);
    assert_false(tu_info(m).changes_recorded);      /* never started */
    copy_fully(f, m, s, t);
    struct pc_map_info i = tu_info(m);
    assert_true(i.incremental && i.changes_recorded);
    assert_int_equal(i.grains_changed, 0);

    tu_write(f, s, 3 * G + BLK, BLK);
    tu_write(f, s, 10 * G - BLK, 2 * BLK);               /* grains 9 and 10 */
    tu_write(f, t, 20 * G + BLK, BLK);
    tu_write(f, t, 30 * G, G);
    assert_int_equal(tu_info(m).grains_changed, 5);

    set_rate(m, 0);
    tu_start(m, s, t);
    i = tu_info(m);
    assert_int_equal(i.grains_split, NG - 5);           /* only the changed ones to copy */
    assert_int_equal(i.grains_changed, 0);              /* the recording starts over */
    tu_check_all(f, t);
    tu_write(f, s, 9 * G, BLK);                         /* a COW of a changed grain */
    tu_write(f, s, 40 * G, BLK);                        /* a split one: no copy */
    assert_int_equal(tu_info(m).grains_changed, 2);
    tu_check_all(f, t);
    set_rate(m, PC_RATE_UNLIMITED);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    assert_true(tu_raw_equals(t, 0, SIZE, t->img));
}

/* An incomplete copy (stopped) and a non-incremental mapping restart from scratch. */
static void test_incr_full_restart_when_incomplete(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    struct tu_vol *s2 = tu_vol_new(f, "src2", SIZE), *t2 = tu_vol_new(f, "tgt2", SIZE);
    struct pc_error err = { 0 };
    tu_write(f, s, 0, SIZE);
    tu_write(f, s2, 0, SIZE);
    struct pc_map *m = imap(f, "m", s, t, 0, true);
    tu_start(m, s, t);
    tu_write(f, s, 0, G);
    assert_int_equal(pc_map_stop(m, &err), 0);
    tu_wait(m, PC_MAP_STOPPED);
    assert_false(tu_info(m).changes_recorded);
    tu_start(m, s, t);
    assert_int_equal(tu_info(m).grains_split, 0);
    tu_check_all(f, t);

    struct pc_map *p = imap(f, "plain", s2, t2, 0, false);
    copy_fully(f, p, s2, t2);
    tu_write(f, s2, 0, G);
    set_rate(p, 0);
    tu_start(p, s2, t2);
    assert_int_equal(tu_info(p).grains_split, 0);
    assert_false(tu_info(p).changes_recorded);
    tu_check_all(f, t2);
}

/*
 * The crash that matters: a write made after a complete copy is durable,
 * its difference bit only in the journal.  If the bit were not durable
 * before the write, the recovered mapping would not know the grain changed
 * and the restart would leave the target's stale grain in place.
 */
static void test_incr_crash_keeps_changes(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_STRICT, false, true);
    copy_fully(f, m, s, t);
    tu_write(f, s, 5 * G + BLK, BLK);
    tu_write(f, t, 50 * G, BLK);
    assert_int_equal(tu_info(m).grains_changed, 2);
    mu_snapshot(f, "crash");

    mu_restart(f, "crash");
    m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_STRICT, true, true);
    pc_engine_resume(f->e);
    struct pc_map_info i = tu_info(m);
    assert_string_equal(i.invalid, "");
    assert_int_equal(i.state, PC_MAP_IDLE_OR_COPIED);
    assert_true(i.changes_recorded);
    assert_int_equal(i.grains_changed, 2);
    set_rate(m, 0);
    tu_start(m, s, t);
    assert_int_equal(tu_info(m).grains_split, NG - 2);
    tu_check_all(f, t);

    /* A crash during the incremental copy: the split bits are "all but the
     * changed grains" from the closed region, plus the journal. */
    tu_write(f, s, 5 * G, BLK);                     /* COW of changed grain 5 */
    assert_int_equal(tu_info(m).grains_split, NG - 1);
    mu_snapshot(f, "crash2");
    mu_restart(f, "crash2");
    m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_STRICT, true, true);
    pc_engine_resume(f->e);
    i = tu_info(m);
    assert_string_equal(i.invalid, "");
    assert_int_equal(i.state, PC_MAP_COPYING);
    assert_int_equal(i.grains_split, NG - 1);
    assert_int_equal(i.grains_changed, 1);
    tu_check_all(f, t);
    set_rate(m, PC_RATE_UNLIMITED);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    assert_true(tu_raw_equals(t, 0, SIZE, t->img));
}

/* Durability none: a crash leaves no trustworthy recording, so the next
 * start copies everything; an orderly shutdown keeps it. */
static void test_incr_none_crash_copies_all(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_NONE, false, true);
    copy_fully(f, m, s, t);
    tu_write(f, s, 7 * G, BLK);
    mu_snapshot(f, "crash");

    mu_restart(f, NULL);                            /* orderly */
    m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_NONE, true, true);
    pc_engine_resume(f->e);
    assert_true(tu_info(m).changes_recorded);
    assert_int_equal(tu_info(m).grains_changed, 1);

    mu_restart(f, "crash");                         /* the crash copy */
    m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_NONE, true, true);
    pc_engine_resume(f->e);
    struct pc_map_info i = tu_info(m);
    assert_int_equal(i.state, PC_MAP_IDLE_OR_COPIED);
    assert_false(i.changes_recorded);
    /* The recovered copy rate is copy_fully's unlimited: stop the background
     * copy first, or it races the count below. */
    set_rate(m, 0);
    tu_start(m, s, t);
    assert_int_equal(tu_info(m).grains_split, 0);
    tu_check_all(f, t);
}

/* A version 1 file (no difference regions) is read and upgraded; one from
 * a newer pitcopy is refused, naming the version. */
static void test_incr_meta_versions(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    char path[4200], blk[META_BLOCK] __attribute__((aligned(8)));
    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_STRICT, false, true);
    copy_fully(f, m, s, t);
    mu_restart(f, NULL);
    mu_meta_path(t, "m", path, sizeof path);

    for (unsigned slot = 0; slot < 2; slot++) {
        mu_block_read(path, slot, blk);
        struct meta_sb *sb = (struct meta_sb *)blk;
        sb->version = 1;
        sb->flags &= ~(META_F_DIFF_VALID | META_F_DIFF_BASE);
        memset(sb->diff_gen, 0, sizeof sb->diff_gen);
        sb->diff_cur = 0;
        sb->checksum = mu_block_sum(blk, offsetof(struct meta_sb, checksum));
        mu_block_write(path, slot, blk);
    }
    off_t v1 = (off_t)(META_PAGES_BLOCK + 2) * META_BLOCK;       /* one page */
    assert_int_equal(truncate(path, v1), 0);
    m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_STRICT, true, true);
    pc_engine_resume(f->e);
    struct pc_map_info i = tu_info(m);
    assert_string_equal(i.invalid, "");
    assert_true(i.complete);
    assert_false(i.changes_recorded);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > v1);                   /* upgraded */
    tu_check_all(f, t);

    mu_restart(f, NULL);
    for (unsigned slot = 0; slot < 2; slot++) {
        mu_block_read(path, slot, blk);
        struct meta_sb *sb = (struct meta_sb *)blk;
        sb->version = 99;
        sb->checksum = mu_block_sum(blk, offsetof(struct meta_sb, checksum));
        mu_block_write(path, slot, blk);
    }
    m = mu_map_ex(f, "m", s, t, G, 0, PC_DURABILITY_STRICT, true, true);
    i = tu_info(m);
    assert_int_equal(i.state, PC_MAP_STOPPED);
    assert_non_null(strstr(i.invalid, "format version 99"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_incr_restart_copies_changed),
        TU_BOTH(test_incr_full_restart_when_incomplete),
        TU_BOTH(test_incr_crash_keeps_changes),
        TU_BOTH(test_incr_none_crash_copies_all),
        TU_BOTH(test_incr_meta_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
