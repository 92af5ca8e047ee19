/* SPDX-License-Identifier: MIT */
/*
 * engine/busy.c — per-grain busy slots: one grain copy in flight, later
 * writers queue on it.
 *
 * Role
 *   DESIGN.md's grain protocol needs, per (source chain, grain), a slot that
 *   one grain operation owns while it decides and copies; a concurrent
 *   operation on the same grain waits for that copy instead of copying again.
 *   Busy state is not kept per grain (that would cost memory per grain); it
 *   lives in a small table of the operations that own slots now, hashed into
 *   stripes, each stripe a short list under a spinlock.
 *
 *   An operation owns a run of grains [g0, g0 + nheld).  busy_acquire takes
 *   the first (waiting if needed); busy_try_acquire extends the run one grain
 *   at a time and never waits, so no operation ever waits while owning a slot
 *   another waits for — there is no deadlock (the only waits are on a single
 *   slot, by operations that own nothing).
 *
 * Invariants
 *   S1  Runs never cross a BUSY_BLOCK boundary, so all of a run's grains
 *       hash to one stripe and one list entry describes the whole run.
 *   S2  No two owners in the table overlap (same source, intersecting runs).
 *   S3  A waiter is queued on exactly one owner and is resumed exactly once,
 *       as the owner of its grain, in arrival order among waiters of that grain.
 *
 * Context
 *   Any worker; never blocks beyond the stripe spinlock (a few dozen
 *   instructions).  A waiter's resume runs on its own worker (posted).
 */
#include <stdlib.h>

#include "engine/internal.h"

#define BUSY_BLOCK 64u   /* grains per hash block (S1) */

struct busy_stripe {
    pthread_spinlock_t lock;
    struct gop        *owners;        /* singly linked through slot_next */
} __attribute__((aligned(64)));

struct busy_table {
    unsigned            mask;
    struct busy_stripe *stripes;
};

struct busy_table *busy_create(unsigned stripes)
{
    struct busy_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    /* power of two */
    unsigned n = 1;
    while (n < stripes)
        n <<= 1;
    if (posix_memalign((void **)&t->stripes, 64, n * sizeof *t->stripes)) {
        free(t);
        return NULL;
    }
    for (unsigned i = 0; i < n; i++) {
        pthread_spin_init(&t->stripes[i].lock, PTHREAD_PROCESS_PRIVATE);
        t->stripes[i].owners = NULL;
    }
    t->mask = n - 1;
    return t;
}

void busy_destroy(struct busy_table *t)
{
    if (!t)
        return;
    for (unsigned i = 0; i <= t->mask; i++)
        pthread_spin_destroy(&t->stripes[i].lock);
    free(t->stripes);
    free(t);
}

static struct busy_stripe *stripe_of(struct busy_table *t, uint32_t src, uint64_t grain)
{
    uint64_t h = (grain / BUSY_BLOCK) * 0x9E3779B97F4A7C15ull ^ (uint64_t)src * 0xC2B2AE3D27D4EB4Full;
    h ^= h >> 29;
    return &t->stripes[h & t->mask];
}

static struct gop *owner_of_locked(struct busy_stripe *s, uint32_t src, uint64_t grain)
{
    for (struct gop *o = s->owners; o; o = o->slot_next)
        if (o->src_id == src && grain >= o->g0 && grain < o->g0 + o->nheld)
            return o;
    return NULL;
}

static void enqueue_waiter_locked(struct gop *owner, struct gop *g)
{
    g->wait_next = NULL;
    if (owner->waiters_tail)
        owner->waiters_tail->wait_next = g;
    else
        owner->waiters = g;
    owner->waiters_tail = g;
}

static void become_owner_locked(struct busy_stripe *s, struct gop *g)
{
    g->nheld = 1;
    g->waiters = g->waiters_tail = NULL;
    g->slot_next = s->owners;
    s->owners = g;
}

static void resume_msg(struct io_msg *msg)
{
    struct gop *g = msg->priv;
    g->resume(g);
}

bool busy_acquire(struct busy_table *t, struct gop *g)
{
    struct busy_stripe *s = stripe_of(t, g->src_id, g->g0);
    pthread_spin_lock(&s->lock);
    struct gop *o = owner_of_locked(s, g->src_id, g->g0);
    if (o)
        enqueue_waiter_locked(o, g);
    else
        become_owner_locked(s, g);
    pthread_spin_unlock(&s->lock);
    return o != NULL;
}

bool busy_try_acquire(struct busy_table *t, struct gop *g, uint64_t grain)
{
    /* S1: extend only within the hash block of g0, and only contiguously. */
    if (grain != g->g0 + g->nheld || grain / BUSY_BLOCK != g->g0 / BUSY_BLOCK)
        return false;
    struct busy_stripe *s = stripe_of(t, g->src_id, g->g0);
    bool ok;
    pthread_spin_lock(&s->lock);
    ok = owner_of_locked(s, g->src_id, grain) == NULL;
    if (ok)
        g->nheld++;
    pthread_spin_unlock(&s->lock);
    return ok;
}

void busy_release(struct busy_table *t, struct gop *g)
{
    struct busy_stripe *s = stripe_of(t, g->src_id, g->g0);
    struct gop *resumed = NULL, **tail = &resumed;

    pthread_spin_lock(&s->lock);
    for (struct gop **pp = &s->owners; *pp; pp = &(*pp)->slot_next) {
        if (*pp == g) {
            *pp = g->slot_next;
            break;
        }
    }
    /* Re-seat the waiters in arrival order (S3): the first for a grain
     * becomes its owner, later ones queue on whoever owns their grain now. */
    struct gop *w = g->waiters;
    while (w) {
        struct gop *next = w->wait_next;
        struct gop *o = owner_of_locked(s, w->src_id, w->g0);
        if (o) {
            enqueue_waiter_locked(o, w);
        } else {
            become_owner_locked(s, w);
            w->wait_next = NULL;
            w->free_next = NULL;
            *tail = w;
            tail = &w->free_next;   /* temporary link: not on a free list */
        }
        w = next;
    }
    g->waiters = g->waiters_tail = NULL;
    g->nheld = 0;
    pthread_spin_unlock(&s->lock);

    while (resumed) {
        struct gop *next = resumed->free_next;
        resumed->free_next = NULL;
        engine_post(resumed->w, &resumed->msg, resume_msg, resumed);
        resumed = next;
    }
}
