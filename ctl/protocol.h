/* SPDX-License-Identifier: MIT */
/*
 * ctl/protocol.h — the control protocol of `pitcopy serve`: JSON lines over
 * a Unix socket, the server that answers them and the client the CLI uses.
 *
 * Role
 *   One request per line, one response per line, in order:
 *
 *     → {"id":7,"method":"map.start","params":{"name":"nightly"}}
 *     ← {"id":7,"result":{...a mapping...}}
 *     ← {"id":7,"error":{"code":-16,"message":"mapping nightly is copying; ..."}}
 *
 *   id is an integer the client chooses (echoed; null when the request was
 *   too broken to have one); params is an object, omitted when empty.  An
 *   error's code is a negative errno, its message a sentence a user can act
 *   on (the engine's pc_error text where the engine refused).  Requests are
 *   validated whole before anything runs: unknown methods (-ENOSYS), unknown
 *   or mistyped parameters and out-of-range values (-EINVAL), text that is
 *   not JSON (-EBADMSG) and lines over CTL_LINE_MAX (-E2BIG, the rest of
 *   the line is discarded) get an error reply and the connection stays open.
 *
 *   Methods and their params ("?" = optional):
 *
 *     status            {}
 *         → {version, pid, uptime_s, state_dir, control, nbd_unix, nbd_tcp,
 *            nbd_tls ("off", "optional" or "required"), io_backend, workers,
 *            volumes, mappings, states{state: n}, nbd_connections,
 *            skipped_volumes[], skipped_mappings[], mgmt: {catalog,
 *            schema_version, error, systems, sessions, schedules, test_clock}}
 *     volume.create     {name, size, file?}       → VOLUME
 *         size in bytes (a multiple of 4096); file an absolute path,
 *         default STATE_DIR/volumes/NAME.img, created sparse if missing
 *     volume.list       {}                        → {volumes: [VOLUME]}
 *     volume.show       {name}                    → VOLUME
 *     volume.delete     {name, keep_file?}        → {name, path, file_removed}
 *     map.create        {source, target, name?, grain?, copy_rate?, clean_rate?,
 *                        group?, autodelete?}     → MAPPING
 *     map.list          {}                        → {mappings: [MAPPING]}
 *     map.show | map.prepare   {name}           → MAPPING
 *     map.start         {name, restore?}          → MAPPING
 *         restore: the mapping goes T -> S while S -> T exists (its partner);
 *         S reads as T from now on (pc_map_start_restore)
 *     map.stop          {name, split?}            → MAPPING
 *         split: only at progress 100; cleans at full speed, target stays online
 *     map.delete        {name, force?}            → {name, deleted: true}
 *     map.set           {name, copy_rate?, clean_rate?, group? ("" = none),
 *                        autodelete?} (one at least) → MAPPING
 *     map.wait          {name, state, timeout_ms?} → MAPPING once in state;
 *                       -ETIMEDOUT after timeout_ms (absent: no limit),
 *                       -ENOENT if the mapping is deleted meanwhile
 *
 *     group.create      {name}                    → GROUP
 *     group.list        {}                        → {groups: [GROUP]}
 *     group.show | group.prepare | group.start   {name} → GROUP
 *     group.stop        {name, split?}            → GROUP
 *     group.delete      {name, force?}            → {name, deleted: true}
 *         members of a group are prepared, started and stopped through it
 *         (map.prepare/start/stop refuse them); force leaves them stand-alone
 *
 *     The management layer (mgmt/mgmt.h), answered without any ctl lock:
 *     system.add        {name, type, host?, port?, user?, key?, known_hosts?,
 *                        rest?, password_file?, cacert?, insecure?} → SYSTEM
 *         type svc: host (SSH) or rest (https URL); paths absolute; the
 *         password file is checked (owner, 0600) and only its path is kept
 *     system.list       {}                        → {systems: [SYSTEM]}
 *     system.show | system.remove {name}          → SYSTEM | {name, removed}
 *     system.clock      {set?}                    → {now, epoch_ms, test_clock}
 *         set (a local time) only in a daemon started with PITCOPY_TEST_CLOCK
 *     session.create    {name, system, description?} → SESSION
 *     session.list      {}                        → {sessions: [SESSION]}
 *     session.show      {name}                    → SESSION
 *     session.delete    {name, force?}            → {name, deleted: true}
 *     session.add_copyset {name, h1, t1} | session.remove_copyset {name, h1}
 *                                                 → SESSION
 *     session.set       {name, description?, pre_flash?, post_flash?,
 *                        hook_timeout?, copy_rate?} ("" clears a hook) → SESSION
 *     session.flash | session.terminate | session.restore {name, dry_run?}
 *     session.start | session.background_copy {name, dry_run?, copy_rate?}
 *         → ACTION; an action that failed in any step (hooks included) is an
 *         error reply whose message says which step and why
 *     session.history   {name, limit?}            → {session, entries: [ENTRY]}
 *     schedule.add      {name, session, action, cron, missed? ("run"|"skip")}
 *                                                 → SCHEDULE
 *     schedule.list     {}                        → {schedules: [SCHEDULE]}
 *     schedule.show | schedule.remove {name}      → SCHEDULE | {name, removed}
 *
 *     SYSTEM   = {name, type, created, sessions: [name], connection: {...},
 *                 address: text}
 *     SESSION  = {name, system, system_type, description, state, status,
 *                 message, pre_flash, post_flash, hook_timeout, copy_rate,
 *                 group, last_action, last_action_at, last_freeze_ms,
 *                 last_hold_ns, busy, copysets: [{id, h1, t1, relationship,
 *                 exists, state, progress, copy_rate, started_at, complete,
 *                 restore_state, restore_progress}]}
 *     ACTION   = {session, action, origin, dry_run, outcome, message,
 *                 commands: [text], hooks: {pre_flash?, post_flash?},
 *                 freeze_ms, start_hold_ns, history_id, session_state: SESSION}
 *     ENTRY    = {id, session, action, kind (action|hook|schedule), origin,
 *                 parent, start, end, start_ms, duration_ms, outcome, message}
 *     SCHEDULE = {name, session, action, cron, missed, enabled, next_run,
 *                 last_run, last_outcome, last_message}
 *     Times in mgmt objects are local ISO 8601 without a zone, as cron has them.
 *
 *     VOLUME  = {name, path, size, direct, source_of: [map], target_of: map|null}
 *     MAPPING = {name, source, target, state, progress, grains_split, grains,
 *                grain_size, copy_rate, clean_rate, copy_bytes_per_sec,
 *                clean_bytes_per_sec, complete, target_online,
 *                dependent_mappings, grains_to_clean, start_hold_ns,
 *                started_at, incremental, durability, invalid, group, autodelete,
 *                restoring, partner}
 *     GROUP   = {name, state ("empty" or a mapping state), mappings: [name],
 *                members: [{name, source, target, state, progress, copy_rate,
 *                           target_online, dependent_mappings, grains_to_clean}],
 *                start_hold_ns, started_at}
 *
 *   A rate is an integer 0-150 or the string "unlimited" (also accepted as
 *   a string of digits); bytes_per_sec is null for unlimited.  started_at is
 *   an ISO 8601 UTC time or null.  Names are 1-63 letters, digits, '-', '_'
 *   or '.'.
 *
 * Invariants
 *   P1  Every line received gets exactly one reply line, in order (blank
 *       lines are ignored; a client that hangs up mid-wait gets none).
 *   P2  Nothing a client sends can crash the daemon or make it allocate
 *       more than CTL_LINE_MAX per connection for its input.
 *   P3  At most CTL_MAX_CONNS connections are served at once; one more is
 *       told so in one error line and closed.
 *
 * Context
 *   ctl_server_*: the daemon's main thread.  The server runs one thread per
 *   connection, so a map.wait blocks only its own connection.
 *   ctl_client_*: any thread; one call at a time per client.
 */
