/* SPDX-License-Identifier: MIT */
/*
 * mgmt/driver_local.c — the `local` driver: sessions on this daemon's own
 * engine.
 *
 * Role
 *   Each copy set is a mapping H1 -> T1 named after the session and the
 *   copy set (csm-SESSION-ID), all of them in one consistency group
 *   (csm-SESSION) that is prepared and started at once: the point in time
 *   (V1).  A restore uses reverse mappings T1 -> H1 (csm-SESSION-ID-r)
 *   started with restore.  Everything goes through the daemon's control
 *   methods in-process (d->call), so mappings and groups are validated and
 *   saved in pitcopy.json exactly as if the CLI had made them, and show up
 *   in `map list` and `group list`.  The commands recorded (and printed by
 *   a dry run) are those control requests, one JSON line each.
 *
 * Invariants
 *   V1-V3 (driver.h).
 *   L1  A mapping or group of that name that exists is reused only if it
 *       maps the same volumes; otherwise the call fails naming both.
 *
 * Context
 *   The action's thread; blocks while cleaning or stopping.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgmt/driver.h"

#define LOCAL_SETTLE_MS     (10 * 60 * 1000)   /* a stop's cleaning, at most */
#define LOCAL_RESTORE_RATE  100

/* One control request; mutating ones are recorded, and skipped in a dry run. */
static int lcall(struct mgmt_driver *d, bool mutating, const char *method, json_t *params,
                 json_t **res, struct pc_error *err)
{
    json_t *dummy = NULL;
    if (!res)
        res = &dummy;
    *res = NULL;
    if (mutating) {
        char *text = json_dumps(params ? params : json_object(), JSON_COMPACT |
                                JSON_PRESERVE_ORDER | JSON_SORT_KEYS);
        char line[1024];
        snprintf(line, sizeof line, "%s %s", method, text ? text : "{}");
        free(text);
        json_array_append_new(d->commands, json_string(line));
        if (d->dry_run) {
            json_decref(params);
            return 0;
        }
    }
    if (!d->call) {
        json_decref(params);
        return mgmt_fail(err, -ENOTCONN, "the local driver has no way to reach the engine "
                         "(the control server is not running)");
    }
    int r = d->call(d->call_arg, method, params, res, err);
    json_decref(dummy);
    return r;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static json_t *map_show(struct mgmt_driver *d, const char *name, int *r, struct pc_error *err)
{
    json_t *res = NULL;
    *r = lcall(d, false, "map.show", json_pack("{s:s}", "name", name), &res, err);
    return res;
}

static int check_copyset(struct mgmt_driver *d, const char *h1, const char *t1,
                         struct pc_error *err)
{
    json_t *a = NULL, *b = NULL;
    struct pc_error e;
    int r;
    if (strcmp(h1, t1) == 0)
        return mgmt_fail(err, -EINVAL, "H1 and T1 are both volume %s; a copy set needs two "
                         "volumes", h1);
    r = lcall(d, false, "volume.show", json_pack("{s:s}", "name", h1), &a, &e);
    if (r == 0)
        r = lcall(d, false, "volume.show", json_pack("{s:s}", "name", t1), &b, &e);
    if (r < 0) {
        json_decref(a);
        return mgmt_fail(err, r, "%s", e.msg);
    }
    int64_t sa = json_integer_value(json_object_get(a, "size"));
    int64_t sb = json_integer_value(json_object_get(b, "size"));
    if (sa != sb)
        r = mgmt_fail(err, -EINVAL, "volumes %s (%lld bytes) and %s (%lld bytes) differ in "
                      "size; H1 and T1 of a copy set must be the same size", h1,
                      (long long)sa, t1, (long long)sb);
    json_decref(a);
    json_decref(b);
    return r;
}

/* L1: create rel (src -> tgt), in group, unless it exists as that. */
static int ensure_map(struct mgmt_driver *d, const char *rel, const char *src, const char *tgt,
                      int rate, const char *group, bool incremental, struct pc_error *err)
{
    int r;
    json_t *m = map_show(d, rel, &r, err);
    if (r == 0) {
        const char *ms = json_string_value(json_object_get(m, "source"));
        const char *mt = json_string_value(json_object_get(m, "target"));
        const json_t *cur = json_object_get(m, "copy_rate");
        if (!ms || !mt || strcmp(ms, src) || strcmp(mt, tgt))
            r = mgmt_fail(err, -EEXIST, "mapping %s exists but maps %s -> %s, not %s -> %s; "
                          "delete it or remove the copy set", rel, ms ? ms : "?",
                          mt ? mt : "?", src, tgt);
        else if (!(json_is_integer(cur) && json_integer_value(cur) == rate))
            /* The session's rate for this flash (a start or a background copy
             * before may have raised it). */
            r = lcall(d, true, "map.set", json_pack("{s:s, s:i}", "name", rel, "copy_rate",
                                                    rate), NULL, err);
        const char *mg = json_string_value(json_object_get(m, "group"));
        if (r == 0 && group && (!mg || strcmp(mg, group)))
            /* Made before its group was (an older session): it joins now. */
            r = lcall(d, true, "map.set", json_pack("{s:s, s:s}", "name", rel, "group", group),
                      NULL, err);
        json_decref(m);
        return r;
    }
    if (r != -ENOENT)
        return r;
    json_t *p = json_pack("{s:s, s:s, s:s, s:i}", "source", src, "target", tgt, "name", rel,
                          "copy_rate", rate);
    if (group)
        json_object_set_new(p, "group", json_string(group));
    /* A session's mappings record changes: a start after a complete copy
     * copies only what changed since (the incremental refresh). */
    if (incremental)
        json_object_set_new(p, "incremental", json_true());
    return lcall(d, true, "map.create", p, NULL, err);
}

static int ensure_all(struct mgmt_driver *d, const struct mgmt_dsession *s,
                      struct pc_error *err)
{
    json_t *g = NULL;
    int r = lcall(d, false, "group.show", json_pack("{s:s}", "name", s->group), &g, err);
    json_decref(g);
    if (r == -ENOENT)
        r = lcall(d, true, "group.create", json_pack("{s:s}", "name", s->group), NULL, err);
    for (unsigned i = 0; i < s->ncs && r == 0; i++)
        r = ensure_map(d, s->cs[i].rel, s->cs[i].h1, s->cs[i].t1, s->copy_rate, s->group, true,
                       err);
    return r;
}

/* The state of one mapping ("" when missing). */
static void map_state(struct mgmt_driver *d, const char *rel, char *state, size_t len)
{
    struct pc_error e;
    int r;
    json_t *m = map_show(d, rel, &r, &e);
    snprintf(state, len, "%s", r == 0 ? json_string_value(json_object_get(m, "state")) : "");
    json_decref(m);
}

/* Wait until no mapping of the session is stopping (a stop's cleaning). */
static int settle(struct mgmt_driver *d, const struct mgmt_dsession *s, bool reverse,
                  struct pc_error *err)
{
    for (int waited = 0;; waited += 50) {
        bool busy = false;
        char st[32];
        for (unsigned i = 0; i < s->ncs && !busy; i++) {
            map_state(d, reverse ? s->cs[i].rrel : s->cs[i].rel, st, sizeof st);
            busy = strcmp(st, "stopping") == 0 || strcmp(st, "preparing") == 0;
        }
        if (!busy || d->dry_run)
            return 0;
        if (waited >= LOCAL_SETTLE_MS)
            return mgmt_fail(err, -ETIMEDOUT, "session %s: mappings still stopping after "
                             "%d s", s->name, LOCAL_SETTLE_MS / 1000);
        sleep_ms(50);
    }
}

/* The group a session's restore mappings start in (one instant for all). */
static void restore_group(const struct mgmt_dsession *s, char *out, size_t len)
{
    snprintf(out, len, "%.58s-r", s->group);
}

/* Stop whatever is copying or prepared (a new point in time replaces it):
 * members through their group, once each; others one by one. */
static int stop_active(struct mgmt_driver *d, const struct mgmt_dsession *s, bool reverse,
                       struct pc_error *err)
{
    int r = 0;
    char stopped[2][64] = { "", "" };
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        const char *rel = reverse ? s->cs[i].rrel : s->cs[i].rel;
        struct pc_error e;
        json_t *m = map_show(d, rel, &r, &e);
        if (r == -ENOENT) {
            r = 0;
            continue;
        }
        const char *st = json_string_value(json_object_get(m, "state"));
        const char *g = json_string_value(json_object_get(m, "group"));
        /* Prepared is where a flash goes anyway (V2); a restore's too is stopped. */
        if (r < 0 || !st ||
            (strcmp(st, "copying") && !(reverse && strcmp(st, "prepared") == 0))) {
            json_decref(m);
            continue;
        }
        if (!g)
            r = lcall(d, true, "map.stop", json_pack("{s:s}", "name", rel), NULL, err);
        else if (strcmp(g, stopped[0]) && strcmp(g, stopped[1])) {
            r = lcall(d, true, "group.stop", json_pack("{s:s}", "name", g), NULL, err);
            snprintf(stopped[stopped[0][0] ? 1 : 0], sizeof stopped[0], "%s", g);
        }
        json_decref(m);
    }
    return r < 0 ? r : settle(d, s, reverse, err);
}

