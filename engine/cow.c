/* SPDX-License-Identifier: MIT */
/*
 * engine/cow.c — the data path: copy-on-write, read redirection, target writes.
 *
 * Role
 *   pc_io_submit routes every request by the volume's role — plain volume,
 *   source of a chain, target of a started mapping — and applies the grain
 *   protocol of DESIGN.md.  Grain operations (struct gop) do the work that
 *   needs a grain's busy slot; their extent copy machinery is shared with
 *   background copy and cleaning (bgcopy.c).
 *
 * Notation
 *   A source S has a chain c of started mappings maps[0] (oldest) …
 *   maps[n-1] (newest); B_k is maps[k]'s split bitmap and T_k its target.
 *   lookup(k, g) = T_j for the first j ≥ k with B_j[g] set, else S.
 *   "Stopping" mappings are still in the chain (their targets hold data that
 *   older mappings resolve to) but take no new copies.
 *
 * Invariants
 *   I1  A bit is set only after the data it vouches for is written, and
 *       (except by a source write's own copy) while its grain's busy slot
 *       is owned.  Bits are never cleared while the mapping is in a chain.
 *       With durable metadata the bit is set only once the data and the
 *       journal record are durable (meta.c D1), still under the slot.
 *   I2  A source write to g is issued only once lookup(m, g) != S for the
 *       newest non-stopping mapping m: the old contents are in a target
 *       before the source changes.  Fast path: B_{n-1}[g] set — one bit test
 *       whatever the number of targets.
 *   I3  A write to T_k on g that older mappings resolve to (none of
 *       B_i..B_{k-1} set, i the nearest older non-stopping mapping) first
 *       copies lookup(k, g) to T_i and sets B_i, and only then writes T_k.
 *   I4  A stopping mapping's bits are frozen: no operation that began after
 *       the stop's grace period sets them (COW and I3 skip stopping
 *       mappings; its target is offline or fully copied; its background
 *       copy has ended).  So one cleaning pass over its bits suffices.
 *   Zeroing (PC_IO_ZERO: NBD TRIM, WRITE_ZEROES) is a write in every rule
 *   here — hold, copy-on-write, I3, merges — whose own I/O is a punch.  A
 *   copy or merge of a grain that reads as zeros goes to its target as a
 *   hole (gop_write_extent, thin.c), its bit durable by the same rule (I1).
 *
 *   I5  A target read is accepted only if lookup() gives the same volume,
 *       under the same chain snapshot, after the read completed as before it
 *       was issued; otherwise the range is read again.  Every change that
 *       could alter what a read returns sets a bit (I1) or replaces the
 *       chain before issuing its write, so a read that saw new data sees
 *       the change.
 *   I6  Incremental: a write to a volume reaches the disk only once every
 *       recording mapping's difference bits for its grains are set — and,
 *       with durable metadata, durable (meta.c D6).  Only the first write to
 *       a grain after a start pays: later ones find the bit set.  The hold
 *       of a start drains such writes, so the start's swap of the
 *       difference bitmap (map.c) never races a recording.
 *
 * Context
 *   Worker threads only.  Nothing here blocks or takes a lock other than a
 *   busy stripe's spinlock (and a volume's hold_lock while a hold is on).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

/* Per-request engine state, kept in pc_io.engine_private. */
struct io_state {
    struct pc_worker *w;
    int               srcu_idx;
    int               pending;     /* sub-operations outstanding (+1 while dispatching) */
    int               err;
    bool              fua_synced;  /* PC_IO_ZERO with FUA: its closing fdatasync ran */
    void            (*next_step)(struct pc_io *io);  /* run when pending reaches 0 */
    struct pc_io     *held_next;   /* volume hold list */
    struct io_msg     msg;         /* deferred completion / resubmission */
    struct io_req     req;         /* the request's own I/O when it needs one */
};
_Static_assert(sizeof(struct io_state) <= sizeof(((struct pc_io *)0)->engine_private),
               "pc_io private area too small");

static inline struct io_state *ios(struct pc_io *io)
{
    return (struct io_state *)io->engine_private;
}

/* Requests that change a volume: writes and zeroings (holds, COW, I2, I3). */
static inline bool io_writes(const struct pc_io *io)
{
    return io->op == PC_IO_WRITE || io->op == PC_IO_ZERO;
}

/* A piece of a request: one plain I/O into the request's buffer. */
struct seg {
    struct io_req     req;
    struct pc_io     *io;
    struct chain     *c;         /* target reads: the snapshot resolved under */
    int               k;
    uint64_t          g0, g1;    /* grains covered */
    struct pc_volume *from;
    struct seg       *free_next;
};

static void io_complete(struct pc_io *io);
static void read_range(struct pc_io *io, uint64_t off, uint64_t end);
static void dispatch_routed(struct pc_io *io);

/* ------------------------------------------------------------------------
 * Free lists (worker-local: no locks; grow in batches). */

static struct seg *seg_get(struct pc_worker *w)
{
    struct seg *s = w->free_segs;
    if (PC_NEVER(!s)) {
        s = calloc(1, sizeof *s);
        return s;
    }
    w->free_segs = s->free_next;
    return s;
}

static void seg_put(struct pc_worker *w, struct seg *s)
{
    s->free_next = w->free_segs;
    w->free_segs = s;
}

/* The worker has stopped: free what its lists hold. */
void cow_worker_free(struct pc_worker *w)
{
    while (w->free_segs) {
        struct seg *s = w->free_segs;
        w->free_segs = s->free_next;
        free(s);
    }
    while (w->free_gops) {
        struct gop *g = w->free_gops;
        w->free_gops = g->free_next;
        free(g);
    }
}

