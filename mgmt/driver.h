/* SPDX-License-Identifier: MIT */
/*
 * mgmt/driver.h — the interface every storage system's driver implements.
 *
 * Role
 *   A session action is a few driver calls on the session's relationships
 *   (one per copy set: H1 -> T1) and, where the system has them, one
 *   consistency group.  `local` (driver_local.c) drives this daemon's own
 *   engine through its control methods; `svc` (driver_svc.c) issues a
 *   Spectrum Virtualize array's commands over SSH or REST;
 *   `ds8000` (driver_ds8000.c) a DS8000's dscli commands or REST requests;
 *   `zos` will submit z/OSMF jobs behind the same calls.  A system's connection (host, user, key, REST URL...)
 *   is validated by the driver's configure() at `system add` and kept in
 *   the catalog (systems.options); a driver gets it in d->options.
 *
 *   Every driver has a dry run: with d->dry_run set, calls that would
 *   change something only append the exact command or request they would
 *   send to d->commands (a JSON array of strings), and succeed; reads
 *   (query, the lookups that decide what to send) still run.  Without it,
 *   every command actually sent is appended too, for the history.
 *
 * Invariants
 *   V1  flash and start_incremental make one point in time for every copy
 *       set of the session (a consistency group, or the array's freeze):
 *       never one copy set after another.
 *   V2  Calls are idempotent in effect: prepare on prepared relationships,
 *       withdraw on none, create nothing twice; so an action that failed
 *       half way can simply be run again.
 *   V3  A failing call leaves err naming the copy set or group and what the
 *       system said.
 *
 * Context
 *   The thread running the session's action (M1: one per session); may
 *   block as long as the system takes.
 */
#ifndef PITCOPY_MGMT_DRIVER_H
#define PITCOPY_MGMT_DRIVER_H

#include "mgmt/internal.h"

struct mgmt_copyset {
    int64_t id;
    char    h1[64], t1[64];
    char    rel[64];          /* the relationship's name on the system (a mapping) */
    char    rrel[64];         /* the reverse one a restore uses (T1 -> H1) */
};

struct mgmt_dsession {
    const char          *name;
    char                 group[64];    /* the consistency group for the flash */
    struct mgmt_copyset *cs;
    unsigned             ncs;
    int                  copy_rate;    /* background copy for flash (0: nocopy) */
};

struct mgmt_driver;

struct mgmt_driver_ops {
    const char *type;
    /*
     * system.add: check the connection params p (host, port, user, key,
     * known_hosts, rest, password_file, cacert, insecure) for this type;
     * *options is what the catalog keeps (never a secret, only where one
     * is).  Does not connect.
     */
    int (*configure)(const char *system, const json_t *p, json_t **options,
                     struct pc_error *err);
    /* A text for `system show`: where and how the system is reached. */
    void (*describe)(const json_t *options, char *buf, size_t len);
    /* Release d->priv (NULL: nothing to release). */
    void (*close)(struct mgmt_driver *d);
    /* Can h1 -> t1 be a copy set (both exist, same size, t1 free)? */
    int (*check_copyset)(struct mgmt_driver *d, const char *h1, const char *t1,
                         struct pc_error *err);
    /* Create what is missing; take the targets offline for a point in time. */
    int (*prepare)(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err);
    /* V1: the point in time.  *info: {start_hold_ns} where the system says. */
    int (*flash)(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **info,
                 struct pc_error *err);
    /* V1: after prepare, refresh the targets with background copy at rate,
     * copying only what changed since the last start. */
    int (*start_incremental)(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                             json_t **info, struct pc_error *err);
    /* Copy every remaining grain to the targets at rate. */
    int (*background_copy)(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                           struct pc_error *err);
    /* Stop the relationships, keep them. */
    int (*stop)(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err);
    /* Stop and remove every relationship and the group (terminate). */
    int (*withdraw)(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err);
    /* Copy T1 back onto H1 for every copy set. */
    int (*restore)(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err);
    /*
     * *out = {group: state|null, copysets: [{h1, t1, relationship, exists,
     * state, progress, copy_rate, started_at, restore_state}]}.
     */
    int (*query)(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **out,
                 struct pc_error *err);
};

struct mgmt_driver {
    const struct mgmt_driver_ops *ops;
    bool          dry_run;
    json_t       *commands;     /* sent, or with dry_run that would be */
    mgmt_call_fn  call;         /* local: the daemon's control methods */
    void         *call_arg;
    const char   *system;       /* the system's name, for messages */
    const json_t *options;      /* its connection (configure); borrowed */
    const char   *state_dir;    /* the daemon's (for sockets a driver keeps) */
    void         *priv;         /* the driver's own, for one action */
    /* The session's z/OS connection (zos.h), or NULL: flash and terminate
     * and query go through it; zos_fallback: to the storage path when
     * unreachable. */
    const char   *zos_name;
    const json_t *zos;
    bool          zos_fallback;
};

/* driver.c */
/* The driver for a system type, or NULL. */
const struct mgmt_driver_ops *driver_find(const char *type);
/* "local, svc" (later "ds8000", "zos"), for messages. */
const char *driver_types(void);
/* End a driver's use: ops->close (d->commands stays the caller's). */
void driver_close(struct mgmt_driver *d);
/* Once per process, from mgmt_open / mgmt_close (libcurl's global state). */
void driver_global_init(void);
void driver_global_cleanup(void);

extern const struct mgmt_driver_ops driver_local_ops;   /* driver_local.c */
extern const struct mgmt_driver_ops driver_svc_ops;     /* driver_svc.c */
extern const struct mgmt_driver_ops driver_ds8000_ops;  /* driver_ds8000.c */
extern const struct mgmt_driver_ops driver_zos_ops;     /* zos.c */

#endif
