/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzz-nbd.c — libFuzzer: an input is one byte saying when the
 * server stops, then everything a client sends on one NBD connection, from
 * its handshake flags to its last request.
 *
 * Role
 *   Every input gets a fresh nbd_server serving exactly one connection, one
 *   end of a socketpair (nbd_server_opts.stdio_fd, the fuzzing entry of
 *   nbd/server.c); a client thread (fuzzutil.c) sends the input on the other
 *   end, shuts its side and reads whatever comes back.  So the real code runs
 *   as in `pitcopy serve`: conn.c's receive loop and buffering, handshake.c's
 *   options, transmission.c's validation and replies, and requests that pass
 *   it going to the engine.  The input ends as a client hanging up does;
 *   nbd_server_stop then waits for the connection to be freed, so a slot,
 *   buffer or volume reference it fails to return shows up as a hang in stop
 *   or as a leak at the end of the input.
 *
 *   The first byte, n: 0 stops the server (nbd_server_stop) only after the
 *   client hung up; otherwise the stop begins once the client has sent
 *   (n - 1) * 16 bytes, and the client goes on sending the rest, so the
 *   shutdown replies (NBD_REP_ERR_SHUTDOWN, ESHUTDOWN; internal.h N6) and
 *   the drain are fuzzed too.  Where the server is in the stream when the
 *   stop reaches its worker is up to the scheduler, so such an input may
 *   need a few runs to reproduce.
 *
 *   The engine lives for the whole run: one worker, volumes "v1" (1 MiB) and
 *   "v2" (1 MiB) as files in a private tmpfs directory, and a mapping v1 →
 *   v2 started with copy rate 0, so writes to v1 take the copy-on-write path
 *   and reads of v2 are redirected.  Volume contents carry over between
 *   inputs; nothing in nbd/ depends on them.
 *
 *   Seeds: tests/fuzz/corpus-nbd/ (gen-corpus.py), named by message sequence.
 *
 *   Build and run: make fuzz (tests/fuzz/run-fuzz.sh); one input:
 *   build-fuzz/fuzz-nbd FILE.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nbd/nbd.h"
#include "fuzzutil.h"

#define VOL_SIZE (1u << 20)

static struct pc_engine *engine;

static void die(const char *what, const struct pc_error *err)
{
    fprintf(stderr, "fuzz-nbd: %s: %s\n", what, err->msg);
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct pc_engine_opts eo = { .workers = 1, .buffer_arena = 16u << 20 };
    struct pc_map_opts mo = { .name = "m", .grain_size = 64u << 10, .copy_rate = 0,
                              .clean_rate = 0, .initial_state = PC_MAP_IDLE_OR_COPIED };
    struct pc_error err = { 0 };
    struct pc_volume *v1, *v2;
    struct pc_map *m;
    const char *dir = fz_sandbox("fuzz-nbd");
    char path[4096];

    (void)argc;
    (void)argv;
    if (pc_engine_create(&eo, &engine, &err) != 0)
        die("engine", &err);
    snprintf(path, sizeof path, "%s/v1.img", dir);
    if (pc_volume_open(engine, "v1", path, VOL_SIZE, PC_VOL_CREATE, &v1, &err) != 0)
        die("volume v1", &err);
    snprintf(path, sizeof path, "%s/v2.img", dir);
    if (pc_volume_open(engine, "v2", path, VOL_SIZE, PC_VOL_CREATE, &v2, &err) != 0)
        die("volume v2", &err);
    mo.source = v1;
    mo.target = v2;
    if (pc_map_create(engine, &mo, &m, &err) != 0 || pc_map_start(m, &err) != 0)
        die("mapping v1 -> v2", &err);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nbd_server_opts o = { .stdio_fd = -1 };
    struct nbd_server *s;
    struct pc_error err = { 0 };
    struct fz_client client;
    size_t stop_at = SIZE_MAX;
    int sv[2];

    if (size == 0)
        return -1;                              /* not an input: no stop byte */
    if (data[0])
        stop_at = (size_t)(data[0] - 1) * 16;
    data++;
    size--;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        perror("fuzz-nbd: socketpair");
        abort();
    }
    o.stdio_fd = sv[0];                         /* the server's from here on */
    if (nbd_server_start(engine, &o, &s, &err) != 0)
        die("nbd_server_start", &err);
    fz_client_start(&client, sv[1], data, size, stop_at);
    if (stop_at != SIZE_MAX) {
        fz_client_wait_sent(&client, stop_at);
        nbd_server_stop(s);                     /* returns once the connection is gone */
        fz_client_join(&client);
    } else {
        fz_client_join(&client);                /* the server hung up */
        nbd_server_stop(s);
    }
    return 0;
}
