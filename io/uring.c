/* SPDX-License-Identifier: MIT */
/*
 * io/uring.c — the io_uring backend (liburing 2.3).
 *
 * Role
 *   One ring per loop.  A request becomes one SQE whose user_data is the
 *   io_req; registered files and buffers are used when the request's fd and
 *   buffer allow.  Cross-thread wake-ups arrive as the completion of a read
 *   on an eventfd that is kept armed in the ring, so one io_uring_enter()
 *   both submits and sleeps for I/O, posts and timers alike.
 *
 * Setup flags and the owner thread
 *   We ask for SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN (6.1+): no
 *   inter-processor interrupts, completion work runs only when the owner
 *   enters the kernel to wait, which is exactly when the loop wants it.
 *   Older kernels answer -EINVAL and we step down (see uring_open).
 *
 *   SINGLE_ISSUER binds the ring to one task for its lifetime: the creator,
 *   or with R_DISABLED the task that enables it; every submit, wait or
 *   registration from another task then fails with -EEXIST.  A loop may be
 *   created on one thread and run on another (loop.h), so the ring is
 *   created R_DISABLED and enabled by its owner: in io_loop_set_owner(), or
 *   at the first submit/wait on the creating thread.  Registrations made
 *   before that (io_loop_add_file/add_buffers on the creating thread) are
 *   allowed by the kernel while the ring is disabled.  If io_loop_set_owner()
 *   comes after another thread has already enabled the ring, the ring is
 *   rebuilt (the loop must be idle then) and its registrations replayed.
 *
 * Invariants
 *   U1  Reads, writes and syncs: at most depth + 1 SQEs are ever unsubmitted
 *       or in flight (L1 plus the wake read), and the SQ has depth + 2
 *       entries rounded up to a power of two.  Polls and their cancels take
 *       no slot (L4), so a turn that arms many of them can fill the SQ:
 *       uring_sqe() then submits what is queued to make room.  Outstanding
 *       polls can outnumber the CQ (twice the SQ); the kernel keeps the
 *       overflow (IORING_FEAT_NODROP, 5.5) and posts it at the next enter.
 *   U2  fd_slot[fd] is the fixed-file slot of fd, or -1.  The caller removes
 *       a file before closing it, so a reused fd number never meets a stale
 *       slot.
 *   U3  Registered buffers are the region [buf_base, buf_base + buf_len) cut
 *       into 1 GiB iovecs (the kernel's limit per iovec); buf_index i covers
 *       the i-th GiB.  A request straddling two of them uses the plain path.
 *
 * Context
 *   Owner thread, except uring_wake (any thread).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

#include <liburing.h>

#include "io/internal.h"

#define URING_FILES      1024u          /* fixed-file slots per ring */
#define URING_BUF_CHUNK  (1ull << 30)   /* U3 */
#define URING_WANT_FLAGS (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | \
                          IORING_SETUP_COOP_TASKRUN | IORING_SETUP_R_DISABLED)

struct uring {
    struct io_uring ring;
    unsigned        entries;
    unsigned        flags;          /* the setup flags the kernel accepted */
    bool            enabled;        /* false until the owner enables an R_DISABLED ring */
    pid_t           enabled_tid;    /* the kernel's submitter task (SINGLE_ISSUER) */
    int             broken;         /* -errno once a rebuild failed: every wait fails */

    int             wake_fd;        /* eventfd, non-blocking; immutable */
    uint64_t        cancel_buf;     /* its address tags poll-remove completions */
    uint64_t        wake_buf;       /* target of the armed read; its address is the tag */
    bool            wake_armed;

    bool            files_on;       /* the sparse table is registered */
    int            *fd_slot;        /* U2, fd_slot_len entries */
    unsigned        fd_slot_len;
    int             slot_fd[URING_FILES];   /* slot → fd or -1, replayed on rebuild */

    uintptr_t       buf_base;       /* U3; buf_len == 0: none */
    size_t          buf_len;
};

static uint64_t wake_tag(struct uring *u)
{
    return (uint64_t)(uintptr_t)&u->wake_buf;
}

static uint64_t cancel_tag(struct uring *u)
{
    return (uint64_t)(uintptr_t)&u->cancel_buf;
}

static struct io_uring_sqe *uring_sqe(struct uring *u);

/* Keep a read on the eventfd in the ring: its completion is the wake-up. */
static void uring_arm_wake(struct uring *u)
{
    struct io_uring_sqe *sqe = uring_sqe(u);

    if (!sqe)
        return;             /* U1 makes this impossible; next reap retries */
    io_uring_prep_read(sqe, u->wake_fd, &u->wake_buf, sizeof u->wake_buf, 0);
    io_uring_sqe_set_data64(sqe, wake_tag(u));
    u->wake_armed = true;
}

