/* SPDX-License-Identifier: MIT */
/*
 * tests/common/nbdutil.h — NBD test helpers: the server on a Unix socket in
 * the engine fixture's directory, shell commands for real clients, and a
 * small blocking raw-protocol client for what no real client would send.
 *
 * Every helper asserts (cmocka).  Raw sockets have a 10 s receive timeout,
 * so a server that does not answer fails the test instead of hanging it.
 */
#ifndef PITCOPY_NBDUTIL_H
#define PITCOPY_NBDUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engineutil.h"
#include "nbd/nbd.h"
#include "nbd/wire.h"

struct tu_nbd {
    struct nbd_server *s;
    char               sock[512];
};

/* nbd_server_start on DIR/nbd.sock; asserts success. */
void tu_nbd_start(struct tu_eng *f, struct tu_nbd *n);
void tu_nbd_stop(struct tu_nbd *n);
/* "nbd+unix:///VOL?socket=SOCK" into out. */
void tu_nbd_uri(const struct tu_nbd *n, const char *vol, char *out, size_t len);

/* Run a shell command (sh -c, under `timeout 120`), its output going to
 * ours; returns its exit status, or -1 when it did not exit. */
int  tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Is prog on $PATH? */
bool tu_have(const char *prog);

/* ---- raw client ---- */

/* A connected blocking socket (10 s receive timeout). */
int  tu_raw_connect(const struct tu_nbd *n);
void tu_raw_send(int fd, const void *p, size_t len);
/* Exactly len bytes; false on end of file, error or timeout. */
bool tu_raw_recv(int fd, void *p, size_t len);
/* The socket was closed by the server (reads end of file within 10 s). */
bool tu_raw_closed(int fd);

/* Greeting and client flags (fixed newstyle, no zeroes). */
void tu_raw_hello(int fd);
/* One option; then read one reply header (payload into buf, at most cap
 * bytes, the rest asserted absent).  Returns the reply type. */
void     tu_raw_opt(int fd, uint32_t opt, const void *data, uint32_t len);
uint32_t tu_raw_opt_reply(int fd, uint32_t opt, void *buf, uint32_t cap, uint32_t *len);
/* GO with NBD_INFO_BLOCK_SIZE; asserts success; returns the export size.
 * structured/meta negotiate those first. */
uint64_t tu_raw_go(int fd, const char *export, bool structured, bool meta);
/* hello + tu_raw_go on a new connection. */
int  tu_raw_open(const struct tu_nbd *n, const char *export, bool structured, bool meta,
                 uint64_t *size);

void tu_raw_req(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t off,
                uint32_t count);
/* A simple reply: returns its NBD error, cookie in *cookie. */
uint32_t tu_raw_simple(int fd, uint64_t *cookie);

/* One reply of either kind, read whole: its cookie, NBD error (0 on
 * success), and for a successful READ its data in buf (cap bytes at most;
 * *len set).  For structured replies reads chunks until the DONE one. */
struct tu_reply {
    uint64_t cookie;
    uint32_t error;
    bool     structured;
    uint32_t len;           /* data bytes (READ) */
    uint32_t nextents;      /* BLOCK_STATUS: descriptors seen */
    uint32_t ext_len;       /* ... the first one's length and flags */
    uint32_t ext_flags;
    char     msg[128];      /* a structured error's message, NUL-terminated */
};
/* is_read: a simple reply carries read data (count bytes into buf). */
void tu_raw_reply(int fd, bool is_read, uint32_t count, void *buf, uint32_t cap,
                  struct tu_reply *out);

#endif
