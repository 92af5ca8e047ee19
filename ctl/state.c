/* SPDX-License-Identifier: MIT */
/*
 * ctl/state.c — the daemon's catalogue and DIR/pitcopy.json.
 *
 * Role
 *   Keeps what the engine does not: each volume's backing path, the list of
 *   mappings, and what was skipped at start.  Loads the file at start
 *   (reopening volumes, recreating mappings) and rewrites it whole after
 *   every change.
 *
 *   The file:
 *     {"version": 1,
 *      "volumes":  [{"name", "path", "size"}],
 *      "groups":   [{"name"}],                       (consistency groups; optional)
 *      "mappings": [{"name", "source", "target", "grain", "copy_rate",
 *                    "clean_rate", "state", "complete", "incremental",
 *                    "group"?, "autodelete"?}]}
 *
 * Invariants
 *   S3 (internal.h) — the file is replaced only whole.
 *   S4  A mapping's state and split bitmap live in its metadata file,
 *       DIR/meta/NAME.pcmeta (engine/meta.c), not here: the "state" field
 *       is informational.  The file is created before the mapping is
 *       saved here and removed after it is forgotten, so a crash leaves at
 *       worst a stray file, never a mapping without one.  A mapping listed
 *       with no file (saved by a version before 0.5) comes back as that
 *       version restored it: idle_or_copied when its copy was complete or
 *       it was idle, else stopped (an incomplete image).
 *
 * Context
 *   Load and free: the daemon's main thread, before and after the server
 *   runs.  Everything else: any thread, under ctl_state.lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl/internal.h"

void ctl_meta_path(const struct ctl_state *st, const char *map, char *out, size_t len)
{
    snprintf(out, len, "%s/%s/%s.pcmeta", st->dir, CTL_META_DIR, map);
}

void ctl_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "pitcopy: %s\n", line);
}

int ctl_error_set(struct pc_error *err, int code, const char *fmt, ...)
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

int ctl_state_parse(const char *s, enum pc_map_state *out)
{
    for (int i = PC_MAP_IDLE_OR_COPIED; i <= PC_MAP_SUSPENDED; i++) {
        if (strcmp(s, pc_map_state_name((enum pc_map_state)i)) == 0) {
            *out = (enum pc_map_state)i;
            return 0;
        }
    }
    return -EINVAL;
}

json_t *ctl_rate_json(int rate)
{
    return rate == PC_RATE_UNLIMITED ? json_string("unlimited") : json_integer(rate);
}

int ctl_rate_from_json(const json_t *j, int *rate)
{
    if (json_is_integer(j)) {
        json_int_t v = json_integer_value(j);
        if ((v < 0 || v > 150) && v != PC_RATE_UNLIMITED)
            return -EINVAL;
        *rate = (int)v;
        return 0;
    }
    if (json_is_string(j) && strlen(json_string_value(j)) == json_string_length(j))
        return pc_rate_parse(json_string_value(j), rate);
    return -EINVAL;
}

struct ctl_vol *ctl_vol_find_locked(struct ctl_state *st, const char *name)
{
    for (struct ctl_vol *v = st->vols; v; v = v->next)
        if (strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

struct ctl_map *ctl_map_find_locked(struct ctl_state *st, const char *name)
{
    for (struct ctl_map *m = st->maps; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

struct ctl_group *ctl_group_find_locked(struct ctl_state *st, const char *name)
{
    for (struct ctl_group *g = st->groups; g; g = g->next)
        if (strcmp(g->name, name) == 0)
            return g;
    return NULL;
}

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *j = json_object_get(o, key);
    if (!json_is_string(j) || strlen(json_string_value(j)) != json_string_length(j))
        return NULL;
    return json_string_value(j);
}

void ctl_skipped_forget_locked(struct ctl_state *st, const char *vol, const char *map,
                               const char *target)
{
    size_t i;
    json_t *e;
    if (vol) {
        for (i = 0; i < json_array_size(st->skipped_vols);) {
            const char *n = jstr(json_array_get(st->skipped_vols, i), "name");
            if (n && strcmp(n, vol) == 0) {
                ctl_log("forgetting skipped volume %s: a volume of that name exists now", vol);
                json_object_del(st->skipped_why, n);
                json_array_remove(st->skipped_vols, i);
            } else {
                i++;
            }
        }
    }
    for (i = 0; i < json_array_size(st->skipped_maps);) {
        e = json_array_get(st->skipped_maps, i);
        const char *n = jstr(e, "name"), *s = jstr(e, "source"), *t = jstr(e, "target");
        bool drop = (map && n && strcmp(n, map) == 0) ||
                    (vol && ((s && strcmp(s, vol) == 0) || (t && strcmp(t, vol) == 0))) ||
                    (target && t && strcmp(t, target) == 0);
        if (drop) {
            ctl_log("forgetting skipped mapping %s: superseded by a change to %s",
                    n ? n : "(unnamed)", map ? map : vol ? vol : target);
            if (n)
                json_object_del(st->skipped_why, n);
            json_array_remove(st->skipped_maps, i);
        } else {
            i++;
        }
    }
}

/* ------------------------------------------------------------------------
 * Save. */

