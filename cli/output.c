/* SPDX-License-Identifier: MIT */
/*
 * cli/output.c — how the CLI prints: JSON, aligned tables, key/value
 * blocks, rates, and a mapping's progress.
 *
 * Invariants
 *   O1  Results go to stdout; progress and errors to stderr, so
 *       `--json | jq` and `> file` see only the answer.
 *
 * Context
 *   The CLI's one thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

void out_json(const json_t *j)
{
    json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', stdout);
}

/* ------------------------------------------------------------------------
 * Tables. */

struct out_table {
    unsigned ncols, nrows, cap;
    char   **cells;        /* (nrows + 1) * ncols; row 0 the headers */
    bool    *right;
};

struct out_table *out_table_new(unsigned ncols, const char *const *headers)
{
    struct out_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncols = ncols;
    t->right = calloc(ncols, sizeof *t->right);
    for (unsigned i = 0; i < ncols && t->right; i++)
        t->right[i] = headers[i][0] == '>';
    const char *h[16];
    for (unsigned i = 0; i < ncols && i < 16; i++)
        h[i] = headers[i] + (headers[i][0] == '>');
    out_table_row(t, h);
    return t;
}

void out_table_row(struct out_table *t, const char *const *cells)
{
    if (!t)
        return;
    if (t->nrows == t->cap) {
        unsigned cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, (size_t)cap * t->ncols * sizeof *c);
        if (!c)
            return;
        t->cells = c;
        t->cap = cap;
    }
    for (unsigned i = 0; i < t->ncols; i++)
        t->cells[(size_t)t->nrows * t->ncols + i] = strdup(cells[i] ? cells[i] : "");
    t->nrows++;
}

void out_table_print(struct out_table *t, FILE *f)
{
    if (!t)
        return;
    size_t width[16] = { 0 };
    for (unsigned r = 0; r < t->nrows; r++)
        for (unsigned i = 0; i < t->ncols && i < 16; i++) {
            const char *c = t->cells[(size_t)r * t->ncols + i];
            size_t n = c ? strlen(c) : 0;
            if (n > width[i])
                width[i] = n;
        }
    for (unsigned r = 0; r < t->nrows; r++) {
        for (unsigned i = 0; i < t->ncols && i < 16; i++) {
            const char *c = t->cells[(size_t)r * t->ncols + i];
            bool last = i + 1 == t->ncols;
            if (t->right && t->right[i])
                fprintf(f, "%*s", (int)width[i], c ? c : "");
            else if (last)
                fputs(c ? c : "", f);
            else
                fprintf(f, "%-*s", (int)width[i], c ? c : "");
            if (!last)
                fputs("  ", f);
        }
        fputc('\n', f);
    }
}

void out_table_free(struct out_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < (size_t)t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->right);
    free(t);
}

/* ------------------------------------------------------------------------
 * Values. */

void out_kv(const char *key, const char *fmt, ...)
{
    va_list ap;
    char k[64];
    snprintf(k, sizeof k, "%s:", key);
    printf("%-20s ", k);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

const char *out_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

long long out_int(const json_t *obj, const char *key)
{
    return (long long)json_integer_value(json_object_get(obj, key));
}

bool out_bool(const json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

void out_rate(const json_t *obj, const char *key, char *buf, size_t len)
{
    const json_t *r = json_object_get(obj, key);
    if (!json_is_integer(r)) {
        snprintf(buf, len, "%s", json_is_string(r) ? json_string_value(r) : "?");
        return;
    }
    long long v = (long long)json_integer_value(r);
    if (v == 0) {
        snprintf(buf, len, "0 (%s)", strcmp(key, "copy_rate") == 0 ? "no background copy"
                                                                    : "no cleaning");
        return;
    }
    char size[32];
    args_format_size(pc_rate_bytes_per_sec((int)v), size, sizeof size);
    snprintf(buf, len, "%lld (%s/s)", v, size);
}

/* ------------------------------------------------------------------------
 * Progress. */

void out_progress_init(struct out_progress *p)
{
    memset(p, 0, sizeof *p);
    p->tty = isatty(STDERR_FILENO);
}

void out_progress_show(struct out_progress *p, const json_t *map)
{
    const char *state = out_str(map, "state");
    long long pct = out_int(map, "progress");
    char line[128];
    snprintf(line, sizeof line, "%s %s %lld%% (%lld/%lld grains)", out_str(map, "name"), state,
             pct, out_int(map, "grains_split"), out_int(map, "grains"));
    if (!p->tty) {
        if (strcmp(line, p->last) != 0)
            fprintf(stderr, "%s\n", line);
        snprintf(p->last, sizeof p->last, "%s", line);
        return;
    }
    char bar[41];
    int fill = (int)(pct * 40 / 100);
    for (int i = 0; i < 40; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[40] = '\0';
    fprintf(stderr, "\r%s %-9s [%s] %3lld%%  %lld/%lld grains\033[K", out_str(map, "name"),
            state, bar, pct, out_int(map, "grains_split"), out_int(map, "grains"));
    fflush(stderr);
    p->drawn = true;
}

void out_progress_end(struct out_progress *p)
{
    if (p->tty && p->drawn)
        fputc('\n', stderr);
    p->drawn = false;
}
