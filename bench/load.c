/* SPDX-License-Identifier: MIT */
/*
 * bench/load.c — the closed-loop load generator (see load.h).
 *
 * A run goes through two posted phases per worker:
 *   setup  allocate the worker's slots' buffers from its pool, fill write
 *          buffers (L2), report ready;
 *   go     submit every slot; each done() counts the request and resubmits
 *          the slot while next_off() grants a new offset; the worker's last
 *          completion frees its buffers and reports finished.
 * The control thread sets the start time between the phases, so buffer
 * setup is never timed (L1).
 *
 * Offsets are granted from one shared ticket for LOAD_SEQ and LOAD_LIST and
 * for any run with a count (so the count is exact across workers); LOAD_RANDOM
 * without a count draws from a per-worker generator and touches nothing
 * shared.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/load.h"

struct load_run;

struct load_slot {
    struct pc_io          io;
    struct load_wctx     *wc;
    uint64_t              t_submit;
};

struct load_wctx {
    struct load_run      *run;
    struct pc_worker     *w;
    struct pc_msg         msg;
    unsigned              nslots;
    unsigned              inflight;
    struct load_slot     *slots;
    uint64_t              rng;
    /* results, read by the control thread after the worker reported */
    uint64_t              ios, bytes, lat_ns;
    uint64_t              end_ns;
    int                   err;
};

struct load_run {
    const struct load_spec *s;
    unsigned              nw;
    struct load_wctx     *wc;
    _Atomic uint64_t      ticket;
    uint64_t              deadline_ns;     /* 0 = none; written before go */
    uint64_t              nblocks;         /* span / bs */
    pthread_mutex_t       lock;
    pthread_cond_t        cond;
    unsigned              waiting;         /* workers yet to report this phase */
};

uint64_t load_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void run_report(struct load_run *run)
{
    pthread_mutex_lock(&run->lock);
    if (--run->waiting == 0)
        pthread_cond_signal(&run->cond);
    pthread_mutex_unlock(&run->lock);
}

static void run_wait(struct load_run *run)
{
    pthread_mutex_lock(&run->lock);
    while (run->waiting)
        pthread_cond_wait(&run->cond, &run->lock);
    pthread_mutex_unlock(&run->lock);
}

/* The next offset for a slot of wc, or false when the run is over for it.
 * now: the caller's clock reading (one per request: in a VM the clock is
 * not free, and the generator must cost far less than the engine). */
static bool next_off(struct load_wctx *wc, uint64_t now, uint64_t *off)
{
    struct load_run *run = wc->run;
    const struct load_spec *s = run->s;
    uint64_t t = 0;

    if (wc->err)
        return false;
    if (run->deadline_ns && now >= run->deadline_ns)
        return false;
    if (s->stop && atomic_load_explicit(s->stop, memory_order_relaxed))
        return false;
    if (s->count || s->pattern != LOAD_RANDOM) {
        t = atomic_fetch_add_explicit(&run->ticket, 1, memory_order_relaxed);
        if (s->count && t >= s->count)
            return false;
    }
    switch (s->pattern) {
    case LOAD_RANDOM:
        *off = s->base + load_rand(&wc->rng) % run->nblocks * s->bs;
        return true;
    case LOAD_SEQ:
        *off = s->base + t % run->nblocks * s->bs;
        return true;
    case LOAD_LIST:
        if (s->wrap)
            t %= s->nlist;
        else if (t >= s->nlist)
            return false;
        *off = s->list[t];
        return true;
    }
    return false;
}

static void worker_finish(struct load_wctx *wc)
{
    wc->end_ns = load_now_ns();
    for (unsigned i = 0; i < wc->nslots; i++)
        if (wc->slots[i].io.buf)
            pc_buf_free(wc->w, wc->slots[i].io.buf, wc->run->s->bs);
    run_report(wc->run);
}

static void slot_done(struct pc_io *io, int res)
{
    struct load_slot *sl = io->priv;
    struct load_wctx *wc = sl->wc;
    uint64_t now = load_now_ns();
    uint64_t off;

    if (res < 0) {
        if (!wc->err)
            wc->err = res;
    } else {
        wc->ios++;
        wc->bytes += io->len;
        wc->lat_ns += now - sl->t_submit;
    }
    if (next_off(wc, now, &off)) {
        io->off = off;
        sl->t_submit = now;
        pc_io_submit(wc->w, io);     /* done() never runs inside submit */
        return;
    }
    if (--wc->inflight == 0)
        worker_finish(wc);
}

static void phase_setup(struct pc_msg *msg)
{
    struct load_wctx *wc = msg->arg;
    const struct load_spec *s = wc->run->s;

    for (unsigned i = 0; i < wc->nslots; i++) {
        struct load_slot *sl = &wc->slots[i];
        void *buf = pc_buf_alloc(wc->w, s->bs);
        if (!buf) {
            wc->err = -ENOMEM;
            break;
        }
        if (s->op == PC_IO_WRITE) {                        /* L2 */
            uint64_t seed = s->seed ^ ((uint64_t)pc_worker_index(wc->w) << 32) ^ (i + 1) ^ 0x9e3779b97f4a7c15ull;
            uint64_t *p = buf;
            for (size_t j = 0; j < s->bs / 8; j++)
                p[j] = load_rand(&seed) | 1;
        }
        sl->wc = wc;
        sl->io = (struct pc_io){
            .op = (uint8_t)s->op, .vol = s->vol, .len = s->bs, .buf = buf,
            .done = slot_done, .priv = sl,
        };
    }
    run_report(wc->run);
}

