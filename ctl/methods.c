/* SPDX-License-Identifier: MIT */
/*
 * ctl/methods.c — the control methods: the table, parameter validation, and
 * one function per method that turns a validated request into engine calls.
 *
 * Role
 *   server.c parses a line, finds the method here, validates its params
 *   against the table (types, ranges, unknown names) and only then calls the
 *   method, which extracts its fields without checking them again.  A method
 *   returns 0 with c->result set, or -errno with c->err set.
 *
 * Invariants
 *   S1, S2 (internal.h).  A method that changes the catalogue saves it
 *   before it returns (under ctl_state.lock, so saves are ordered with the
 *   changes they record).
 *
 * Context
 *   The connection's thread.  map.prepare/start/stop/delete/wait may block
 *   (cleaning, a copy); they hold no ctl lock meanwhile.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl/internal.h"

#define fail(c, code, ...) ctl_error_set(&(c)->err, (code), __VA_ARGS__)

static const char *pstr(const struct ctl_call *c, const char *key)
{
    return json_string_value(json_object_get(c->params, key));
}

static int64_t pint(const struct ctl_call *c, const char *key, int64_t def)
{
    const json_t *j = json_object_get(c->params, key);
    return j ? json_integer_value(j) : def;
}

static bool pbool(const struct ctl_call *c, const char *key)
{
    return json_is_true(json_object_get(c->params, key));
}

static int prate(const struct ctl_call *c, const char *key, int def)
{
    const json_t *j = json_object_get(c->params, key);
    int rate = def;
    if (j)
        (void)ctl_rate_from_json(j, &rate);   /* validated */
    return rate;
}

/* ------------------------------------------------------------------------
 * Shapes. */

static json_t *vol_json_locked(struct ctl_state *st, const struct ctl_vol *v)
{
    json_t *src = json_array(), *tgt = json_null();
    for (const struct ctl_map *m = st->maps; m; m = m->next) {
        if (strcmp(m->source, v->name) == 0)
            json_array_insert_new(src, 0, json_string(m->name));
        if (strcmp(m->target, v->name) == 0) {
            json_decref(tgt);
            tgt = json_string(m->name);
        }
    }
    return json_pack("{s:s, s:s, s:I, s:b, s:o, s:o}", "name", v->name, "path", v->path,
                     "size", (json_int_t)v->size, "direct", pc_volume_direct(v->v),
                     "source_of", src, "target_of", tgt);
}

static json_t *bytes_per_sec_json(int rate)
{
    uint64_t b = pc_rate_bytes_per_sec(rate);
    return b == UINT64_MAX ? json_null() : json_integer((json_int_t)b);
}

static json_t *map_json(struct pc_map *m)
{
    struct pc_map_info i;
    char when[32] = "";
    pc_map_info(m, &i);
    if (i.start_ns) {
        time_t t = (time_t)(i.start_ns / 1000000000ull);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:I, s:I, s:i}",
                          "name", i.name, "source", i.source, "target", i.target,
                          "state", pc_map_state_name(i.state), "progress", (int)i.progress,
                          "grains_split", (json_int_t)i.grains_split,
                          "grains", (json_int_t)i.grains, "grain_size", (int)i.grain_size);
    json_object_set_new(j, "copy_rate", ctl_rate_json(i.copy_rate));
    json_object_set_new(j, "clean_rate", ctl_rate_json(i.clean_rate));
    json_object_set_new(j, "copy_bytes_per_sec", bytes_per_sec_json(i.copy_rate));
    json_object_set_new(j, "clean_bytes_per_sec", bytes_per_sec_json(i.clean_rate));
    json_object_set_new(j, "complete", json_boolean(i.complete));
    json_object_set_new(j, "target_online", json_boolean(i.target_online));
    json_object_set_new(j, "dependent_mappings", json_integer(i.dependent_mappings));
    json_object_set_new(j, "grains_to_clean", json_integer((json_int_t)i.grains_to_clean));
    json_object_set_new(j, "start_hold_ns", json_integer((json_int_t)i.start_hold_ns));
    json_object_set_new(j, "started_at", i.start_ns ? json_string(when) : json_null());
    json_object_set_new(j, "incremental", json_boolean(i.incremental));
    /* null: not incremental, or the recording cannot vouch (the next start copies all) */
    json_object_set_new(j, "grains_changed", i.changes_recorded
                        ? json_integer((json_int_t)i.grains_changed) : json_null());
    json_object_set_new(j, "durability", json_string(!i.persistent ? "memory"
                            : i.durability == PC_DURABILITY_NONE ? "none" : "strict"));
    json_object_set_new(j, "invalid", i.invalid[0] ? json_string(i.invalid) : json_null());
    json_object_set_new(j, "group", i.group[0] ? json_string(i.group) : json_null());
    json_object_set_new(j, "restoring", json_boolean(i.restoring));
    json_object_set_new(j, "partner", i.partner[0] ? json_string(i.partner) : json_null());
    return j;
}

/* A mapping as the catalogue has it: the engine's view and what only the
 * daemon keeps (autodelete). */
static json_t *cmap_json(const struct ctl_map *cm)
{
    json_t *j = map_json(cm->m);
    json_object_set_new(j, "autodelete", json_boolean(cm->autodelete));
    return j;
}