static int prepare(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    int r = ensure_all(d, s, err);
    if (r == 0)
        r = stop_active(d, s, true, err);           /* a restore in progress */
    if (r == 0)
        r = stop_active(d, s, false, err);
    if (r < 0)
        return r;
    bool all_prepared = !d->dry_run;
    for (unsigned i = 0; i < s->ncs && all_prepared; i++) {
        char st[32];
        map_state(d, s->cs[i].rel, st, sizeof st);
        all_prepared = strcmp(st, "prepared") == 0;
    }
    if (all_prepared)
        return 0;                                   /* V2 */
    return lcall(d, true, "group.prepare", json_pack("{s:s}", "name", s->group), NULL, err);
}

static int flash(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **info,
                 struct pc_error *err)
{
    json_t *res = NULL;
    int r;
    *info = NULL;
    r = lcall(d, true, "group.start", json_pack("{s:s}", "name", s->group), &res, err);   /* V1 */
    if (r == 0 && res)
        *info = json_pack("{s:O?}", "start_hold_ns", json_object_get(res, "start_hold_ns"));
    json_decref(res);
    return r;
}

static int background_copy(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                           struct pc_error *err)
{
    int r = 0;
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        json_t *m = map_show(d, s->cs[i].rel, &r, err);
        if (r == -ENOENT)
            r = mgmt_fail(err, -ENOENT, "session %s: copy set %s -> %s has no mapping (%s); "
                          "flash the session first", s->name, s->cs[i].h1, s->cs[i].t1,
                          s->cs[i].rel);
        json_t *cur = json_object_get(m, "copy_rate");
        if (r == 0 && !(json_is_integer(cur) && json_integer_value(cur) == rate))
            r = lcall(d, true, "map.set", json_pack("{s:s, s:i}", "name", s->cs[i].rel,
                                                    "copy_rate", rate), NULL, err);
        json_decref(m);
    }
    return r;
}

