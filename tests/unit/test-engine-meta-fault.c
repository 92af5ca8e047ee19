/* SPDX-License-Identifier: MIT */
/* Description: injected I/O faults (io/fault.h) on targets, sources and metadata files: suspension made durable, the source keeps every write, control calls fail cleanly. */
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
#include "io/fault.h"

#define BLK   PC_BLOCK_SIZE
#define G     (64u * TU_KIB)
#define NG    32u
#define SIZE  ((uint64_t)NG * G)

/* Rules are process-wide: none may outlive its test. */
static int setup(void **state)
{
    io_fault_clear();
    return tu_eng_setup(state);
}

static int teardown(void **state)
{
    io_fault_clear();
    return tu_eng_teardown(state);
}

#define BOTH(fn) \
    { #fn "/uring", fn, setup, teardown, (void *)"uring" }, \
    { #fn "/aio",   fn, setup, teardown, (void *)"aio" }

static bool has(const char *s, const char *sub)
{
    return strstr(s, sub) != NULL;
}

/* src with a pattern; "older" (src → t1) started, grain 0 copied to t1;
 * "newer" (src → t2) started after it. */
struct two {
    struct tu_vol *s, *t1, *t2;
    struct pc_map *older, *newer;
    char           newer_meta[4200], marker[4300];
};

static void two_make(struct tu_eng *f, struct two *w)
{
    w->s = tu_vol_new(f, "src", SIZE);
    w->t1 = tu_vol_new(f, "t1", SIZE);
    w->t2 = tu_vol_new(f, "t2", SIZE);
    tu_write(f, w->s, 0, SIZE);
    w->older = mu_map(f, "older", w->s, w->t1, G, 0, PC_DURABILITY_STRICT);
    w->newer = mu_map(f, "newer", w->s, w->t2, G, 0, PC_DURABILITY_STRICT);
    tu_start(w->older, w->s, w->t1);
    tu_write(f, w->s, 0, G);
    tu_start(w->newer, w->s, w->t2);
    mu_meta_path(w->t2, "newer", w->newer_meta, sizeof w->newer_meta);
    snprintf(w->marker, sizeof w->marker, "%s.failed", w->newer_meta);
}

static void two_recover(struct tu_eng *f, struct two *w)
{
    w->newer = mu_recover(f, "newer", w->s, w->t2, G, PC_DURABILITY_STRICT);
    w->older = mu_recover(f, "older", w->s, w->t1, G, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    mu_meta_path(w->t2, "newer", w->newer_meta, sizeof w->newer_meta);
    snprintf(w->marker, sizeof w->marker, "%s.failed", w->newer_meta);
}

/* newer is suspended for why; older and the source are untouched. */
static void two_check_suspended(struct tu_eng *f, struct two *w, const char *stage,
                                const char *why)
{
    struct pc_map_info in = tu_info(w->newer);
    if (in.state != PC_MAP_SUSPENDED || in.target_online || !has(in.invalid, why))
        fail_msg("%s: newer %s, online=%d, invalid '%s'; expected suspended, '%s'", stage,
                 pc_map_state_name(in.state), in.target_online, in.invalid, why);
    tu_check_offline(f, w->t2);
    in = tu_info(w->older);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_true(in.target_online);
    assert_string_equal(in.invalid, "");
    tu_check_all(f, w->s);
    tu_check_all(f, w->t1);
}

/* ------------------------------------------------------------------------ */

/*
 * A write that fails on the newest mapping's target or metadata: the source
 * write still succeeds (its old contents go to the older target instead),
 * the mapping is suspended — target offline, invalid saying why — and says
 * so durably before anything acts on it (a crash right after finds it
 * suspended), through an orderly restart too.  Where even the superblock
 * cannot be written, a marker beside it says so.  Then stop and start give
 * it a new point in time.
 */
#define MARKER "suspended: its metadata could not be written (the marker .failed beside it " \
               "says so)"

struct frow {
    const char *what;
    bool        on_meta;        /* the rule is on newer's metadata file, else on t2 */
    const char *rule;
    const char *why;            /* in pc_map_info().invalid */
    bool        marker;         /* the superblock could not be made durable: a marker */
    bool        sb_lost;        /* ... nor even written (a crash finds only the marker) */
    bool        keep;           /* the fault lasts through the first orderly shutdown */
};

#define WHY "suspended: a write to target t2 or to its metadata failed: "
static const struct frow frows[] = {
    { "target write EIO", false, "write:EIO", WHY "Input/output error", false, false, false },
    { "metadata write ENOSPC", true, "write:ENOSPC", WHY "No space left on device",
      true, true, false },
    { "metadata write ENOSPC, through shutdown", true, "write:ENOSPC",
      WHY "No space left on device", true, true, true },
    /* The superblock write reached the file, its sync failed. */
    { "metadata sync EIO", true, "sync:EIO", WHY "Input/output error", true, false, false },
    { "one metadata write ENOSPC", true, "write:ENOSPC:0:1", WHY "No space left on device",
      false, false, false },
};
#undef WHY

static void fault_row(void **state, const struct frow *r)
{
    struct tu_eng *f = tu_eng_get(state);
    struct two w;
    struct pc_error err = { 0 };

    printf("row: %s\n", r->what);
    two_make(f, &w);
    mu_fault(r->on_meta ? w.newer_meta : w.t2->path, r->rule);
    uint64_t inj = io_fault_injected();
    tu_write(f, w.s, 2 * G, G);
    assert_true(io_fault_injected() > inj);
    tu_wait(w.newer, PC_MAP_SUSPENDED);
    two_check_suspended(f, &w, "at once", r->why);
    assert_int_equal(tu_info(w.older).grains_split, 2);     /* grains 0 and 2 */
    assert_int_equal(tu_info(w.newer).grains_split, 0);
    assert_int_equal(mu_exists(w.marker), r->marker);
    /* A suspended mapping takes no copies: nothing more is tried on it. */
    inj = io_fault_injected();
    tu_write(f, w.s, 4 * G + BLK, BLK);
    assert_int_equal(io_fault_injected(), inj);
    assert_int_equal(tu_info(w.older).grains_split, 3);
    tu_check_all(f, w.t1);
    mu_snapshot(f, "crash");

    /* An orderly restart keeps it suspended, or, if not even the shutdown
     * could write the file, the marker does. */
    if (!r->keep)
        io_fault_clear();
    mu_restart(f, NULL);
    io_fault_clear();
    two_recover(f, &w);
    two_check_suspended(f, &w, "after an orderly restart", r->keep ? MARKER : r->why);

    /* Durable before acted on: a crash right after the failure finds it
     * suspended too — and still after a further orderly restart. */
    mu_restart(f, "crash");
    two_recover(f, &w);
    two_check_suspended(f, &w, "after a crash", r->sb_lost ? MARKER : r->why);
    mu_restart(f, NULL);
    two_recover(f, &w);
    two_check_suspended(f, &w, "after a crash and an orderly restart",
                        r->sb_lost ? MARKER : r->why);

    /* Stop and start: a new point in time, the marker gone. */
    assert_int_equal(pc_map_stop(w.newer, &err), 0);
    tu_wait(w.newer, PC_MAP_STOPPED);
    tu_check_all(f, w.t1);
    tu_start(w.newer, w.s, w.t2);
    assert_false(mu_exists(w.marker));
    struct pc_map_info in = tu_info(w.newer);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_string_equal(in.invalid, "");
    tu_write(f, w.s, 6 * G, G);
    assert_int_equal(tu_info(w.newer).grains_split, 1);
    tu_check_all(f, w.t2);
    tu_check_all(f, w.t1);
    mu_restart(f, NULL);
    two_recover(f, &w);
    assert_int_equal(tu_info(w.newer).state, PC_MAP_COPYING);
    assert_string_equal(tu_info(w.newer).invalid, "");
    tu_check_all(f, w.t2);
    tu_check_all(f, w.t1);
}

static void test_fault_target_eio(void **state) { fault_row(state, &frows[0]); }
static void test_fault_meta_enospc(void **state) { fault_row(state, &frows[1]); }
static void test_fault_meta_enospc_kept(void **state) { fault_row(state, &frows[2]); }
static void test_fault_meta_sync_eio(void **state) { fault_row(state, &frows[3]); }
static void test_fault_meta_enospc_once(void **state) { fault_row(state, &frows[4]); }

/*
 * If not even a marker can say the mapping failed (here a directory sits
 * where the marker goes), the mapping is not suspended — nothing durable
 * would say so — and the source write that needed the copy fails instead:
 * data refused, never silently lost (map_fail, internal.h).
 */
static void test_fault_unrecordable_failure(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct two w;
    uint8_t *buf = pc_buf_alloc_any(BLK);

    assert_non_null(buf);
    two_make(f, &w);
    assert_int_equal(mkdir(w.marker, 0700), 0);
    mu_fault(w.newer_meta, "write:ENOSPC");
    memset(buf, 0x77, BLK);
    assert_true(tu_io(f, PC_IO_WRITE, w.s, 2 * G, BLK, buf) < 0);
    pc_buf_free_any(buf, BLK);
    struct pc_map_info in = tu_info(w.newer);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_int_equal(in.grains_split, 0);
    tu_check_all(f, w.s);                       /* the write did not happen */
    tu_check_all(f, w.t1);
    tu_check_all(f, w.t2);
    io_fault_clear();
    assert_int_equal(rmdir(w.marker), 0);
    tu_write(f, w.s, 2 * G, BLK);               /* and goes through once it can */
    assert_int_equal(tu_info(w.newer).grains_split, 1);
    tu_check_all(f, w.t2);
    tu_check_all(f, w.t1);
}

/*
 * A checkpoint that cannot be written (D4: the 256th commit after a start
 * finds the ring full) fails its commit like a journal write: the mapping
 * is suspended with the bits of the 255 commits before, and stays so.
 */
static void test_fault_checkpoint_enospc(void **state)
{
    enum { GRAIN = 4096, NC = 256 };
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", 2 * NC * GRAIN);
    struct tu_vol *t = tu_vol_new(f, "tgt", 2 * NC * GRAIN);
    char path[4200];

    tu_write(f, s, 0, s->size);
    struct pc_map *m = mu_map(f, "m", s, t, GRAIN, 0, PC_DURABILITY_STRICT);
    tu_start(m, s, t);
    mu_meta_path(t, "m", path, sizeof path);
    /* Writes 1-255 are journal blocks; the 256th is the checkpoint's page. */
    mu_fault(path, "write:ENOSPC:255:1");
    for (unsigned i = 0; i < NC; i++)
        tu_write(f, s, (uint64_t)(2 * i) * GRAIN, GRAIN);
    tu_wait(m, PC_MAP_SUSPENDED);
    struct pc_map_info in = tu_info(m);
    assert_true(has(in.invalid, "No space left on device"));
    assert_int_equal(in.grains_split, NC - 1);
    tu_check_offline(f, t);
    tu_check_all(f, s);
    io_fault_clear();
    mu_restart(f, NULL);
    m = mu_recover(f, "m", s, t, GRAIN, PC_DURABILITY_STRICT);
    in = tu_info(m);
    assert_int_equal(in.state, PC_MAP_SUSPENDED);
    assert_true(has(in.invalid, "No space left on device"));
    assert_int_equal(in.grains_split, NC - 1);
}

/*
 * A partial write to the newer target needs the older target to take its
 * copy first (I3); that copy fails: the older mapping is suspended (and
 * stays so over a restart) and the client's write goes through, since
 * nothing older reads through the newer target any more.
 */
static void test_fault_older_target_eio(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct two w;

    two_make(f, &w);
    mu_fault(w.t1->path, "write:EIO");
    tu_write(f, w.t2, 5 * G + BLK, BLK);
    tu_wait(w.older, PC_MAP_SUSPENDED);
    struct pc_map_info in = tu_info(w.older);
    assert_true(has(in.invalid, "a write to target t1 or to its metadata failed: "
                                "Input/output error"));
    tu_check_offline(f, w.t1);
    in = tu_info(w.newer);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_int_equal(in.grains_split, 1);
    tu_check_all(f, w.t2);
    tu_check_all(f, w.s);
    io_fault_clear();
    mu_restart(f, NULL);
    two_recover(f, &w);
    assert_int_equal(tu_info(w.older).state, PC_MAP_SUSPENDED);
    assert_int_equal(tu_info(w.newer).state, PC_MAP_COPYING);
    tu_check_offline(f, w.t1);
    tu_check_all(f, w.t2);
}

/*
 * A background copy whose source read fails pauses the copy (bgcopy.c:
 * "background work paused") and nothing else: the mapping stays copying,
 * its target online; a rate change kicks it and the copy completes.
 */
static void test_fault_bgcopy_source_read_eio(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);
    tu_start(m, s, t);
    mu_fault(s->path, "read:EIO");
    uint64_t inj = io_fault_injected();
    assert_int_equal(pc_map_set_copy_rate(m, PC_RATE_UNLIMITED, &err), 0);
    for (int i = 0; i < 3000 && io_fault_injected() == inj; i++)
        usleep(1000);
    assert_true(io_fault_injected() > inj);
    mu_wait_stable(m);
    struct pc_map_info in = tu_info(m);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_string_equal(in.invalid, "");
    assert_true(in.target_online);
    assert_false(in.complete);
    io_fault_clear();
    tu_check_all(f, t);
    assert_int_equal(pc_map_set_copy_rate(m, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m, PC_MAP_IDLE_OR_COPIED);
    tu_check_all(f, t);
}

/*
 * Background copy whose target fails: suspended the same way, through a
 * restart; the source never changes.
 */
static void test_fault_bgcopy_target_eio(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    struct pc_error err = { 0 };

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);
    tu_start(m, s, t);
    tu_write(f, s, 0, G);
    mu_fault(t->path, "write:EIO");
    assert_int_equal(pc_map_set_copy_rate(m, PC_RATE_UNLIMITED, &err), 0);
    tu_wait(m, PC_MAP_SUSPENDED);
    struct pc_map_info in = tu_info(m);
    assert_true(has(in.invalid, "a write to target tgt or to its metadata failed: "
                                "Input/output error"));
    assert_int_equal(in.grains_split, 1);
    tu_check_offline(f, t);
    tu_check_all(f, s);
    io_fault_clear();
    mu_restart(f, NULL);
    m = mu_recover(f, "m", s, t, G, PC_DURABILITY_STRICT);
    pc_engine_resume(f->e);
    in = tu_info(m);
    assert_int_equal(in.state, PC_MAP_SUSPENDED);
    assert_true(has(in.invalid, "Input/output error"));
    tu_check_offline(f, t);
    tu_check_all(f, s);
}

/* Without a metadata file a failing target suspends its mapping too. */
static void test_fault_target_eio_no_meta(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);

    tu_write(f, s, 0, SIZE);
    struct pc_map *m = tu_map(f, "m", s, t, G, 0, 0);
    tu_start(m, s, t);
    mu_fault(t->path, "write:EIO");
    tu_write(f, s, 3 * G, G);
    tu_wait(m, PC_MAP_SUSPENDED);
    assert_true(has(tu_info(m).invalid, "Input/output error"));
    tu_check_offline(f, t);
    tu_check_all(f, s);
}

/*
 * A source read that fails during a copy-on-write: the client's write
 * fails and nothing else changes — no bit, no suspension, the source keeps
 * its old bytes; the next write goes through.
 */
static void test_fault_source_read_eio(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    uint8_t *buf = pc_buf_alloc_any(BLK);

    assert_non_null(buf);
    tu_write(f, s, 0, SIZE);
    struct pc_map *m = mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);
    tu_start(m, s, t);
    mu_fault(s->path, "read:EIO:0:1");
    uint64_t inj = io_fault_injected();
    memset(buf, 0x5c, BLK);
    assert_int_equal(tu_io(f, PC_IO_WRITE, s, 3 * G + BLK, BLK, buf), -EIO);
    assert_int_equal(io_fault_injected(), inj + 1);
    pc_buf_free_any(buf, BLK);
    struct pc_map_info in = tu_info(m);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_string_equal(in.invalid, "");
    assert_true(in.target_online);
    assert_int_equal(in.grains_split, 0);
    tu_check_all(f, s);
    tu_check_all(f, t);
    tu_write(f, s, 3 * G + BLK, BLK);
    assert_int_equal(tu_info(m).grains_split, 1);
    tu_check_all(f, s);
    tu_check_all(f, t);
    mu_restart(f, NULL);
    m = mu_recover(f, "m", s, t, G, PC_DURABILITY_STRICT);
    in = tu_info(m);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_string_equal(in.invalid, "");
    assert_int_equal(in.grains_split, 1);
    tu_check_all(f, t);
}

