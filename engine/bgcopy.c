/* SPDX-License-Identifier: MIT */
/*
 * engine/bgcopy.c — background copy and cleaning, at the copy and clean rates.
 *
 * Role
 *   Each mapping has one driver, pinned to one worker.  While the mapping is
 *   copying (copy rate > 0) the driver walks its unsplit grains and copies
 *   each from where a read would find it (lookup(k, g)) to the target; while
 *   it is stopping — or preparing a restart while still in its chain — it
 *   walks its split grains and gives the nearest older non-stopping mapping
 *   those it still resolves through this target ("cleaning").  Both take the
 *   grains' busy slots like a target write (cow.c) and batch consecutive
 *   grains into one extent of up to 1 MiB.
 *
 *   A restore mapping (restore.c) walks its unrestored grains the same way
 *   and restores each onto its target, one grain per operation.
 *
 *   Pacing is a token bucket in bytes: the SVC table's rate (pc_rate_*),
 *   at most two extents in flight; `unlimited` keeps 16 in flight and no
 *   bucket, to run at the devices' speed.
 *
 * Invariants
 *   G1  Every extent runs inside its own read section (engine.c), entered
 *       before the driver re-checks `paused`; so bgcopy_pause() = set paused,
 *       srcu_sync() guarantees no extent is running or will start.
 *   G2  Completion is reported once per mode: a copy that found no unsplit
 *       grain from 0 with nothing in flight; a cleaning pass that reached the
 *       end (I4 in cow.c: one pass suffices).
 *   G3  A pump loop issues extents for the (mode, gen) it started with only;
 *       it never spins: a change sends it back to bg_pump, a pass without
 *       progress waits on the timer.
 *   G4  Thin: a copy reads no grain that resolves to a hole of the source
 *       and writes no zeros; it leaves a hole on the target (bg_skip_holes,
 *       gop_write_extent).  Bits for such grains follow the same rule as a
 *       copy's (cow.c I1, meta.c D1: the target is synced first).
 *
 * Context
 *   The driver's fields marked (w) are touched only on its worker; bgcopy_kick
 *   may be called from any thread, the rest from control threads.
 */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

enum bg_mode { BG_IDLE, BG_COPY, BG_CLEAN };

struct bgcopy {
    struct pc_map     *m;
    struct pc_worker  *w;
    struct io_msg      kick_msg;
    _Atomic bool       kick_pending;
    _Atomic bool       paused;
    struct io_msg      shutdown_msg;
    _Atomic bool       shut;
    struct io_timer    timer;        /* (w) */
    enum bg_mode       mode;         /* (w) */
    unsigned           gen;          /* (w) the mapping's gen the walk is for */
    uint64_t           cursor;       /* (w) next grain to look at */
    int                inflight;     /* (w) extents running */
    bool               reported;     /* (w) G2 */
    bool               failed;       /* (w) an extent failed: stop until kicked */
    int64_t            tokens;       /* (w) bytes we may still copy now */
    uint64_t           last_ns;      /* (w) last refill */
    bool               pumping;      /* (w) bg_pump is on the stack */
    bool               repump;       /* (w) ... and was asked to go round again */
    struct {                         /* (w) G4: what the source's file is around the cursor */
        bool           valid, hole;
        unsigned       gen;
        uint64_t       start, end;
    } thin;
    _Atomic uint64_t   bytes_copied; /* statistics */
    _Atomic uint64_t   bytes_thin;   /* ... of which went as holes (zero grains) */
};

static void bg_pump(struct bgcopy *bg);

static enum bg_mode desired_mode(const struct pc_map *m, int *rate)
{
    int st = map_state(m);
    if (st == PC_MAP_COPYING && !atomic_load(&m->complete)) {
        *rate = atomic_load(&m->copy_rate);
        return *rate > 0 ? BG_COPY : BG_IDLE;
    }
    if ((st == PC_MAP_STOPPING || (st == PC_MAP_PREPARING && atomic_load(&m->in_chain))) &&
        atomic_load(&m->frozen)) {                /* map.c begin_stop_locked: I4 */
        *rate = atomic_load(&m->split) ? PC_RATE_UNLIMITED : atomic_load(&m->clean_rate);
        if (*rate == 0)
            *rate = PC_RATE_DEFAULT;   /* SVC: clean rate 0 still cleans while stopping */
        return BG_CLEAN;
    }
    return BG_IDLE;
}

