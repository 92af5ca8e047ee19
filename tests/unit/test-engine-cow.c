/* SPDX-License-Identifier: MIT */
/* Description: one mapping: copy-on-write, redirected reads, target writes, nocopy, full copy. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "testutil.h"

#define BLK   PC_BLOCK_SIZE
#define NG    16u                         /* grains per volume */

/* A range in grains and blocks: off = g*G + b*BLK (b may be negative), len = lg*G + lb*BLK. */
struct span {
    const char *what;
    int64_t     g, b;
    int64_t     lg, lb;
};

static uint64_t span_off(const struct span *s, uint32_t grain)
{
    return (uint64_t)(s->g * (int64_t)grain + s->b * (int64_t)BLK);
}

static uint64_t span_len(const struct span *s, uint32_t grain)
{
    return (uint64_t)(s->lg * (int64_t)grain + s->lb * (int64_t)BLK);
}

/* Mark the grains [off, off+len) touches; returns how many were new. */
static unsigned touch(bool *seen, uint64_t off, uint64_t len, uint32_t grain)
{
    unsigned n = 0;
    for (uint64_t g = off / grain; g <= (off + len - 1) / grain; g++)
        if (!seen[g]) {
            seen[g] = true;
            n++;
        }
    return n;
}

/* ------------------------------------------------------------------------ */

/* Source writes of every shape leave the target reading the point in time,
 * and copy each grain they touch exactly once (nocopy: nothing else does). */
static void test_cow_source_writes(void **state)
{
    static const uint32_t grains[] = { 4 * TU_KIB, 64 * TU_KIB, TU_MIB };
    static const struct span writes[] = {
        { "first block of the volume",           0,  0, 0,  1 },
        { "partial grain, its first block",      1,  0, 0,  1 },
        { "partial grain, its last block",       3, -1, 0,  1 },
        { "whole grain",                         4,  0, 1,  0 },
        { "two whole grains",                    5,  0, 2,  0 },
        { "spanning two grains, unaligned",      8, -1, 0,  2 },
        { "spanning three grains, unaligned",   10, -1, 1,  2 },
        { "again inside a split grain",          4,  1, 0,  1 },
        { "again across split and unsplit",      6,  0, 2,  1 },
        { "last block of the volume",           NG, -1, 0,  1 },
    };
    struct tu_eng *f = tu_eng_get(state);

    for (size_t gi = 0; gi < sizeof grains / sizeof grains[0]; gi++) {
        uint32_t G = grains[gi];
        char sn[32], tn[32];
        bool seen[NG] = { false };
        unsigned split = 0;

        snprintf(sn, sizeof sn, "src%zu", gi);
        snprintf(tn, sizeof tn, "tgt%zu", gi);
        struct tu_vol *s = tu_vol_new(f, sn, (uint64_t)NG * G);
        struct tu_vol *t = tu_vol_new(f, tn, (uint64_t)NG * G);
        tu_write(f, s, 0, s->size);
        struct pc_map *m = tu_map(f, tn, s, t, G, 0, PC_RATE_UNLIMITED);
        tu_start(m, s, t);

        for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
            uint64_t off = span_off(&writes[i], G), len = span_len(&writes[i], G);
            printf("grain %u KiB: %s (%llu+%llu)\n", G >> 10, writes[i].what,
                   (unsigned long long)off, (unsigned long long)len);
            tu_write(f, s, off, len);
            split += touch(seen, off, len, G);
            tu_check_all(f, t);
            tu_check_all(f, s);
            struct pc_map_info info = tu_info(m);
            assert_int_equal(info.state, PC_MAP_COPYING);
            assert_int_equal(info.grains_split, split);
        }
        /* The copies landed in the target's own file, whole grains. */
        for (unsigned g = 0; g < NG; g++)
            if (seen[g])
                assert_true(tu_raw_equals(t, (uint64_t)g * G, G, t->img + (uint64_t)g * G));
    }
}

