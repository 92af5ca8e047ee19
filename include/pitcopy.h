/* SPDX-License-Identifier: MIT */
/*
 * pitcopy.h — the public C API of libpitcopy.
 *
 * libpitcopy makes point-in-time copies of block volumes in software.  An
 * engine owns worker threads, each running one I/O loop (io_uring, or libaio
 * where io_uring is refused); volumes are files or block devices; a mapping
 * source → target makes the target a copy of the source as it was at the
 * instant the mapping started, long before any byte has moved.
 *
 * Two kinds of call:
 *
 *   Control calls (volumes, mappings, info) may block briefly.  Call them from
 *   any thread that is NOT an engine worker.  They are serialized inside the
 *   engine.  They return 0 or -errno and, when given a struct pc_error, fill
 *   it with a sentence a user can act on.
 *
 *   Data calls (pc_io_submit) are asynchronous and run on a worker thread: a
 *   front end (the NBD server) runs its connections on the workers and
 *   submits from there; other threads hand work over with pc_worker_post().
 *   pc_io_sync() is a blocking convenience for non-worker threads.
 *
 * What a volume reads as
 *   Source: what was last written to it.  Target of a started mapping: the
 *   source as it was at the start, plus whatever was written to the target
 *   since.  Both stay readable and writable throughout, except that a target
 *   is offline (I/O fails with -EIO) while its mapping is preparing,
 *   prepared, or stopping/stopped before its copy was complete — then the
 *   target does not hold a whole image, as on Spectrum Virtualize.
 */
#ifndef PITCOPY_H
#define PITCOPY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PC_BLOCK_SIZE        4096u          /* I/O offsets and lengths are multiples */
#define PC_MAX_IO            (32u << 20)    /* largest single request */
#define PC_MAX_TARGETS       256u           /* mappings per source */
#define PC_MAX_WORKERS       256u           /* pc_engine_opts.workers at most */
#define PC_GRAIN_MIN         (4u << 10)
#define PC_GRAIN_MAX         (1u << 20)
#define PC_GRAIN_DEFAULT     (64u << 10)
#define PC_RATE_UNLIMITED    1000           /* copy/clean rate beyond the SVC table */
#define PC_RATE_DEFAULT      50             /* 2 MiB/s, as Spectrum Virtualize */

struct pc_engine;
struct pc_volume;
struct pc_map;
struct pc_group;
struct pc_worker;

/* A user-facing error: code is -errno, msg a full sentence naming the object. */
struct pc_error {
    int  code;
    char msg[256];
};

/* ------------------------------------------------------------------ engine */

struct pc_engine_opts {
    unsigned    workers;      /* worker threads; 0 = number of CPUs */
    const char *io_backend;   /* "uring", "aio", or NULL for $PITCOPY_IO (default uring) */
    unsigned    queue_depth;  /* per worker; 0 = 256 */
    size_t      buffer_arena; /* registered buffer memory per worker; 0 = 64 MiB, or
                               * 256 MiB shared out when there are more than 4
                               * workers (at least 4 MiB each) */
};

int  pc_engine_create(const struct pc_engine_opts *opts, struct pc_engine **out,
                      struct pc_error *err);
/*
 * Drops every mapping at once (no cleaning: nothing will read the targets
 * through this engine again), closes every volume, stops the workers.  The
 * caller must have no request in flight.
 */
void pc_engine_destroy(struct pc_engine *e);
unsigned pc_engine_workers(const struct pc_engine *e);
/* After recreating mappings from their metadata (pc_map_opts.recover):
 * resume their background copies and cleaning, now that every chain is whole. */
void pc_engine_resume(struct pc_engine *e);
const char *pc_engine_io_backend(const struct pc_engine *e);
struct pc_worker *pc_engine_worker(struct pc_engine *e, unsigned idx);
/* The worker the calling thread runs, or NULL on a non-worker thread. */
struct pc_worker *pc_worker_self(void);
unsigned pc_worker_index(const struct pc_worker *w);

/* ----------------------------------------------------------------- volumes */

