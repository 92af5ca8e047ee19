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
 *
 * Context
 *   Owner thread, except aio_wake (any thread).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libaio.h>

#include "io/internal.h"

enum { AIO_TAG_COMPLETION = 1, AIO_TAG_WAKE = 2 };

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
    struct epoll_event ev[2];
    int n;

    aio_flush(l);
    if (timeout_ns == 0)
        return 0;           /* aio_reap looks at the completion ring anyway */

    n = aio_epoll(a, ev, 2, timeout_ns);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        n = -errno;
        io_log("aio: epoll_wait: %s", strerror(-n));
        return n;
    }
    for (int i = 0; i < n; i++)
        aio_drain_eventfd(ev[i].data.u32 == AIO_TAG_WAKE ? a->wake_fd : a->aio_fd);  /* A2 */
    return 0;
}

static int aio_reap(struct io_loop *l)
{
    struct aio *a = l->be;
    struct timespec zero = { 0, 0 };
    int total = 0;

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
    .add_file    = aio_add_file,
    .remove_file = aio_remove_file,
    .add_buffers = aio_add_buffers,
    .wake        = aio_wake,
};
