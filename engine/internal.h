/* SPDX-License-Identifier: MIT */
/*
 * engine/internal.h — private declarations of the engine, one heading per file.
 *
 * Objects and who owns what
 *   struct pc_engine   workers, volumes, mappings, the janitor thread.
 *   struct pc_worker   one thread, one io_loop, one buffer pool, free lists of
 *                      the engine's per-request state (segments, grain ops).
 *   struct pc_volume   an fd; as a source, the chain of its started mappings;
 *                      as a target, the mapping that targets it.
 *   struct pc_map      a mapping: state, rates, the split bitmap.
 *   struct chain       an immutable snapshot of one source's started mappings,
 *                      oldest first.  Replaced (never edited) under a write
 *                      hold; freed only after a grace period (srcu_sync).
 *
 * Locking (outer to inner)
 *   engine->ctl_lock   control calls and janitor work; never taken by workers.
 *   vol_lock           the volume list and volume refs; never held while
 *                      waiting (workers take it in NBD handshakes).
 *   volume->hold_lock  the held-writes list; taken by workers only when a
 *                      hold is on (slow path).
 *   busy stripe locks  (busy.c) one per stripe, held for a few instructions.
 *   janitor.lock       the janitor's queue.
 *   srcu_sync_lock     held while a grace period runs; innermost, taken
 *                      with or without ctl_lock.
 *   Workers never block on ctl_lock; the control side never holds a stripe
 *   lock or hold_lock while it waits.
 *
 * Grace periods (engine.c, "srcu")
 *   Every data-path operation — a request from pc_io_submit to done(), one
 *   background-copy or cleaning extent — runs inside a read section entered
 *   and left on its own worker.  srcu_sync() returns once every section that
 *   began before it has ended.  That is what lets the control side free a
 *   chain snapshot or a bitmap that readers might still hold, and what makes
 *   a stop's freeze of a mapping's bits (cow.c I4) complete.
 *
 * Write holds (map.c, cow.c)
 *   A start must drain only the writes in flight to its source and target,
 *   not every request on every volume: each volume counts its writes in
 *   flight per worker (wr_inflight), entered before the hold is checked.
 *   volume_drain_writes() waits for those counts to reach zero once the hold
 *   is set — the same Dekker pairing as srcu_lock/srcu_sync.
 */
#ifndef PITCOPY_ENGINE_INTERNAL_H
#define PITCOPY_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pitcopy.h"
#include "bitmap/bitmap.h"
#include "io/loop.h"
#include "io/pool.h"

#define PC_ALWAYS(x) (__builtin_expect(!!(x), 1))
#define PC_NEVER(x)  (__builtin_expect(!!(x), 0))

struct gop;
struct seg;
struct pc_map;
struct pc_worker;

/*
 * A request to make split bits durable (D1): the grains g0+i for the bits i
 * of mask, whose data is on data_fd.  done runs on w once the bits are
 * durable and set (err 0), or with err and the bits still clear.
 */
struct meta_req {
    struct pc_map      *m;
    int                 data_fd;
    uint64_t            g0;
    uint64_t            mask;
    uint32_t            ng;
    bool                fail;       /* meta_fail, not a commit */
    int                 err;
    struct pc_worker   *w;
    void              (*done)(struct meta_req *rq);
    struct io_msg       msg;
    struct meta_req    *next, *next_in_map;
    /* A difference-bit request (cow.c diff_record): grains [g0, g0+count)
     * of region's bitmap bits, journalled as one extent; mask is unused. */
    bool                diff;
    uint8_t             region;
    uint64_t            count;
    struct bitmap      *bits;
};


/* ------------------------------------------------------------- engine.c */

struct pc_worker {
    struct pc_engine  *e;
    unsigned           idx;
    pthread_t          thread;
    struct io_loop    *loop;
    struct io_pool    *pool;
    /* Read-section counters, one per grace-period phase; written only by
     * this worker (inc on entry, dec on exit), read by srcu_sync. */
    _Atomic int64_t    srcu_cnt[2];
    struct seg        *free_segs;     /* worker-local free lists */
    struct gop        *free_gops;
    int                start_err;
    bool               started;
    struct io_msg      stop_msg;
};

