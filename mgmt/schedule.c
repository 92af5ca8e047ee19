/* SPDX-License-Identifier: MIT */
/*
 * mgmt/schedule.c — schedules: a session action at the times a cron
 * expression names, fired by a thread of the daemon.
 *
 * Role
 *   schedule.add {name, session, action, cron, missed?}, schedule.list,
 *   schedule.show {name}, schedule.remove {name}.  Each schedule keeps its
 *   next run (computed from the cron expression and the mgmt clock), its
 *   last run and that run's outcome.
 *
 *   The scheduler thread wakes at least once a second (and at once when
 *   the test clock is set or a schedule is added), runs every schedule
 *   whose next run has come, one after another, and computes the next run
 *   from the time it fired.  A clock that jumps past several runs fires
 *   one, as cron after a suspend.  At start-up a schedule whose next run
 *   passed while the daemon was down is a missed run: with missed "run" it
 *   runs once now (the history says it was missed), with "skip" it is
 *   recorded as skipped and waits for its next time.
 *
 * Invariants
 *   T1  next_run is always after last_run; a firing updates both in one
 *       statement, after the action ended.
 *   T2  A firing whose session is busy (M1) is recorded as skipped, never
 *       queued: the next one comes at its own time.
 *
 * Context
 *   Requests: any control thread.  The scheduler: its own thread, which
 *   runs actions (hooks, driver calls) without mgmt.lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgmt/internal.h"

#define SCHED_TICK_MS 1000

static int64_t next_after(const char *expr, int64_t ms)
{
    struct cron c;
    char msg[160];
    if (cron_parse(expr, &c, msg, sizeof msg) < 0)
        return 0;
    int64_t t = cron_next(&c, ms / 1000);
    return t < 0 ? 0 : t * 1000;
}

static json_t *schedule_json(const json_t *row)
{
    json_t *j = json_pack("{s:O, s:O, s:O, s:O, s:O, s:b}",
                          "name", json_object_get(row, "name"),
                          "session", json_object_get(row, "session"),
                          "action", json_object_get(row, "action"),
                          "cron", json_object_get(row, "cron"),
                          "missed", json_object_get(row, "missed"),
                          "enabled", json_integer_value(json_object_get(row, "enabled")) != 0);
    json_object_set_new(j, "next_run", mgmt_time_json(json_integer_value(
                                           json_object_get(row, "next_run"))));
    json_object_set_new(j, "last_run", mgmt_time_json(json_integer_value(
                                           json_object_get(row, "last_run"))));
    json_object_set(j, "last_outcome", json_object_get(row, "last_outcome"));
    json_object_set(j, "last_message", json_object_get(row, "last_message"));
    return j;
}

int schedule_request(struct mgmt *m, const char *op, const json_t *p, json_t **out,
                     struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    json_t *row = NULL, *rows = NULL;
    int r = 0;

    if (strcmp(op, "add") == 0) {
        const char *session = json_string_value(json_object_get(p, "session"));
        const char *action = json_string_value(json_object_get(p, "action"));
        const char *expr = json_string_value(json_object_get(p, "cron"));
        const char *missed = json_string_value(json_object_get(p, "missed"));
        struct cron c;
        char msg[200];
        if (!missed)
            missed = "run";
        if (!mgmt_name_ok(name, MGMT_NAME_MAX))
            return mgmt_fail(err, -EINVAL, "schedule name '%s': at most %d letters, digits, "
                             "'-', '_' or '.'", name, MGMT_NAME_MAX);
        if (!session_action_known(action))
            return mgmt_fail(err, -EINVAL, "schedule %s: '%s' is not a session action (flash, "
                             "start, background_copy, terminate, restore)", name, action);
        if (strcmp(missed, "run") && strcmp(missed, "skip"))
            return mgmt_fail(err, -EINVAL, "schedule %s: missed must be run or skip, not '%s'",
                             name, missed);
        if (cron_parse(expr, &c, msg, sizeof msg) < 0)
            return mgmt_fail(err, -EINVAL, "schedule %s: %s", name, msg);
        pthread_mutex_lock(&m->lock);
        int64_t now = mgmt_now_ms_locked(m);
        int64_t t = cron_next(&c, now / 1000);
        if (t < 0)
            r = mgmt_fail(err, -EINVAL, "schedule %s: '%s' never fires (no such date in the "
                          "next five years)", name, expr);
        else if (catalog_row(m, NULL, &row, "SELECT name FROM sessions WHERE name = ?", "s",
                             session) == -ENOENT)
            r = mgmt_fail(err, -ENOENT, "schedule %s: no session named %s", name, session);
        else if (json_decref(row), row = NULL,
                 catalog_row(m, NULL, &row, "SELECT name FROM schedules WHERE name = ?", "s",
                             name) == 0)
            r = mgmt_fail(err, -EEXIST, "schedule %s already exists", name);
        else
            r = catalog_exec(m, err, "INSERT INTO schedules (name, session, action, cron, "
                             "missed, created, next_run) VALUES (?, ?, ?, ?, ?, ?, ?)",
                             "sssssii", name, session, action, expr, missed, now, t * 1000);
        json_decref(row);
        row = NULL;
        if (r >= 0)
            r = catalog_row(m, err, &row, "SELECT * FROM schedules WHERE name = ?", "s", name);
        pthread_cond_broadcast(&m->sched_cond);
        pthread_mutex_unlock(&m->lock);
        if (r < 0)
            return r;
        *out = schedule_json(row);
        json_decref(row);
        mgmt_log("schedule %s added: %s session %s at '%s', next %s", name, action, session,
                 expr, json_string_value(json_object_get(*out, "next_run")));
        return 0;
    }
    if (strcmp(op, "list") == 0) {
        size_t i;
        json_t *a = json_array();
        pthread_mutex_lock(&m->lock);
        r = catalog_rows(m, err, &rows, "SELECT * FROM schedules ORDER BY name", NULL);
        pthread_mutex_unlock(&m->lock);
        if (r < 0) {
            json_decref(a);
            return r;
        }
        json_array_foreach(rows, i, row)
            json_array_append_new(a, schedule_json(row));
        json_decref(rows);
        *out = json_pack("{s:o}", "schedules", a);
        return 0;
    }
    if (strcmp(op, "show") == 0 || strcmp(op, "remove") == 0) {
        pthread_mutex_lock(&m->lock);
        r = catalog_row(m, err, &row, "SELECT * FROM schedules WHERE name = ?", "s", name);
        if (r == -ENOENT)
            r = mgmt_fail(err, -ENOENT, "no schedule named %s", name);
        if (r == 0 && op[0] == 'r')
            r = catalog_exec(m, err, "DELETE FROM schedules WHERE name = ?", "s", name);
        pthread_mutex_unlock(&m->lock);
        if (r < 0)
            return r;
        if (op[0] == 'r') {
            mgmt_log("schedule %s removed", name);
            *out = json_pack("{s:s, s:b}", "name", name, "removed", 1);
        } else {
            *out = schedule_json(row);
        }
        json_decref(row);
        return 0;
    }
    return mgmt_fail(err, -ENOSYS, "unknown method 'schedule.%s'", op);
}

/* ------------------------------------------------------------------------
 * The scheduler. */

