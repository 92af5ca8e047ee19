/* SPDX-License-Identifier: MIT */
/*
 * engine/map.c — mappings: the state machine, the chain, the point in time.
 *
 * States (Spectrum Virtualize's), with the function that moves each edge:
 *
 *                 pc_map_create
 *                       |
 *                       v
 *   +-----------> idle_or_copied ------------------------------+
 *   |                   | pc_map_prepare (cleaning first if     |
 *   |                   v  still in its chain: older mappings   |
 *   |               preparing  resolve through its target)      |
 *   |                   | map_clean_complete / at once          |
 *   |                   v                                       |
 *   |               prepared --------- pc_map_stop ------+      |
 *   |                   | pc_map_start (the point in time)|     |
 *   |                   v                                 v     |
 *   | map_copy_complete copying --- pc_map_stop ---> stopping   |
 *   +-------------------+                               |       |
 *   |  (complete)             map_clean_complete        |       |
 *   +---------------------------------------------------+       |
 *                                      (incomplete)     v       |
 *                                                    stopped ---+ prepare/start
 *
 *   idle_or_copied  target is a plain volume (a whole image if copied); the
 *                   mapping may stay in its chain while older mappings
 *                   resolve through its target (it leaves when it is oldest).
 *   preparing/prepared  target offline: its contents are about to be replaced.
 *   copying         in the chain; target = source at start + target writes.
 *   stopping        in the chain, bits frozen (cow.c I4), cleaning; target
 *                   offline unless the copy was complete.
 *   stopped         out of the chain; target offline (an incomplete image).
 *   suspended       a write to the target or its metadata failed (map_fail):
 *                   in the chain, no new copies, target offline; stop it.
 *
 * Invariants
 *   M1  Chains change only under a write hold on the source: hold, drain
 *       the source's writes in flight (and the target's, at a start),
 *       publish the new snapshot, release.  Only those writes act on the
 *       chain's shape (copy-on-write picks the newest mapping); target
 *       writes, reads and background copy are unaffected by a mapping joining
 *       at the new end or a cleaned one leaving.  The old snapshot is freed
 *       after a grace period.
 *   M2  A mapping is in its source's chain iff in_chain; in_chain implies
 *       state is copying, stopping, idle_or_copied (with older mappings
 *       still in the chain), preparing (cleaning before a restart) or
 *       suspended (its target failed: no new copies, target offline).
 *   M3  Start publishes the chain before the state, and route_of (cow.c)
 *       reads the state before the chain: a target seen copying is found in
 *       its chain.
 *   M5  Incremental (cow.c I6, meta.c D6): a mapping's difference bitmap
 *       holds every grain written on its source or target since its last
 *       start, while diff_valid.  A start whose last copy was complete
 *       builds its split bitmap as "all but the changed grains" before the
 *       hold, fixes up the few changed since under it, and swaps in an
 *       empty difference bitmap there (map_diff_switch_locked): O(1) but for
 *       grains changed in that window.  Any other start copies everything.
 *   M4  All mappings of one source share a grain size; a volume is the
 *       target of at most one mapping; no cascades (a target is never a
 *       source, a source never a target) but one: a restore mapping T -> S
 *       made while S -> T exists, of the same grain size (restore.c), which
 *       never joins a chain and starts only as a restore.
 *
 * Context
 *   Control calls: non-worker threads; they take ctl_lock and may sleep
 *   (grace periods, waits for cleaning, which release ctl_lock).  Callers
 *   must not delete a mapping while another call on it is in progress.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"

static const char *const state_names[] = {
    [PC_MAP_IDLE_OR_COPIED] = "idle_or_copied",
    [PC_MAP_PREPARING] = "preparing",
    [PC_MAP_PREPARED] = "prepared",
    [PC_MAP_COPYING] = "copying",
    [PC_MAP_STOPPING] = "stopping",
    [PC_MAP_STOPPED] = "stopped",
    [PC_MAP_SUSPENDED] = "suspended",
};

const char *pc_map_state_name(enum pc_map_state s)
{
    if ((unsigned)s < sizeof state_names / sizeof state_names[0])
        return state_names[s];
    return "unknown";
}

static bool valid_rate(int r)
{
    return (r >= 0 && r <= 150) || r == PC_RATE_UNLIMITED;
}

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Every state change goes through here, under ctl_lock. */
static void set_state_locked(struct pc_map *m, enum pc_map_state s)
{
    atomic_store_explicit(&m->state, s, memory_order_release);
    pthread_cond_broadcast(&m->e->state_cond);
}

static __attribute__((unused)) bool map_check(const struct pc_map *m)
{
    int s = map_state(m);
    if (atomic_load(&m->in_chain))
        return s == PC_MAP_COPYING || s == PC_MAP_STOPPING || s == PC_MAP_SUSPENDED ||
               s == PC_MAP_IDLE_OR_COPIED || s == PC_MAP_PREPARING;   /* M2 */
    if (atomic_load(&m->restoring))
        return s == PC_MAP_COPYING || s == PC_MAP_STOPPED;        /* restore.c */
    return s != PC_MAP_COPYING && s != PC_MAP_STOPPING;
}

/* R3 (restore.c): while S is being restored, its chain keeps its shape. */
static int refuse_while_restoring(struct pc_map *m, const char *what, struct pc_error *err)
{
    struct pc_map *r = atomic_load(&m->src->restore_by);
    if (!r || r == m || map_state(r) != PC_MAP_COPYING)
        return 0;
    pc_error_set(err, -EBUSY, "cannot %s mapping %s while its source %s is being restored by "
                 "mapping %s; wait for the restore to finish or stop it", what, m->name,
                 m->src->name, r->name);
    return -EBUSY;
}

/* ------------------------------------------------------------------------
 * Incremental: difference bitmaps (M5). */

/* Add m to (or, add false, take it off) v's diffset, under a write hold on
 * v so no write that missed the new set is still in flight after. */
static int diffset_change_locked(struct pc_volume *v, struct pc_map *m, bool add)
{
    struct diffset *old = atomic_load(&v->diffs), *ds = NULL;
    unsigned n = old ? old->n : 0, j = 0;
    if (add || n > 1) {
        ds = malloc(sizeof *ds + (n + 1) * sizeof ds->maps[0]);
        if (!ds)
            return -ENOMEM;
        for (unsigned i = 0; i < n; i++)
            if (old->maps[i] != m)
                ds->maps[j++] = old->maps[i];
        if (add)
            ds->maps[j++] = m;
        ds->n = j;
    }
    atomic_store(&v->hold, 1);
    volume_drain_writes(v);
    atomic_store_explicit(&v->diffs, ds, memory_order_release);
    volume_hold_release(v);
    srcu_sync(v->e);
    free(old);
    return 0;
}

/* Before the hold: the split bitmap of an incremental start, every grain
 * but the changed ones.  O(changed grains) plus the set pages. */