static void iso_time(uint64_t ns, char *buf, size_t len)
{
    time_t t = (time_t)(ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *group_json(const struct ctl_group *cg)
{
    struct pc_group_info gi;
    char when[32];
    pc_group_info(cg->g, &gi);
    struct pc_map **ms = calloc(gi.mappings ? gi.mappings : 1, sizeof *ms);
    json_t *names = json_array(), *members = json_array();
    unsigned n = ms ? pc_group_members(cg->g, ms, gi.mappings) : 0;
    for (unsigned i = 0; ms && i < n && i < gi.mappings; i++) {
        struct pc_map_info mi;
        pc_map_info(ms[i], &mi);
        json_array_append_new(names, json_string(mi.name));
        json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:i, s:b, s:i, s:I}", "name", mi.name,
                              "source", mi.source, "target", mi.target,
                              "state", pc_map_state_name(mi.state), "progress", (int)mi.progress,
                              "target_online", mi.target_online,
                              "dependent_mappings", (int)mi.dependent_mappings,
                              "grains_to_clean", (json_int_t)mi.grains_to_clean);
        json_object_set_new(m, "copy_rate", ctl_rate_json(mi.copy_rate));
        json_array_append_new(members, m);
    }
    free(ms);
    iso_time(gi.start_ns, when, sizeof when);
    return json_pack("{s:s, s:s, s:o, s:o, s:I, s:o}", "name", gi.name,
                     "state", gi.empty ? "empty" : pc_map_state_name(gi.state),
                     "mappings", names, "members", members,
                     "start_hold_ns", (json_int_t)gi.start_hold_ns,
                     "started_at", gi.start_ns ? json_string(when) : json_null());
}

/* A change went through: record it (errors are logged by the save). */
static void save_locked(struct ctl_state *st)
{
    struct pc_error err;
    ctl_state_save_locked(st, &err);
}

/* ------------------------------------------------------------------------
 * Mappings held busy (S2). */

static int map_acquire(struct ctl_call *c, const char *name, struct ctl_map **out)
{
    struct ctl_state *st = c->st;
    int r = 0;
    pthread_mutex_lock(&st->lock);
    struct ctl_map *cm = ctl_map_find_locked(st, name);
    if (!cm)
        r = fail(c, -ENOENT, "no mapping named %s", name);
    else if (cm->deleting)
        r = fail(c, -EBUSY, "mapping %s is being deleted", name);
    else
        cm->busy++;
    pthread_mutex_unlock(&st->lock);
    *out = cm;
    return r;
}

static void map_release(struct ctl_call *c, struct ctl_map *cm, bool changed)
{
    struct ctl_state *st = c->st;
    pthread_mutex_lock(&st->lock);
    if (--cm->busy == 0)
        pthread_cond_broadcast(&st->idle);
    if (changed)
        save_locked(st);
    pthread_mutex_unlock(&st->lock);
}

/* ------------------------------------------------------------------------
 * Methods. */

static int m_status(struct ctl_call *c)
{
    c->result = ctl_server_status(c->srv);
    return c->result ? 0 : fail(c, -ENOMEM, "out of memory");
}

static int m_volume_create(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    const char *name = pstr(c, "name"), *file = pstr(c, "file");
    uint64_t size = (uint64_t)pint(c, "size", 0);
    char path[PATH_MAX];
    struct pc_volume *v;
    int r;

    pthread_mutex_lock(&st->lock);
    if (ctl_vol_find_locked(st, name)) {
        r = fail(c, -EEXIST, "volume %s already exists", name);
        goto out;
    }
    if (file) {
        snprintf(path, sizeof path, "%s", file);
    } else {
        snprintf(path, sizeof path, "%s/%s", st->dir, CTL_VOLUME_DIR);
        if (mkdir(path, 0700) < 0 && errno != EEXIST) {
            r = fail(c, -errno, "volume %s: cannot create %s: %s", name, path, strerror(errno));
            goto out;
        }
        if ((size_t)snprintf(path, sizeof path, "%s/%s/%s.img", st->dir, CTL_VOLUME_DIR,
                             name) >= sizeof path) {
            r = fail(c, -ENAMETOOLONG, "volume %s: its file's path is too long", name);
            goto out;
        }
    }
    struct ctl_vol *cv = calloc(1, sizeof *cv);
    if (!cv || !(cv->path = strdup(path))) {
        free(cv);
        r = fail(c, -ENOMEM, "out of memory creating volume %s", name);
        goto out;
    }
    r = pc_volume_open(st->e, name, path, size, PC_VOL_CREATE, &v, &c->err);
    if (r < 0) {
        free(cv->path);
        free(cv);
        goto out;
    }
    snprintf(cv->name, sizeof cv->name, "%s", name);
    cv->size = pc_volume_size(v);
    cv->v = v;
    cv->next = st->vols;
    st->vols = cv;
    ctl_skipped_forget_locked(st, name, NULL, NULL);
    ctl_log("volume %s created: %llu bytes at %s%s", name, (unsigned long long)cv->size,
            path, pc_volume_direct(v) ? "" : " (buffered I/O)");
    save_locked(st);
    c->result = vol_json_locked(st, cv);
out:
    pthread_mutex_unlock(&st->lock);
    return r;
}

static int m_volume_list(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    json_t *a = json_array();
    pthread_mutex_lock(&st->lock);
    for (struct ctl_vol *v = st->vols; v; v = v->next)
        json_array_insert_new(a, 0, vol_json_locked(st, v));
    pthread_mutex_unlock(&st->lock);
    c->result = json_pack("{s:o}", "volumes", a);
    return 0;
}