struct janitor_job;
typedef void (*janitor_fn)(struct pc_engine *e, struct janitor_job *job);
struct janitor_job {
    janitor_fn          fn;
    struct pc_map      *map;
    unsigned            gen;      /* the mapping's gen the report is for */
    struct janitor_job *next;
};

struct pc_engine {
    unsigned            nworkers;
    struct pc_worker   *workers;
    pthread_mutex_t     ctl_lock;        /* control calls, janitor work */
    pthread_cond_t      state_cond;      /* a mapping changed state (pc_map_wait) */
    _Atomic unsigned    srcu_idx;
    pthread_mutex_t     srcu_sync_lock;  /* one srcu_sync at a time (E2) */

    /* Volumes and mappings: lists under ctl_lock. */
    struct pc_volume   *volumes;          /* ctl_lock and vol_lock to change */
    pthread_mutex_t     vol_lock;         /* the volume list and refs; brief */
    struct pc_map      *maps;
    struct pc_map      *graveyard;       /* deleted, freed with the engine (map.c) */
    struct pc_group    *groups;          /* consistency groups, ctl_lock (group.c) */
    unsigned            next_map_id;
    uint32_t            next_vol_id;

    /* The janitor: a thread for work that must block (holds, grace
     * periods) but is triggered from a worker (copy done, cleaning done). */
    struct {
        pthread_t           thread;
        pthread_mutex_t     lock;
        pthread_cond_t      cond;
        struct janitor_job *head, *tail;
        bool                stop;
    } janitor;

    struct busy_table  *busy;
    struct committer   *committer;       /* meta.c: durable split bits */
    char                backend_name[8];
};

int   srcu_lock(struct pc_worker *w);
void  srcu_unlock(struct pc_worker *w, int idx);
void  srcu_sync(struct pc_engine *e);            /* blocks: never on a worker */
void  janitor_queue(struct pc_engine *e, janitor_fn fn, struct pc_map *m, unsigned gen);
void  engine_post(struct pc_worker *w, struct io_msg *msg, io_msg_fn fn, void *priv);
struct pc_worker *engine_worker_for(struct pc_engine *e, uint64_t key);
/* Names of volumes, mappings and groups: they become file names and
 * export names, so no '/', no spaces, nothing a shell would mangle. */
