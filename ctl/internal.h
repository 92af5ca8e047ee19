/* SPDX-License-Identifier: MIT */
/*
 * ctl/internal.h — what the files of ctl/ share and nothing outside sees.
 *
 * Locking
 *   ctl_state.lock guards the catalogue (both lists, the skipped arrays,
 *   every field of ctl_vol and ctl_map) and serializes saves.  It is taken
 *   before the engine's own lock (pc_* control calls may run under it), never
 *   after: the engine never calls back.  Engine calls that may wait long
 *   (prepare, start, stop, delete, wait) run without it, on a mapping held
 *   busy (S2).
 *
 * Invariants
 *   S1  Every volume and mapping in the engine is in the catalogue, and the
 *       other way round, except a mapping whose delete is under way.
 *   S2  A mapping is deleted only once no other call on it is in progress
 *       (map.c's Context): delete marks it deleting, waits for busy == 0,
 *       then calls pc_map_delete; new calls find it gone.  map.wait does not
 *       count as busy: pc_map_wait wakes with -ENOENT on a delete and the
 *       engine keeps a deleted mapping's struct until it is destroyed.
 *   S3  pitcopy.json is replaced only whole (temp, fsync, rename, fsync dir).
 */
#ifndef PITCOPY_CTL_INTERNAL_H
#define PITCOPY_CTL_INTERNAL_H

#include <pthread.h>

#include "ctl/protocol.h"
#include "mgmt/mgmt.h"

struct ctl_vol {
    struct ctl_vol   *next;
    char              name[64];
    char             *path;
    uint64_t          size;
    struct pc_volume *v;
};

struct ctl_map {
    struct ctl_map *next;
    char            name[64];
    char            source[64];
    char            target[64];
    struct pc_map  *m;
    unsigned        busy;           /* calls in progress (S2) */
    bool            deleting;
    /* As last written to pitcopy.json (a deleting mapping is not asked). */
    int             saved_state;
    bool            saved_complete;
    uint32_t        saved_grain;
    int             saved_copy_rate;
    int             saved_clean_rate;
    bool            saved_incremental;
    char            group[64];      /* consistency group, "" = none */
    bool            autodelete;     /* delete once its copy completes (ctl_state_refresh) */
};

struct ctl_group {
    struct ctl_group *next;
    char              name[64];
    struct pc_group  *g;
    unsigned          busy;           /* group calls in progress (S2, as for mappings) */
    bool              deleting;
};

struct ctl_state {
    pthread_mutex_t   lock;
    pthread_cond_t    idle;          /* a mapping's busy count dropped */
    struct pc_engine *e;
    char             *dir;
    struct ctl_vol   *vols;
    struct ctl_map   *maps;
    struct ctl_group *groups;
    json_t           *skipped_vols;  /* entries as read, kept for the next start */
    json_t           *skipped_maps;
    json_t           *skipped_why;   /* {name: reason} for status */
    struct timespec   started;       /* CLOCK_MONOTONIC */
    enum pc_durability durability;   /* for mappings created from now on */
};

/* DIR/meta/NAME.pcmeta: a mapping's metadata file (engine/meta.h). */
#define CTL_META_DIR "meta"
void ctl_meta_path(const struct ctl_state *st, const char *map, char *out, size_t len);

/* state.c */
/* Fill err (when not NULL) and return code. */
int  ctl_error_set(struct pc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct ctl_vol *ctl_vol_find_locked(struct ctl_state *st, const char *name);
struct ctl_map *ctl_map_find_locked(struct ctl_state *st, const char *name);
struct ctl_group *ctl_group_find_locked(struct ctl_state *st, const char *name);
/* The catalogue changed: drop skipped entries the change supersedes. */
void ctl_skipped_forget_locked(struct ctl_state *st, const char *vol, const char *map,
                               const char *target);
int  ctl_state_save_locked(struct ctl_state *st, struct pc_error *err);
json_t *ctl_rate_json(int rate);
/* A rate from JSON: integer 0-150, "unlimited", or a string pc_rate_parse takes. */
int  ctl_rate_from_json(const json_t *j, int *rate);

/* methods.c */
struct ctl_call {
    const char        *method;    /* its name, as the table has it */
    struct ctl_server *srv;
    struct ctl_state  *st;
    int                fd;        /* the client's, to notice it leaving a wait */
    json_t            *params;    /* validated against the method's table */
    json_t            *result;
    struct pc_error    err;
};

typedef int (*ctl_method_fn)(struct ctl_call *c);

enum ctl_ptype {
    CTL_P_NAME = 1,   /* string, 1-63 bytes, no NUL */
    CTL_P_PATH,       /* absolute path, < PATH_MAX */
    CTL_P_INT,        /* integer in [min, max] */
    CTL_P_BOOL,
    CTL_P_RATE,       /* see ctl_rate_from_json */
    CTL_P_STATE,      /* a mapping state's name */
    CTL_P_TEXT,       /* string, 0-4095 bytes, no NUL or newline (mgmt checks more) */
    CTL_P_NAME_OR_EMPTY, /* CTL_P_NAME, or "" for none */
};

struct ctl_param {
    const char     *name;
    enum ctl_ptype  type;
    bool            required;
    int64_t         min, max;     /* CTL_P_INT */
};

#define CTL_MAX_PARAMS 24
#define CTL_TEXT_MAX   4096

struct ctl_method {
    const char      *name;
    ctl_method_fn    fn;
    bool             changes;     /* logged, and the state saved after it */
    struct ctl_param params[CTL_MAX_PARAMS];
};

const struct ctl_method *ctl_method_find(const char *name);
/* Check params (may be NULL) against m's table; 0 or -EINVAL with err. */
int  ctl_params_validate(const struct ctl_method *m, const json_t *params,
                         struct pc_error *err);

/* Delete mapping name as map.delete does (S2); 0 or -errno with err. */
int  ctl_map_delete(struct ctl_state *st, const char *name, bool force, struct pc_error *err);

/* server.c: for the methods that need the server. */
bool ctl_server_stopping(const struct ctl_server *s);
json_t *ctl_server_status(struct ctl_server *s);
/* The management layer (NULL when the daemon runs without one). */
struct mgmt *ctl_server_mgmt(struct ctl_server *s);

#endif