static int diff_build_split(struct pc_map *m, struct bitmap *fresh)
{
    struct bitmap *d = atomic_load(&m->diff[atomic_load(&m->dcur)]);
    m->diff_snap = bitmap_count(d);          /* before the walk: bits only grow */
    int r = bitmap_set_range(fresh, 0, m->grains);
    for (uint64_t g = bitmap_find_next_set(d, 0); !r && g < m->grains;) {
        uint64_t h = bitmap_find_next_unset(d, g);
        bitmap_clear_range(fresh, g, h - g);
        g = h < m->grains ? bitmap_find_next_set(d, h) : h;
    }
    return r;
}

/* Before the hold (pc_map_start and group starts): decide whether this
 * start is incremental, and build what it needs.  0 or -ENOMEM. */
int map_diff_prepare(struct pc_map *m, struct bitmap *fresh)
{
    int r = 0;
    /* M5: a restart after a complete copy copies only what changed since. */
    m->incr_start = m->incremental && atomic_load(&m->complete) &&
                    atomic_load(&m->diff_valid);
    m->diff_fresh = NULL;
    if (!m->incremental)
        return 0;
    m->diff_fresh = bitmap_create(m->grains, &r);
    if (m->diff_fresh && m->incr_start)
        r = diff_build_split(m, fresh);
    if (!m->diff_fresh || r < 0) {
        map_diff_release(m);
        return -ENOMEM;
    }
    return 0;
}

/* After the start's grace period, or when it failed: free what the switch
 * replaced, or what was built for it. */
void map_diff_release(struct pc_map *m)
{
    bitmap_destroy(m->diff_fresh);
    m->diff_fresh = NULL;
    if (m->diff_old) {
        meta_barrier(m);           /* no checkpoint reads it any more */
        bitmap_destroy(m->diff_old);
        m->diff_old = NULL;
    }
}

/*
 * Under the start's hold, writes to source and target drained: the grains
 * changed since diff_build_split are unsplit in the new split bitmap too,
 * and recording moves to a fresh bitmap.  The closed one stays as
 * diff[!dcur] (meta.c regions).
 */
void map_diff_switch_locked(struct pc_map *m, struct bitmap *split)
{
    if (!m->incremental || !m->diff_fresh)
        return;
    unsigned cur = atomic_load(&m->dcur);
    struct bitmap *d = atomic_load(&m->diff[cur]);
    if (m->incr_start && bitmap_count(d) != m->diff_snap) {
        for (uint64_t g = bitmap_find_next_set(d, 0); g < m->grains;) {
            uint64_t h = bitmap_find_next_unset(d, g);
            bitmap_clear_range(split, g, h - g);
            g = h < m->grains ? bitmap_find_next_set(d, h) : h;
        }
    }
    m->diff_old = atomic_load(&m->diff[!cur]);
    atomic_store_explicit(&m->diff[!cur], m->diff_fresh, memory_order_release);
    atomic_store_explicit(&m->dcur, !cur, memory_order_release);
    m->diff_fresh = NULL;
    m->diff_base = m->incr_start;
    atomic_store_explicit(&m->diff_valid, true, memory_order_release);
}

/* ------------------------------------------------------------------------
 * Chains (M1). */

static struct chain *chain_alloc(unsigned n, uint32_t shift)
{
    struct chain *c = malloc(sizeof *c + n * sizeof c->maps[0]);
    if (c) {
        c->n = n;
        c->grain_shift = shift;
    }
    return c;
}

/* Replace src's chain with c (NULL = none) under a write hold on src; m is
 * the mapping leaving (or rejoining, which sets in_chain after).  Starts
 * publish in map_start_many_locked. */
static void chain_publish_locked(struct pc_volume *src, struct chain *c, struct pc_map *m)
{
    struct pc_engine *e = src->e;
    struct chain *old = atomic_load(&src->chain);

    atomic_store(&src->hold, 1);
    volume_drain_writes(src);                       /* writes in flight drain */
    atomic_store_explicit(&src->chain, c, memory_order_release);
    atomic_store(&m->in_chain, false);
    volume_hold_release(src);

    srcu_sync(e);                                   /* nobody reads old now */
    free(old);
}

static int chain_remove_locked(struct pc_map *m)
{
    struct pc_volume *src = m->src;
    struct chain *old = atomic_load(&src->chain), *c = NULL;
    int k = chain_index(old, m);
    if (PC_NEVER(k < 0))
        return 0;
    if (old->n > 1) {
        c = chain_alloc(old->n - 1, old->grain_shift);
        if (!c)
            return -ENOMEM;
        unsigned j = 0;
        for (unsigned i = 0; i < old->n; i++)
            if (old->maps[i] != m)
                c->maps[j++] = old->maps[i];
    }
    chain_publish_locked(src, c, m);
    meta_write_state(m);            /* out of the chain, durably */
    return 0;
}

/*
 * A copied mapping stays in its chain while older ones may resolve through
 * its target; once it is the oldest, nothing does and it leaves.
 */
static void chain_trim_locked(struct pc_volume *src)
{
    for (;;) {
        struct chain *c = atomic_load(&src->chain);
        if (!c || c->n == 0)
            return;
        struct pc_map *oldest = c->maps[0];
        if (map_state(oldest) != PC_MAP_IDLE_OR_COPIED)
            return;
        if (chain_remove_locked(oldest) < 0)
            return;       /* out of memory: it stays; harmless, retried next trim */
    }
}

/* ------------------------------------------------------------------------
 * Janitor jobs: background work finished (bgcopy.c). */

void map_copy_complete(struct pc_engine *e, struct janitor_job *job)
{
    struct pc_map *m = job->map;
    (void)e;
    /* A report from an older walk (the mapping was stopped, restarted or
     * had its rate changed since) says nothing about now. */
    if (m->deleted || job->gen != atomic_load(&m->gen) || map_state(m) != PC_MAP_COPYING ||
        bitmap_find_next_unset(m->bits, 0) < m->grains)
        return;
    atomic_store(&m->complete, true);
    set_state_locked(m, PC_MAP_IDLE_OR_COPIED);
    if (atomic_load(&m->restoring)) {
        restore_detach_locked(m);            /* writes the state */
        pc_log("mapping %s: restore of %s complete", m->name, m->tgt->name);
        return;
    }
    meta_write_state(m);
    chain_trim_locked(m->src);
}

void map_clean_complete(struct pc_engine *e, struct janitor_job *job)
{
    struct pc_map *m = job->map;
    int s = map_state(m);
    (void)e;
    if (m->deleted || job->gen != atomic_load(&m->gen) || !atomic_load(&m->in_chain) ||
        (s != PC_MAP_STOPPING && s != PC_MAP_PREPARING))
        return;
    if (chain_remove_locked(m) < 0) {
        pc_log("mapping %s: out of memory leaving its chain; still %s",
               m->name, pc_map_state_name(s));
        return;
    }
    if (s == PC_MAP_PREPARING)
        set_state_locked(m, PC_MAP_PREPARED);
    else
        set_state_locked(m, atomic_load(&m->complete) ? PC_MAP_IDLE_OR_COPIED : PC_MAP_STOPPED);
    if (map_state(m) == PC_MAP_STOPPED)
        atomic_store(&m->diff_valid, false);    /* M5: the next start copies everything */
    meta_write_state(m);
    chain_trim_locked(m->src);
}

