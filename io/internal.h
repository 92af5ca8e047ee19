/* SPDX-License-Identifier: MIT */
/*
 * io/internal.h — private declarations of the io/ module.
 *
 * Role
 *   loop.c owns everything common to both backends: request accounting and
 *   the pending queue, short-transfer resubmission, posted messages, timers,
 *   the run loop.  A backend (uring.c, aio.c) only moves prepared requests
 *   into the kernel, waits, and hands each completion back through
 *   io_loop_complete().  Nothing outside io/ includes this header (unit tests
 *   of io/ excepted, for the counters below).
 *
 * Invariants (besides I1–I3 of loop.h)
 *   L1  in_kernel ≤ depth: a request holds a slot from ops->queue until
 *       io_loop_complete() or io_loop_fail() releases it, across any
 *       resubmission of a short transfer (the remainder reuses its slot).
 *   L2  pending is non-empty only while in_kernel == depth, or transiently
 *       within one turn after io_loop_fail(); a turn starts by refilling.
 *   L3  inflight counts every request between io_loop_submit() and its
 *       done(): pending + in_kernel + npoll + failed.
 *   L4  A POLL never holds a slot (loop.h, "Polls"): npoll counts those the
 *       backend has armed, from ops->poll until io_loop_complete() or
 *       io_loop_fail() hands them back; they never enter pending.
 *
 * Locking
 *   None.  Every field is the owner thread's except the ones marked
 *   [any thread], which are atomics; each names its pair where it is used.
 *
 * Context
 *   Backend ops run on the owner thread, except ops->wake (any thread).
 */
#ifndef PITCOPY_IO_INTERNAL_H
#define PITCOPY_IO_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>

#include "io/loop.h"

/* io_uring allows 32768 SQ entries; keep a margin for the wake read. */
#define IO_LOOP_MAX_DEPTH 16384u

/* Posted messages run per turn at most, so a flood cannot starve I/O. */
#define IO_LOOP_MSG_BATCH 1024u

struct io_backend_ops {
    const char     *name;
    enum io_backend kind;

    /* Set up l->be for depth requests in flight.  0 or -errno; on error
     * nothing is left allocated. */
    int  (*create)(struct io_loop *l, unsigned depth);
    void (*destroy)(struct io_loop *l);

    /* Adopt the calling thread as owner (NULL when the backend does not care). */
    void (*set_owner)(struct io_loop *l);

    /* Prepare req for the kernel (its remainder: buf/off/len advanced by
     * done_bytes).  No system call on the fast path; the slot is already
     * reserved (L1).  0 or -errno. */
    int  (*queue)(struct io_loop *l, struct io_req *req);

    /* Hand what queue() prepared to the kernel, then wait up to timeout_ns
     * (0: do not block; < 0: no limit) for a completion or a wake().
     * Requests the kernel refuses go to io_loop_fail().  0 or a fatal -errno. */
    int  (*wait)(struct io_loop *l, int64_t timeout_ns);

    /* Call io_loop_complete() for every completion available.  Returns the
     * number of request completions seen, or a fatal -errno. */
    int  (*reap)(struct io_loop *l);

    /* Arm a POLL request (L4): no slot, no system call needed on the fast
     * path.  0 or -errno.  poll_cancel: end an armed poll early; its
     * completion (-ECANCELED, or the revents if it fired first) comes back
     * through io_loop_complete() or io_loop_fail() later, never inside. */
    int  (*poll)(struct io_loop *l, struct io_req *req);
    void (*poll_cancel)(struct io_loop *l, struct io_req *req);

    int  (*add_file)(struct io_loop *l, int fd);
    void (*remove_file)(struct io_loop *l, int fd);
    int  (*add_buffers)(struct io_loop *l, void *base, size_t len);

    /* Any thread: make a concurrent or later wait() return. */
    void (*wake)(struct io_loop *l);
};

struct io_loop {
    const struct io_backend_ops *ops;
    void           *be;            /* the backend's state */
    unsigned        depth;
    pthread_t       owner;         /* for asserts (Context in loop.h) */

    /* Requests (L1–L3). */
    unsigned        inflight;
    unsigned        in_kernel;
    unsigned        npoll;         /* armed polls (L4), outside in_kernel */
    struct io_req  *pend_head, *pend_tail;   /* waiting for a slot, FIFO */
    struct io_req  *fail_head, *fail_tail;   /* refused before the kernel ran them */
    uint64_t        ncallbacks;    /* done(), messages and timers run, ever */

    /* Timers: armed ones, sorted by deadline, FIFO among equals. */
    struct io_timer *timers;

    /* Posted messages: Vyukov's intrusive MPSC queue.  Posters exchange
     * post_head; the owner alone reads from post_tail.  post_stub keeps the
     * queue non-empty so neither side ever sees a NULL head. */
    struct io_msg *_Atomic post_head;      /* [any thread] */
    struct io_msg  *post_tail;
    struct io_msg   post_stub;

    /* The owner sets sleeping before it blocks; a poster that exchanges it
     * back to 0 owes a wake().  Dekker pair: see loop_may_block(). */
    _Atomic int     sleeping;              /* [any thread] */
    _Atomic bool    stop;                  /* [any thread] */

    /* Counters for tests and statistics (owner thread). */
    uint64_t        nr_fixed_buf;  /* READ/WRITE that used a registered buffer */
    uint64_t        nr_fixed_file; /* requests that used a registered file */
};

/* loop.c */
/* Log one line to stderr, prefixed "pitcopy: " (control path only). */
void io_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A completion from the kernel: resubmits a short transfer (I2) or releases
 * the slot (or for a POLL, npoll) and runs done(). */
void io_loop_complete(struct io_loop *l, struct io_req *req, int res);
/* The kernel refused a queued request (or a poll was cancelled before it
 * fired): release its slot (or npoll); done(res) runs later in this turn,
 * never from inside io_loop_submit (I1). */
void io_loop_fail(struct io_loop *l, struct io_req *req, int res);
/* A request the backend ran synchronously inside ops->queue (res 0 or
 * -errno): release its slot; done(res) runs later in this turn (I1). */
void io_loop_done_inline(struct io_loop *l, struct io_req *req, int res);

/* uring.c */
extern const struct io_backend_ops io_backend_uring;

/* aio.c */
extern const struct io_backend_ops io_backend_aio;

#endif