#define PC_VOL_CREATE   (1u << 0)   /* create the file (sparse) if it is missing */
#define PC_VOL_BUFFERED (1u << 1)   /* never use O_DIRECT */

/*
 * Open the file or block device at path as volume name.  size 0 takes the
 * existing size; otherwise a missing file (with PC_VOL_CREATE) is created
 * sparse at that size and an existing one must have exactly that size.
 * Sizes are multiples of PC_BLOCK_SIZE.  Names are unique.
 */
int  pc_volume_open(struct pc_engine *e, const char *name, const char *path,
                    uint64_t size, unsigned flags, struct pc_volume **out,
                    struct pc_error *err);
/* -EBUSY while the volume is in a mapping or held by pc_volume_get. */
int  pc_volume_close(struct pc_volume *v, struct pc_error *err);
/* Look a volume up by name (any thread, workers included; never blocks long). */
struct pc_volume *pc_volume_find(struct pc_engine *e, const char *name);
/* The same, holding the volume open until pc_volume_put (an NBD export in use). */
struct pc_volume *pc_volume_get(struct pc_engine *e, const char *name);
void pc_volume_put(struct pc_volume *v);
/* Call fn for every volume, in no particular order, under a short lock (fn
 * must not call back into the engine); returns how many there are. */
unsigned pc_volume_list(struct pc_engine *e,
                        void (*fn)(struct pc_volume *v, void *arg), void *arg);
const char *pc_volume_name(const struct pc_volume *v);
uint64_t pc_volume_size(const struct pc_volume *v);
bool pc_volume_direct(const struct pc_volume *v);   /* opened with O_DIRECT */

/* ---------------------------------------------------------------------- I/O */

enum pc_io_op {
    PC_IO_READ = 0,
    PC_IO_WRITE,
    PC_IO_FLUSH,     /* off/len ignored: makes every completed write durable */
    PC_IO_ZERO,      /* a write of zeros that deallocates where it can (a hole):
                      * buf unused.  Copy-on-write and the target-write rules
                      * apply as to PC_IO_WRITE.  -EOPNOTSUPP when the volume
                      * cannot make holes (write zeros instead); a range may
                      * then be partly zeroed already, as after any failed write. */
};

#define PC_IO_FUA  (1u << 0)   /* write: durable when done() runs */

struct pc_io;
typedef void (*pc_io_done_fn)(struct pc_io *io, int res);

/*
 * One request.  The caller owns it and buf until done() runs, on the worker
 * it was submitted on, with 0 or -errno.  buf must be PC_BLOCK_SIZE aligned
 * (pc_buf_alloc gives such buffers).
 */
struct pc_io {
    uint8_t           op;      /* enum pc_io_op */
    uint8_t           flags;   /* PC_IO_* */
    struct pc_volume *vol;
    uint64_t          off;
    uint32_t          len;
    void             *buf;
    pc_io_done_fn     done;
    void             *priv;    /* the caller's */
    uint64_t          engine_private[24];
};

/* Submit on the calling worker thread (w must be pc_worker_self()). */
void pc_io_submit(struct pc_worker *w, struct pc_io *io);

/* Blocking read/write/flush from a non-worker thread.  Returns 0 or -errno. */
int  pc_io_sync(struct pc_engine *e, enum pc_io_op op, struct pc_volume *v,
                uint64_t off, uint32_t len, void *buf, unsigned flags);

/*
 * Allocation, as a read of v would find it (NBD base:allocation): fills up
 * to max extents covering [off, off+len) from off (perhaps only a prefix)
 * and returns how many, or -errno (-EIO: an offline target).  An extent
 * with PC_ALLOC_HOLE|PC_ALLOC_ZERO reads as zeros from unallocated space
 * (for a target: in the volume its grains resolve to); flags 0 is data.
 * The answer was true at one instant during the call.  Worker thread only
 * (w = pc_worker_self()); it calls lseek(SEEK_DATA/SEEK_HOLE).
 */