/* ------------------------------------------------------------------------
 * Failures (map_fail in internal.h). */

static void fail_resume_msg(struct io_msg *msg)
{
    struct meta_req *rq = msg->priv;
    rq->done(rq);
}

void map_fail(struct pc_map *m, int err, struct meta_req *rq)
{
    int zero = 0;
    atomic_compare_exchange_strong(&m->fail_err, &zero, err);
    rq->m = m;
    rq->err = 0;
    if (m->meta) {
        meta_fail(rq);           /* marks m failed once that is durable (meta.c) */
        return;
    }
    map_mark_failed(m);
    engine_post(rq->w, &rq->msg, fail_resume_msg, rq);
}

void map_mark_failed(struct pc_map *m)
{
    if (!atomic_exchange(&m->failed, true))
        janitor_queue(m->e, map_failed_job, m, atomic_load(&m->gen));
}

void map_failed_job(struct pc_engine *e, struct janitor_job *job)
{
    struct pc_map *m = job->map;
    (void)e;
    if (m->deleted || !map_failed(m))
        return;
    int s = map_state(m), err = atomic_load(&m->fail_err);
    if (s == PC_MAP_SUSPENDED)
        return;
    snprintf(m->invalid, sizeof m->invalid, "suspended: a write to target %s or to its "
             "metadata failed: %s", m->tgt->name, strerror(-err));
    if (s == PC_MAP_COPYING || s == PC_MAP_PREPARING || s == PC_MAP_PREPARED ||
        (s == PC_MAP_IDLE_OR_COPIED && atomic_load(&m->in_chain)))
        set_state_locked(m, PC_MAP_SUSPENDED);
    meta_write_state(m);
    pc_log("mapping %s: %s; source %s keeps serving, target %s is offline (stop or delete "
           "the mapping)", m->name, m->invalid, m->src->name, m->tgt->name);
}

/* ------------------------------------------------------------------------
 * Create. */

struct pc_map *pc_map_find(struct pc_engine *e, const char *name)
{
    for (struct pc_map *m = e->maps; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

static int grain_shift_of(uint32_t grain)
{
    if (grain < PC_GRAIN_MIN || grain > PC_GRAIN_MAX || (grain & (grain - 1)))
        return -1;
    return __builtin_ctz(grain);
}

/*
 * A recovered mapping rejoins its source's chain at its place by start
 * sequence (the daemon recreates mappings in any order).  Nothing runs on
 * the chain yet: pc_engine_resume starts copies and cleaning once every
 * mapping is back.
 */
static int chain_rejoin_locked(struct pc_map *m)
{
    struct pc_volume *src = m->src;
    struct chain *old = atomic_load(&src->chain);
    unsigned n = old ? old->n : 0, j = 0;
    struct chain *c = chain_alloc(n + 1, m->grain_shift);
    if (!c)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        if (j == i && old->maps[i]->start_seq > m->start_seq)
            c->maps[j++] = m;
        c->maps[j++] = old->maps[i];
    }
    if (j == n)
        c->maps[j++] = m;
    int s = map_state(m);
    chain_publish_locked(src, c, m);
    atomic_store(&m->in_chain, true);
    set_state_locked(m, (enum pc_map_state)s);
    return 0;
}

/* Create or recover m's metadata file (pc_map_opts.meta_path). */
static int map_meta_open_locked(struct pc_map *m, const struct pc_map_opts *o, bool *rejoin,
                                struct pc_error *err)
{
    bool strict = o->durability != PC_DURABILITY_NONE;
    struct meta_recovered rec;
    char why[200];

    if (!o->recover)
        return meta_create(m, o->meta_path, strict, err);
    if (meta_recover(m, o->meta_path, strict, &rec, why, sizeof why) == 0) {
        atomic_store(&m->state, rec.state);
        atomic_store(&m->complete, rec.complete);
        atomic_store(&m->copy_rate, rec.copy_rate);
        atomic_store(&m->clean_rate, rec.clean_rate);
        m->start_seq = rec.start_seq;
        m->start_realtime_ns = rec.start_realtime_ns;
        m->start_hold_ns = rec.start_hold_ns;
        atomic_store(&m->dcur, rec.diff_cur);
        atomic_store(&m->diff_valid, m->incremental && rec.diff_valid);
        m->diff_base = rec.diff_base;
        *rejoin = rec.in_chain;
        atomic_store(&m->restoring, rec.restoring);
        if (rec.in_chain && rec.state != PC_MAP_COPYING && rec.state != PC_MAP_STOPPING &&
            rec.state != PC_MAP_IDLE_OR_COPIED && rec.state != PC_MAP_SUSPENDED)
            *rejoin = false;
        if (rec.state == PC_MAP_SUSPENDED || rec.reason[0]) {
            atomic_store(&m->failed, true);
            atomic_store(&m->fail_err, -EIO);
            snprintf(m->invalid, sizeof m->invalid, "%s", rec.reason[0] ? rec.reason
                     : "suspended before the restart");
        }
        int r = meta_recovered_commit(m);
        if (r < 0) {
            pc_error_set(err, r, "mapping %s: cannot write its metadata %s: %s",
                         m->name, o->meta_path, strerror(-r));
            meta_close(m, false);
            return r;
        }
        pc_log("mapping %s: recovered %s%s from %s (%llu grains split, %llu journal blocks "
               "replayed)", m->name, pc_map_state_name(rec.state),
               rec.complete ? ", copy complete" : "", o->meta_path,
               (unsigned long long)bitmap_count(m->bits), (unsigned long long)rec.replayed);
        return 0;
    }
    /* The file cannot vouch for the target: keep it for inspection, start a
     * fresh one, and bring the mapping back stopped with its target offline. */
    char aside[4200];
    snprintf(aside, sizeof aside, "%s.corrupt", o->meta_path);
    if (access(o->meta_path, F_OK) == 0 && rename(o->meta_path, aside) < 0) {
        int r = -errno;
        pc_error_set(err, r, "mapping %s: %s; and cannot move it aside: %s",
                     m->name, why, strerror(-r));
        return r;
    }
    snprintf(m->invalid, sizeof m->invalid, "%s", why);
    pc_log("mapping %s: cannot vouch for target %s: %s; it comes back stopped (target "
           "offline), the old metadata kept as %s", m->name, m->tgt->name, why, aside);
    atomic_store(&m->state, PC_MAP_STOPPED);
    atomic_store(&m->complete, false);
    return meta_create(m, o->meta_path, strict, err);
}

int pc_map_create(struct pc_engine *e, const struct pc_map_opts *o,
                  struct pc_map **out, struct pc_error *err)
{
    struct pc_volume *s = o->source, *t = o->target;
    uint32_t grain = o->grain_size ? o->grain_size : PC_GRAIN_DEFAULT;
    int copy_rate = o->copy_rate == -1 ? PC_RATE_DEFAULT : o->copy_rate;
    int clean_rate = o->clean_rate == -1 ? PC_RATE_DEFAULT : o->clean_rate;
    int shift = grain_shift_of(grain);
    char name[64];
    struct pc_map *m;
    int r = -EINVAL;

