/* SPDX-License-Identifier: MIT */
/*
 * mgmt/mgmt.h — the management layer inside `pitcopy serve`: storage
 * systems, CSM-style FlashCopy sessions with copy sets, quiesce hooks,
 * schedules and the history of every action, kept in a SQLite catalog.
 *
 * Role
 *   A *system* is somewhere point-in-time copies are made (type `local`:
 *   this daemon's own engine; `svc`: a Spectrum Virtualize array over SSH or
 *   REST, driver_svc.c; `ds8000`, `zos` later, behind the same
 *   driver interface, driver.h).  A *session* holds *copy sets* (H1 host
 *   volume -> T1 target); one action (flash, start, initiate background
 *   copy, terminate, restore) applies to every copy set at once, the flash
 *   at one point in time through a consistency group.  A flash runs the
 *   session's pre-flash hook (quiesce), flashes, and then always runs the
 *   post-flash hook (thaw) once the pre-flash hook succeeded.  Schedules
 *   (cron expressions) fire actions from a thread of the daemon.  Every
 *   action and hook is recorded in the history with start, end, outcome
 *   and message.
 *
 *   The catalog is DIR/catalog.db (mgmt/catalog.c: schema migrations, WAL,
 *   busy timeout).  The control protocol's system.*, session.* and
 *   schedule.* methods (ctl/protocol.h) come here through mgmt_request().
 *   The `local` driver makes its mappings and groups by calling the
 *   daemon's own control methods in-process (mgmt_call_fn), so they are
 *   validated and persisted exactly as the CLI's: mgmt never includes
 *   ctl/ (ctl depends on mgmt, not the reverse).
 *
 * Session states and status (as Copy Services Manager has them):
 *
 *     Defined --flash/start--> Preparing --> Prepared --> Target Available
 *        ^                                                  |      |
 *        +------------------- terminate --------------------+      |
 *                                     restore --> Recovering ------+
 *     any --(a copy set's mapping suspended, or an action failed
 *            half way)--> Suspended
 *
 *   Defined: no relationships exist (never flashed, or terminated);
 *   status Inactive.  Preparing/Prepared: the targets are being taken
 *   offline for the point in time.  Target Available: the targets hold the
 *   point-in-time image (background copy may still run; status Normal).
 *   Recovering: a restore copies T1 back to H1 (Warning).  Suspended:
 *   Severe, with the message saying why.
 *
 * Invariants
 *   M1  One action at a time per session: a second gets -EBUSY naming the
 *       action in progress (a schedule firing then records "skipped").
 *   M2  Once a pre-flash hook succeeded, the post-flash hook runs, whether
 *       the flash worked or not; a failed or timed-out pre-flash hook
 *       aborts the action before anything is flashed and the post-flash
 *       hook does not run (there is nothing to thaw).
 *   M3  Every action, hook and schedule firing gets a history row before
 *       it starts (outcome "running") and its outcome when it ends; rows
 *       left "running" by a crash are marked "interrupted" at start-up.
 *   M4  The catalog is only changed in transactions; a corrupt or
 *       unreadable catalog turns every mgmt request into a clear error
 *       (-EUCLEAN, naming the file) and never stops the daemon from
 *       serving its volumes.
 *
 * Context
 *   mgmt_open/start/stop/close: the daemon's main thread.  mgmt_request:
 *   any control connection's thread, without any ctl lock held (actions
 *   call back into the control methods and may block for a hook's
 *   timeout).  The scheduler runs in its own thread.
 */
#ifndef PITCOPY_MGMT_H
#define PITCOPY_MGMT_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "pitcopy.h"

#define MGMT_CATALOG_NAME "catalog.db"

/*
 * Call one of the daemon's control methods in-process: params stolen (NULL:
 * none); on success *result is the method's result (the caller's
 * reference); on failure -errno with err set, as the control socket would
 * answer.
 */
typedef int (*mgmt_call_fn)(void *arg, const char *method, json_t *params, json_t **result,
                            struct pc_error *err);

struct mgmt_opts {
    const char   *dir;           /* the state directory: DIR/catalog.db */
    mgmt_call_fn  call;          /* how the local driver reaches the engine */
    void         *call_arg;
    /*
     * Tests only: a clock set to this time (seconds since the epoch) at
     * start that runs on from there, and can be set again with
     * system.clock.  0: the real clock, and system.clock only reads it.
     */
    int64_t       test_clock;
};

struct mgmt;

/*
 * Open (create, migrate) the catalog.  A catalog that cannot be used is not
 * a failure here (M4): the error is logged and every request answers it.
 * Fails only for out of memory.
 */
int  mgmt_open(const struct mgmt_opts *o, struct mgmt **out, struct pc_error *err);
/* The in-process caller, once the control server runs. */
void mgmt_set_call(struct mgmt *m, mgmt_call_fn call, void *arg);
/* Start the scheduler: missed runs first (each schedule's --missed policy). */
int  mgmt_start(struct mgmt *m, struct pc_error *err);
/* Stop the scheduler; an action it runs finishes first.  Idempotent. */
void mgmt_stop(struct mgmt *m);
void mgmt_close(struct mgmt *m);

/* For `status`: {catalog, schema_version, error, sessions, schedules, test_clock}. */
json_t *mgmt_status(struct mgmt *m);

/*
 * One system.*, session.* or schedule.* request (ctl/protocol.h lists them
 * and has validated params' types).  0 with *result, or -errno with err.
 */
int  mgmt_request(struct mgmt *m, const char *method, const json_t *params, json_t **result,
                  struct pc_error *err);

#endif