#define PC_ALLOC_HOLE  (1u << 0)
#define PC_ALLOC_ZERO  (1u << 1)
struct pc_alloc_extent {
    uint64_t len;
    uint32_t flags;
};
int  pc_volume_block_status(struct pc_worker *w, struct pc_volume *v, uint64_t off,
                            uint64_t len, struct pc_alloc_extent *ext, unsigned max);

/* Run fn(arg) on worker w, from any thread.  msg is the caller's until fn runs. */
struct pc_msg {
    void  (*fn)(struct pc_msg *msg);
    void   *arg;
    uint64_t engine_private[4];
};
void pc_worker_post(struct pc_worker *w, struct pc_msg *msg);

/*
 * The worker's I/O loop (io/loop.h), for a front end that waits on its own
 * file descriptors there (the NBD server polls its sockets on it).  Use it
 * only on that worker's thread; the loop is the engine's, never destroy it.
 */
struct io_loop;
struct io_loop *pc_worker_loop(struct pc_worker *w);

/* Aligned buffers (worker thread: from its registered pool). */
void *pc_buf_alloc(struct pc_worker *w, size_t len);
void  pc_buf_free(struct pc_worker *w, void *buf, size_t len);
/* Aligned buffers for any thread (not registered with a ring). */
void *pc_buf_alloc_any(size_t len);
void  pc_buf_free_any(void *buf, size_t len);

/* ---------------------------------------------------------------- mappings */

/*
 * States (Spectrum Virtualize's): see engine/map.c for the diagram.
 * Ordered as declared; pc_map_state_name() gives the SVC spelling.
 */
enum pc_map_state {
    PC_MAP_IDLE_OR_COPIED = 0,
    PC_MAP_PREPARING,
    PC_MAP_PREPARED,
    PC_MAP_COPYING,
    PC_MAP_STOPPING,
    PC_MAP_STOPPED,
    PC_MAP_SUSPENDED,
};

/* What a mapping's split bits survive (pc_map_opts.durability). */
enum pc_durability {
    PC_DURABILITY_STRICT = 0,   /* every bit durable before the write it allows */
    PC_DURABILITY_NONE,         /* no metadata syncs: a crash invalidates the mapping */
};

struct pc_map_opts {
    const char       *name;          /* unique; NULL → "fcmapN" */
    struct pc_volume *source;
    struct pc_volume *target;        /* same size as source */
    uint32_t          grain_size;    /* 0 = 64 KiB; power of two 4 KiB–1 MiB */
    int               copy_rate;     /* 0–150 or PC_RATE_UNLIMITED; -1 = default 50 */
    int               clean_rate;    /* likewise; other negative values are refused */
    /*
     * Record which grains change on source or target (a difference bitmap,
     * durable like the split bits); a start after a complete copy then
     * copies only the grains changed since the previous start.  Exported
     * over NBD as the meta context pitcopy:changed (nbd/handshake.c).
     */
    bool              incremental;
    struct pc_group  *group;         /* consistency group, or NULL (pc_map_set_group) */
    /*
     * Recreating a mapping a daemon knew before it restarted: its split
     * bitmap is not persisted yet, so it comes back idle_or_copied (the
     * default; complete says whether the target held a whole image) or
     * stopped (the target held an incomplete image: offline).
     */
    enum pc_map_state initial_state; /* PC_MAP_IDLE_OR_COPIED or PC_MAP_STOPPED */
    bool              initial_complete;
    /*
     * Persistent metadata (engine/meta.h): a file holding the mapping's
     * state and split bitmap, so a restart finds both.  NULL: none (the
     * bitmap lives in memory only and initial_state applies).  With recover,
     * the file must exist and the mapping comes back as it says — state,
     * progress, place in its source's chain; a file that cannot be trusted
     * (corrupt, torn, unreadable, durability none after a crash) is renamed to
     * PATH.corrupt, and the mapping comes back stopped, its target offline,
     * with pc_map_info().invalid saying why.  Call pc_engine_resume() once
     * every mapping is recreated.
     */
    const char       *meta_path;
    enum pc_durability durability;
    bool              recover;
};

