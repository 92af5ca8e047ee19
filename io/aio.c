/* SPDX-License-Identifier: MIT */
/*
 * io/aio.c — the libaio + epoll backend (libaio 0.3.113).
 *
 * Role
 *   For hosts where io_uring is refused (seccomp, containers, sysctl).  A
 *   request becomes one iocb from a per-loop array; prepared iocbs are handed
 *   to io_submit() in one batch per turn.  Every iocb signals aio_fd (an
 *   eventfd) on completion; epoll waits on aio_fd and on wake_fd, the
 *   cross-thread wake-up, with the timers' deadline as timeout.
 *
 *   A POLL is an EPOLLONESHOT registration of its fd in the same epoll set,
 *   whose data is the request: epoll_wait reports it fired, aio_reap
 *   completes it.  A fired registration stays in the set, disarmed, until
 *   the fd is re-armed (EPOLL_CTL_MOD) or its file is closed.
 *
 *   Linux AIO is asynchronous only for O_DIRECT; on a buffered file
 *   io_submit() itself does the I/O.  That is correct, merely slower.
 *   There is no fixed-file or fixed-buffer notion: those calls succeed and
 *   do nothing.
 *
 * Invariants
 *   A1  Every iocb is on the free stack, in the batch, or in the kernel
 *       (nr_in_kernel counts the last); depth iocbs cover L1.
 *   A2  aio_fd is read (reset) before io_getevents(), so a completion that
 *       lands after the reap leaves the eventfd readable and wakes the next
 *       wait: none is ever missed.
 *   A3  An armed poll has done_bytes == 0 and is registered in epoll; a
 *       fired one has done_bytes == its revents (never 0) and sits on the
 *       fired list until aio_reap completes it in the same turn.  So
 *       aio_poll_cancel can tell the two apart, and a poll is completed
 *       exactly once.
 *
 * Context
 *   Owner thread, except aio_wake (any thread).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libaio.h>

#include "io/internal.h"

/* epoll data: these two tags, or a POLL's io_req (never 1 or 2). */
enum { AIO_TAG_COMPLETION = 1, AIO_TAG_WAKE = 2 };

/* Events taken per epoll_wait; more stay ready for the next turn. */
#define AIO_EPOLL_BATCH 64

struct aio {
    io_context_t     ctx;
    unsigned         depth;
    int              aio_fd;        /* eventfd signalled by every iocb */
    int              wake_fd;       /* eventfd for io_loop_post/stop; immutable */
    int              epfd;
    bool             no_pwait2;     /* kernel < 5.11: millisecond epoll_wait */

    struct iocb     *iocbs;         /* depth of them (A1) */
    struct iocb    **free;          /* stack of free iocbs */
    unsigned         nr_free;
    struct iocb    **batch;         /* prepared, not yet submitted */
    unsigned         nr_batch;
    unsigned         nr_in_kernel;
    struct io_event *events;        /* depth of them, for io_getevents */

    struct io_req   *fired_head, *fired_tail;   /* A3: polls to complete */
    struct epoll_event evs[AIO_EPOLL_BATCH];
};

static void aio_free_all(struct aio *a)
{
    if (a->ctx)
        io_destroy(a->ctx);
    if (a->epfd >= 0)
        close(a->epfd);
    if (a->aio_fd >= 0)
        close(a->aio_fd);
    if (a->wake_fd >= 0)
        close(a->wake_fd);
    free(a->iocbs);
    free(a->free);
    free(a->batch);
    free(a->events);
    free(a);
}

static int aio_watch(struct aio *a, int fd, uint32_t tag)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.u32 = tag };

    return epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int aio_create(struct io_loop *l, unsigned depth)
{
    struct aio *a = calloc(1, sizeof *a);
    int r;

    if (!a)
        return -ENOMEM;
    a->depth = depth;
    a->aio_fd = a->wake_fd = a->epfd = -1;
    a->iocbs = calloc(depth, sizeof *a->iocbs);
    a->free = calloc(depth, sizeof *a->free);
    a->batch = calloc(depth, sizeof *a->batch);
    a->events = calloc(depth, sizeof *a->events);
    if (!a->iocbs || !a->free || !a->batch || !a->events) {
        r = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < depth; i++)
        a->free[i] = &a->iocbs[depth - 1 - i];
    a->nr_free = depth;

    a->aio_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    a->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    a->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (a->aio_fd < 0 || a->wake_fd < 0 || a->epfd < 0) {
        r = -errno;
        goto fail;
    }
    r = aio_watch(a, a->aio_fd, AIO_TAG_COMPLETION);
    if (r == 0)
        r = aio_watch(a, a->wake_fd, AIO_TAG_WAKE);
    if (r < 0)
        goto fail;
    r = io_setup((int)depth, &a->ctx);     /* libaio returns -errno */
    if (r < 0) {
        a->ctx = 0;
        goto fail;
    }
    l->be = a;
    return 0;
fail:
    aio_free_all(a);
    return r;
}

