/* SPDX-License-Identifier: MIT */
/*
 * io/loop.h — the I/O loop: one per worker thread, two interchangeable backends.
 *
 * Role
 *   A loop owns one kernel submission context (an io_uring ring, or a libaio
 *   context plus an epoll set) and runs on exactly one thread, its owner.  The
 *   owner queues requests (read, write, fsync, fdatasync, poll on an fd) with
 *   io_loop_submit(); each request's done() callback runs on the owner thread,
 *   from inside io_loop_run_once(), with the byte count or -errno.  Other
 *   threads talk to a loop only through io_loop_post() (a lock-free MPSC queue
 *   plus an eventfd wake-up).  Timers give rate limiting without a thread.
 *
 *   Nothing above io/ names a backend: uring.c and aio.c each fill one
 *   struct io_backend_ops (io/internal.h) and loop.c holds everything common.
 *
 * Invariants
 *   I1  Every submitted request's done() runs exactly once, on the owner
 *       thread, never from inside io_loop_submit() itself (so a callback may
 *       submit again without recursion).
 *   I2  READ/WRITE complete in full or fail: the loop resubmits the remainder
 *       of a short transfer; a read that hits end of file fails with -EIO.
 *   I3  A posted message's fn runs exactly once on the owner thread, in the
 *       order posts from one thread were made.
 *
 * Context
 *   io_loop_submit, io_loop_poll_cancel, io_loop_timer_*, io_loop_run_once,
 *   io_loop_add_file: owner thread only (SINGLE_ISSUER).  io_loop_post,
 *   io_loop_stop: any thread.
 *   Callbacks must not block; they may submit, post and arm timers.
 *
 * Backend choice
 *   io_loop_create(NULL, …) reads PITCOPY_IO (uring|aio, default uring).  If
 *   io_uring cannot be set up (seccomp, containers, old kernels) it falls back
 *   to libaio and logs one line saying why.
 */
#ifndef PITCOPY_IO_LOOP_H
#define PITCOPY_IO_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct io_loop;

enum io_op {
    IO_OP_READ = 0,
    IO_OP_WRITE,
    IO_OP_FSYNC,
    IO_OP_FDATASYNC,
    IO_OP_POLL,         /* one-shot readiness: see "Polls" below */
    IO_OP_PUNCH,        /* deallocate [off, off+len): reads as zeros after
                         * (fallocate PUNCH_HOLE|KEEP_SIZE).  -EOPNOTSUPP or
                         * -EINVAL where the file cannot: write zeros instead.
                         * Durable only after a later sync of the file. */
};

/* Request flags. */
#define IO_F_DSYNC  (1u << 0) /* write: durable on completion (RWF_DSYNC, FUA) */

struct io_req;
typedef void (*io_done_fn)(struct io_req *req, int res);

/*
 * One request.  The caller owns the memory and must keep it (and buf) alive
 * until done() runs.  res is the full length for READ/WRITE (I2), 0 for the
 * syncs, the revents for POLL, or -errno.
 */
struct io_req {
    uint8_t     op;       /* enum io_op */
    uint8_t     flags;    /* IO_F_* */
    int         fd;
    void       *buf;
    uint32_t    len;
    uint64_t    off;
    io_done_fn  done;
    void       *priv;     /* the caller's */

    /* loop-private below: set by io_loop_submit */
    uint32_t    done_bytes;   /* progress of a resubmitted short transfer */
    struct io_req *next;      /* pending list */
};

/* A message for another thread's loop (I3).  The poster owns the memory until fn runs. */
struct io_msg;
typedef void (*io_msg_fn)(struct io_msg *msg);
struct io_msg {
    io_msg_fn      fn;
    void          *priv;
    struct io_msg *_Atomic next;   /* MPSC queue link, loop-private */
};

/* A one-shot timer on the owner thread; re-arm from its callback for periodic work. */
struct io_timer;
typedef void (*io_timer_fn)(struct io_timer *t);
struct io_timer {
    io_timer_fn      fn;
    void            *priv;
    uint64_t         deadline_ns;  /* CLOCK_MONOTONIC, loop-private once armed */
    bool             armed;        /* loop-private */
    struct io_timer *next;         /* loop-private */
};