struct gop *gop_get(struct pc_worker *w)
{
    struct gop *g = w->free_gops;
    if (PC_NEVER(!g)) {
        g = malloc(sizeof *g);
        if (!g)
            return NULL;
    } else {
        w->free_gops = g->free_next;
    }
    memset(g, 0, offsetof(struct gop, req));
    g->w = w;
    return g;
}

void gop_put(struct pc_worker *w, struct gop *g)
{
    if (g->buf) {
        io_pool_put(w->pool, g->buf, g->buflen);
        g->buf = NULL;
    }
    g->free_next = w->free_gops;
    w->free_gops = g;
}

/* ------------------------------------------------------------------------
 * Chain lookups. */

struct pc_volume *chain_lookup(const struct chain *c, unsigned k, uint64_t g)
{
    for (unsigned j = k; j < c->n; j++)
        if (map_bit(c->maps[j], g))
            return c->maps[j]->tgt;
    return c->maps[0]->src;
}

int chain_index(const struct chain *c, const struct pc_map *m)
{
    if (!c)
        return -1;
    for (unsigned j = c->n; j-- > 0;)
        if (c->maps[j] == m)
            return (int)j;
    return -1;
}

/* A failed (suspended) mapping takes no new copies either, like a stopping one. */
int chain_cow_index(const struct chain *c)
{
    for (unsigned j = c->n; j-- > 0;)
        if (!map_stopping(c->maps[j]) && !map_failed(c->maps[j]))
            return (int)j;
    return -1;
}

int chain_pred_index(const struct chain *c, int k)
{
    for (int j = k - 1; j >= 0; j--)
        if (!map_stopping(c->maps[j]) && !map_failed(c->maps[j]))
            return j;
    return -1;
}

bool chain_any_split(const struct chain *c, int from, int to, uint64_t g)
{
    for (int j = from; j < to; j++)
        if (map_bit(c->maps[j], g))
            return true;
    return false;
}

static inline uint64_t grain_start(const struct chain *c, uint64_t g)
{
    return g << c->grain_shift;
}

static inline uint64_t grain_end(const struct chain *c, const struct pc_volume *v, uint64_t g)
{
    uint64_t e = (g + 1) << c->grain_shift;
    return e < v->size ? e : v->size;
}

/* ------------------------------------------------------------------------
 * Request bookkeeping. */

static void io_put_pending(struct pc_io *io, int err)
{
    struct io_state *st = ios(io);
    if (err && !st->err)
        st->err = err;
    if (--st->pending)
        return;
    if (st->next_step) {
        void (*step)(struct pc_io *) = st->next_step;
        st->next_step = NULL;
        step(io);
        return;
    }
    io_complete(io);
}

/* A punch the file refused: remember it, so copies write zeros instead
 * (thin.c) and a PC_IO_ZERO fails at once, for its caller to write zeros. */
static int punch_refused(struct pc_volume *v, const struct io_req *req, int res)
{
    if (req->op == IO_OP_PUNCH && (res == -EOPNOTSUPP || res == -EINVAL)) {
        if (!atomic_exchange(&v->no_punch, true))
            pc_log("volume %s: %s cannot deallocate (fallocate PUNCH_HOLE: %s); "
                   "zeros are written instead", v->name, v->path, strerror(-res));
        return -EOPNOTSUPP;
    }
    return res;
}

/* Completion of the request's own I/O (st->req). */
static void own_req_done(struct io_req *req, int res)
{
    struct pc_io *io = req->priv;
    if (res < 0)
        res = punch_refused(io->vol, req, res);
    io_put_pending(io, res < 0 ? res : 0);
}

static void io_complete(struct pc_io *io)
{
    struct io_state *st = ios(io);
    if (io->op == PC_IO_ZERO && (io->flags & PC_IO_FUA) && !st->err && !st->fua_synced) {
        /* A hole has no RWF_DSYNC: FUA is a sync of the volume after it. */
        st->fua_synced = true;
        st->pending = 1;
        st->req.op = IO_OP_FDATASYNC;
        st->req.flags = 0;
        st->req.fd = io->vol->fd;
        st->req.buf = NULL;
        st->req.len = 0;
        st->req.off = 0;
        st->req.done = own_req_done;
        st->req.priv = io;
        io_loop_submit(st->w->loop, &st->req);
        return;
    }
    if (io_writes(io))
        atomic_fetch_sub(&io->vol->wr_inflight[st->w->idx].n, 1);
    srcu_unlock(st->w, st->srcu_idx);
    io->done(io, st->err);
}

static void early_fail_msg(struct io_msg *msg)
{
    struct pc_io *io = msg->priv;
    io->done(io, ios(io)->err);
}

/* Complete without ever having entered a read section (validation failures). */
static void io_fail_early(struct pc_worker *w, struct pc_io *io, int err)
{
    ios(io)->err = err;
    engine_post(w, &ios(io)->msg, early_fail_msg, io);
}

static void seg_done(struct io_req *req, int res)
{
    struct seg *s = req->priv;
    struct pc_io *io = s->io;
    struct pc_worker *w = ios(io)->w;
    if (res < 0)
        res = punch_refused(io->vol, req, res);
    seg_put(w, s);
    io_put_pending(io, res < 0 ? res : 0);
}

/* Issue one plain I/O for [off, off+len) of v into the request's buffer. */
static void issue_seg(struct pc_io *io, struct pc_volume *v, uint64_t off, uint32_t len,
                      bool write, io_done_fn done, struct seg *s)
{
    struct io_state *st = ios(io);
    if (!s) {
        s = seg_get(st->w);
        if (PC_NEVER(!s)) {
            if (!st->err)
                st->err = -ENOMEM;
            return;
        }
    }
    s->io = io;
    s->req.op = !write ? IO_OP_READ : io->op == PC_IO_ZERO ? IO_OP_PUNCH : IO_OP_WRITE;
    s->req.flags = (write && (io->flags & PC_IO_FUA)) ? IO_F_DSYNC : 0;
    s->req.fd = v->fd;
    s->req.buf = io->buf ? (char *)io->buf + (off - io->off) : NULL;
    s->req.len = len;
    s->req.off = off;
    s->req.done = done;
    s->req.priv = s;
    st->pending++;
    io_loop_submit(st->w->loop, &s->req);
}