#ifndef PITCOPY_CTL_PROTOCOL_H
#define PITCOPY_CTL_PROTOCOL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "pitcopy.h"

#ifndef PITCOPY_VERSION
#define PITCOPY_VERSION "0.4.0"
#endif

#define CTL_LINE_MAX     (64u << 10)   /* one request line, newline included */
#define CTL_REPLY_MAX    (16u << 20)   /* one reply line, as the client bounds it */
#define CTL_MAX_CONNS    64u
#define CTL_STATE_FILE   "pitcopy.json"
#define CTL_SOCK_NAME    "control.sock"
#define CTL_NBD_SOCK_NAME "nbd.sock"
#define CTL_LOCK_NAME    "lock"
#define CTL_VOLUME_DIR   "volumes"

/* ------------------------------------------------------------- the state */

/*
 * The daemon's catalogue: the volumes and mappings it serves, their backing
 * paths, and DIR/pitcopy.json where they persist.  (It moves to mgmt/'s
 * SQLite catalogue when that arrives.)
 */
struct ctl_state;

/*
 * Read DIR/pitcopy.json (a missing file is an empty state), open the volumes
 * and recreate the mappings in e — each from its metadata file in DIR/meta/
 * (state, progress, place in its chain), then resume their work.  A volume whose file is missing or has the
 * wrong size is skipped with a log line, and so are its mappings; skipped
 * entries stay in the file for the next start.  Fails (-errno, err) only
 * when the file exists and cannot be read or parsed.
 */
