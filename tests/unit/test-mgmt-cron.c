/* SPDX-License-Identifier: MIT */
/* Description: cron expressions: parsing at the field boundaries, and the next run (N1). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "mgmt/internal.h"

static void test_parse_table(void **state)
{
    static const struct { const char *expr; int ret; const char *msg; } rows[] = {
        { "59 23 * * *",          0,       NULL },
        { "* * * * *",            0,       NULL },
        { "0 0 1 1 0",            0,       NULL },
        { "59 23 31 12 7",        0,       NULL },
        { "*/15 9-17 * * mon-fri", 0,      NULL },
        { "0,30 */2 1,15 jan,JUL sun", 0,  NULL },
        { "5/20 * * * *",         0,       NULL },
        { "1-59/2 * * * *",       0,       NULL },
        { "  59\t23 * *  *  ",    0,       NULL },
        { "60 * * * *",           -EINVAL, "minute field '60': values go from 0 to 59" },
        { "* 24 * * *",           -EINVAL, "hour field" },
        { "* * 0 * *",            -EINVAL, "day of month field '0'" },
        { "* * 32 * *",           -EINVAL, "day of month" },
        { "* * * 0 *",            -EINVAL, "month field" },
        { "* * * 13 *",           -EINVAL, "month field" },
        { "* * * * 8",            -EINVAL, "day of week" },
        { "5-1 * * * *",          -EINVAL, "minute field '5-1'" },
        { "*/0 * * * *",          -EINVAL, "not a cron field" },
        { "a * * * *",            -EINVAL, "not a cron field" },
        { "1, * * * *",           -EINVAL, "not a cron field" },
        { "* * * foo *",          -EINVAL, "month field 'foo'" },
        { "* * * * mond",         -EINVAL, "day of week field" },
        { "99999999999 * * * *",  -EINVAL, "minute" },
        { "59 23 * *",            -EINVAL, "has four fields" },
        { "59 23 * * * *",        -EINVAL, "more than five" },
        { "",                     -EINVAL, "has no fields" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct cron c;
        char msg[200] = "";
        int r = cron_parse(rows[i].expr, &c, msg, sizeof msg);
        if (r != rows[i].ret || (rows[i].msg && !strstr(msg, rows[i].msg)))
            fail_msg("'%s': got %d '%s', want %d '%s'", rows[i].expr, r, msg, rows[i].ret,
                     rows[i].msg ? rows[i].msg : "");
    }
}

static int64_t at(const char *s)
{
    struct tm tm = { 0 };
    char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(end);
    return (int64_t)timegm(&tm);
}

static void test_next_table(void **state)
{
    static const struct { const char *expr, *from, *next; } rows[] = {
        { "59 23 * * *",   "2024-05-01T12:00:00", "2024-05-01T23:59:00" },
        { "59 23 * * *",   "2024-05-01T23:58:59", "2024-05-01T23:59:00" },
        /* Strictly after: at the minute itself, the next day's. */
        { "59 23 * * *",   "2024-05-01T23:59:00", "2024-05-02T23:59:00" },
        { "59 23 * * *",   "2024-05-01T23:59:30", "2024-05-02T23:59:00" },
        { "59 23 * * *",   "2024-12-31T23:59:00", "2025-01-01T23:59:00" },
        { "* * * * *",     "2024-05-01T10:00:00", "2024-05-01T10:01:00" },
        { "*/15 * * * *",  "2024-05-01T10:14:59", "2024-05-01T10:15:00" },
        { "0 0 29 2 *",    "2024-03-01T00:00:00", "2028-02-29T00:00:00" },
        { "0 0 31 * *",    "2024-04-01T00:00:00", "2024-05-31T00:00:00" },
        /* Both day fields restricted: either matches (the 1st, or a Monday). */
        { "0 12 1 * mon",  "2024-05-02T00:00:00", "2024-05-06T12:00:00" },
        { "0 12 1 * mon",  "2024-05-27T13:00:00", "2024-06-01T12:00:00" },
        /* One restricted: only it counts. */
        { "0 12 * * sun",  "2024-05-01T00:00:00", "2024-05-05T12:00:00" },
        { "0 12 * * 7",    "2024-05-01T00:00:00", "2024-05-05T12:00:00" },
        { "30 8 * jun *",  "2024-05-01T00:00:00", "2024-06-01T08:30:00" },
        { "0 0 1 1 *",     "2024-01-01T00:00:00", "2025-01-01T00:00:00" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct cron c;
        char msg[200];
        assert_int_equal(cron_parse(rows[i].expr, &c, msg, sizeof msg), 0);
        int64_t got = cron_next(&c, at(rows[i].from));
        if (got != at(rows[i].next)) {
            char buf[32] = "none";
            time_t t = (time_t)got;
            struct tm tm;
            if (got > 0)
                strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", gmtime_r(&t, &tm));
            fail_msg("'%s' after %s: got %s, want %s", rows[i].expr, rows[i].from, buf,
                     rows[i].next);
        }
    }
}

static void test_never(void **state)
{
    struct cron c;
    char msg[200];
    (void)state;
    assert_int_equal(cron_parse("0 0 30 2 *", &c, msg, sizeof msg), 0);
    assert_int_equal(cron_next(&c, at("2024-01-01T00:00:00")), -1);
}

/* N1 by brute force: every minute of a year against a few expressions. */
static void test_next_matches_walk(void **state)
{
    static const char *const exprs[] = { "*/7 3-5 * * *", "0 0 13 * fri", "15 6 * 2,11 1-3" };
    (void)state;
    for (size_t e = 0; e < sizeof exprs / sizeof exprs[0]; e++) {
        struct cron c;
        char msg[200];
        assert_int_equal(cron_parse(exprs[e], &c, msg, sizeof msg), 0);
        int64_t t = at("2024-01-01T00:00:00"), end = at("2025-01-01T00:00:00");
        int64_t expect = cron_next(&c, t - 1);
        for (int64_t m = t; m < end; m += 60) {
            struct tm tm;
            time_t tt = (time_t)m;
            gmtime_r(&tt, &tm);
            bool dom = c.dom & (1u << tm.tm_mday), dow = c.dow & (1u << tm.tm_wday);
            bool day = c.dom_star || c.dow_star ? dom && dow : dom || dow;
            bool match = (c.minute & (1ull << tm.tm_min)) && (c.hour & (1u << tm.tm_hour)) &&
                         (c.month & (1u << (tm.tm_mon + 1))) && day;
            if (match) {
                if (expect != m)
                    fail_msg("'%s': next after the previous match was %lld, the walk found "
                             "%lld", exprs[e], (long long)expect, (long long)m);
                expect = cron_next(&c, m);
            }
        }
    }
}

int main(void)
{
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_next_table),
        cmocka_unit_test(test_never),
        cmocka_unit_test(test_next_matches_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
