/* SPDX-License-Identifier: MIT */
/* Description: several targets of one source: own points in time, one copy per grain, stops, restarts. */
#include <errno.h>
#include <pthread.h>
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

#define BLK    PC_BLOCK_SIZE
#define G      (64u * TU_KIB)
#define NG     16u
#define SIZE   ((uint64_t)NG * G)
#define MAXT   16u

/* Target counts every chain test runs with. */
static const unsigned chain_lengths[] = { 3, MAXT };

struct chain {
    struct tu_vol *s;
    struct tu_vol *t[MAXT];
    struct pc_map *m[MAXT];     /* m[i]: s -> t[i]; started in index order */
    unsigned       n;
};

/* A source full of data and n targets, mapped nocopy with the given clean rate. */
static void chain_make(struct tu_eng *f, struct chain *c, unsigned n, int clean_rate)
{
    char name[32];

    memset(c, 0, sizeof *c);
    c->n = n;
    snprintf(name, sizeof name, "s%u", n);
    c->s = tu_vol_new(f, name, SIZE);
    tu_write(f, c->s, 0, SIZE);
    for (unsigned i = 0; i < n; i++) {
        snprintf(name, sizeof name, "t%u.%u", n, i);
        c->t[i] = tu_vol_new(f, name, SIZE);
        snprintf(name, sizeof name, "m%u.%u", n, i);
        c->m[i] = tu_map(f, name, c->s, c->t[i], G, 0, clean_rate);
    }
}

static void chain_start(struct chain *c, unsigned i)
{
    tu_start(c->m[i], c->s, c->t[i]);
}

/* Every volume of the chain reads its image, but the one at skip (offline). */
static void chain_check(struct tu_eng *f, struct chain *c, int skip)
{
    tu_check_all(f, c->s);
    for (unsigned i = 0; i < c->n; i++)
        if ((int)i != skip)
            tu_check_all(f, c->t[i]);
}

/* Grain g of target i's backing file holds its image / nothing. */
static bool raw_has(struct chain *c, unsigned i, unsigned g)
{
    return tu_raw_equals(c->t[i], (uint64_t)g * G, G, c->t[i]->img + (uint64_t)g * G);
}

static bool raw_empty(struct chain *c, unsigned i, unsigned g)
{
    return tu_raw_zero(c->t[i], (uint64_t)g * G, G);
}

/* ------------------------------------------------------------------------ */

/* Each target reads the source as it was when that target's mapping started. */
static void test_multi_own_point_in_time(void **state)
{
    struct tu_eng *f = tu_eng_get(state);

    for (size_t x = 0; x < sizeof chain_lengths / sizeof chain_lengths[0]; x++) {
        struct chain c;
        chain_make(f, &c, chain_lengths[x], PC_RATE_UNLIMITED);
        for (unsigned i = 0; i < c.n; i++) {
            chain_start(&c, i);
            tu_write(f, c.s, (uint64_t)(i % NG) * G + BLK, BLK);            /* partial */
            tu_write(f, c.s, (uint64_t)((i * 7 + 3) % NG) * G, G);          /* whole */
            if (i % 4 == 0)
                tu_write(f, c.s, (uint64_t)((i + 5) % (NG - 1)) * G + G / 2, G); /* spanning */
        }
        chain_check(f, &c, -1);
    }
}

struct blk_writer {
    struct tu_eng     *f;
    struct tu_vol     *s;               /* the volume written */
    uint64_t           off;
    uint8_t           *buf;
    pthread_barrier_t *go;
    int                r;
};

static void *blk_writer_main(void *arg)
{
    struct blk_writer *w = arg;
    pthread_barrier_wait(w->go);
    w->r = pc_io_sync(w->f->e, PC_IO_WRITE, w->s->v, w->off, BLK, w->buf, 0);
    return NULL;
}

/* A source write copies its grain once, to the newest target only; older
 * targets' files stay empty there.  Also with writers racing on one grain. */
