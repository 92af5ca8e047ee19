/* SPDX-License-Identifier: MIT */
/* Description: persistent metadata after a crash (no orderly shutdown): journal replay, checkpoints around the ring, durability none invalidated. */
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
#include "metautil.h"
#include "testutil.h"
#include "engine/meta.h"

#define BLK   PC_BLOCK_SIZE
#define G     (64u * TU_KIB)
#define NG    64u
#define SIZE  ((uint64_t)NG * G)

/*
 * A crash is simulated by copying the volumes and metadata files while the
 * engine still runs (mu_snapshot), once every I/O of interest has completed
 * and nothing else runs (copy rate 0): what a kill -9 would leave.  The
 * engine then recovers from the copies.
 */

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i])
            return false;
    return true;
}

static void meta_sb(const char *path, struct meta_sb *sb)
{
    char blk[META_BLOCK] __attribute__((aligned(8)));
    struct meta_sb a, b;
    mu_block_read(path, 0, blk);
    memcpy(&a, blk, sizeof a);
    mu_block_read(path, 1, blk);
    memcpy(&b, blk, sizeof b);
    *sb = a.seq > b.seq ? a : b;
}

/* ------------------------------------------------------------------------ */

/*
 * Strict: bits set since the start (copy-on-write, whole and partial target
 * writes) were never checkpointed — the pages are empty in the snapshot —
 * so they come back from the journal alone, and the target reads its point
 * in time.
 */