/* ------------------------------------------------------------------------
 * Write hold (map.c sets and releases it). */

static void resubmit_msg(struct io_msg *msg)
{
    struct pc_io *io = msg->priv;
    pc_io_submit(ios(io)->w, io);
}

/* Called with the request's read section held; true if the request was
 * queued (and its section left). */
static bool hold_enqueue(struct pc_io *io)
{
    struct pc_volume *v = io->vol;
    struct io_state *st = ios(io);
    bool queued = false;
    pthread_mutex_lock(&v->hold_lock);
    if (atomic_load(&v->hold)) {
        st->held_next = NULL;
        if (v->held_tail)
            ios(v->held_tail)->held_next = io;
        else
            v->held_head = io;
        v->held_tail = io;
        queued = true;
    }
    pthread_mutex_unlock(&v->hold_lock);
    if (queued) {
        atomic_fetch_sub(&v->wr_inflight[st->w->idx].n, 1);
        srcu_unlock(st->w, st->srcu_idx);
    }
    return queued;
}

/* Release a volume's hold: requeue what it held on the workers they came from. */
void volume_hold_release(struct pc_volume *v)
{
    struct pc_io *io;
    pthread_mutex_lock(&v->hold_lock);
    atomic_store(&v->hold, 0);
    io = v->held_head;
    v->held_head = v->held_tail = NULL;
    pthread_mutex_unlock(&v->hold_lock);
    while (io) {
        struct pc_io *next = ios(io)->held_next;
        engine_post(ios(io)->w, &ios(io)->msg, resubmit_msg, io);
        io = next;
    }
}

/* ------------------------------------------------------------------------
 * Grain operations: the extent copy shared by COW, target writes,
 * background copy and cleaning.
 *
 * gop_read_extent reads the grains of read_mask (bit i = grain g0+i) into
 * the gop's buffer — each from read_from, or from lookup(k, g) — then runs
 * after_read, by default gop_write_extent.  gop_write_extent writes the
 * copy_mask grains to copy_to and only then sets their bits in copy_to_map
 * (I1), then runs done.  Consecutive grains from one volume share one I/O.
 */

/* The committer made the bits durable and set them (meta.c D1). */
static void gop_commit_done(struct meta_req *rq)
{
    struct gop *g = (struct gop *)((char *)rq - __builtin_offsetof(struct gop, mrq));
    if (rq->err && !g->err) {
        g->err = rq->err;
        g->wfail = true;
    }
    g->done(g);
}

/* Hand the bits of mask to the committer; false when the mapping keeps no
 * durable metadata and the caller sets them itself. */
bool gop_commit(struct gop *g, struct pc_map *m, int data_fd, uint64_t mask)
{
    if (!meta_strict(m))
        return false;
    struct meta_req *rq = &g->mrq;
    rq->m = m;
    rq->data_fd = data_fd;      /* -1: written with IO_F_DSYNC already */
    rq->g0 = g->g0;
    rq->mask = mask;
    rq->ng = g->ng;
    rq->w = g->w;
    rq->done = gop_commit_done;
    meta_commit(rq);
    return true;
}

static void gop_write_finish(struct gop *g);

static void gop_write_done(struct io_req *req, int res)
{
    struct gop *g = req->priv;
    if (res < 0 && punch_refused(g->copy_to, req, res) == -EOPNOTSUPP) {
        /* The same grains as zeros, in the same slot (thin.c). */
        memset(req->buf, 0, req->len);
        req->op = IO_OP_WRITE;
        io_loop_submit(g->w->loop, req);
        return;
    }
    if (res < 0 && !g->err) {
        g->err = res;
        g->wfail = true;
    }
    if (--g->pending)
        return;
    gop_write_finish(g);
}

/* The extent's writes are done: the bits may say so now. */
static void gop_write_finish(struct gop *g)
{
    /* The commit syncs the target before it journals the bits (D1). */
    if (!g->err && gop_commit(g, g->copy_to_map, g->copy_to->fd, g->copy_mask))
        return;
    if (!g->err) {
        /* I1: the data is on the target; now the bits may say so. */
        for (uint32_t i = 0; i < g->ng && !g->err; i++)
            if (g->copy_mask & (1ull << i))
                (void)bitmap_test_and_set(g->copy_to_map->bits, g->g0 + i, &g->err);
    }
    g->done(g);
}

/*
 * Thin targets: a grain that reads as zeros — a hole of the source that
 * background copy never read (zero_mask set by bgcopy.c), or a buffer of
 * zeros — becomes a hole on copy_to: nothing at all when copy_to has no
 * data there, else a punch.  Either way the commit syncs copy_to before
 * the bit is journalled, as for every copy, and that matters here too:
 * neither a punch nor a hole that an earlier unsynced punch made is durable
 * by itself (D1).
 */
