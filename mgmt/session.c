/* SPDX-License-Identifier: MIT */
/*
 * mgmt/session.c — FlashCopy sessions, their copy sets, and the actions
 * that drive them through the session's system's driver.
 *
 * Role
 *   session.create/list/show/delete/set, session.add_copyset and
 *   remove_copyset keep the catalog; session.flash, start,
 *   background_copy, terminate and restore run session_action(), which
 *   takes the session busy (M1), runs the hooks around a flash (M2), calls
 *   the driver, moves the state machine (mgmt.h) and writes the history
 *   (M3).
 *
 *   A flash, step by step (each a history row under the action's):
 *     1. pre-flash hook (quiesce); failed or timed out: stop here, nothing
 *        flashed, no post-flash hook.                   freeze begins
 *     2. Preparing: driver prepare (targets offline)
 *     3. Prepared -> driver flash: the point in time -> Target Available
 *     4. post-flash hook (thaw), whatever 2-3 did.      freeze ends
 *   The freeze is reported as the time from the end of 1 to the start of
 *   4: how long the database stayed quiesced.
 *
 * Invariants
 *   M1-M3 (mgmt.h).
 *   E1  The stored state changes only in step with the driver: Preparing
 *       before prepare, Target Available only after the flash returned,
 *       Suspended (Severe, with the reason) when the driver failed after
 *       Preparing.  A failure before Preparing (a hook, validation) leaves
 *       the state as it was.
 *
 * Context
 *   Any control thread, or the scheduler's.  No mgmt.lock across hooks or
 *   driver calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/driver.h"

#define SESSION_DEFAULT_BG_RATE 100

struct sess {
    json_t                   *row;     /* the sessions row */
    const char               *name;
    char                      system_type[32];
    json_t                   *options;  /* the system's connection */
    json_t                   *zos;      /* its z/OS connection's, or NULL */
    struct mgmt_dsession      ds;
    const struct mgmt_driver_ops *ops;
};

static void sess_free(struct sess *s)
{
    json_decref(s->row);
    json_decref(s->options);
    json_decref(s->zos);
    free(s->ds.cs);
    memset(s, 0, sizeof *s);
}

static const char *sstr(const struct sess *s, const char *key)
{
    return json_string_value(json_object_get(s->row, key));
}

/* Load a session and its copy sets, under mgmt.lock. */
static int sess_load_locked(struct mgmt *m, const char *name, struct sess *s,
                            struct pc_error *err)
{
    json_t *sys = NULL, *rows = NULL, *row;
    size_t i;
    memset(s, 0, sizeof *s);
    int r = catalog_row(m, err, &s->row, "SELECT * FROM sessions WHERE name = ?", "s", name);
    if (r == -ENOENT)
        return mgmt_fail(err, -ENOENT, "no session named %s", name);
    if (r < 0)
        return r;
    s->name = sstr(s, "name");
    r = catalog_row(m, err, &sys, "SELECT type, options FROM systems WHERE name = ?", "s",
                    sstr(s, "system"));
    if (r == 0) {
        snprintf(s->system_type, sizeof s->system_type, "%s",
                 json_string_value(json_object_get(sys, "type")));
        s->ops = driver_find(s->system_type);
        s->options = json_loads(json_string_value(json_object_get(sys, "options")), 0, NULL);
        if (!s->options)
            s->options = json_object();
    }
    json_decref(sys);
    const char *zos = sstr(s, "zos");
    if (r == 0 && zos && *zos) {
        json_t *z = NULL;
        if (catalog_row(m, NULL, &z, "SELECT options FROM systems WHERE name = ? AND "
                        "type = 'zos'", "s", zos) == 0)
            s->zos = json_loads(json_string_value(json_object_get(z, "options")), 0, NULL);
        json_decref(z);
        if (!s->zos)
            r = mgmt_fail(err, -ENOENT, "session %s: its z/OS connection %s does not exist "
                          "(pitcopy session set %s --zos '')", s->name, zos, s->name);
    }
    if (r == 0)
        r = catalog_rows(m, err, &rows, "SELECT * FROM copysets WHERE session = ? ORDER BY id",
                         "s", name);
    if (r < 0) {
        sess_free(s);
        return r;
    }
    s->ds.name = s->name;
    snprintf(s->ds.group, sizeof s->ds.group, "csm-%s", s->name);
    s->ds.copy_rate = (int)json_integer_value(json_object_get(s->row, "copy_rate"));
    s->ds.cs = calloc(json_array_size(rows) + 1, sizeof *s->ds.cs);
    json_array_foreach(rows, i, row) {
        struct mgmt_copyset *c = &s->ds.cs[s->ds.ncs++];
        c->id = json_integer_value(json_object_get(row, "id"));
        snprintf(c->h1, sizeof c->h1, "%s", json_string_value(json_object_get(row, "h1")));
        snprintf(c->t1, sizeof c->t1, "%s", json_string_value(json_object_get(row, "t1")));
        snprintf(c->rel, sizeof c->rel, "csm-%s-%lld", s->name, (long long)c->id);
        snprintf(c->rrel, sizeof c->rrel, "csm-%s-%lld-r", s->name, (long long)c->id);
    }
    json_decref(rows);
    return 0;
}

