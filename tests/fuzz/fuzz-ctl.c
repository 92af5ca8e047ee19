/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz-ctl.c — libFuzzer: an input is everything a client sends
 * on one control connection (JSON lines, or whatever else it sends).
 *
 * Role
 *   Every input gets a fresh catalogue (ctl_state_load of an empty state
 *   directory) and a fresh ctl_server; the connection is one end of a
 *   socketpair served by ctl_server_serve_fd, the very loop an accepted
 *   connection runs (line splitting, the CTL_LINE_MAX limit, JSON parsing,
 *   the envelope, parameter validation, then the method), while a client
 *   thread (fuzzutil.c) sends the input and reads the replies.  Methods run
 *   for real against one engine, so volume.create makes files, map.start
 *   starts copies, and pitcopy.json is saved after every change.  After the
 *   input, what it created is deleted again through the engine, so each
 *   input starts from nothing; a catalogue that disagrees with the engine
 *   aborts there.
 *
 * The harness's fences (link-time --wrap, see the Makefile)
 *   A fuzzer must not touch the machine it runs on, nor wait.  So:
 *   - pc_volume_open refuses paths outside this run's tmpfs directory (a
 *     "file" parameter may name any absolute path: /etc/passwd with the
 *     right size would be opened read-write and could become a target) and
 *     sizes over 128 KiB (a copy or a cleaning at the slowest rate, 128
 *     KiB/s, then takes a second at most);
 *   - copy and clean rates run 1024 times faster (pc_rate_bytes_per_sec,
 *     as the background copy sees it): a walk at rate 1 first waits for a
 *     grain's worth of tokens, which is 8 s for a 1 MiB grain, even when
 *     there is nothing to clean, and map.delete with force waits for it;
 *   - pc_map_wait does not wait, and to m_map_wait the server always reads
 *     as stopping, so a map.wait that would block answers -ESHUTDOWN as it
 *     does while the daemon shuts down, instead of sleeping up to
 *     timeout_ms (INT32_MAX is valid).
 *   Each refusal is an ordinary error reply, so the code behind it still
 *   runs its failure path.
 *
 *   Deleted mappings stay in the engine until it is destroyed (engine/map.c,
 *   the graveyard), so the engine is recreated every ENGINE_INPUTS inputs.
 *
 *   Seeds: tests/fuzz/corpus-ctl/ (gen-corpus.py).  Build and run: make
 *   fuzz (tests/fuzz/run-fuzz.sh); one input: build-fuzz/fuzz-ctl FILE.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "ctl/internal.h"
#include "fuzzutil.h"

#define VOL_SIZE_MAX   (128u << 10)
#define ENGINE_INPUTS  1000u

static struct pc_engine *engine;
static unsigned engine_inputs;
static const char *sandbox;
static char state_dir[PATH_MAX], sock_path[PATH_MAX];

static void die(const char *what, const struct pc_error *err)
{
    fprintf(stderr, "fuzz-ctl: %s: %s\n", what, err ? err->msg : strerror(errno));
    abort();
}

/* ------------------------------------------------------------------------
 * Fences
 */

int __real_pc_volume_open(struct pc_engine *e, const char *name, const char *path,
                          uint64_t size, unsigned flags, struct pc_volume **out,
                          struct pc_error *err);
int __wrap_pc_volume_open(struct pc_engine *e, const char *name, const char *path,
                          uint64_t size, unsigned flags, struct pc_volume **out,
                          struct pc_error *err);
int __real_pc_map_wait(struct pc_map *m, enum pc_map_state state, int timeout_ms);
int __wrap_pc_map_wait(struct pc_map *m, enum pc_map_state state, int timeout_ms);
bool __wrap_ctl_server_stopping(const struct ctl_server *s);
uint64_t __real_pc_rate_bytes_per_sec(int rate);
uint64_t __wrap_pc_rate_bytes_per_sec(int rate);

