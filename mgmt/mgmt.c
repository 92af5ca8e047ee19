/* SPDX-License-Identifier: MIT */
/*
 * mgmt/mgmt.c — the management layer's lifetime, its clock, and the
 * dispatch of control requests to systems, sessions and schedules.
 *
 * Role
 *   mgmt_open opens the catalog (M4: an unusable one is remembered, not
 *   fatal), marks history rows a crash left running (M3); mgmt_start starts
 *   the scheduler; mgmt_request routes "session.flash" to session.c and so
 *   on.  The clock is the real one, or in tests one that starts where
 *   PITCOPY_TEST_CLOCK says and runs on from there (system.clock sets it).
 *
 * Context
 *   See mgmt.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgmt/driver.h"

void mgmt_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pitcopy: %s\n", line);
}

bool mgmt_unknown_option(const json_t *p, const char *const *known, size_t n, char *flag,
                         size_t len)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)p, key, v) {
        size_t i = 0;
        while (i < n && strcmp(key, known[i]) != 0)
            i++;
        if (i < n)
            continue;
        snprintf(flag, len, "--%s", key);
        for (char *c = flag; *c; c++)
            if (*c == '_')
                *c = '-';
        return true;
    }
    return false;
}

int mgmt_fail(struct pc_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

static int64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mgmt_now_ms_locked(struct mgmt *m)
{
    return real_ms() + m->clock_offset_ms;
}

int64_t mgmt_now_ms(struct mgmt *m)
{
    pthread_mutex_lock(&m->lock);
    int64_t t = mgmt_now_ms_locked(m);
    pthread_mutex_unlock(&m->lock);
    return t;
}

void mgmt_time_text(int64_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

int mgmt_time_parse(const char *s, int64_t *ms)
{
    struct tm tm = { 0 };
    char sep;
    int n = 0, sec = 0;
    if (sscanf(s, "%4d-%2d-%2d%c%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &sep,
               &tm.tm_hour, &tm.tm_min, &n) != 6 || (sep != 'T' && sep != ' '))
        return -EINVAL;
    if (s[n] == ':') {
        int k = 0;
        if (sscanf(s + n + 1, "%2d%n", &sec, &k) != 1)
            return -EINVAL;
        n += 1 + k;
    }
    if (s[n] != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || sec > 59 || tm.tm_year < 1970)
        return -EINVAL;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t == (time_t)-1)
        return -EINVAL;
    *ms = (int64_t)t * 1000;
    return 0;
}

json_t *mgmt_time_json(int64_t ms)
{
    char buf[32];
    if (ms <= 0)
        return json_null();
    mgmt_time_text(ms, buf, sizeof buf);
    return json_string(buf);
}

bool mgmt_name_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

int mgmt_open(const struct mgmt_opts *o, struct mgmt **out, struct pc_error *err)
{
    struct mgmt *m = calloc(1, sizeof *m);
    if (!m)
        return mgmt_fail(err, -ENOMEM, "out of memory");
    m->dir = strdup(o->dir);
    if (!m->dir || asprintf(&m->path, "%s/%s", o->dir, MGMT_CATALOG_NAME) < 0) {
        free(m->dir);
        free(m);
        return mgmt_fail(err, -ENOMEM, "out of memory");
    }
    driver_global_init();   /* before any thread can use a driver */
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->sched_cond, NULL);
    m->call = o->call;
    m->call_arg = o->call_arg;
    if (o->test_clock > 0) {
        m->test_clock = true;
        m->clock_offset_ms = o->test_clock * 1000 - real_ms();
    }
    struct pc_error cerr = { 0 };
    int r = catalog_open(m->path, &m->db, &m->schema_version, &cerr);
    if (r < 0) {
        m->db = NULL;
        m->db_code = r;
        snprintf(m->db_error, sizeof m->db_error, "%s", cerr.msg);
        mgmt_log("%s; sessions, systems and schedules are unavailable until it is fixed "
                 "(volumes and mappings are served as usual)", cerr.msg);
    } else {
        history_interrupted(m);
    }
    *out = m;
    return 0;
}