    if (!s || !t) {
        pc_error_set(err, -EINVAL, "a mapping needs a source and a target volume");
        return -EINVAL;
    }
    if (shift < 0) {
        pc_error_set(err, -EINVAL, "grain size %u is not a power of two from 4 KiB to 1 MiB", grain);
        return -EINVAL;
    }
    if (o->initial_state != PC_MAP_IDLE_OR_COPIED && o->initial_state != PC_MAP_STOPPED) {
        pc_error_set(err, -EINVAL, "a mapping can be created only idle_or_copied or stopped, not %s",
                     pc_map_state_name(o->initial_state));
        return -EINVAL;
    }
    if (!valid_rate(copy_rate)) {
        pc_error_set(err, -EINVAL, "copy rate %d is not 0-150 or unlimited", copy_rate);
        return -EINVAL;
    }
    if (!valid_rate(clean_rate)) {
        pc_error_set(err, -EINVAL, "clean rate %d is not 0-150 or unlimited", clean_rate);
        return -EINVAL;
    }
    pthread_mutex_lock(&e->ctl_lock);
    if (o->name) {
        if (!engine_name_ok(o->name)) {
            pc_error_set(err, -EINVAL, "mapping name '%s' is not " ENGINE_NAME_RULE, o->name);
            goto out;
        }
        snprintf(name, sizeof name, "%s", o->name);
    } else {
        do
            snprintf(name, sizeof name, "fcmap%u", e->next_map_id++);
        while (pc_map_find(e, name));
    }
    if (pc_map_find(e, name)) {
        r = -EEXIST;
        pc_error_set(err, r, "mapping %s already exists", name);
        goto out;
    }
    if (s == t) {
        pc_error_set(err, r, "volume %s cannot be both source and target", s->name);
        goto out;
    }
    if (s->size != t->size) {
        pc_error_set(err, r, "source %s is %llu bytes but target %s is %llu; they must match",
                     s->name, (unsigned long long)s->size, t->name, (unsigned long long)t->size);
        goto out;
    }
    if (atomic_load(&t->tgt_map)) {
        r = -EBUSY;
        pc_error_set(err, r, "volume %s is already the target of mapping %s",
                     t->name, atomic_load(&t->tgt_map)->name);
        goto out;
    }
    /* The one cascade allowed: a mapping back from a target to its source,
     * for restores (restore.c). */
    struct pc_map *partner = NULL;
    for (struct pc_map *p = e->maps; p; p = p->next)
        if (p->src == t && p->tgt == s && !p->partner)
            partner = p;
    if (partner && partner->grain_shift != (uint32_t)shift) {
        pc_error_set(err, r, "restore mapping %s -> %s must have the grain size of mapping %s "
                     "(%u KiB)", s->name, t->name, partner->name,
                     (1u << partner->grain_shift) >> 10);
        goto out;
    }
    if (partner && o->incremental) {
        pc_error_set(err, r, "restore mapping %s -> %s cannot be incremental (not supported yet)",
                     s->name, t->name);
        goto out;
    }
    struct pc_map *s_tgt = atomic_load(&s->tgt_map);
    if (!partner && (t->nmaps_as_source || (s_tgt && !s_tgt->reverse))) {
        r = -EOPNOTSUPP;
        pc_error_set(err, r, "cascaded mappings are not supported yet: %s is %s",
                     t->nmaps_as_source ? t->name : s->name,
                     t->nmaps_as_source ? "the source of another mapping"
                                        : "the target of another mapping");
        goto out;
    }
    if (s->nmaps_as_source >= PC_MAX_TARGETS) {
        r = -ENOSPC;
        pc_error_set(err, r, "source %s already has %u mappings, the most allowed",
                     s->name, PC_MAX_TARGETS);
        goto out;
    }
    for (struct pc_map *o2 = e->maps; o2; o2 = o2->next) {
        if (o2->src == s && o2->grain_shift != (uint32_t)shift) {
            pc_error_set(err, r, "source %s already has mappings with %u KiB grains; "
                         "all its mappings must share one grain size",
                         s->name, (1u << o2->grain_shift) >> 10);
            goto out;
        }
    }
    if (o->group && o->group->nmaps >= PC_GROUP_MAX_MAPS) {
        r = -ENOSPC;
        pc_error_set(err, r, "consistency group %s already has %u mappings, the most allowed",
                     o->group->name, PC_GROUP_MAX_MAPS);
        goto out;
    }
    m = calloc(1, sizeof *m);
    if (!m) {
        r = -ENOMEM;
        pc_error_set(err, r, "out of memory creating mapping %s", name);
        goto out;
    }
    m->e = e;
    m->id = e->next_map_id++;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->src = s;
    m->tgt = t;
    m->grain_shift = (uint32_t)shift;
    m->grains = (s->size + grain - 1) >> shift;
    m->bits = bitmap_create(m->grains, &r);
    if (!m->bits) {
        free(m);
        pc_error_set(err, r, "out of memory for the bitmap of mapping %s", name);
        goto out;
    }
    atomic_store(&m->state, o->initial_state);
    atomic_store(&m->complete, o->initial_state == PC_MAP_IDLE_OR_COPIED && o->initial_complete);
    atomic_store(&m->copy_rate, copy_rate);
    atomic_store(&m->clean_rate, clean_rate);
    m->incremental = o->incremental;
    if (partner) {
        m->reverse = true;
        m->partner = partner;
        m->solo = calloc(1, sizeof *m->solo);
        if (!m->solo) {
            bitmap_destroy(m->bits);
            free(m);
            r = -ENOMEM;
            pc_error_set(err, r, "out of memory creating mapping %s", name);
            goto out;
        }
        m->solo->grain_shift = m->grain_shift;
    }
    if (m->incremental) {
        for (unsigned i = 0; i < 2 && r >= 0; i++) {
            struct bitmap *d = bitmap_create(m->grains, &r);
            atomic_store(&m->diff[i], d);
        }
        if (r >= 0 && (r = diffset_change_locked(s, m, true)) >= 0 &&
            (r = diffset_change_locked(t, m, true)) < 0)
            diffset_change_locked(s, m, false);
        if (r < 0) {
            bitmap_destroy(atomic_load(&m->diff[0]));
            bitmap_destroy(atomic_load(&m->diff[1]));
            bitmap_destroy(m->bits);
            free(m->solo);
            free(m);
            pc_error_set(err, r, "out of memory for the difference bitmaps of mapping %s", name);
            goto out;
        }
    }
    bool rejoin = false;
    if (o->meta_path) {
        r = map_meta_open_locked(m, o, &rejoin, err);
        if (r < 0) {
            if (m->incremental) {
                diffset_change_locked(s, m, false);
                diffset_change_locked(t, m, false);
                bitmap_destroy(atomic_load(&m->diff[0]));
                bitmap_destroy(atomic_load(&m->diff[1]));
            }
            bitmap_destroy(m->bits);
            free(m);
            goto out;
        }
    }
    if (o->group) {
        m->group = o->group;
        m->group_seq = ++o->group->next_seq;
        o->group->nmaps++;
    }
    if (partner) {
        partner->partner = m;
        if (atomic_load(&m->restoring)) {
            /* Recovered mid-restore: S reads through it again (or, stopped,
             * stays offline). */
            atomic_store(&t->restore_by, m);
            atomic_store(&s->restore_from, m);
        }
        rejoin = false;
    } else if (atomic_load(&m->restoring)) {
        /* A restore mapping whose partner did not come back: nothing says
         * where S's unrestored grains are, so S stays offline until this
         * mapping is deleted. */
        atomic_store(&t->restore_by, m);
        atomic_store(&m->state, PC_MAP_STOPPED);
        atomic_store(&m->complete, false);
        snprintf(m->invalid, sizeof m->invalid, "it was restoring %.60s from %.60s, but the "
                 "mapping the other way did not come back", t->name, s->name);
        rejoin = false;
    }
    atomic_store(&t->tgt_map, m);
    s->nmaps_as_source++;
    m->next = e->maps;
    e->maps = m;
    if (rejoin && chain_rejoin_locked(m) < 0) {
        /* Cannot happen short of memory: the mapping stays, offline. */
        snprintf(m->invalid, sizeof m->invalid, "out of memory rejoining its source's chain");
        set_state_locked(m, PC_MAP_STOPPED);
        atomic_store(&m->complete, false);
    }
    assert(map_check(m));
    if (out)
        *out = m;
    r = 0;
out:
    pthread_mutex_unlock(&e->ctl_lock);
    return r;
}

/* ------------------------------------------------------------------------
 * Prepare, start, stop. */

static int wait_while_locked(struct pc_map *m, enum pc_map_state s)
{
    while (map_state(m) == (int)s)
        pthread_cond_wait(&m->e->state_cond, &m->e->ctl_lock);
    return 0;
}

/*
 * Begin cleaning m out of its chain (it is idle_or_copied or copying).
 * Ordering (I4): once the state says stopping, no new operation picks m for
 * a copy; the grace period then waits out those that picked it before.
 * Only after that are m's bits frozen, and only then may cleaning walk them
 * — a walk begun earlier (a background extent finishing during the grace
 * period runs the driver) would pass grains whose bits were set behind it.
 */
static void begin_stop_locked(struct pc_map *m, enum pc_map_state s)
{
    atomic_store(&m->frozen, false);
    set_state_locked(m, s);
    meta_write_state(m);       /* a restart resumes the cleaning */
    srcu_sync(m->e);
    atomic_store(&m->frozen, true);
    atomic_fetch_add(&m->gen, 1);      /* the walk starts from grain 0 */
    bgcopy_kick(m);
}

int map_prepare_locked(struct pc_map *m, struct pc_error *err)
{
    int s = map_state(m);
    if (m->reverse) {
        pc_error_set(err, -EINVAL, "mapping %s goes from %s back to its source %s: start it "
                     "as a restore", m->name, m->src->name, m->tgt->name);
        return -EINVAL;
    }
    int r0 = refuse_while_restoring(m, "start", err);
    if (r0 < 0)
        return r0;
    if (s == PC_MAP_PREPARED)
        return 0;
    if (s != PC_MAP_IDLE_OR_COPIED && s != PC_MAP_STOPPED) {
        pc_error_set(err, -EBUSY, "mapping %s is %s; it can be prepared only when "
                     "idle_or_copied or stopped", m->name, pc_map_state_name(s));
        return -EBUSY;
    }
    /* Like the array's prepare, flush the source: what a quiesced host
     * wrote before the start is in the point in time after a power loss. */
    int r = pc_io_sync(m->e, PC_IO_FLUSH, m->src, 0, 0, NULL, 0);
    if (r < 0) {
        pc_error_set(err, r, "mapping %s: cannot flush source %s: %s",
                     m->name, m->src->name, strerror(-r));
        return r;
    }
    if (atomic_load(&m->in_chain)) {
        /* Older mappings still read through this target: clean first. */
        begin_stop_locked(m, PC_MAP_PREPARING);
        wait_while_locked(m, PC_MAP_PREPARING);
        if (map_state(m) != PC_MAP_PREPARED) {
            pc_error_set(err, -EIO, "mapping %s could not finish cleaning; it is %s",
                         m->name, pc_map_state_name(map_state(m)));
            return -EIO;
        }
        return 0;
    }
    set_state_locked(m, PC_MAP_PREPARED);
    return 0;
}

/* Members of a group are prepared, started and stopped through it. */
static int refuse_group_member(struct pc_map *m, const char *what, struct pc_error *err)
{
    if (!m->group)
        return 0;
    pc_error_set(err, -EBUSY, "mapping %s belongs to consistency group %s; %s the group",
                 m->name, m->group->name, what);
    return -EBUSY;
}

int pc_map_prepare(struct pc_map *m, struct pc_error *err)
{
    pthread_mutex_lock(&m->e->ctl_lock);
    int r = refuse_group_member(m, "prepare", err);
    if (r == 0)
        r = map_prepare_locked(m, err);
    pthread_mutex_unlock(&m->e->ctl_lock);
    return r;
}

/* One source's new chain, while a start is being put together. */
struct start_src {
    struct pc_volume *src;
    struct chain     *old, *c;
    unsigned          adds;
    uint32_t          shift;
    uint64_t          last_seq;
};

int map_start_many_locked(struct pc_map **ms, unsigned n, uint64_t *hold_ns,
                          struct pc_error *err)
{
    struct start_src *ss = calloc(n, sizeof *ss);
    struct bitmap **fresh = calloc(n, sizeof *fresh);
    struct pc_volume **held = calloc(2 * (size_t)n, sizeof *held);
    uint64_t *prev_seq = calloc(n, sizeof *prev_seq), *prev_rt = calloc(n, sizeof *prev_rt);
    unsigned nsrc = 0, nheld = 0, nmeta = 0, nseq = 0;
    int r = 0;