static int m_volume_show(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    const char *name = pstr(c, "name");
    int r = 0;
    pthread_mutex_lock(&st->lock);
    struct ctl_vol *v = ctl_vol_find_locked(st, name);
    if (v)
        c->result = vol_json_locked(st, v);
    else
        r = fail(c, -ENOENT, "no volume named %s", name);
    pthread_mutex_unlock(&st->lock);
    return r;
}

static int m_volume_delete(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    const char *name = pstr(c, "name");
    bool keep = pbool(c, "keep_file"), removed = false;
    struct stat sb;
    int r;

    pthread_mutex_lock(&st->lock);
    struct ctl_vol **pp = &st->vols;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    struct ctl_vol *v = *pp;
    if (!v) {
        r = fail(c, -ENOENT, "no volume named %s", name);
        goto out;
    }
    r = pc_volume_close(v->v, &c->err);
    if (r < 0)
        goto out;
    *pp = v->next;
    /* Only a regular file goes: a block device's node is not ours to remove. */
    if (!keep && lstat(v->path, &sb) == 0 && S_ISREG(sb.st_mode)) {
        if (unlink(v->path) == 0)
            removed = true;
        else
            ctl_log("volume %s: cannot remove %s: %s", name, v->path, strerror(errno));
    }
    ctl_skipped_forget_locked(st, name, NULL, NULL);
    ctl_log("volume %s deleted%s %s", name, removed ? "; removed" : "; kept", v->path);
    save_locked(st);
    c->result = json_pack("{s:s, s:s, s:b}", "name", name, "path", v->path,
                          "file_removed", removed);
    free(v->path);
    free(v);
out:
    pthread_mutex_unlock(&st->lock);
    return r;
}

static int m_map_create(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    const char *src = pstr(c, "source"), *tgt = pstr(c, "target");
    struct pc_map_opts o = {
        .name = pstr(c, "name"),
        .grain_size = (uint32_t)pint(c, "grain", 0),
        .copy_rate = prate(c, "copy_rate", -1),
        .clean_rate = prate(c, "clean_rate", -1),
        .incremental = pbool(c, "incremental"),
        .initial_state = PC_MAP_IDLE_OR_COPIED,
    };
    struct pc_map *m;
    int r;

    pthread_mutex_lock(&st->lock);
    struct ctl_vol *s = ctl_vol_find_locked(st, src), *t = ctl_vol_find_locked(st, tgt);
    if (!s || !t) {
        r = fail(c, -ENOENT, "no volume named %s (the mapping's %s)", s ? tgt : src,
                 s ? "target" : "source");
        goto out;
    }
    if (o.name && ctl_map_find_locked(st, o.name)) {
        r = fail(c, -EEXIST, "mapping %s already exists", o.name);
        goto out;
    }
    struct ctl_map *cm = calloc(1, sizeof *cm);
    if (!cm) {
        r = fail(c, -ENOMEM, "out of memory creating a mapping");
        goto out;
    }
    /* The metadata file is named after the mapping, so the name comes first. */
    char auto_name[64], meta[PATH_MAX];
    if (!o.name) {
        unsigned i = 0;
        do
            snprintf(auto_name, sizeof auto_name, "fcmap%u", i++);
        while (ctl_map_find_locked(st, auto_name) || pc_map_find(st->e, auto_name));
        o.name = auto_name;
    }
    const char *group = pstr(c, "group");
    struct ctl_group *cg = group ? ctl_group_find_locked(st, group) : NULL;
    if (group && !cg) {
        free(cm);
        r = fail(c, -ENOENT, "no consistency group named %s", group);
        goto out;
    }
    ctl_meta_path(st, o.name, meta, sizeof meta);
    o.meta_path = meta;
    o.durability = st->durability;
    o.source = s->v;
    o.target = t->v;
    o.group = cg ? cg->g : NULL;
    r = pc_map_create(st->e, &o, &m, &c->err);
    if (r < 0) {
        free(cm);
        goto out;
    }
    struct pc_map_info info;
    pc_map_info(m, &info);
    snprintf(cm->name, sizeof cm->name, "%s", info.name);
    snprintf(cm->source, sizeof cm->source, "%s", src);
    snprintf(cm->target, sizeof cm->target, "%s", tgt);
    cm->m = m;
    cm->autodelete = pbool(c, "autodelete");
    snprintf(cm->group, sizeof cm->group, "%s", cg ? cg->name : "");
    cm->next = st->maps;
    st->maps = cm;
    ctl_skipped_forget_locked(st, NULL, cm->name, tgt);
    char cr[24], cl[24];
    snprintf(cr, sizeof cr, info.copy_rate == PC_RATE_UNLIMITED ? "unlimited" : "%d",
             info.copy_rate);
    snprintf(cl, sizeof cl, info.clean_rate == PC_RATE_UNLIMITED ? "unlimited" : "%d",
             info.clean_rate);
    ctl_log("mapping %s created: %s -> %s, %u KiB grains, copy rate %s, clean rate %s%s%s%s",
            cm->name, src, tgt, info.grain_size >> 10, cr, cl,
            cg ? ", consistency group " : "", cg ? cg->name : "",
            cm->autodelete ? ", autodelete" : "");
    save_locked(st);
    c->result = cmap_json(cm);
out:
    pthread_mutex_unlock(&st->lock);
    return r;
}