static json_t *state_to_json_locked(struct ctl_state *st)
{
    json_t *root = json_object(), *vols = json_array(), *maps = json_array();
    json_object_set_new(root, "version", json_integer(1));
    /* Oldest first, as created: the lists are pushed at the head. */
    for (struct ctl_vol *v = st->vols; v; v = v->next)
        json_array_insert_new(vols, 0, json_pack("{s:s, s:s, s:I}", "name", v->name,
                                                 "path", v->path, "size", (json_int_t)v->size));
    json_array_extend(vols, st->skipped_vols);
    for (struct ctl_map *m = st->maps; m; m = m->next) {
        struct pc_map_info info;
        if (!m->deleting) {   /* S2: a deleting mapping keeps its last values */
            pc_map_info(m->m, &info);
            m->saved_state = (int)info.state;
            m->saved_complete = info.complete;
            m->saved_grain = info.grain_size;
            m->saved_copy_rate = info.copy_rate;
            m->saved_clean_rate = info.clean_rate;
            m->saved_incremental = info.incremental;
        }
        json_t *jm = json_pack("{s:s, s:s, s:s, s:I}", "name", m->name, "source", m->source,
                               "target", m->target, "grain", (json_int_t)m->saved_grain);
        json_object_set_new(jm, "copy_rate", ctl_rate_json(m->saved_copy_rate));
        json_object_set_new(jm, "clean_rate", ctl_rate_json(m->saved_clean_rate));
        json_object_set_new(jm, "state",
                            json_string(pc_map_state_name((enum pc_map_state)m->saved_state)));
        json_object_set_new(jm, "complete", json_boolean(m->saved_complete));
        json_object_set_new(jm, "incremental", json_boolean(m->saved_incremental));
        if (m->group[0])
            json_object_set_new(jm, "group", json_string(m->group));
        if (m->autodelete)
            json_object_set_new(jm, "autodelete", json_true());
        json_array_insert_new(maps, 0, jm);
    }
    json_array_extend(maps, st->skipped_maps);
    json_t *groups = json_array();
    for (struct ctl_group *g = st->groups; g; g = g->next)
        json_array_insert_new(groups, 0, json_pack("{s:s}", "name", g->name));
    json_object_set_new(root, "volumes", vols);
    json_object_set_new(root, "groups", groups);
    json_object_set_new(root, "mappings", maps);
    return root;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int ctl_state_save_locked(struct ctl_state *st, struct pc_error *err)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int fd = -1, r;
    json_t *root = state_to_json_locked(st);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) {
        return ctl_error_set(err, -ENOMEM, "out of memory writing the state");
    }
    snprintf(path, sizeof path, "%s/%s", st->dir, CTL_STATE_FILE);
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", st->dir, CTL_STATE_FILE);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        goto fail;
    }
    r = write_all(fd, text, strlen(text));
    if (!r)
        r = write_all(fd, "\n", 1);
    if (!r && fsync(fd) < 0)
        r = -errno;
    if (close(fd) < 0 && !r)
        r = -errno;
    fd = -1;
    if (r)
        goto fail;
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto fail;
    }
    /* The rename is durable only once the directory is. */
    int dfd = open(st->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) < 0)
        r = -errno;
    if (dfd >= 0)
        close(dfd);
    if (r)
        goto fail;
    free(text);
    return 0;
