/* SPDX-License-Identifier: MIT */
/*
 * mgmt/driver_svc.c — the `svc` driver: sessions on an IBM Spectrum
 * Virtualize array (SVC, Storwize, FlashSystem), over SSH or REST.
 *
 * Role
 *   The array does the copy; this drives its own FlashCopy flows
 *   (svc_array.h spells every command, column and state):
 *
 *     copy sets      one FlashCopy mapping each, H1 -> T1, named
 *                    csm-SESSION-ID, incremental, all in one FlashCopy
 *                    consistency group csm-SESSION (mkfcconsistgrp,
 *                    mkfcmap -source -target -name -consistgrp -copyrate
 *                    -incremental)
 *     prepare        create what is missing; a group still copying from the
 *                    last flash is stopped (stopfcconsistgrp); then
 *                    prestartfcconsistgrp and poll lsfcconsistgrp until
 *                    prepared
 *     flash          startfcconsistgrp: the point in time (V1)
 *     start          chfcmap -copyrate RATE, startfcconsistgrp (an
 *                    incremental mapping copies only what changed)
 *     background     chfcmap -copyrate RATE on each mapping
 *     stop           stopfcconsistgrp
 *     withdraw       stopfcconsistgrp -force, rmfcmap -force each,
 *                    rmfcconsistgrp -force
 *     restore        mkfcmap -source T1 -target H1 -name csm-SESSION-ID-r,
 *                    startfcmap -prep -restore for each
 *     query          lsfcmap and lsfcconsistgrp filtered by name
 *     volume checks  lsvdisk -bytes, lsfcmap -filtervalue target_vdisk_name=
 *
 *   Mappings and the group are found again by name (V2): every action
 *   first reads what the array has, so a flash cut off between prepare and
 *   start continues from `prepared` when run again, and a mapping whose
 *   mkfcmap answer was lost is found, not made twice.
 *
 * Invariants
 *   V1-V3 (driver.h), S1-S2 (svc_array.h), T1-T2 (svc.h).
 *   D1  What one action created on the array is removed again when the
 *       array refuses a later step of that action (a refusal means the
 *       array is in a known state); after a lost connection nothing is
 *       undone (the state is unknown) and a re-run picks it up.  So a
 *       failed flash leaves no mapping behind that the session does not
 *       name.
 *   D2  A mapping of the session's name that maps other volumes is never
 *       used or removed by a flash: the action fails naming both.
 *
 * Context
 *   The action's thread; blocks while the array prepares or stops (at most
 *   SVC_WAIT_S each) and for every command's round trip.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/driver.h"
#include "mgmt/svc.h"
#include "mgmt/svc_array.h"

#define SVC_RESTORE_RATE 100

struct svc_drv {
    struct svc_link *link;
    bool             made_group;   /* D1: this action created the group */
    bool             prestarted;   /* ... and prepared it */
    bool            *made_map;     /* ... and these mappings (per copy set) */
    bool            *made_rmap;    /* ... and these reverse mappings */
    unsigned         ncs;
};

/* ------------------------------------------------------------------------
 * Commands. */

static void cmd_init(struct svc_cmd *c, const char *name, bool listing, const char *obj)
{
    memset(c, 0, sizeof *c);
    c->name = name;
    c->listing = listing;
    c->obj = obj;
}

static void cmd_arg(struct svc_cmd *c, const char *flag, const char *value)
{
    if (c->nargs < SVC_MAX_ARGS)
        c->args[c->nargs++] = (struct svc_arg){ flag, value };
}

static void cmd_argi(struct svc_cmd *c, const char *flag, long v)
{
    if (c->nnum >= sizeof c->num / sizeof c->num[0])
        return;
    char *s = c->num[c->nnum++];
    snprintf(s, sizeof c->num[0], "%ld", v);
    cmd_arg(c, flag, s);
}

static void drv_close(struct mgmt_driver *d)
{
    struct svc_drv *x = d->priv;
    svc_link_close(x->link);
    free(x->made_map);
    free(x->made_rmap);
    free(x);
    d->priv = NULL;
}

static int drv(struct mgmt_driver *d, struct svc_drv **out, struct pc_error *err)
{
    if (!d->priv) {
        struct svc_drv *x = calloc(1, sizeof *x);
        if (!x)
            return mgmt_fail(err, -ENOMEM, "out of memory");
        int r = svc_link_open(d->system ? d->system : "?", d->options, d->state_dir,
                              &x->link, err);
        if (r < 0) {
            free(x);
            return r;
        }
        d->priv = x;
    }
    *out = d->priv;
    return 0;
}

/* Send c (a change is recorded; in a dry run only recorded).  T2. */
static int send(struct mgmt_driver *d, struct svc_cmd *c, json_t **res,
                struct svc_refusal *ref, struct pc_error *err)
{
    struct svc_drv *x = NULL;
    int r = drv(d, &x, err);
    if (res)
        *res = NULL;
    memset(ref, 0, sizeof *ref);
    if (r < 0)
        return r;
    if (!c->listing) {
        char line[2048];
        svc_link_render(x->link, c, line, sizeof line);
        json_array_append_new(d->commands, json_string(line));
        if (d->dry_run)
            return 0;
    }
    return svc_link_run(x->link, c, res, ref, err);
}

