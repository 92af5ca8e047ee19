/* SPDX-License-Identifier: MIT */
/*
 * mgmt/zos.h — the z/OS management option: a DS8000 session's flash and
 * withdraw submitted as a z/OSMF batch job of TSO FlashCopy commands.
 *
 * Role
 *   A `zos` system (zos.c) is a z/OS connection, not a storage system: its
 *   options are the z/OSMF URL, user, password file, CA, the device
 *   numbers of the volumes (DEVN=VOLUME), the storage systems it reaches
 *   and whether APAR OA59561 is declared applied.  A session set with
 *   `--zos NAME` has driver_ds8000.c route flash, terminate and query through it.
 *
 * Invariants
 *   Z1  The password is read for one request's basic auth and wiped; it is
 *       never in a log, the history, a message or argv.
 *   Z2  zos_run_job returns -EHOSTUNREACH only when nothing reached z/OSMF
 *       (so nothing ran and a fallback to the storage path is safe).
 *
 * Context
 *   The action's thread.
 */
#ifndef PITCOPY_MGMT_ZOS_H
#define PITCOPY_MGMT_ZOS_H

#include "mgmt/driver.h"

/* The device number of volume vol in the connection's table, or NULL. */
const char *zos_devn(const json_t *zos, const char *vol);
/*
 * The preconditions, each reported by name: the session's system is one the
 * connection reaches, APAR OA59561 is declared applied, every volume has a
 * device number.
 */
int zos_check(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err);
/*
 * Submit a job of one IKJEFT01 step with systsin (TSO lines), wait for it and
 * read its SYSTSPRT.  0 when it ended CC 0000; otherwise err names the job,
 * its return code and the first error message of the spool.  Z2.
 */
int zos_run_job(struct mgmt_driver *d, const char *what, const char *systsin,
                struct pc_error *err);

/*
 * The query as one job of an FCQUERY per copy set (DEVN of H1), its spool
 * parsed into the driver.h query shape (mapping in zos.c).  Z2.
 */
int zos_query(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **out,
              struct pc_error *err);

extern const struct mgmt_driver_ops driver_zos_ops;

#endif
