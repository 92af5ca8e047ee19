/* SPDX-License-Identifier: MIT */
/*
 * io/loop.c — the part of the I/O loop both backends share.
 *
 * Role
 *   Chooses the backend, keeps requests within depth (the pending queue),
 *   completes them in full (I2), runs posted messages and timers, and turns
 *   the loop.  The backend only talks to the kernel (io/internal.h).
 *
 *   One turn (io_loop_run_once):
 *     refill free slots from pending → decide how long we may block →
 *     ops->wait (submit + wait) → ops->reap (done() per completion) →
 *     done() of refused requests → posted messages → due timers.
 *
 * Invariants
 *   I1–I3 (loop.h) and L1–L3 (internal.h).  I1 holds because
 *   io_loop_submit() only queues: every done() runs from the reap, fail or
 *   timer phases of io_loop_run_once().
 *
 * Locking
 *   None.  Cross-thread traffic is post_head (MPSC queue), sleeping and
 *   stop, each an atomic whose pairing is spelled out where it is used.
 *
 * Context
 *   Owner thread, except io_loop_post, io_loop_stop and io_now_ns.  The data
 *   path (submit, complete, post, timers) neither allocates nor locks.
 */
#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/fault.h"
#define PC_IO_UNLIKELY(x) __builtin_expect(!!(x), 0)
#include "io/internal.h"

void io_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf so lines from several threads do not interleave. */
    fprintf(stderr, "pitcopy: %s\n", line);
}

uint64_t io_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* For asserts only (gone under NDEBUG, hence inline). */
static inline bool loop_on_owner(const struct io_loop *l)
{
    return pthread_equal(l->owner, pthread_self());
}

/* ------------------------------------------------------------------------
 * Creation
 */

static const struct io_backend_ops *loop_find_backend(const char *name)
{
    if (strcmp(name, "uring") == 0)
        return &io_backend_uring;
    if (strcmp(name, "aio") == 0)
        return &io_backend_aio;
    return NULL;
}

int io_loop_create(const char *backend, unsigned depth, struct io_loop **out)
{
    const char *from = "argument";
    const struct io_backend_ops *ops;
    struct io_loop *l;
    int r;

    *out = NULL;
    if (!backend) {
        backend = getenv("PITCOPY_IO");
        from = "PITCOPY_IO";
        if (!backend || !*backend)
            backend = "uring";
    }
    ops = loop_find_backend(backend);
    if (!ops) {
        io_log("unknown I/O backend \"%s\" (%s): expected uring or aio", backend, from);
        return -EINVAL;
    }
    if (depth == 0 || depth > IO_LOOP_MAX_DEPTH) {
        io_log("I/O loop depth %u out of range 1..%u", depth, IO_LOOP_MAX_DEPTH);
        return -EINVAL;
    }

    l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->depth = depth;
    l->owner = pthread_self();
    atomic_init(&l->post_stub.next, NULL);
    atomic_init(&l->post_head, &l->post_stub);
    l->post_tail = &l->post_stub;
    atomic_init(&l->sleeping, 0);
    atomic_init(&l->stop, false);

    l->ops = ops;
    r = ops->create(l, depth);
    if (r < 0 && ops == &io_backend_uring) {
        /* Seccomp, containers and io_uring_disabled refuse io_uring; libaio
         * does the same job with one more system call per turn. */
        io_log("io_uring unavailable (%s), using libaio", strerror(-r));
        l->ops = ops = &io_backend_aio;
        r = ops->create(l, depth);
    }
    if (r < 0) {
        io_log("cannot set up the %s I/O loop: %s", ops->name, strerror(-r));
        free(l);
        return r;
    }
    *out = l;
    return 0;
}

void io_loop_destroy(struct io_loop *l)
{
    if (!l)
        return;
    /* Requests still in flight would complete into their owners' memory
     * after this; the caller drains first (inflight == 0). */
    l->ops->destroy(l);
    free(l);
}

enum io_backend io_loop_backend(const struct io_loop *l)
{
    return l->ops->kind;
}

const char *io_loop_backend_name(const struct io_loop *l)
{
    return l->ops->name;
}

void io_loop_set_owner(struct io_loop *l)
{
    l->owner = pthread_self();
    if (l->ops->set_owner)
        l->ops->set_owner(l);
}

unsigned io_loop_inflight(const struct io_loop *l)
{
    return l->inflight;
}

int io_loop_add_file(struct io_loop *l, int fd)
{
    assert(loop_on_owner(l));
    if (fd < 0)
        return -EBADF;
    return l->ops->add_file(l, fd);
}