static int start_incremental(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                             json_t **info, struct pc_error *err)
{
    /* The caller prepared (session.c); the rate may change in any state. */
    *info = NULL;
    int r = background_copy(d, s, rate, err);
    if (r == 0)
        r = flash(d, s, info, err);
    return r;
}

static int stop(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    int r = stop_active(d, s, true, err);
    return r < 0 ? r : stop_active(d, s, false, err);
}

static int withdraw(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    int r = stop(d, s, err);
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        const char *rels[2] = { s->cs[i].rrel, s->cs[i].rel };
        for (int k = 0; k < 2 && r == 0; k++) {
            json_t *m = map_show(d, rels[k], &r, err);
            json_decref(m);
            if (r == -ENOENT) {
                r = 0;
                continue;
            }
            if (r == 0)
                r = lcall(d, true, "map.delete", json_pack("{s:s, s:b}", "name", rels[k],
                                                           "force", 1), NULL, err);
        }
    }
    char rg[64];
    restore_group(s, rg, sizeof rg);
    const char *groups[2] = { s->group, rg };
    for (int k = 0; k < 2 && r == 0; k++) {
        json_t *g = NULL;
        r = lcall(d, false, "group.show", json_pack("{s:s}", "name", groups[k]), &g, err);
        json_decref(g);
        if (r == 0)
            r = lcall(d, true, "group.delete", json_pack("{s:s, s:b}", "name", groups[k],
                                                         "force", 1), NULL, err);
        else if (r == -ENOENT)
            r = 0;
    }
    return r;
}