static void test_crash_strict_replays_journal(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    char path[4200];
    char blk[META_BLOCK] __attribute__((aligned(8)));

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);
    tu_start(m, s, t);
    for (unsigned g = 0; g < 12; g += 3)
        tu_write(f, s, (uint64_t)g * G + BLK, BLK);     /* 4 COWs */
    tu_write(f, s, 30 * G, 3 * G);                        /* 3 in one request */
    tu_write(f, t, 40 * G, G);                            /* target: whole */
    tu_write(f, t, 41 * G + BLK, BLK);                    /* target: partial */
    struct pc_map_info before = tu_info(m);
    assert_int_equal(before.grains_split, 9);
    mu_snapshot(f, "crash");

    mu_restart(f, "crash");
    mu_meta_path(t, "m", path, sizeof path);
    struct meta_sb sb;
    meta_sb(path, &sb);
    assert_false(sb.flags & META_F_CLEAN);
    for (unsigned slot = 0; slot < 2; slot++) {
        mu_block_read(path, META_PAGES_BLOCK + slot, blk);
        assert_true(all_zero(blk, sizeof blk));         /* nothing but the journal */
    }
    m = mu_recover(f, "m", s, t, G, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    struct pc_map_info after = tu_info(m);
    assert_string_equal(after.invalid, "");
    assert_int_equal(after.state, PC_MAP_COPYING);
    assert_int_equal(after.grains_split, before.grains_split);
    assert_int_equal(after.start_ns, before.start_ns);
    assert_true(after.target_online);
    tu_check_all(f, t);
    tu_check_all(f, s);
    /* Recovery folded the journal into the pages (meta_recovered_commit). */
    meta_sb(path, &sb);
    assert_true(sb.ckpt_epoch >= 1);
    bool folded = false;
    for (unsigned slot = 0; slot < 2; slot++) {
        struct meta_page pg;
        mu_block_read(path, META_PAGES_BLOCK + slot, blk);
        memcpy(&pg, blk, sizeof pg);
        folded |= pg.magic == META_PAGE_MAGIC && pg.gen == sb.gen && pg.words[0] != 0;
    }
    assert_true(folded);

    /* And a second crash right after recovery loses nothing either. */
    tu_write(f, s, 50 * G, G);
    before = tu_info(m);
    mu_snapshot(f, "crash2");
    mu_restart(f, "crash2");
    m = mu_recover(f, "m", s, t, G, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    assert_int_equal(tu_info(m).grains_split, before.grains_split);
    assert_string_equal(tu_info(m).invalid, "");
    tu_check_all(f, t);
}

/*
 * Durability none after a crash: the bits were never persisted, so a
 * mapping that needed them (copying) comes back stopped, invalid, its file
 * kept as PATH.corrupt; one that needed none (never started, copied and out
 * of its chain, stopped) comes back as it was (D5).
 */
static void test_crash_none_invalidates(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s[4], *t[4];
    struct pc_map *m[4];
    static const char *const names[4] = { "copying", "idle", "copied", "stopped" };
    struct pc_error err = { 0 };
    char path[4200], aside[4300];

    for (int i = 0; i < 4; i++) {
        char sn[16], tn[16];
        snprintf(sn, sizeof sn, "s%d", i);
        snprintf(tn, sizeof tn, "t%d", i);
        s[i] = tu_vol_new(f, sn, SIZE);
        t[i] = tu_vol_new(f, tn, SIZE);
        tu_write(f, s[i], 0, SIZE);
        m[i] = mu_map(f, names[i], s[i], t[i], G, 0, PC_DURABILITY_NONE);
    }
    tu_start(m[0], s[0], t[0]);
    tu_write(f, s[0], 3 * G, G);
    tu_write(f, t[0], 5 * G, G);
    tu_start(m[2], s[2], t[2]);
    assert_int_equal(pc_map_set_copy_rate(m[2], PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m[2], PC_MAP_IDLE_OR_COPIED);
    tu_start(m[3], s[3], t[3]);
    assert_int_equal(pc_map_stop(m[3], &err), 0);
    tu_wait(m[3], PC_MAP_STOPPED);
    mu_snapshot(f, "crash");

    mu_restart(f, "crash");
    for (int i = 0; i < 4; i++)
        m[i] = mu_recover(f, names[i], s[i], t[i], G, PC_DURABILITY_NONE);
    pc_engine_resume(f->e);

    struct pc_map_info in = tu_info(m[0]);
    assert_int_equal(in.state, PC_MAP_STOPPED);
    assert_false(in.complete);
    assert_non_null(strstr(in.invalid, "durability was none and the daemon did not shut "
                                       "down cleanly"));
    tu_check_offline(f, t[0]);
    mu_meta_path(t[0], names[0], path, sizeof path);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    assert_true(mu_exists(aside));
    assert_true(mu_exists(path));

    in = tu_info(m[1]);
    assert_int_equal(in.state, PC_MAP_IDLE_OR_COPIED);
    assert_string_equal(in.invalid, "");
    in = tu_info(m[2]);
    assert_int_equal(in.state, PC_MAP_IDLE_OR_COPIED);
    assert_true(in.complete);
    assert_string_equal(in.invalid, "");
    tu_check_all(f, t[2]);
    in = tu_info(m[3]);
    assert_int_equal(in.state, PC_MAP_STOPPED);
    assert_string_equal(in.invalid, "");
    for (int i = 1; i < 4; i++) {
        mu_meta_path(t[i], names[i], path, sizeof path);
        snprintf(aside, sizeof aside, "%s.corrupt", path);
        assert_false(mu_exists(aside));
    }

    /* The invalid mapping starts afresh, and an orderly restart keeps it.
     * (Its copy rate is the default: the untrusted file's was not taken.) */
    tu_start(m[0], s[0], t[0]);
    assert_string_equal(tu_info(m[0]).invalid, "");
    assert_int_equal(pc_map_set_copy_rate(m[0], 0, &err), 0);
    tu_write(f, s[0], 7 * G, G);
    tu_check_all(f, t[0]);
    uint64_t split = mu_wait_stable(m[0]);
    mu_restart(f, NULL);
    m[0] = mu_recover(f, names[0], s[0], t[0], G, PC_DURABILITY_NONE);
    in = tu_info(m[0]);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_int_equal(in.grains_split, split);
    tu_check_all(f, t[0]);
}

/*
 * The journal ring (256 blocks) wraps several times: over a thousand
 * single-grain copy-on-writes, one commit each, on a 4 KiB-grain mapping
 * whose bitmap spans two pages.  Checkpoints (D4) keep the ring from
 * overwriting blocks still needed; both slots of each page get used; a
 * crash then recovers every bit from pages plus the journal's tail, and an
 * orderly restart after that too.
 */
/* The i-th grain written: distinct, alternately in page 0 and page 1. */
static uint64_t wrap_grain(uint64_t i)
{
    return i % 2 ? META_PAGE_BITS + i / 2 * 3 : i / 2 * 29;
}

static void test_crash_checkpoints_wrap_journal(void **state)
{
    enum { GRAIN = 4096, NW = 1100 };
    const uint64_t grains = META_PAGE_BITS + 4096;      /* two pages */
    const uint64_t size = grains * GRAIN;
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", size), *t = tu_vol_new(f, "tgt", size);
    char path[4200], blk[META_BLOCK] __attribute__((aligned(8)));

    struct pc_map *m = mu_map(f, "m", s, t, GRAIN, 0, PC_DURABILITY_STRICT);
    tu_write(f, s, 0, size);
    tu_start(m, s, t);
    for (uint64_t i = 0; i < NW; i++)
        tu_write(f, s, wrap_grain(i) * GRAIN, GRAIN);
    assert_int_equal(tu_info(m).grains_split, NW);

    mu_meta_path(t, "m", path, sizeof path);
    struct meta_sb sb;
    meta_sb(path, &sb);
    assert_true(sb.ckpt_epoch >= NW / META_JOURNAL_BLOCKS);
    assert_true(sb.ckpt_seq > 3 * META_JOURNAL_BLOCKS);
    for (uint64_t p = 0; p < 2; p++) {
        uint64_t epoch[2];
        for (unsigned slot = 0; slot < 2; slot++) {
            struct meta_page pg;
            mu_block_read(path, META_PAGES_BLOCK + 2 * p + slot, blk);
            memcpy(&pg, blk, sizeof pg);
            if (pg.magic != META_PAGE_MAGIC || pg.index != p ||
                pg.checksum != mu_block_sum(blk, offsetof(struct meta_page, checksum)))
                fail_msg("page %llu slot %u was never written by a checkpoint",
                         (unsigned long long)p, slot);
            epoch[slot] = pg.epoch;
        }
        assert_int_not_equal(epoch[0], epoch[1]);
    }
    mu_snapshot(f, "crash");

    mu_restart(f, "crash");
    m = mu_recover(f, "m", s, t, GRAIN, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    assert_string_equal(tu_info(m).invalid, "");
    assert_int_equal(tu_info(m).state, PC_MAP_COPYING);
    assert_int_equal(tu_info(m).grains_split, NW);
    tu_check_all(f, t);
    /* The bits are where they belong: rewriting those grains copies nothing. */
    for (uint64_t i = 0; i < NW; i += 97)
        tu_write(f, s, wrap_grain(i) * GRAIN, GRAIN);
    assert_int_equal(tu_info(m).grains_split, NW);

    mu_restart(f, NULL);
    m = mu_recover(f, "m", s, t, GRAIN, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    assert_int_equal(tu_info(m).grains_split, NW);
    tu_check_all(f, t);
}

/*
 * A torn last journal block is what a crash during a commit leaves: not
 * corruption (D3).  Recovery drops that block's bits and nothing else.
 */
static void test_crash_torn_tail(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    char path[4200], aside[4300];

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);
    tu_start(m, s, t);
    for (unsigned g = 0; g < 5; g++)
        tu_write(f, s, (uint64_t)g * G, G);     /* five commits, one block each */
    mu_snapshot(f, "crash");
    mu_restart(f, "crash");
    mu_meta_path(t, "m", path, sizeof path);
    struct meta_sb sb;
    meta_sb(path, &sb);
    uint64_t last = sb.ckpt_seq + 4;
    mu_flip(path, (META_JOURNAL_BLOCK + last % META_JOURNAL_BLOCKS) * META_BLOCK + 2000);
    m = mu_recover(f, "m", s, t, G, PC_DURABILITY_STRICT);
    struct pc_map_info in = tu_info(m);
    assert_string_equal(in.invalid, "");
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_int_equal(in.grains_split, 4);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    assert_false(mu_exists(aside));
    /* Grain 4 is unsplit again: a write copies it (the snapshot's source
     * already holds the write the crash would have stopped, so only the
     * count is checked, not its bytes). */
    tu_write(f, s, 4 * G, BLK);
    assert_int_equal(tu_info(m).grains_split, 5);
    tu_check(f, t, 0, 4 * G);
}

/*
 * Cleaning gives the older mapping only the grains it lacks: one extent of
 * the stopping mapping's grains becomes a commit whose mask has holes (at
 * its start, and two wide), and its journal block lists the runs between
 * them.  After a crash the older
 * mapping has exactly those bits and reads its point in time.
 */
static void test_crash_cleaning_extents(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE);
    struct tu_vol *t1 = tu_vol_new(f, "t1", SIZE), *t2 = tu_vol_new(f, "t2", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m1 = mu_map(f, "m1", s, t1, G, 0, PC_DURABILITY_STRICT);
    struct pc_map *m2 = mu_map(f, "m2", s, t2, G, 0, PC_DURABILITY_STRICT);
    tu_start(m1, s, t1);
    tu_write(f, s, 0, G);                       /* m1 has grains 0, 4 and 5 */
    tu_write(f, s, 4 * G, 2 * G);
    tu_start(m2, s, t2);
    tu_write(f, s, 0, 10 * G);                  /* m2 has grains 0-9 */
    assert_int_equal(pc_map_set_clean_rate(m2, PC_RATE_UNLIMITED, &err), 0);
    assert_int_equal(pc_map_stop(m2, &err), 0);
    tu_wait(m2, PC_MAP_STOPPED);
    assert_int_equal(tu_info(m1).grains_split, 10);
    tu_check_all(f, t1);
    mu_snapshot(f, "crash");

    mu_restart(f, "crash");
    m1 = mu_recover(f, "m1", s, t1, G, PC_DURABILITY_STRICT);
    m2 = mu_recover(f, "m2", s, t2, G, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    struct pc_map_info in = tu_info(m1);
    assert_string_equal(in.invalid, "");
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_int_equal(in.grains_split, 10);
    assert_int_equal(tu_info(m2).state, PC_MAP_STOPPED);
    tu_check_all(f, t1);
    /* Exactly those: grain 10 was never split, so a write copies it. */
    tu_write(f, s, 10 * G, BLK);
    assert_int_equal(tu_info(m1).grains_split, 11);
    tu_check_all(f, t1);
}

/* Many writes at once from the workers themselves, so that copy-on-writes
 * pile up behind the committer and share its rounds. */
struct burst {
    struct pc_io   *ios;
    unsigned        n, done;
    int             err;
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    struct pc_msg   msg[2];
};

static void burst_done(struct pc_io *io, int res)
{
    struct burst *b = io->priv;
    pthread_mutex_lock(&b->lock);
    if (res && !b->err)
        b->err = res;
    if (++b->done == b->n)
        pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

/* Worker half: submit every other request, starting at its index. */
static void burst_go(struct pc_msg *msg)
{
    struct burst *b = msg->arg;
    unsigned first = msg == &b->msg[0] ? 0 : 1;
    for (unsigned i = first; i < b->n; i += 2)
        pc_io_submit(pc_worker_self(), &b->ios[i]);
}

/*
 * Group commit (D1): two mappings on two sources, 1500 single-grain
 * copy-on-writes on each in flight at once from both workers, so one
 * committer round serves both mappings and many commits each; then both
 * background copies at full speed, whose 64-grain extents overflow a
 * journal block's 253 extents within a round and spill into the next.
 * Every write completes, a crash after the copy-on-writes keeps every bit,
 * one after the copies finds both complete.
 */
static void test_crash_group_commit(void **state)
{
    enum { GRAIN = 4096, NW = 1500, NM = 2 };
    const uint64_t grains = 4 * NW;
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s[NM], *t[NM];
    struct pc_map *m[NM];
    static const char *const names[NM] = { "m0", "m1" };
    struct burst b = { .n = NM * NW };
    uint8_t *bufs = pc_buf_alloc_any((size_t)NM * NW * GRAIN);
    struct pc_error err = { 0 };

    assert_non_null(bufs);
    b.ios = calloc(b.n, sizeof *b.ios);
    assert_non_null(b.ios);
    pthread_mutex_init(&b.lock, NULL);
    pthread_cond_init(&b.cond, NULL);
    for (unsigned j = 0; j < NM; j++) {
        char sn[16], tn[16];
        snprintf(sn, sizeof sn, "s%u", j);
        snprintf(tn, sizeof tn, "t%u", j);
        s[j] = tu_vol_new(f, sn, grains * GRAIN);
        t[j] = tu_vol_new(f, tn, grains * GRAIN);
        tu_write(f, s[j], 0, grains * GRAIN);
        m[j] = mu_map(f, names[j], s[j], t[j], GRAIN, 0, PC_DURABILITY_STRICT);
        tu_start(m[j], s[j], t[j]);
    }
    /* Interleaved: request i goes to source i % NM, every other grain. */
    for (unsigned i = 0; i < b.n; i++) {
        struct tu_vol *v = s[i % NM];
        uint64_t off = (uint64_t)(2 * (i / NM)) * GRAIN;
        uint8_t *buf = bufs + (size_t)i * GRAIN;
        tu_fill(buf, GRAIN, 7000 + i);
        b.ios[i] = (struct pc_io){ .op = PC_IO_WRITE, .vol = v->v, .off = off, .len = GRAIN,
                                   .buf = buf, .done = burst_done, .priv = &b };
        memcpy(v->img + off, buf, GRAIN);
    }
    for (unsigned w = 0; w < 2; w++) {
        b.msg[w] = (struct pc_msg){ .fn = burst_go, .arg = &b };
        pc_worker_post(pc_engine_worker(f->e, w), &b.msg[w]);
    }
    pthread_mutex_lock(&b.lock);
    while (b.done < b.n)
        pthread_cond_wait(&b.cond, &b.lock);
    pthread_mutex_unlock(&b.lock);
    assert_int_equal(b.err, 0);
    for (unsigned j = 0; j < NM; j++) {
        assert_int_equal(tu_info(m[j]).grains_split, NW);
        tu_check_all(f, s[j]);
        tu_check_all(f, t[j]);
    }
    mu_snapshot(f, "crash");

    /* Both background copies at once, then a second crash. */
    for (unsigned j = 0; j < NM; j++)
        assert_int_equal(pc_map_set_copy_rate(m[j], PC_RATE_UNLIMITED, &err), 0);
    for (unsigned j = 0; j < NM; j++)
        tu_wait(m[j], PC_MAP_IDLE_OR_COPIED);
    mu_snapshot(f, "crash2");

    mu_restart(f, "crash");
    for (unsigned j = 0; j < NM; j++) {
        m[j] = mu_recover(f, names[j], s[j], t[j], GRAIN, PC_DURABILITY_STRICT);
        struct pc_map_info in = tu_info(m[j]);
        assert_string_equal(in.invalid, "");
        assert_int_equal(in.state, PC_MAP_COPYING);
        assert_int_equal(in.grains_split, NW);
        tu_check_all(f, t[j]);
        tu_check_all(f, s[j]);
    }
    mu_restart(f, "crash2");
    for (unsigned j = 0; j < NM; j++) {
        m[j] = mu_recover(f, names[j], s[j], t[j], GRAIN, PC_DURABILITY_STRICT);
        struct pc_map_info in = tu_info(m[j]);
        assert_int_equal(in.state, PC_MAP_IDLE_OR_COPIED);
        assert_true(in.complete);
        tu_check_all(f, t[j]);
    }
    pthread_mutex_destroy(&b.lock);
    pthread_cond_destroy(&b.cond);
    free(b.ios);
    pc_buf_free_any(bufs, (size_t)NM * NW * GRAIN);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_crash_strict_replays_journal),
        TU_BOTH(test_crash_none_invalidates),
        TU_BOTH(test_crash_checkpoints_wrap_journal),
        TU_BOTH(test_crash_torn_tail),
        TU_BOTH(test_crash_cleaning_extents),
        TU_BOTH(test_crash_group_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
