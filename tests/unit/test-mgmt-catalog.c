/* SPDX-License-Identifier: MIT */
/* Description: the mgmt catalog: migrations (K1, K2), files that are not catalogs (K4, M4). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "mgmt/internal.h"

struct fix {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/pitcopy-catalog.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/%s", f->dir, MGMT_CATALOG_NAME);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

static int64_t one_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void write_file(const char *path, const void *p, size_t n, off_t off)
{
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, p, n, off), (ssize_t)n);
    close(fd);
}

static void test_fresh(void **state)
{
    struct fix *f = *state;
    struct pc_error err = { 0 };
    sqlite3 *db;
    int v = 0;
    assert_int_equal(catalog_open(f->path, &db, &v, &err), 0);
    assert_int_equal(v, MGMT_SCHEMA_VERSION);
    assert_int_equal(one_int(db, "SELECT count(*) FROM schema_migrations"), MGMT_SCHEMA_VERSION);
    assert_int_equal(one_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                             "('systems','sessions','copysets','history','schedules')"), 5);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");   /* K3 */
    sqlite3_finalize(st);
    catalog_close(db);
    /* Opening again changes nothing. */
    assert_int_equal(catalog_open(f->path, &db, &v, &err), 0);
    assert_int_equal(v, MGMT_SCHEMA_VERSION);
    assert_int_equal(one_int(db, "SELECT count(*) FROM schema_migrations"), MGMT_SCHEMA_VERSION);
    catalog_close(db);
}

/* A version-1 catalog with data comes up to date and keeps it (K1). */
static void test_upgrade_keeps_data(void **state)
{
    struct fix *f = *state;
    struct pc_error err = { 0 };
    sqlite3 *db;
    int v = 0;
    assert_int_equal(catalog_open_at(f->path, 1, &db, &v, &err), 0);
    assert_int_equal(v, 1);
    assert_int_equal(one_int(db, "SELECT count(*) FROM sqlite_master WHERE name='schedules'"), 0);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO systems (name, type, created) VALUES "
                                  "('here', 'local', 1); INSERT INTO sessions (name, system, "
                                  "created) VALUES ('nightly', 'here', 2)", NULL, NULL, NULL),
                     SQLITE_OK);
    catalog_close(db);
    assert_int_equal(catalog_open(f->path, &db, &v, &err), 0);
    assert_int_equal(v, MGMT_SCHEMA_VERSION);
    assert_int_equal(one_int(db, "SELECT count(*) FROM sessions WHERE name='nightly' AND "
                             "system='here' AND state='Defined'"), 1);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO schedules (name, session, action, cron, "
                                  "created) VALUES ('n', 'nightly', 'flash', '59 23 * * *', 3)",
                                  NULL, NULL, NULL), SQLITE_OK);
    /* Foreign keys are on: a schedule of no session is refused. */
    assert_int_not_equal(sqlite3_exec(db, "INSERT INTO schedules (name, session, action, cron, "
                                      "created) VALUES ('x', 'nosuch', 'flash', '* * * * *', 3)",
                                      NULL, NULL, NULL), SQLITE_OK);
    catalog_close(db);
}

/* K2: a catalog from a newer pitcopy is refused, and left alone. */
static void test_newer_schema(void **state)
{
    struct fix *f = *state;
    struct pc_error err = { 0 };
    sqlite3 *db;
    int v = 0;
    assert_int_equal(catalog_open(f->path, &db, &v, &err), 0);
    assert_int_equal(sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (99, 'later')",
                                  NULL, NULL, NULL), SQLITE_OK);
    catalog_close(db);
    assert_int_equal(catalog_open(f->path, &db, &v, &err), -EPROTONOSUPPORT);
    assert_null(db);
    assert_non_null(strstr(err.msg, "schema version 99"));
    assert_non_null(strstr(err.msg, f->path));
}

/* K4: not a database at all. */
static void test_garbage(void **state)
{
    struct fix *f = *state;
    struct pc_error err = { 0 };
    char junk[8192];
    sqlite3 *db;
    int v = 0;
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7 + 3);
    write_file(f->path, junk, sizeof junk, 0);
    assert_int_equal(catalog_open(f->path, &db, &v, &err), -EUCLEAN);
    assert_null(db);
    assert_non_null(strstr(err.msg, f->path));
    assert_non_null(strstr(err.msg, "move it aside"));
}

/* K4: someone else's database is not written to. */
static void test_foreign_database(void **state)
{
    struct fix *f = *state;
    struct pc_error err = { 0 };
    sqlite3 *db;
    int v = 0;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE photos (id INTEGER)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(catalog_open(f->path, &db, &v, &err), -EUCLEAN);
    assert_non_null(strstr(err.msg, "no schema version"));
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(one_int(db, "SELECT count(*) FROM sqlite_master"), 1);
    sqlite3_close(db);
}

/* A damaged page inside a real catalog is found at open (quick_check). */
static void test_damaged_page(void **state)
{
    struct fix *f = *state;
    struct pc_error err = { 0 };
    sqlite3 *db;
    int v = 0;
    assert_int_equal(catalog_open(f->path, &db, &v, &err), 0);
    assert_int_equal(sqlite3_exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 "
                                  "FROM n WHERE i < 2000) INSERT INTO history (session, action, "
                                  "kind, origin, start_ms, outcome, message) SELECT 's', "
                                  "'flash', 'action', 'cli', i, 'ok', hex(randomblob(40)) "
                                  "FROM n", NULL, NULL, NULL), SQLITE_OK);
    catalog_close(db);
    char junk[4096];
    memset(junk, 0xa5, sizeof junk);
    write_file(f->path, junk, 4096, 4096 * 5);   /* a whole page, header included */
    assert_int_equal(catalog_open(f->path, &db, &v, &err), -EUCLEAN);
    assert_non_null(strstr(err.msg, "corrupt"));
}

/* M4: the management layer opens anyway and answers every request with the error. */
static void test_mgmt_unusable_catalog(void **state)
{
    struct fix *f = *state;
    struct pc_error err = { 0 };
    struct mgmt *m;
    json_t *res = NULL;
    write_file(f->path, "this is not a database, it is a text file that happens to be here"
               "..........................................................", 120, 0);
    struct mgmt_opts o = { .dir = f->dir };
    assert_int_equal(mgmt_open(&o, &m, &err), 0);
    assert_int_equal(mgmt_request(m, "session.list", NULL, &res, &err), -EUCLEAN);
    assert_null(res);
    assert_non_null(strstr(err.msg, f->path));
    json_t *p = json_pack("{s:s, s:s}", "name", "here", "type", "local");
    assert_int_equal(mgmt_request(m, "system.add", p, &res, &err), -EUCLEAN);
    json_decref(p);
    json_t *st = mgmt_status(m);
    assert_true(json_is_string(json_object_get(st, "error")));
    json_decref(st);
    assert_int_equal(mgmt_start(m, &err), 0);    /* no scheduler, no crash */
    mgmt_close(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mgmt_unusable_catalog, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