static int m_map_list(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    json_t *a = json_array();
    pthread_mutex_lock(&st->lock);
    for (struct ctl_map *m = st->maps; m; m = m->next)
        if (!m->deleting)          /* S2 */
            json_array_insert_new(a, 0, cmap_json(m));
    pthread_mutex_unlock(&st->lock);
    c->result = json_pack("{s:o}", "mappings", a);
    return 0;
}

static int m_map_show(struct ctl_call *c)
{
    struct ctl_map *cm;
    int r = map_acquire(c, pstr(c, "name"), &cm);
    if (r < 0)
        return r;
    c->result = cmap_json(cm);
    map_release(c, cm, false);
    return 0;
}

enum map_op { OP_PREPARE, OP_START, OP_STOP };

static int map_transition(struct ctl_call *c, enum map_op op)
{
    static const char *const done[] = { "prepared", "started", "stopping" };
    struct ctl_map *cm;
    int r = map_acquire(c, pstr(c, "name"), &cm);
    if (r < 0)
        return r;
    switch (op) {
    case OP_PREPARE: r = pc_map_prepare(cm->m, &c->err); break;
    case OP_START:
        r = pbool(c, "restore") ? pc_map_start_restore(cm->m, &c->err)
                                : pc_map_start(cm->m, &c->err);
        break;
    case OP_STOP:
        r = pbool(c, "split") ? pc_map_stop_split(cm->m, &c->err) : pc_map_stop(cm->m, &c->err);
        break;
    }
    if (r == 0) {
        c->result = cmap_json(cm);
        const char *state = json_string_value(json_object_get(c->result, "state"));
        if (op == OP_START)
            ctl_log("mapping %s started: %s; writes held %.3f ms", cm->name, state,
                    (double)json_integer_value(json_object_get(c->result, "start_hold_ns")) / 1e6);
        else
            ctl_log("mapping %s %s: %s", cm->name, done[op], state);
    }
    map_release(c, cm, r == 0);
    return r;
}

static int m_map_prepare(struct ctl_call *c) { return map_transition(c, OP_PREPARE); }
static int m_map_start(struct ctl_call *c)   { return map_transition(c, OP_START); }
static int m_map_stop(struct ctl_call *c)    { return map_transition(c, OP_STOP); }

/* "50" or "unlimited", from a MAPPING object. */
static const char *rate_text(const json_t *map, const char *key, char *buf, size_t len)
{
    const json_t *r = json_object_get(map, key);
    if (json_is_string(r))
        return json_string_value(r);
    snprintf(buf, len, "%lld", (long long)json_integer_value(r));
    return buf;
}

static int m_map_set(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    json_t *copy = json_object_get(c->params, "copy_rate");
    json_t *clean = json_object_get(c->params, "clean_rate");
    json_t *group = json_object_get(c->params, "group");
    json_t *autodel = json_object_get(c->params, "autodelete");
    struct ctl_map *cm;
    int r;
    if (!copy && !clean && !group && !autodel)
        return fail(c, -EINVAL, "map.set: give copy_rate, clean_rate, group or autodelete");
    r = map_acquire(c, pstr(c, "name"), &cm);
    if (r < 0)
        return r;
    if (group) {
        /* The engine checks the mapping's state; the catalogue follows it. */
        const char *gname = json_string_value(group);
        pthread_mutex_lock(&st->lock);
        struct ctl_group *cg = gname[0] ? ctl_group_find_locked(st, gname) : NULL;
        if (gname[0] && !cg)
            r = fail(c, -ENOENT, "no consistency group named %s", gname);
        else
            r = pc_map_set_group(cm->m, cg ? cg->g : NULL, &c->err);
        if (r == 0) {
            snprintf(cm->group, sizeof cm->group, "%s", gname);
            ctl_log("mapping %s: %s%s", cm->name, gname[0] ? "consistency group " :
                    "left its consistency group", gname);
        }
        pthread_mutex_unlock(&st->lock);
    }
    if (r == 0 && copy)
        r = pc_map_set_copy_rate(cm->m, prate(c, "copy_rate", 0), &c->err);
    if (r == 0 && clean)
        r = pc_map_set_clean_rate(cm->m, prate(c, "clean_rate", 0), &c->err);
    if (r == 0 && autodel) {
        pthread_mutex_lock(&st->lock);
        cm->autodelete = json_is_true(autodel);
        pthread_mutex_unlock(&st->lock);
        ctl_log("mapping %s: autodelete %s", cm->name, cm->autodelete ? "on" : "off");
    }
    if (r == 0) {
        c->result = cmap_json(cm);
        char a[24], b[24];
        if (copy || clean)
            ctl_log("mapping %s: copy rate %s, clean rate %s", cm->name,
                    rate_text(c->result, "copy_rate", a, sizeof a),
                    rate_text(c->result, "clean_rate", b, sizeof b));
    }
    /* With autodelete on a completed copy, the daemon's next refresh (within
     * a second) deletes the mapping. */
    map_release(c, cm, true);
    return r;
}

