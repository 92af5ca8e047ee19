/* SPDX-License-Identifier: MIT */
/*
 * mgmt/catalog.c — the SQLite catalog: DIR/catalog.db.
 *
 * Role
 *   Opens the catalog, brings its schema up to MGMT_SCHEMA_VERSION with the
 *   migrations below, and runs statements for the rest of mgmt/ with their
 *   results as JSON rows.
 *
 * Invariants
 *   K1  The schema version is the highest version in schema_migrations; a
 *       migration and its row there commit in one transaction, so a crash
 *       leaves the catalog at one version or the next, never between.
 *   K2  Migrations are only ever appended: version N's SQL never changes
 *       once released.  A catalog newer than this binary is refused, not
 *       guessed at.
 *   K3  WAL and a busy timeout: a reader (sqlite3 on the file, a backup)
 *       never blocks the daemon for longer than CATALOG_BUSY_MS.
 *   K4  A file that is not a catalog, or fails quick_check, is never
 *       written to (M4): the caller reports it.
 *
 * Context
 *   Statements: under mgmt.lock (internal.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/internal.h"

#define CATALOG_BUSY_MS 5000

static const char *const migrations[] = {
    /* 1: systems, sessions and their copy sets, history. */
    "CREATE TABLE systems ("
    "  name    TEXT PRIMARY KEY,"
    "  type    TEXT NOT NULL,"
    "  options TEXT NOT NULL DEFAULT '{}',"
    "  created INTEGER NOT NULL);"
    "CREATE TABLE sessions ("
    "  name         TEXT PRIMARY KEY,"
    "  system       TEXT NOT NULL REFERENCES systems(name),"
    "  description  TEXT NOT NULL DEFAULT '',"
    "  state        TEXT NOT NULL DEFAULT 'Defined',"
    "  status       TEXT NOT NULL DEFAULT 'Inactive',"
    "  message      TEXT NOT NULL DEFAULT '',"
    "  pre_flash    TEXT,"
    "  post_flash   TEXT,"
    "  hook_timeout INTEGER NOT NULL DEFAULT 300,"
    "  copy_rate    INTEGER NOT NULL DEFAULT 0,"
    "  created      INTEGER NOT NULL,"
    "  last_action  TEXT,"
    "  last_action_at INTEGER,"
    "  last_freeze_ms REAL,"
    "  last_hold_ns INTEGER);"
    "CREATE TABLE copysets ("
    "  id      INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  session TEXT NOT NULL REFERENCES sessions(name) ON DELETE CASCADE,"
    "  h1      TEXT NOT NULL,"
    "  t1      TEXT NOT NULL,"
    "  UNIQUE (session, h1),"
    "  UNIQUE (t1));"
    "CREATE TABLE history ("
    "  id       INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  session  TEXT NOT NULL,"
    "  action   TEXT NOT NULL,"
    "  kind     TEXT NOT NULL,"
    "  origin   TEXT NOT NULL,"
    "  parent   INTEGER,"
    "  start_ms INTEGER NOT NULL,"
    "  end_ms   INTEGER,"
    "  outcome  TEXT NOT NULL,"
    "  message  TEXT NOT NULL DEFAULT '');"
    "CREATE INDEX history_by_session ON history (session, id);",

    /* 2: schedules. */
    "CREATE TABLE schedules ("
    "  name         TEXT PRIMARY KEY,"
    "  session      TEXT NOT NULL REFERENCES sessions(name),"
    "  action       TEXT NOT NULL,"
    "  cron         TEXT NOT NULL,"
    "  missed       TEXT NOT NULL DEFAULT 'run',"
    "  enabled      INTEGER NOT NULL DEFAULT 1,"
    "  created      INTEGER NOT NULL,"
    "  next_run     INTEGER,"
    "  last_run     INTEGER,"
    "  last_outcome TEXT,"
    "  last_message TEXT);",

    /* 3: a session's z/OS connection (zos.h) and its fallback. */
    "ALTER TABLE sessions ADD COLUMN zos TEXT; ALTER TABLE sessions ADD COLUMN zos_fallback TEXT;",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == MGMT_SCHEMA_VERSION,
               "one migration per schema version");