int __wrap_pc_volume_open(struct pc_engine *e, const char *name, const char *path,
                          uint64_t size, unsigned flags, struct pc_volume **out,
                          struct pc_error *err)
{
    size_t n = strlen(sandbox);

    if (strncmp(path, sandbox, n) != 0 || path[n] != '/' || strstr(path, "/..")) {
        return ctl_error_set(err, -EACCES, "fuzz harness: volume %s: %s is outside %s",
                             name, path, sandbox);
    }
    if (size > VOL_SIZE_MAX) {
        return ctl_error_set(err, -EFBIG, "fuzz harness: volume %s: %llu bytes is over %u",
                             name, (unsigned long long)size, VOL_SIZE_MAX);
    }
    return __real_pc_volume_open(e, name, path, size, flags, out, err);
}

int __wrap_pc_map_wait(struct pc_map *m, enum pc_map_state state, int timeout_ms)
{
    (void)timeout_ms;
    return __real_pc_map_wait(m, state, 0);
}

uint64_t __wrap_pc_rate_bytes_per_sec(int rate)
{
    uint64_t b = __real_pc_rate_bytes_per_sec(rate);

    /* 0 (no copy) and UINT64_MAX (unlimited) keep their meaning. */
    return b == 0 || b >= UINT64_MAX >> 10 ? b : b << 10;
}

bool __wrap_ctl_server_stopping(const struct ctl_server *s)
{
    (void)s;
    return true;
}

/* ------------------------------------------------------------------------
 * The engine, and putting it back as it was
 */

static void engine_new(void)
{
    struct pc_engine_opts eo = { .workers = 1, .buffer_arena = 16u << 20 };
    struct pc_error err = { 0 };

    if (pc_engine_create(&eo, &engine, &err) != 0)
        die("engine", &err);
    engine_inputs = 0;
}

/* Delete what the input created, through the engine (S1: the catalogue
 * lists all of it). */
static void undo(struct ctl_state *st)
{
    struct pc_error err = { 0 };

    for (struct ctl_map *m = st->maps; m; m = m->next) {
        /* No slow cleaning: the targets are thrown away next. */
        (void)pc_map_set_clean_rate(m->m, PC_RATE_UNLIMITED, &err);
        if (pc_map_delete(m->m, true, &err) != 0)
            die("deleting a mapping the input left", &err);
    }
    for (struct ctl_vol *v = st->vols; v; v = v->next)
        if (pc_volume_close(v->v, &err) != 0)
            die("closing a volume the input left", &err);
    ctl_state_free(st);
    fz_empty_dir(state_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sandbox = fz_sandbox("fuzz-ctl");
    snprintf(state_dir, sizeof state_dir, "%s/state", sandbox);
    snprintf(sock_path, sizeof sock_path, "%s/control.sock", sandbox);
    if (mkdir(state_dir, 0700) < 0)
        die("mkdir", NULL);
    engine_new();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ctl_server_opts o = { .path = sock_path };
    struct pc_error err = { 0 };
    struct ctl_server *cs;
    struct ctl_state *st;
    struct fz_client client;
    int sv[2];

    if (engine_inputs++ == ENGINE_INPUTS) {
        pc_engine_destroy(engine);
        engine_new();
    }
    /* durability none: a fuzz input may create mappings; no fsyncs per input */
    if (ctl_state_load(engine, state_dir, PC_DURABILITY_NONE, &st, &err) != 0)
        die("ctl_state_load", &err);
    o.state = st;
    if (ctl_server_start(engine, &o, &cs, &err) != 0)
        die("ctl_server_start", &err);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair", NULL);
    fz_client_start(&client, sv[1], data, size, size);
    ctl_server_serve_fd(cs, sv[0]);             /* until the input ends; closes sv[0] */
    fz_client_join(&client);
    if (ctl_server_drain(cs, 10000) != 0)
        die("ctl_server_drain: a connection is left", NULL);
    ctl_server_destroy(cs);
    undo(st);
    return 0;
}
