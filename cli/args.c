/* SPDX-License-Identifier: MIT */
/*
 * cli/args.c — see args.h.  Compiled into `pitcopy` and #included whole by
 * tests/unit/test-cli-*.c.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli/args.h"

static const struct args_opt *args_find(const struct args_opt *opts, const char *name,
                                        size_t len)
{
    for (const struct args_opt *o = opts; o->name; o++)
        if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

int args_parse(int argc, char **argv, const struct args_opt *opts, struct args *out,
               char *err, size_t errlen)
{
    bool only_pos = false;
    out->npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && strcmp(a, "-h") == 0 && args_find(opts, "help", 4))
            a = "--help";
        if (!only_pos && a[0] == '-' && a[1] != '\0') {
            if (a[1] != '-') {
                snprintf(err, errlen, "unknown option %s (options are spelled --name)", a);
                return -EINVAL;
            }
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const struct args_opt *o = args_find(opts, name, len);
            if (!o || len == 0) {
                snprintf(err, errlen, "unknown option --%.*s", (int)len, name);
                return -EINVAL;
            }
            if (o->kind == ARGS_FLAG) {
                if (eq) {
                    snprintf(err, errlen, "option --%s takes no value", o->name);
                    return -EINVAL;
                }
                *o->flag = true;
                continue;
            }
            const char *val;
            if (eq) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                snprintf(err, errlen, "option --%s needs a value", o->name);
                return -EINVAL;
            }
            if (o->kind == ARGS_MULTI) {
                if (*o->count >= o->max) {
                    snprintf(err, errlen, "option --%s given more than %u times", o->name,
                             o->max);
                    return -EINVAL;
                }
                o->value[(*o->count)++] = val;
            } else {
                *o->value = val;
            }
            continue;
        }
        if (out->npos == ARGS_MAX_POS) {
            snprintf(err, errlen, "too many arguments (from '%s' on)", a);
            return -EINVAL;
        }
        out->pos[out->npos++] = a;
    }
    return 0;
}

int args_parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
            return -ERANGE;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    unsigned shift = 0;
    switch (*p) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    case 't': case 'T': shift = 40; break;
    case 'p': case 'P': shift = 50; break;
    case '\0': break;
    default: return -EINVAL;
    }
    if (shift) {
        p++;
        if (*p == 'i' && (p[1] == 'B' || p[1] == 'b'))
            p += 2;
        else if (*p == 'B' || *p == 'b')
            p++;
    }
    if (*p)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -ERANGE;
    *out = v << shift;
    return 0;
}

int args_parse_duration(const char *s, int64_t *ms)
{
    const int64_t max = 10ll * 365 * 24 * 3600 * 1000;
    int64_t whole = 0, frac = 0, scale = 1000;
    const char *p = s;
    if (*p < '0' || *p > '9')
        return -EINVAL;
    for (; *p >= '0' && *p <= '9'; p++) {
        whole = whole * 10 + (*p - '0');
        if (whole > max)
            return -ERANGE;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        int64_t unit = 1000000;   /* fractions kept to a microsecond, rounded down */
        for (; *p >= '0' && *p <= '9'; p++) {
            unit /= 10;
            frac += (*p - '0') * unit;
        }
    }
    switch (*p) {
    case 's': p++; break;
    case 'm': scale = 60 * 1000; p++; break;
    case 'h': scale = 3600 * 1000; p++; break;
    default: break;
    }
    if (*p)
        return -EINVAL;
    if (whole > max / scale)
        return -ERANGE;
    int64_t v = whole * scale + frac * scale / 1000000;
    if (v > max)
        return -ERANGE;
    *ms = v;
    return 0;
}

void args_format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
    unsigned u = 0;
    while (u + 1 < sizeof units / sizeof units[0] && bytes >> (10 * (u + 1)))
        u++;
    if (u == 0 || bytes % (1ull << (10 * u)) == 0) {
        snprintf(buf, len, "%llu %s", (unsigned long long)(bytes >> (10 * u)), units[u]);
        return;
    }
    /* One decimal, rounded down, so "1.9 GiB" never means more than it has. */
    uint64_t tenths = (bytes >> (10 * (u - 1))) * 10 / 1024;
    snprintf(buf, len, "%llu.%llu %s", (unsigned long long)(tenths / 10),
             (unsigned long long)(tenths % 10), units[u]);
}