/* Unsplit grains are read from the source: the target's file stays empty. */
static void test_cow_unsplit_reads_from_source(void **state)
{
    const uint32_t G = 64 * TU_KIB;
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", NG * G), *t = tu_vol_new(f, "tgt", NG * G);

    tu_write(f, s, 0, s->size);
    struct pc_map *m = tu_map(f, "m", s, t, G, 0, PC_RATE_UNLIMITED);
    tu_start(m, s, t);
    tu_check_all(f, t);
    assert_true(tu_raw_zero(t, 0, t->size));
    assert_int_equal(tu_info(m).grains_split, 0);

    /* One grain split in the middle: a read across it mixes both volumes. */
    tu_write(f, s, 2 * G + BLK, BLK);
    tu_check(f, t, G + G / 2, 2 * G);
    assert_true(tu_raw_zero(t, G, G));
    assert_true(tu_raw_equals(t, 2 * G, G, t->img + 2 * G));
    assert_true(tu_raw_zero(t, 3 * G, G));
    /* Reads of single blocks at grain edges. */
    tu_check(f, t, G - BLK, BLK);
    tu_check(f, t, 2 * G, BLK);
    tu_check(f, t, 3 * G - BLK, BLK);
    tu_check(f, t, 3 * G, BLK);
}

/* A partial target write merges with the point-in-time rest of its grain,
 * on the target's disk, and later source writes leave the merge alone. */
static void test_cow_target_partial_write(void **state)
{
    const uint32_t G = 64 * TU_KIB;
    static const struct span writes[] = {
        { "first block of a grain",               1,  0, 0, 1 },
        { "last block of a grain",                3, -1, 0, 1 },
        { "middle of a grain",                    3,  4, 0, 2 },
        { "end of one grain, start of the next",  5, -2, 0, 4 },
        { "again in a grain it already holds",    1,  2, 0, 1 },
        { "grain the source split first",         7,  3, 0, 1 },
    };
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", NG * G), *t = tu_vol_new(f, "tgt", NG * G);
    bool seen[NG] = { false };
    unsigned split = 0;

    tu_write(f, s, 0, s->size);
    struct pc_map *m = tu_map(f, "m", s, t, G, 0, PC_RATE_UNLIMITED);
    tu_start(m, s, t);
    tu_write(f, s, 7 * G, BLK);              /* for the last row */
    split += touch(seen, 7 * G, BLK, G);

    for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
        uint64_t off = span_off(&writes[i], G), len = span_len(&writes[i], G);
        printf("%s (%llu+%llu)\n", writes[i].what, (unsigned long long)off,
               (unsigned long long)len);
        tu_write(f, t, off, len);
        split += touch(seen, off, len, G);
        tu_check_all(f, t);
        tu_check_all(f, s);
        for (uint64_t g = off / G; g <= (off + len - 1) / G; g++)
            assert_true(tu_raw_equals(t, g * G, G, t->img + g * G));
        assert_int_equal(tu_info(m).grains_split, split);
    }
    /* Rewrite the whole source: the merged grains and the rest stay put. */
    tu_write(f, s, 0, s->size);
    tu_check_all(f, t);
    tu_check_all(f, s);
}

/* A whole-grain target write goes straight to the target (no merge needed),
 * one and a half grains merge only the half. */