fail:
    free(text);
    unlink(tmp);
    ctl_error_set(err, r, "cannot write %s: %s", path, strerror(-r));
    ctl_log("cannot write %s: %s", path, strerror(-r));
    return r;
}

int ctl_state_save(struct ctl_state *st, struct pc_error *err)
{
    pthread_mutex_lock(&st->lock);
    int r = ctl_state_save_locked(st, err);
    pthread_mutex_unlock(&st->lock);
    return r;
}

/*
 * Autodelete (mkfcmap -autodelete): a mapping whose copy completed goes, once
 * no older mapping reads through its target (it has left its chain; a copied
 * mapping leaves as soon as it is the oldest).  Deleting it then waits for
 * nothing.
 */
static bool autodelete_due(struct ctl_map *m)
{
    struct pc_map_info info;
    enum pc_map_state state;
    bool complete;
    if (!m->autodelete || m->deleting || m->busy)
        return false;
    pc_map_state_get(m->m, &state, &complete);
    if (state != PC_MAP_IDLE_OR_COPIED || !complete)
        return false;
    pc_map_info(m->m, &info);
    return info.dependent_mappings == 0 && info.start_ns != 0;
}

void ctl_state_refresh(struct ctl_state *st)
{
    bool changed = false;
    char due[64] = "";
    pthread_mutex_lock(&st->lock);
    for (struct ctl_map *m = st->maps; m; m = m->next) {
        enum pc_map_state state;
        bool complete;
        if (m->deleting)
            continue;
        if (!due[0] && autodelete_due(m))
            snprintf(due, sizeof due, "%s", m->name);
        pc_map_state_get(m->m, &state, &complete);     /* O(1): runs every second */
        changed |= (int)state != m->saved_state || complete != m->saved_complete;
    }
    if (changed) {
        struct pc_error err;
        ctl_state_save_locked(st, &err);
    }
    pthread_mutex_unlock(&st->lock);
    /* One at a time, without the lock: a delete may wait out a grace period.
     * A failure (logged) ends this round; the next refresh tries again. */
    while (due[0]) {
        struct pc_error err = { 0 };
        ctl_log("mapping %s: copy complete; deleting it (autodelete)", due);
        if (ctl_map_delete(st, due, false, &err) < 0) {
            ctl_log("mapping %s: autodelete failed: %s", due, err.msg);
            break;
        }
        due[0] = 0;
        pthread_mutex_lock(&st->lock);
        for (struct ctl_map *m = st->maps; m && !due[0]; m = m->next)
            if (autodelete_due(m))
                snprintf(due, sizeof due, "%s", m->name);
        pthread_mutex_unlock(&st->lock);
    }
}

unsigned ctl_state_volumes(struct ctl_state *st)
{
    unsigned n = 0;
    pthread_mutex_lock(&st->lock);
    for (struct ctl_vol *v = st->vols; v; v = v->next)
        n++;
    pthread_mutex_unlock(&st->lock);
    return n;
}

unsigned ctl_state_mappings(struct ctl_state *st)
{
    unsigned n = 0;
    pthread_mutex_lock(&st->lock);
    for (struct ctl_map *m = st->maps; m; m = m->next)
        n++;
    pthread_mutex_unlock(&st->lock);
    return n;
}