struct pc_map_info {
    char              name[64];
    char              source[64];
    char              target[64];
    enum pc_map_state state;
    uint32_t          grain_size;
    uint64_t          grains;
    uint64_t          grains_split;     /* target holds its own copy */
    unsigned          progress;         /* % of grains split, rounded down; 100 only when all are */
    int               copy_rate;
    int               clean_rate;
    bool              incremental;
    bool              changes_recorded; /* incremental, and the recording covers every change
                                         * since the last start (a restart may copy only those) */
    uint64_t          grains_changed;   /* grains written on source or target since the last start */
    bool              complete;         /* every grain split: the target is a whole image */
    bool              target_online;
    unsigned          dependent_mappings; /* older mappings in the chain */
    uint64_t          grains_to_clean;    /* what a stop would copy to the next older target */
    uint64_t          start_hold_ns;      /* how long the last start held writes */
    uint64_t          start_ns;           /* CLOCK_REALTIME of the last start, 0 = never */
    bool              persistent;         /* has a metadata file */
    enum pc_durability durability;
    char              invalid[256];       /* why a restart could not vouch for the target, or "" */
    char              group[64];          /* consistency group, or "" */
    bool              restoring;          /* a restore under way (or stopped unfinished) */
    char              partner[64];        /* the mapping in the other direction, or "" */
};

int  pc_map_create(struct pc_engine *e, const struct pc_map_opts *opts,
                   struct pc_map **out, struct pc_error *err);
struct pc_map *pc_map_find(struct pc_engine *e, const char *name);

/* idle_or_copied|stopped → preparing → prepared.  Returns once prepared. */
int  pc_map_prepare(struct pc_map *m, struct pc_error *err);
/*
 * The point in time.  From prepared (or idle_or_copied|stopped, preparing
 * first): holds new writes to source and target, waits for writes in flight,
 * switches the mapping to copying, releases.  The hold does not depend on
 * volume size.
 */
int  pc_map_start(struct pc_map *m, struct pc_error *err);
/*
 * copying → stopping → stopped (or idle_or_copied when the copy was
 * complete).  Cleaning gives older mappings the grains they still need from
 * this target, at the clean rate; pc_map_stop returns once cleaning has
 * begun, pc_map_wait() waits for the end.
 */
int  pc_map_stop(struct pc_map *m, struct pc_error *err);
/*
 * Stop with split (stopfcmap -split): only once the target holds a whole
 * image (progress 100).  The target stays online as an independent copy; what
 * older mappings still need from it is cleaned to them at full speed, whatever
 * the clean rate, and the mapping ends idle_or_copied (pc_map_wait).
 */
int  pc_map_stop_split(struct pc_map *m, struct pc_error *err);
/*
 * Restore (startfcmap -restore): m goes from T back to S, made while the
 * mapping S -> T exists (its partner).  From the start S reads as T did at
 * that instant, and the background copy (at m's copy rate) makes it so on
 * disk; the forward mapping and S's other targets keep their own points in
 * time (S's old contents go to them first, as for any write to S), and T
 * stays readable and writable.  Needs T whole as a host reads it (its
 * mapping copying, or idle_or_copied with the copy complete) and no cleaning
 * on S's chain.  While it runs, S's mappings other than m cannot be started,
 * stopped or deleted.  Stopping m leaves S offline (an incomplete image)
 * until m is started again or deleted; it ends idle_or_copied.
 */
int  pc_map_start_restore(struct pc_map *m, struct pc_error *err);
/* Delete an idle_or_copied or stopped mapping; force stops it first (and waits). */
int  pc_map_delete(struct pc_map *m, bool force, struct pc_error *err);
int  pc_map_set_copy_rate(struct pc_map *m, int rate, struct pc_error *err);
int  pc_map_set_clean_rate(struct pc_map *m, int rate, struct pc_error *err);
int  pc_map_info(struct pc_map *m, struct pc_map_info *info);
/* Just the state and whether the copy is complete: O(1), for pollers
 * (pc_map_info counts bits and walks what a stop would clean). */