static void driver_init(struct mgmt *m, struct mgmt_driver *d, const struct sess *s,
                        bool dry_run)
{
    memset(d, 0, sizeof *d);
    d->ops = s->ops;
    d->dry_run = dry_run;
    d->system = sstr(s, "system");
    d->options = s->options;
    d->state_dir = m->dir;
    d->zos = s->zos;
    d->zos_name = s->zos ? sstr(s, "zos") : NULL;
    d->zos_fallback = s->zos && sstr(s, "zos_fallback") &&
                      strcmp(sstr(s, "zos_fallback"), "direct") == 0;
    d->commands = json_array();
    pthread_mutex_lock(&m->lock);
    d->call = m->call;
    d->call_arg = m->call_arg;
    pthread_mutex_unlock(&m->lock);
}

static void set_state(struct mgmt *m, const char *name, const char *state, const char *status,
                      const char *message)
{
    struct pc_error err;
    pthread_mutex_lock(&m->lock);
    if (catalog_exec(m, &err, "UPDATE sessions SET state = ?, status = ?, message = ? "
                     "WHERE name = ?", "ssss", state, status, message ? message : "",
                     name) < 0)
        mgmt_log("session %s: cannot record state %s: %s", name, state, err.msg);
    pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------------------
 * Showing a session: the stored state, checked against the system. */

static json_t *session_json(struct mgmt *m, struct sess *s, bool live)
{
    const json_t *row = s->row;
    const char *state = sstr(s, "state"), *status = sstr(s, "status");
    const char *message = sstr(s, "message");
    char why[256] = "", qerr[sizeof ((struct pc_error *)0)->msg] = "";
    json_t *q = NULL;

    if (live && s->ops && s->ds.ncs) {
        struct mgmt_driver d;
        struct pc_error e;
        driver_init(m, &d, s, false);
        if (s->ops->query(&d, &s->ds, &q, &e) < 0) {
            q = NULL;
            snprintf(qerr, sizeof qerr, "%s", e.msg);
        }
        driver_close(&d);
        json_decref(d.commands);
    }
    json_t *cs = q ? json_incref(json_object_get(q, "copysets")) : json_array();
    if (!q) {
        for (unsigned i = 0; i < s->ds.ncs; i++)
            json_array_append_new(cs, json_pack("{s:I, s:s, s:s, s:s}", "id",
                                                (json_int_t)s->ds.cs[i].id, "h1",
                                                s->ds.cs[i].h1, "t1", s->ds.cs[i].t1,
                                                "relationship", s->ds.cs[i].rel));
    }
    /* What the engine says overrides what was last recorded. */
    if (q && (strcmp(state, "Target Available") == 0 || strcmp(state, "Recovering") == 0 ||
              strcmp(state, "Prepared") == 0)) {
        size_t i;
        json_t *c;
        bool restoring = false, restored = true;
        json_array_foreach(cs, i, c) {
            const char *ms = json_string_value(json_object_get(c, "state"));
            const char *rs = json_string_value(json_object_get(c, "restore_state"));
            if (!ms && !why[0])
                snprintf(why, sizeof why, "copy set %s -> %s: its mapping %s is missing",
                         json_string_value(json_object_get(c, "h1")),
                         json_string_value(json_object_get(c, "t1")),
                         json_string_value(json_object_get(c, "relationship")));
            else if (ms && (strcmp(ms, "suspended") == 0 || strcmp(ms, "stopped") == 0) &&
                     !why[0])
                snprintf(why, sizeof why, "copy set %s -> %s: mapping %s is %s",
                         json_string_value(json_object_get(c, "h1")),
                         json_string_value(json_object_get(c, "t1")),
                         json_string_value(json_object_get(c, "relationship")), ms);
            if (rs && strcmp(rs, "copying") == 0)
                restoring = true;
            if (!rs || strcmp(rs, "idle_or_copied") != 0)
                restored = false;
        }
        if (why[0]) {
            state = "Suspended";
            status = "Severe";
            message = why;
        } else if (strcmp(state, "Recovering") == 0 && !restoring && restored) {
            state = "Target Available";
            status = "Normal";
            message = "restore complete: H1 volumes hold the targets' image";
        }
    }
    json_t *j = json_pack("{s:O, s:O, s:s, s:O, s:s, s:s, s:s}",
                          "name", json_object_get(row, "name"),
                          "system", json_object_get(row, "system"),
                          "system_type", s->system_type,
                          "description", json_object_get(row, "description"),
                          "state", state, "status", status, "message", message ? message : "");
    json_object_set(j, "pre_flash", json_object_get(row, "pre_flash"));
    json_object_set(j, "post_flash", json_object_get(row, "post_flash"));
    json_object_set(j, "hook_timeout", json_object_get(row, "hook_timeout"));
    json_object_set(j, "copy_rate", json_object_get(row, "copy_rate"));
    json_object_set_new(j, "group", json_string(s->ds.group));
    json_object_set(j, "zos", json_object_get(row, "zos"));
    json_object_set(j, "zos_fallback", json_object_get(row, "zos_fallback"));
    json_object_set(j, "last_action", json_object_get(row, "last_action"));
    json_object_set_new(j, "last_action_at", mgmt_time_json(json_integer_value(
                                                 json_object_get(row, "last_action_at"))));
    json_object_set(j, "last_freeze_ms", json_object_get(row, "last_freeze_ms"));
    json_object_set(j, "last_hold_ns", json_object_get(row, "last_hold_ns"));
    json_object_set_new(j, "copysets", cs);
    /* The live query's failure (a z/OS-routed one without fallback, say). */
    json_object_set_new(j, "query_error", qerr[0] ? json_string(qerr) : json_null());
    pthread_mutex_lock(&m->lock);
    struct mgmt_busy *b = m->busy;
    while (b && strcmp(b->session, s->name))
        b = b->next;
    json_object_set_new(j, "busy", b ? json_string(b->action) : json_null());
    pthread_mutex_unlock(&m->lock);
    json_decref(q);
    return j;
}

/* ------------------------------------------------------------------------
 * Actions. */

static const char *const actions[] = { "flash", "start", "background_copy", "terminate",
                                       "restore" };

bool session_action_known(const char *action)
{
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(actions[i], action) == 0)
            return true;
    return false;
}