    if (!ss || !fresh || !held || !prev_seq || !prev_rt) {
        r = -ENOMEM;
        pc_error_set(err, r, "out of memory starting %u mappings", n);
        goto out;
    }
    for (unsigned i = 0; i < n; i++) {
        r = map_prepare_locked(ms[i], err);
        if (r < 0)
            goto out;
    }
    /* Everything that can fail or take time happens before the hold: a
     * fresh bitmap costs O(1) whatever the volume size (bitmap.h B4). */
    for (unsigned i = 0; i < n; i++) {
        unsigned j = 0;
        while (j < nsrc && ss[j].src != ms[i]->src)
            j++;
        if (j == nsrc) {
            ss[nsrc].src = ms[i]->src;
            ss[nsrc].old = atomic_load(&ms[i]->src->chain);
            ss[nsrc].shift = ms[i]->grain_shift;
            nsrc++;
        }
        ss[j].adds++;
        fresh[i] = bitmap_create(ms[i]->grains, &r);
        if (!fresh[i] || (r = map_diff_prepare(ms[i], fresh[i])) < 0) {
            r = -ENOMEM;
            pc_error_set(err, r, "out of memory starting mapping %s", ms[i]->name);
            goto out;
        }
    }
    for (unsigned j = 0; j < nsrc; j++) {
        unsigned had = ss[j].old ? ss[j].old->n : 0;
        if (had + ss[j].adds > PC_MAX_TARGETS) {
            r = -ENOSPC;
            pc_error_set(err, r, "source %s has %u started mappings; starting %u more would "
                         "pass the limit of %u", ss[j].src->name, had, ss[j].adds, PC_MAX_TARGETS);
            goto out;
        }
        ss[j].c = chain_alloc(had + ss[j].adds, ss[j].shift);   /* M4: one per source */
        if (!ss[j].c) {
            r = -ENOMEM;
            pc_error_set(err, r, "out of memory starting mappings of source %s", ss[j].src->name);
            goto out;
        }
        for (unsigned i = 0; i < had; i++)
            ss[j].c->maps[i] = ss[j].old->maps[i];
        ss[j].c->n = had;
        ss[j].last_seq = had ? ss[j].old->maps[had - 1]->start_seq : 0;
        held[nheld++] = ss[j].src;
    }
    /* The chain's order survives a restart (meta.c): a start sequence above
     * every older mapping's, whatever the clock does. */
    uint64_t now = now_ns(CLOCK_REALTIME);
    for (unsigned i = 0; i < n; i++) {
        struct pc_map *m = ms[i];
        struct start_src *s = ss;
        while (s->src != m->src)
            s++;
        s->c->maps[s->c->n++] = m;
        prev_seq[i] = m->start_seq;
        prev_rt[i] = m->start_realtime_ns;
        nseq++;
        m->start_seq = s->last_seq >= now ? s->last_seq + 1 : now;
        s->last_seq = m->start_seq;
        m->start_realtime_ns = now;
        held[nheld++] = m->tgt;
    }
    /* D2: each new generation is durable before the chains change.  If one
     * cannot be written, those already written go back to saying prepared
     * (a restart finds them prepared either way: nothing was published). */
    for (; nmeta < n; nmeta++) {
        r = meta_start(ms[nmeta], err);
        if (r < 0)
            goto out;
    }

    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    for (unsigned i = 0; i < nheld; i++)
        atomic_store(&held[i]->hold, 1);
    for (unsigned i = 0; i < nheld; i++)
        volume_drain_writes(held[i]);                 /* writes in flight drain */
    for (unsigned i = 0; i < n; i++)
        map_diff_switch_locked(ms[i], fresh[i]);      /* M5 */
    for (unsigned j = 0; j < nsrc; j++)
        atomic_store_explicit(&ss[j].src->chain, ss[j].c, memory_order_release);
    for (unsigned i = 0; i < n; i++) {
        /* The targets are offline while prepared, so nothing reads the old
         * bits; they are freed after the grace period below. */
        struct bitmap *old_bits = ms[i]->bits;
        ms[i]->bits = fresh[i];
        fresh[i] = old_bits;
        atomic_store(&ms[i]->complete, false);
        atomic_store(&ms[i]->split, false);
        atomic_fetch_add(&ms[i]->gen, 1);
        atomic_store(&ms[i]->in_chain, true);
        set_state_locked(ms[i], PC_MAP_COPYING);     /* M3: after the chain */
    }
    for (unsigned i = 0; i < nheld; i++)
        volume_hold_release(held[i]);
    uint64_t held_ns = now_ns(CLOCK_MONOTONIC) - t0;