enum io_backend { IO_BACKEND_URING = 0, IO_BACKEND_AIO = 1 };

/*
 * Create a loop for the calling thread.  backend: "uring", "aio", or NULL for
 * $PITCOPY_IO (default "uring").  depth: how many requests may be in the kernel
 * at once; more are queued and submitted as slots free up.  Returns 0 and *out,
 * or -errno (-EINVAL for an unknown backend name, naming it in the log).
 * The creating thread becomes the owner.
 */
int  io_loop_create(const char *backend, unsigned depth, struct io_loop **out);
void io_loop_destroy(struct io_loop *l);
enum io_backend io_loop_backend(const struct io_loop *l);
const char *io_loop_backend_name(const struct io_loop *l);

/*
 * Make this thread the owner (for a loop created on one thread and run on
 * another).  Must be called before the loop is used on the new thread.
 */
void io_loop_set_owner(struct io_loop *l);

/* Queue a request (owner thread).  Never calls done() synchronously (I1). */
void io_loop_submit(struct io_loop *l, struct io_req *req);

/*
 * Polls
 *   An IO_OP_POLL request waits until fd is ready for the events in len
 *   (POLLIN, POLLOUT, POLLPRI, POLLRDHUP; POLLERR and POLLHUP are always
 *   reported) and completes once with the revents (> 0), or with -errno.
 *   It is one-shot: submit it again to wait again.  buf and off are unused.
 *
 *   A poll waits for a peer, not for a device, so it takes no slot of depth:
 *   any number may be outstanding, and they never delay reads and writes.
 *   At most one poll per fd may be outstanding on a loop (the libaio
 *   backend's epoll set keys registrations by fd): to wait for both
 *   directions separately, poll a dup() of the fd for the other one.  The fd
 *   must stay open until done() runs.
 *
 *   io_loop_poll_cancel() asks for an outstanding poll to end early: its
 *   done() then runs with -ECANCELED, or with its revents if it fired first;
 *   either way exactly once (I1), never from inside the call.
 */
void io_loop_poll_cancel(struct io_loop *l, struct io_req *req);

/*
 * Register fd as a fixed file with this loop (owner thread).  Requests on a
 * registered fd use the fixed-file path; unregistered fds work as well.
 * Returns 0 or -errno (the loop then simply uses the plain fd).
 * Remove a file before closing it, so a reused fd number is not mistaken
 * for it.
 */
int  io_loop_add_file(struct io_loop *l, int fd);
void io_loop_remove_file(struct io_loop *l, int fd);

/*
 * Register a memory region as fixed buffers (owner thread, before any request
 * uses it).  Requests whose buf lies inside it use READ_FIXED/WRITE_FIXED.
 * Returns 0 or -errno (harmless: plain reads and writes are used).
 */
int  io_loop_add_buffers(struct io_loop *l, void *base, size_t len);

/* Post a message from any thread (I3).  Lock-free; wakes the loop. */
void io_loop_post(struct io_loop *l, struct io_msg *msg);

/* Timers (owner thread).  delay in ns from now. */
void io_loop_timer_arm(struct io_loop *l, struct io_timer *t, uint64_t delay_ns);
void io_loop_timer_cancel(struct io_loop *l, struct io_timer *t);

/*
 * One turn: submit what is queued, then reap completions and run callbacks,
 * posted messages and due timers.  If wait is true and nothing is ready, block
 * until something is (a completion, a post, a timer, io_loop_stop).
 * Returns the number of callbacks run, or -errno on a fatal backend error.
 */
int  io_loop_run_once(struct io_loop *l, bool wait);

/* Run turns until io_loop_stop() is called.  Returns 0 or -errno. */
int  io_loop_run(struct io_loop *l);
void io_loop_stop(struct io_loop *l);   /* any thread */

/* Requests submitted and not yet completed (polls included). */
unsigned io_loop_inflight(const struct io_loop *l);

/* CLOCK_MONOTONIC in ns. */
uint64_t io_now_ns(void);

#endif
