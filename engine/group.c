/* SPDX-License-Identifier: MIT */
/*
 * engine/group.c — consistency groups: many mappings, one point in time.
 *
 * Role
 *   A group is a name and a set of mappings (each mapping points at its
 *   group; there is no member list to keep in step).  Prepare, start and
 *   stop act on every member; the start is map_start_many_locked: one write
 *   hold over every source and target of the group, so no write can land on
 *   one source between two members' points in time — the database's log and
 *   table volumes are copied as of the same instant.
 *
 * Invariants
 *   G1  m->group == g for exactly g->nmaps mappings of g's engine.
 *   G2  Members change group only while idle_or_copied or stopped (not in a
 *       start, copy or clean), so a group start never meets a member that
 *       is half way through one of its own.
 *   G3  The hold's length depends on the number of distinct volumes (it
 *       sets and drains each), never on their size: bitmaps, chains and
 *       metadata generations are all made before it.
 *
 * Context
 *   Control calls, under ctl_lock, like map.c.  A group is freed at delete:
 *   callers look groups up by name and keep no pointer across calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/internal.h"

static struct pc_group *find_locked(struct pc_engine *e, const char *name)
{
    for (struct pc_group *g = e->groups; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return g;
    return NULL;
}

struct pc_group *pc_group_find(struct pc_engine *e, const char *name)
{
    pthread_mutex_lock(&e->ctl_lock);
    struct pc_group *g = find_locked(e, name);
    pthread_mutex_unlock(&e->ctl_lock);
    return g;
}

int pc_group_create(struct pc_engine *e, const char *name, struct pc_group **out,
                    struct pc_error *err)
{
    if (!name || !engine_name_ok(name)) {
        pc_error_set(err, -EINVAL, "group name '%s' is not " ENGINE_NAME_RULE, name ? name : "");
        return -EINVAL;
    }
    pthread_mutex_lock(&e->ctl_lock);
    int r = 0;
    if (find_locked(e, name)) {
        r = -EEXIST;
        pc_error_set(err, r, "consistency group %s already exists", name);
        goto out;
    }
    struct pc_group *g = calloc(1, sizeof *g);
    if (!g) {
        r = -ENOMEM;
        pc_error_set(err, r, "out of memory creating consistency group %s", name);
        goto out;
    }
    g->e = e;
    snprintf(g->name, sizeof g->name, "%s", name);
    g->next = e->groups;
    e->groups = g;
    if (out)
        *out = g;
out:
    pthread_mutex_unlock(&e->ctl_lock);
    return r;
}

int pc_group_delete(struct pc_group *g, bool force, struct pc_error *err)
{
    struct pc_engine *e = g->e;
    pthread_mutex_lock(&e->ctl_lock);
    if (g->nmaps && !force) {
        pthread_mutex_unlock(&e->ctl_lock);
        pc_error_set(err, -EBUSY, "consistency group %s has %u mapping%s; remove them first, "
                     "or force the delete (they stay, stand-alone)", g->name, g->nmaps,
                     g->nmaps == 1 ? "" : "s");
        return -EBUSY;
    }
    for (struct pc_map *m = e->maps; m; m = m->next)
        if (m->group == g)
            m->group = NULL;
    for (struct pc_group **pp = &e->groups; *pp; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            break;
        }
    }
    pthread_mutex_unlock(&e->ctl_lock);
    free(g);
    return 0;
}

void group_teardown_all(struct pc_engine *e)
{
    while (e->groups) {
        struct pc_group *g = e->groups;
        e->groups = g->next;
        free(g);
    }
}

int pc_map_set_group(struct pc_map *m, struct pc_group *g, struct pc_error *err)
{
    struct pc_engine *e = m->e;
    int r = 0;
    pthread_mutex_lock(&e->ctl_lock);
    if (m->group == g)
        goto out;
    int s = map_state(m);
    if ((s != PC_MAP_IDLE_OR_COPIED && s != PC_MAP_STOPPED) || atomic_load(&m->in_chain)) {
        r = -EBUSY;                                                     /* G2 */
        pc_error_set(err, r, "mapping %s is %s%s; it can change consistency group only when "
                     "idle_or_copied or stopped", m->name, pc_map_state_name(s),
                     s == PC_MAP_IDLE_OR_COPIED ? " (older mappings still read its target)" : "");
        goto out;
    }
    if (g && g->nmaps >= PC_GROUP_MAX_MAPS) {
        r = -ENOSPC;
        pc_error_set(err, r, "consistency group %s already has %u mappings, the most allowed",
                     g->name, PC_GROUP_MAX_MAPS);
        goto out;
    }
    if (m->group)
        m->group->nmaps--;
    m->group = g;
    if (g) {
        g->nmaps++;
        m->group_seq = ++g->next_seq;
    }
out:
    pthread_mutex_unlock(&e->ctl_lock);
    return r;
}

/* Members in the order they joined; under ctl_lock.  Returns the count. */
static unsigned members_locked(struct pc_group *g, struct pc_map **out, unsigned max)
{
    unsigned n = 0;
    for (struct pc_map *m = g->e->maps; m; m = m->next) {
        if (m->group != g)
            continue;
        if (n < max) {
            unsigned i = n;
            while (i > 0 && out[i - 1]->group_seq > m->group_seq) {
                out[i] = out[i - 1];
                i--;
            }
            out[i] = m;
        }
        n++;
    }
    return n;
}