void gop_write_extent(struct gop *g)
{
    const struct chain *c = g->c;
    struct pc_volume *to = g->copy_to;
    uint64_t base = g->g0 << c->grain_shift;
    bool punch = !atomic_load_explicit(&to->no_punch, memory_order_relaxed);
    /* A copy whose bit will be journalled is written plainly: the commit
     * round fdatasyncs the target once for every copy it journals (meta.c
     * D1).  RWF_DSYNC on each write cost an allocating write to a sparse
     * target a filesystem journal commit of its own: 3.8 device writes per
     * first touch instead of 2.4 (bench/README.md, nbd_cow_first_touch_4k). */
    uint8_t wflags = (g->parent && (g->parent->flags & PC_IO_FUA)) ? IO_F_DSYNC : 0;
    int nreq = 0;

    for (uint32_t i = 0; i < g->ng; i++) {
        uint64_t bit = 1ull << i;
        if (!(g->copy_mask & bit) || (g->zero_mask & bit))
            continue;
        uint64_t s = grain_start(c, g->g0 + i), e = grain_end(c, to, g->g0 + i);
        if (thin_all_zero((char *)g->buf + (s - base), e - s))
            g->zero_mask |= bit;
    }
    for (uint32_t i = 0; i < g->ng;) {
        if (!(g->copy_mask & (1ull << i))) {
            i++;
            continue;
        }
        bool zero = g->zero_mask & (1ull << i);
        uint32_t j = i;
        while (j < g->ng && (g->copy_mask & (1ull << j)) &&
               !!(g->zero_mask & (1ull << j)) == zero)
            j++;
        uint64_t s = grain_start(c, g->g0 + i);
        uint64_t e = grain_end(c, to, g->g0 + j - 1);
        uint8_t op = IO_OP_WRITE;
        i = j;
        if (zero) {
            if (punch && !thin_has_data(to->fd, s, e))
                continue;                       /* a hole already */
            if (punch)
                op = IO_OP_PUNCH;
            else
                memset((char *)g->buf + (s - base), 0, e - s);   /* maybe never read */
        }
        struct io_req *r = &g->req[nreq++];
        r->op = op;
        r->flags = wflags;
        r->fd = to->fd;
        r->buf = (char *)g->buf + (s - base);   /* a refused punch writes it (zeros) */
        r->len = (uint32_t)(e - s);
        r->off = s;
        r->done = gop_write_done;
        r->priv = g;
    }
    g->pending = nreq;
    if (nreq == 0) {
        if (g->copy_mask)
            gop_write_finish(g);        /* holes already: the bits still go in */
        else
            g->done(g);
        return;
    }
    for (int i = 0; i < nreq; i++)
        io_loop_submit(g->w->loop, &g->req[i]);
}

static void gop_read_done(struct io_req *req, int res)
{
    struct gop *g = req->priv;
    if (res < 0 && !g->err)
        g->err = res;
    if (--g->pending)
        return;
    if (g->err)
        g->done(g);
    else if (g->after_read)
        g->after_read(g);
    else
        gop_write_extent(g);
}

void gop_read_extent(struct gop *g)
{
    const struct chain *c = g->c;
    uint64_t base = g->g0 << c->grain_shift;
    int nreq = 0;

    /* What is read now is scanned anew (a gop may read and write in steps:
     * I3, restore.c); only unread grains keep a zero bit (bgcopy's holes). */
    g->zero_mask &= ~g->read_mask;

    if (!g->buf) {
        g->buflen = (size_t)g->ng << c->grain_shift;
        g->buf = io_pool_get(g->w->pool, g->buflen);
        if (PC_NEVER(!g->buf)) {
            g->err = -ENOMEM;
            g->done(g);
            return;
        }
    }
    for (uint32_t i = 0; i < g->ng;) {
        if (!(g->read_mask & (1ull << i))) {
            i++;
            continue;
        }
        struct pc_volume *from = g->read_from ? g->read_from
                                              : chain_lookup(c, (unsigned)g->k, g->g0 + i);
        uint32_t j = i + 1;
        while (j < g->ng && (g->read_mask & (1ull << j)) &&
               (g->read_from || chain_lookup(c, (unsigned)g->k, g->g0 + j) == from))
            j++;
        uint64_t s = grain_start(c, g->g0 + i);
        uint64_t e = grain_end(c, from, g->g0 + j - 1);
        struct io_req *r = &g->req[nreq++];
        r->op = IO_OP_READ;
        r->flags = 0;
        r->fd = from->fd;
        r->buf = (char *)g->buf + (s - base);
        r->len = (uint32_t)(e - s);
        r->off = s;
        r->done = gop_read_done;
        r->priv = g;
        i = j;
    }
    g->pending = nreq;
    if (nreq == 0) {
        if (g->after_read)
            g->after_read(g);
        else
            gop_write_extent(g);
        return;
    }
    for (int i = 0; i < nreq; i++)
        io_loop_submit(g->w->loop, &g->req[i]);
}

/* ------------------------------------------------------------------------
 * Routing: what a volume is, for one request, right now. */

enum route cow_route(struct pc_volume *v, struct chain **cp, int *kp)
{
    /* Being restored (restore.c): S reads R's data; stopped unfinished, it is
     * offline.  A restore that just finished (complete, then idle_or_copied,
     * then detached: map.c) is a plain volume already: every grain is S's. */
    struct pc_map *r = atomic_load_explicit(&v->restore_by, memory_order_acquire);
    if (r) {
        int rs = map_state(r);
        if (rs == PC_MAP_COPYING) {
            *cp = restore_chain(r);
            return ROUTE_RESTORED;
        }
        if (atomic_load(&r->restoring) &&
            !(rs == PC_MAP_IDLE_OR_COPIED && atomic_load(&r->complete)))
            return ROUTE_OFFLINE;
    }
    struct pc_map *m = atomic_load_explicit(&v->tgt_map, memory_order_acquire);
    if (m) {
        /* State before chain: a start publishes the chain, then the state
         * (map.c), so a target seen as copying is found in its chain. */
        bool online = map_target_online(m);
        struct chain *c = atomic_load_explicit(&m->src->chain, memory_order_acquire);
        int k = chain_index(c, m);
        if (!online)
            return ROUTE_OFFLINE;
        if (k >= 0) {
            *cp = c;
            *kp = k;
            return ROUTE_TARGET;
        }
    }
    struct chain *c = atomic_load_explicit(&v->chain, memory_order_acquire);
    if (c && c->n) {
        *cp = c;
        return ROUTE_SOURCE;
    }
    return ROUTE_PLAIN;
}

