/* SPDX-License-Identifier: MIT */
/*
 * mgmt/cron.c — cron expressions: "m h dom mon dow" and when they next fire.
 *
 * Role
 *   The five fields of crontab(5): each `*`, a number, a range `a-b`, a
 *   step `*\/s` or `a-b/s` (or `a/s`: a to the end), or a comma list of
 *   those; months and weekdays also by their English three-letter names
 *   (jan, mon); weekday 7 is Sunday as 0 is.  As cron has it, when both day
 *   of month and day of week are restricted a day matching either fires.
 *   Times are local (the daemon's TZ), as cron's.
 *
 * Invariants
 *   N1  cron_next(c, t) > t, on a whole minute, and matches every field;
 *       no matching minute is skipped between t and it.
 *
 * Context
 *   Pure functions; any thread.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mgmt/internal.h"

static const char *const field_name[] = { "minute", "hour", "day of month", "month",
                                          "day of week" };
static const int field_min[] = { 0, 0, 1, 1, 0 };
static const int field_max[] = { 59, 23, 31, 12, 7 };
static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul",
                                      "aug", "sep", "oct", "nov", "dec" };
static const char *const days[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

/* A number or (months, weekdays) a name at *p; advances *p. */
static int parse_value(int f, const char **p, int *v)
{
    const char *s = *p;
    if (isdigit((unsigned char)*s)) {
        long n = 0;
        while (isdigit((unsigned char)*s) && n < 1000)
            n = n * 10 + (*s++ - '0');
        if (isdigit((unsigned char)*s))
            return -EINVAL;
        *v = (int)n;
        *p = s;
        return 0;
    }
    const char *const *names = f == 3 ? months : f == 4 ? days : NULL;
    int count = f == 3 ? 12 : 7;
    for (int i = 0; names && i < count; i++) {
        if (strncasecmp(s, names[i], 3) == 0 && !isalpha((unsigned char)s[3])) {
            *v = f == 3 ? i + 1 : i;
            *p = s + 3;
            return 0;
        }
    }
    return -EINVAL;
}

static int parse_field(int f, const char *s, uint64_t *bits, bool *star, char *msg, size_t len)
{
    const char *p = s;
    *bits = 0;
    *star = strcmp(s, "*") == 0;
    for (;;) {
        int lo, hi, step = 1;
        bool range_star = false;
        if (*p == '*') {
            lo = field_min[f];
            hi = field_max[f];
            range_star = true;
            p++;
        } else {
            if (parse_value(f, &p, &lo) < 0)
                goto bad;
            hi = lo;
            if (*p == '-') {
                p++;
                if (parse_value(f, &p, &hi) < 0)
                    goto bad;
            }
        }
        if (*p == '/') {
            p++;
            if (!isdigit((unsigned char)*p) || parse_value(0, &p, &step) < 0 || step < 1)
                goto bad;
            if (!range_star && hi == lo)
                hi = field_max[f];        /* "5/15": from 5 to the end */
        }
        if (lo < field_min[f] || hi > field_max[f] || lo > hi) {
            snprintf(msg, len, "%s field '%s': values go from %d to %d", field_name[f], s,
                     field_min[f], field_max[f]);
            return -EINVAL;
        }
        for (int v = lo; v <= hi; v += step)
            *bits |= 1ull << (f == 4 && v == 7 ? 0 : v);
        if (*p == '\0')
            return 0;
        if (*p != ',')
            goto bad;
        p++;
    }
bad:
    snprintf(msg, len, "%s field '%s' is not a cron field (*, 5, 1-5, */15, 1,15, or "
             "names like mon, jan)", field_name[f], s);
    return -EINVAL;
}

int cron_parse(const char *expr, struct cron *c, char *msg, size_t msglen)
{
    char buf[256], *fields[6], *save = NULL;
    int n = 0;
    if (strlen(expr) >= sizeof buf) {
        snprintf(msg, msglen, "the cron expression is too long");
        return -EINVAL;
    }
    snprintf(buf, sizeof buf, "%s", expr);
    for (char *t = strtok_r(buf, " \t", &save); t && n < 6; t = strtok_r(NULL, " \t", &save))
        fields[n++] = t;
    if (n != 5) {
        snprintf(msg, msglen, "'%s' has %s fields; a cron expression has five: minute hour "
                 "day-of-month month day-of-week (like \"59 23 * * *\")", expr,
                 n > 5 ? "more than five" : n == 0 ? "no" : n == 1 ? "one" : n == 2 ? "two"
                 : n == 3 ? "three" : "four");
        return -EINVAL;
    }
    memset(c, 0, sizeof *c);
    uint64_t bits[5];
    bool star[5];
    for (int f = 0; f < 5; f++)
        if (parse_field(f, fields[f], &bits[f], &star[f], msg, msglen) < 0)
            return -EINVAL;
    c->minute = bits[0];
    c->hour = (uint32_t)bits[1];
    c->dom = (uint32_t)bits[2];
    c->month = (uint16_t)bits[3];
    c->dow = (uint8_t)bits[4];
    c->dom_star = star[2];
    c->dow_star = star[4];
    return 0;
}

static bool day_matches(const struct cron *c, const struct tm *tm)
{
    bool dom = c->dom & (1u << tm->tm_mday), dow = c->dow & (1u << tm->tm_wday);
    if (c->dom_star || c->dow_star)
        return dom && dow;      /* a star matches every day, so this is the other one */
    return dom || dow;
}

int64_t cron_next(const struct cron *c, int64_t t)
{
    time_t start = (time_t)t;
    struct tm tm;
    localtime_r(&start, &tm);
    tm.tm_sec = 0;
    tm.tm_min++;                                /* N1: strictly after t */
    tm.tm_isdst = -1;
    time_t limit = start + 5 * 366 * 86400;
    for (;;) {
        time_t now = mktime(&tm);               /* normalizes the fields */
        if (now == (time_t)-1 || now > limit)
            return -1;
        localtime_r(&now, &tm);
        if (!(c->month & (1u << (tm.tm_mon + 1)))) {
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = tm.tm_min = 0;
        } else if (!day_matches(c, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = tm.tm_min = 0;
        } else if (!(c->hour & (1u << tm.tm_hour))) {
            tm.tm_hour++;
            tm.tm_min = 0;
        } else if (!(c->minute & (1ull << tm.tm_min))) {
            tm.tm_min++;
        } else {
            return (int64_t)now;
        }
        tm.tm_sec = 0;
        tm.tm_isdst = -1;
    }
}