void pc_map_state_get(struct pc_map *m, enum pc_map_state *state, bool *complete);
/* Wait until the mapping is in state; timeout_ms < 0 waits forever. -ETIMEDOUT. */
int  pc_map_wait(struct pc_map *m, enum pc_map_state state, int timeout_ms);

/*
 * Change recording of incremental mappings (engine/changed.c), for front
 * ends on a worker thread.  pc_volume_changed_maps names the incremental
 * mappings v belongs to (as source or target): up to max into names,
 * returning how many there are.  pc_volume_changed_extents describes
 * [off, off+len) as runs of grains changed or not since mapping map's last
 * start, at most max of them from off on; returns how many.  Where the
 * recording cannot vouch for a grain (never started, an incomplete copy, a
 * crash with durability none, no such mapping) it reads as changed.
 */
struct pc_extent {
    uint64_t len;
    bool     changed;
};
unsigned pc_volume_changed_maps(struct pc_volume *v, char (*names)[64], unsigned max);
unsigned pc_volume_changed_extents(struct pc_volume *v, const char *map, uint64_t off,
                                   uint64_t len, struct pc_extent *ext, unsigned max);

const char *pc_map_state_name(enum pc_map_state s);

/* ------------------------------------------------------ consistency groups */

/*
 * A consistency group starts its mappings at one point in time: one write
 * hold over every source and target at once, whatever the number of
 * mappings or the size of their volumes.  Members are prepared, started and
 * stopped through the group (pc_map_prepare/start/stop refuse them); a
 * mapping joins or leaves while idle_or_copied or stopped.
 */
#define PC_GROUP_MAX_MAPS    512u           /* as Spectrum Virtualize */

struct pc_group_info {
    char              name[64];
    bool              empty;              /* no mappings: the SVC "empty" state */
    enum pc_map_state state;              /* the members' state (see pc_group_info) */
    unsigned          mappings;
    uint64_t          start_hold_ns;      /* how long the last start held writes */
    uint64_t          start_ns;           /* CLOCK_REALTIME of the last start, 0 = never */
};

int  pc_group_create(struct pc_engine *e, const char *name, struct pc_group **out,
                     struct pc_error *err);
struct pc_group *pc_group_find(struct pc_engine *e, const char *name);
/* -EBUSY while it has mappings, unless force: they then stay, stand-alone. */
int  pc_group_delete(struct pc_group *g, bool force, struct pc_error *err);
/* Join g (NULL: leave the group); the mapping is idle_or_copied or stopped. */
int  pc_map_set_group(struct pc_map *m, struct pc_group *g, struct pc_error *err);
/* Every member prepared (each flushes its source), or an error naming the first that failed. */
int  pc_group_prepare(struct pc_group *g, struct pc_error *err);
/* The point in time for every member: prepares first where needed. */
int  pc_group_start(struct pc_group *g, struct pc_error *err);
/* Every member (each a restore mapping, pc_map_start_restore) starts
 * restoring at one point in time: one hold over all their volumes. */
int  pc_group_start_restore(struct pc_group *g, struct pc_error *err);
/* Stop every started member (split: pc_map_stop_split for each; all must be complete). */
int  pc_group_stop(struct pc_group *g, bool split, struct pc_error *err);
/*
 * The state: empty without members; else the members' common state, or
 * when they differ the first present of suspended, preparing, stopping,
 * copying, stopped, prepared, idle_or_copied (the one that needs acting on).
 */
int  pc_group_info(struct pc_group *g, struct pc_group_info *info);
/* Up to max members (in the order they joined); returns how many there are. */
unsigned pc_group_members(struct pc_group *g, struct pc_map **out, unsigned max);
/* Bytes per second for a copy/clean rate (SVC table); 0 for 0, UINT64_MAX for unlimited. */
uint64_t pc_rate_bytes_per_sec(int rate);
/* Parse "0".."150" or "unlimited"; -EINVAL otherwise. */
int  pc_rate_parse(const char *s, int *rate);

#ifdef __cplusplus
}
#endif
#endif