/* ------------------------------------------------------------------------
 * Reads. */

static void resolved_read_done(struct io_req *req, int res);

/* Where grain g lives for a read that resolves it: target k's lookup(k, g),
 * or (k < 0) restore_loc for a volume being restored (restore.c R4). */
static struct pc_volume *read_loc(struct pc_volume *v, const struct chain *c, int k,
                                  uint64_t g)
{
    if (k >= 0)
        return chain_lookup(c, (unsigned)k, g);
    struct pc_map *r = atomic_load(&v->restore_by);
    return r ? restore_loc(r, c, g) : v;        /* NULL: the restore ended just now */
}

/* Read [off, end) grain by grain from where read_loc says the data is;
 * resolved_read_done checks each piece (I5, R4). */
static void resolved_read(struct pc_io *io, struct chain *c, int k, uint64_t off, uint64_t end)
{
    struct io_state *st = ios(io);
    uint64_t g = off >> c->grain_shift;
    uint64_t glast = (end - 1) >> c->grain_shift;
    while (g <= glast) {
        struct pc_volume *from = read_loc(io->vol, c, k, g);
        uint64_t h = g + 1;
        while (h <= glast && read_loc(io->vol, c, k, h) == from)
            h++;
        uint64_t s = grain_start(c, g), e = h << c->grain_shift;
        if (s < off)
            s = off;
        if (e > end)
            e = end;
        struct seg *sg = seg_get(st->w);
        if (PC_NEVER(!sg)) {
            if (!st->err)
                st->err = -ENOMEM;
            return;
        }
        sg->c = c;
        sg->k = k;
        sg->g0 = g;
        sg->g1 = h;
        sg->from = from;
        issue_seg(io, from, s, (uint32_t)(e - s), false, resolved_read_done, sg);
        g = h;
    }
}

/* Read [off, end) of the request's volume into its buffer, as routed now. */
static void read_range(struct pc_io *io, uint64_t off, uint64_t end)
{
    struct io_state *st = ios(io);
    struct chain *c = NULL;
    int k = -1;

    switch (cow_route(io->vol, &c, &k)) {
    case ROUTE_OFFLINE:
        if (!st->err)
            st->err = -EIO;
        return;
    case ROUTE_PLAIN:
    case ROUTE_SOURCE:
        issue_seg(io, io->vol, off, (uint32_t)(end - off), false, seg_done, NULL);
        return;
    case ROUTE_RESTORED:                /* k stays -1 */
    case ROUTE_TARGET:
        resolved_read(io, c, k, off, end);
        return;
    }
}

/* I5 (targets), R4 (volumes being restored): accept a read only if nothing it
 * depended on moved — the same route, snapshot and location after it as
 * before; otherwise read the range again. */
static void resolved_read_done(struct io_req *req, int res)
{
    struct seg *s = req->priv;
    struct pc_io *io = s->io;
    struct io_state *st = ios(io);
    bool again = false;

    if (res >= 0) {
        struct chain *c = NULL;
        int k = -1;
        enum route want = s->k >= 0 ? ROUTE_TARGET : ROUTE_RESTORED;
        if (cow_route(io->vol, &c, &k) != want || c != s->c || k != s->k) {
            again = true;
        } else {
            for (uint64_t g = s->g0; g < s->g1 && !again; g++)
                again = read_loc(io->vol, c, k, g) != s->from;
        }
    }
    if (again)
        read_range(io, req->off, req->off + req->len);
    seg_put(st->w, s);
    io_put_pending(io, res < 0 ? res : 0);
}

/* ------------------------------------------------------------------------
 * A request's grain operation: one grain under its busy slot, run now if the
 * slot is free, else when its owner hands it over (busy.c).  Counts as one
 * pending part of the request. */

/* The grain is done: hand its slot on, and count the part done. */
static void grain_op_done(struct gop *g)
{
    struct pc_io *io = g->parent;
    int err = g->err;
    struct pc_worker *w = g->w;
    busy_release(w->e->busy, g);
    gop_put(w, g);
    io_put_pending(io, err);
}

static int grain_op_start(struct pc_io *io, struct chain *c, uint64_t g,
                          enum gop_kind kind, int k, void (*run)(struct gop *))
{
    struct io_state *st = ios(io);
    struct gop *op = gop_get(st->w);
    if (PC_NEVER(!op)) {
        st->err = -ENOMEM;
        return -ENOMEM;
    }
    op->kind = (uint8_t)kind;
    op->src_id = c->maps[0]->src->id;
    op->g0 = g;
    op->ng = 1;
    op->c = c;
    op->k = k;
    op->parent = io;
    op->resume = run;
    st->pending++;
    if (!busy_acquire(st->w->e->busy, op))
        run(op);
    return 0;
}

/* ------------------------------------------------------------------------
 * Source writes (I2). */

static void source_write_issue(struct pc_io *io)
{
    struct io_state *st = ios(io);
    if (st->err) {
        /* A copy failed: the old data is not safe elsewhere, so the source
         * must not change.  The mapping's fate is durability's business. */
        io_complete(io);
        return;
    }
    st->next_step = NULL;
    st->pending = 1;
    st->req.op = io->op == PC_IO_ZERO ? IO_OP_PUNCH : IO_OP_WRITE;
    st->req.flags = (io->flags & PC_IO_FUA) ? IO_F_DSYNC : 0;
    st->req.fd = io->vol->fd;
    st->req.buf = io->buf;
    st->req.len = io->len;
    st->req.off = io->off;
    st->req.done = own_req_done;
    st->req.priv = io;
    io_loop_submit(st->w->loop, &st->req);
}