static int sqlite_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:  return -EUCLEAN;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:  return -EBUSY;
    case SQLITE_NOMEM:   return -ENOMEM;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:    return -EACCES;
    case SQLITE_FULL:    return -ENOSPC;
    case SQLITE_CANTOPEN: return -ENOENT;
    case SQLITE_CONSTRAINT: return -EEXIST;
    default:             return -EIO;
    }
}

static int open_fail(sqlite3 *db, const char *path, int rc, const char *what,
                     struct pc_error *err)
{
    int code = sqlite_errno(rc);
    const char *why = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (code == -EUCLEAN)
        return mgmt_fail(err, code, "catalog %s is corrupt or not a pitcopy catalog (%s: %s); "
                         "move it aside and restart pitcopy serve (a new, empty catalog is "
                         "made) or restore it from a backup", path, what, why);
    return mgmt_fail(err, code, "catalog %s: %s: %s", path, what, why);
}

static int exec_simple(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int catalog_open_at(const char *path, int want, sqlite3 **out, int *got, struct pc_error *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc, version = 0;

    *out = NULL;
    rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                         SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int r = open_fail(db, path, rc, "cannot open", err);
        sqlite3_close(db);
        return r;
    }
    sqlite3_busy_timeout(db, CATALOG_BUSY_MS);   /* K3 */
    sqlite3_extended_result_codes(db, 0);
    /* K4: read before anything writes; a garbage file fails here. */
    rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const char *res = (const char *)sqlite3_column_text(st, 0);
            if (!res || strcmp(res, "ok") != 0) {
                char what[160];
                snprintf(what, sizeof what, "quick_check says %.120s", res ? res : "?");
                sqlite3_finalize(st);
                int r = open_fail(db, path, SQLITE_CORRUPT, what, err);
                sqlite3_close(db);
                return r;
            }
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (rc != SQLITE_OK && rc != SQLITE_DONE)
        goto fail_rc;
    /* K4: a database with tables but no schema version is someone else's. */
    rc = sqlite3_prepare_v2(db, "SELECT count(*), sum(name = 'schema_migrations') FROM "
                            "sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                            -1, &st, NULL);
    if (rc != SQLITE_OK || (rc = sqlite3_step(st)) != SQLITE_ROW)
        goto fail_rc;
    int ntables = sqlite3_column_int(st, 0), ours = sqlite3_column_int(st, 1);
    sqlite3_finalize(st);
    st = NULL;
    if (ntables > 0 && !ours) {
        int r = open_fail(db, path, SQLITE_NOTADB, "it has tables but no schema version", err);
        sqlite3_close(db);
        return r;
    }
    if (ours) {
        rc = sqlite3_prepare_v2(db, "SELECT coalesce(max(version), 0) FROM schema_migrations",
                                -1, &st, NULL);
        if (rc != SQLITE_OK || (rc = sqlite3_step(st)) != SQLITE_ROW)
            goto fail_rc;
        version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        st = NULL;
    }
    if (version > MGMT_SCHEMA_VERSION) {   /* K2 */
        mgmt_fail(err, -EPROTONOSUPPORT, "catalog %s has schema version %d, newer than this "
                  "pitcopy knows (%d); run the pitcopy that wrote it, or a newer one", path,
                  version, MGMT_SCHEMA_VERSION);
        sqlite3_close(db);
        return -EPROTONOSUPPORT;
    }
    if ((rc = exec_simple(db, "PRAGMA journal_mode=WAL")) != SQLITE_OK ||
        (rc = exec_simple(db, "PRAGMA foreign_keys=ON")) != SQLITE_OK ||
        (rc = exec_simple(db, "PRAGMA synchronous=FULL")) != SQLITE_OK ||
        (rc = exec_simple(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                          "version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")) != SQLITE_OK)
        goto fail_rc;
    for (int v = version + 1; v <= want; v++) {   /* K1 */
        char sql[160];
        if ((rc = exec_simple(db, "BEGIN IMMEDIATE")) != SQLITE_OK)
            goto fail_rc;
        snprintf(sql, sizeof sql, "INSERT INTO schema_migrations VALUES (%d, "
                 "strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ','now'))", v);
        if ((rc = exec_simple(db, migrations[v - 1])) != SQLITE_OK ||
            (rc = exec_simple(db, sql)) != SQLITE_OK ||
            (rc = exec_simple(db, "COMMIT")) != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "migration to schema version %d failed", v);
            int r = open_fail(db, path, rc, what, err);
            exec_simple(db, "ROLLBACK");
            sqlite3_close(db);
            return r;
        }
        version = v;
    }
    *out = db;
    *got = version;
    return 0;

fail_rc:
    sqlite3_finalize(st);
    {
        int r = open_fail(db, path, rc, "cannot read it", err);
        sqlite3_close(db);
        return r;
    }
}