static void test_multi_cow_once_newest_only(void **state)
{
    enum { NW = 8 };
    struct tu_eng *f = tu_eng_get(state);

    for (size_t x = 0; x < sizeof chain_lengths / sizeof chain_lengths[0]; x++) {
        struct chain c;
        chain_make(f, &c, chain_lengths[x], PC_RATE_UNLIMITED);
        unsigned newest = c.n - 1;
        for (unsigned i = 0; i < c.n; i++)
            chain_start(&c, i);

        tu_write(f, c.s, 5 * G + 2 * BLK, BLK);
        assert_true(raw_has(&c, newest, 5));
        for (unsigned i = 0; i < newest; i++) {
            assert_true(raw_empty(&c, i, 5));
            assert_int_equal(tu_info(c.m[i]).grains_split, 0);
        }
        assert_int_equal(tu_info(c.m[newest]).grains_split, 1);
        chain_check(f, &c, -1);

        /* A second write finds the grain split: no second copy. */
        tu_write(f, c.s, 5 * G, G);
        assert_true(raw_has(&c, newest, 5));
        assert_int_equal(tu_info(c.m[newest]).grains_split, 1);

        /* NW writers, one block each, all at once on one unsplit grain: one
         * copy, taken before any of them wrote (else it would hold new data). */
        for (unsigned g = 8; g < 12; g++) {
            struct blk_writer w[NW];
            pthread_t th[NW];
            pthread_barrier_t go;
            pthread_barrier_init(&go, NULL, NW);
            for (unsigned j = 0; j < NW; j++) {
                w[j] = (struct blk_writer){ .f = f, .s = c.s, .go = &go,
                                            .off = (uint64_t)g * G + (uint64_t)j * 2 * BLK };
                w[j].buf = pc_buf_alloc_any(BLK);
                tu_fill(w[j].buf, BLK, 1000 + g * NW + j);
                assert_int_equal(pthread_create(&th[j], NULL, blk_writer_main, &w[j]), 0);
            }
            for (unsigned j = 0; j < NW; j++) {
                pthread_join(th[j], NULL);
                assert_int_equal(w[j].r, 0);
                memcpy(c.s->img + w[j].off, w[j].buf, BLK);
                pc_buf_free_any(w[j].buf, BLK);
            }
            pthread_barrier_destroy(&go);
            assert_true(raw_has(&c, newest, g));
            for (unsigned i = 0; i < newest; i++)
                assert_true(raw_empty(&c, i, g));
        }
        assert_int_equal(tu_info(c.m[newest]).grains_split, 5);
        chain_check(f, &c, -1);
    }
}

/* A target write gives the next older target its copy first (I3): only
 * that target's file receives the grain; the oldest target needs nobody. */
static void test_multi_target_write_feeds_older(void **state)
{
    struct tu_eng *f = tu_eng_get(state);

    for (size_t x = 0; x < sizeof chain_lengths / sizeof chain_lengths[0]; x++) {
        struct chain c;
        chain_make(f, &c, chain_lengths[x], PC_RATE_UNLIMITED);
        unsigned k = c.n / 2, newest = c.n - 1;
        for (unsigned i = 0; i < c.n; i++)
            chain_start(&c, i);

        /* Middle target, partial write to grain 4. */
        tu_write(f, c.t[k], 4 * G + 2 * BLK, BLK);
        assert_true(raw_has(&c, k - 1, 4));
        assert_true(raw_has(&c, k, 4));          /* merged whole grain */
        for (unsigned i = 0; i < c.n; i++)
            if (i != k - 1 && i != k)
                assert_true(raw_empty(&c, i, 4));
        assert_int_equal(tu_info(c.m[k - 1]).grains_split, 1);
        assert_int_equal(tu_info(c.m[k]).grains_split, 1);
        chain_check(f, &c, -1);

        /* Again: T(k-1) has its copy, nothing more moves. */
        tu_write(f, c.t[k], 4 * G, BLK);
        assert_int_equal(tu_info(c.m[k - 1]).grains_split, 1);
        chain_check(f, &c, -1);

        /* The source overwrites grain 4: the newest target takes its copy. */
        tu_write(f, c.s, 4 * G, G);
        assert_true(raw_has(&c, newest, 4));
        chain_check(f, &c, -1);

        /* The oldest target: no one older to feed. */
        tu_write(f, c.t[0], 6 * G + BLK, BLK);
        assert_true(raw_has(&c, 0, 6));
        for (unsigned i = 1; i < c.n; i++)
            assert_true(raw_empty(&c, i, 6));

        /* The newest target, whole grain: feeds the one before it. */
        tu_write(f, c.t[newest], 7 * G, G);
        assert_true(raw_has(&c, newest - 1, 7));
        assert_true(raw_has(&c, newest, 7));
        for (unsigned i = 0; i + 1 < newest; i++)
            assert_true(raw_empty(&c, i, 7));
        chain_check(f, &c, -1);
    }
}