static void cow_run(struct gop *g);

/* The copy's target (or its bits) failed: that mapping is suspended, its
 * failure durable; copy for the next mapping down instead (map_fail). */
static void cow_retry(struct meta_req *rq)
{
    struct gop *g = (struct gop *)((char *)rq - __builtin_offsetof(struct gop, mrq));
    if (rq->err) {
        g->err = rq->err;      /* nothing durable says the target is invalid */
        grain_op_done(g);
        return;
    }
    g->err = 0;
    g->wfail = false;
    cow_run(g);
}

static void cow_done(struct gop *g)
{
    if (g->err && g->wfail) {
        g->mrq.w = g->w;
        g->mrq.done = cow_retry;
        map_fail(g->copy_to_map, g->err, &g->mrq);
        return;
    }
    grain_op_done(g);
}

static void cow_run(struct gop *g)
{
    const struct chain *c = g->c;
    int k = chain_cow_index(c);
    if (k < 0 || chain_any_split(c, k, (int)c->n, g->g0)) {
        grain_op_done(g);       /* someone copied it while we waited, or no one needs it */
        return;
    }
    g->read_from = c->maps[0]->src;
    g->read_mask = g->copy_mask = 1;
    g->zero_mask = 0;                   /* a retry reads again */
    g->copy_to = c->maps[k]->tgt;
    g->copy_to_map = c->maps[k];
    g->done = cow_done;
    gop_read_extent(g);
}

static void source_write(struct pc_io *io, struct chain *c)
{
    struct io_state *st = ios(io);
    struct pc_map *newest = c->maps[c->n - 1];
    uint64_t g0 = io->off >> c->grain_shift;
    uint64_t g1 = (io->off + io->len - 1) >> c->grain_shift;

    st->next_step = source_write_issue;
    for (uint64_t g = g0; g <= g1; g++) {
        if (map_bit(newest, g))        /* I2 fast path: one bit test */
            continue;
        if (grain_op_start(io, c, g, GOP_COW, -1, cow_run) < 0)
            break;
    }
    io_put_pending(io, 0);   /* the dispatch guard */
}

/* ------------------------------------------------------------------------
 * Target writes (I3). */

/* The request's bytes that fall in grain g0: [s, e). */
static void twrite_slice(const struct gop *g, uint64_t *s, uint64_t *e)
{
    const struct pc_io *io = g->parent;
    uint64_t gs = grain_start(g->c, g->g0), ge = grain_end(g->c, io->vol, g->g0);
    *s = io->off > gs ? io->off : gs;
    *e = io->off + io->len < ge ? io->off + io->len : ge;
}

static void twrite_slice_done(struct io_req *req, int res)
{
    struct gop *g = req->priv;
    if (res < 0)
        res = punch_refused(g->parent->vol, req, res);
    if (res < 0) {
        g->err = res;
    } else if (g->need_self) {
        g->done = grain_op_done;
        if (gop_commit(g, g->c->maps[g->k], g->parent->vol->fd, 1))
            return;
        (void)bitmap_test_and_set(g->c->maps[g->k]->bits, g->g0, &g->err);   /* I1 */
    }
    grain_op_done(g);
}

/* Write the request's own bytes for this grain straight to T_k. */
static void twrite_slice_issue(struct gop *g)
{
    struct pc_io *io = g->parent;
    uint64_t s, e;
    twrite_slice(g, &s, &e);
    struct io_req *r = &g->req[0];
    r->op = io->op == PC_IO_ZERO ? IO_OP_PUNCH : IO_OP_WRITE;
    r->flags = (io->flags & PC_IO_FUA) ? IO_F_DSYNC : 0;
    r->fd = io->vol->fd;
    r->buf = io->buf ? (char *)io->buf + (s - io->off) : NULL;
    r->len = (uint32_t)(e - s);
    r->off = s;
    r->done = twrite_slice_done;
    r->priv = g;
    io_loop_submit(g->w->loop, r);
}

static void twrite_run(struct gop *g);

/* The older target failed while taking its copy (I3): it is suspended
 * and no longer resolves through T_k; decide again (map_fail). */
static void twrite_retry(struct meta_req *rq)
{
    struct gop *g = (struct gop *)((char *)rq - __builtin_offsetof(struct gop, mrq));
    if (rq->err) {
        g->err = rq->err;
        grain_op_done(g);
        return;
    }
    g->err = 0;
    g->wfail = false;
    twrite_run(g);
}

/* Older targets have their copy (or needed none): now change T_k. */
static void twrite_self(struct gop *g)
{
    if (g->err && g->wfail && g->pred >= 0) {
        g->mrq.w = g->w;
        g->mrq.done = twrite_retry;
        map_fail(g->c->maps[g->pred], g->err, &g->mrq);
        return;
    }
    if (g->err) {
        grain_op_done(g);
        return;
    }
    uint64_t s, e;
    twrite_slice(g, &s, &e);
    bool covered = s == grain_start(g->c, g->g0) && e == grain_end(g->c, g->parent->vol, g->g0);
    if (!g->need_self || covered) {
        twrite_slice_issue(g);
        return;
    }
    /* Partial write of an unsplit grain: merge into the grain read from
     * lookup(k, g) and write it whole. */
    if (g->parent->op == PC_IO_ZERO)
        memset((char *)g->buf + (s - grain_start(g->c, g->g0)), 0, e - s);
    else
        memcpy((char *)g->buf + (s - grain_start(g->c, g->g0)),
               (char *)g->parent->buf + (s - g->parent->off), e - s);
    g->copy_mask = 1;
    g->zero_mask = 0;                   /* the buffer changed since the copy to pred */
    g->copy_to = g->parent->vol;
    g->copy_to_map = g->c->maps[g->k];
    g->done = grain_op_done;
    gop_write_extent(g);
}