static void test_cow_target_whole_write(void **state)
{
    const uint32_t G = 64 * TU_KIB;
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", NG * G), *t = tu_vol_new(f, "tgt", NG * G);

    tu_write(f, s, 0, s->size);
    struct pc_map *m = tu_map(f, "m", s, t, G, 0, PC_RATE_UNLIMITED);
    tu_start(m, s, t);

    tu_write(f, t, 2 * G, G);
    assert_true(tu_raw_equals(t, 2 * G, G, t->img + 2 * G));
    assert_true(tu_raw_zero(t, G, G));
    assert_true(tu_raw_zero(t, 3 * G, G));
    assert_int_equal(tu_info(m).grains_split, 1);

    tu_write(f, t, 4 * G, G + G / 2);
    assert_true(tu_raw_equals(t, 4 * G, 2 * G, t->img + 4 * G));
    assert_int_equal(tu_info(m).grains_split, 3);

    tu_write(f, t, 8 * G, 4 * G);            /* several whole grains in one request */
    assert_true(tu_raw_equals(t, 8 * G, 4 * G, t->img + 8 * G));
    assert_int_equal(tu_info(m).grains_split, 7);

    tu_check_all(f, t);
    tu_check_all(f, s);
    tu_write(f, s, 0, s->size);              /* no copy may overwrite the target's data */
    tu_check_all(f, t);
    tu_check_all(f, s);
    assert_int_equal(tu_info(m).grains_split, NG);
}

/* copy_rate 0: no background copy; only writes split grains. */
static void test_cow_nocopy(void **state)
{
    const uint32_t G = 64 * TU_KIB;
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", NG * G), *t = tu_vol_new(f, "tgt", NG * G);

    tu_write(f, s, 0, s->size);
    struct pc_map *m = tu_map(f, "m", s, t, G, 0, PC_RATE_UNLIMITED);
    tu_start(m, s, t);
    usleep(300 * 1000);
    struct pc_map_info info = tu_info(m);
    assert_int_equal(info.state, PC_MAP_COPYING);
    assert_int_equal(info.copy_rate, 0);
    assert_int_equal(info.grains, NG);
    assert_int_equal(info.grains_split, 0);
    assert_int_equal(info.progress, 0);
    assert_false(info.complete);
    assert_true(info.target_online);

    tu_write(f, s, 0, 4 * G);
    usleep(300 * 1000);
    info = tu_info(m);
    assert_int_equal(info.state, PC_MAP_COPYING);
    assert_int_equal(info.grains_split, 4);
    assert_int_equal(info.progress, 25);
    assert_true(info.progress < 100);
    tu_check_all(f, t);
    tu_check_all(f, s);
}

/* copy_rate unlimited: the copy completes, and then the volumes are independent. */
static void test_cow_unlimited_completes(void **state)
{
    const uint32_t G = 64 * TU_KIB;
    const uint64_t size = 4 * TU_MIB;
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", size), *t = tu_vol_new(f, "tgt", size);

    tu_write(f, s, 0, size);
    struct pc_map *m = tu_map(f, "m", s, t, G, PC_RATE_UNLIMITED, PC_RATE_UNLIMITED);
    tu_start(m, s, t);
    tu_write(f, s, 5 * G + BLK, 3 * G);      /* races the background copy */
    tu_write(f, t, 40 * G, BLK);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);

    struct pc_map_info info = tu_info(m);
    assert_int_equal(info.progress, 100);
    assert_true(info.complete);
    assert_int_equal(info.grains_split, size / G);
    assert_true(info.target_online);
    assert_int_equal(info.dependent_mappings, 0);
    assert_int_equal(info.grains_to_clean, 0);
    tu_check_all(f, t);
    assert_true(tu_raw_equals(t, 0, size, t->img));   /* the whole image is the target's */

    /* Independent now: neither side's writes show on the other. */
    tu_write(f, s, 0, size);
    tu_write(f, t, G / 2, 2 * G);
    tu_check_all(f, t);
    tu_check_all(f, s);
}