int catalog_open(const char *path, sqlite3 **out, int *version, struct pc_error *err)
{
    return catalog_open_at(path, MGMT_SCHEMA_VERSION, out, version, err);
}

void catalog_close(sqlite3 *db)
{
    sqlite3_close(db);
}

int catalog_error(struct mgmt *m, struct pc_error *err, int rc, const char *what)
{
    int code = sqlite_errno(rc);
    if (code == -EUCLEAN) {
        /* M4: found corrupt while running; keep answering that. */
        mgmt_fail(err, code, "catalog %s is corrupt (%s: %s); move it aside and restart "
                  "pitcopy serve, or restore it from a backup", m->path, what,
                  sqlite3_errmsg(m->db));
        m->db_code = code;
        snprintf(m->db_error, sizeof m->db_error, "%s", err->msg);
        mgmt_log("%s", err->msg);
        return code;
    }
    return mgmt_fail(err, code, "catalog %s: %s: %s", m->path, what, sqlite3_errmsg(m->db));
}

int catalog_usable_locked(struct mgmt *m, struct pc_error *err)
{
    if (m->db && !m->db_code)
        return 0;
    return mgmt_fail(err, m->db_code ? m->db_code : -EIO, "%s", m->db_error);
}

static int bind_all(sqlite3_stmt *st, const char *types, va_list ap)
{
    for (int i = 0; types && types[i]; i++) {
        int rc;
        switch (types[i]) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(st, i + 1);
            break;
        }
        case 'i':
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
            break;
        case 'd':
            rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double));
            break;
        default:
            abort();
        }
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static json_t *column_json(sqlite3_stmt *st, int i)
{
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return json_integer((json_int_t)sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:   return json_real(sqlite3_column_double(st, i));
    case SQLITE_TEXT:    return json_stringn((const char *)sqlite3_column_text(st, i),
                                             (size_t)sqlite3_column_bytes(st, i));
    default:             return json_null();
    }
}

static int run(struct mgmt *m, struct pc_error *err, json_t **rows, const char *sql,
               const char *types, va_list ap)
{
    sqlite3_stmt *st = NULL;
    int r = catalog_usable_locked(m, err);
    if (r < 0)
        return r;
    int rc = sqlite3_prepare_v2(m->db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = bind_all(st, types, ap);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return catalog_error(m, err, rc, "a statement failed");
    }
    json_t *a = rows ? json_array() : NULL;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!a)
            continue;
        json_t *o = json_object();
        for (int i = 0; i < sqlite3_column_count(st); i++)
            json_object_set_new(o, sqlite3_column_name(st, i), column_json(st, i));
        json_array_append_new(a, o);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(a);
        return catalog_error(m, err, rc, "a statement failed");
    }
    if (rows)
        *rows = a;
    return sqlite3_changes(m->db);
}

int catalog_exec(struct mgmt *m, struct pc_error *err, const char *sql, const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = run(m, err, NULL, sql, types, ap);
    va_end(ap);
    return r;
}

int catalog_rows(struct mgmt *m, struct pc_error *err, json_t **rows, const char *sql,
                 const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = run(m, err, rows, sql, types, ap);
    va_end(ap);
    return r < 0 ? r : 0;
}

int catalog_row(struct mgmt *m, struct pc_error *err, json_t **row, const char *sql,
                const char *types, ...)
{
    json_t *rows;
    va_list ap;
    va_start(ap, types);
    int r = run(m, err, &rows, sql, types, ap);
    va_end(ap);
    if (r < 0)
        return r;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return -ENOENT;
    }
    *row = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return 0;
}