static void twrite_after_read(struct gop *g)
{
    if (g->pred < 0) {
        twrite_self(g);
        return;
    }
    /* I3: the older target gets the grain as it is now, and its bit, before
     * T_k changes. */
    g->copy_mask = 1;
    g->copy_to = g->c->maps[g->pred]->tgt;
    g->copy_to_map = g->c->maps[g->pred];
    g->done = twrite_self;
    gop_write_extent(g);
}

static void twrite_run(struct gop *g)
{
    const struct chain *c = g->c;
    int i = chain_pred_index(c, g->k);
    uint64_t s, e;

    if (i >= 0 && chain_any_split(c, i, g->k, g->g0))
        i = -1;                         /* older targets do not resolve to T_k */
    g->pred = i;
    g->zero_mask = 0;                   /* a retry reads again */
    g->need_self = !map_bit(c->maps[g->k], g->g0);
    twrite_slice(g, &s, &e);
    bool covered = s == grain_start(c, g->g0) && e == grain_end(c, g->parent->vol, g->g0);

    if (g->pred < 0 && (!g->need_self || covered)) {
        twrite_slice_issue(g);
        return;
    }
    g->read_mask = 1;
    g->read_from = NULL;                /* lookup(k, g) */
    g->after_read = twrite_after_read;
    g->done = grain_op_done;
    gop_read_extent(g);
}

static void target_write(struct pc_io *io, struct chain *c, int k)
{
    struct io_state *st = ios(io);
    struct pc_map *m = c->maps[k];
    struct pc_map *older = k > 0 ? c->maps[k - 1] : NULL;
    uint64_t end = io->off + io->len;
    uint64_t g0 = io->off >> c->grain_shift;
    uint64_t g1 = (end - 1) >> c->grain_shift;

    st->next_step = NULL;
    for (uint64_t g = g0; g <= g1;) {
        /* Fast: T_k has the grain and the next older mapping has its own
         * (so nothing older resolves to T_k): plain write, no slot. */
        uint64_t h = g;
        while (h <= g1 && map_bit(m, h) && (!older || map_bit(older, h)))
            h++;
        if (h > g) {
            uint64_t s = grain_start(c, g), e = h << c->grain_shift;
            if (s < io->off)
                s = io->off;
            if (e > end)
                e = end;
            issue_seg(io, io->vol, s, (uint32_t)(e - s), true, seg_done, NULL);
            g = h;
            continue;
        }
        if (grain_op_start(io, c, g, GOP_TWRITE, k, twrite_run) < 0)
            break;
        g++;
    }
    io_put_pending(io, 0);
}

/* ------------------------------------------------------------------------
 * Writes to the volumes of a restore (restore.c): the grains they touch are
 * restored first (R1), then the write goes on as routed. */

static void restore_op_start(struct pc_io *io, struct pc_map *r, struct chain *c, uint64_t g)
{
    struct io_state *st = ios(io);
    struct gop *op = gop_get(st->w);
    if (PC_NEVER(!op)) {
        st->err = -ENOMEM;
        return;
    }
    op->kind = GOP_RESTORE;
    op->src_id = r->tgt->id;          /* S's chain's key: the same slots as its COW */
    op->g0 = g;
    op->ng = 1;
    op->c = c;
    op->m = r;
    op->parent = io;
    op->fin = grain_op_done;
    op->resume = restore_grain_run;
    st->pending++;
    if (!busy_acquire(st->w->e->busy, op))
        restore_grain_run(op);
}

/* Start restoring the grains of the request r has not restored yet; false
 * when there are none. */
static bool restore_first(struct pc_io *io, struct pc_map *r, void (*then)(struct pc_io *))
{
    uint64_t shift = r->grain_shift;
    uint64_t g0 = io->off >> shift, g1 = (io->off + io->len - 1) >> shift;
    uint64_t g = g0;
    while (g <= g1 && map_bit(r, g))
        g++;
    if (g > g1)
        return false;
    struct chain *c = restore_chain(r);
    ios(io)->next_step = then;
    for (; g <= g1; g++)
        if (!map_bit(r, g))
            restore_op_start(io, r, c, g);
    io_put_pending(io, 0);      /* the dispatch guard */
    return true;
}

static void route_request(struct pc_io *io);

/* Every grain restored: route the request again (it is an ordinary write
 * to S's chain, or to P's target, now). */
static void restored_then_route(struct pc_io *io)
{
    struct io_state *st = ios(io);
    if (st->err) {
        io_complete(io);
        return;
    }
    st->pending = 1;
    route_request(io);
}

/* ------------------------------------------------------------------------
 * Submission. */

static int validate(const struct pc_io *io)
{
    if (io->op == PC_IO_FLUSH)
        return 0;
    if (io->op != PC_IO_READ && io->op != PC_IO_WRITE && io->op != PC_IO_ZERO)
        return -EINVAL;
    if (io->len == 0 || io->len > PC_MAX_IO || io->off % PC_BLOCK_SIZE ||
        io->len % PC_BLOCK_SIZE || (uintptr_t)io->buf % PC_BLOCK_SIZE ||
        (io->op != PC_IO_ZERO && !io->buf))
        return -EINVAL;
    if (io->off > io->vol->size || io->len > io->vol->size - io->off)
        return -ENOSPC;
    if (io->op == PC_IO_ZERO && atomic_load_explicit(&io->vol->no_punch, memory_order_relaxed))
        return -EOPNOTSUPP;             /* the caller writes zeros (pitcopy.h) */
    return 0;
}

/* ------------------------------------------------------------------------
 * Difference bits (I6). */