int ctl_map_delete(struct ctl_state *st, const char *name, bool force, struct pc_error *err)
{
    struct ctl_map *cm;
    int r;

    pthread_mutex_lock(&st->lock);
    cm = ctl_map_find_locked(st, name);
    if (!cm || cm->deleting) {
        r = cm ? ctl_error_set(err, -EBUSY, "mapping %s is being deleted", name)
               : ctl_error_set(err, -ENOENT, "no mapping named %s", name);
        pthread_mutex_unlock(&st->lock);
        return r;
    }
    cm->deleting = true;                 /* S2: no new calls on it */
    while (cm->busy)
        pthread_cond_wait(&st->idle, &st->lock);
    pthread_mutex_unlock(&st->lock);

    r = pc_map_delete(cm->m, force, err);   /* may wait for cleaning */

    pthread_mutex_lock(&st->lock);
    cm->deleting = false;
    if (r == 0) {
        for (struct ctl_map **pp = &st->maps; *pp; pp = &(*pp)->next) {
            if (*pp == cm) {
                *pp = cm->next;
                break;
            }
        }
        ctl_log("mapping %s deleted%s", cm->name, force ? " (forced)" : "");
        save_locked(st);
        /* After the catalogue forgot it: a crash in between leaves a stray
         * file, never a mapping without its metadata. */
        char meta[PATH_MAX];
        ctl_meta_path(st, cm->name, meta, sizeof meta);
        if (unlink(meta) < 0 && errno != ENOENT)
            ctl_log("mapping %s: cannot remove %s: %s", cm->name, meta, strerror(errno));
        strncat(meta, ".failed", sizeof meta - strlen(meta) - 1);
        unlink(meta);
        free(cm);
    }
    pthread_mutex_unlock(&st->lock);
    return r;
}

static int m_map_delete(struct ctl_call *c)
{
    const char *name = pstr(c, "name");
    int r = ctl_map_delete(c->st, name, pbool(c, "force"), &c->err);
    if (r == 0)
        c->result = json_pack("{s:s, s:b}", "name", name, "deleted", 1);
    return r;
}

/* ------------------------------------------------------------------------
 * Consistency groups.  A group call acts on every member, so it holds each
 * member busy (S2) for the length of the engine call. */

static int m_group_create(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    const char *name = pstr(c, "name");
    int r = 0;
    pthread_mutex_lock(&st->lock);
    struct ctl_group *cg = calloc(1, sizeof *cg);
    if (!cg) {
        r = fail(c, -ENOMEM, "out of memory creating consistency group %s", name);
        goto out;
    }
    r = pc_group_create(st->e, name, &cg->g, &c->err);
    if (r < 0) {
        free(cg);
        goto out;
    }
    snprintf(cg->name, sizeof cg->name, "%s", name);
    cg->next = st->groups;
    st->groups = cg;
    ctl_log("consistency group %s created", name);
    save_locked(st);
    c->result = group_json(cg);
out:
    pthread_mutex_unlock(&st->lock);
    return r;
}

static int m_group_list(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    json_t *a = json_array();
    pthread_mutex_lock(&st->lock);
    for (struct ctl_group *g = st->groups; g; g = g->next)
        json_array_insert_new(a, 0, group_json(g));
    pthread_mutex_unlock(&st->lock);
    c->result = json_pack("{s:o}", "groups", a);
    return 0;
}

/* Find the group and hold its members busy; *members NULL-terminated. */
static int group_acquire(struct ctl_call *c, struct ctl_group **out, struct ctl_map ***members)
{
    struct ctl_state *st = c->st;
    const char *name = pstr(c, "name");
    int r = 0;
    *members = NULL;
    pthread_mutex_lock(&st->lock);
    struct ctl_group *cg = ctl_group_find_locked(st, name);
    if (!cg || cg->deleting) {
        r = cg ? fail(c, -EBUSY, "consistency group %s is being deleted", name)
               : fail(c, -ENOENT, "no consistency group named %s", name);
        goto out;
    }
    size_t n = 0, i = 0;
    for (struct ctl_map *m = st->maps; m; m = m->next)
        n += strcmp(m->group, name) == 0;
    struct ctl_map **ms = calloc(n + 1, sizeof *ms);
    if (!ms) {
        r = fail(c, -ENOMEM, "out of memory");
        goto out;
    }
    for (struct ctl_map *m = st->maps; m; m = m->next) {
        if (strcmp(m->group, name) != 0)
            continue;
        if (m->deleting) {
            free(ms);
            r = fail(c, -EBUSY, "mapping %s of consistency group %s is being deleted",
                     m->name, name);
            goto out;
        }
        ms[i++] = m;
    }
    for (i = 0; ms[i]; i++)
        ms[i]->busy++;
    cg->busy++;                 /* a delete waits for this call (S2) */
    *members = ms;
    *out = cg;
out:
    pthread_mutex_unlock(&st->lock);
    return r;
}

static void group_release(struct ctl_call *c, struct ctl_group *cg, struct ctl_map **ms,
                          bool changed)
{
    struct ctl_state *st = c->st;
    pthread_mutex_lock(&st->lock);
    cg->busy--;
    for (size_t i = 0; ms[i]; i++)
        ms[i]->busy--;
    pthread_cond_broadcast(&st->idle);
    if (changed)
        save_locked(st);
    pthread_mutex_unlock(&st->lock);
    free(ms);
}

enum group_op { GOP_SHOW, GOP_PREPARE, GOP_START, GOP_STOP };

