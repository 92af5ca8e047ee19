/* SPDX-License-Identifier: MIT */
/*
 * mgmt/system.c — storage systems: where a session's copies are made.
 *
 * Role
 *   system.add {name, type, connection...}, system.list, system.show
 *   {name}, system.remove {name}.  The type names a driver (driver.h);
 *   `local` is this daemon, `svc` a Spectrum Virtualize array reached by
 *   SSH or REST.  The driver's configure() checks the connection and says
 *   what the catalog keeps (systems.options): never a password, only the
 *   file it is read from.  A system some session uses cannot be removed.
 *
 * Context
 *   Any control thread; takes mgmt.lock.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "mgmt/driver.h"

static json_t *system_json(struct mgmt *m, json_t *row)
{
    json_t *sessions = NULL, *names = json_array(), *s;
    size_t i;
    const char *name = json_string_value(json_object_get(row, "name"));
    const char *type = json_string_value(json_object_get(row, "type"));
    const struct mgmt_driver_ops *ops = driver_find(type);
    json_t *opts = json_loads(json_string_value(json_object_get(row, "options")), 0, NULL);
    char where[1024] = "";
    if (!opts)
        opts = json_object();
    if (ops && ops->describe)
        ops->describe(opts, where, sizeof where);
    if (catalog_rows(m, NULL, &sessions, "SELECT name FROM sessions WHERE system = ? "
                     "ORDER BY name", "s", name) == 0)
        json_array_foreach(sessions, i, s)
            json_array_append(names, json_object_get(s, "name"));
    json_decref(sessions);
    return json_pack("{s:O, s:O, s:o, s:o, s:o, s:s}", "name", json_object_get(row, "name"),
                     "type", json_object_get(row, "type"),
                     "created", mgmt_time_json(json_integer_value(json_object_get(row,
                                                                                  "created"))),
                     "sessions", names, "connection", opts, "address", where);
}

int system_request(struct mgmt *m, const char *op, const json_t *p, json_t **out,
                   struct pc_error *err)
{
    const char *name = json_string_value(json_object_get(p, "name"));
    json_t *row = NULL, *rows = NULL;
    int r = 0;

    if (strcmp(op, "add") == 0) {
        const char *type = json_string_value(json_object_get(p, "type"));
        const struct mgmt_driver_ops *ops = driver_find(type);
        json_t *opts = NULL;
        if (!ops)
            return mgmt_fail(err, -EINVAL, "system %s: type '%s' is not one pitcopy drives "
                             "(types: %s)", name, type, driver_types());
        if ((r = ops->configure(name, p, &opts, err)) < 0)
            return r;
        char *opts_text = json_dumps(opts, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(opts);
        if (!opts_text)
            return mgmt_fail(err, -ENOMEM, "out of memory");
        pthread_mutex_lock(&m->lock);
        if (catalog_row(m, NULL, &row, "SELECT * FROM systems WHERE name = ?", "s", name) == 0)
            r = mgmt_fail(err, -EEXIST, "system %s already exists (type %s)", name,
                          json_string_value(json_object_get(row, "type")));
        else
            r = catalog_exec(m, err, "INSERT INTO systems (name, type, options, created) "
                             "VALUES (?, ?, ?, ?)", "sssi", name, type, opts_text,
                             mgmt_now_ms_locked(m));
        free(opts_text);
        json_decref(row);
        if (r >= 0 && catalog_row(m, err, &row, "SELECT * FROM systems WHERE name = ?", "s",
                                  name) == 0) {
            *out = system_json(m, row);
            json_decref(row);
            mgmt_log("system %s added: type %s (%s)", name, type,
                     json_string_value(json_object_get(*out, "address")));
        }
        pthread_mutex_unlock(&m->lock);
        return r < 0 ? r : 0;
    }
    if (strcmp(op, "list") == 0) {
        size_t i;
        json_t *a = json_array();
        pthread_mutex_lock(&m->lock);
        r = catalog_rows(m, err, &rows, "SELECT * FROM systems ORDER BY name", NULL);
        if (r == 0)
            json_array_foreach(rows, i, row)
                json_array_append_new(a, system_json(m, row));
        pthread_mutex_unlock(&m->lock);
        json_decref(rows);
        if (r < 0) {
            json_decref(a);
            return r;
        }
        *out = json_pack("{s:o}", "systems", a);
        return 0;
    }
    if (strcmp(op, "show") == 0 || strcmp(op, "remove") == 0) {
        bool remove = op[0] == 'r';
        pthread_mutex_lock(&m->lock);
        r = catalog_row(m, err, &row, "SELECT * FROM systems WHERE name = ?", "s", name);
        if (r == -ENOENT)
            r = mgmt_fail(err, -ENOENT, "no system named %s", name);
        if (r == 0) {
            json_t *j = system_json(m, row);
            json_t *sessions = json_object_get(j, "sessions");
            if (remove && json_array_size(sessions) > 0) {
                r = mgmt_fail(err, -EBUSY, "system %s is used by session %s%s; delete %s "
                              "first", name, json_string_value(json_array_get(sessions, 0)),
                              json_array_size(sessions) > 1 ? " and others" : "",
                              json_array_size(sessions) > 1 ? "them" : "it");
            } else if (remove) {
                r = catalog_exec(m, err, "DELETE FROM systems WHERE name = ?", "s", name);
                if (r >= 0) {
                    mgmt_log("system %s removed", name);
                    *out = json_pack("{s:s, s:b}", "name", name, "removed", 1);
                }
            } else {
                *out = json_incref(j);
            }
            json_decref(j);
        }
        json_decref(row);
        pthread_mutex_unlock(&m->lock);
        return r < 0 ? r : 0;
    }
    return mgmt_fail(err, -ENOSYS, "unknown method 'system.%s'", op);
}