unsigned pc_group_members(struct pc_group *g, struct pc_map **out, unsigned max)
{
    pthread_mutex_lock(&g->e->ctl_lock);
    unsigned n = members_locked(g, out, max);
    pthread_mutex_unlock(&g->e->ctl_lock);
    return n;
}

/* The members, allocated; NULL with *n = 0 and an error set when empty. */
static struct pc_map **members_alloc_locked(struct pc_group *g, unsigned *n, const char *what,
                                            struct pc_error *err)
{
    *n = 0;
    if (g->nmaps == 0) {
        pc_error_set(err, -EINVAL, "consistency group %s is empty; nothing to %s", g->name, what);
        return NULL;
    }
    struct pc_map **ms = calloc(g->nmaps, sizeof *ms);
    if (!ms) {
        pc_error_set(err, -ENOMEM, "out of memory listing consistency group %s", g->name);
        return NULL;
    }
    *n = members_locked(g, ms, g->nmaps);
    return ms;
}

int pc_group_prepare(struct pc_group *g, struct pc_error *err)
{
    struct pc_engine *e = g->e;
    unsigned n;
    int r = 0;
    pthread_mutex_lock(&e->ctl_lock);
    struct pc_map **ms = members_alloc_locked(g, &n, "prepare", err);
    if (!ms)
        r = err ? err->code : -EINVAL;
    for (unsigned i = 0; i < n && r == 0; i++)
        r = map_prepare_locked(ms[i], err);
    pthread_mutex_unlock(&e->ctl_lock);
    free(ms);
    return r;
}

/* One point in time for every member: start (as mappings or as restores)
 * and record the group's hold. */
static int group_start_with(struct pc_group *g, const char *what,
                            int (*start_many)(struct pc_map **, unsigned, uint64_t *,
                                              struct pc_error *),
                            struct pc_error *err)
{
    struct pc_engine *e = g->e;
    unsigned n;
    int r;
    pthread_mutex_lock(&e->ctl_lock);
    struct pc_map **ms = members_alloc_locked(g, &n, what, err);
    if (!ms) {
        r = err ? err->code : -EINVAL;
    } else {
        uint64_t held = 0;
        r = start_many(ms, n, &held, err);
        if (r == 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            g->start_hold_ns = held;
            g->start_realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        }
    }
    pthread_mutex_unlock(&e->ctl_lock);
    free(ms);
    return r;
}

int pc_group_start(struct pc_group *g, struct pc_error *err)
{
    return group_start_with(g, "start", map_start_many_locked, err);
}

int pc_group_start_restore(struct pc_group *g, struct pc_error *err)
{
    return group_start_with(g, "restore", map_start_restore_many_locked, err);
}

int pc_group_stop(struct pc_group *g, bool split, struct pc_error *err)
{
    struct pc_engine *e = g->e;
    unsigned n;
    int r = 0;
    pthread_mutex_lock(&e->ctl_lock);
    struct pc_map **ms = members_alloc_locked(g, &n, "stop", err);
    if (!ms)
        r = err ? err->code : -EINVAL;
    /* A split needs every member whole: check them all before stopping any. */
    for (unsigned i = 0; i < n && r == 0 && split; i++) {
        struct pc_map *m = ms[i];
        int s = map_state(m);
        bool whole = atomic_load(&m->complete) ||
                     ((s == PC_MAP_COPYING || s == PC_MAP_STOPPING) &&
                      bitmap_find_next_unset(m->bits, 0) >= m->grains);
        if (!whole && !(s == PC_MAP_IDLE_OR_COPIED && !atomic_load(&m->in_chain))) {
            r = -EINVAL;
            pc_error_set(err, r, "consistency group %s: mapping %s is %s short of progress 100; "
                         "a stop with split needs every target whole", g->name, m->name,
                         pc_map_state_name(s));
        }
    }
    for (unsigned i = 0; i < n && r == 0; i++) {
        int s = map_state(ms[i]);
        /* Members already idle or stopped are where a stop takes them. */
        if (!split && (s == PC_MAP_IDLE_OR_COPIED || s == PC_MAP_STOPPED || s == PC_MAP_STOPPING))
            continue;
        if (s == PC_MAP_STOPPED || s == PC_MAP_PREPARING)
            continue;
        r = map_stop_locked(ms[i], split, err);
    }
    pthread_mutex_unlock(&e->ctl_lock);
    free(ms);
    return r;
}

static int state_rank(int s)
{
    static const int rank[] = {
        [PC_MAP_SUSPENDED] = 0, [PC_MAP_PREPARING] = 1, [PC_MAP_STOPPING] = 2,
        [PC_MAP_COPYING] = 3, [PC_MAP_STOPPED] = 4, [PC_MAP_PREPARED] = 5,
        [PC_MAP_IDLE_OR_COPIED] = 6,
    };
    return rank[s];
}

int pc_group_info(struct pc_group *g, struct pc_group_info *info)
{
    pthread_mutex_lock(&g->e->ctl_lock);
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", g->name);
    info->mappings = g->nmaps;
    info->empty = g->nmaps == 0;
    info->state = PC_MAP_IDLE_OR_COPIED;
    int best = -1;
    for (struct pc_map *m = g->e->maps; m; m = m->next) {
        if (m->group != g)
            continue;
        int s = map_state(m);
        if (best < 0 || state_rank(s) < state_rank(best))
            best = s;
    }
    if (best >= 0)
        info->state = (enum pc_map_state)best;
    info->start_hold_ns = g->start_hold_ns;
    info->start_ns = g->start_realtime_ns;
    pthread_mutex_unlock(&g->e->ctl_lock);
    return 0;
}
