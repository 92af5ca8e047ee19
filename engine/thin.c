/* SPDX-License-Identifier: MIT */
/*
 * engine/thin.c — thin volumes: holes, zero grains, and what reads as zeros.
 *
 * Role
 *   Background copy, copy-on-write and cleaning (cow.c, bgcopy.c) keep
 *   targets sparse: a grain that reads as zeros — a hole of the source, or
 *   a buffer of zeros — becomes a hole on the target rather than a write
 *   (gop_write_extent).  These are the helpers they use to find holes
 *   (lseek SEEK_DATA/SEEK_HOLE on the backing file) and zeros, and
 *   pc_volume_block_status(), which tells an NBD client (base:allocation)
 *   where a volume reads as zeros from unallocated space.
 *
 * Invariants
 *   H1  A hole is reported only where the file had no data at some instant
 *       while the answer was being made; any error answers "data", which is
 *       always true enough (data may be zeros).
 *   H2  A target's status is taken from the volumes its grains resolve to
 *       (lookup(k, g), cow.c) and accepted only if they resolve the same way
 *       after the lseeks, under the same chain: the same re-check as a
 *       target read (cow.c I5).  A change — a copy, a copy-on-write before a
 *       source TRIM — sets a bit before it issues its write, so an answer
 *       that could have seen the new state sees the new bit and is made
 *       again.
 *
 * Context
 *   Worker threads (lseek on the worker: a metadata lookup, no data I/O).
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"

bool thin_all_zero(const void *p, size_t n)
{
    const uint64_t *w = p;
    if (n < 8)
        return n == 0;
    /* The first word, then the rest against itself shifted by a word:
     * memcmp's vector loop does the scanning. */
    return w[0] == 0 && memcmp(p, (const char *)p + 8, n - 8) == 0;
}

void thin_probe(int fd, uint64_t off, uint64_t limit, bool *hole, uint64_t *end)
{
    off_t d = lseek(fd, (off_t)off, SEEK_DATA);
    *hole = false;
    *end = limit;
    if (d < 0) {
        if (errno == ENXIO)             /* no data from off to the end of the file */
            *hole = true;
        return;                         /* H1: anything else is "data" */
    }
    if ((uint64_t)d > off) {
        *hole = true;
        if ((uint64_t)d < limit)
            *end = (uint64_t)d;
        return;
    }
    off_t h = lseek(fd, (off_t)off, SEEK_HOLE);
    if (h > (off_t)off && (uint64_t)h < limit)
        *end = (uint64_t)h;
}

bool thin_has_data(int fd, uint64_t s, uint64_t e)
{
    bool hole;
    uint64_t end;
    thin_probe(fd, s, e, &hole, &end);
    return !(hole && end >= e);
}

/* Describe [off, end) of fd in ext[n..max), merging alike neighbours; returns
 * the new count and sets *upto to where the description stops (end unless
 * ext filled up). */
static unsigned file_status(int fd, uint64_t off, uint64_t end, struct pc_alloc_extent *ext,
                            unsigned n, unsigned max, uint64_t *upto)
{
    while (off < end) {
        bool hole;
        uint64_t e;
        thin_probe(fd, off, end, &hole, &e);
        uint32_t flags = hole ? PC_ALLOC_HOLE | PC_ALLOC_ZERO : 0;
        if (n && ext[n - 1].flags == flags) {
            ext[n - 1].len += e - off;
        } else if (n < max) {
            ext[n].len = e - off;
            ext[n].flags = flags;
            n++;
        } else {
            break;
        }
        off = e;
    }
    *upto = off;
    return n;
}

#define BS_TRIES 8

int pc_volume_block_status(struct pc_worker *w, struct pc_volume *v, uint64_t off,
                           uint64_t len, struct pc_alloc_extent *ext, unsigned max)
{
    if (!max || !len || off > v->size || len > v->size - off)
        return -EINVAL;
    uint64_t end = off + len, upto;
    int idx = srcu_lock(w);            /* the chain we resolve through stays */
    struct chain *c = NULL;
    int k = -1;
    unsigned n = 0;
    int r = 0;

    switch (cow_route(v, &c, &k)) {
    case ROUTE_OFFLINE:
        r = -EIO;
        break;
    case ROUTE_RESTORED:
        /* Under restore (restore.c): its grains move; "data" is true (H1). */
        ext[0] = (struct pc_alloc_extent){ .len = len, .flags = 0 };
        n = 1;
        break;
    case ROUTE_PLAIN:
    case ROUTE_SOURCE:
        n = file_status(v->fd, off, end, ext, 0, max, &upto);
        break;
    case ROUTE_TARGET: {
        /* Run by run of grains that resolve to one volume (H2). */
        uint64_t g = off >> c->grain_shift, glast = (end - 1) >> c->grain_shift;
        unsigned tries = 0;
        while (g <= glast) {
            struct pc_volume *from = chain_lookup(c, (unsigned)k, g);
            uint64_t h = g + 1;
            while (h <= glast && chain_lookup(c, (unsigned)k, h) == from)
                h++;
            uint64_t s = g << c->grain_shift, e = h << c->grain_shift;
            if (s < off)
                s = off;
            if (e > end)
                e = end;
            struct pc_alloc_extent save = n ? ext[n - 1] : (struct pc_alloc_extent){ 0 };
            unsigned m = file_status(from->fd, s, e, ext, n, max, &upto);
            struct chain *c2 = NULL;
            int k2 = -1;
            bool same = cow_route(v, &c2, &k2) == ROUTE_TARGET && c2 == c && k2 == k;
            for (uint64_t x = g; x < h && same; x++)
                same = chain_lookup(c, (unsigned)k, x) == from;
            if (same) {
                n = m;
                if (upto < e)
                    break;              /* ext is full */
                g = h;
                continue;
            }
            if (n)
                ext[n - 1] = save;      /* forget what the run added */
            if (++tries < BS_TRIES && c2 == c && k2 == k)
                continue;               /* resolve the run again */
            /* Still moving, or the chain changed: "data" is always true (H1). */
            if (n && ext[n - 1].flags == 0)
                ext[n - 1].len += e - s;
            else if (n < max)
                ext[n++] = (struct pc_alloc_extent){ .len = e - s, .flags = 0 };
            else
                break;
            g = h;
        }
        break;
    }
    }
    srcu_unlock(w, idx);
    return r < 0 ? r : (int)n;
}