void io_loop_remove_file(struct io_loop *l, int fd)
{
    assert(loop_on_owner(l));
    if (fd >= 0)
        l->ops->remove_file(l, fd);
}

int io_loop_add_buffers(struct io_loop *l, void *base, size_t len)
{
    assert(loop_on_owner(l));
    if (!base || len == 0)
        return -EINVAL;
    return l->ops->add_buffers(l, base, len);
}

/* ------------------------------------------------------------------------
 * Requests
 */

static void req_append(struct io_req **head, struct io_req **tail, struct io_req *req)
{
    req->next = NULL;
    if (*tail)
        (*tail)->next = req;
    else
        *head = req;
    *tail = req;
}

static struct io_req *req_pop(struct io_req **head, struct io_req **tail)
{
    struct io_req *req = *head;

    if (req) {
        *head = req->next;
        if (!*head)
            *tail = NULL;
        req->next = NULL;
    }
    return req;
}

/*
 * A request that never reached the kernel, or that the kernel refused.  Its
 * done_bytes is no longer progress, so it carries -res until done() runs
 * (struct io_req has no other free field, and its layout is the engine's).
 */
static void loop_defer_failure(struct io_loop *l, struct io_req *req, int res)
{
    assert(res < 0);
    req->done_bytes = (uint32_t)-res;
    req_append(&l->fail_head, &l->fail_tail, req);
}

/* Take a slot (L1) and hand req to the backend. */
static void loop_start(struct io_loop *l, struct io_req *req)
{
    int r;

    l->in_kernel++;
    r = l->ops->queue(l, req);
    if (r < 0) {
        l->in_kernel--;
        loop_defer_failure(l, req, r);
    }
}

/* Move pending requests into free slots, oldest first (L2). */
static void loop_refill(struct io_loop *l)
{
    while (l->pend_head && l->in_kernel < l->depth)
        loop_start(l, req_pop(&l->pend_head, &l->pend_tail));
}

void io_loop_submit(struct io_loop *l, struct io_req *req)
{
    assert(loop_on_owner(l));
    assert(req->done);

    req->done_bytes = 0;
    req->next = NULL;
    l->inflight++;                                  /* L3 */

    /* Validate here so the backends need not: done(int) must be able to
     * carry the full length (I2), and an unknown op is the caller's bug,
     * reported through done() like any other error (I1). */
    if (req->op > IO_OP_PUNCH ||
        ((req->op == IO_OP_READ || req->op == IO_OP_WRITE) && req->len > INT32_MAX)) {
        loop_defer_failure(l, req, -EINVAL);
        return;
    }
    if (req->op == IO_OP_POLL) {
        /* L4: no slot, never pending; the backend arms it at once. */
        int r;

        l->npoll++;
        r = l->ops->poll(l, req);
        if (r < 0) {
            l->npoll--;
            loop_defer_failure(l, req, r);
        }
        return;
    }
    int fr = io_fault_check(req->fd, req->op, req->off, req->len);
    if (PC_IO_UNLIKELY(fr < 0)) {
        loop_defer_failure(l, req, fr);                 /* an injected fault (fault.h) */
        return;
    }
    if (l->pend_head || l->in_kernel >= l->depth) {
        req_append(&l->pend_head, &l->pend_tail, req);   /* FIFO behind older ones */
        return;
    }
    loop_start(l, req);
}

static void loop_finish(struct io_loop *l, struct io_req *req, int res)
{
    assert(l->inflight > 0);
    l->inflight--;
    l->ncallbacks++;
    if (req->op != IO_OP_POLL)
        io_fault_done(req->fd, req->op, req->flags & IO_F_DSYNC, req->off, req->len, res);
    req->done(req, res);
}

void io_loop_poll_cancel(struct io_loop *l, struct io_req *req)
{
    assert(loop_on_owner(l));
    assert(req->op == IO_OP_POLL);
    l->ops->poll_cancel(l, req);
}

