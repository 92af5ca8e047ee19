/* SPDX-License-Identifier: MIT */
/*
 * io/fault.h — fault injection and power-loss simulation, for tests.
 *
 * Role
 *   Every read, write and sync the engine issues — through an io_loop, or
 *   the metadata's own pwrite/fdatasync — asks io_fault_check() first.  With
 *   no rule and no simulation armed that is one relaxed atomic load.
 *
 * Rules (errors)
 *   A rule "PATH:OP:ERR[:AFTER[:COUNT]]" makes requests of kind OP (read,
 *   write, sync, any) on a file whose path contains PATH fail with ERR (EIO,
 *   ENOSPC, or a number), after AFTER matching requests succeeded, COUNT
 *   times (0 or absent: forever).  Rules come from io_fault_add() or from
 *   $PITCOPY_FAULTS, rules separated by ';', read at the first check.
 *
 * Power loss (the way SQLite's crash VFS or dm-log-writes replays do it)
 *   $PITCOPY_CRASHSIM=1 (or io_crashsim_enable()) keeps, for every write
 *   not yet made durable, the bytes it overwrote.  A write becomes durable
 *   once it has completed and a later sync of the same file completes.
 *   io_crashsim_crash(seed) then, for a random subset of the writes still
 *   volatile, newest first, puts the old bytes back (whole writes, or only
 *   some of their 512-byte sectors: a torn write), and ends the process with
 *   _exit(137): what survives is what a power cut could have left.
 *
 * Context
 *   Any thread.  The simulation serializes writes under one lock (tests only).
 */
#ifndef PITCOPY_IO_FAULT_H
#define PITCOPY_IO_FAULT_H

#include <stdbool.h>
#include <stdint.h>

#include "io/loop.h"

/* 0, or the -errno a rule injects for this request.  op: enum io_op. */
int  io_fault_check(int fd, int op, uint64_t off, uint32_t len);
/* A request checked above has completed with res (io_loop calls it; so must
 * any other caller of io_fault_check).  dsync: a write made durable by its
 * own completion (RWF_DSYNC, FUA). */
void io_fault_done(int fd, int op, bool dsync, uint64_t off, uint32_t len, int res);

/* Add a rule (syntax above); -EINVAL for a malformed one. */
int  io_fault_add(const char *rule);
void io_fault_clear(void);
/* How many requests the rules have failed so far. */
uint64_t io_fault_injected(void);

void io_crashsim_enable(void);
/* Writes not yet durable (bytes), for tests. */
uint64_t io_crashsim_volatile_bytes(void);
/* Drop a random subset of the volatile writes and _exit(137).  Never returns. */
void io_crashsim_crash(uint64_t seed) __attribute__((noreturn));

#endif