    srcu_sync(ms[0]->e);                             /* nobody reads the old chains now */
    for (unsigned j = 0; j < nsrc; j++) {
        free(ss[j].old);
        ss[j].c = NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        struct pc_map *m = ms[i];
        m->start_hold_ns = held_ns;
        m->invalid[0] = 0;             /* a fresh point in time needs no vouching */
        atomic_store(&m->failed, false);
        atomic_store(&m->fail_err, 0);
        map_diff_release(m);
        assert(map_check(m));
        bgcopy_kick(m);
    }
    if (hold_ns)
        *hold_ns = held_ns;
out:
    if (r < 0) {
        /* Nothing was published: the mappings stay prepared, and those whose
         * metadata already said started say prepared again. */
        for (unsigned i = 0; i < nseq; i++) {
            ms[i]->start_seq = prev_seq[i];
            ms[i]->start_realtime_ns = prev_rt[i];
        }
        for (unsigned i = 0; i < nmeta; i++) {
            meta_start_abort(ms[i]);
            meta_write_state(ms[i]);
        }
        for (unsigned i = 0; i < n; i++)
            map_diff_release(ms[i]);
    }
    for (unsigned j = 0; ss && j < nsrc; j++)
        free(ss[j].c);
    for (unsigned i = 0; fresh && i < n; i++)
        bitmap_destroy(fresh[i]);
    free(ss);
    free(fresh);
    free(held);
    free(prev_seq);
    free(prev_rt);
    return r;
}

int pc_map_start(struct pc_map *m, struct pc_error *err)
{
    pthread_mutex_lock(&m->e->ctl_lock);
    int r = refuse_group_member(m, "start", err);
    if (r == 0)
        r = map_start_many_locked(&m, 1, NULL, err);
    pthread_mutex_unlock(&m->e->ctl_lock);
    return r;
}

int pc_map_start_restore(struct pc_map *m, struct pc_error *err)
{
    pthread_mutex_lock(&m->e->ctl_lock);
    int r = refuse_group_member(m, "start", err);
    if (r == 0)
        r = map_start_restore_locked(m, err);
    assert(map_check(m));
    pthread_mutex_unlock(&m->e->ctl_lock);
    return r;
}

int map_stop_locked(struct pc_map *m, bool split, struct pc_error *err)
{
    int r = 0;
    int s = map_state(m);
    if (atomic_load(&m->restoring) && s == PC_MAP_COPYING) {
        /* Nothing reads through S for others: no cleaning.  Unless every
         * grain is restored, S holds an incomplete image and goes offline. */
        if (bitmap_find_next_unset(m->bits, 0) >= m->grains) {
            atomic_store(&m->complete, true);
            set_state_locked(m, PC_MAP_IDLE_OR_COPIED);
            restore_detach_locked(m);
        } else {
            set_state_locked(m, PC_MAP_STOPPED);
            pc_log("mapping %s: restore stopped unfinished; %s is offline until the restore "
                   "is started again or the mapping deleted", m->name, m->tgt->name);
        }
        meta_write_state(m);
        return 0;
    }
    r = refuse_while_restoring(m, "stop", err);
    if (r < 0)
        return r;
    if (split) {
        bool whole = atomic_load(&m->complete) ||
                     ((s == PC_MAP_COPYING || s == PC_MAP_STOPPING) &&
                      bitmap_find_next_unset(m->bits, 0) >= m->grains);
        if (s == PC_MAP_IDLE_OR_COPIED && !atomic_load(&m->in_chain))
            return 0;                 /* nothing depends on it: already split */
        if (!whole || s == PC_MAP_SUSPENDED) {
            pc_error_set(err, -EINVAL, "mapping %s is %s at %s; a stop with split needs "
                         "progress 100 (a whole image on target %s)", m->name,
                         pc_map_state_name(s), whole ? "100%" : "less than 100%", m->tgt->name);
            return -EINVAL;
        }
        atomic_store(&m->split, true);
        if (s == PC_MAP_STOPPING || s == PC_MAP_IDLE_OR_COPIED) {
            /* Already cleaning, or copied but older mappings still read
             * through its target: clean at full speed now. */
            if (s == PC_MAP_IDLE_OR_COPIED)
                begin_stop_locked(m, PC_MAP_STOPPING);
            atomic_fetch_add(&m->gen, 1);
            bgcopy_kick(m);
            return 0;
        }
    }
    switch (s) {
    case PC_MAP_COPYING:
    case PC_MAP_SUSPENDED:
        begin_stop_locked(m, PC_MAP_STOPPING);
        /* Bits are frozen now (I4).  If writes and copies split every
         * grain, the target is a whole image whether or not the background
         * copy got to say so: it stays online and the stop ends in
         * idle_or_copied. */
        if (bitmap_find_next_unset(m->bits, 0) >= m->grains)
            atomic_store(&m->complete, true);
        break;
    case PC_MAP_PREPARED:
        set_state_locked(m, PC_MAP_STOPPED);
        meta_write_state(m);
        break;
    default:
        r = -EINVAL;
        pc_error_set(err, r, "mapping %s is %s; only a copying or prepared mapping can be stopped",
                     m->name, pc_map_state_name(s));
        break;
    }
    assert(map_check(m));
    return r;
}

int pc_map_stop(struct pc_map *m, struct pc_error *err)
{
    pthread_mutex_lock(&m->e->ctl_lock);
    int r = refuse_group_member(m, "stop", err);
    if (r == 0)
        r = map_stop_locked(m, false, err);
    pthread_mutex_unlock(&m->e->ctl_lock);
    return r;
}

int pc_map_stop_split(struct pc_map *m, struct pc_error *err)
{
    pthread_mutex_lock(&m->e->ctl_lock);
    int r = refuse_group_member(m, "stop", err);
    if (r == 0)
        r = map_stop_locked(m, true, err);
    pthread_mutex_unlock(&m->e->ctl_lock);
    return r;
}

/* ------------------------------------------------------------------------
 * Delete. */

int pc_map_delete(struct pc_map *m, bool force, struct pc_error *err)
{
    struct pc_engine *e = m->e;
    int s;

    pthread_mutex_lock(&e->ctl_lock);
    s = map_state(m);
    if (m->partner && !m->reverse) {
        pthread_mutex_unlock(&e->ctl_lock);
        pc_error_set(err, -EBUSY, "mapping %s has a restore mapping, %s; delete that first",
                     m->name, m->partner->name);
        return -EBUSY;
    }
    int rr = m->reverse ? 0 : refuse_while_restoring(m, "delete", err);
    if (rr < 0) {
        pthread_mutex_unlock(&e->ctl_lock);
        return rr;
    }
    if (m->reverse || atomic_load(&m->restoring)) {
        /* Deleting a restore brings S back as it stands (rmfcmap -force). */
        if (atomic_load(&m->restoring) && s == PC_MAP_COPYING && !force) {
            pthread_mutex_unlock(&e->ctl_lock);
            pc_error_set(err, -EBUSY, "mapping %s is restoring %s; stop it first, or force "
                         "the delete (%s keeps what is restored so far)", m->name,
                         m->tgt->name, m->tgt->name);
            return -EBUSY;
        }
        restore_detach_locked(m);
        set_state_locked(m, atomic_load(&m->complete) ? PC_MAP_IDLE_OR_COPIED : PC_MAP_STOPPED);
        if (m->partner)
            m->partner->partner = NULL;
        m->partner = NULL;
        s = map_state(m);
    }
    if ((s == PC_MAP_COPYING || s == PC_MAP_STOPPING || s == PC_MAP_PREPARING ||
         s == PC_MAP_SUSPENDED) && !force) {
        pthread_mutex_unlock(&e->ctl_lock);
        pc_error_set(err, -EBUSY, "mapping %s is %s; stop it first, or force the delete",
                     m->name, pc_map_state_name(s));
        return -EBUSY;
    }
    if (s == PC_MAP_COPYING || s == PC_MAP_SUSPENDED ||
        (s == PC_MAP_IDLE_OR_COPIED && atomic_load(&m->in_chain)))
        begin_stop_locked(m, PC_MAP_STOPPING);
    wait_while_locked(m, PC_MAP_PREPARING);
    wait_while_locked(m, PC_MAP_STOPPING);
    /* Out of the chain now: nothing on the data path reaches m but a target
     * request that loaded tgt_map already — the grace period below. */
    for (struct pc_map **pp = &e->maps; *pp; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    m->deleted = true;
    if (m->group) {
        m->group->nmaps--;                         /* group.c G1 */
        m->group = NULL;
    }
    if (m->incremental) {
        /* Cannot fail: a smaller set, or none. */
        diffset_change_locked(m->src, m, false);
        diffset_change_locked(m->tgt, m, false);
    }
    atomic_store(&m->tgt->tgt_map, NULL);
    m->src->nmaps_as_source--;
    pthread_cond_broadcast(&e->state_cond);
    pthread_mutex_unlock(&e->ctl_lock);

    bgcopy_free(m);                /* pauses: includes a grace period */
    srcu_sync(e);
    meta_close(m, false);          /* the caller removes the file */
    bitmap_destroy(m->bits);
    m->bits = NULL;
    for (unsigned i = 0; i < 2; i++) {
        bitmap_destroy(atomic_load(&m->diff[i]));
        atomic_store(&m->diff[i], NULL);
    }
    /* Janitor jobs queued for m may still run; they find m->deleted.  The
     * struct itself is freed with the engine. */
    pthread_mutex_lock(&e->ctl_lock);
    m->next = e->graveyard;
    e->graveyard = m;
    pthread_mutex_unlock(&e->ctl_lock);
    return 0;
}

/*
 * Engine teardown: every mapping goes at once, without cleaning.  Cleaning
 * gives older targets what they need to stay valid, but nothing will read
 * them once the engine is gone (the caller has no I/O in flight), and at a
 * slow clean rate it would hold pc_engine_destroy for hours.
 */
void map_teardown_all(struct pc_engine *e)
{
    pthread_mutex_lock(&e->ctl_lock);
    for (struct pc_map *m = e->maps; m; m = m->next)
        m->deleted = true;              /* janitor jobs still queued skip them */
    pthread_mutex_unlock(&e->ctl_lock);
    for (struct pc_map *m = e->maps; m; m = m->next)
        bgcopy_free(m);                 /* no extent runs after this */
    srcu_sync(e);
    pthread_mutex_lock(&e->ctl_lock);
    for (struct pc_volume *v = e->volumes; v; v = v->next) {
        free(atomic_load(&v->chain));
        atomic_store(&v->chain, NULL);
        free(atomic_load(&v->diffs));
        atomic_store(&v->diffs, NULL);
        atomic_store(&v->tgt_map, NULL);
        v->nmaps_as_source = 0;
    }
    while (e->maps) {
        struct pc_map *m = e->maps;
        e->maps = m->next;
        meta_close(m, true);            /* an orderly shutdown (meta.c D5) */
        atomic_store(&m->in_chain, false);
        bitmap_destroy(m->bits);
        m->bits = NULL;
        for (unsigned i = 0; i < 2; i++) {
            bitmap_destroy(atomic_load(&m->diff[i]));
            atomic_store(&m->diff[i], NULL);
        }
        m->next = e->graveyard;
        e->graveyard = m;
    }
    pthread_cond_broadcast(&e->state_cond);
    pthread_mutex_unlock(&e->ctl_lock);
}

/* Recovered mappings take up their work once every chain is whole. */
void pc_engine_resume(struct pc_engine *e)
{
    pthread_mutex_lock(&e->ctl_lock);
    for (struct pc_map *m = e->maps; m; m = m->next) {
        switch (map_state(m)) {
        case PC_MAP_COPYING:
            bgcopy_kick(m);
            break;
        case PC_MAP_STOPPING:
            /* Its bits are frozen (nothing has run since the restart). */
            atomic_store(&m->frozen, true);
            atomic_fetch_add(&m->gen, 1);
            bgcopy_kick(m);
            break;
        default:
            break;
        }
    }
    for (struct pc_map *m = e->maps; m; m = m->next)
        chain_trim_locked(m->src);
    pthread_mutex_unlock(&e->ctl_lock);
}

/* ------------------------------------------------------------------------
 * Rates, info, wait. */

int pc_map_set_copy_rate(struct pc_map *m, int rate, struct pc_error *err)
{
    if (!valid_rate(rate)) {
        pc_error_set(err, -EINVAL, "copy rate %d is not 0-150 or unlimited", rate);
        return -EINVAL;
    }
    pthread_mutex_lock(&m->e->ctl_lock);
    atomic_store(&m->copy_rate, rate);
    atomic_fetch_add(&m->gen, 1);
    bgcopy_kick(m);
    meta_write_state(m);
    pthread_mutex_unlock(&m->e->ctl_lock);
    return 0;
}

int pc_map_set_clean_rate(struct pc_map *m, int rate, struct pc_error *err)
{
    if (!valid_rate(rate)) {
        pc_error_set(err, -EINVAL, "clean rate %d is not 0-150 or unlimited", rate);
        return -EINVAL;
    }
    pthread_mutex_lock(&m->e->ctl_lock);
    atomic_store(&m->clean_rate, rate);
    atomic_fetch_add(&m->gen, 1);
    bgcopy_kick(m);
    meta_write_state(m);
    pthread_mutex_unlock(&m->e->ctl_lock);
    return 0;
}

int pc_map_info(struct pc_map *m, struct pc_map_info *info)
{
    pthread_mutex_lock(&m->e->ctl_lock);
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", m->name);
    snprintf(info->source, sizeof info->source, "%s", m->src->name);
    snprintf(info->target, sizeof info->target, "%s", m->tgt->name);
    info->state = (enum pc_map_state)map_state(m);
    info->grain_size = 1u << m->grain_shift;
    info->grains = m->grains;
    info->copy_rate = atomic_load(&m->copy_rate);
    info->clean_rate = atomic_load(&m->clean_rate);
    info->incremental = m->incremental;
    info->changes_recorded = m->incremental && atomic_load(&m->diff_valid);
    if (info->changes_recorded && atomic_load(&m->diff[atomic_load(&m->dcur)]))
        info->grains_changed = bitmap_count(atomic_load(&m->diff[atomic_load(&m->dcur)]));
    info->complete = atomic_load(&m->complete);
    info->start_hold_ns = m->start_hold_ns;
    info->start_ns = m->start_realtime_ns;
    info->persistent = m->meta != NULL;
    info->durability = meta_strict(m) || !m->meta ? PC_DURABILITY_STRICT : PC_DURABILITY_NONE;
    snprintf(info->invalid, sizeof info->invalid, "%s", m->invalid);
    if (m->group)
        snprintf(info->group, sizeof info->group, "%s", m->group->name);
    info->restoring = atomic_load(&m->restoring);
    if (m->partner)
        snprintf(info->partner, sizeof info->partner, "%s", m->partner->name);

    bool fresh = info->state == PC_MAP_IDLE_OR_COPIED && !info->complete &&
                 !atomic_load(&m->in_chain);
    info->grains_split = fresh || !m->bits ? 0 : bitmap_count(m->bits);
    if (info->complete)
        info->grains_split = m->grains;
    else if (info->state == PC_MAP_COPYING && info->grains_split == m->grains)
        info->complete = true;      /* split by writes: a whole image now */
    info->progress = (unsigned)(info->grains_split * 100 / m->grains);
    info->target_online = map_target_online(m);
    struct chain *c = atomic_load(&m->src->chain);
    int k = m->bits ? chain_index(c, m) : -1;
    if (k > 0) {
        info->dependent_mappings = (unsigned)k;
        int i = chain_pred_index(c, k);
        if (i >= 0) {
            for (uint64_t g = bitmap_find_next_set(m->bits, 0); g < m->grains;
                 g = bitmap_find_next_set(m->bits, g + 1))
                if (!chain_any_split(c, i, k, g))
                    info->grains_to_clean++;
        }
    }
    pthread_mutex_unlock(&m->e->ctl_lock);
    return 0;
}

void pc_map_state_get(struct pc_map *m, enum pc_map_state *state, bool *complete)
{
    *state = (enum pc_map_state)map_state(m);
    *complete = atomic_load(&m->complete) ||
                (*state == PC_MAP_COPYING && m->bits &&
                 bitmap_find_next_unset(m->bits, 0) >= m->grains);
}

int pc_map_wait(struct pc_map *m, enum pc_map_state state, int timeout_ms)
{
    struct pc_engine *e = m->e;
    struct timespec dl;
    int r = 0;
    clock_gettime(CLOCK_REALTIME, &dl);
    if (timeout_ms >= 0) {
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&e->ctl_lock);
    while (map_state(m) != (int)state && !m->deleted) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&e->state_cond, &e->ctl_lock);
        } else if (pthread_cond_timedwait(&e->state_cond, &e->ctl_lock, &dl) == ETIMEDOUT) {
            r = -ETIMEDOUT;
            break;
        }
    }
    if (m->deleted && r == 0)
        r = -ENOENT;
    pthread_mutex_unlock(&e->ctl_lock);
    return r;
}