void io_loop_complete(struct io_loop *l, struct io_req *req, int res)
{
    if (req->op == IO_OP_POLL) {
        /* L4: a poll held no slot, so there is nothing to refill. */
        assert(l->npoll > 0);
        l->npoll--;
        loop_finish(l, req, res);
        return;
    }
    if (res == -EINTR) {
        /* Interrupted before it did anything (aio maps -ERESTARTSYS here
         * when task work or a signal meets a blocking read): a system call
         * would be restarted, so is this, in its slot (L1). */
        int r = l->ops->queue(l, req);
        if (r == 0)
            return;
        res = r;
    } else if (res >= 0 && (req->op == IO_OP_READ || req->op == IO_OP_WRITE)) {
        uint32_t left = req->len - req->done_bytes;

        if (res == 0 && left > 0) {
            /* I2: a read that returns 0 hit end of file; a write that moves
             * nothing would loop forever.  Both fail. */
            res = -EIO;
        } else {
            assert((uint32_t)res <= left);
            req->done_bytes += (uint32_t)res;
            if (req->done_bytes < req->len) {
                /* I2: short transfer — the remainder keeps the slot (L1). */
                int r = l->ops->queue(l, req);
                if (r == 0)
                    return;
                res = r;
            } else {
                res = (int)req->len;
            }
        }
    }
    assert(l->in_kernel > 0);
    l->in_kernel--;
    /* Refill before done() so a request done() submits queues behind the
     * ones already waiting (FIFO), and the freed slot is reused at once. */
    loop_refill(l);
    loop_finish(l, req, res);
}

/* The backend ran the request itself (res 0 or -errno): as io_loop_fail. */
void io_loop_done_inline(struct io_loop *l, struct io_req *req, int res)
{
    assert(req->op != IO_OP_POLL && res <= 0);
    assert(l->in_kernel > 0);
    l->in_kernel--;
    req->done_bytes = (uint32_t)-res;
    req_append(&l->fail_head, &l->fail_tail, req);
}

void io_loop_fail(struct io_loop *l, struct io_req *req, int res)
{
    if (req->op == IO_OP_POLL) {
        assert(l->npoll > 0);
        l->npoll--;
    } else {
        assert(l->in_kernel > 0);
        l->in_kernel--;
    }
    loop_defer_failure(l, req, res);
}

static void loop_run_failures(struct io_loop *l)
{
    struct io_req *req;

    /* Detach first: a done() that submits a request that fails again adds
     * to a fresh list, run next turn, so this cannot loop forever. */
    req = l->fail_head;
    l->fail_head = l->fail_tail = NULL;
    while (req) {
        struct io_req *next = req->next;
        int res = -(int)req->done_bytes;

        req->next = NULL;
        loop_finish(l, req, res);
        req = next;
    }
}

/* ------------------------------------------------------------------------
 * Posted messages (I3): Vyukov's intrusive MPSC queue.  A push is one
 * exchange plus one store, wait-free; the owner pops with plain loads and
 * needs an exchange only when it puts the stub back behind the last message.
 */

static void post_push(struct io_loop *l, struct io_msg *m)
{
    struct io_msg *prev;

    atomic_store_explicit(&m->next, NULL, memory_order_relaxed);
    /* seq_cst: this exchange is one side of the Dekker pair with the
     * owner's store to sleeping then load of post_head (loop_may_block);
     * it also orders pushes, so posts from one thread stay in order (I3). */
    prev = atomic_exchange_explicit(&l->post_head, m, memory_order_seq_cst);
    /* release: publishes *m; pairs with the acquire loads of ->next in
     * post_pop().  Until this store the queue is briefly cut at prev. */
    atomic_store_explicit(&prev->next, m, memory_order_release);
}

/* Owner only.  NULL when empty, or when a poster is between its exchange
 * and its link store (post_idle() then says "not idle", so we come back). */
static struct io_msg *post_pop(struct io_loop *l)
{
    struct io_msg *tail = l->post_tail;
    struct io_msg *next = atomic_load_explicit(&tail->next, memory_order_acquire);

    if (tail == &l->post_stub) {
        if (!next)
            return NULL;
        l->post_tail = tail = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        l->post_tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&l->post_head, memory_order_acquire))
        return NULL;                 /* a push is half done */
    /* tail is the last message: put the stub behind it so tail can go. */
    post_push(l, &l->post_stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (next) {
        l->post_tail = next;
        return tail;
    }
    return NULL;
}

/* Owner only: true when no message is queued or being queued. */
static bool post_idle(struct io_loop *l)
{
    return l->post_tail == &l->post_stub &&
           atomic_load_explicit(&l->post_head, memory_order_seq_cst) == &l->post_stub;
}

void io_loop_post(struct io_loop *l, struct io_msg *msg)
{
    post_push(l, msg);
    /* Dekker pair with loop_may_block(): either the owner sees our push
     * before it blocks, or we see sleeping == 1 and wake it.  The exchange
     * makes only the first poster of a sleep pay for the system call. */
    if (atomic_exchange_explicit(&l->sleeping, 0, memory_order_seq_cst))
        l->ops->wake(l);
}

static void loop_run_posts(struct io_loop *l)
{
    struct io_msg *m;
    unsigned n = 0;

    while (n < IO_LOOP_MSG_BATCH && (m = post_pop(l))) {
        n++;
        l->ncallbacks++;
        m->fn(m);        /* may free or re-post m: it is already unlinked */
    }
}