/*
 * V3: a failure of `what` (a command on an object) as a sentence naming it.
 * A refusal gets the code's meaning; a lost connection says to run again.
 */
static int explain(struct mgmt_driver *d, int r, const struct svc_refusal *ref,
                   struct pc_error *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int explain(struct mgmt_driver *d, int r, const struct svc_refusal *ref,
                   struct pc_error *err, const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (r == -EREMOTEIO && ref->code[0]) {
        const struct svc_code *k = svc_code_find(ref->code);
        return mgmt_fail(err, k ? k->err : -EREMOTEIO, "system %s refused %s: %s (%s)",
                         d->system, what, k ? k->meaning : ref->text, ref->code);
    }
    if (r == -ECONNABORTED) {
        char was[sizeof err->msg];
        snprintf(was, sizeof was, "%s", err->msg);
        return mgmt_fail(err, r, "%s; run it again: pitcopy reads the array's state first",
                         was);
    }
    return r;
}

/* ------------------------------------------------------------------------
 * Reading the array. */

static const char *col(const json_t *row, const char *name)
{
    const char *s = json_string_value(json_object_get(row, name));
    return s ? s : "";
}

static long coli(const json_t *row, const char *name)
{
    return strtol(col(row, name), NULL, 10);
}

/* The rows of a listing (filter "attr=value"). */
static int list(struct mgmt_driver *d, const char *what, const char *filter, bool bytes,
                json_t **rows, struct pc_error *err)
{
    struct svc_cmd c;
    struct svc_refusal ref;
    cmd_init(&c, what, true, NULL);
    if (bytes)
        cmd_arg(&c, SVC_F_BYTES, NULL);
    if (filter)
        cmd_arg(&c, SVC_F_FILTER, filter);
    int r = send(d, &c, rows, &ref, err);
    if (r < 0)
        return explain(d, r, &ref, err, "%s -filtervalue %s", what, filter ? filter : "");
    if (!json_is_array(*rows)) {          /* an empty answer, or not a listing */
        json_decref(*rows);
        *rows = json_array();
    }
    return 0;
}

/* The session's mappings (rel and rrel names), by name. */
static int read_maps(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **byname,
                     struct pc_error *err)
{
    char filter[128];
    json_t *rows, *row;
    size_t i;
    snprintf(filter, sizeof filter, "%s=%s-*", SVC_C_NAME, s->group);
    int r = list(d, SVC_LSFCMAP, filter, false, &rows, err);
    if (r < 0)
        return r;
    *byname = json_object();
    /* The wildcard may match another session's (csm-a-b-1 for session a):
     * only exact names count. */
    json_array_foreach(rows, i, row) {
        const char *n = col(row, SVC_C_NAME);
        for (unsigned k = 0; k < s->ncs; k++)
            if (strcmp(n, s->cs[k].rel) == 0 || strcmp(n, s->cs[k].rrel) == 0)
                json_object_set(*byname, n, row);
    }
    json_decref(rows);
    return 0;
}

/* The group's row, or *row NULL when there is none. */
static int read_group(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **row,
                      struct pc_error *err)
{
    char filter[128];
    json_t *rows;
    snprintf(filter, sizeof filter, "%s=%s", SVC_C_NAME, s->group);
    int r = list(d, SVC_LSFCGRP, filter, false, &rows, err);
    if (r < 0)
        return r;
    *row = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return 0;
}

static bool is(const char *status, const char *a)
{
    return strcmp(status, a) == 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/*
 * Poll the group while it is in one of the passing states (the array
 * moves on by itself: preparing -> prepared, stopping -> stopped); its
 * status then into st.
 */
static int wait_group(struct mgmt_driver *d, const struct mgmt_dsession *s,
                      const char *pass1, const char *pass2, char *st, size_t len,
                      struct pc_error *err)
{
    time_t end = time(NULL) + SVC_WAIT_S;
    for (int delay = SVC_POLL_MIN_MS;; delay = delay * 2 > SVC_POLL_MAX_MS ? SVC_POLL_MAX_MS
                                                                           : delay * 2) {
        json_t *g;
        int r = read_group(d, s, &g, err);
        if (r < 0)
            return r;
        snprintf(st, len, "%s", g ? col(g, SVC_C_STATUS) : "");
        json_decref(g);
        if (!g)
            return mgmt_fail(err, -ENOENT, "system %s: FlashCopy consistency group %s "
                             "disappeared while pitcopy waited for it", d->system, s->group);
        if (!is(st, pass1) && !(pass2 && is(st, pass2)))
            return 0;
        if (time(NULL) >= end)
            return mgmt_fail(err, -ETIMEDOUT, "system %s: FlashCopy consistency group %s is "
                             "still %s after %d s", d->system, s->group, st, SVC_WAIT_S);
        sleep_ms(delay);
    }
}

/* ------------------------------------------------------------------------
 * Volumes. */

/* The vdisk's row (with -bytes), or -ENOENT with err naming it. */
static int vdisk(struct mgmt_driver *d, const char *name, json_t **row, struct pc_error *err)
{
    char filter[96];
    json_t *rows;
    snprintf(filter, sizeof filter, "%s=%s", SVC_C_NAME, name);
    int r = list(d, SVC_LSVDISK, filter, true, &rows, err);
    if (r < 0)
        return r;
    *row = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    if (!*row)
        return mgmt_fail(err, -ENOENT, "volume %s does not exist on system %s", name,
                         d->system);
    return 0;
}

/* The mapping t is already the target of (*row NULL: none). */
static int target_of(struct mgmt_driver *d, const char *t, json_t **row, struct pc_error *err)
{
    char filter[96];
    json_t *rows;
    snprintf(filter, sizeof filter, "%s=%s", SVC_C_TARGET_NAME, t);
    int r = list(d, SVC_LSFCMAP, filter, false, &rows, err);
    if (r == 0)
        *row = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return r;
}

static int check_names(struct mgmt_driver *d, const char *h1, const char *t1,
                       struct pc_error *err)
{
    const char *bad = !svc_name_ok(h1) ? h1 : !svc_name_ok(t1) ? t1 : NULL;
    if (bad)
        return mgmt_fail(err, -EINVAL, "'%s' is not a volume name system %s can have (a "
                         "letter or _, then letters, digits, _ . -; at most %d)", bad,
                         d->system, SVC_NAME_MAX);
    if (strcmp(h1, t1) == 0)
        return mgmt_fail(err, -EINVAL, "H1 and T1 are both volume %s; a copy set needs two "
                         "volumes", h1);
    return 0;
}

static int check_copyset(struct mgmt_driver *d, const char *h1, const char *t1,
                         struct pc_error *err)
{
    json_t *a = NULL, *b = NULL, *m = NULL;
    int r = check_names(d, h1, t1, err);
    if (r == 0)
        r = vdisk(d, h1, &a, err);
    if (r == 0)
        r = vdisk(d, t1, &b, err);
    if (r == 0 && strcmp(col(a, SVC_C_CAPACITY), col(b, SVC_C_CAPACITY)) != 0)
        r = mgmt_fail(err, -EINVAL, "volumes %s (%s bytes) and %s (%s bytes) differ in size "
                      "on system %s; H1 and T1 must be the same size", h1,
                      col(a, SVC_C_CAPACITY), t1, col(b, SVC_C_CAPACITY), d->system);
    if (r == 0)
        r = target_of(d, t1, &m, err);
    if (r == 0 && m)
        r = mgmt_fail(err, -EBUSY, "volume %s is already the target of FlashCopy mapping %s "
                      "(%s -> %s) on system %s; a volume is the target of one mapping at most",
                      t1, col(m, SVC_C_NAME), col(m, SVC_C_SOURCE_NAME), t1, d->system);
    json_decref(a);
    json_decref(b);
    json_decref(m);
    return r;
}

/* V3: why mkfcmap src -> tgt was refused, in the copy set's words. */
static int explain_mkfcmap(struct mgmt_driver *d, const char *rel, const char *src,
                           const char *tgt, int r, const struct svc_refusal *ref,
                           struct pc_error *err)
{
    if (r != -EREMOTEIO)
        return explain(d, r, ref, err, "mkfcmap %s", rel);
    struct pc_error e;
    json_t *row = NULL;
    const char *vols[2] = { src, tgt };
    for (int i = 0; i < 2; i++) {
        int vr = vdisk(d, vols[i], &row, &e);
        json_decref(row);
        row = NULL;
        if (vr == -ENOENT)
            return mgmt_fail(err, -ENOENT, "mapping %s (%s -> %s): volume %s does not exist "
                             "on system %s (%s)", rel, src, tgt, vols[i], d->system, ref->code);
    }
    if (target_of(d, tgt, &row, &e) == 0 && row) {
        int rr = mgmt_fail(err, -EBUSY, "mapping %s (%s -> %s): volume %s is already the "
                           "target of FlashCopy mapping %s (from %s) on system %s (%s)", rel,
                           src, tgt, tgt, col(row, SVC_C_NAME), col(row, SVC_C_SOURCE_NAME),
                           d->system, ref->code);
        json_decref(row);
        return rr;
    }
    return explain(d, r, ref, err, "mkfcmap %s (%s -> %s)", rel, src, tgt);
}

/* ------------------------------------------------------------------------
 * D1: undo what this action made, after the array refused a later step. */

static void undo(struct mgmt_driver *d, const struct mgmt_dsession *s)
{
    struct svc_drv *x = d->priv;
    struct svc_cmd c;
    struct svc_refusal ref;
    struct pc_error e;
    char st[32];
    if (!x)
        return;
    if (x->prestarted) {
        cmd_init(&c, SVC_STOPFCGRP, false, s->group);
        cmd_arg(&c, SVC_F_FORCE, NULL);
        if (send(d, &c, NULL, &ref, &e) == 0 && !d->dry_run)
            wait_group(d, s, SVC_S_STOPPING, SVC_S_PREPARING, st, sizeof st, &e);
        x->prestarted = false;
    }
    for (unsigned i = 0; i < x->ncs && i < s->ncs; i++) {
        const char *names[2] = { x->made_map[i] ? s->cs[i].rel : NULL,
                                 x->made_rmap[i] ? s->cs[i].rrel : NULL };
        for (int k = 0; k < 2; k++) {
            if (!names[k])
                continue;
            cmd_init(&c, SVC_RMFCMAP, false, names[k]);
            cmd_arg(&c, SVC_F_FORCE, NULL);
            if (send(d, &c, NULL, &ref, &e) < 0)
                mgmt_log("system %s: undo: %s", d->system, e.msg);
        }
        x->made_map[i] = x->made_rmap[i] = false;
    }
    if (x->made_group) {
        cmd_init(&c, SVC_RMFCGRP, false, s->group);
        cmd_arg(&c, SVC_F_FORCE, NULL);
        if (send(d, &c, NULL, &ref, &e) < 0)
            mgmt_log("system %s: undo: %s", d->system, e.msg);
        x->made_group = false;
    }
}

/* Undo when the failure r was the array's refusal or a check (D1). */
static int fail_undo(struct mgmt_driver *d, const struct mgmt_dsession *s, int r)
{
    if (r != -ECONNABORTED && r != -ETIMEDOUT && r != -EHOSTUNREACH && r != -EPERM &&
        r != -EACCES)
        undo(d, s);
    return r;
}

static int track(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    struct svc_drv *x = NULL;
    int r = drv(d, &x, err);
    if (r < 0)
        return r;
    if (x->ncs != s->ncs) {
        free(x->made_map);
        free(x->made_rmap);
        x->made_map = calloc(s->ncs + 1, sizeof *x->made_map);
        x->made_rmap = calloc(s->ncs + 1, sizeof *x->made_rmap);
        x->ncs = s->ncs;
        if (!x->made_map || !x->made_rmap) {
            x->ncs = 0;
            return mgmt_fail(err, -ENOMEM, "out of memory");
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Actions. */

/* Copy rate of every mapping to rate (in any state, §1.2). */
static int set_rates(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t *maps,
                     int rate, bool need_all, struct pc_error *err)
{
    for (unsigned i = 0; i < s->ncs; i++) {
        const json_t *m = json_object_get(maps, s->cs[i].rel);
        if (!m && need_all)
            return mgmt_fail(err, -ENOENT, "session %s: copy set %s -> %s has no mapping "
                             "(%s) on system %s; flash the session first", s->name,
                             s->cs[i].h1, s->cs[i].t1, s->cs[i].rel, d->system);
        if (!m || coli(m, SVC_C_COPY_RATE) == rate)
            continue;
        struct svc_cmd c;
        struct svc_refusal ref;
        cmd_init(&c, SVC_CHFCMAP, false, s->cs[i].rel);
        cmd_argi(&c, SVC_F_COPYRATE, rate);
        int r = send(d, &c, NULL, &ref, err);
        if (r < 0)
            return explain(d, r, &ref, err, "chfcmap -copyrate %d %s", rate, s->cs[i].rel);
    }
    return 0;
}

/* Reverse mappings still restoring are stopped: a new flash replaces them. */
static int stop_reverse(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t *maps,
                        bool force, struct pc_error *err)
{
    for (unsigned i = 0; i < s->ncs; i++) {
        const json_t *m = json_object_get(maps, s->cs[i].rrel);
        const char *st = col(m, SVC_C_STATUS);
        if (!m || !(is(st, SVC_S_PREPARED) || is(st, SVC_S_COPYING) ||
                    is(st, SVC_S_SUSPENDED)))
            continue;
        struct svc_cmd c;
        struct svc_refusal ref;
        cmd_init(&c, SVC_STOPFCMAP, false, s->cs[i].rrel);
        if (force)
            cmd_arg(&c, SVC_F_FORCE, NULL);
        int r = send(d, &c, NULL, &ref, err);
        if (r < 0)
            return explain(d, r, &ref, err, "stopfcmap %s", s->cs[i].rrel);
    }
    return 0;
}

/* Create or check the group and the mappings (V2, D2). */
static int ensure_all(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t *maps,
                      const json_t *g, struct pc_error *err)
{
    struct svc_drv *x = d->priv;
    struct svc_cmd c;
    struct svc_refusal ref;
    int r;
    if (!g) {
        cmd_init(&c, SVC_MKFCGRP, false, NULL);
        cmd_arg(&c, SVC_F_NAME, s->group);
        if ((r = send(d, &c, NULL, &ref, err)) < 0)
            return explain(d, r, &ref, err, "mkfcconsistgrp -name %s", s->group);
        x->made_group = true;
    }
    for (unsigned i = 0; i < s->ncs; i++) {
        const struct mgmt_copyset *cs = &s->cs[i];
        const json_t *m = json_object_get(maps, cs->rel);
        if (m) {
            if (strcmp(col(m, SVC_C_SOURCE_NAME), cs->h1) ||
                strcmp(col(m, SVC_C_TARGET_NAME), cs->t1))                      /* D2 */
                return mgmt_fail(err, -EEXIST, "mapping %s exists on system %s but maps %s -> "
                                 "%s, not %s -> %s; remove it (rmfcmap) or the copy set",
                                 cs->rel, d->system, col(m, SVC_C_SOURCE_NAME),
                                 col(m, SVC_C_TARGET_NAME), cs->h1, cs->t1);
            if (strcmp(col(m, SVC_C_GROUP_NAME), s->group) != 0) {
                cmd_init(&c, SVC_CHFCMAP, false, cs->rel);
                cmd_arg(&c, SVC_F_CONSISTGRP, s->group);
                if ((r = send(d, &c, NULL, &ref, err)) < 0)
                    return explain(d, r, &ref, err, "chfcmap -consistgrp %s %s", s->group,
                                   cs->rel);
            }
            continue;
        }
        json_t *res = NULL;
        cmd_init(&c, SVC_MKFCMAP, false, NULL);
        cmd_arg(&c, SVC_F_SOURCE, cs->h1);
        cmd_arg(&c, SVC_F_TARGET, cs->t1);
        cmd_arg(&c, SVC_F_NAME, cs->rel);
        cmd_arg(&c, SVC_F_CONSISTGRP, s->group);
        cmd_argi(&c, SVC_F_COPYRATE, s->copy_rate);
        cmd_arg(&c, SVC_F_INCREMENTAL, NULL);
        r = send(d, &c, &res, &ref, err);
        json_decref(res);
        if (r < 0)
            return explain_mkfcmap(d, cs->rel, cs->h1, cs->t1, r, &ref, err);
        x->made_map[i] = true;
    }
    return set_rates(d, s, maps, s->copy_rate, false, err);
}

static int prepare(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    json_t *maps = NULL, *g = NULL;
    struct svc_cmd c;
    struct svc_refusal ref;
    char st[32];
    int r = track(d, s, err);
    if (r == 0)
        r = read_group(d, s, &g, err);
    if (r == 0)
        r = read_maps(d, s, &maps, err);
    if (r == 0)
        r = stop_reverse(d, s, maps, true, err);
    if (r == 0)
        r = ensure_all(d, s, maps, g, err);
    snprintf(st, sizeof st, "%s", g ? col(g, SVC_C_STATUS) : SVC_S_EMPTY);
    json_decref(maps);
    json_decref(g);
    if (r < 0)
        return fail_undo(d, s, r);
    if (!d->dry_run && (is(st, SVC_S_PREPARING) || is(st, SVC_S_STOPPING)))
        r = wait_group(d, s, SVC_S_PREPARING, SVC_S_STOPPING, st, sizeof st, err);
    if (r == 0 && is(st, SVC_S_PREPARED))
        return 0;                    /* V2: prepared before, say by a cut-off flash */
    if (r == 0 && (is(st, SVC_S_COPYING) || is(st, SVC_S_SUSPENDED))) {
        /* The last point in time gives way to the new one. */
        cmd_init(&c, SVC_STOPFCGRP, false, s->group);
        r = send(d, &c, NULL, &ref, err);
        if (r < 0)
            r = explain(d, r, &ref, err, "stopfcconsistgrp %s", s->group);
        else if (!d->dry_run)
            r = wait_group(d, s, SVC_S_STOPPING, NULL, st, sizeof st, err);
    }
    if (r == 0) {
        cmd_init(&c, SVC_PRESTARTFCGRP, false, s->group);
        r = send(d, &c, NULL, &ref, err);
        if (r < 0)
            r = explain(d, r, &ref, err, "prestartfcconsistgrp %s", s->group);
        else
            ((struct svc_drv *)d->priv)->prestarted = true;
    }
    if (r == 0 && !d->dry_run) {
        r = wait_group(d, s, SVC_S_PREPARING, NULL, st, sizeof st, err);
        if (r == 0 && !is(st, SVC_S_PREPARED))
            r = mgmt_fail(err, -EIO, "system %s: FlashCopy consistency group %s did not "
                          "prepare: it is %s (the array could not flush the sources' cache?)",
                          d->system, s->group, st);
    }
    return r < 0 ? fail_undo(d, s, r) : 0;
}

static int start_group(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **info,
                       struct pc_error *err)
{
    struct svc_cmd c;
    struct svc_refusal ref;
    *info = NULL;
    cmd_init(&c, SVC_STARTFCGRP, false, s->group);
    int r = send(d, &c, NULL, &ref, err);
    if (r < 0)
        return fail_undo(d, s, explain(d, r, &ref, err, "startfcconsistgrp %s", s->group));
    if (d->priv)
        ((struct svc_drv *)d->priv)->prestarted = false;
    return 0;
}

static int flash(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **info,
                 struct pc_error *err)
{
    return start_group(d, s, info, err);
}

static int start_incremental(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                             json_t **info, struct pc_error *err)
{
    json_t *maps = NULL;
    *info = NULL;
    int r = read_maps(d, s, &maps, err);
    if (r == 0)
        r = set_rates(d, s, maps, rate, !d->dry_run, err);
    json_decref(maps);
    if (r < 0)
        return fail_undo(d, s, r);
    return start_group(d, s, info, err);
}

static int background_copy(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                           struct pc_error *err)
{
    json_t *maps = NULL;
    int r = read_maps(d, s, &maps, err);
    if (r == 0)
        r = set_rates(d, s, maps, rate, true, err);
    json_decref(maps);
    return r;
}

/* Stop the group (and a restore in progress); wait out the stopping. */
static int stop_all(struct mgmt_driver *d, const struct mgmt_dsession *s, bool force,
                    struct pc_error *err)
{
    json_t *maps = NULL, *g = NULL;
    struct svc_cmd c;
    struct svc_refusal ref;
    char st[32];
    int r = read_group(d, s, &g, err);
    if (r == 0)
        r = read_maps(d, s, &maps, err);
    if (r == 0)
        r = stop_reverse(d, s, maps, force, err);
    /* A mapping of the session left stand-alone (say by a hand's chfcmap). */
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        const json_t *m = json_object_get(maps, s->cs[i].rel);
        const char *ms = col(m, SVC_C_STATUS);
        if (!m || strcmp(col(m, SVC_C_GROUP_NAME), s->group) == 0 ||
            !(is(ms, SVC_S_PREPARED) || is(ms, SVC_S_COPYING) || is(ms, SVC_S_SUSPENDED)))
            continue;
        cmd_init(&c, SVC_STOPFCMAP, false, s->cs[i].rel);
        if (force)
            cmd_arg(&c, SVC_F_FORCE, NULL);
        if ((r = send(d, &c, NULL, &ref, err)) < 0)
            r = explain(d, r, &ref, err, "stopfcmap %s", s->cs[i].rel);
    }
    snprintf(st, sizeof st, "%s", g ? col(g, SVC_C_STATUS) : "");
    if (r == 0 && g && !d->dry_run && is(st, SVC_S_PREPARING))
        r = wait_group(d, s, SVC_S_PREPARING, NULL, st, sizeof st, err);
    if (r == 0 && g && (is(st, SVC_S_PREPARED) || is(st, SVC_S_COPYING) ||
                        is(st, SVC_S_SUSPENDED) || (force && is(st, SVC_S_STOPPING)))) {
        cmd_init(&c, SVC_STOPFCGRP, false, s->group);
        if (force)
            cmd_arg(&c, SVC_F_FORCE, NULL);
        if ((r = send(d, &c, NULL, &ref, err)) < 0)
            r = explain(d, r, &ref, err, "stopfcconsistgrp %s", s->group);
    }
    if (r == 0 && g && !d->dry_run)
        r = wait_group(d, s, SVC_S_STOPPING, NULL, st, sizeof st, err);
    json_decref(maps);
    json_decref(g);
    return r;
}

static int stop(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    return stop_all(d, s, false, err);
}

static int withdraw(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    json_t *maps = NULL, *g = NULL;
    struct svc_cmd c;
    struct svc_refusal ref;
    int r = stop_all(d, s, true, err);
    if (r == 0)
        r = read_maps(d, s, &maps, err);
    if (r == 0)
        r = read_group(d, s, &g, err);
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        const char *names[2] = { s->cs[i].rrel, s->cs[i].rel };
        for (int k = 0; k < 2 && r == 0; k++) {
            if (!json_object_get(maps, names[k]))
                continue;                                   /* V2 */
            cmd_init(&c, SVC_RMFCMAP, false, names[k]);
            cmd_arg(&c, SVC_F_FORCE, NULL);
            if ((r = send(d, &c, NULL, &ref, err)) < 0)
                r = explain(d, r, &ref, err, "rmfcmap -force %s", names[k]);
        }
    }
    if (r == 0 && g) {
        cmd_init(&c, SVC_RMFCGRP, false, s->group);
        cmd_arg(&c, SVC_F_FORCE, NULL);
        if ((r = send(d, &c, NULL, &ref, err)) < 0)
            r = explain(d, r, &ref, err, "rmfcconsistgrp -force %s", s->group);
    }
    json_decref(maps);
    json_decref(g);
    return r;
}

static int restore(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    json_t *maps = NULL;
    struct svc_cmd c;
    struct svc_refusal ref;
    int r = track(d, s, err);
    if (r == 0)
        r = read_maps(d, s, &maps, err);
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        const struct mgmt_copyset *cs = &s->cs[i];
        const json_t *m = json_object_get(maps, cs->rel), *rm = json_object_get(maps, cs->rrel);
        if (!m) {
            r = mgmt_fail(err, -ENOENT, "session %s: copy set %s -> %s has no mapping (%s) on "
                          "system %s: it was never flashed, there is nothing to restore from",
                          s->name, cs->h1, cs->t1, cs->rel, d->system);
        } else if (rm && (strcmp(col(rm, SVC_C_SOURCE_NAME), cs->t1) ||
                          strcmp(col(rm, SVC_C_TARGET_NAME), cs->h1))) {      /* D2 */
            r = mgmt_fail(err, -EEXIST, "mapping %s exists on system %s but maps %s -> %s, "
                          "not %s -> %s; remove it (rmfcmap)", cs->rrel, d->system,
                          col(rm, SVC_C_SOURCE_NAME), col(rm, SVC_C_TARGET_NAME), cs->t1,
                          cs->h1);
        } else if (!rm) {
            json_t *res = NULL;
            cmd_init(&c, SVC_MKFCMAP, false, NULL);
            cmd_arg(&c, SVC_F_SOURCE, cs->t1);
            cmd_arg(&c, SVC_F_TARGET, cs->h1);
            cmd_arg(&c, SVC_F_NAME, cs->rrel);
            cmd_argi(&c, SVC_F_COPYRATE, SVC_RESTORE_RATE);
            r = send(d, &c, &res, &ref, err);
            json_decref(res);
            if (r < 0)
                r = explain_mkfcmap(d, cs->rrel, cs->t1, cs->h1, r, &ref, err);
            else
                ((struct svc_drv *)d->priv)->made_rmap[i] = true;
        }
    }
    /* A restore still running is stopped and started again (a new image). */
    if (r == 0)
        r = stop_reverse(d, s, maps, true, err);
    for (unsigned i = 0; i < s->ncs && r == 0; i++) {
        cmd_init(&c, SVC_STARTFCMAP, false, s->cs[i].rrel);
        cmd_arg(&c, SVC_F_PREP, NULL);
        cmd_arg(&c, SVC_F_RESTORE, NULL);
        if ((r = send(d, &c, NULL, &ref, err)) < 0)
            r = explain(d, r, &ref, err, "startfcmap -prep -restore %s (%s -> %s)",
                        s->cs[i].rrel, s->cs[i].t1, s->cs[i].h1);
    }
    json_decref(maps);
    return r < 0 ? fail_undo(d, s, r) : 0;
}

/* "YYMMDDHHMMSS" (the array's clock) → "20YY-MM-DDTHH:MM:SS"; null when never. */
static json_t *start_time(const char *t)
{
    if (strlen(t) != 12 || strspn(t, "0123456789") != 12)
        return json_null();
    return json_sprintf("20%.2s-%.2s-%.2sT%.2s:%.2s:%.2s", t, t + 2, t + 4, t + 6, t + 8,
                        t + 10);
}

static int query(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **out,
                 struct pc_error *err)
{
    json_t *maps = NULL, *g = NULL;
    int r = read_maps(d, s, &maps, err);
    if (r == 0)
        r = read_group(d, s, &g, err);
    if (r < 0) {
        json_decref(maps);
        return r;
    }
    json_t *a = json_array();
    for (unsigned i = 0; i < s->ncs; i++) {
        const json_t *m = json_object_get(maps, s->cs[i].rel);
        const json_t *rm = json_object_get(maps, s->cs[i].rrel);
        json_t *c = json_pack("{s:I, s:s, s:s, s:s, s:b}", "id", (json_int_t)s->cs[i].id,
                              "h1", s->cs[i].h1, "t1", s->cs[i].t1, "relationship",
                              s->cs[i].rel, "exists", m != NULL);
        json_object_set_new(c, "state", m ? json_string(col(m, SVC_C_STATUS)) : json_null());
        json_object_set_new(c, "progress", m ? json_integer(coli(m, SVC_C_PROGRESS))
                                             : json_null());
        json_object_set_new(c, "copy_rate", m ? json_integer(coli(m, SVC_C_COPY_RATE))
                                              : json_null());
        json_object_set_new(c, "started_at", m ? start_time(col(m, SVC_C_START_TIME))
                                               : json_null());
        json_object_set_new(c, "complete", m ? json_boolean(coli(m, SVC_C_PROGRESS) == 100)
                                             : json_null());
        json_object_set_new(c, "restore_state", rm ? json_string(col(rm, SVC_C_STATUS))
                                                   : json_null());
        json_object_set_new(c, "restore_progress", rm ? json_integer(coli(rm, SVC_C_PROGRESS))
                                                      : json_null());
        json_array_append_new(a, c);
    }
    *out = json_pack("{s:o, s:o}", "group", g ? json_pack("{s:s, s:s}", "name", s->group,
                                                          "state", col(g, SVC_C_STATUS))
                                              : json_null(), "copysets", a);
    json_decref(maps);
    json_decref(g);
    return 0;
}

/* ------------------------------------------------------------------------
 * system add. */

static bool plain(const char *s, const char *extra)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    if (!s || !*s || s[0] == '-')
        return false;
    for (const char *p = s; *p; p++)
        if (!strchr(ok, *p) && !strchr(extra, *p))
            return false;
    return true;
}

static int readable(const char *system, const char *what, const char *path,
                    struct pc_error *err)
{
    if (path && access(path, R_OK) < 0)
        return mgmt_fail(err, -errno, "system %s: %s %s: %s", system, what, path,
                         strerror(errno));
    return 0;
}

static int configure(const char *system, const json_t *p, json_t **options,
                     struct pc_error *err)
{
    const char *host = json_string_value(json_object_get(p, "host"));
    const char *url = json_string_value(json_object_get(p, "rest"));
    const char *user = json_string_value(json_object_get(p, "user"));
    const char *key = json_string_value(json_object_get(p, "key"));
    const char *kh = json_string_value(json_object_get(p, "known_hosts"));
    const char *pwf = json_string_value(json_object_get(p, "password_file"));
    const char *ca = json_string_value(json_object_get(p, "cacert"));
    const json_t *port = json_object_get(p, "port");
    bool insecure = json_is_true(json_object_get(p, "insecure"));
    static const char *const known[] = { "name", "type", "host", "port", "user", "key",
                                         "known_hosts", "rest", "password_file", "cacert",
                                         "insecure" };
    char flag[64];
    int r;
    if (mgmt_unknown_option(p, known, sizeof known / sizeof known[0], flag, sizeof flag))
        return mgmt_fail(err, -EINVAL, "system %s: type svc takes --host, --port, --user, "
                         "--key, --known-hosts, or --rest, --user, --password-file, --cacert, "
                         "--insecure; not %s", system, flag);
    if (!host == !url)
        return mgmt_fail(err, -EINVAL, "system %s: type svc is reached by SSH (--host HOST) or "
                         "by REST (--rest https://HOST:7443): give one of them", system);
    if (!plain(user, "._@-"))
        return mgmt_fail(err, -EINVAL, "system %s: --user is required: the array's user name "
                         "(letters, digits, . _ @ -)", system);
    if (host) {
        const char *bad = pwf ? "--password-file" : ca ? "--cacert" : insecure ? "--insecure"
                                                                                : NULL;
        if (bad)
            return mgmt_fail(err, -EINVAL, "system %s: %s goes with --rest; over SSH pitcopy "
                             "uses keys (--key, or your agent) and known_hosts", system, bad);
        if (!plain(host, ".-_:[]"))
            return mgmt_fail(err, -EINVAL, "system %s: --host '%s' is not a host name or "
                             "address", system, host);
        if ((r = readable(system, "--key", key, err)) < 0 ||
            (r = readable(system, "--known-hosts", kh, err)) < 0)
            return r;
        *options = json_pack("{s:s, s:s, s:i, s:s}", "transport", "ssh", "host", host, "port",
                             port ? (int)json_integer_value(port) : SVC_DEFAULT_SSH_PORT,
                             "user", user);
        if (key)
            json_object_set_new(*options, "key", json_string(key));
        if (kh)
            json_object_set_new(*options, "known_hosts", json_string(kh));
        return 0;
    }
    const char *bad = key ? "--key" : kh ? "--known-hosts" : port ? "--port" : NULL;
    if (bad)
        return mgmt_fail(err, -EINVAL, "system %s: %s goes with --host (SSH); with --rest the "
                         "port is in the URL", system, bad);
    if (strncmp(url, "https://", 8) != 0 || !plain(url + 8, ".-_:[]/"))
        return mgmt_fail(err, -EINVAL, "system %s: --rest '%s' is not an https:// URL (the "
                         "password must not travel in clear)", system, url);
    if (!pwf)
        return mgmt_fail(err, -EINVAL, "system %s: --rest needs --password-file FILE (mode "
                         "0600; pitcopy reads it at each login and never stores the password)",
                         system);
    if ((r = svc_password_file_ok(pwf, err)) < 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return mgmt_fail(err, r, "system %s: %s", system, why);
    }
    if ((r = readable(system, "--cacert", ca, err)) < 0)
        return r;
    *options = json_pack("{s:s, s:s, s:s, s:s, s:b}", "transport", "rest", "url", url, "user",
                         user, "password_file", pwf, "insecure", insecure);
    if (ca)
        json_object_set_new(*options, "cacert", json_string(ca));
    return 0;
}

static void describe(const json_t *o, char *buf, size_t len)
{
    if (strcmp(col(o, "transport"), "rest") == 0) {
        const char *ca = col(o, "cacert");
        snprintf(buf, len, "REST %s as %s (password file %s; TLS %s%s)", col(o, "url"),
                 col(o, "user"), col(o, "password_file"),
                 json_is_true(json_object_get(o, "insecure")) ? "NOT verified" : "verified",
                 *ca ? ", CA " : "");
        if (*ca) {
            size_t n = strlen(buf) - 1;
            snprintf(buf + n, len - n, "%s)", ca);
        }
        return;
    }
    const char *key = col(o, "key"), *kh = col(o, "known_hosts");
    snprintf(buf, len, "SSH %s@%s port %lld%s%s%s%s", col(o, "user"), col(o, "host"),
             (long long)json_integer_value(json_object_get(o, "port")), *key ? ", key " : "",
             key, *kh ? ", known_hosts " : "", kh);
}

const struct mgmt_driver_ops driver_svc_ops = {
    .type = "svc",
    .configure = configure,
    .describe = describe,
    .close = drv_close,
    .check_copyset = check_copyset,
    .prepare = prepare,
    .flash = flash,
    .start_incremental = start_incremental,
    .background_copy = background_copy,
    .stop = stop,
    .withdraw = withdraw,
    .restore = restore,
    .query = query,
};