/*
 * Create the ring with the best flags this kernel takes: each step drops
 * what an older kernel rejects with -EINVAL (DEFER_TASKRUN 6.1,
 * SINGLE_ISSUER 6.0, COOP_TASKRUN 5.19).  R_DISABLED only matters with
 * SINGLE_ISSUER (see the header comment).  Any other error is final.
 */
static int uring_open(struct uring *u)
{
    static const unsigned tries[] = {
        URING_WANT_FLAGS,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_R_DISABLED,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int r = -EINVAL;

    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;

        memset(&p, 0, sizeof p);
        p.flags = tries[i];
        r = io_uring_queue_init_params(u->entries, &u->ring, &p);
        if (r != -EINVAL) {
            u->flags = tries[i];
            break;
        }
    }
    if (r < 0)
        return r;
    u->enabled = !(u->flags & IORING_SETUP_R_DISABLED);
    u->enabled_tid = gettid();
    u->wake_armed = false;
    uring_arm_wake(u);      /* an SQE only: it enters the kernel with the first submit */
    return 0;
}

/* The calling thread becomes the ring's submitter task (SINGLE_ISSUER). */
static int uring_enable(struct uring *u)
{
    int r;

    if (u->enabled)
        return 0;
    /* liburing 2.3 declares io_uring_enable_rings() but does not export it. */
    r = io_uring_register(u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
    if (r < 0) {
        io_log("io_uring: cannot enable ring: %s", strerror(-r));
        return r;
    }
    u->enabled = true;
    u->enabled_tid = gettid();
    return 0;
}

/*
 * An SQE for the owner (U1).  Only polls and cancels can exhaust the SQ;
 * then what is queued goes to the kernel now, which frees every entry.
 */
static struct io_uring_sqe *uring_sqe(struct uring *u)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

    if (sqe)
        return sqe;
    if (u->broken || uring_enable(u) < 0)
        return NULL;
    io_uring_submit(&u->ring);
    return io_uring_get_sqe(&u->ring);
}

static int uring_register_buffers(struct uring *u)
{
    unsigned n = (unsigned)((u->buf_len + URING_BUF_CHUNK - 1) / URING_BUF_CHUNK);
    struct iovec *iov = calloc(n, sizeof *iov);
    int r;

    if (!iov)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        size_t off = (size_t)i * URING_BUF_CHUNK;

        iov[i].iov_base = (void *)(u->buf_base + off);
        iov[i].iov_len = u->buf_len - off < URING_BUF_CHUNK ? u->buf_len - off : URING_BUF_CHUNK;
    }
    r = io_uring_register_buffers(&u->ring, iov, n);
    free(iov);
    return r;
}

/* Replay fixed files and buffers into a fresh ring (rebuild). */
static int uring_replay(struct uring *u)
{
    int r;

    if (u->files_on) {
        r = io_uring_register_files_sparse(&u->ring, URING_FILES);
        if (r < 0)
            return r;
        /* -1 entries leave a slot empty, so one call restores the table. */
        r = io_uring_register_files_update(&u->ring, 0, u->slot_fd, URING_FILES);
        if (r < 0)
            return r;
    }
    if (u->buf_len) {
        r = uring_register_buffers(u);
        if (r < 0)
            return r;
    }
    return 0;
}

static int uring_create(struct io_loop *l, unsigned depth)
{
    struct uring *u = calloc(1, sizeof *u);
    unsigned entries = 1;
    int r;

    if (!u)
        return -ENOMEM;
    while (entries < depth + 2)     /* U1 */
        entries <<= 1;
    u->entries = entries;
    for (unsigned i = 0; i < URING_FILES; i++)
        u->slot_fd[i] = -1;
    u->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->wake_fd < 0) {
        r = -errno;
        free(u);
        return r;
    }
    r = uring_open(u);
    if (r < 0) {
        close(u->wake_fd);
        free(u);
        return r;
    }
    l->be = u;
    return 0;
}

static void uring_destroy(struct io_loop *l)
{
    struct uring *u = l->be;

    /* Closing the ring cancels what is left and drops registrations. */
    io_uring_queue_exit(&u->ring);
    close(u->wake_fd);
    free(u->fd_slot);
    free(u);
}

static void uring_set_owner(struct io_loop *l)
{
    struct uring *u = l->be;
    int r;

    if (u->broken)
        return;
    if (!u->enabled) {
        r = uring_enable(u);
        if (r < 0)
            u->broken = r;
        return;
    }
    if (!(u->flags & IORING_SETUP_SINGLE_ISSUER) || u->enabled_tid == gettid())
        return;

    /* Another thread already enabled the ring, and the kernel will never
     * accept this one: rebuild.  Only an idle loop can move (loop.h). */
    assert(l->in_kernel == 0 && l->npoll == 0);
    io_uring_queue_exit(&u->ring);
    r = uring_open(u);
    if (r == 0)
        r = uring_replay(u);
    if (r == 0)
        r = uring_enable(u);
    if (r < 0) {
        io_log("io_uring: cannot move the ring to a new owner thread: %s", strerror(-r));
        u->broken = r;
    }
}