void io_loop_stop(struct io_loop *l)
{
    atomic_store_explicit(&l->stop, true, memory_order_seq_cst);
    /* Always wake: stop is rare, and this way a stop can never be lost
     * whatever state sleeping is in. */
    l->ops->wake(l);
}

/* ------------------------------------------------------------------------
 * Timers: a sorted list.  A loop has a handful (rate limiters, periodic
 * commits), so O(n) insertion beats a heap's constant factors.
 */

static void timer_unlink(struct io_loop *l, struct io_timer *t)
{
    struct io_timer **pp = &l->timers;

    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp)
        *pp = t->next;
    t->next = NULL;
    t->armed = false;
}

void io_loop_timer_arm(struct io_loop *l, struct io_timer *t, uint64_t delay_ns)
{
    struct io_timer **pp = &l->timers;
    uint64_t now;

    assert(loop_on_owner(l));
    assert(t->fn);
    if (t->armed)
        timer_unlink(l, t);             /* re-arming moves the deadline */
    now = io_now_ns();
    t->deadline_ns = delay_ns > UINT64_MAX - now ? UINT64_MAX : now + delay_ns;
    while (*pp && (*pp)->deadline_ns <= t->deadline_ns)
        pp = &(*pp)->next;              /* after equals: FIFO */
    t->next = *pp;
    *pp = t;
    t->armed = true;
}

void io_loop_timer_cancel(struct io_loop *l, struct io_timer *t)
{
    assert(loop_on_owner(l));
    if (t->armed)
        timer_unlink(l, t);
}

static void loop_run_timers(struct io_loop *l)
{
    struct io_timer *t;
    uint64_t now;
    unsigned due = 0;

    if (!l->timers)
        return;
    now = io_now_ns();
    /* Fire at most the timers due now, so one re-armed with no delay from
     * its own callback waits for the next turn instead of spinning here. */
    for (t = l->timers; t && t->deadline_ns <= now; t = t->next)
        due++;
    while (due-- > 0 && (t = l->timers) && t->deadline_ns <= now) {
        l->timers = t->next;
        t->next = NULL;
        t->armed = false;
        l->ncallbacks++;
        t->fn(t);                       /* may re-arm or cancel any timer */
    }
}

/* ------------------------------------------------------------------------
 * The turn
 */

/*
 * How long this turn may block: 0 if anything is ready, else until the
 * nearest timer, else (-1) until a completion or a wake.  On a blocking
 * answer sleeping is left at 1 for posters to see.
 */
static int64_t loop_may_block(struct io_loop *l)
{
    int64_t timeout = -1;

    if (l->fail_head)
        return 0;
    if (l->timers) {
        uint64_t now = io_now_ns();

        if (l->timers->deadline_ns <= now)
            return 0;
        timeout = l->timers->deadline_ns - now > INT64_MAX ? INT64_MAX :
                  (int64_t)(l->timers->deadline_ns - now);
    }
    /* Dekker pair with io_loop_post(): store sleeping, then look at the
     * queue (seq_cst both), against push, then exchange sleeping. */
    atomic_store_explicit(&l->sleeping, 1, memory_order_seq_cst);
    if (!post_idle(l) || atomic_load_explicit(&l->stop, memory_order_seq_cst))
        return 0;
    return timeout;
}

int io_loop_run_once(struct io_loop *l, bool wait)
{
    uint64_t before = l->ncallbacks;
    int64_t timeout = 0;
    int r;

    assert(loop_on_owner(l));
    loop_refill(l);                                  /* L2 */
    if (wait)
        timeout = loop_may_block(l);

    r = l->ops->wait(l, timeout);
    if (wait)   /* awake: posters need not wake us (a stale wake is harmless) */
        atomic_store_explicit(&l->sleeping, 0, memory_order_relaxed);
    if (r < 0)
        return r;
    r = l->ops->reap(l);
    if (r < 0)
        return r;

    loop_run_failures(l);
    loop_run_posts(l);
    loop_run_timers(l);
    return (int)(l->ncallbacks - before);
}

int io_loop_run(struct io_loop *l)
{
    int r = 0;

    while (!atomic_load_explicit(&l->stop, memory_order_acquire)) {
        r = io_loop_run_once(l, true);
        if (r < 0)
            break;
    }
    /* Consume the stop, so the loop can be run again.  A stop made while no
     * io_loop_run is going ends the next one at once. */
    atomic_store_explicit(&l->stop, false, memory_order_relaxed);
    return r < 0 ? r : 0;
}