/* ------------------------------------------------------------------------
 * Load. */

static void skip_volume(struct ctl_state *st, json_t *entry, const char *name, const char *why)
{
    ctl_log("skipping volume %s (kept in %s for the next start): %s", name, CTL_STATE_FILE, why);
    json_array_append(st->skipped_vols, entry);
    json_object_set_new(st->skipped_why, name, json_string(why));
}

static void skip_mapping(struct ctl_state *st, json_t *entry, const char *name, const char *why)
{
    ctl_log("skipping mapping %s (kept in %s for the next start): %s", name, CTL_STATE_FILE, why);
    json_array_append(st->skipped_maps, entry);
    json_object_set_new(st->skipped_why, name, json_string(why));
}

static bool valid_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n < 64;
}

static void load_volume(struct ctl_state *st, json_t *entry)
{
    const char *name = jstr(entry, "name"), *path = jstr(entry, "path");
    const json_t *size = json_object_get(entry, "size");
    struct pc_error err = { 0 };
    struct pc_volume *v;

    if (!valid_name(name) || !path || !json_is_integer(size) || json_integer_value(size) <= 0) {
        skip_volume(st, entry, valid_name(name) ? name : "(unnamed)",
                    "the entry lacks a name, path or size");
        return;
    }
    if (ctl_vol_find_locked(st, name)) {
        skip_volume(st, entry, name, "a volume of that name is listed twice");
        return;
    }
    /* No PC_VOL_CREATE: a missing file must not come back empty. */
    if (pc_volume_open(st->e, name, path, (uint64_t)json_integer_value(size), 0, &v, &err) < 0) {
        skip_volume(st, entry, name, err.msg);
        return;
    }
    struct ctl_vol *cv = calloc(1, sizeof *cv);
    if (!cv || !(cv->path = strdup(path))) {
        free(cv);
        pc_volume_close(v, NULL);
        skip_volume(st, entry, name, "out of memory");
        return;
    }
    snprintf(cv->name, sizeof cv->name, "%s", name);
    cv->size = (uint64_t)json_integer_value(size);
    cv->v = v;
    cv->next = st->vols;
    st->vols = cv;
}