/* Writers race on one grain from both sides: source blocks and blocks of a
 * middle target.  Whatever the order, each target ends up with exactly its
 * point in time (plus the middle target's own blocks): the copy to the
 * newest target and the one to the middle target's older neighbour are both
 * taken once, before any of the racing writes. */
static void test_multi_concurrent_grain_writers(void **state)
{
    enum { NW = 8 };
    struct tu_eng *f = tu_eng_get(state);

    for (size_t x = 0; x < sizeof chain_lengths / sizeof chain_lengths[0]; x++) {
        struct chain c;
        chain_make(f, &c, chain_lengths[x], PC_RATE_UNLIMITED);
        unsigned k = c.n / 2, newest = c.n - 1;
        for (unsigned i = 0; i < c.n; i++)
            chain_start(&c, i);

        for (unsigned g = 2; g < 10; g++) {
            struct blk_writer w[NW];
            pthread_t th[NW];
            pthread_barrier_t go;
            pthread_barrier_init(&go, NULL, NW);
            for (unsigned j = 0; j < NW; j++) {
                /* Even writers on the source, odd on the middle target;
                 * g >= 6: the target's writes alone (no source side). */
                struct tu_vol *v = (j & 1) || g >= 6 ? c.t[k] : c.s;
                w[j] = (struct blk_writer){ .f = f, .s = v, .go = &go,
                                            .off = (uint64_t)g * G + (uint64_t)j * 2 * BLK };
                w[j].buf = pc_buf_alloc_any(BLK);
                tu_fill(w[j].buf, BLK, 5000 + g * NW + j);
                assert_int_equal(pthread_create(&th[j], NULL, blk_writer_main, &w[j]), 0);
            }
            for (unsigned j = 0; j < NW; j++) {
                pthread_join(th[j], NULL);
                assert_int_equal(w[j].r, 0);
                memcpy(w[j].s->img + w[j].off, w[j].buf, BLK);
                pc_buf_free_any(w[j].buf, BLK);
            }
            pthread_barrier_destroy(&go);
            assert_true(raw_has(&c, k - 1, g));
            assert_true(raw_has(&c, k, g));
            if (g < 6)
                assert_true(raw_has(&c, newest, g));
            else if (newest != k)
                assert_true(raw_empty(&c, newest, g));
        }
        chain_check(f, &c, -1);
    }
}

/* Starts mapping i after i's own source write of grain i; heavy also
 * gets grains 12-15 overwritten after its start (so it holds them). */
static void chain_start_all_with_writes(struct tu_eng *f, struct chain *c, unsigned heavy)
{
    for (unsigned i = 0; i < c->n; i++) {
        chain_start(c, i);
        tu_write(f, c->s, (uint64_t)(i % NG) * G + BLK, BLK);
        if (i == heavy)
            tu_write(f, c->s, 12 * G, 4 * G);
    }
}

static const unsigned heavy_grains[] = { 12, 13, 14, 15 };

/* Stopping a middle mapping cleans its grains into the next older target
 * (stopping, then stopped); everything else keeps reading the same. */
static void test_multi_stop_middle(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct pc_error err = { 0 };

    for (size_t x = 0; x < sizeof chain_lengths / sizeof chain_lengths[0]; x++) {
        struct chain c;
        chain_make(f, &c, chain_lengths[x], PC_RATE_UNLIMITED);
        unsigned k = c.n / 2;
        chain_start_all_with_writes(f, &c, k);

        struct pc_map_info info = tu_info(c.m[k]);
        assert_int_equal(info.dependent_mappings, k);
        assert_int_equal(info.grains_to_clean, 5);     /* grain k and 12-15 */
        for (unsigned j = 0; j < 4; j++)
            assert_true(raw_empty(&c, k - 1, heavy_grains[j]));
        assert_true(raw_empty(&c, k - 1, k));

        /* Clean rate 1 (128 KiB/s) holds the mapping in stopping long enough to look. */
        assert_int_equal(pc_map_set_clean_rate(c.m[k], 1, &err), 0);
        assert_int_equal(pc_map_stop(c.m[k], &err), 0);
        info = tu_info(c.m[k]);
        assert_int_equal(info.state, PC_MAP_STOPPING);
        assert_false(info.target_online);
        tu_check_offline(f, c.t[k]);
        chain_check(f, &c, (int)k);                    /* reads through a stopping target */
        tu_write(f, c.s, 13 * G, G);                   /* COW while it cleans */
        chain_check(f, &c, (int)k);

        assert_int_equal(pc_map_set_clean_rate(c.m[k], PC_RATE_UNLIMITED, &err), 0);
        tu_wait(c.m[k], PC_MAP_STOPPED);
        info = tu_info(c.m[k]);
        assert_false(info.target_online);
        assert_false(info.complete);
        assert_int_equal(info.dependent_mappings, 0);
        assert_int_equal(info.grains_to_clean, 0);
        tu_check_offline(f, c.t[k]);
        for (unsigned j = 0; j < 4; j++)
            assert_true(raw_has(&c, k - 1, heavy_grains[j]));
        assert_true(raw_has(&c, k - 1, k));
        chain_check(f, &c, (int)k);

        tu_write(f, c.s, 0, SIZE);
        chain_check(f, &c, (int)k);
    }
}