/* Setup failed somewhere: free the buffers this worker did get. */
static void phase_free(struct pc_msg *msg)
{
    worker_finish(msg->arg);
}

static void phase_go(struct pc_msg *msg)
{
    struct load_wctx *wc = msg->arg;
    uint64_t off, now = load_now_ns();

    wc->inflight = 1;                  /* guard: no finish while we submit */
    for (unsigned i = 0; i < wc->nslots; i++) {
        if (!next_off(wc, now, &off))
            break;
        struct load_slot *sl = &wc->slots[i];
        sl->io.off = off;
        sl->t_submit = now;
        wc->inflight++;
        pc_io_submit(wc->w, &sl->io);
    }
    if (--wc->inflight == 0)
        worker_finish(wc);
}

static void post_all(struct load_run *run, void (*fn)(struct pc_msg *))
{
    run->waiting = run->nw;
    for (unsigned i = 0; i < run->nw; i++) {
        run->wc[i].msg = (struct pc_msg){ .fn = fn, .arg = &run->wc[i] };
        pc_worker_post(run->wc[i].w, &run->wc[i].msg);
    }
    run_wait(run);
}

int load_run(struct pc_engine *e, const struct load_spec *s, struct load_result *r)
{
    struct load_run run = { .s = s };
    unsigned nw = pc_engine_workers(e);
    uint64_t t0;
    int err = 0;

    memset(r, 0, sizeof *r);
    if (!s->vol || s->qd == 0 || s->bs == 0 || s->bs % PC_BLOCK_SIZE ||
        (s->op != PC_IO_READ && s->op != PC_IO_WRITE) ||
        (s->pattern == LOAD_LIST ? !s->list || !s->nlist : s->span < s->bs) ||
        (s->count == 0 && s->seconds <= 0 && !s->stop &&
         (s->pattern != LOAD_LIST || s->wrap)))
        return -EINVAL;
    run.nblocks = s->pattern == LOAD_LIST ? 1 : s->span / s->bs;
    if (nw > s->qd)
        nw = s->qd;
    run.nw = nw;
    run.wc = calloc(nw, sizeof *run.wc);
    if (!run.wc)
        return -ENOMEM;
    for (unsigned i = 0; i < nw; i++) {
        struct load_wctx *wc = &run.wc[i];
        wc->run = &run;
        wc->w = pc_engine_worker(e, i);
        wc->nslots = s->qd / nw + (i < s->qd % nw);
        wc->rng = (s->seed ? s->seed : 1) * 0x9e3779b97f4a7c15ull + i + 1;
        wc->slots = calloc(wc->nslots, sizeof *wc->slots);
        if (!wc->slots)
            err = -ENOMEM;
    }
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.cond, NULL);
    if (err)
        goto out;

    post_all(&run, phase_setup);
    for (unsigned i = 0; i < nw && !err; i++)
        err = run.wc[i].err;
    if (!err) {
        t0 = load_now_ns();
        if (s->seconds > 0)
            run.deadline_ns = t0 + (uint64_t)(s->seconds * 1e9);
        post_all(&run, phase_go);

        uint64_t end = t0, lat = 0;
        for (unsigned i = 0; i < nw; i++) {
            struct load_wctx *wc = &run.wc[i];
            r->ios += wc->ios;
            r->bytes += wc->bytes;
            lat += wc->lat_ns;
            if (wc->end_ns > end)
                end = wc->end_ns;
            if (wc->err && !err)
                err = wc->err;
        }
        r->secs = (double)(end - t0) / 1e9;
        if (r->secs > 0) {
            r->iops = (double)r->ios / r->secs;
            r->mbps = (double)r->bytes / r->secs / 1e6;
        }
        r->lat_us = r->ios ? (double)lat / (double)r->ios / 1e3 : 0;
    } else {
        post_all(&run, phase_free);    /* give back what setup took */
    }
out:
    pthread_mutex_destroy(&run.lock);
    pthread_cond_destroy(&run.cond);
    for (unsigned i = 0; i < nw; i++)
        free(run.wc[i].slots);
    free(run.wc);
    return err;
}

uint64_t *load_grain_list(uint64_t base, uint64_t span, uint32_t grain, uint32_t bs,
                          uint64_t seed, uint64_t *n)
{
    if (grain == 0 || bs == 0 || grain % bs || base % grain || span % grain)
        return NULL;
    uint64_t ng = span / grain, per = grain / bs;
    uint64_t *list = malloc((ng ? ng : 1) * sizeof *list);
    if (!list)
        return NULL;
    uint64_t rng = seed ? seed : 1;
    for (uint64_t g = 0; g < ng; g++)
        list[g] = base + g * grain + load_rand(&rng) % per * bs;
    for (uint64_t i = ng; i > 1; i--) {            /* Fisher-Yates */
        uint64_t j = load_rand(&rng) % i;
        uint64_t t = list[i - 1];
        list[i - 1] = list[j];
        list[j] = t;
    }
    *n = ng;
    return list;
}