static int group_call(struct ctl_call *c, enum group_op op)
{
    struct ctl_group *cg = NULL;
    struct ctl_map **ms;
    int r = group_acquire(c, &cg, &ms);
    if (r < 0)
        return r;
    switch (op) {
    case GOP_SHOW:    break;
    case GOP_PREPARE: r = pc_group_prepare(cg->g, &c->err); break;
    case GOP_START:
        r = pbool(c, "restore") ? pc_group_start_restore(cg->g, &c->err)
                                : pc_group_start(cg->g, &c->err);
        break;
    case GOP_STOP:    r = pc_group_stop(cg->g, pbool(c, "split"), &c->err); break;
    }
    if (r == 0) {
        c->result = group_json(cg);
        if (op == GOP_START)
            ctl_log("consistency group %s started: %zu mappings, one point in time; writes "
                    "held %.3f ms", cg->name, json_array_size(json_object_get(c->result,
                    "mappings")), (double)json_integer_value(json_object_get(c->result,
                    "start_hold_ns")) / 1e6);
        else if (op != GOP_SHOW)
            ctl_log("consistency group %s %s: %s", cg->name,
                    op == GOP_PREPARE ? "prepared" : "stopped",
                    json_string_value(json_object_get(c->result, "state")));
    }
    group_release(c, cg, ms, r == 0 && op != GOP_SHOW);
    return r;
}

static int m_group_show(struct ctl_call *c)    { return group_call(c, GOP_SHOW); }
static int m_group_prepare(struct ctl_call *c) { return group_call(c, GOP_PREPARE); }
static int m_group_start(struct ctl_call *c)   { return group_call(c, GOP_START); }
static int m_group_stop(struct ctl_call *c)    { return group_call(c, GOP_STOP); }

static int m_group_delete(struct ctl_call *c)
{
    struct ctl_state *st = c->st;
    const char *name = pstr(c, "name");
    bool force = pbool(c, "force");
    int r;
    pthread_mutex_lock(&st->lock);
    struct ctl_group **pp = &st->groups;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    struct ctl_group *cg = *pp;
    if (!cg || cg->deleting) {
        r = cg ? fail(c, -EBUSY, "consistency group %s is being deleted", name)
               : fail(c, -ENOENT, "no consistency group named %s", name);
        goto out;
    }
    /* S2: the engine frees the group; no call on it may still be running. */
    cg->deleting = true;
    while (cg->busy)
        pthread_cond_wait(&st->idle, &st->lock);
    cg->deleting = false;
    r = pc_group_delete(cg->g, force, &c->err);
    if (r < 0)
        goto out;
    for (pp = &st->groups; *pp != cg; pp = &(*pp)->next)
        ;                       /* the list may have changed while we waited */
    *pp = cg->next;
    for (struct ctl_map *m = st->maps; m; m = m->next)
        if (strcmp(m->group, name) == 0)
            m->group[0] = 0;
    ctl_log("consistency group %s deleted%s", name, force ? " (its mappings stay, stand-alone)" : "");
    save_locked(st);
    c->result = json_pack("{s:s, s:b}", "name", name, "deleted", 1);
    free(cg);
out:
    pthread_mutex_unlock(&st->lock);
    return r;
}