/* Slot of a registered file, or -1 (U2). */
static int uring_fd_slot(const struct uring *u, int fd)
{
    return (unsigned)fd < u->fd_slot_len ? u->fd_slot[fd] : -1;
}

/* Index of the registered buffer holding [buf, buf + len), or -1 (U3). */
static int uring_buf_index(const struct uring *u, const void *buf, uint32_t len)
{
    uintptr_t off = (uintptr_t)buf - u->buf_base;   /* wraps when below base */

    if (len == 0 || off >= u->buf_len || len > u->buf_len - off)
        return -1;
    if (off / URING_BUF_CHUNK != (off + len - 1) / URING_BUF_CHUNK)
        return -1;
    return (int)(off / URING_BUF_CHUNK);
}

static int uring_queue(struct io_loop *l, struct io_req *req)
{
    struct uring *u = l->be;
    struct io_uring_sqe *sqe = uring_sqe(u);
    int fd = req->fd;
    int slot = uring_fd_slot(u, fd);

    if (!sqe)
        return -EBUSY;      /* U1: only when the ring is broken */
    if (slot >= 0) {
        fd = slot;
        l->nr_fixed_file++;
    }
    switch (req->op) {
    case IO_OP_READ:
    case IO_OP_WRITE: {
        char *buf = (char *)req->buf + req->done_bytes;
        uint32_t len = req->len - req->done_bytes;
        uint64_t off = req->off + req->done_bytes;
        int bi = uring_buf_index(u, buf, len);

        if (req->op == IO_OP_READ) {
            if (bi >= 0)
                io_uring_prep_read_fixed(sqe, fd, buf, len, off, bi);
            else
                io_uring_prep_read(sqe, fd, buf, len, off);
        } else {
            if (bi >= 0)
                io_uring_prep_write_fixed(sqe, fd, buf, len, off, bi);
            else
                io_uring_prep_write(sqe, fd, buf, len, off);
            if (req->flags & IO_F_DSYNC)
                sqe->rw_flags = RWF_DSYNC;
        }
        if (bi >= 0)
            l->nr_fixed_buf++;
        break;
    }
    case IO_OP_FSYNC:
        io_uring_prep_fsync(sqe, fd, 0);
        break;
    case IO_OP_FDATASYNC:
        io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
        break;
    case IO_OP_PUNCH:
        io_uring_prep_fallocate(sqe, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)req->off, (off_t)req->len);
        break;
    default:
        abort();            /* io_loop_submit validated op */
    }
    if (slot >= 0)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, req);
    return 0;
}

static int uring_wait(struct io_loop *l, int64_t timeout_ns)
{
    struct uring *u = l->be;
    int r;

    if (u->broken)
        return u->broken;
    if (!u->enabled) {
        /* First use on the creating thread: it becomes the submitter. */
        r = uring_enable(u);
        if (r < 0)
            return r;
    }
    if (timeout_ns == 0) {
        /* Nothing to hand in and nothing out: skip the system call. */
        if (io_uring_sq_ready(&u->ring) == 0 && l->in_kernel == 0 && l->npoll == 0)
            return 0;
        /* GETEVENTS even without a wait: with DEFER_TASKRUN completions
         * are only posted while we are in the kernel asking for them. */
        r = io_uring_submit_and_get_events(&u->ring);
    } else if (timeout_ns < 0) {
        r = io_uring_submit_and_wait(&u->ring, 1);
    } else {
        struct __kernel_timespec ts = {
            .tv_sec = timeout_ns / 1000000000,
            .tv_nsec = timeout_ns % 1000000000,
        };
        struct io_uring_cqe *cqe;

        r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
    }
    /* A timeout, a signal, or a transient shortage: the turn goes on and
     * whatever is unsubmitted stays in the SQ for the next one. */
    if (r >= 0 || r == -ETIME || r == -EINTR || r == -EAGAIN || r == -EBUSY)
        return 0;
    io_log("io_uring: io_uring_enter: %s", strerror(-r));
    return r;
}

static int uring_reap(struct io_loop *l)
{
    struct uring *u = l->be;
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    int n = 0;

    /* done() runs while we walk the CQ: it may prepare SQEs (a separate
     * ring) but never reaps, and U1 keeps the CQ from filling up. */
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        seen++;
        if (cqe->user_data == wake_tag(u)) {
            u->wake_armed = false;      /* the read drained the eventfd */
            continue;
        }
        if (cqe->user_data == cancel_tag(u))
            continue;                   /* the poll itself completes apart */
        n++;
        io_loop_complete(l, (struct io_req *)(uintptr_t)cqe->user_data, cqe->res);
    }
    io_uring_cq_advance(&u->ring, seen);
    if (!u->wake_armed)
        uring_arm_wake(u);
    return n;
}

