/* SPDX-License-Identifier: MIT */
/*
 * engine/changed.c — reading an incremental mapping's change recording, for
 * front ends (the NBD meta context pitcopy:changed, nbd/handshake.c).
 *
 * Role
 *   A backup tool asks which grains of a volume changed since the last
 *   start of an incremental mapping it belongs to (as source or target).
 *   The answer comes from the mapping's difference bitmap (map.c M5).
 *
 * Invariants
 *   C1  Never guess: while the recording cannot vouch for every change (the
 *       mapping was never started, its last copy was incomplete, a crash
 *       with durability none), or the mapping is gone, every grain reads
 *       as changed — copying too much is safe, too little is not.
 *   C2  A grain reported unchanged had no write completed on the volume
 *       since the start (cow.c I6: its bit is set before the write goes).
 *
 * Context
 *   Worker threads (a read section guards the diffset and the bitmaps,
 *   which a start or delete frees only after a grace period); elsewhere
 *   the calls answer as if no mapping recorded anything.
 */
#include <string.h>

#include "engine/internal.h"

unsigned pc_volume_changed_maps(struct pc_volume *v, char (*names)[64], unsigned max)
{
    struct pc_worker *w = pc_worker_self();
    if (!w)
        return 0;
    int idx = srcu_lock(w);
    const struct diffset *ds = atomic_load_explicit(&v->diffs, memory_order_acquire);
    unsigned n = ds ? ds->n : 0;
    for (unsigned i = 0; i < n && i < max; i++)
        memcpy(names[i], ds->maps[i]->name, sizeof names[i]);
    srcu_unlock(w, idx);
    return n;
}

unsigned pc_volume_changed_extents(struct pc_volume *v, const char *map, uint64_t off,
                                   uint64_t len, struct pc_extent *ext, unsigned max)
{
    struct pc_worker *w = pc_worker_self();
    unsigned n = 0;
    if (max == 0 || len == 0)
        return 0;
    int idx = w ? srcu_lock(w) : 0;
    const struct diffset *ds = w ? atomic_load_explicit(&v->diffs, memory_order_acquire) : NULL;
    struct pc_map *m = NULL;
    for (unsigned i = 0; ds && i < ds->n && !m; i++)
        if (strcmp(ds->maps[i]->name, map) == 0)
            m = ds->maps[i];
    struct bitmap *d = NULL;
    if (m && atomic_load_explicit(&m->diff_valid, memory_order_acquire))
        d = atomic_load_explicit(&m->diff[atomic_load_explicit(&m->dcur, memory_order_acquire)],
                                 memory_order_acquire);
    if (!d) {                                       /* C1 */
        ext[0].len = len;
        ext[0].changed = true;
        n = 1;
    } else {
        uint64_t end = off + len;
        while (off < end && n < max) {
            uint64_t g = off >> m->grain_shift;
            bool changed = bitmap_test(d, g);
            uint64_t h = changed ? bitmap_find_next_unset(d, g) : bitmap_find_next_set(d, g);
            uint64_t e = h << m->grain_shift;
            if (e > end || h >= m->grains)
                e = end;
            ext[n].len = e - off;
            ext[n].changed = changed;
            n++;
            off = e;
        }
    }
    if (w)
        srcu_unlock(w, idx);
    return n;
}