/* The last grain of a volume whose size is not a multiple of the grain. */
static void test_cow_short_last_grain(void **state)
{
    const uint32_t G = 64 * TU_KIB;
    const uint64_t tail = 12 * TU_KIB, size = NG * G + tail, last = NG * G;
    static const struct {
        const char *what;
        bool        target;
        int64_t     off;        /* from the start of the last grain */
        uint64_t    len;
    } ops[] = {
        { "source: last block",                 false, 8 * TU_KIB, BLK },
        { "source: the whole short grain",      false, 0, 12 * TU_KIB },
        { "source: across the last two grains", false, -4 * (int64_t)TU_KIB, 8 * TU_KIB },
        { "target: last block (merge)",         true,  8 * TU_KIB, BLK },
        { "target: first block (merge)",        true,  0, BLK },
        { "target: the whole short grain",      true,  0, 12 * TU_KIB },
        { "target: across the last two grains", true,  -4 * (int64_t)TU_KIB, 8 * TU_KIB },
    };
    struct tu_eng *f = tu_eng_get(state);

    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        char sn[16], tn[16];
        snprintf(sn, sizeof sn, "s%zu", i);
        snprintf(tn, sizeof tn, "t%zu", i);
        struct tu_vol *s = tu_vol_new(f, sn, size), *t = tu_vol_new(f, tn, size);
        tu_write(f, s, 0, size);
        struct pc_map *m = tu_map(f, tn, s, t, G, 0, PC_RATE_UNLIMITED);
        tu_start(m, s, t);
        assert_int_equal(tu_info(m).grains, NG + 1);

        uint64_t off = (uint64_t)((int64_t)last + ops[i].off);
        printf("%s (%llu+%llu of %llu)\n", ops[i].what, (unsigned long long)off,
               (unsigned long long)ops[i].len, (unsigned long long)size);
        tu_write(f, ops[i].target ? t : s, off, ops[i].len);
        tu_check_all(f, t);
        tu_check_all(f, s);
        assert_true(tu_raw_equals(t, last, tail, t->img + last));
        assert_int_equal(tu_info(m).grains_split, ops[i].off < 0 ? 2 : 1);

        /* And the background copy of the rest, short grain included. */
        struct pc_error err = { 0 };
        assert_int_equal(pc_map_set_copy_rate(m, PC_RATE_UNLIMITED, &err), 0);
        tu_wait(m, PC_MAP_IDLE_OR_COPIED);
        assert_int_equal(tu_info(m).progress, 100);
        tu_check_all(f, t);
        assert_true(tu_raw_equals(t, 0, size, t->img));
    }
}

/* The largest requests (PC_MAX_IO), unaligned to grains, on the smallest
 * grain (8192 copies in one write) and on the default one (partial edges). */
static void test_cow_largest_requests(void **state)
{
    static const uint32_t grains[] = { 4 * TU_KIB, 64 * TU_KIB };
    const uint64_t size = PC_MAX_IO + TU_MIB;
    struct tu_eng *f = tu_eng_get(state);

    for (size_t gi = 0; gi < sizeof grains / sizeof grains[0]; gi++) {
        char sn[16], tn[16];
        snprintf(sn, sizeof sn, "s%zu", gi);
        snprintf(tn, sizeof tn, "t%zu", gi);
        struct tu_vol *s = tu_vol_new(f, sn, size), *t = tu_vol_new(f, tn, size);
        tu_write(f, s, 0, size);
        struct pc_map *m = tu_map(f, tn, s, t, grains[gi], 0, PC_RATE_UNLIMITED);
        tu_start(m, s, t);

        tu_write(f, s, BLK, PC_MAX_IO);
        assert_int_equal(tu_info(m).grains_split,
                         (BLK + PC_MAX_IO - 1) / grains[gi] - BLK / grains[gi] + 1);
        tu_check_all(f, t);
        tu_write(f, t, 3 * BLK, PC_MAX_IO);
        tu_check_all(f, t);
        tu_check_all(f, s);
        /* Every grain the two writes touched is the target's own now. */
        assert_true(tu_raw_equals(t, BLK, 2 * BLK + PC_MAX_IO, t->img + BLK));
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_cow_source_writes),
        TU_BOTH(test_cow_unsplit_reads_from_source),
        TU_BOTH(test_cow_target_partial_write),
        TU_BOTH(test_cow_target_whole_write),
        TU_BOTH(test_cow_nocopy),
        TU_BOTH(test_cow_unlimited_completes),
        TU_BOTH(test_cow_short_last_grain),
        TU_BOTH(test_cow_largest_requests),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