/*
 * Control calls that must write the metadata fail with a message naming
 * the mapping and the file, and leave nothing half done: a create leaves no
 * mapping and no file; a start leaves the mapping not copying; a recovery
 * leaves the file as it was, so the next attempt recovers every bit.
 */
static void test_fault_control_calls(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *s = tu_vol_new(f, "src", SIZE), *t = tu_vol_new(f, "tgt", SIZE);
    struct pc_error err = { 0 };
    char path[4200];

    tu_write(f, s, 0, SIZE);
    mu_meta_path(t, "m", path, sizeof path);
    struct pc_map_opts o = {
        .name = "m", .source = s->v, .target = t->v, .grain_size = G, .copy_rate = 0,
        .clean_rate = -1, .meta_path = path,
    };
    struct pc_map *m = NULL;

    /* create, in a directory that does not exist */
    char nodir[4300];
    snprintf(nodir, sizeof nodir, "%s/nodir/m.meta", f->dir);
    o.meta_path = nodir;
    assert_int_equal(pc_map_create(f->e, &o, &m, &err), -ENOENT);
    assert_true(has(err.msg, nodir) && has(err.msg, "mapping m"));
    assert_null(pc_map_find(f->e, "m"));
    o.meta_path = path;

    /* create */
    mu_fault(path, "write:ENOSPC");
    assert_int_equal(pc_map_create(f->e, &o, &m, &err), -ENOSPC);
    assert_true(has(err.msg, path) && has(err.msg, "mapping m") &&
                has(err.msg, "No space left on device"));
    assert_null(pc_map_find(f->e, "m"));
    assert_false(mu_exists(path));
    io_fault_clear();
    m = mu_map(f, "m", s, t, G, 0, PC_DURABILITY_STRICT);   /* the target is free */

    /* start */
    mu_fault(path, "sync:EIO");
    assert_int_equal(pc_map_start(m, &err), -EIO);
    assert_true(has(err.msg, "mapping m") && has(err.msg, path) && has(err.msg, "not started"));
    assert_int_not_equal(tu_info(m).state, PC_MAP_COPYING);
    io_fault_clear();
    tu_start(m, s, t);
    tu_write(f, s, 5 * G, G);
    tu_write(f, s, 9 * G, BLK);

    /* recovery: its own checkpoint cannot be written */
    mu_restart(f, NULL);
    mu_fault(path, "write:EIO");
    o.source = s->v;
    o.target = t->v;
    o.recover = true;
    m = NULL;
    assert_int_equal(pc_map_create(f->e, &o, &m, &err), -EIO);
    assert_true(has(err.msg, "mapping m") && has(err.msg, path));
    assert_null(pc_map_find(f->e, "m"));
    io_fault_clear();
    char aside[4300];
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    assert_false(mu_exists(aside));
    m = mu_recover(f, "m", s, t, G, PC_DURABILITY_STRICT);
    struct pc_map_info in = tu_info(m);
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_string_equal(in.invalid, "");
    assert_int_equal(in.grains_split, 2);
    tu_check_all(f, t);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        BOTH(test_fault_target_eio),
        BOTH(test_fault_meta_enospc),
        BOTH(test_fault_meta_enospc_kept),
        BOTH(test_fault_meta_sync_eio),
        BOTH(test_fault_meta_enospc_once),
        BOTH(test_fault_unrecordable_failure),
        BOTH(test_fault_checkpoint_enospc),
        BOTH(test_fault_older_target_eio),
        BOTH(test_fault_bgcopy_source_read_eio),
        BOTH(test_fault_bgcopy_target_eio),
        BOTH(test_fault_target_eio_no_meta),
        BOTH(test_fault_source_read_eio),
        BOTH(test_fault_control_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