static uint64_t extent_limit(const struct pc_map *m, int rate)
{
    uint64_t g = 1ull << m->grain_shift;
    uint64_t lim = GOP_MAX_BYTES;
    if (rate != PC_RATE_UNLIMITED) {
        /* About eight extents a second at the slower rates keeps the pace smooth. */
        lim = pc_rate_bytes_per_sec(rate) / 8;
        if (lim > GOP_MAX_BYTES)
            lim = GOP_MAX_BYTES;
    }
    if (lim < g)
        lim = g;
    uint64_t ng = lim >> m->grain_shift;
    if (ng > GOP_MAX_GRAINS)
        ng = GOP_MAX_GRAINS;
    return ng ? ng : 1;
}

static void bg_timer_fn(struct io_timer *t)
{
    bg_pump(t->priv);
}

static void bg_extent_finish(struct gop *g);

static void bg_fail_done(struct meta_req *rq)
{
    bg_extent_finish((struct gop *)((char *)rq - __builtin_offsetof(struct gop, mrq)));
}

static void bg_extent_done(struct gop *g)
{
    if (g->err && g->wfail) {
        /* The target written (this mapping's, or the older one cleaning
         * feeds) failed: that mapping is suspended (map_fail); the walk
         * goes on without it. */
        g->mrq.w = g->w;
        g->mrq.done = bg_fail_done;
        map_fail(g->copy_to_map, g->err, &g->mrq);
        return;
    }
    bg_extent_finish(g);
}

static void bg_extent_finish(struct gop *g)
{
    struct bgcopy *bg = g->driver;
    struct pc_worker *w = g->w;
    if (g->err && !g->wfail && !bg->failed) {
        bg->failed = true;
        pc_log("mapping %s: %s of grains %llu-%llu failed: %s; background work paused",
               bg->m->name, g->kind == GOP_CLEAN ? "cleaning" : "background copy",
               (unsigned long long)g->g0, (unsigned long long)(g->g0 + g->ng - 1),
               strerror(-g->err));
    }
    if (!g->err) {
        atomic_fetch_add(&bg->bytes_copied,
                         (uint64_t)__builtin_popcountll(g->copy_mask) << bg->m->grain_shift);
        atomic_fetch_add(&bg->bytes_thin,
                         (uint64_t)__builtin_popcountll(g->zero_mask) << bg->m->grain_shift);
    }
    busy_release(w->e->busy, g);
    srcu_unlock(w, g->srcu_idx);
    gop_put(w, g);
    bg->inflight--;
    bg_pump(bg);
}

/*
 * Thin (thin.c): grains to copy that resolve to the source where its file
 * has a hole are not read; gop_write_extent makes them holes on the target.
 * G4: one lseek answers for a whole hole or data region, kept for the
 * extents after this one.  A hole seen after this start (the gen is read
 * before the lseek, and any start bumps it) is still a hole, as far as this
 * mapping reads it, for every grain that resolves to the source when its
 * slot is ours: such a grain was not written since the start (cow.c I2 would
 * have given the newest mapping its bit first, and bits are not cleared
 * while in the chain).  That holds only for a source that nothing but
 * source writes change: a source that is itself a target (a cascade) is
 * asked anew per extent.
 */
static void bg_skip_holes(struct bgcopy *bg, struct gop *g, const struct chain *c, int k)
{
    struct pc_volume *src = c->maps[0]->src;
    unsigned gen = atomic_load(&bg->m->gen);
    if (bg->thin.gen != gen || atomic_load(&src->tgt_map))
        bg->thin.valid = false;
    for (uint32_t i = 0; i < g->ng; i++) {
        uint64_t bit = 1ull << i, gg = g->g0 + i;
        if (!(g->copy_mask & bit) || chain_lookup(c, (unsigned)k, gg) != src)
            continue;
        uint64_t s = gg << c->grain_shift, e = (gg + 1) << c->grain_shift;
        if (e > src->size)
            e = src->size;
        if (!bg->thin.valid || s < bg->thin.start || s >= bg->thin.end) {
            bg->thin.valid = true;
            bg->thin.gen = gen;
            bg->thin.start = s;
            thin_probe(src->fd, s, src->size, &bg->thin.hole, &bg->thin.end);
        }
        if (bg->thin.hole && e <= bg->thin.end) {
            g->zero_mask |= bit;
            g->read_mask &= ~bit;
        }
    }
}

