/* SPDX-License-Identifier: MIT */
/*
 * nbd/nbd.h — the NBD server that puts engine volumes in front of hosts.
 *
 * Role
 *   Listens on a Unix socket (mode 0600) and/or TCP, speaks fixed-newstyle
 *   NBD, and exports every engine volume under its name.  Connections are
 *   spread over the engine's workers: a connection lives on one worker, its
 *   socket I/O and its requests' pc_io_submit run on that worker's loop.
 *   With credentials (X.509 or pre-shared keys) it speaks TLS after
 *   NBD_OPT_STARTTLS, and may require it (tls.c); it will not serve plain
 *   NBD on a TCP address other hosts can reach unless told to
 *   (insecure_tcp).  Protocol handling is split by phase (STYLE.md §1):
 *   handshake.c (option negotiation), transmission.c (read → validate →
 *   execute → reply), conn.c (lifetime, status), tls.c (credentials and
 *   records), wire.h (wire structs and constants only).
 *
 * Context
 *   nbd_server_start / nbd_server_stop: control threads (they block).
 */
#ifndef PITCOPY_NBD_H
#define PITCOPY_NBD_H

#include <stdbool.h>

#include "pitcopy.h"

struct nbd_server;

/* Ordered: a higher mode asks more of clients. */
enum nbd_tls_mode {
    NBD_TLS_OFF = 0,         /* plain NBD only; NBD_OPT_STARTTLS is refused */
    NBD_TLS_ON,              /* the client chooses: STARTTLS, or plain text */
    NBD_TLS_REQUIRE,         /* every option but STARTTLS and ABORT waits for TLS */
};

struct nbd_server_opts {
    const char *unix_path;   /* listen here (created 0600); NULL: no Unix socket */
    const char *tcp_host;    /* NULL with tcp_port set: 127.0.0.1 */
    const char *tcp_port;    /* NULL: no TCP listener */
    int         stdio_fd;    /* >= 0: serve exactly one connection on this fd (fuzzing) */

    /* TLS.  With tls > NBD_TLS_OFF exactly one of the two credentials. */
    enum nbd_tls_mode tls;
    const char *tls_creds_dir;  /* X.509: ca-cert.pem, server-cert.pem, server-key.pem,
                                 * optional ca-crl.pem (the qemu and nbdkit layout) */
    const char *tls_psk_file;   /* pre-shared keys, psktool's "username:hexkey" lines */
    bool        tls_verify_peer;/* X.509: require a client certificate signed by ca-cert.pem */
    bool        insecure_tcp;   /* allow TCP beyond loopback without NBD_TLS_REQUIRE */
};

/* Load the TLS credentials (if any), then start listening; returns 0 and
 * *out, or -errno with err naming what failed (a file, never a secret). */
int  nbd_server_start(struct pc_engine *e, const struct nbd_server_opts *o,
                      struct nbd_server **out, struct pc_error *err);
/* Stop listening, finish requests in flight, close every connection, free. */
void nbd_server_stop(struct nbd_server *s);
/* Connections open now (for `pitcopy status`). */
unsigned nbd_server_connections(const struct nbd_server *s);

#endif