static void diff_commit_done(struct meta_req *rq)
{
    struct gop *g = (struct gop *)((char *)rq - __builtin_offsetof(struct gop, mrq));
    struct pc_io *io = g->parent;
    int err = rq->err;
    if (err)
        pc_log("mapping %s: cannot record a change to %s durably: %s; the write fails",
               rq->m->name, io->vol->name, strerror(-err));
    gop_put(g->w, g);
    io_put_pending(io, err);
}

/* Mark the request's grains in every recording mapping's difference bitmap;
 * each durable mark counts as one pending part of the request. */
static void diff_record(struct pc_io *io)
{
    struct io_state *st = ios(io);
    const struct diffset *ds = atomic_load_explicit(&io->vol->diffs, memory_order_acquire);

    for (unsigned i = 0; ds && i < ds->n; i++) {
        struct pc_map *m = ds->maps[i];
        if (!atomic_load_explicit(&m->diff_valid, memory_order_acquire))
            continue;
        unsigned cur = atomic_load_explicit(&m->dcur, memory_order_acquire);
        struct bitmap *d = atomic_load_explicit(&m->diff[cur], memory_order_acquire);
        uint64_t g0 = io->off >> m->grain_shift;
        uint64_t g1 = (io->off + io->len - 1) >> m->grain_shift;
        uint64_t first = bitmap_find_next_unset(d, g0);
        if (first > g1)
            continue;                       /* the fast path: already recorded */
        if (!meta_strict(m)) {
            int r = bitmap_set_range(d, first, g1 - first + 1);
            if (r < 0 && !st->err)
                st->err = r;
            continue;
        }
        struct gop *g = gop_get(st->w);
        if (PC_NEVER(!g)) {
            if (!st->err)
                st->err = -ENOMEM;
            continue;
        }
        g->parent = io;
        struct meta_req *rq = &g->mrq;
        rq->m = m;
        rq->data_fd = -1;
        rq->diff = true;
        rq->region = (uint8_t)cur;
        rq->bits = d;
        rq->g0 = first;
        rq->count = g1 - first + 1;
        rq->w = st->w;
        rq->done = diff_commit_done;
        st->pending++;
        meta_commit_diff(rq);
    }
}

static void dispatch(struct pc_io *io)
{
    struct io_state *st = ios(io);
    if (st->err) {                  /* a change could not be recorded: refuse it */
        io_complete(io);
        return;
    }
    st->pending = 1;
    dispatch_routed(io);
}

void pc_io_submit(struct pc_worker *w, struct pc_io *io)
{
    struct io_state *st = ios(io);
    struct pc_volume *v = io->vol;
    int r;

    st->w = w;
    st->err = 0;
    st->fua_synced = false;
    st->next_step = NULL;
    r = validate(io);
    if (r < 0) {
        io_fail_early(w, io, r);
        return;
    }
    st->srcu_idx = srcu_lock(w);
    st->pending = 1;                   /* dispatch guard */

    if (io->op == PC_IO_FLUSH) {
        st->req.op = IO_OP_FDATASYNC;
        st->req.flags = 0;
        st->req.fd = v->fd;
        st->req.buf = NULL;
        st->req.len = 0;
        st->req.off = 0;
        st->req.done = own_req_done;
        st->req.priv = io;
        io_loop_submit(w->loop, &st->req);
        return;
    }
    if (io_writes(io)) {
        /* Count in, then look at the hold (volume_drain_writes pairs). */
        atomic_fetch_add(&v->wr_inflight[w->idx].n, 1);
        if (atomic_load(&v->hold) && hold_enqueue(io))
            return;
    }

    if (io_writes(io) && atomic_load_explicit(&v->diffs, memory_order_acquire)) {
        st->next_step = dispatch;
        diff_record(io);
        io_put_pending(io, 0);      /* the dispatch guard: dispatch runs at zero */
        return;
    }
    dispatch_routed(io);
}

/* Run a request whose difference bits (I6) are in place. */
static void dispatch_routed(struct pc_io *io)
{
    struct pc_volume *v = io->vol;
    if (io_writes(io)) {
        /* T's image is about to change: S gets what it needs of it first. */
        struct pc_map *r = atomic_load_explicit(&v->restore_from, memory_order_acquire);
        if (r && map_state(r) == PC_MAP_COPYING && restore_first(io, r, restored_then_route))
            return;
    }
    route_request(io);
}

/* With the dispatch guard held (pending 1): act on the request as its volume
 * is routed now. */
static void route_request(struct pc_io *io)
{
    struct io_state *st = ios(io);
    struct pc_volume *v = io->vol;
    struct chain *c = NULL;
    int k = -1;

    switch (cow_route(v, &c, &k)) {
    case ROUTE_OFFLINE:
        st->err = -EIO;
        io_put_pending(io, 0);
        return;
    case ROUTE_TARGET:
        if (io_writes(io)) {
            target_write(io, c, k);
            return;
        }
        break;
    case ROUTE_SOURCE:
        if (io_writes(io)) {
            source_write(io, c);
            return;
        }
        break;
    case ROUTE_RESTORED:
        if (io_writes(io)) {
            struct pc_map *r = atomic_load(&v->restore_by);
            if (r && restore_first(io, r, restored_then_route))
                return;
            /* Every grain restored: a source write to S's own chain. */
            struct chain *sc = atomic_load_explicit(&v->chain, memory_order_acquire);
            if (sc && sc->n) {
                source_write(io, sc);
                return;
            }
        }
        break;
    case ROUTE_PLAIN:
        break;
    }
    if (io->op == PC_IO_READ) {
        read_range(io, io->off, io->off + io->len);
        io_put_pending(io, 0);
        return;
    }
    /* plain write or zeroing: the request's own I/O */
    source_write_issue(io);
}
