/* SPDX-License-Identifier: MIT */
/*
 * mgmt/history.c — the record of every action, hook and schedule firing.
 *
 * Role
 *   A row per thing done: session, action (flash, pre-flash, ...), kind
 *   (action, hook, schedule), origin (cli, schedule NAME), parent (the
 *   action a hook belongs to), start and end on the mgmt clock, outcome
 *   (running, ok, failed, skipped, interrupted) and a message.
 *
 * Invariants
 *   M3 (mgmt.h).  Writing history never fails an action: a row that cannot
 *   be written is logged and the action goes on (the engine's work is what
 *   matters; the log line says what was not recorded).
 *
 * Context
 *   Any thread; takes mgmt.lock.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mgmt/internal.h"

int64_t history_begin(struct mgmt *m, const char *session, const char *action,
                      const char *kind, const char *origin, int64_t parent)
{
    struct pc_error err;
    int64_t id;
    pthread_mutex_lock(&m->lock);
    int r = catalog_exec(m, &err, "INSERT INTO history (session, action, kind, origin, parent, "
                         "start_ms, outcome) VALUES (?, ?, ?, ?, ?, ?, 'running')", "ssssii",
                         session, action, kind, origin, parent, mgmt_now_ms_locked(m));
    id = r < 0 ? r : (int64_t)sqlite3_last_insert_rowid(m->db);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        mgmt_log("session %s: %s not recorded in the history: %s", session, action, err.msg);
    return id;
}

void history_end(struct mgmt *m, int64_t id, const char *outcome, const char *fmt, ...)
{
    char msg[1024];
    struct pc_error err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (id <= 0)
        return;
    pthread_mutex_lock(&m->lock);
    int r = catalog_exec(m, &err, "UPDATE history SET end_ms = ?, outcome = ?, message = ? "
                         "WHERE id = ?", "issi", mgmt_now_ms_locked(m), outcome, msg, id);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        mgmt_log("history row %lld (%s: %s) not recorded: %s", (long long)id, outcome, msg,
                 err.msg);
}

void history_interrupted(struct mgmt *m)
{
    struct pc_error err;
    pthread_mutex_lock(&m->lock);
    int r = catalog_exec(m, &err, "UPDATE history SET outcome = 'interrupted', end_ms = ?, "
                         "message = 'pitcopy serve stopped while this ran' || "
                         "CASE WHEN message = '' THEN '' ELSE '; ' || message END "
                         "WHERE outcome = 'running'", "i", mgmt_now_ms_locked(m));
    pthread_mutex_unlock(&m->lock);
    if (r > 0)
        mgmt_log("%d action%s left running by the last daemon marked interrupted in the "
                 "history", r, r == 1 ? "" : "s");
}

static json_t *entry_json(const json_t *row)
{
    int64_t s = json_integer_value(json_object_get(row, "start_ms"));
    const json_t *e = json_object_get(row, "end_ms");
    json_t *j = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O, s:o, s:o, s:O, s:O}",
                          "id", json_object_get(row, "id"),
                          "session", json_object_get(row, "session"),
                          "action", json_object_get(row, "action"),
                          "kind", json_object_get(row, "kind"),
                          "origin", json_object_get(row, "origin"),
                          "parent", json_object_get(row, "parent"),
                          "start", mgmt_time_json(s),
                          "end", json_is_integer(e) ? mgmt_time_json(json_integer_value(e))
                                                    : json_null(),
                          "outcome", json_object_get(row, "outcome"),
                          "message", json_object_get(row, "message"));
    json_object_set_new(j, "start_ms", json_integer((json_int_t)s));
    json_object_set_new(j, "duration_ms", json_is_integer(e)
                        ? json_integer(json_integer_value(e) - (json_int_t)s) : json_null());
    return j;
}

/* session.history {name, limit?}: newest last. */
int history_list(struct mgmt *m, const json_t *p, json_t **out, struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    const json_t *lim = json_object_get(p, "limit");
    int64_t limit = lim ? json_integer_value(lim) : 100;
    json_t *rows, *a = json_array(), *row;
    size_t i;
    pthread_mutex_lock(&m->lock);
    int r = catalog_rows(m, err, &rows, "SELECT * FROM (SELECT * FROM history WHERE session = ? "
                         "ORDER BY id DESC LIMIT ?) ORDER BY id", "si", name, limit);
    json_t *known = NULL;
    if (r == 0 && json_array_size(rows) == 0 &&
        catalog_row(m, NULL, &known, "SELECT name FROM sessions WHERE name = ?", "s",
                    name) == -ENOENT)
        r = mgmt_fail(err, -ENOENT, "no session named %s (and no history under that name)",
                      name);
    json_decref(known);
    pthread_mutex_unlock(&m->lock);
    if (r < 0) {
        json_decref(a);
        return r;
    }
    json_array_foreach(rows, i, row)
        json_array_append_new(a, entry_json(row));
    json_decref(rows);
    *out = json_pack("{s:s, s:o}", "session", name, "entries", a);
    return 0;
}