/* M1 */
static int busy_take(struct mgmt *m, const char *name, const char *action, struct pc_error *err)
{
    int r = 0;
    pthread_mutex_lock(&m->lock);
    for (struct mgmt_busy *b = m->busy; b; b = b->next)
        if (strcmp(b->session, name) == 0)
            r = mgmt_fail(err, -EBUSY, "session %s is busy: a %s is in progress; try again "
                          "when it has finished", name, b->action);
    if (r == 0) {
        struct mgmt_busy *b = calloc(1, sizeof *b);
        if (!b) {
            r = mgmt_fail(err, -ENOMEM, "out of memory");
        } else {
            snprintf(b->session, sizeof b->session, "%s", name);
            snprintf(b->action, sizeof b->action, "%s", action);
            b->next = m->busy;
            m->busy = b;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

static void busy_drop(struct mgmt *m, const char *name)
{
    pthread_mutex_lock(&m->lock);
    for (struct mgmt_busy **pp = &m->busy; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->session, name) == 0) {
            struct mgmt_busy *b = *pp;
            *pp = b->next;
            free(b);
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

/* Run one hook with its history row; fills *j with what happened. */
static int run_hook(struct mgmt *m, struct sess *s, const char *which, const char *cmd,
                    const char *action, const char *origin, int64_t parent, bool flash_ok,
                    struct hook_result *hr, json_t **j, struct pc_error *err)
{
    char e_sess[128], e_act[64], e_hook[64], e_ok[64], e_dir[4200];
    snprintf(e_sess, sizeof e_sess, "PITCOPY_SESSION=%s", s->name);
    snprintf(e_act, sizeof e_act, "PITCOPY_ACTION=%s", action);
    snprintf(e_hook, sizeof e_hook, "PITCOPY_HOOK=%s", which);
    snprintf(e_ok, sizeof e_ok, "PITCOPY_FLASH_OK=%s", flash_ok ? "yes" : "no");
    snprintf(e_dir, sizeof e_dir, "PITCOPY_STATE_DIR=%s", m->dir);
    const char *env[] = { e_sess, e_act, e_hook, e_dir, strcmp(which, "post-flash") == 0
                          ? e_ok : NULL, NULL };
    int timeout = (int)json_integer_value(json_object_get(s->row, "hook_timeout"));
    int64_t hid = history_begin(m, s->name, which, "hook", origin, parent);
    struct pc_error e = { 0 };
    int r = hook_run(cmd, env, timeout, hr, &e);
    double secs = (double)(hr->end_mono_ns - hr->start_mono_ns) / 1e9;
    if (r == 0) {
        history_end(m, hid, "ok", "%s%s%s (%.3f s)", cmd, hr->output[0] ? "; output: " : "",
                    hr->output, secs);
    } else {
        history_end(m, hid, hr->timed_out ? "timeout" : "failed", "%s: %s (%.3f s)", cmd,
                    e.msg, secs);
        mgmt_fail(err, r, "session %s: %s hook '%s' %s", s->name, which, cmd, e.msg);
        mgmt_log("%s", err->msg);
    }
    *j = json_pack("{s:s, s:s, s:s, s:i, s:f, s:s}", "command", cmd,
                   "outcome", r == 0 ? "ok" : hr->timed_out ? "timeout" : "failed",
                   "message", r == 0 ? "" : e.msg, "exit_status", hr->rc,
                   "duration_s", secs, "output", hr->output);
    return r;
}

static const char *opt_text(const struct sess *s, const char *key)
{
    const char *v = sstr(s, key);
    return v && *v ? v : NULL;
}

int session_action(struct mgmt *m, const char *name, const char *action, const char *origin,
                   bool dry_run, int copy_rate, json_t **out, struct pc_error *err)
{
    struct sess s;
    struct mgmt_driver d;
    json_t *res, *info = NULL, *hooks = json_object();
    struct pc_error e = { 0 };
    int r;

    *out = NULL;
    pthread_mutex_lock(&m->lock);
    r = sess_load_locked(m, name, &s, err);
    pthread_mutex_unlock(&m->lock);
    if (r < 0) {
        json_decref(hooks);
        return r;
    }
    if (!s.ops) {
        r = mgmt_fail(err, -ENOSYS, "session %s: its system %s has type '%s', which this "
                      "pitcopy cannot drive", name, sstr(&s, "system"), s.system_type);
        goto out_free;
    }
    if (s.ds.ncs == 0) {
        r = mgmt_fail(err, -EINVAL, "session %s has no copy sets; add one with `pitcopy "
                      "session add-copyset %s --h1 VOLUME --t1 VOLUME`", name, name);
        goto out_free;
    }
    if ((r = busy_take(m, name, action, err)) < 0)
        goto out_free;
    driver_init(m, &d, &s, dry_run);
    int64_t hid = dry_run ? 0 : history_begin(m, name, action, "action", origin, 0);
    const char *was_state = sstr(&s, "state");
    const char *new_state = NULL, *new_status = NULL;
    char msg[1024] = "";
    double freeze_ms = -1;
    int64_t hold = -1;

    if (strcmp(action, "flash") == 0 || strcmp(action, "start") == 0) {
        const char *pre = opt_text(&s, "pre_flash"), *post = opt_text(&s, "post_flash");
        struct hook_result pre_r = { 0 }, post_r = { 0 };
        json_t *hj;
        bool pre_ok = true, flashed = false;
        int rate = copy_rate >= 0 ? copy_rate : s.ds.copy_rate > 0 ? s.ds.copy_rate
                                                                   : SESSION_DEFAULT_BG_RATE;
        if (pre && dry_run) {
            json_array_append_new(d.commands, json_sprintf("pre-flash hook: /bin/sh -c '%s'",
                                                           pre));
        } else if (pre) {
            pre_ok = run_hook(m, &s, "pre-flash", pre, action, origin, hid, false, &pre_r,
                              &hj, &e) == 0;
            json_object_set_new(hooks, "pre_flash", hj);
        }
        if (!pre_ok) {                                   /* M2: nothing to thaw */
            r = e.code;
            snprintf(msg, sizeof msg, "%s; nothing was flashed (the post-flash hook was not "
                     "run)", e.msg);
        } else {
            if (!dry_run)
                set_state(m, name, "Preparing", "Warning", "");
            r = s.ops->prepare(&d, &s.ds, &e);
            if (r == 0 && !dry_run)
                set_state(m, name, "Prepared", "Normal", "");
            if (r == 0)
                r = action[0] == 'f' ? s.ops->flash(&d, &s.ds, &info, &e)
                                     : s.ops->start_incremental(&d, &s.ds, rate, &info, &e);
            flashed = r == 0;
            if (r == 0) {
                new_state = "Target Available";
                new_status = "Normal";
                /* An array that does not say how long it held writes: none recorded. */
                const json_t *h = info ? json_object_get(info, "start_hold_ns") : NULL;
                hold = json_is_integer(h) ? json_integer_value(h) : -1;
            } else {
                new_state = "Suspended";
                new_status = "Severe";
                snprintf(msg, sizeof msg, "%s failed: %s", action, e.msg);
            }
            if (post && dry_run) {
                json_array_append_new(d.commands,
                                      json_sprintf("post-flash hook: /bin/sh -c '%s'", post));
            } else if (post) {                           /* M2: always, once pre is done */
                struct pc_error pe = { 0 };
                int pr = run_hook(m, &s, "post-flash", post, action, origin, hid, flashed,
                                  &post_r, &hj, &pe);
                json_object_set_new(hooks, "post_flash", hj);
                if (pr < 0) {
                    size_t n = strlen(msg);
                    snprintf(msg + n, sizeof msg - n, "%s%s", n ? "; and " : "", pe.msg);
                    if (r == 0) {
                        r = pr;
                        new_status = "Warning";
                    }
                }
            }
            if (pre && !dry_run)
                freeze_ms = (double)((post ? post_r.start_mono_ns : mono_ns()) -
                                     pre_r.end_mono_ns) / 1e6;
        }
    } else if (strcmp(action, "background_copy") == 0) {
        int rate = copy_rate >= 0 ? copy_rate : s.ds.copy_rate > 0 ? s.ds.copy_rate
                                                                   : SESSION_DEFAULT_BG_RATE;
        r = s.ops->background_copy(&d, &s.ds, rate, &e);
        if (r < 0)
            snprintf(msg, sizeof msg, "initiate background copy failed: %s", e.msg);
    } else if (strcmp(action, "terminate") == 0) {
        r = s.ops->withdraw(&d, &s.ds, &e);
        new_state = r == 0 ? "Defined" : "Suspended";
        new_status = r == 0 ? "Inactive" : "Severe";
        if (r < 0)
            snprintf(msg, sizeof msg, "terminate failed: %s", e.msg);
    } else if (strcmp(action, "restore") == 0) {
        if (strcmp(was_state, "Defined") == 0) {
            r = mgmt_fail(&e, -EINVAL, "session %s is Defined: it was never flashed, so its "
                          "targets hold nothing to restore", name);
            snprintf(msg, sizeof msg, "%s", e.msg);
        } else {
            r = s.ops->restore(&d, &s.ds, &e);
            /* A refused restore leaves the targets' image as it was. */
            new_state = r == 0 ? "Recovering" : NULL;
            new_status = r == 0 ? "Warning" : NULL;
            if (r < 0)
                snprintf(msg, sizeof msg, "restore failed: %s", e.msg);
        }
    } else {
        r = mgmt_fail(&e, -EINVAL, "'%s' is not a session action (flash, start, "
                      "background_copy, terminate, restore)", action);
        snprintf(msg, sizeof msg, "%s", e.msg);
    }

    if (!dry_run) {
        if (new_state)
            set_state(m, name, new_state, new_status, r == 0 ? "" : msg);
        pthread_mutex_lock(&m->lock);
        struct pc_error ce;
        catalog_exec(m, &ce, "UPDATE sessions SET last_action = ?, last_action_at = ?, "
                     "last_freeze_ms = CASE WHEN ? >= 0 THEN ? ELSE last_freeze_ms END, "
                     "last_hold_ns = CASE WHEN ? >= 0 THEN ? ELSE last_hold_ns END "
                     "WHERE name = ?", "siddiis", action, mgmt_now_ms_locked(m), freeze_ms,
                     freeze_ms, hold, hold, name);
        pthread_mutex_unlock(&m->lock);
        char summary[1200];
        if (r == 0)
            snprintf(summary, sizeof summary, "%u copy set%s%s", s.ds.ncs,
                     s.ds.ncs == 1 ? "" : "s", hold >= 0 ? "; writes held" : "");
        if (r == 0 && hold >= 0) {
            size_t n = strlen(summary);
            snprintf(summary + n, sizeof summary - n, " %.3f ms", (double)hold / 1e6);
        }
        if (r == 0 && freeze_ms >= 0) {
            size_t n = strlen(summary);
            snprintf(summary + n, sizeof summary - n, "; freeze %.1f ms", freeze_ms);
        }
        history_end(m, hid, r == 0 ? "ok" : "failed", "%s", r == 0 ? summary : msg);
        mgmt_log("session %s: %s (%s) %s%s%s", name, action, origin,
                 r == 0 ? "done: " : "failed: ", r == 0 ? summary : msg, "");
    }
    driver_close(&d);
    busy_drop(m, name);

    res = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s}", "session", name, "action", action,
                    "origin", origin, "dry_run", dry_run, "outcome", r == 0 ? "ok" : "failed",
                    "message", msg);
    json_object_set_new(res, "commands", d.commands);
    json_object_set_new(res, "hooks", hooks);
    hooks = NULL;
    json_object_set_new(res, "freeze_ms", freeze_ms >= 0 ? json_real(freeze_ms) : json_null());
    json_object_set_new(res, "start_hold_ns", hold >= 0 ? json_integer(hold) : json_null());
    json_object_set_new(res, "history_id", hid > 0 ? json_integer(hid) : json_null());
    /* The session as it is now. */
    pthread_mutex_lock(&m->lock);
    struct sess now;
    int lr = sess_load_locked(m, name, &now, NULL);
    pthread_mutex_unlock(&m->lock);
    if (lr == 0) {
        json_object_set_new(res, "session_state", session_json(m, &now, !dry_run));
        sess_free(&now);
    }
    json_decref(info);
    *out = res;
    if (r < 0)
        mgmt_fail(err, r, "%s", msg[0] ? msg : e.msg);
out_free:
    json_decref(hooks);
    sess_free(&s);
    return r;
}

/* ------------------------------------------------------------------------
 * The catalog requests. */

static int session_create(struct mgmt *m, const json_t *p, json_t **out, struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    const char *system = json_string_value(json_object_get(p, "system"));
    const char *desc = json_string_value(json_object_get(p, "description"));
    json_t *row = NULL;
    struct sess s;
    int r;
    if (!mgmt_name_ok(name, MGMT_NAME_MAX))
        return mgmt_fail(err, -EINVAL, "session name '%s': at most %d letters, digits, '-', "
                         "'_' or '.' (mappings are named after it)", name, MGMT_NAME_MAX);
    pthread_mutex_lock(&m->lock);
    if (catalog_row(m, NULL, &row, "SELECT name FROM systems WHERE name = ?", "s",
                    system) == -ENOENT)
        r = mgmt_fail(err, -ENOENT, "no system named %s; add it with `pitcopy system add %s "
                      "--type local`", system, system);
    else if (json_decref(row), row = NULL,
             catalog_row(m, NULL, &row, "SELECT name FROM sessions WHERE name = ?", "s",
                         name) == 0)
        r = mgmt_fail(err, -EEXIST, "session %s already exists", name);
    else
        r = catalog_exec(m, err, "INSERT INTO sessions (name, system, description, created) "
                         "VALUES (?, ?, ?, ?)", "sssi", name, system, desc ? desc : "",
                         mgmt_now_ms_locked(m));
    json_decref(row);
    if (r >= 0 && (r = sess_load_locked(m, name, &s, err)) == 0) {
        pthread_mutex_unlock(&m->lock);
        *out = session_json(m, &s, false);
        sess_free(&s);
        mgmt_log("session %s created on system %s", name, system);
        return 0;
    }
    pthread_mutex_unlock(&m->lock);
    return r < 0 ? r : 0;
}

static int session_show_loaded(struct mgmt *m, const char *name, bool live, json_t **out,
                               struct pc_error *err)
{
    struct sess s;
    pthread_mutex_lock(&m->lock);
    int r = sess_load_locked(m, name, &s, err);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return r;
    *out = session_json(m, &s, live);
    sess_free(&s);
    return 0;
}

static int session_list(struct mgmt *m, json_t **out, struct pc_error *err)
{
    json_t *rows, *row, *a = json_array();
    size_t i;
    pthread_mutex_lock(&m->lock);
    int r = catalog_rows(m, err, &rows, "SELECT name FROM sessions ORDER BY name", NULL);
    pthread_mutex_unlock(&m->lock);
    if (r < 0) {
        json_decref(a);
        return r;
    }
    json_array_foreach(rows, i, row) {
        json_t *j;
        if (session_show_loaded(m, json_string_value(json_object_get(row, "name")), true, &j,
                                NULL) == 0)
            json_array_append_new(a, j);
    }
    json_decref(rows);
    *out = json_pack("{s:o}", "sessions", a);
    return 0;
}

/* A target is in one copy set at most, and never also a host volume; a host
 * volume may be in several sessions (several targets), once in each. */
static int copyset_conflict_locked(struct mgmt *m, const char *name, const char *h1,
                                   const char *t1, struct pc_error *err)
{
    json_t *row = NULL;
    int r = catalog_row(m, err, &row, "SELECT session, h1, t1 FROM copysets WHERE t1 = ? OR "
                        "h1 = ? OR t1 = ? OR (session = ? AND h1 = ?)", "sssss", t1, t1, h1,
                        name, h1);
    if (r == -ENOENT)
        return 0;
    if (r == 0) {
        const char *os = json_string_value(json_object_get(row, "session"));
        const char *oh = json_string_value(json_object_get(row, "h1"));
        const char *ot = json_string_value(json_object_get(row, "t1"));
        const char *vol = strcmp(ot, t1) == 0 || strcmp(oh, t1) == 0 ? t1 : h1;
        r = mgmt_fail(err, -EEXIST, "session %s: copy set %s -> %s: volume %s is already in "
                      "copy set %s -> %s of session %s", name, h1, t1, vol, oh, ot, os);
    }
    json_decref(row);
    return r;
}

static int session_add_copyset(struct mgmt *m, const json_t *p, json_t **out,
                               struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    const char *h1 = json_string_value(json_object_get(p, "h1"));
    const char *t1 = json_string_value(json_object_get(p, "t1"));
    struct sess s;
    int r;
    pthread_mutex_lock(&m->lock);
    r = sess_load_locked(m, name, &s, err);
    if (r == 0 && (r = copyset_conflict_locked(m, name, h1, t1, err)) < 0)
        sess_free(&s);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return r;
    if (s.ops) {
        struct mgmt_driver d;
        driver_init(m, &d, &s, false);
        r = s.ops->check_copyset(&d, h1, t1, err);
        driver_close(&d);
        json_decref(d.commands);
        if (r < 0) {
            char why[sizeof err->msg];
            snprintf(why, sizeof why, "%s", err->msg);
            mgmt_fail(err, r, "session %s: copy set %s -> %s: %s", name, h1, t1, why);
            sess_free(&s);
            return r;
        }
    }
    sess_free(&s);
    pthread_mutex_lock(&m->lock);
    if ((r = copyset_conflict_locked(m, name, h1, t1, err)) == 0) {
        r = catalog_exec(m, err, "INSERT INTO copysets (session, h1, t1) VALUES (?, ?, ?)",
                         "sss", name, h1, t1);
    }
    if (r >= 0)
        r = sess_load_locked(m, name, &s, err);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return r;
    *out = session_json(m, &s, false);
    sess_free(&s);
    mgmt_log("session %s: copy set %s -> %s added", name, h1, t1);
    return 0;
}

static int session_remove_copyset(struct mgmt *m, const json_t *p, json_t **out,
                                  struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    const char *h1 = json_string_value(json_object_get(p, "h1"));
    struct sess s;
    json_t *q = NULL;
    int r;
    pthread_mutex_lock(&m->lock);
    r = sess_load_locked(m, name, &s, err);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return r;
    struct mgmt_copyset *cs = NULL;
    for (unsigned i = 0; i < s.ds.ncs; i++)
        if (strcmp(s.ds.cs[i].h1, h1) == 0)
            cs = &s.ds.cs[i];
    if (!cs) {
        sess_free(&s);
        return mgmt_fail(err, -ENOENT, "session %s has no copy set with H1 %s", name, h1);
    }
    if (s.ops) {
        struct mgmt_driver d;
        struct pc_error e;
        driver_init(m, &d, &s, false);
        struct mgmt_dsession one = s.ds;
        one.cs = cs;
        one.ncs = 1;
        if (s.ops->query(&d, &one, &q, &e) == 0) {
            json_t *c = json_array_get(json_object_get(q, "copysets"), 0);
            if (json_is_true(json_object_get(c, "exists")))
                r = mgmt_fail(err, -EBUSY, "session %s: copy set %s -> %s has mapping %s; "
                              "terminate the session first", name, cs->h1, cs->t1, cs->rel);
        }
        json_decref(q);
        driver_close(&d);
        json_decref(d.commands);
    }
    if (r == 0) {
        pthread_mutex_lock(&m->lock);
        r = catalog_exec(m, err, "DELETE FROM copysets WHERE id = ?", "i", cs->id);
        pthread_mutex_unlock(&m->lock);
    }
    if (r >= 0) {
        mgmt_log("session %s: copy set %s -> %s removed", name, cs->h1, cs->t1);
        r = 0;
    }
    sess_free(&s);
    return r < 0 ? r : session_show_loaded(m, name, false, out, err);
}

static int session_set(struct mgmt *m, const json_t *p, json_t **out, struct pc_error *err)
{
    static const char *const keys[] = { "description", "pre_flash", "post_flash",
                                        "hook_timeout", "copy_rate", "zos", "zos_fallback" };
    const char *name = json_string_value(json_object_get(p, "name"));
    struct sess s;
    int r = 0, n = 0;
    pthread_mutex_lock(&m->lock);
    r = sess_load_locked(m, name, &s, err);
    const char *zos = json_string_value(json_object_get(p, "zos"));
    const char *fb = json_string_value(json_object_get(p, "zos_fallback"));
    if (r == 0 && zos && *zos) {
        json_t *z = NULL;
        r = catalog_row(m, err, &z, "SELECT type FROM systems WHERE name = ?", "s", zos);
        if (r == -ENOENT)
            r = mgmt_fail(err, -ENOENT, "session %s: no z/OS connection named %s (pitcopy "
                          "zos add %s ...)", name, zos, zos);
        else if (r == 0 && strcmp(json_string_value(json_object_get(z, "type")), "zos"))
            r = mgmt_fail(err, -EINVAL, "session %s: system %s is not a z/OS connection",
                          name, zos);
        else if (r == 0 && strcmp(s.system_type, "ds8000"))
            r = mgmt_fail(err, -EINVAL, "session %s runs on system %s of type %s; only "
                          "ds8000 sessions can flash through z/OS", name, sstr(&s, "system"),
                          s.system_type);
        json_decref(z);
    }
    if (r == 0 && fb && *fb && strcmp(fb, "direct") && strcmp(fb, "none"))
        r = mgmt_fail(err, -EINVAL, "session %s: --fallback %s: use direct or none", name, fb);
    sess_free(&s);
    if (r == 0)
        r = catalog_exec(m, err, "BEGIN IMMEDIATE", NULL);
    if (r < 0) {
        pthread_mutex_unlock(&m->lock);
        return r;
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0] && r >= 0; i++) {
        const json_t *v = json_object_get(p, keys[i]);
        char sql[128];
        if (!v)
            continue;
        n++;
        snprintf(sql, sizeof sql, "UPDATE sessions SET %s = ? WHERE name = ?", keys[i]);
        if (json_is_integer(v))
            r = catalog_exec(m, err, sql, "is", (int64_t)json_integer_value(v), name);
        else   /* "" clears a hook */
            r = catalog_exec(m, err, sql, "ss", *json_string_value(v) || i == 0
                                                ? json_string_value(v) : NULL, name);
    }
    if (r >= 0 && n == 0)
        r = mgmt_fail(err, -EINVAL, "session.set: give at least one of description, "
                      "pre_flash, post_flash, hook_timeout, copy_rate, zos, zos_fallback");
    struct pc_error ce;
    catalog_exec(m, &ce, r >= 0 ? "COMMIT" : "ROLLBACK", NULL);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return r;
    mgmt_log("session %s: settings changed", name);
    return session_show_loaded(m, name, false, out, err);
}

static int session_delete(struct mgmt *m, const json_t *p, json_t **out, struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    bool force = json_is_true(json_object_get(p, "force"));
    json_t *rows = NULL, *q = NULL;
    struct sess s;
    int r;
    pthread_mutex_lock(&m->lock);
    r = sess_load_locked(m, name, &s, err);
    if (r == 0 && catalog_rows(m, err, &rows, "SELECT name FROM schedules WHERE session = ?",
                               "s", name) == 0 && json_array_size(rows) > 0)
        r = mgmt_fail(err, -EBUSY, "session %s has schedule %s; remove its schedules first "
                      "(pitcopy schedule remove)", name,
                      json_string_value(json_object_get(json_array_get(rows, 0), "name")));
    json_decref(rows);
    pthread_mutex_unlock(&m->lock);
    if (r < 0) {
        sess_free(&s);
        return r;
    }
    /* Relationships still there: only with force, and then withdrawn. */
    bool exists = false;
    if (s.ops && s.ds.ncs) {
        struct mgmt_driver d;
        struct pc_error e;
        driver_init(m, &d, &s, false);
        if (s.ops->query(&d, &s.ds, &q, &e) == 0) {
            size_t i;
            json_t *c;
            json_array_foreach(json_object_get(q, "copysets"), i, c)
                exists |= json_is_true(json_object_get(c, "exists")) ||
                          !json_is_null(json_object_get(c, "restore_state"));
        }
        json_decref(q);
        driver_close(&d);
        json_decref(d.commands);
    }
    sess_free(&s);
    if (exists && !force)
        return mgmt_fail(err, -EBUSY, "session %s still has its mappings; terminate it first, "
                         "or delete with force", name);
    if (exists) {
        json_t *res = NULL;
        r = session_action(m, name, "terminate", "session delete", false, -1, &res, err);
        json_decref(res);
        if (r < 0)
            return r;
    }
    if ((r = busy_take(m, name, "delete", err)) < 0)
        return r;
    pthread_mutex_lock(&m->lock);
    r = catalog_exec(m, err, "DELETE FROM sessions WHERE name = ?", "s", name);
    pthread_mutex_unlock(&m->lock);
    busy_drop(m, name);
    if (r < 0)
        return r;
    mgmt_log("session %s deleted", name);
    *out = json_pack("{s:s, s:b}", "name", name, "deleted", 1);
    return 0;
}

int session_request(struct mgmt *m, const char *op, const json_t *p, json_t **out,
                    struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    if (strcmp(op, "create") == 0)
        return session_create(m, p, out, err);
    if (strcmp(op, "list") == 0)
        return session_list(m, out, err);
    if (strcmp(op, "show") == 0)
        return session_show_loaded(m, name, true, out, err);
    if (strcmp(op, "add_copyset") == 0)
        return session_add_copyset(m, p, out, err);
    if (strcmp(op, "remove_copyset") == 0)
        return session_remove_copyset(m, p, out, err);
    if (strcmp(op, "set") == 0)
        return session_set(m, p, out, err);
    if (strcmp(op, "delete") == 0)
        return session_delete(m, p, out, err);
    if (strcmp(op, "history") == 0)
        return history_list(m, p, out, err);
    if (session_action_known(op)) {
        const json_t *rate = json_object_get(p, "copy_rate");
        json_t *res = NULL;
        int r = session_action(m, name, op, "cli", json_is_true(json_object_get(p, "dry_run")),
                               rate ? (int)json_integer_value(rate) : -1, &res, err);
        if (r == 0)
            *out = res;
        else
            json_decref(res);
        return r;
    }
    return mgmt_fail(err, -ENOSYS, "unknown method 'session.%s'", op);
}