/* Stopping the newest: its grains go to the one before, which takes the
 * copies-on-write from then on; restarting makes it the newest again. */
static void test_multi_stop_newest(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct pc_error err = { 0 };

    for (size_t x = 0; x < sizeof chain_lengths / sizeof chain_lengths[0]; x++) {
        struct chain c;
        chain_make(f, &c, chain_lengths[x], PC_RATE_UNLIMITED);
        unsigned newest = c.n - 1;
        chain_start_all_with_writes(f, &c, newest);
        assert_int_equal(tu_info(c.m[newest]).dependent_mappings, newest);

        assert_int_equal(pc_map_stop(c.m[newest], &err), 0);
        enum pc_map_state s = tu_info(c.m[newest]).state;
        assert_true(s == PC_MAP_STOPPING || s == PC_MAP_STOPPED);
        tu_wait(c.m[newest], PC_MAP_STOPPED);
        tu_check_offline(f, c.t[newest]);
        for (unsigned j = 0; j < 4; j++)
            assert_true(raw_has(&c, newest - 1, heavy_grains[j]));
        chain_check(f, &c, (int)newest);

        /* Grain 10 was never written: the new newest takes its copy. */
        assert_true(raw_empty(&c, newest - 1, 10));
        tu_write(f, c.s, 10 * G, BLK);
        assert_true(raw_has(&c, newest - 1, 10));
        chain_check(f, &c, (int)newest);

        chain_start(&c, newest);
        assert_int_equal(tu_info(c.m[newest]).state, PC_MAP_COPYING);
        tu_write(f, c.s, 11 * G, BLK);
        assert_true(raw_has(&c, newest, 11));
        assert_true(raw_empty(&c, newest - 1, 11));
        chain_check(f, &c, -1);
    }
}

/* dependent_mappings and grains_to_clean, worked out by hand for three
 * mappings (split grains in braces). */