/* The client hung up: nobody is left to answer. */
static bool client_gone(int fd)
{
    struct pollfd p = { .fd = fd, .events = 0 };
    return fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int m_map_wait(struct ctl_call *c)
{
    const char *name = pstr(c, "name");
    enum pc_map_state want;
    int64_t timeout = pint(c, "timeout_ms", -1), t0 = now_ms();
    struct ctl_map *cm;
    struct pc_map *m;
    bool reached = false;
    int r;

    (void)ctl_state_parse(pstr(c, "state"), &want);   /* validated */
    r = map_acquire(c, name, &cm);
    if (r < 0)
        return r;
    m = cm->m;
    map_release(c, cm, false);   /* S2: waits do not hold a mapping busy */
    for (;;) {
        int64_t left = timeout < 0 ? 250 : timeout - (now_ms() - t0);
        r = pc_map_wait(m, want, (int)(left < 0 ? 0 : left > 250 ? 250 : left));
        if (r == 0) {
            reached = true;
            break;
        }
        if (r == -ENOENT)
            return fail(c, -ENOENT, "mapping %s was deleted while waiting for %s",
                        name, pc_map_state_name(want));
        if (ctl_server_stopping(c->srv))
            return fail(c, -ESHUTDOWN, "pitcopy serve is shutting down; mapping %s did "
                        "not reach %s", name, pc_map_state_name(want));
        if (client_gone(c->fd))
            return fail(c, -ECONNRESET, "the client left");
        if (timeout >= 0 && now_ms() - t0 >= timeout)
            break;
    }
    /* Done waiting: hold it busy again to describe it (it may be gone). */
    r = map_acquire(c, name, &cm);
    if (r < 0)
        return r;
    c->result = cmap_json(cm);
    map_release(c, cm, false);
    const char *state = json_string_value(json_object_get(c->result, "state"));
    if (!reached && strcmp(state, pc_map_state_name(want)) != 0) {
        r = fail(c, -ETIMEDOUT, "mapping %s is still %s (%lld%%) after %.1f s; it did not "
                 "reach %s", name, state,
                 (long long)json_integer_value(json_object_get(c->result, "progress")),
                 (double)timeout / 1000, pc_map_state_name(want));
        json_decref(c->result);
        c->result = NULL;
    }
    return r;
}

/* system.*, session.*, schedule.*: the management layer's (mgmt/mgmt.h).
 * It runs without any ctl lock: a session action calls back into the
 * methods above through ctl_server_call. */
static int m_mgmt(struct ctl_call *c)
{
    struct mgmt *mg = c->srv ? ctl_server_mgmt(c->srv) : NULL;
    if (!mg)
        return fail(c, -ENOSYS, "%s: the management layer is not running in this daemon",
                    c->method);
    return mgmt_request(mg, c->method, c->params, &c->result, &c->err);
}

/* ------------------------------------------------------------------------
 * The table, and validation against it. */

#define NAME(n)      { n, CTL_P_NAME, true, 0, 0 }
#define OPT(n, t)    { n, t, false, 0, 0 }
#define TEXT(n)      { n, CTL_P_TEXT, true, 0, 0 }
#define DRY          OPT("dry_run", CTL_P_BOOL)
#define SRATE        { "copy_rate", CTL_P_INT, false, 0, 150 }

static const struct ctl_method methods[] = {
    { "status",        m_status,        false, { { 0 } } },
    { "volume.create", m_volume_create, true,
      { NAME("name"), { "size", CTL_P_INT, true, 1, INT64_MAX }, OPT("file", CTL_P_PATH) } },
    { "volume.list",   m_volume_list,   false, { { 0 } } },
    { "volume.show",   m_volume_show,   false, { NAME("name") } },
    { "volume.delete", m_volume_delete, true,  { NAME("name"), OPT("keep_file", CTL_P_BOOL) } },
    { "map.create",    m_map_create,    true,
      { NAME("source"), NAME("target"), OPT("name", CTL_P_NAME),
        { "grain", CTL_P_INT, false, PC_GRAIN_MIN, PC_GRAIN_MAX },
        OPT("copy_rate", CTL_P_RATE), OPT("clean_rate", CTL_P_RATE), OPT("group", CTL_P_NAME),
        OPT("autodelete", CTL_P_BOOL), OPT("incremental", CTL_P_BOOL) } },
    { "map.list",      m_map_list,      false, { { 0 } } },
    { "map.show",      m_map_show,      false, { NAME("name") } },
    { "map.prepare",   m_map_prepare,   true,  { NAME("name") } },
    { "map.start",     m_map_start,     true,  { NAME("name"), OPT("restore", CTL_P_BOOL) } },
    { "map.stop",      m_map_stop,      true,  { NAME("name"), OPT("split", CTL_P_BOOL) } },
    { "map.delete",    m_map_delete,    true,  { NAME("name"), OPT("force", CTL_P_BOOL) } },
    { "map.set",       m_map_set,       true,
      { NAME("name"), OPT("copy_rate", CTL_P_RATE), OPT("clean_rate", CTL_P_RATE),
        OPT("group", CTL_P_NAME_OR_EMPTY), OPT("autodelete", CTL_P_BOOL) } },
    { "map.wait",      m_map_wait,      false,
      { NAME("name"), { "state", CTL_P_STATE, true, 0, 0 },
        { "timeout_ms", CTL_P_INT, false, 0, INT32_MAX } } },
    { "system.add",    m_mgmt,          true,
      { NAME("name"), TEXT("type"), OPT("host", CTL_P_TEXT), { "port", CTL_P_INT, false, 1, 65535 },
        OPT("user", CTL_P_TEXT), OPT("key", CTL_P_PATH), OPT("known_hosts", CTL_P_PATH),
        OPT("rest", CTL_P_TEXT), OPT("password_file", CTL_P_PATH), OPT("cacert", CTL_P_PATH),
        OPT("insecure", CTL_P_BOOL), OPT("hmc", CTL_P_TEXT), OPT("via", CTL_P_TEXT),
        OPT("storage_image", CTL_P_TEXT), OPT("dscli", CTL_P_TEXT),
        OPT("tgtinhibit", CTL_P_BOOL), OPT("zosmf", CTL_P_TEXT),
        OPT("apar_applied", CTL_P_BOOL), OPT("devices", CTL_P_TEXT),
        OPT("systems", CTL_P_TEXT) } },
    { "system.list",   m_mgmt,          false, { { 0 } } },
    { "system.show",   m_mgmt,          false, { NAME("name") } },
    { "system.remove", m_mgmt,          true,  { NAME("name") } },
    { "system.clock",  m_mgmt,          false, { OPT("set", CTL_P_TEXT) } },
    { "session.create", m_mgmt,         true,
      { NAME("name"), NAME("system"), OPT("description", CTL_P_TEXT) } },
    { "session.list",  m_mgmt,          false, { { 0 } } },
    { "session.show",  m_mgmt,          false, { NAME("name") } },
    { "session.delete", m_mgmt,         true,  { NAME("name"), OPT("force", CTL_P_BOOL) } },
    { "session.add_copyset", m_mgmt,    true,  { NAME("name"), NAME("h1"), NAME("t1") } },
    { "session.remove_copyset", m_mgmt, true,  { NAME("name"), NAME("h1") } },
    { "session.set",   m_mgmt,          true,
      { NAME("name"), OPT("description", CTL_P_TEXT), OPT("pre_flash", CTL_P_TEXT),
        OPT("post_flash", CTL_P_TEXT), { "hook_timeout", CTL_P_INT, false, 1, 86400 },
        SRATE, OPT("zos", CTL_P_TEXT), OPT("zos_fallback", CTL_P_TEXT) } },
    { "session.flash", m_mgmt,          true,  { NAME("name"), DRY } },
    { "session.start", m_mgmt,          true,  { NAME("name"), DRY, SRATE } },
    { "session.background_copy", m_mgmt, true, { NAME("name"), DRY, SRATE } },
    { "session.terminate", m_mgmt,      true,  { NAME("name"), DRY } },
    { "session.restore", m_mgmt,        true,  { NAME("name"), DRY } },
    { "session.history", m_mgmt,        false,
      { NAME("name"), { "limit", CTL_P_INT, false, 1, 100000 } } },
    { "schedule.add",  m_mgmt,          true,
      { NAME("name"), NAME("session"), TEXT("action"), TEXT("cron"), OPT("missed", CTL_P_TEXT) } },
    { "schedule.list", m_mgmt,          false, { { 0 } } },
    { "schedule.show", m_mgmt,          false, { NAME("name") } },
    { "schedule.remove", m_mgmt,        true,  { NAME("name") } },
    { "group.create",  m_group_create,  true,  { NAME("name") } },
    { "group.list",    m_group_list,    false, { { 0 } } },
    { "group.show",    m_group_show,    false, { NAME("name") } },
    { "group.prepare", m_group_prepare, true,  { NAME("name") } },
    { "group.start",   m_group_start,   true,  { NAME("name"), OPT("restore", CTL_P_BOOL) } },
    { "group.stop",    m_group_stop,    true,  { NAME("name"), OPT("split", CTL_P_BOOL) } },
    { "group.delete",  m_group_delete,  true,  { NAME("name"), OPT("force", CTL_P_BOOL) } },
};

const struct ctl_method *ctl_method_find(const char *name)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(methods[i].name, name) == 0)
            return &methods[i];
    return NULL;
}