int  ctl_state_load(struct pc_engine *e, const char *dir, enum pc_durability durability,
                    struct ctl_state **out, struct pc_error *err);
/* Write DIR/pitcopy.json now: temp file, fsync, rename, fsync of DIR. */
int  ctl_state_save(struct ctl_state *st, struct pc_error *err);
/* Save if a mapping changed state on its own (a copy completed) since the last save. */
void ctl_state_refresh(struct ctl_state *st);
unsigned ctl_state_volumes(struct ctl_state *st);
unsigned ctl_state_mappings(struct ctl_state *st);
/* Frees the catalogue only; the engine keeps its volumes and mappings. */
void ctl_state_free(struct ctl_state *st);

/* ------------------------------------------------------------- the server */

struct ctl_server;

struct ctl_server_opts {
    const char *path;          /* the Unix socket to create (mode 0600) */
    struct ctl_state *state;
    const char *nbd_unix;      /* for status: where NBD listens (NULL: not there) */
    const char *nbd_tcp;
    const char *nbd_tls;       /* for status: "off", "optional", "required" (a literal) */
    /* for status: NBD connections open now */
    unsigned  (*nbd_connections)(void *arg);
    void       *nbd_arg;
    struct mgmt *mgmt;         /* system.*, session.*, schedule.* (NULL: none) */
};

/* Fails -EADDRINUSE when a server answers on o->path (ctl_socket_clear). */
int  ctl_server_start(struct pc_engine *e, const struct ctl_server_opts *o,
                      struct ctl_server **out, struct pc_error *err);
/*
 * Run one control method in-process, exactly as a request on the socket
 * would (validated against the method's table, state saved), for the
 * management layer's local driver: an mgmt_call_fn with arg = the server.
 * params stolen; the result is the caller's.
 */
int  ctl_server_call(void *server, const char *method, json_t *params, json_t **result,
                     struct pc_error *err);
/*
 * Stop accepting, tell every connection to finish (a request in progress
 * completes; a map.wait returns -ESHUTDOWN), and wait up to timeout_ms for
 * them.  Returns how many are still running; call again to keep waiting.
 */
unsigned ctl_server_drain(struct ctl_server *s, int timeout_ms);
/* After a drain that returned 0: unlink the socket, free. */
void ctl_server_destroy(struct ctl_server *s);
/*
 * Serve one connection on fd in the calling thread, exactly as an accepted
 * one, until the client hangs up; fd is closed.  For the fuzzer
 * (tests/fuzz/fuzz-ctl.c), as nbd_server_opts.stdio_fd is for NBD.  Not
 * counted in status, and ctl_server_drain does not wait for it.
 */
void ctl_server_serve_fd(struct ctl_server *s, int fd);

/*
 * Make way for a Unix socket at path, which must then be free to bind:
 * nothing there is fine; a socket nobody answers on (a dead server's) is
 * removed; a socket a server answers on is left alone, -EADDRINUSE, and so
 * is anything else (-EEXIST: not a socket; -errno: cannot tell).  err names
 * what ("NBD socket") and path and says what to do.  Racy by nature: the
 * caller's bind() must still expect EADDRINUSE.
 */
int  ctl_socket_clear(const char *what, const char *path, struct pc_error *err);

/* ------------------------------------------------------------- the client */

struct ctl_client;

/*
 * Connect to the daemon's control socket.  The error says which socket and
 * asks whether the daemon runs.
 */
int  ctl_client_connect(const char *path, struct ctl_client **out, struct pc_error *err);
/*
 * One request.  params is stolen (NULL: none).  On success *result is the
 * reply's result (the caller's reference).  A daemon's refusal returns its
 * code with its message in err; a broken or silent connection (timeout_ms
 * elapsed; < 0 waits for ever) returns -errno and marks the client broken.
 */
int  ctl_client_call(struct ctl_client *c, const char *method, json_t *params,
                     int timeout_ms, json_t **result, struct pc_error *err);
bool ctl_client_broken(const struct ctl_client *c);
void ctl_client_close(struct ctl_client *c);

/* ------------------------------------------------------------- shared names */

/* "idle_or_copied" … → the state; -EINVAL for anything else. */
int  ctl_state_parse(const char *s, enum pc_map_state *out);

/* Log one line to stderr, "pitcopy: " first. */
void ctl_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