static void test_multi_info_fields(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct pc_error err = { 0 };
    struct chain c;
    struct tu_vol *t3;
    struct pc_map *m3;
    struct pc_map_info info;

    chain_make(f, &c, 3, PC_RATE_UNLIMITED);
    t3 = tu_vol_new(f, "t3", SIZE);
    m3 = tu_map(f, "never-started", c.s, t3, G, 0, PC_RATE_UNLIMITED);
    for (unsigned i = 0; i < 3; i++)
        chain_start(&c, i);

    tu_write(f, c.s, 0 * G, BLK);            /* m2 {0} */
    tu_write(f, c.s, 1 * G, BLK);            /* m2 {0,1} */
    tu_write(f, c.s, 2 * G, BLK);            /* m2 {0,1,2} */
    tu_write(f, c.t[1], 1 * G + BLK, BLK);   /* m0 {1}, m1 {1} */
    static const struct { unsigned dep, clean, split; } want1[] = {
        { 0, 0, 1 }, { 1, 0, 1 }, { 2, 2, 3 },
    };
    for (unsigned i = 0; i < 3; i++) {
        info = tu_info(c.m[i]);
        assert_int_equal(info.dependent_mappings, want1[i].dep);
        assert_int_equal(info.grains_to_clean, want1[i].clean);
        assert_int_equal(info.grains_split, want1[i].split);
        assert_true(info.start_ns > 0);
        if (i > 0)
            assert_true(info.start_ns >= tu_info(c.m[i - 1]).start_ns);
    }

    tu_write(f, c.t[2], 5 * G, G);           /* m1 {1,5}, m2 {0,1,2,5} */
    static const struct { unsigned dep, clean, split; } want2[] = {
        { 0, 0, 1 }, { 1, 1, 2 }, { 2, 2, 4 },
    };
    for (unsigned i = 0; i < 3; i++) {
        info = tu_info(c.m[i]);
        assert_int_equal(info.dependent_mappings, want2[i].dep);
        assert_int_equal(info.grains_to_clean, want2[i].clean);
        assert_int_equal(info.grains_split, want2[i].split);
    }

    /* m1 leaves: its grain 5 goes to m0; m2 now depends on one mapping. */
    assert_int_equal(pc_map_stop(c.m[1], &err), 0);
    tu_wait(c.m[1], PC_MAP_STOPPED);
    info = tu_info(c.m[1]);
    assert_int_equal(info.dependent_mappings, 0);
    assert_int_equal(info.grains_to_clean, 0);
    info = tu_info(c.m[0]);
    assert_int_equal(info.grains_split, 2);
    info = tu_info(c.m[2]);
    assert_int_equal(info.dependent_mappings, 1);
    assert_int_equal(info.grains_to_clean, 2);
    chain_check(f, &c, 1);

    info = tu_info(m3);
    assert_int_equal(info.state, PC_MAP_IDLE_OR_COPIED);
    assert_int_equal(info.dependent_mappings, 0);
    assert_int_equal(info.grains_to_clean, 0);
    assert_int_equal(info.grains_split, 0);
    assert_int_equal(info.start_ns, 0);
    assert_false(info.complete);
}

/* A copied mapping that older ones still read through stays correct, and
 * restarting it cleans first so they stay correct. */
static void test_multi_copied_but_depended_on(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct pc_error err = { 0 };
    struct chain c;
    struct pc_map_info info;

    chain_make(f, &c, 3, PC_RATE_UNLIMITED);
    chain_start(&c, 0);
    tu_write(f, c.s, 0, BLK);                 /* -> t0 */
    chain_start(&c, 1);
    tu_write(f, c.s, 2 * G, 4 * G);           /* grains 2-5 -> t1 */
    chain_start(&c, 2);
    tu_write(f, c.s, 8 * G, BLK);             /* -> t2 */

    assert_int_equal(pc_map_set_copy_rate(c.m[1], PC_RATE_UNLIMITED, &err), 0);
    tu_wait(c.m[1], PC_MAP_IDLE_OR_COPIED);
    info = tu_info(c.m[1]);
    assert_int_equal(info.progress, 100);
    assert_true(info.complete);
    assert_true(info.target_online);
    assert_int_equal(info.dependent_mappings, 1);  /* still in the chain for m0 */
    for (unsigned g = 2; g < 6; g++)
        assert_true(raw_empty(&c, 0, g));
    chain_check(f, &c, -1);

    /* Its target is written: m0 gets the grain first. */
    tu_write(f, c.t[1], 3 * G + BLK, BLK);
    assert_true(raw_has(&c, 0, 3));
    chain_check(f, &c, -1);
    tu_write(f, c.s, 4 * G, G);
    tu_write(f, c.s, 10 * G, G);
    chain_check(f, &c, -1);

    /* Restart: cleans grains 2, 4, 5 into t0, then a new point in time. */
    chain_start(&c, 1);
    for (unsigned g = 2; g < 6; g++)
        assert_true(raw_has(&c, 0, g));
    chain_check(f, &c, -1);
    tu_write(f, c.s, 0, SIZE);
    chain_check(f, &c, -1);
    tu_wait(c.m[1], PC_MAP_IDLE_OR_COPIED);
    assert_int_equal(tu_info(c.m[1]).dependent_mappings, 2);
    chain_check(f, &c, -1);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_multi_own_point_in_time),
        TU_BOTH(test_multi_cow_once_newest_only),
        TU_BOTH(test_multi_target_write_feeds_older),
        TU_BOTH(test_multi_concurrent_grain_writers),
        TU_BOTH(test_multi_stop_middle),
        TU_BOTH(test_multi_stop_newest),
        TU_BOTH(test_multi_info_fields),
        TU_BOTH(test_multi_copied_but_depended_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