/* We own grain g0's slot: extend the extent, decide, copy. */
static void bg_extent_run(struct gop *g)
{
    struct bgcopy *bg = g->driver;
    struct pc_map *m = bg->m;
    if (atomic_load(&m->restoring)) {
        /* A restore (restore.c) copies one grain at a time onto S. */
        int rate;
        if (desired_mode(m, &rate) != BG_COPY || g->kind != GOP_BGCOPY) {
            bg_extent_done(g);
            return;
        }
        if (rate != PC_RATE_UNLIMITED)
            bg->tokens -= (int64_t)1 << m->grain_shift;
        g->c = restore_chain(m);
        g->fin = bg_extent_done;
        restore_grain_run(g);
        return;
    }
    struct chain *c = atomic_load(&m->src->chain);
    int k = chain_index(c, m);
    int rate;
    enum bg_mode mode = desired_mode(m, &rate);

    if (k < 0 || mode != (g->kind == GOP_CLEAN ? BG_CLEAN : BG_COPY)) {
        bg_extent_done(g);
        return;
    }
    g->c = c;
    g->k = k;
    uint64_t max_ng = extent_limit(m, rate);
    while (g->ng < max_ng && g->g0 + g->ng < m->grains) {
        uint64_t next = g->g0 + g->ng;
        bool want = g->kind == GOP_CLEAN ? map_bit(m, next) : !map_bit(m, next);
        if (!want || !busy_try_acquire(g->w->e->busy, g, next))
            break;
        g->ng++;
    }
    if (bg->cursor < g->g0 + g->ng)
        bg->cursor = g->g0 + g->ng;

    /* Decide under the slots: bits cannot change now (cow.c I1). */
    if (g->kind == GOP_BGCOPY) {
        for (uint32_t i = 0; i < g->ng; i++)
            if (!map_bit(m, g->g0 + i))
                g->copy_mask |= 1ull << i;
        g->read_mask = g->copy_mask;
        g->read_from = NULL;            /* lookup(k, g) */
        g->copy_to = m->tgt;
        g->copy_to_map = m;
        bg_skip_holes(bg, g, c, k);
    } else {
        int i = chain_pred_index(c, k);
        if (i >= 0) {
            for (uint32_t x = 0; x < g->ng; x++)
                if (map_bit(m, g->g0 + x) && !chain_any_split(c, i, k, g->g0 + x))
                    g->copy_mask |= 1ull << x;
            g->copy_to = c->maps[i]->tgt;
            g->copy_to_map = c->maps[i];
        }
        g->read_mask = g->copy_mask;
        g->read_from = m->tgt;
    }
    if (!g->copy_mask) {
        bg_extent_done(g);
        return;
    }
    if (rate != PC_RATE_UNLIMITED)
        bg->tokens -= (int64_t)__builtin_popcountll(g->copy_mask) << m->grain_shift;
    g->done = bg_extent_done;
    gop_read_extent(g);
}

static void bg_report(struct bgcopy *bg)
{
    if (bg->reported)
        return;
    bg->reported = true;
    janitor_queue(bg->w->e, bg->mode == BG_COPY ? map_copy_complete : map_clean_complete,
                  bg->m, bg->gen);
}

static void bg_pump_once(struct bgcopy *bg);

/* Extents that finish at once (nothing to copy) call back into the pump;
 * loop instead of recursing. */
static void bg_pump(struct bgcopy *bg)
{
    if (bg->pumping) {
        bg->repump = true;
        return;
    }
    bg->pumping = true;
    do {
        bg->repump = false;
        bg_pump_once(bg);
    } while (bg->repump);
    bg->pumping = false;
}