static void load_mapping(struct ctl_state *st, json_t *entry)
{
    const char *name = jstr(entry, "name"), *src = jstr(entry, "source"),
               *tgt = jstr(entry, "target"), *state = jstr(entry, "state");
    const json_t *grain = json_object_get(entry, "grain");
    const json_t *complete = json_object_get(entry, "complete");
    const json_t *incr = json_object_get(entry, "incremental");
    const json_t *autodel = json_object_get(entry, "autodelete");
    const json_t *jgroup = json_object_get(entry, "group");
    struct pc_map_opts o = { 0 };
    struct pc_error err = { 0 };
    enum pc_map_state was;
    char why[320];
    struct pc_map *m;

    if (!valid_name(name) || !valid_name(src) || !valid_name(tgt) || !state ||
        ctl_state_parse(state, &was) < 0 || !json_is_integer(grain) ||
        json_integer_value(grain) < PC_GRAIN_MIN || json_integer_value(grain) > PC_GRAIN_MAX ||
        ctl_rate_from_json(json_object_get(entry, "copy_rate"), &o.copy_rate) < 0 ||
        ctl_rate_from_json(json_object_get(entry, "clean_rate"), &o.clean_rate) < 0 ||
        !json_is_boolean(complete) || (incr && !json_is_boolean(incr)) ||
        (autodel && !json_is_boolean(autodel)) || (jgroup && !valid_name(jstr(entry, "group")))) {
        skip_mapping(st, entry, valid_name(name) ? name : "(unnamed)",
                     "the entry lacks a field or has one out of range");
        return;
    }
    struct ctl_vol *s = ctl_vol_find_locked(st, src), *t = ctl_vol_find_locked(st, tgt);
    if (!s || !t) {
        snprintf(why, sizeof why, "its %s volume %s was not opened",
                 s ? "target" : "source", s ? tgt : src);
        skip_mapping(st, entry, name, why);
        return;
    }
    struct ctl_group *cg = jgroup ? ctl_group_find_locked(st, jstr(entry, "group")) : NULL;
    if (jgroup && !cg) {
        snprintf(why, sizeof why, "its consistency group %s is not listed", jstr(entry, "group"));
        skip_mapping(st, entry, name, why);
        return;
    }
    o.name = name;
    o.source = s->v;
    o.target = t->v;
    o.group = cg ? cg->g : NULL;
    o.grain_size = (uint32_t)json_integer_value(grain);
    o.incremental = incr && json_is_true(incr);
    bool whole = json_is_true(complete);
    char meta[PATH_MAX];
    ctl_meta_path(st, name, meta, sizeof meta);
    o.meta_path = meta;
    o.durability = st->durability;
    o.recover = access(meta, F_OK) == 0;
    /* S4 */
    if (was == PC_MAP_IDLE_OR_COPIED ||
        (whole && (was == PC_MAP_COPYING || was == PC_MAP_STOPPING))) {
        o.initial_state = PC_MAP_IDLE_OR_COPIED;
        o.initial_complete = whole;
    } else {
        o.initial_state = PC_MAP_STOPPED;
    }
    if (pc_map_create(st->e, &o, &m, &err) < 0) {
        skip_mapping(st, entry, name, err.msg);
        return;
    }
    struct ctl_map *cm = calloc(1, sizeof *cm);
    if (!cm) {
        pc_map_delete(m, true, NULL);
        skip_mapping(st, entry, name, "out of memory");
        return;
    }
    snprintf(cm->name, sizeof cm->name, "%s", name);
    snprintf(cm->source, sizeof cm->source, "%s", src);
    snprintf(cm->target, sizeof cm->target, "%s", tgt);
    cm->m = m;
    struct pc_map_info info;
    pc_map_info(m, &info);
    cm->saved_state = (int)info.state;
    cm->saved_complete = info.complete;
    cm->saved_grain = o.grain_size;
    cm->saved_copy_rate = o.copy_rate;
    cm->saved_clean_rate = o.clean_rate;
    cm->saved_incremental = o.incremental;
    cm->autodelete = autodel && json_is_true(autodel);
    snprintf(cm->group, sizeof cm->group, "%s", cg ? cg->name : "");
    cm->next = st->maps;
    st->maps = cm;
    if (o.recover)
        ;                         /* the engine logged what it recovered, or why not */
    else if (o.initial_state == PC_MAP_STOPPED && was != PC_MAP_STOPPED)
        ctl_log("mapping %s was %s; it comes back stopped: it has no metadata file %s, "
                "so target %s holds an incomplete image (prepare and start the mapping "
                "again)", name, state, meta, tgt);
    else if (was != o.initial_state)
        ctl_log("mapping %s was %s with its copy complete; it comes back idle_or_copied",
                name, state);
}

static void state_free_lists(struct ctl_state *st)
{
    while (st->vols) {
        struct ctl_vol *v = st->vols;
        st->vols = v->next;
        free(v->path);
        free(v);
    }
    while (st->maps) {
        struct ctl_map *m = st->maps;
        st->maps = m->next;
        free(m);
    }
    while (st->groups) {
        struct ctl_group *g = st->groups;
        st->groups = g->next;
        free(g);
    }
}

static void load_group(struct ctl_state *st, json_t *entry)
{
    const char *name = jstr(entry, "name");
    struct pc_error err = { 0 };
    struct ctl_group *cg = calloc(1, sizeof *cg);
    if (!cg || !valid_name(name) || pc_group_create(st->e, name, &cg->g, &err) < 0) {
        /* Its mappings are skipped with it (load_mapping), and kept. */
        ctl_log("skipping consistency group %s: %s", valid_name(name) ? name : "(unnamed)",
                !cg ? "out of memory" : err.msg[0] ? err.msg : "the entry lacks a name");
        free(cg);
        return;
    }
    snprintf(cg->name, sizeof cg->name, "%s", name);
    cg->next = st->groups;
    st->groups = cg;
}