static void aio_destroy(struct io_loop *l)
{
    /* io_destroy() waits for what is still in the kernel. */
    aio_free_all(l->be);
}

static int aio_queue(struct io_loop *l, struct io_req *req)
{
    struct aio *a = l->be;
    struct iocb *cb;

    if (a->nr_free == 0)
        return -EBUSY;      /* A1 and L1: cannot happen */
    cb = a->free[--a->nr_free];
    switch (req->op) {
    case IO_OP_READ:
    case IO_OP_WRITE: {
        char *buf = (char *)req->buf + req->done_bytes;
        uint32_t len = req->len - req->done_bytes;
        long long off = (long long)(req->off + req->done_bytes);

        if (req->op == IO_OP_READ) {
            io_prep_pread(cb, req->fd, buf, len, off);
        } else {
            io_prep_pwrite(cb, req->fd, buf, len, off);
            if (req->flags & IO_F_DSYNC)
                cb->aio_rw_flags = RWF_DSYNC;   /* after prep, which clears it */
        }
        break;
    }
    case IO_OP_FSYNC:
        io_prep_fsync(cb, req->fd);
        break;
    case IO_OP_FDATASYNC:
        io_prep_fdsync(cb, req->fd);
        break;
    case IO_OP_PUNCH: {
        /* libaio has no fallocate: run it here (a metadata change; it does
         * not wait for data I/O) and complete it this turn. */
        int r = fallocate(req->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          (off_t)req->off, (off_t)req->len) < 0 ? -errno : 0;
        a->free[a->nr_free++] = cb;
        io_loop_done_inline(l, req, r);
        return 0;
    }
    default:
        abort();            /* io_loop_submit validated op */
    }
    io_set_eventfd(cb, a->aio_fd);
    cb->data = req;
    a->batch[a->nr_batch++] = cb;
    return 0;
}

/* Hand the batch to the kernel; the iocbs it refuses fail their requests. */
static int aio_flush(struct io_loop *l)
{
    struct aio *a = l->be;
    unsigned i = 0;

    while (i < a->nr_batch) {
        int r = io_submit(a->ctx, (long)(a->nr_batch - i), &a->batch[i]);

        if (r > 0) {
            a->nr_in_kernel += (unsigned)r;
            i += (unsigned)r;
        } else if (r == -EAGAIN && a->nr_in_kernel > 0) {
            /* Out of kernel resources for now: keep the rest for the next
             * turn, when completions have freed some. */
            break;
        } else {
            /* io_submit reports the first refused iocb (a bad fd, a flag
             * this file cannot do): fail it and go on with the rest. */
            struct iocb *cb = a->batch[i++];

            a->free[a->nr_free++] = cb;
            io_loop_fail(l, cb->data, r < 0 ? r : -EIO);
        }
    }
    if (i > 0) {
        memmove(a->batch, a->batch + i, (a->nr_batch - i) * sizeof *a->batch);
        a->nr_batch -= i;
    }
    return 0;
}

static void aio_drain_eventfd(int fd)
{
    uint64_t v;

    /* EAGAIN: already drained.  Nothing else can fail on our own eventfd. */
    if (read(fd, &v, sizeof v) < 0)
        return;
}

/* epoll with nanosecond timeouts where the kernel has them (5.11). */
static int aio_epoll(struct aio *a, struct epoll_event *ev, int nev, int64_t timeout_ns)
{
    int ms;

    if (!a->no_pwait2) {
        struct timespec ts = {
            .tv_sec = timeout_ns / 1000000000,
            .tv_nsec = timeout_ns % 1000000000,
        };
        int n = epoll_pwait2(a->epfd, ev, nev, timeout_ns < 0 ? NULL : &ts, NULL);

        if (n >= 0 || errno != ENOSYS)
            return n;
        a->no_pwait2 = true;
    }
    /* Round up: waking early would only cost an empty turn, but we would
     * rather not. */
    ms = timeout_ns < 0 ? -1 :
         timeout_ns > (int64_t)INT32_MAX * 1000000 ? INT32_MAX :
         (int)((timeout_ns + 999999) / 1000000);
    return epoll_wait(a->epfd, ev, nev, ms);
}

