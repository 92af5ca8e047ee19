/* SPDX-License-Identifier: MIT */
/*
 * nbd/nbd.h — the NBD server that puts engine volumes in front of hosts.
 *
 * Role
 *   Listens on a Unix socket (mode 0600) and/or TCP, speaks fixed-newstyle
 *   NBD, and exports every engine volume under its name.  Connections are
 *   spread over the engine's workers: a connection lives on one worker, its
 *   socket I/O and its requests' pc_io_submit run on that worker's loop.
 *   Protocol handling is split by phase (STYLE.md §1): handshake.c (option
 *   negotiation), transmission.c (read → validate → execute → reply),
 *   conn.c (lifetime, status), wire.h (wire structs and constants only).
 *
 * Context
 *   nbd_server_start / nbd_server_stop: control threads (they block).
 */
#ifndef PITCOPY_NBD_H
#define PITCOPY_NBD_H

#include "pitcopy.h"

struct nbd_server;

struct nbd_server_opts {
    const char *unix_path;   /* listen here (created 0600); NULL: no Unix socket */
    const char *tcp_host;    /* NULL with tcp_port set: 127.0.0.1 */
    const char *tcp_port;    /* NULL: no TCP listener */
    int         stdio_fd;    /* >= 0: serve exactly one connection on this fd (fuzzing) */
};

/* Start listening; returns 0 and *out, or -errno with err naming what failed. */
int  nbd_server_start(struct pc_engine *e, const struct nbd_server_opts *o,
                      struct nbd_server **out, struct pc_error *err);
/* Stop listening, finish requests in flight, close every connection, free. */
void nbd_server_stop(struct nbd_server *s);
/* Connections open now (for `pitcopy status`). */
unsigned nbd_server_connections(const struct nbd_server *s);

#endif