void ctl_state_free(struct ctl_state *st)
{
    if (!st)
        return;
    state_free_lists(st);
    json_decref(st->skipped_vols);
    json_decref(st->skipped_maps);
    json_decref(st->skipped_why);
    pthread_cond_destroy(&st->idle);
    pthread_mutex_destroy(&st->lock);
    free(st->dir);
    free(st);
}

int ctl_state_load(struct pc_engine *e, const char *dir, enum pc_durability durability,
                   struct ctl_state **out, struct pc_error *err)
{
    char path[PATH_MAX];
    json_error_t jerr;
    json_t *root = NULL;
    struct ctl_state *st = calloc(1, sizeof *st);
    int r;

    if (!st || !(st->dir = strdup(dir)) || !(st->skipped_vols = json_array()) ||
        !(st->skipped_maps = json_array()) || !(st->skipped_why = json_object())) {
        if (st) {
            free(st->dir);
            json_decref(st->skipped_vols);
            json_decref(st->skipped_maps);
            free(st);
        }
        return ctl_error_set(err, -ENOMEM, "out of memory loading the state");
    }
    pthread_mutex_init(&st->lock, NULL);
    pthread_cond_init(&st->idle, NULL);
    st->e = e;
    st->durability = durability;
    clock_gettime(CLOCK_MONOTONIC, &st->started);
    snprintf(path, sizeof path, "%s/%s", dir, CTL_META_DIR);
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        r = -errno;
        ctl_error_set(err, r, "cannot create %s: %s", path, strerror(-r));
        goto fail;
    }

    snprintf(path, sizeof path, "%s/%s", dir, CTL_STATE_FILE);
    FILE *f = fopen(path, "re");
    if (!f) {
        if (errno == ENOENT) {
            ctl_log("state: %s does not exist yet; starting with no volumes", path);
            *out = st;
            return 0;
        }
        r = -errno;
        ctl_error_set(err, r, "cannot read %s: %s", path, strerror(-r));
        goto fail;
    }
    root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
    fclose(f);
    r = -EINVAL;
    if (!root) {
        ctl_error_set(err, r, "%s is not valid JSON (line %d: %s); "
                 "repair it or move it aside", path, jerr.line, jerr.text);
        goto fail;
    }
    json_t *ver = json_object_get(root, "version");
    json_t *vols = json_object_get(root, "volumes"), *maps = json_object_get(root, "mappings");
    json_t *groups = json_object_get(root, "groups");
    if (!json_is_object(root) || !json_is_integer(ver) || json_integer_value(ver) != 1 ||
        !json_is_array(vols) || !json_is_array(maps) || (groups && !json_is_array(groups))) {
        ctl_error_set(err, r, "%s is not a version 1 pitcopy state "
                 "(version, volumes, mappings); repair it or move it aside", path);
        goto fail;
    }
    pthread_mutex_lock(&st->lock);
    size_t i;
    json_t *entry;
    json_array_foreach(vols, i, entry)
        load_volume(st, entry);
    json_array_foreach(groups, i, entry)
        load_group(st, entry);
    json_array_foreach(maps, i, entry)
        load_mapping(st, entry);
    pthread_mutex_unlock(&st->lock);
    json_decref(root);
    pc_engine_resume(e);          /* every chain is whole now */
    ctl_log("state: %u volumes and %u mappings from %s (%zu skipped)",
            ctl_state_volumes(st), ctl_state_mappings(st), path,
            json_array_size(st->skipped_vols) + json_array_size(st->skipped_maps));
    *out = st;
    return 0;
fail:
    json_decref(root);
    ctl_state_free(st);
    return r;
}