void mgmt_set_call(struct mgmt *m, mgmt_call_fn call, void *arg)
{
    pthread_mutex_lock(&m->lock);
    m->call = call;
    m->call_arg = arg;
    pthread_mutex_unlock(&m->lock);
}

int mgmt_start(struct mgmt *m, struct pc_error *err)
{
    return schedule_start(m, err);
}

void mgmt_stop(struct mgmt *m)
{
    if (m)
        schedule_stop(m);
}

void mgmt_close(struct mgmt *m)
{
    if (!m)
        return;
    mgmt_stop(m);
    if (m->db)
        catalog_close(m->db);
    while (m->busy) {
        struct mgmt_busy *b = m->busy;
        m->busy = b->next;
        free(b);
    }
    pthread_cond_destroy(&m->sched_cond);
    pthread_mutex_destroy(&m->lock);
    free(m->path);
    free(m->dir);
    free(m);
    driver_global_cleanup();
}

static int count(struct mgmt *m, const char *table)
{
    char sql[64];
    json_t *row;
    snprintf(sql, sizeof sql, "SELECT count(*) AS n FROM %s", table);
    if (catalog_row(m, NULL, &row, sql, NULL) < 0)
        return -1;
    int n = (int)json_integer_value(json_object_get(row, "n"));
    json_decref(row);
    return n;
}

json_t *mgmt_status(struct mgmt *m)
{
    pthread_mutex_lock(&m->lock);
    bool ok = m->db && !m->db_code;
    json_t *j = json_pack("{s:s, s:i, s:s?}", "catalog", m->path,
                          "schema_version", ok ? m->schema_version : 0,
                          "error", ok ? NULL : m->db_error);
    json_object_set_new(j, "systems", ok ? json_integer(count(m, "systems")) : json_null());
    json_object_set_new(j, "sessions", ok ? json_integer(count(m, "sessions")) : json_null());
    json_object_set_new(j, "schedules", ok ? json_integer(count(m, "schedules")) : json_null());
    json_object_set_new(j, "test_clock", json_boolean(m->test_clock));
    pthread_mutex_unlock(&m->lock);
    return j;
}

/* system.clock {set?}: read the clock, or (test clock only) set it. */
static int clock_request(struct mgmt *m, const json_t *p, json_t **out, struct pc_error *err)
{
    const char *set = json_string_value(json_object_get(p, "set"));
    int64_t t;
    if (set) {
        if (!m->test_clock)
            return mgmt_fail(err, -EPERM, "the clock can only be set in a daemon started "
                             "with PITCOPY_TEST_CLOCK (tests only)");
        if (mgmt_time_parse(set, &t) < 0)
            return mgmt_fail(err, -EINVAL, "'%s' is not a time like 2024-05-01T23:59:00", set);
        pthread_mutex_lock(&m->lock);
        m->clock_offset_ms = t - real_ms();
        pthread_cond_broadcast(&m->sched_cond);   /* the scheduler looks again */
        pthread_mutex_unlock(&m->lock);
        mgmt_log("test clock set to %s", set);
    }
    t = mgmt_now_ms(m);
    *out = json_pack("{s:o, s:I, s:b}", "now", mgmt_time_json(t), "epoch_ms", (json_int_t)t,
                     "test_clock", m->test_clock);
    return 0;
}

int mgmt_request(struct mgmt *m, const char *method, const json_t *params, json_t **result,
                 struct pc_error *err)
{
    const char *dot = strchr(method, '.');
    *result = NULL;
    if (!dot)
        return mgmt_fail(err, -ENOSYS, "unknown method '%s'", method);
    if (strcmp(method, "system.clock") == 0)
        return clock_request(m, params, result, err);
    pthread_mutex_lock(&m->lock);
    int r = catalog_usable_locked(m, err);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return r;
    if (strncmp(method, "system.", 7) == 0)
        return system_request(m, dot + 1, params, result, err);
    if (strncmp(method, "session.", 8) == 0)
        return session_request(m, dot + 1, params, result, err);
    if (strncmp(method, "schedule.", 9) == 0)
        return schedule_request(m, dot + 1, params, result, err);
    return mgmt_fail(err, -ENOSYS, "unknown method '%s'", method);
}
