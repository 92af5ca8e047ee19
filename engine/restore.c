/* SPDX-License-Identifier: MIT */
/*
 * engine/restore.c — restore: a target copied back onto its source, while
 * the source's other targets keep their points in time.
 *
 * Role
 *   A restore mapping R goes T -> S, made while the forward mapping P:
 *   S -> T exists (they are partners).  pc_map_start_restore makes S read,
 *   from that instant, as T did (T's "image": what a host reading T gets).
 *   S is then both R's target and the source of its own chain (P among its
 *   mappings perhaps), and T both R's source and P's target: a two-volume
 *   cascade, handled here and in cow.c's routing (ROUTE_RESTORED).
 *
 *   R's split bitmap says which grains S already holds R's data for.  Where
 *   a grain's bit is clear, S's data is T's image, found by restore_loc:
 *   lookup(k, g) in S's chain when P is its k-th mapping, else T itself.
 *   Restoring a grain (restore_grain_run), under S's busy slot for it:
 *     1. if S's chain needs S's current contents (its newest taking mapping
 *        lacks the grain, I2), copy them there first — S is about to change;
 *     2. find T's image again (step 1 may have moved it from S to a target)
 *        and write it to S — or nothing, when it is S itself;
 *     3. set R's bit (durably, meta.c D1), only once S holds the data.
 *   A host write to S restores each unrestored grain it touches first, then
 *   goes on as a source write; a host write to T restores the grains it
 *   touches first (T's image is about to change), then goes on as a write to
 *   P's target.  The background copy restores the rest at R's copy rate.
 *
 * Invariants
 *   R1  S's data for grain g is R's data from R's start on: S reads R's data
 *       where the bit is set, T's image where not, and no write to S or T
 *       lands on g before the bit is set (every write path restores first).
 *   R2  Restoring never takes from S's chain what it holds for others: S's
 *       old contents reach the chain before S changes (step 1), exactly as a
 *       source write's.
 *   R3  While R is copying, S's chain does not change shape except by a
 *       copied mapping leaving it (which moves no data): starts, stops and
 *       deletes of S's mappings are refused (map.c), and a restore does not
 *       start while any of them is cleaning.  So a grain operation's
 *       snapshot of the chain stays true for its length.
 *   R4  Reads of S are checked like target reads (cow.c I5): a grain whose
 *       bit or location moved while it was read is read again.
 *
 * Context
 *   restore_grain_run: workers, under the grain's busy slot.  The rest:
 *   control threads under ctl_lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/internal.h"

struct chain *restore_chain(struct pc_map *r)
{
    struct chain *c = atomic_load_explicit(&r->tgt->chain, memory_order_acquire);
    return c && c->n ? c : r->solo;
}

struct pc_volume *restore_loc(const struct pc_map *r, const struct chain *c, uint64_t g)
{
    if (map_bit(r, g))
        return r->tgt;
    int k = chain_index(c, r->partner);
    return k >= 0 ? chain_lookup(c, (unsigned)k, g) : r->src;
}

/* ------------------------------------------------------------------------
 * The data path. */

static void restore_after_cow(struct gop *g);

/* Errors past step 1 are S's or R's own: the caller reports them (a host
 * write fails, the background copy pauses); no chain mapping is to blame. */
static void restore_finish(struct gop *g)
{
    if (g->err)
        g->wfail = false;
    g->fin(g);
}

/* Step 3: the data is on S (or was all along). */
static void restore_set_bit(struct gop *g, int data_fd)
{
    struct pc_map *r = g->m;
    g->done = restore_finish;
    if (gop_commit(g, r, data_fd, 1))
        return;
    (void)bitmap_test_and_set(r->bits, g->g0, &g->err);
    restore_finish(g);
}

/* Step 2's copy is written and its bit set (gop_write_extent), or failed. */
static void restore_extent_done(struct gop *g)
{
    restore_finish(g);
}

/* A target of S's chain failed taking S's old contents: it is suspended
 * now, durably (map_fail); decide again without it. */
static void restore_cow_retry(struct meta_req *rq)
{
    struct gop *g = (struct gop *)((char *)rq - __builtin_offsetof(struct gop, mrq));
    if (rq->err) {
        g->err = rq->err;
        restore_finish(g);
        return;
    }
    g->err = 0;
    g->wfail = false;
    restore_grain_run(g);
}

void restore_grain_run(struct gop *g)
{
    struct pc_map *r = g->m;
    const struct chain *c = g->c;
    if (map_bit(r, g->g0) || !atomic_load(&r->restoring)) {
        restore_finish(g);                /* restored while we waited */
        return;
    }
    /* Step 1 (R2). */
    int k = chain_cow_index(c);
    if (k >= 0 && !chain_any_split(c, k, (int)c->n, g->g0)) {
        g->read_from = r->tgt;
        g->read_mask = g->copy_mask = 1;
        g->copy_to = c->maps[k]->tgt;
        g->copy_to_map = c->maps[k];
        g->after_read = NULL;
        g->done = restore_after_cow;
        gop_read_extent(g);
        return;
    }
    restore_after_cow(g);
}