#define ENGINE_NAME_RULE "1-63 letters, digits, '-', '_' or '.'"
bool  engine_name_ok(const char *name);
void  pc_error_set(struct pc_error *err, int code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void  pc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------------- volume.c */

/* One worker's count of writes in flight to a volume, on its own cache line:
 * written by that worker only, read by volume_drain_writes. */
struct wr_count {
    _Atomic int64_t n;
} __attribute__((aligned(64)));

/* The incremental mappings a volume belongs to (as source or target), whose
 * difference bitmaps its writes must mark.  Immutable like a chain:
 * replaced under a write hold, freed after a grace period (map.c). */
struct diffset {
    unsigned        n;
    struct pc_map  *maps[];
};

struct chain {
    unsigned        n;                  /* started mappings, oldest first */
    uint32_t        grain_shift;        /* every mapping of one source shares it */
    struct pc_map  *maps[];
};

struct pc_volume {
    struct pc_engine   *e;
    struct pc_volume   *next;           /* engine list, ctl_lock */
    char                name[64];
    char                path[4096];
    int                 fd;
    uint32_t            id;
    uint64_t            size;
    bool                direct;
    /* As a source: the current chain (NULL when none), read by workers. */
    struct chain *_Atomic chain;
    /* As a target: the mapping targeting it (at most one), set at create. */
    struct pc_map *_Atomic tgt_map;
    _Atomic bool        no_punch;       /* the file refused a hole once: write zeros (thin.c) */
    /* Restore (restore.c): on S, the mapping T -> S restoring it; on T, the
     * same mapping, whose source it is.  Set while the restore is under way
     * (copying) or unfinished (stopped: S offline). */
    struct pc_map *_Atomic restore_by;
    struct pc_map *_Atomic restore_from;
    /* Incremental mappings recording its writes (NULL when none), read by workers. */
    struct diffset *_Atomic diffs;
    unsigned            nmaps_as_source; /* mappings created on it, ctl_lock */
    unsigned            refs;           /* pc_volume_get holders, vol_lock */

    /* Write hold (map.c): new writes queue while hold is set. */
    _Atomic int         hold;
    struct wr_count    *wr_inflight;    /* [nworkers]: writes in flight, by worker */
    pthread_mutex_t     hold_lock;
    struct pc_io       *held_head, *held_tail;   /* hold_lock */
};

/* Register/unregister the fd with every worker's ring (blocks). */
void volume_files_register(struct pc_volume *v, bool add);
/* With v->hold set: wait until no write to v is in flight (control side). */
void volume_drain_writes(struct pc_volume *v);

/* ---------------------------------------------------------------- map.c */

struct pc_map {
    struct pc_engine   *e;
    struct pc_map      *next;           /* engine list, ctl_lock */
    char                name[64];
    unsigned            id;
    struct pc_volume   *src, *tgt;
    uint32_t            grain_shift;
    uint64_t            grains;
    _Atomic int         state;          /* enum pc_map_state */
    _Atomic bool        in_chain;       /* listed in src->chain */
    _Atomic bool        complete;       /* every grain split (sticky until restart) */
    _Atomic bool        failed;         /* a write to the target (or its metadata) failed:
                                         * no new copies, target offline, suspended */
    _Atomic int         fail_err;
    _Atomic bool        frozen;         /* stopping/preparing: the freeze's grace period
                                         * has ended, cleaning may walk the bits (I4) */
    _Atomic int         copy_rate, clean_rate;
    _Atomic unsigned    gen;            /* bumped by start/stop/rate changes: bgcopy restarts its walk */
    bool                incremental;
    struct bitmap      *bits;           /* split bitmap; replaced only at start */
    /*
     * Incremental: the difference bitmap (grains changed on source or
     * target since the last start) is diff[dcur]; diff[!dcur] holds the
     * previous one, whose complement the current start's split bitmap was
     * built from (meta.c keeps both: "regions").  A start swaps dcur under
     * its write hold.  Writers record only while diff_valid: the recording
     * covers every change since the last start (false before the first
     * start, after a stop left an incomplete copy, after a crash the
     * metadata cannot vouch for).
     */
    struct bitmap *_Atomic diff[2];
    _Atomic unsigned    dcur;
    _Atomic bool        diff_valid;
    bool                diff_base;      /* this start's split bits = ~diff[!dcur] ∪ copies */
    bool                incr_start;     /* pc_map_start: this start is incremental */
    uint64_t            diff_snap;      /* pc_map_start: count of diff[dcur] before the hold */
    struct bitmap      *diff_fresh;     /* pc_map_start: the next recording bitmap */
    struct bitmap      *diff_old;       /* pc_map_start: freed once nobody reads it */
    uint64_t            start_hold_ns, start_realtime_ns;
    uint64_t            start_seq;      /* order in the chain, persisted (meta.c) */
    struct bgcopy      *bg;             /* the worker-side driver (bgcopy.c) */
    struct meta        *meta;           /* persistent metadata, or NULL (meta.c) */
    char                invalid[256];   /* why a restart could not vouch for the target */
    bool                deleted;
    struct pc_group    *group;          /* ctl_lock */
    uint64_t            group_seq;      /* order of joining, for pc_group_members */
    _Atomic bool        split;          /* stopping with split: clean at full speed */
    /* Restore pairs (restore.c): a mapping T -> S made while S -> T exists;
     * each points at the other (ctl_lock). */
    struct pc_map      *partner;
    bool                reverse;        /* made second: it goes T -> S, started only to restore */
    _Atomic bool        restoring;      /* this mapping T -> S defines what S reads */
    struct chain       *solo;           /* an empty chain of S's grain size, for restore ops */
};

/* Under a start's write hold (writes to source and target drained): fix the
 * split bits of an incremental start and swap in the next difference
 * bitmap (map.c M5).  Group starts call it per mapping. */
void map_diff_switch_locked(struct pc_map *m, struct bitmap *split);
/* Before the hold: is this start incremental (m->incr_start), and its split
 * bitmap in fresh; after it (or on failure): free what the switch left. */
int  map_diff_prepare(struct pc_map *m, struct bitmap *fresh);
void map_diff_release(struct pc_map *m);

/* Drop every mapping at once, without cleaning (pc_engine_destroy). */
void map_teardown_all(struct pc_engine *e);

/*
 * A write to m's target, or of its split bits, failed with err (a worker
 * calls it).  The first call suspends m: it takes no new copies and its
 * target goes offline — but only once the failure is durable (meta.c), so a
 * restart cannot mistake m for a mapping whose copies all went through.
 * Then rq->done runs on rq->w with rq->err 0, and the caller may let a
 * source write go ahead without the copy.  If not even that can be made
 * durable, rq->err says why, m is not suspended, and the caller must fail
 * its write: data is refused, never silently lost.  The state change and
 * its event follow on the janitor.
 */
void map_fail(struct pc_map *m, int err, struct meta_req *rq);
/* The failure is durable: suspend m now (no new copies, target offline). */
void map_mark_failed(struct pc_map *m);
void map_failed_job(struct pc_engine *e, struct janitor_job *job);

/*
 * The point in time for n mappings at once (pc_map_start, pc_group_start),
 * under ctl_lock: prepares each, then one write hold over every source and
 * target.  Returns how long writes were held in *hold_ns.
 */
int  map_start_many_locked(struct pc_map **ms, unsigned n, uint64_t *hold_ns,
                           struct pc_error *err);
int  map_prepare_locked(struct pc_map *m, struct pc_error *err);
int  map_stop_locked(struct pc_map *m, bool split, struct pc_error *err);
/* Janitor entry points, triggered by bgcopy.c. */
void map_copy_complete(struct pc_engine *e, struct janitor_job *job);
void map_clean_complete(struct pc_engine *e, struct janitor_job *job);

static inline int map_state(const struct pc_map *m)
{
    return atomic_load_explicit(&m->state, memory_order_acquire);
}
/* A stopping mapping's bits are frozen and it takes no new copies (cow.c, I4). */
static inline bool map_stopping(const struct pc_map *m)
{
    return map_state(m) == PC_MAP_STOPPING;
}
/* A target is offline while it does not hold a whole image (pitcopy.h). */
static inline bool map_failed(const struct pc_map *m)
{
    return atomic_load_explicit(&m->failed, memory_order_acquire);
}
static inline bool map_target_online(const struct pc_map *m)
{
    if (map_failed(m))
        return false;
    switch (map_state(m)) {
    case PC_MAP_IDLE_OR_COPIED:
    case PC_MAP_COPYING:
        return true;
    case PC_MAP_STOPPING:
    case PC_MAP_STOPPED:
        return atomic_load(&m->complete);
    default:
        return false;
    }
}
static inline bool map_bit(const struct pc_map *m, uint64_t g)
{
    return bitmap_test(m->bits, g);
}

/* ------------------------------------------------------------ restore.c */
/* Where S's restored data for grain g lives now (R copies T back onto S). */
struct pc_volume *restore_loc(const struct pc_map *r, const struct chain *c, uint64_t g);
/* Under g's busy slot (key: S's id): make S hold R's data for grain g0 and set
 * R's bit, copying S's old contents to its chain first (I2); then g->fin. */
void restore_grain_run(struct gop *g);
/* S's chain for a restore op on R (an empty one when S has none). */
struct chain *restore_chain(struct pc_map *r);
int  map_start_restore_locked(struct pc_map *m, struct pc_error *err);
/* Several restores at one point in time (pc_group_start_restore). */
int  map_start_restore_many_locked(struct pc_map **ms, unsigned n, uint64_t *hold_ns,
                                   struct pc_error *err);
/* The restore ended (copied, or R deleted): S and T are plain again. */
void restore_detach_locked(struct pc_map *m);

/* -------------------------------------------------------------- group.c */
struct pc_group {
    struct pc_engine   *e;
    struct pc_group    *next;           /* engine list, ctl_lock */
    char                name[64];
    unsigned            nmaps;          /* members, ctl_lock */
    uint64_t            next_seq;
    uint64_t            start_hold_ns, start_realtime_ns;
};
/* Free every group (pc_engine_destroy). */
void group_teardown_all(struct pc_engine *e);
/* --------------------------------------------------------------- busy.c */

/*
 * The per-grain busy slot: at most one grain operation owns (chain, grain) at
 * a time; later arrivals queue on the owner and are handed the slot in order.
 */
struct busy_table;
struct busy_table *busy_create(unsigned stripes);
void busy_destroy(struct busy_table *t);
/* true: g->resume will be called (on g's worker) once g owns the slot;
 * false: g owns it now. */
bool busy_acquire(struct busy_table *t, struct gop *g);
/* Owns it now (true) or nothing changed (false); never queues. */
bool busy_try_acquire(struct busy_table *t, struct gop *g, uint64_t grain);
/* Release every slot g holds; the next waiter of each is resumed. */
void busy_release(struct busy_table *t, struct gop *g);

/* ---------------------------------------------------------------- cow.c */

/*
 * A grain operation: one extent of grains handled under their busy slots —
 * a copy-on-write before a source write, a slow-path target write, a
 * background copy or a cleaning step.
 */
enum gop_kind { GOP_COW, GOP_TWRITE, GOP_BGCOPY, GOP_CLEAN, GOP_RESTORE };

#define GOP_MAX_GRAINS 64u   /* grains per extent: masks are one word */
#define GOP_MAX_BYTES  (1u << 20)

struct gop {
    struct io_msg       msg;        /* resume on our worker after a wait */
    struct pc_worker   *w;
    uint8_t             kind;
    bool                need_self;  /* GOP_TWRITE: T_k lacks the grain */
    bool                wfail;      /* err came from writing copy_to or its bits */
    int                 srcu_idx;   /* background ops: their own section */
    uint32_t            src_id;     /* busy key: the chain's source volume */
    uint64_t            g0;         /* first grain */
    uint32_t            ng;         /* grains in the extent */
    uint32_t            nheld;      /* slots owned, from g0 (busy.c) */
    /* busy.c links */
    struct gop         *slot_next;  /* next owner in the stripe list */
    struct gop         *wait_next;  /* next waiter on one slot */
    struct gop         *waiters, *waiters_tail;
    void              (*resume)(struct gop *g);   /* runs once the slot is ours */
    /* the operation */
    struct chain       *c;
    int                 k;          /* reads resolve lookup(k, g) unless read_from */
    int                 pred;       /* GOP_TWRITE: nearest older non-stopping, or -1 */
    struct pc_map      *m;          /* the mapping acted for (bgcopy/clean) */
    struct pc_io       *parent;     /* GOP_COW / GOP_TWRITE */
    void               *buf;
    size_t              buflen;
    int                 pending;    /* I/Os in flight */
    int                 err;
    uint64_t            read_mask;  /* bit i: read grain g0+i */
    struct pc_volume   *read_from;  /* NULL: lookup(k, g) per grain */
    uint64_t            copy_mask;  /* bit i: write grain g0+i to copy_to */
    uint64_t            zero_mask;  /* bit i: grain g0+i reads as zeros (thin.c): a hole
                                     * on copy_to; not read when its read_mask bit is clear */
    struct pc_volume   *copy_to;
    struct pc_map      *copy_to_map;/* whose bits the write sets */
    void              (*after_read)(struct gop *g);  /* NULL: write copy_mask */
    void              (*done)(struct gop *g);
    void               *driver;     /* bgcopy.c */
    void              (*fin)(struct gop *g);   /* GOP_RESTORE: when the grain is restored */
    struct meta_req     mrq;        /* making the bits durable (meta.c) */
    struct gop         *free_next;
    struct io_req       req[GOP_MAX_GRAINS];
};

struct gop *gop_get(struct pc_worker *w);
void gop_put(struct pc_worker *w, struct gop *g);
void cow_worker_free(struct pc_worker *w);
void gop_read_extent(struct gop *g);
/* Make the bits of mask in m durable (meta.c D1), then g->done; false when m
 * keeps no durable metadata and the caller sets them itself.  data_fd: the
 * file the data went to, fdatasync'd first (-1: written durable already). */
bool gop_commit(struct gop *g, struct pc_map *m, int data_fd, uint64_t mask);
void gop_write_extent(struct gop *g);

/* How a volume is routed for one request, right now (read_range, pc_io_submit,
 * pc_volume_block_status): *cp and *kp are set for SOURCE (c), TARGET (c, k)
 * and RESTORED (c: the restore's chain, restore.c). */
enum route { ROUTE_PLAIN, ROUTE_SOURCE, ROUTE_TARGET, ROUTE_OFFLINE, ROUTE_RESTORED };
enum route cow_route(struct pc_volume *v, struct chain **cp, int *kp);

/* The point-in-time lookup: where target k's data for grain g lives now. */
struct pc_volume *chain_lookup(const struct chain *c, unsigned k, uint64_t g);
int  chain_index(const struct chain *c, const struct pc_map *m);
/* Newest mapping that may take a copy-on-write (not stopping), or -1. */
int  chain_cow_index(const struct chain *c);
/* Nearest mapping older than k that is not stopping, or -1. */
int  chain_pred_index(const struct chain *c, int k);
/* Any of maps[from..to) has g split. */
bool chain_any_split(const struct chain *c, int from, int to, uint64_t g);

/* Incremental: the difference bitmap writes to v must mark, for mapping m
 * (NULL when m does not record now). */
static inline struct bitmap *map_diff(const struct pc_map *m)
{
    if (!atomic_load_explicit(&m->diff_valid, memory_order_acquire))
        return NULL;
    return atomic_load_explicit(&m->diff[atomic_load_explicit(&m->dcur, memory_order_acquire)],
                                memory_order_acquire);
}

/* Release a write hold and resubmit what it held. */
void volume_hold_release(struct pc_volume *v);

/* --------------------------------------------------------------- thin.c */

/* All n bytes of p are zero (n a multiple of 8, p 8-byte aligned). */
bool thin_all_zero(const void *p, size_t n);
/* What [off, …) of fd is: *hole, and *end where that stops being true (at
 * most limit).  Errors other than "past the data" answer data to limit. */
void thin_probe(int fd, uint64_t off, uint64_t limit, bool *hole, uint64_t *end);
/* [s, e) of fd may hold data (false only when it is certainly a hole). */
bool thin_has_data(int fd, uint64_t s, uint64_t e);

/* ------------------------------------------------------------- bgcopy.c */

void bgcopy_kick(struct pc_map *m);        /* (re)start the driver; any thread */
void bgcopy_pause(struct pc_map *m);       /* no extent runs after this returns (control) */
void bgcopy_free(struct pc_map *m);        /* pause and free the driver (control) */
uint64_t bgcopy_bytes(const struct pc_map *m);
uint64_t bgcopy_bytes_thin(const struct pc_map *m);   /* of those, written as holes */

/* --------------------------------------------------------------- meta.c */

/* What a recovery found (meta_recover). */
struct meta_recovered {
    enum pc_map_state state;
    bool     complete, in_chain, clean, restoring;
    bool     diff_valid;            /* the change recording can be trusted */
    bool     diff_base;             /* split bits came from the other region (meta.h) */
    unsigned diff_cur;              /* the recording region */
    uint64_t gen, start_seq, start_realtime_ns, start_hold_ns;
    int      copy_rate, clean_rate;
    uint64_t replayed;              /* journal blocks replayed */
    char     reason[160];           /* why it was suspended, or "" */
};

int  meta_create(struct pc_map *m, const char *path, bool strict, struct pc_error *err);
int  meta_recover(struct pc_map *m, const char *path, bool strict, struct meta_recovered *out,
                  char *why, size_t whylen);
int  meta_recovered_commit(struct pc_map *m);
void meta_close(struct pc_map *m, bool clean);
int  meta_write_state(struct pc_map *m);
/* Wait for a checkpoint that may still read a difference bitmap m no longer
 * uses (map.c frees it after this). */
void meta_barrier(struct pc_map *m);
int  meta_start(struct pc_map *m, struct pc_error *err);
/* A start whose meta_start succeeded did not happen after all: the
 * difference regions go back to what they were (the caller then writes
 * the state with meta_write_state). */
void meta_start_abort(struct pc_map *m);
bool meta_strict(const struct pc_map *m);
void meta_commit(struct meta_req *rq);           /* worker thread */
/* Make difference bits durable (rq->diff set): journal, sync, set in rq->bits. */
void meta_commit_diff(struct meta_req *rq);
/* Make m's failure durable (superblock says suspended, or the file is moved
 * aside if it cannot be written), then run rq->done on rq->w. */
void meta_fail(struct meta_req *rq);
int  meta_committer_start(struct pc_engine *e);
void meta_committer_stop(struct pc_engine *e);

/* ----------------------------------------------------------------- rate.c */
/* pc_rate_* are public. */

#endif