static void record(struct mgmt *m, const char *name, const char *expr, int64_t now,
                   const char *outcome, const char *message)
{
    struct pc_error err;
    pthread_mutex_lock(&m->lock);
    int64_t next = next_after(expr, now);
    if (catalog_exec(m, &err, "UPDATE schedules SET last_run = ?, last_outcome = ?, "
                     "last_message = ?, next_run = ? WHERE name = ?", "issis", now, outcome,
                     message, next, name) < 0)   /* T1 */
        mgmt_log("schedule %s: cannot record its run: %s", name, err.msg);
    pthread_mutex_unlock(&m->lock);
}

static void fire(struct mgmt *m, const json_t *row, bool missed)
{
    const char *name = json_string_value(json_object_get(row, "name"));
    const char *session = json_string_value(json_object_get(row, "session"));
    const char *action = json_string_value(json_object_get(row, "action"));
    const char *expr = json_string_value(json_object_get(row, "cron"));
    const char *policy = json_string_value(json_object_get(row, "missed"));
    int64_t due = json_integer_value(json_object_get(row, "next_run"));
    char origin[160], when[32], msg[400];
    struct pc_error err = { 0 };
    json_t *res = NULL;

    mgmt_time_text(due, when, sizeof when);
    if (missed && strcmp(policy, "skip") == 0) {
        snprintf(msg, sizeof msg, "missed run at %s (pitcopy serve was not running): "
                 "skipped, as --missed skip asks", when);
        int64_t h = history_begin(m, session, action, "schedule", name, 0);
        history_end(m, h, "skipped", "schedule %s: %s", name, msg);
        mgmt_log("schedule %s: %s", name, msg);
        record(m, name, expr, mgmt_now_ms(m), "skipped", msg);
        return;
    }
    if (missed)
        snprintf(origin, sizeof origin, "schedule %s (missed run at %s)", name, when);
    else
        snprintf(origin, sizeof origin, "schedule %s", name);
    mgmt_log("schedule %s: %s session %s (due %s)", name, action, session, when);
    int r = session_action(m, session, action, origin, false, -1, &res, &err);
    const char *outcome = r == 0 ? "ok" : "failed";
    if (r == -EBUSY) {                                     /* T2 */
        outcome = "skipped";
        int64_t h = history_begin(m, session, action, "schedule", origin, 0);
        history_end(m, h, "skipped", "%s", err.msg);
    }
    snprintf(msg, sizeof msg, "%s%s", missed ? "missed run, run at start-up; " : "",
             r == 0 ? "done" : err.msg);
    record(m, name, expr, mgmt_now_ms(m), outcome, msg);
    json_decref(res);
}