static int aio_wait(struct io_loop *l, int64_t timeout_ns)
{
    struct aio *a = l->be;
    int n;

    aio_flush(l);
    /* aio_reap looks at the completion ring anyway; only polls need epoll
     * when we may not block. */
    if (timeout_ns == 0 && l->npoll == 0)
        return 0;

    n = aio_epoll(a, a->evs, AIO_EPOLL_BATCH, timeout_ns);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        n = -errno;
        io_log("aio: epoll_wait: %s", strerror(-n));
        return n;
    }
    for (int i = 0; i < n; i++) {
        uint64_t tag = a->evs[i].data.u64;

        if (tag == AIO_TAG_WAKE || tag == AIO_TAG_COMPLETION) {
            aio_drain_eventfd(tag == AIO_TAG_WAKE ? a->wake_fd : a->aio_fd);  /* A2 */
        } else {
            struct io_req *req = a->evs[i].data.ptr;

            req->done_bytes = a->evs[i].events;      /* A3: fired */
            req->next = NULL;
            if (a->fired_tail)
                a->fired_tail->next = req;
            else
                a->fired_head = req;
            a->fired_tail = req;
        }
    }
    return 0;
}

static int aio_reap(struct io_loop *l)
{
    struct aio *a = l->be;
    struct timespec zero = { 0, 0 };
    struct io_req *req = a->fired_head;
    int total = 0;

    /* Detach first: a done() may arm the same request again (A3). */
    a->fired_head = a->fired_tail = NULL;
    while (req) {
        struct io_req *next = req->next;

        req->next = NULL;
        total++;
        io_loop_complete(l, req, (int)req->done_bytes);
        req = next;
    }

    while (a->nr_in_kernel > 0) {
        /* With a zero timeout libaio peeks at the completion ring in user
         * space and makes no system call when it is empty. */
        int n = io_getevents(a->ctx, 0, (long)a->depth, a->events, &zero);

        if (n < 0) {
            if (n == -EINTR)
                continue;
            io_log("aio: io_getevents: %s", strerror(-n));
            return n;
        }
        for (int i = 0; i < n; i++) {
            struct io_event *e = &a->events[i];

            a->nr_in_kernel--;
            a->free[a->nr_free++] = e->obj;
            /* res is the byte count or -errno, in an unsigned long. */
            io_loop_complete(l, e->data, (int)(long)e->res);
        }
        total += n;
        if ((unsigned)n < a->depth)
            break;
    }
    return total;
}

static int aio_poll(struct io_loop *l, struct io_req *req)
{
    struct aio *a = l->be;
    struct epoll_event ev = {
        /* POLL* and EPOLL* bits are the same on Linux. */
        .events = (req->len & (EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP)) | EPOLLONESHOT,
        .data.ptr = req,
    };

    req->done_bytes = 0;                             /* A3: armed */
    /* Re-arm the fd's registration (left disarmed by its last poll); a new
     * fd, or one whose file was closed since, has none yet. */
    if (epoll_ctl(a->epfd, EPOLL_CTL_MOD, req->fd, &ev) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(a->epfd, EPOLL_CTL_ADD, req->fd, &ev) == 0)
        return 0;
    return -errno;
}

static void aio_poll_cancel(struct io_loop *l, struct io_req *req)
{
    struct aio *a = l->be;

    if (req->done_bytes != 0)
        return;                 /* A3: fired or already cancelled */
    /* Removing the registration means it can never fire, so the -ECANCELED
     * completion below is the only one. */
    epoll_ctl(a->epfd, EPOLL_CTL_DEL, req->fd, NULL);
    io_loop_fail(l, req, -ECANCELED);
}

static int aio_add_file(struct io_loop *l, int fd)
{
    (void)l;
    (void)fd;
    return 0;
}

static void aio_remove_file(struct io_loop *l, int fd)
{
    (void)l;
    (void)fd;
}

static int aio_add_buffers(struct io_loop *l, void *base, size_t len)
{
    (void)l;
    (void)base;
    (void)len;
    return 0;
}

static void aio_wake(struct io_loop *l)
{
    struct aio *a = l->be;
    uint64_t one = 1;

    /* EAGAIN means the counter is saturated: the eventfd is readable anyway. */
    if (write(a->wake_fd, &one, sizeof one) < 0)
        return;
}

const struct io_backend_ops io_backend_aio = {
    .name        = "aio",
    .kind        = IO_BACKEND_AIO,
    .create      = aio_create,
    .destroy     = aio_destroy,
    .set_owner   = NULL,
    .queue       = aio_queue,
    .wait        = aio_wait,
    .reap        = aio_reap,
    .poll        = aio_poll,
    .poll_cancel = aio_poll_cancel,
    .add_file    = aio_add_file,
    .remove_file = aio_remove_file,
    .add_buffers = aio_add_buffers,
    .wake        = aio_wake,
};
