/* SPDX-License-Identifier: MIT */
/*
 * engine/engine.c — the engine object: worker threads, grace periods, the
 * janitor thread, and the small services everything else shares.
 *
 * Role
 *   pc_engine_create starts N workers; each creates its own io_loop (so it
 *   is the ring's single issuer) and buffer pool, registers the pool's arena
 *   as fixed buffers, and runs the loop until the engine is destroyed.
 *
 * Invariants
 *   E1  A read section is entered and left on the same worker, so each
 *       worker's counters are written by that worker alone.
 *   E2  srcu_sync() returns only after every read section that had begun
 *       when it was called has ended (see the proof beside srcu_lock);
 *       synchronizers run one at a time.
 *   E3  Janitor jobs run one at a time, in queue order, on the janitor
 *       thread, with ctl_lock held.
 *
 * Context
 *   srcu_lock/unlock: worker threads, never block.  srcu_sync, control calls:
 *   any non-worker thread; they sleep.
 */
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"

static __thread struct pc_worker *tls_worker;

void pc_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pitcopy: %s\n", line);
}

bool engine_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= 64)
        return false;
    for (const char *p = name; *p; p++)
        if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            return false;
    return true;
}

void pc_error_set(struct pc_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------
 * Grace periods.
 *
 * A reader increments its worker's counter for the current phase, then
 * re-reads the phase; if the phase moved it backs out and retries.  The
 * synchronizer flips the phase, then waits for the old phase's counters to
 * reach zero.  Both sides use sequentially consistent atomics, so (Dekker)
 * either the reader's re-read sees the new phase, or the synchronizer's
 * counter read sees the reader's increment (E2).  Counters never go
 * negative per worker (E1), so "sum is zero" means "each is zero".
 */
int srcu_lock(struct pc_worker *w)
{
    for (;;) {
        unsigned idx = atomic_load(&w->e->srcu_idx) & 1;
        atomic_fetch_add(&w->srcu_cnt[idx], 1);
        if ((atomic_load(&w->e->srcu_idx) & 1) == idx)
            return (int)idx;
        atomic_fetch_sub(&w->srcu_cnt[idx], 1);
    }
}

void srcu_unlock(struct pc_worker *w, int idx)
{
    atomic_fetch_sub(&w->srcu_cnt[idx], 1);
}

static void srcu_wait_phase(struct pc_engine *e, unsigned idx)
{
    for (unsigned spins = 0;; spins++) {
        int64_t sum = 0;
        for (unsigned i = 0; i < e->nworkers; i++)
            sum += atomic_load(&e->workers[i].srcu_cnt[idx]);
        if (sum == 0)
            return;
        if (spins < 64) {
            sched_yield();
        } else {
            struct timespec ts = { 0, 20 * 1000 };
            nanosleep(&ts, NULL);
        }
    }
}

/*
 * Synchronizers take turns (srcu_lock_sync): with two at once, the second
 * flip would move the phase back and the second caller would wait on the
 * phase of readers that began after the first flip, returning while
 * readers from before both were still in their sections.
 */
void srcu_sync(struct pc_engine *e)
{
    pthread_mutex_lock(&e->srcu_sync_lock);
    unsigned old = atomic_fetch_add(&e->srcu_idx, 1) & 1;
    srcu_wait_phase(e, old);
    pthread_mutex_unlock(&e->srcu_sync_lock);
}

/* ------------------------------------------------------------------------
 * Workers. */

void engine_post(struct pc_worker *w, struct io_msg *msg, io_msg_fn fn, void *priv)
{
    msg->fn = fn;
    msg->priv = priv;
    io_loop_post(w->loop, msg);
}

struct pc_worker *engine_worker_for(struct pc_engine *e, uint64_t key)
{
    return &e->workers[key % e->nworkers];
}

struct pc_worker *pc_engine_worker(struct pc_engine *e, unsigned idx)
{
    return idx < e->nworkers ? &e->workers[idx] : NULL;
}

struct pc_worker *pc_worker_self(void) { return tls_worker; }
struct io_loop *pc_worker_loop(struct pc_worker *w) { return w->loop; }
unsigned pc_worker_index(const struct pc_worker *w) { return w->idx; }
unsigned pc_engine_workers(const struct pc_engine *e) { return e->nworkers; }
const char *pc_engine_io_backend(const struct pc_engine *e) { return e->backend_name; }

struct worker_start {
    struct pc_worker *w;
    unsigned nworkers;                 /* all there will be (e->nworkers grows) */
    const struct pc_engine_opts *opts;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool ready;
};

static void *worker_main(void *arg)
{
    struct worker_start *ws = arg;
    struct pc_worker *w = ws->w;
    unsigned depth = ws->opts->queue_depth ? ws->opts->queue_depth : 256;
    /* Registered memory is pinned: it is resident whatever the load, so
     * the default shares 256 MiB out when there are many workers. */
    size_t arena = ws->opts->buffer_arena;
    if (!arena) {
        arena = (size_t)256 << 20;
        arena = ws->nworkers > 4 ? arena / ws->nworkers : (size_t)64 << 20;
        if (arena < ((size_t)4 << 20))      /* past that, buffers come from the heap */
            arena = (size_t)4 << 20;
    }
    int r;

    tls_worker = w;
    r = io_loop_create(ws->opts->io_backend, depth, &w->loop);
    if (r == 0)
        r = io_pool_create(arena, &w->pool);
    if (r == 0) {
        size_t len;
        void *base = io_pool_arena(w->pool, &len);
        if (len)
            (void)io_loop_add_buffers(w->loop, base, len);  /* fine if refused */
    }
    pthread_mutex_lock(&ws->lock);
    w->start_err = r;
    ws->ready = true;
    pthread_cond_signal(&ws->cond);
    pthread_mutex_unlock(&ws->lock);
    if (r < 0)
        return NULL;

    r = io_loop_run(w->loop);
    if (r < 0)
        pc_log("worker %u: I/O loop failed: %s", w->idx, strerror(-r));
    return NULL;
}

static void *janitor_main(void *arg);

int pc_engine_create(const struct pc_engine_opts *opts, struct pc_engine **out,
                     struct pc_error *err)
{
    struct pc_engine_opts defaults = { 0 };
    struct pc_engine *e;
    unsigned n;
    int r = 0;

    if (!opts)
        opts = &defaults;
    n = opts->workers;
    if (n == 0) {
        /* One per CPU, up to the limit: a big machine must still start. */
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
        if (n > PC_MAX_WORKERS)
            n = PC_MAX_WORKERS;
    }
    if (n > PC_MAX_WORKERS) {
        pc_error_set(err, -EINVAL, "%u workers is more than the %u allowed", n, PC_MAX_WORKERS);
        return -EINVAL;
    }
    e = calloc(1, sizeof *e);
    if (!e)
        goto nomem;
    e->workers = calloc(n, sizeof *e->workers);
    e->busy = busy_create(4096);
    if (!e->workers || !e->busy)
        goto nomem;
    pthread_mutex_init(&e->ctl_lock, NULL);
    pthread_mutex_init(&e->srcu_sync_lock, NULL);
    pthread_mutex_init(&e->vol_lock, NULL);
    pthread_cond_init(&e->state_cond, NULL);
    pthread_mutex_init(&e->janitor.lock, NULL);
    pthread_cond_init(&e->janitor.cond, NULL);
    e->next_vol_id = 1;

    for (unsigned i = 0; i < n; i++) {
        struct pc_worker *w = &e->workers[i];
        struct worker_start ws = { .w = w, .nworkers = n, .opts = opts };
        w->e = e;
        w->idx = i;
        pthread_mutex_init(&ws.lock, NULL);
        pthread_cond_init(&ws.cond, NULL);
        r = -pthread_create(&w->thread, NULL, worker_main, &ws);
        if (r == 0) {
            pthread_mutex_lock(&ws.lock);
            while (!ws.ready)
                pthread_cond_wait(&ws.cond, &ws.lock);
            pthread_mutex_unlock(&ws.lock);
            w->started = true;
            r = w->start_err;
        }
        pthread_mutex_destroy(&ws.lock);
        pthread_cond_destroy(&ws.cond);
        e->nworkers = i + 1;
        if (r < 0) {
            pc_error_set(err, r, "cannot start I/O worker %u: %s", i, strerror(-r));
            pc_engine_destroy(e);
            return r;
        }
    }
    snprintf(e->backend_name, sizeof e->backend_name, "%s",
             io_loop_backend_name(e->workers[0].loop));
    r = -pthread_create(&e->janitor.thread, NULL, janitor_main, e);
    if (r < 0) {
        pc_error_set(err, r, "cannot start the engine's janitor thread: %s", strerror(-r));
        pc_engine_destroy(e);
        return r;
    }
    r = meta_committer_start(e);
    if (r < 0) {
        pc_error_set(err, r, "cannot start the engine's committer thread: %s", strerror(-r));
        pc_engine_destroy(e);
        return r;
    }
    *out = e;
    return 0;

nomem:
    if (e) {
        free(e->workers);
        if (e->busy)
            busy_destroy(e->busy);
        free(e);
    }
    pc_error_set(err, -ENOMEM, "out of memory creating the engine");
    return -ENOMEM;
}

static void worker_stop_msg(struct io_msg *msg)
{
    struct pc_worker *w = msg->priv;
    io_loop_stop(w->loop);
}

void pc_engine_destroy(struct pc_engine *e)
{
    if (!e)
        return;
    /* Mappings first: their background drivers run on the workers. */
    map_teardown_all(e);
    group_teardown_all(e);
    meta_committer_stop(e);
    while (e->volumes)
        pc_volume_close(e->volumes, NULL);

    if (e->janitor.thread) {
        pthread_mutex_lock(&e->janitor.lock);
        e->janitor.stop = true;
        pthread_cond_signal(&e->janitor.cond);
        pthread_mutex_unlock(&e->janitor.lock);
        pthread_join(e->janitor.thread, NULL);
    }
    for (unsigned i = 0; i < e->nworkers; i++) {
        struct pc_worker *w = &e->workers[i];
        if (!w->started)
            continue;
        if (w->loop && w->start_err == 0)
            engine_post(w, &w->stop_msg, worker_stop_msg, w);
        pthread_join(w->thread, NULL);
        cow_worker_free(w);
        if (w->pool)
            io_pool_destroy(w->pool);
        if (w->loop)
            io_loop_destroy(w->loop);
    }
    while (e->graveyard) {
        struct pc_map *m = e->graveyard;
        e->graveyard = m->next;
        free(m->solo);
        free(m);
    }
    busy_destroy(e->busy);
    pthread_mutex_destroy(&e->ctl_lock);
    pthread_mutex_destroy(&e->srcu_sync_lock);
    pthread_mutex_destroy(&e->vol_lock);
    pthread_cond_destroy(&e->state_cond);
    free(e->workers);
    free(e);
}

/* ------------------------------------------------------------------------
 * The janitor (E3). */

void janitor_queue(struct pc_engine *e, janitor_fn fn, struct pc_map *m, unsigned gen)
{
    struct janitor_job *job = malloc(sizeof *job);
    if (PC_NEVER(!job)) {
        /* Out of memory on a completion: the mapping stays where it is
         * (copying at 100 %, or stopping) and the next kick retries. */
        pc_log("mapping %s: out of memory queueing its state change", m->name);
        return;
    }
    job->fn = fn;
    job->map = m;
    job->gen = gen;
    job->next = NULL;
    pthread_mutex_lock(&e->janitor.lock);
    if (e->janitor.tail)
        e->janitor.tail->next = job;
    else
        e->janitor.head = job;
    e->janitor.tail = job;
    pthread_cond_signal(&e->janitor.cond);
    pthread_mutex_unlock(&e->janitor.lock);
}

static void *janitor_main(void *arg)
{
    struct pc_engine *e = arg;
    pthread_mutex_lock(&e->janitor.lock);
    for (;;) {
        struct janitor_job *job = e->janitor.head;
        if (!job) {
            if (e->janitor.stop)
                break;
            pthread_cond_wait(&e->janitor.cond, &e->janitor.lock);
            continue;
        }
        e->janitor.head = job->next;
        if (!e->janitor.head)
            e->janitor.tail = NULL;
        pthread_mutex_unlock(&e->janitor.lock);
        pthread_mutex_lock(&e->ctl_lock);
        job->fn(e, job);
        pthread_mutex_unlock(&e->ctl_lock);
        free(job);
        pthread_mutex_lock(&e->janitor.lock);
    }
    pthread_mutex_unlock(&e->janitor.lock);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Messages and buffers for front ends. */

static void pc_msg_trampoline(struct io_msg *im)
{
    struct pc_msg *msg = im->priv;
    msg->fn(msg);
}

_Static_assert(sizeof(((struct pc_msg *)0)->engine_private) >= sizeof(struct io_msg),
               "pc_msg private area too small");

void pc_worker_post(struct pc_worker *w, struct pc_msg *msg)
{
    struct io_msg *im = (struct io_msg *)msg->engine_private;
    engine_post(w, im, pc_msg_trampoline, msg);
}

void *pc_buf_alloc(struct pc_worker *w, size_t len)
{
    return io_pool_get(w->pool, len);
}

void pc_buf_free(struct pc_worker *w, void *buf, size_t len)
{
    io_pool_put(w->pool, buf, len);
}

void *pc_buf_alloc_any(size_t len) { return io_alloc_aligned(len); }
void  pc_buf_free_any(void *buf, size_t len) { io_free_aligned(buf, len); }

/* pc_io_sync: a request posted to a worker, and a wait for its done(). */
struct sync_io {
    struct pc_io    io;
    struct pc_msg   msg;
    struct pc_worker *w;
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    bool            done;
    int             res;
};

static void sync_io_done(struct pc_io *io, int res)
{
    struct sync_io *s = io->priv;
    pthread_mutex_lock(&s->lock);
    s->res = res;
    s->done = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void sync_io_submit(struct pc_msg *msg)
{
    struct sync_io *s = msg->arg;
    pc_io_submit(s->w, &s->io);
}

int pc_io_sync(struct pc_engine *e, enum pc_io_op op, struct pc_volume *v,
               uint64_t off, uint32_t len, void *buf, unsigned flags)
{
    static _Atomic unsigned rr;
    struct sync_io s = {
        .io = { .op = (uint8_t)op, .flags = (uint8_t)flags, .vol = v, .off = off,
                .len = len, .buf = buf, .done = sync_io_done, .priv = &s },
        .msg = { .fn = sync_io_submit, .arg = &s },
    };
    if (tls_worker)
        return -EDEADLK;   /* would wait on the loop that must complete it */
    s.w = &e->workers[atomic_fetch_add(&rr, 1) % e->nworkers];
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.cond, NULL);
    pc_worker_post(s.w, &s.msg);
    pthread_mutex_lock(&s.lock);
    while (!s.done)
        pthread_cond_wait(&s.cond, &s.lock);
    pthread_mutex_unlock(&s.lock);
    pthread_mutex_destroy(&s.lock);
    pthread_cond_destroy(&s.cond);
    return s.res;
}