static void restore_after_cow(struct gop *g)
{
    struct pc_map *r = g->m;
    if (g->err && g->wfail) {
        g->mrq.w = g->w;
        g->mrq.done = restore_cow_retry;
        map_fail(g->copy_to_map, g->err, &g->mrq);
        return;
    }
    if (g->err) {
        restore_finish(g);
        return;
    }
    /* Step 2: T's image, as it is now. */
    struct pc_volume *from = restore_loc(r, g->c, g->g0);
    if (from == r->tgt) {
        /* S holds it already, unchanged since the start flushed it. */
        restore_set_bit(g, -1);
        return;
    }
    g->read_from = from;
    g->read_mask = g->copy_mask = 1;
    g->copy_to = r->tgt;
    g->copy_to_map = r;
    g->after_read = NULL;
    /* gop_write_extent writes S (durably when R's bits are journalled) and
     * then sets the bit itself. */
    g->done = restore_extent_done;
    gop_read_extent(g);
}

/* ------------------------------------------------------------------------
 * Control. */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Can m start as a restore now?  Then flush S and T. */
static int restore_check_locked(struct pc_map *m, struct pc_error *err)
{
    struct pc_engine *e = m->e;
    struct pc_map *p = m->partner;
    struct pc_volume *s = m->tgt, *t = m->src;
    int st = map_state(m), r;

    if (!p) {
        pc_error_set(err, -EINVAL, "mapping %s is not a restore mapping: no mapping goes from "
                     "%s to %s", m->name, s->name, t->name);
        return -EINVAL;
    }
    if (st != PC_MAP_IDLE_OR_COPIED && st != PC_MAP_STOPPED && st != PC_MAP_PREPARED) {
        pc_error_set(err, -EBUSY, "mapping %s is %s; a restore starts from idle_or_copied, "
                     "prepared or stopped", m->name, pc_map_state_name(st));
        return -EBUSY;
    }
    int ps = map_state(p);
    if (!map_target_online(p) || (ps != PC_MAP_COPYING && !atomic_load(&p->complete))) {
        pc_error_set(err, -EINVAL, "cannot restore %s from %s: mapping %s is %s and %s does "
                     "not hold a whole image", s->name, t->name, p->name,
                     pc_map_state_name(ps), t->name);
        return -EINVAL;
    }
    struct chain *c = atomic_load(&s->chain);
    for (unsigned i = 0; c && i < c->n; i++) {
        int si = map_state(c->maps[i]);
        if (si == PC_MAP_STOPPING || si == PC_MAP_PREPARING || map_failed(c->maps[i])) {
            pc_error_set(err, -EBUSY, "cannot restore %s now: its mapping %s is %s; wait for "
                         "it (R3)", s->name, c->maps[i]->name,
                         map_failed(c->maps[i]) ? "suspended" : pc_map_state_name(si));
            return -EBUSY;
        }
    }
    /* Like a prepare: what hosts wrote to either volume before the restore
     * is durable, so a grain S already holds needs no copy (step 2). */
    r = pc_io_sync(e, PC_IO_FLUSH, s, 0, 0, NULL, 0);
    if (r == 0)
        r = pc_io_sync(e, PC_IO_FLUSH, t, 0, 0, NULL, 0);
    if (r < 0)
        pc_error_set(err, r, "mapping %s: cannot flush %s and %s: %s", m->name, s->name,
                     t->name, strerror(-r));
    return r;
}

/* S's contents change wholesale at the restore, and no host write records
 * it: incremental mappings of S copy everything on their next start (durably
 * so before the restore can take effect). */
static void restore_void_recordings_locked(struct pc_map *m)
{
    struct pc_volume *s = m->tgt;
    for (struct pc_map *x = m->e->maps; x; x = x->next) {
        if (x == m || !x->incremental || (x->src != s && x->tgt != s) ||
            !atomic_load(&x->diff_valid))
            continue;
        atomic_store(&x->diff_valid, false);
        meta_write_state(x);
        pc_log("mapping %s: its change recording no longer covers %s (being restored); its "
               "next start copies everything", x->name, s->name);
    }
}

int map_start_restore_many_locked(struct pc_map **ms, unsigned n, uint64_t *hold_ns,
                                  struct pc_error *err)
{
    struct pc_engine *e = ms[0]->e;
    struct bitmap **fresh = calloc(n, sizeof *fresh);
    uint64_t *prev_rt = calloc(n, sizeof *prev_rt);
    bool *was_restoring = calloc(n, sizeof *was_restoring);
    unsigned nmeta = 0;
    int r = 0;