static void bg_pump_once(struct bgcopy *bg)
{
    struct pc_map *m = bg->m;
    struct pc_worker *w = bg->w;
    int rate = 0;
    enum bg_mode mode = desired_mode(m, &rate);

    unsigned gen = atomic_load(&m->gen);
    if (mode != bg->mode || gen != bg->gen) {
        bg->mode = mode;
        bg->gen = gen;
        bg->cursor = 0;
        bg->reported = false;
        bg->failed = false;
        bg->tokens = 0;
        bg->last_ns = io_now_ns();
    }
    if (mode == BG_IDLE || bg->failed)
        return;

    int maxq = rate == PC_RATE_UNLIMITED ? 16 : 2;
    bool wrapped = false;
    while (bg->inflight < maxq) {
        /* G3: the walk is for one (mode, gen); when either moves (a stop,
         * a restart, a rate change) go round bg_pump again, which starts
         * the new walk.  Extents of the old one end at once without work,
         * so looping on would spin. */
        int now_rate;
        if (desired_mode(m, &now_rate) != mode || atomic_load(&m->gen) != gen) {
            bg->repump = true;
            return;
        }
        if (rate != PC_RATE_UNLIMITED) {
            uint64_t now = io_now_ns();
            uint64_t bps = pc_rate_bytes_per_sec(rate);
            int64_t burst = (int64_t)(extent_limit(m, rate) << m->grain_shift);
            bg->tokens += (int64_t)((double)bps * (double)(now - bg->last_ns) / 1e9);
            bg->last_ns = now;
            if (bg->tokens > burst)
                bg->tokens = burst;
            if (bg->tokens <= 0) {
                if (!bg->timer.armed) {
                    uint64_t wait = (uint64_t)((double)(-bg->tokens + (1 << m->grain_shift)) * 1e9 / (double)bps);
                    io_loop_timer_arm(w->loop, &bg->timer, wait);
                }
                return;
            }
        }
        int idx = srcu_lock(w);
        if (atomic_load(&bg->paused)) {          /* G1 */
            srcu_unlock(w, idx);
            return;
        }
        uint64_t g = mode == BG_COPY ? bitmap_find_next_unset(m->bits, bg->cursor)
                                     : bitmap_find_next_set(m->bits, bg->cursor);
        if (g >= m->grains) {
            if (bg->inflight) {
                srcu_unlock(w, idx);
                return;                           /* the last extent pumps again */
            }
            if (mode == BG_COPY && bitmap_find_next_unset(m->bits, 0) < m->grains) {
                srcu_unlock(w, idx);
                bg->cursor = 0;                   /* grains skipped while busy */
                if (wrapped) {
                    /* A whole pass made no progress: try again shortly
                     * rather than spin on the worker. */
                    if (!bg->timer.armed)
                        io_loop_timer_arm(w->loop, &bg->timer, 1000 * 1000);
                    return;
                }
                wrapped = true;
                continue;
            }
            bg_report(bg);                        /* inside the section: G1 */
            srcu_unlock(w, idx);
            return;
        }
        struct gop *op = gop_get(w);
        if (PC_NEVER(!op)) {
            srcu_unlock(w, idx);
            return;
        }
        op->kind = mode == BG_COPY ? GOP_BGCOPY : GOP_CLEAN;
        op->srcu_idx = idx;
        /* Busy keys are the chain's source: S's for a restore. */
        op->src_id = atomic_load(&m->restoring) ? m->tgt->id : m->src->id;
        op->g0 = g;
        op->ng = 1;
        op->m = m;
        op->driver = bg;
        op->resume = bg_extent_run;
        bg->cursor = g + 1;
        bg->inflight++;
        if (!busy_acquire(w->e->busy, op))
            bg_extent_run(op);
    }
}

static void bg_kick_msg(struct io_msg *msg)
{
    struct bgcopy *bg = msg->priv;
    atomic_store(&bg->kick_pending, false);
    bg_pump(bg);
}

static struct bgcopy *bg_get(struct pc_map *m)
{
    if (!m->bg) {
        struct bgcopy *bg = calloc(1, sizeof *bg);
        if (!bg)
            return NULL;
        bg->m = m;
        bg->w = engine_worker_for(m->e, m->id);
        bg->timer.fn = bg_timer_fn;
        bg->timer.priv = bg;
        m->bg = bg;
    }
    return m->bg;
}

void bgcopy_kick(struct pc_map *m)
{
    struct bgcopy *bg = bg_get(m);
    if (PC_NEVER(!bg)) {
        pc_log("mapping %s: out of memory starting background work", m->name);
        return;
    }
    atomic_store(&bg->paused, false);
    if (!atomic_exchange(&bg->kick_pending, true))
        engine_post(bg->w, &bg->kick_msg, bg_kick_msg, bg);
}

void bgcopy_pause(struct pc_map *m)
{
    if (!m->bg)
        return;
    atomic_store(&m->bg->paused, true);
    srcu_sync(m->e);      /* G1: extents in flight finish, none starts */
}

static void bg_shutdown_msg(struct io_msg *msg)
{
    struct bgcopy *bg = msg->priv;
    io_loop_timer_cancel(bg->w->loop, &bg->timer);
    atomic_store(&bg->shut, true);
}

void bgcopy_free(struct pc_map *m)
{
    struct bgcopy *bg = m->bg;
    if (!bg)
        return;
    bgcopy_pause(m);
    while (atomic_load(&bg->kick_pending))
        sched_yield();
    engine_post(bg->w, &bg->shutdown_msg, bg_shutdown_msg, bg);
    while (!atomic_load(&bg->shut))
        sched_yield();
    free(bg);
    m->bg = NULL;
}

uint64_t bgcopy_bytes(const struct pc_map *m)
{
    return m->bg ? atomic_load(&m->bg->bytes_copied) : 0;
}

uint64_t bgcopy_bytes_thin(const struct pc_map *m)
{
    return m->bg ? atomic_load(&m->bg->bytes_thin) : 0;
}