static int restore(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    char rg[64];
    json_t *g = NULL;
    int r = 0;
    restore_group(s, rg, sizeof rg);
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        json_t *m = map_show(d, s->cs[i].rel, &r, err);
        json_decref(m);
        if (r == -ENOENT)
            r = mgmt_fail(err, -ENOENT, "session %s: copy set %s -> %s was never flashed; "
                          "there is nothing to restore from", s->name, s->cs[i].h1,
                          s->cs[i].t1);
    }
    if (r == 0)
        r = stop_active(d, s, true, err);
    if (r == 0) {
        r = lcall(d, false, "group.show", json_pack("{s:s}", "name", rg), &g, err);
        json_decref(g);
        if (r == -ENOENT)
            r = lcall(d, true, "group.create", json_pack("{s:s}", "name", rg), NULL, err);
    }
    for (unsigned i = 0; i < s->ncs && r == 0; i++)
        r = ensure_map(d, s->cs[i].rrel, s->cs[i].t1, s->cs[i].h1, LOCAL_RESTORE_RATE, rg,
                       false, err);
    /* V1: every H1 becomes its T1 at one instant. */
    if (r == 0)
        r = lcall(d, true, "group.start", json_pack("{s:s, s:b}", "name", rg, "restore", 1),
                  NULL, err);
    return r;
}

static int query(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **out,
                 struct pc_error *err)
{
    json_t *a = json_array(), *g = NULL;
    struct pc_error e;
    int r;
    (void)err;
    for (unsigned i = 0; i < s->ncs; i++) {
        json_t *m = map_show(d, s->cs[i].rel, &r, &e);
        json_t *rm = map_show(d, s->cs[i].rrel, &r, &e);
        json_t *c = json_pack("{s:I, s:s, s:s, s:s, s:b}", "id", (json_int_t)s->cs[i].id,
                              "h1", s->cs[i].h1, "t1", s->cs[i].t1, "relationship",
                              s->cs[i].rel, "exists", m != NULL);
        json_object_set(c, "state", m ? json_object_get(m, "state") : json_null());
        json_object_set(c, "progress", m ? json_object_get(m, "progress") : json_null());
        json_object_set(c, "copy_rate", m ? json_object_get(m, "copy_rate") : json_null());
        json_object_set(c, "started_at", m ? json_object_get(m, "started_at") : json_null());
        json_object_set(c, "complete", m ? json_object_get(m, "complete") : json_null());
        json_object_set(c, "restore_state", rm ? json_object_get(rm, "state") : json_null());
        json_object_set(c, "restore_progress", rm ? json_object_get(rm, "progress")
                                                  : json_null());
        json_array_append_new(a, c);
        json_decref(m);
        json_decref(rm);
    }
    if (lcall(d, false, "group.show", json_pack("{s:s}", "name", s->group), &g, &e) < 0)
        g = NULL;
    *out = json_pack("{s:o, s:o}", "group", g ? json_pack("{s:s, s:O?}", "name", s->group,
                                                          "state", json_object_get(g, "state"))
                                              : json_null(),
                     "copysets", a);
    json_decref(g);
    return 0;
}

/* This daemon needs no connection. */
static int configure(const char *system, const json_t *p, json_t **options,
                     struct pc_error *err)
{
    static const char *const known[] = { "name", "type" };
    char flag[64];
    if (mgmt_unknown_option(p, known, sizeof known / sizeof known[0], flag, sizeof flag))
        return mgmt_fail(err, -EINVAL, "system %s: type local is this daemon and takes "
                         "no connection options (%s)", system, flag);
    *options = json_object();
    return 0;
}

static void describe(const json_t *options, char *buf, size_t len)
{
    (void)options;
    snprintf(buf, len, "this daemon's engine");
}

const struct mgmt_driver_ops driver_local_ops = {
    .type = "local",
    .configure = configure,
    .describe = describe,
    .check_copyset = check_copyset,
    .prepare = prepare,
    .flash = flash,
    .start_incremental = start_incremental,
    .background_copy = background_copy,
    .stop = stop,
    .withdraw = withdraw,
    .restore = restore,
    .query = query,
};