    if (!fresh || !prev_rt || !was_restoring) {
        r = -ENOMEM;
        pc_error_set(err, r, "out of memory starting %u restores", n);
        goto out;
    }
    for (unsigned i = 0; i < n && r == 0; i++)
        r = restore_check_locked(ms[i], err);
    for (unsigned i = 0; i < n && r == 0; i++) {
        struct pc_map *m = ms[i];
        fresh[i] = bitmap_create(m->grains, &r);
        if (!m->solo)
            m->solo = calloc(1, sizeof *m->solo);
        if (!fresh[i] || !m->solo) {
            r = -ENOMEM;
            pc_error_set(err, r, "out of memory starting restore %s", m->name);
            break;
        }
        m->solo->n = 0;
        m->solo->grain_shift = m->grain_shift;
    }
    if (r < 0)
        goto out;
    for (unsigned i = 0; i < n; i++)
        restore_void_recordings_locked(ms[i]);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    /* D2: each restore's new generation is durable before it takes effect. */
    for (; nmeta < n; nmeta++) {
        struct pc_map *m = ms[nmeta];
        prev_rt[nmeta] = m->start_realtime_ns;
        was_restoring[nmeta] = atomic_load(&m->restoring);
        m->start_realtime_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
        atomic_store(&m->restoring, true);        /* meta_start records it */
        r = meta_start(m, err);
        if (r < 0) {
            atomic_store(&m->restoring, was_restoring[nmeta]);
            m->start_realtime_ns = prev_rt[nmeta];
            goto out;
        }
    }
    /* The point in time: nothing writes any S or T meanwhile.  (They are
     * all distinct: a volume is the target of one mapping, and no volume
     * both a restore's S and another's T.) */
    uint64_t t0 = mono_ns();
    for (unsigned i = 0; i < n; i++) {
        atomic_store(&ms[i]->tgt->hold, 1);
        atomic_store(&ms[i]->src->hold, 1);
    }
    for (unsigned i = 0; i < n; i++) {
        volume_drain_writes(ms[i]->tgt);
        volume_drain_writes(ms[i]->src);
    }
    for (unsigned i = 0; i < n; i++) {
        struct pc_map *m = ms[i];
        struct bitmap *old = m->bits;
        m->bits = fresh[i];
        fresh[i] = old;                           /* freed after the grace period */
        atomic_store(&m->complete, false);
        atomic_fetch_add(&m->gen, 1);
        /* The state before the pointers: a read of S (reads are not held)
         * that finds restore_by must find it copying, not the state it had
         * (cow.c route_of would call S offline). */
        atomic_store_explicit(&m->state, PC_MAP_COPYING, memory_order_release);
        atomic_store_explicit(&m->src->restore_from, m, memory_order_release);
        atomic_store_explicit(&m->tgt->restore_by, m, memory_order_release);
    }
    pthread_cond_broadcast(&e->state_cond);
    for (unsigned i = 0; i < n; i++) {
        volume_hold_release(ms[i]->tgt);
        volume_hold_release(ms[i]->src);
    }
    uint64_t held = mono_ns() - t0;
    srcu_sync(e);                                 /* nobody reads the old bits now */
    for (unsigned i = 0; i < n; i++) {
        struct pc_map *m = ms[i];
        m->start_hold_ns = held;
        m->invalid[0] = 0;
        atomic_store(&m->failed, false);
        atomic_store(&m->fail_err, 0);
        pc_log("mapping %s: restoring %s from %s (%s's point in time stays with mapping %s); "
               "writes held %.3f ms", m->name, m->tgt->name, m->src->name, m->src->name,
               m->partner->name, (double)held / 1e6);
        bgcopy_kick(m);
    }
    if (hold_ns)
        *hold_ns = held;
out:
    if (r < 0) {
        /* Those whose metadata already said restoring go back (R3 holds:
         * nothing was published). */
        for (unsigned i = 0; i < nmeta; i++) {
            atomic_store(&ms[i]->restoring, was_restoring[i]);
            ms[i]->start_realtime_ns = prev_rt[i];
            meta_start_abort(ms[i]);
            meta_write_state(ms[i]);
        }
    }
    for (unsigned i = 0; fresh && i < n; i++)
        bitmap_destroy(fresh[i]);
    free(fresh);
    free(prev_rt);
    free(was_restoring);
    return r;
}

int map_start_restore_locked(struct pc_map *m, struct pc_error *err)
{
    return map_start_restore_many_locked(&m, 1, NULL, err);
}

void restore_detach_locked(struct pc_map *m)
{
    if (!atomic_load(&m->restoring))
        return;
    atomic_store(&m->restoring, false);
    atomic_store(&m->tgt->restore_by, NULL);
    atomic_store(&m->src->restore_from, NULL);
    meta_write_state(m);
}
