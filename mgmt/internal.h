/* SPDX-License-Identifier: MIT */
/*
 * mgmt/internal.h — what the files of mgmt/ share and nothing outside sees.
 *
 * Locking
 *   mgmt.lock guards the catalog connection (every statement and
 *   transaction), the busy list (M1), the test clock's offset and the
 *   scheduler's flags.  Never held across a hook, a driver call or a
 *   control call: an action marks its session busy under the lock, then
 *   works without it.
 */
#ifndef PITCOPY_MGMT_INTERNAL_H
#define PITCOPY_MGMT_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>

#include <sqlite3.h>

#include "mgmt/mgmt.h"

#define MGMT_NAME_MAX   40   /* sessions and schedules: room for derived names */
#define MGMT_TEXT_MAX   4096 /* descriptions, hook commands */

struct mgmt_busy {
    struct mgmt_busy *next;
    char              session[64];
    char              action[32];
};

struct mgmt {
    pthread_mutex_t   lock;
    char             *dir;
    char             *path;            /* DIR/catalog.db */
    sqlite3          *db;              /* NULL when unusable (M4) */
    int               db_code;         /* -errno why, when db is NULL */
    char              db_error[256];
    int               schema_version;
    mgmt_call_fn      call;
    void             *call_arg;
    struct mgmt_busy *busy;            /* M1 */
    bool              test_clock;
    int64_t           clock_offset_ms; /* test clock: added to the real time */
    /* The scheduler. */
    pthread_t         sched_th;
    bool              sched_running;
    bool              sched_stop;
    pthread_cond_t    sched_cond;      /* stop, the clock or a schedule changed */
};

/* mgmt.c */
void    mgmt_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int     mgmt_fail(struct pc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int64_t mgmt_now_ms_locked(struct mgmt *m);
int64_t mgmt_now_ms(struct mgmt *m);
/* "2024-05-01T23:59:00" in local time (what cron means), into buf. */
void    mgmt_time_text(int64_t ms, char *buf, size_t len);
/* The reverse, local time; also "YYYY-MM-DD HH:MM[:SS]".  0 or -EINVAL. */
int     mgmt_time_parse(const char *s, int64_t *ms);
json_t *mgmt_time_json(int64_t ms);   /* null for 0 */
bool    mgmt_name_ok(const char *s, size_t max);
/* Whether object p has a key that is not one of known[0..n); if so flag
 * gets the first one as the CLI spells it ("known_hosts": "--known-hosts"),
 * for a driver's configure() to name the option it does not take. */
bool    mgmt_unknown_option(const json_t *p, const char *const *known, size_t n, char *flag,
                            size_t len);

/* catalog.c */
#define MGMT_SCHEMA_VERSION 3
/*
 * Open path, apply the migrations it lacks (each in a transaction), set
 * WAL and the busy timeout, check it.  -EUCLEAN for a corrupt file or one
 * that is not a catalog, -EPROTONOSUPPORT for a newer schema; err names
 * the file and says what to do.
 */
int  catalog_open(const char *path, sqlite3 **out, int *version, struct pc_error *err);
/* For the unit test: open applying migrations only up to version. */
int  catalog_open_at(const char *path, int version, sqlite3 **out, int *got,
                     struct pc_error *err);
void catalog_close(sqlite3 *db);
/*
 * One statement with parameters bound from types: 's' text (NULL: null),
 * 'i' int64_t, 'd' double.  catalog_exec: no rows wanted; returns the
 * number of rows changed, or -errno.  catalog_rows: every row as an object
 * keyed by column name, into *rows (an array).
 */
int  catalog_exec(struct mgmt *m, struct pc_error *err, const char *sql, const char *types, ...);
int  catalog_rows(struct mgmt *m, struct pc_error *err, json_t **rows, const char *sql,
                  const char *types, ...);
/* The first row, or -ENOENT (err untouched) when there is none. */
int  catalog_row(struct mgmt *m, struct pc_error *err, json_t **row, const char *sql,
                 const char *types, ...);
/* Map a SQLite failure to -errno and a message naming the catalog. */
int  catalog_error(struct mgmt *m, struct pc_error *err, int rc, const char *what);
/* The catalog's usability (M4): 0, or its -errno with err. */
int  catalog_usable_locked(struct mgmt *m, struct pc_error *err);

/* cron.c */
struct cron {
    uint64_t minute;   /* bit n: minute n matches */
    uint32_t hour;
    uint32_t dom;      /* bits 1-31 */
    uint16_t month;    /* bits 1-12 */
    uint8_t  dow;      /* bits 0-6, Sunday 0 (7 is folded onto 0) */
    bool     dom_star, dow_star;
};
/* "m h dom mon dow"; 0, or -EINVAL with a message naming the field. */
int     cron_parse(const char *expr, struct cron *c, char *msg, size_t msglen);
/* The first matching minute strictly after t (seconds, local time); -1: none in 5 years. */
int64_t cron_next(const struct cron *c, int64_t t);

/* hooks.c */
struct hook_result {
    int     rc;           /* exit status; -1 killed or not started */
    bool    timed_out;
    bool    started;
    int64_t start_mono_ns, end_mono_ns;
    char    output[512];  /* the tail of stdout and stderr, one line */
};
/*
 * Run cmd with /bin/sh -c in its own process group, env added to the
 * daemon's, at most timeout_s seconds (then the group is killed).  0 when
 * it exited 0; else -errno with err saying what happened (exit status,
 * signal, timeout, cannot start) and r filled.
 */
int hook_run(const char *cmd, const char *const *env, int timeout_s, struct hook_result *r,
             struct pc_error *err);
int64_t mono_ns(void);

/* history.c */
/* A row before the thing starts (M3): returns its id (> 0) or -errno. */
int64_t history_begin(struct mgmt *m, const char *session, const char *action,
                      const char *kind, const char *origin, int64_t parent);
void    history_end(struct mgmt *m, int64_t id, const char *outcome, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void    history_interrupted(struct mgmt *m);
int     history_list(struct mgmt *m, const json_t *params, json_t **out, struct pc_error *err);

/* system.c */
int  system_request(struct mgmt *m, const char *op, const json_t *p, json_t **out,
                    struct pc_error *err);

/* session.c */
int  session_request(struct mgmt *m, const char *op, const json_t *p, json_t **out,
                     struct pc_error *err);
/*
 * Run action on session (flash, start, background-copy, terminate,
 * restore); origin says who ("cli", "schedule NIGHTLY").  0 when every
 * step worked; *out describes what happened either way.
 */
int  session_action(struct mgmt *m, const char *session, const char *action,
                    const char *origin, bool dry_run, int copy_rate, json_t **out,
                    struct pc_error *err);
bool session_action_known(const char *action);

/* schedule.c */
int  schedule_request(struct mgmt *m, const char *op, const json_t *p, json_t **out,
                      struct pc_error *err);
int  schedule_start(struct mgmt *m, struct pc_error *err);
void schedule_stop(struct mgmt *m);

#endif