static bool name_ok(const char *s, size_t len)
{
    if (len == 0 || len >= 64 || strlen(s) != len)
        return false;
    for (; *s; s++)
        if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static bool param_ok(const struct ctl_param *p, const json_t *v)
{
    enum pc_map_state st;
    int rate;
    switch (p->type) {
    case CTL_P_NAME:
        return json_is_string(v) && name_ok(json_string_value(v), json_string_length(v));
    case CTL_P_PATH:
        return json_is_string(v) && json_string_value(v)[0] == '/' &&
               json_string_length(v) < PATH_MAX &&
               strlen(json_string_value(v)) == json_string_length(v);
    case CTL_P_INT:
        return json_is_integer(v) && json_integer_value(v) >= p->min &&
               json_integer_value(v) <= p->max;
    case CTL_P_BOOL:
        return json_is_boolean(v);
    case CTL_P_RATE:
        return ctl_rate_from_json(v, &rate) == 0;
    case CTL_P_STATE:
        return json_is_string(v) && ctl_state_parse(json_string_value(v), &st) == 0;
    case CTL_P_TEXT:
        return json_is_string(v) && json_string_length(v) < CTL_TEXT_MAX &&
               strlen(json_string_value(v)) == json_string_length(v) &&
               !strchr(json_string_value(v), '\n');
    case CTL_P_NAME_OR_EMPTY:
        return json_is_string(v) && (json_string_length(v) == 0 ||
                                     name_ok(json_string_value(v), json_string_length(v)));
    }
    abort();
}

static void param_expect(const struct ctl_param *p, char *buf, size_t len)
{
    switch (p->type) {
    case CTL_P_NAME:
        snprintf(buf, len, "a name of 1-63 letters, digits, '-', '_' or '.'");
        return;
    case CTL_P_PATH:
        snprintf(buf, len, "an absolute path");
        return;
    case CTL_P_INT:
        snprintf(buf, len, "an integer from %lld to %lld", (long long)p->min, (long long)p->max);
        return;
    case CTL_P_BOOL:
        snprintf(buf, len, "true or false");
        return;
    case CTL_P_RATE:
        snprintf(buf, len, "a rate 0-150 or \"unlimited\"");
        return;
    case CTL_P_STATE:
        snprintf(buf, len, "a mapping state (idle_or_copied, preparing, prepared, copying, "
                 "stopping, stopped, suspended)");
        return;
    case CTL_P_TEXT:
        snprintf(buf, len, "a string of at most %u bytes on one line", CTL_TEXT_MAX - 1);
        return;
    case CTL_P_NAME_OR_EMPTY:
        snprintf(buf, len, "a name of 1-63 letters, digits, '-', '_' or '.', or \"\" for none");
        return;
    }
    abort();
}

int ctl_params_validate(const struct ctl_method *m, const json_t *params,
                        struct pc_error *err)
{
    const char *key;
    const json_t *v;
    char expect[160];

    if (params && !json_is_object(params))
        return ctl_error_set(err, -EINVAL, "%s: params must be an object", m->name);
    json_object_foreach((json_t *)params, key, v) {
        const struct ctl_param *p = NULL;
        for (size_t i = 0; i < CTL_MAX_PARAMS && m->params[i].name; i++)
            if (strcmp(m->params[i].name, key) == 0)
                p = &m->params[i];
        if (!p)
            return ctl_error_set(err, -EINVAL, "%s: unknown parameter '%.64s'", m->name, key);
        if (!param_ok(p, v)) {
            char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            param_expect(p, expect, sizeof expect);
            ctl_error_set(err, -EINVAL, "%s: parameter '%s' must be %s, not %.40s%s",
                          m->name, key, expect, text ? text : "?",
                          text && strlen(text) > 40 ? "..." : "");
            free(text);
            return -EINVAL;
        }
    }
    for (size_t i = 0; i < CTL_MAX_PARAMS && m->params[i].name; i++) {
        if (m->params[i].required && !json_object_get(params, m->params[i].name))
            return ctl_error_set(err, -EINVAL, "%s: parameter '%s' is required",
                                 m->name, m->params[i].name);
    }
    return 0;
}