static void *sched_main(void *arg)
{
    struct mgmt *m = arg;
    struct pc_error err;
    int64_t started = mgmt_now_ms(m);
    bool first = true;

    pthread_mutex_lock(&m->lock);
    while (!m->sched_stop) {
        json_t *rows = NULL, *row;
        size_t i;
        int64_t now = mgmt_now_ms_locked(m);
        int r = catalog_rows(m, &err, &rows, "SELECT * FROM schedules WHERE enabled = 1 AND "
                             "next_run IS NOT NULL AND next_run > 0 AND next_run <= ? "
                             "ORDER BY next_run, name", "i", now);
        pthread_mutex_unlock(&m->lock);
        if (r == 0) {
            json_array_foreach(rows, i, row) {
                int64_t due = json_integer_value(json_object_get(row, "next_run"));
                fire(m, row, first && due < started);
            }
        }
        json_decref(rows);
        first = false;
        pthread_mutex_lock(&m->lock);
        if (m->sched_stop)
            break;
        /* Sleep to the next run, a tick at most (the clock may be set meanwhile). */
        int64_t wait = SCHED_TICK_MS;
        json_t *next = NULL;
        if (catalog_row(m, NULL, &next, "SELECT min(next_run) AS t FROM schedules WHERE "
                        "enabled = 1 AND next_run > 0", NULL) == 0) {
            int64_t t = json_integer_value(json_object_get(next, "t"));
            if (t > 0 && t - mgmt_now_ms_locked(m) < wait)
                wait = t - mgmt_now_ms_locked(m);
        }
        json_decref(next);
        if (wait > 0) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += wait / 1000;
            dl.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (dl.tv_nsec >= 1000000000L) {
                dl.tv_sec++;
                dl.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&m->sched_cond, &m->lock, &dl);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

int schedule_start(struct mgmt *m, struct pc_error *err)
{
    pthread_mutex_lock(&m->lock);
    bool usable = catalog_usable_locked(m, NULL) == 0;
    pthread_mutex_unlock(&m->lock);
    if (!usable || m->sched_running)
        return 0;
    m->sched_stop = false;
    int r = pthread_create(&m->sched_th, NULL, sched_main, m);
    if (r != 0)
        return mgmt_fail(err, -r, "cannot start the scheduler: %s", strerror(r));
    m->sched_running = true;
    return 0;
}

void schedule_stop(struct mgmt *m)
{
    if (!m->sched_running)
        return;
    pthread_mutex_lock(&m->lock);
    m->sched_stop = true;
    pthread_cond_broadcast(&m->sched_cond);
    pthread_mutex_unlock(&m->lock);
    pthread_join(m->sched_th, NULL);
    m->sched_running = false;
}
