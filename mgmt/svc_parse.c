/* SPDX-License-Identifier: MIT */
/*
 * mgmt/svc_parse.c — the array's CLI output as JSON.
 *
 * Role
 *   `svcinfo ls* -delim :` prints a concise view (a header naming the
 *   columns, then one row per object) or, for one object, a detailed view
 *   (`key:value` lines).  These parse both into the shapes the REST API
 *   answers with (svc.h), so the driver reads columns by header name only
 *   (S1): an array that adds, drops or reorders columns is read the same.
 *   Also: the `mk*` success line and a CMMVC refusal in stderr or a REST
 *   error body.
 *
 * Invariants
 *   P1  A row with more or fewer fields than the header is an error, never
 *       guessed at: a value holding the delimiter would shift columns.
 *   P2  Input is the array's (untrusted): every length is bounded and no
 *       function asserts on it.
 *
 * Context
 *   Pure functions.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mgmt/svc.h"
#include "mgmt/svc_array.h"

/* The next line of *p (without its newline, "\r" dropped); NULL at the end. */
static char *next_line(char **p)
{
    char *s = *p;
    if (!s || !*s)
        return NULL;
    char *nl = strchr(s, '\n');
    if (nl) {
        *nl = '\0';
        *p = nl + 1;
    } else {
        *p = s + strlen(s);
    }
    size_t n = strlen(s);
    if (n && s[n - 1] == '\r')
        s[n - 1] = '\0';
    return s;
}

/* Split line on delim into at most max fields; returns the count (max + 1: too many). */
static size_t split(char *line, char delim, char **f, size_t max)
{
    size_t n = 0;
    for (char *s = line;; ) {
        if (n == max)
            return max + 1;
        f[n++] = s;
        char *d = strchr(s, delim);
        if (!d)
            return n;
        *d = '\0';
        s = d + 1;
    }
}

#define SVC_MAX_COLUMNS 256

int svc_parse_concise(const char *text, char delim, json_t **rows, char *why, size_t len)
{
    char *copy = strdup(text ? text : ""), *p = copy, *line;
    char *hdr[SVC_MAX_COLUMNS], *f[SVC_MAX_COLUMNS];
    size_t ncol = 0, lineno = 0;
    json_t *a = json_array();
    *rows = NULL;
    if (!copy || !a) {
        free(copy);
        json_decref(a);
        return -ENOMEM;
    }
    while ((line = next_line(&p))) {
        lineno++;
        if (!*line)
            continue;
        if (!ncol) {
            ncol = split(line, delim, hdr, SVC_MAX_COLUMNS);
            if (ncol > SVC_MAX_COLUMNS) {
                snprintf(why, len, "a header of more than %d columns", SVC_MAX_COLUMNS);
                goto bad;
            }
            continue;
        }
        size_t n = split(line, delim, f, SVC_MAX_COLUMNS);
        if (n != ncol) {                                          /* P1 */
            snprintf(why, len, "line %zu has %zu fields, the header %zu", lineno, n, ncol);
            goto bad;
        }
        json_t *o = json_object();
        for (size_t i = 0; i < ncol; i++)
            json_object_set_new(o, hdr[i], json_string(f[i]));
        json_array_append_new(a, o);
    }
    free(copy);
    *rows = a;
    return 0;
bad:
    free(copy);
    json_decref(a);
    return -EPROTO;
}

json_t *svc_parse_detail(const char *text, char delim)
{
    char *copy = strdup(text ? text : ""), *p = copy, *line;
    json_t *o = json_object();
    if (!copy || !o) {
        free(copy);
        json_decref(o);
        return NULL;
    }
    while ((line = next_line(&p))) {
        char *d = strchr(line, delim);
        if (!*line || !d)
            continue;
        *d = '\0';
        json_t *v = json_string(d + 1), *old = json_object_get(o, line);
        if (!v)
            continue;                     /* not UTF-8: skipped, never guessed at */
        if (json_is_array(old)) {
            json_array_append_new(old, v);
        } else if (old) {
            json_object_set_new(o, line, json_pack("[O, o]", old, v));
        } else {
            json_object_set_new(o, line, v);
        }
    }
    free(copy);
    return o;
}

json_t *svc_parse_created(const char *text)
{
    const char *s = text ? strstr(text, SVC_CREATED_TEXT) : NULL;
    if (!s)
        return NULL;
    /* The id is the digits in the last "[...]" before the text. */
    const char *open = NULL;
    for (const char *q = text; q < s; q++)
        if (*q == '[')
            open = q;
    if (!open)
        return NULL;
    char id[24];
    size_t n = strspn(open + 1, "0123456789");
    if (n == 0 || n >= sizeof id || open[1 + n] != ']')
        return NULL;
    memcpy(id, open + 1, n);
    id[n] = '\0';
    char msg[256];
    const char *end = strchr(text, '\n');
    size_t ml = end ? (size_t)(end - text) : strlen(text);
    snprintf(msg, sizeof msg, "%.*s", (int)(ml < sizeof msg ? ml : sizeof msg - 1), text);
    return json_pack("{s:s, s:s}", "id", id, "message", msg);
}

bool svc_parse_refusal(const char *text, struct svc_refusal *ref)
{
    memset(ref, 0, sizeof *ref);
    for (const char *s = text ? strstr(text, "CMMVC") : NULL; s; s = strstr(s + 1, "CMMVC")) {
        /* CMMVC, four digits, a severity letter. */
        if (strspn(s + 5, "0123456789") != 4 || !isupper((unsigned char)s[9]))
            continue;
        if (s[9] != 'E')
            continue;                     /* a warning (W) is no refusal (§4) */
        memcpy(ref->code, s, 10);
        ref->code[10] = '\0';
        const char *t = s + 10;
        while (*t == ' ' || *t == '\t')
            t++;
        size_t n = strcspn(t, "\r\n\"");
        if (n >= sizeof ref->text)
            n = sizeof ref->text - 1;
        memcpy(ref->text, t, n);
        ref->text[n] = '\0';
        return true;
    }
    return false;
}