static int uring_poll(struct io_loop *l, struct io_req *req)
{
    struct uring *u = l->be;
    struct io_uring_sqe *sqe = uring_sqe(u);
    int slot = uring_fd_slot(u, req->fd);

    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, slot >= 0 ? slot : req->fd, req->len);
    if (slot >= 0) {
        sqe->flags |= IOSQE_FIXED_FILE;
        l->nr_fixed_file++;
    }
    io_uring_sqe_set_data(sqe, req);
    return 0;
}

static void uring_poll_cancel(struct io_loop *l, struct io_req *req)
{
    struct uring *u = l->be;
    struct io_uring_sqe *sqe = uring_sqe(u);

    if (!sqe)
        return;             /* broken ring: every wait fails anyway */
    /* The poll completes with -ECANCELED, or already did (-ENOENT here):
     * exactly one completion either way.  SQEs run in order, so this finds
     * a poll added earlier in the same batch. */
    io_uring_prep_poll_remove(sqe, (uint64_t)(uintptr_t)req);
    io_uring_sqe_set_data64(sqe, cancel_tag(u));
}

static int uring_add_file(struct io_loop *l, int fd)
{
    struct uring *u = l->be;
    unsigned slot;
    int r;

    if (uring_fd_slot(u, fd) >= 0)
        return 0;
    for (slot = 0; slot < URING_FILES && u->slot_fd[slot] >= 0; slot++)
        ;
    if (slot == URING_FILES)
        return -ENOSPC;
    if ((unsigned)fd >= u->fd_slot_len) {
        unsigned len = (unsigned)fd + 64;
        int *m = realloc(u->fd_slot, len * sizeof *m);

        if (!m)
            return -ENOMEM;
        for (unsigned i = u->fd_slot_len; i < len; i++)
            m[i] = -1;
        u->fd_slot = m;
        u->fd_slot_len = len;
    }
    if (!u->files_on) {
        r = io_uring_register_files_sparse(&u->ring, URING_FILES);
        if (r < 0)
            goto fail;
        u->files_on = true;
    }
    r = io_uring_register_files_update(&u->ring, slot, &fd, 1);
    if (r < 0)
        goto fail;
    u->fd_slot[fd] = (int)slot;
    u->slot_fd[slot] = fd;
    return 0;
fail:
    io_log("io_uring: cannot register fd %d as a fixed file: %s", fd, strerror(-r));
    return r;
}

static void uring_remove_file(struct io_loop *l, int fd)
{
    struct uring *u = l->be;
    int slot = uring_fd_slot(u, fd);
    int none = -1;

    if (slot < 0)
        return;
    /* A submitted request holds its own reference to the file, but an SQE
     * still waiting in the SQ would find the slot empty: submit those
     * first (an SQE only ever waits for an enabled ring). */
    if (u->enabled && io_uring_sq_ready(&u->ring) > 0)
        io_uring_submit(&u->ring);
    io_uring_register_files_update(&u->ring, (unsigned)slot, &none, 1);
    u->fd_slot[fd] = -1;
    u->slot_fd[slot] = -1;
}

static int uring_add_buffers(struct io_loop *l, void *base, size_t len)
{
    struct uring *u = l->be;
    int r;

    if (u->buf_len)
        return -EBUSY;      /* the kernel takes one buffer table per ring */
    u->buf_base = (uintptr_t)base;
    u->buf_len = len;
    r = uring_register_buffers(u);
    if (r < 0) {
        io_log("io_uring: cannot register %zu MiB of fixed buffers (%s), "
               "using plain reads and writes", len >> 20, strerror(-r));
        u->buf_base = 0;
        u->buf_len = 0;
    }
    return r;
}

static void uring_wake(struct io_loop *l)
{
    struct uring *u = l->be;
    uint64_t one = 1;

    /* EAGAIN means the counter is saturated: the eventfd is readable anyway. */
    if (write(u->wake_fd, &one, sizeof one) < 0)
        return;
}

const struct io_backend_ops io_backend_uring = {
    .name        = "uring",
    .kind        = IO_BACKEND_URING,
    .create      = uring_create,
    .destroy     = uring_destroy,
    .set_owner   = uring_set_owner,
    .queue       = uring_queue,
    .wait        = uring_wait,
    .reap        = uring_reap,
    .poll        = uring_poll,
    .poll_cancel = uring_poll_cancel,
    .add_file    = uring_add_file,
    .remove_file = uring_remove_file,
    .add_buffers = uring_add_buffers,
    .wake        = uring_wake,
};
