/* SPDX-License-Identifier: MIT */
/*
 * nbd/internal.h — private declarations of the NBD server, one heading per file.
 *
 * Objects and who owns what
 *   struct nbd_server   listeners, the listener thread, one nbd_worker per
 *                       engine worker, the count of open connections, the
 *                       TLS credentials (struct nbd_tls, tls.c).
 *   struct nbd_worker   the server's state on one engine worker: its
 *                       connections, the end-of-turn send timer and the list
 *                       of connections with replies to send, the zero buffer.
 *   struct nbd_conn     one client: socket, receive buffer, handshake state,
 *                       NBD_MAX_INFLIGHT request slots, the send queue, and
 *                       after STARTTLS its GnuTLS session (nbd_tls_conn).
 *   struct nbd_req      one request slot: the engine request (pc_io), its
 *                       buffer, and the reply head once it completed.
 *
 * Life of a connection (conn.c)
 *   The listener thread accepts, allocates the connection and posts it to a
 *   worker, round-robin; from then on everything about it runs on that
 *   worker's loop.  Status, ordered so that >= CONN_DRAIN means "reads no
 *   more input":
 *
 *     CONN_HANDSHAKE --OPT_GO/EXPORT_NAME--> CONN_TRANSMISSION
 *          |                                    |
 *          |   OPT_ABORT, NBD_CMD_DISC, end of file,
 *          |   server stop with nothing in flight (N6)
 *          |                 v                  v
 *          +----------->  CONN_DRAIN  (requests in flight finish, their
 *          |                 |         replies are sent, then close)
 *          |                 v
 *          +---------->  CONN_DEAD    (socket shut down, replies dropped;
 *      protocol error,                 waits for engine completions and
 *      socket error,                   poll cancellations, then freed)
 *      stop grace over
 *
 * Invariants
 *   N1  A connection is freed only from conn_sweep() (the end-of-turn timer
 *       of its worker), when it is CONN_DEAD, no request of it is in the
 *       engine (nengine == 0), no poll of it is armed, and it is on no list
 *       but its worker's.  So no callback ever runs on a freed connection,
 *       and nothing that runs inside a parse or a completion frees it.
 *   N2  Every slot is on the free list, being filled (wr_req), in the
 *       engine, or on the send queue: nfree + those == NBD_MAX_INFLIGHT.
 *       A slot returns to the free list only when its reply was sent in
 *       full or dropped, so a READ buffer lives until it is on the wire.
 *   N3  The input stream stays in step: every request header is followed by
 *       exactly its payload (WRITE) or nothing, and a rejected WRITE's
 *       payload is read and discarded (skip).  Only a bad magic, a socket
 *       error or a handshake violation ends a connection without a reply.
 *   N4  Replies go out in completion order; handshake output (hs_out) goes
 *       before any of them.
 *   N5  Nothing from the socket is asserted on: lengths are bounded (option
 *       data NBD_MAX_OPTION_LEN, strings NBD_MAX_STRING, payload
 *       NBD_MAX_PAYLOAD) and checked before use.
 *   N6  Once its worker is stopping (nbd_server_stop), a connection starts
 *       nothing new: every option but NBD_OPT_ABORT is answered
 *       NBD_REP_ERR_SHUTDOWN (NBD_OPT_EXPORT_NAME, which cannot be refused,
 *       hangs up), every request but NBD_CMD_DISC ESHUTDOWN.  What was in
 *       flight when the stop came finishes and is answered.
 *   N7  Once NBD_OPT_STARTTLS is accepted, nothing received in plain text is
 *       parsed: the option must be the last byte in the receive buffer or
 *       the connection dies, and what was negotiated before it is forgotten.
 *       So a client (or a man in the middle) cannot slip options in plain
 *       text that would then count as sent over TLS (nbdkit's CVE-2021-3716).
 *   N8  Under TLS a connection never waits on its read poll while GnuTLS
 *       holds decrypted input (gnutls_record_check_pending): the socket
 *       would not wake it for bytes already read.
 *
 * TLS (tls.c), per connection, only ever moving forward:
 *
 *     TLS_NONE --STARTTLS ACK queued--> TLS_STARTING --ACK sent--> TLS_HANDSHAKE
 *                                                                      |
 *                                      TLS_ON <--handshake done--------+
 *
 *   TLS_STARTING reads nothing (N7); TLS_HANDSHAKE waits on whichever poll
 *   GnuTLS asks for; from TLS_ON every byte either way is a TLS record.  A
 *   failed handshake kills the connection.  In NBD_TLS_REQUIRE mode every
 *   option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD before TLS_ON.
 *
 * Locking
 *   None on the data path: a connection and its nbd_worker belong to one
 *   worker thread.  The server's counters are atomics; lock protects only
 *   the stop handshake (cond).  pc_volume_get/put take the engine's
 *   vol_lock briefly, in the handshake and at close.
 *
 * Context
 *   handshake.c, transmission.c, conn.c, tls.c: the connection's worker
 *   thread, except nbd_conn_new (listener or control thread) and
 *   nbd_tls_load/free (the thread starting or stopping the server); the
 *   credentials are read-only in between, shared by every worker.
 *   server.c: control threads and the listener thread.
 */
#ifndef PITCOPY_NBD_INTERNAL_H
#define PITCOPY_NBD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pitcopy.h"
#include "io/loop.h"
#include "nbd/nbd.h"

/* Size constraints we advertise (NBD_INFO_BLOCK_SIZE) and enforce. */
#define NBD_MIN_BLOCK        PC_BLOCK_SIZE      /* the engine's alignment */
#define NBD_PREF_BLOCK       (64u << 10)
#define NBD_MAX_PAYLOAD      PC_MAX_IO          /* 32 MiB */

/* Bounds on what a client can make us hold (N5). */
#define NBD_MAX_STRING       4096u              /* export names, queries */
#define NBD_MAX_OPTIONS      32u                /* options per handshake */
#define NBD_MAX_OPTION_LEN   (64u << 10)        /* option data we parse */
#define NBD_MAX_INFLIGHT     64u                /* request slots per connection */
#define NBD_MAX_CONNS        1024u              /* per server */
#define NBD_RBUF_SIZE        (128u << 10)       /* receive buffer per connection */
#define NBD_ZERO_CHUNK       (1u << 20)         /* WRITE_ZEROES writes this much at a time */
#define NBD_STOP_GRACE_NS    (5ull * 1000000000u) /* stop waits this long for slow clients (N6) */
#define NBD_ERR_MSG_MAX      80u                /* text in a structured error chunk */
#define NBD_MAX_CHANGED      8u                 /* pitcopy:changed contexts per connection */
#define NBD_CHANGED_EXTENTS  256u               /* descriptors per context per reply */
#define NBD_BS_MAX_EXTENTS   64u                /* base:allocation descriptors per reply */
#define NBD_REPLY_HDR_MAX    (20u + 4u + 8u * NBD_BS_MAX_EXTENTS)  /* ≥ an error chunk */
#define NBD_MAX_LISTENERS    8u

/* Can't happen, but handled (STYLE.md §6, PC_NEVER). */
#define NBD_NEVER(x) (__builtin_expect(!!(x), 0))

_Static_assert(NBD_RBUF_SIZE >= 16 + NBD_MAX_OPTION_LEN, "an option fits the receive buffer");
_Static_assert(NBD_MAX_STRING + 8 <= NBD_MAX_OPTION_LEN, "a string fits an option");
_Static_assert(NBD_REPLY_HDR_MAX >= 20u + 6u + NBD_ERR_MSG_MAX, "an error chunk fits");

struct nbd_conn;
struct nbd_worker;

/* One request slot (N2). */
struct nbd_req {
    struct pc_io      io;           /* io.priv = this */
    struct nbd_conn  *c;
    struct nbd_req   *next;         /* free list or send queue */
    uint64_t          cookie;
    uint64_t          offset;
    uint32_t          count;
    uint16_t          cmd;
    uint16_t          flags;
    int               err;          /* 0 or -errno */
    void             *buf;          /* pc_buf_alloc'd, buf_len bytes, or NULL */
    uint32_t          buf_len;
    uint64_t          zero_off;     /* TRIM, WRITE_ZEROES: the next chunk */
    uint32_t          zero_len;     /* ... and the length of the one in the engine */
    bool              zero_write;   /* ... written as zeros, not made a hole */
    uint32_t          bs_len;       /* BLOCK_STATUS: pitcopy:changed chunks built in buf */
    uint32_t          hdr_len;      /* the reply: hdr[0..hdr_len) then data_len bytes of buf */
    uint32_t          data_len;
    uint8_t           hdr[NBD_REPLY_HDR_MAX];
};

/* See "TLS" above. */
enum nbd_tls_phase {
    TLS_NONE = 0,
    TLS_STARTING,
    TLS_HANDSHAKE,
    TLS_ON,
};

/* One TLS record's worth of plain text: what one gnutls_record_send takes. */
#define NBD_TLS_RECORD       16384u

struct nbd_tls;             /* the server's credentials (tls.c) */
struct nbd_tls_conn;        /* one connection's GnuTLS session (tls.c) */

enum nbd_conn_state {
    CONN_HANDSHAKE = 0,
    CONN_TRANSMISSION,
    CONN_DRAIN,
    CONN_DEAD,
};

/* Negotiation state, freed when transmission starts. */
struct nbd_hs {
    bool      got_flags;            /* the client's 32-bit flags were read */
    bool      fixed;                /* NBD_FLAG_C_FIXED_NEWSTYLE: it reads option replies */
    unsigned  nr_options;
    bool      meta_set;             /* SET_META_CONTEXT chose base:allocation ... */
    char     *meta_export;          /* ... for this export (malloc'd) */
    bool      meta_alloc;           /* ... base:allocation among them */
    unsigned  nchanged;             /* ... and these pitcopy:changed mappings */
    char      changed[NBD_MAX_CHANGED][64];
    bool      tls_refused;          /* an option got NBD_REP_ERR_TLS_REQD (logged once) */
};

struct nbd_conn {
    struct nbd_server  *s;
    struct nbd_worker  *nw;
    uint64_t            id;
    int                 fd;         /* reads, and the read poll */
    int                 wfd;        /* writes, and the write poll: a dup of fd (loop.h, Polls) */
    bool                is_sock;
    enum nbd_conn_state state;
    char                peer[96];   /* "unix socket (pid 42)", "127.0.0.1:4567", "stdio" */
    char                why[160];   /* first reason for closing */
    struct pc_msg       start_msg;  /* listener → worker */
    struct nbd_conn    *prev, *next;       /* the worker's connections */
    struct nbd_conn    *dirty_next;        /* the worker's send list */
    bool                dirty;

    /* Input. */
    uint8_t            *rbuf;       /* NBD_RBUF_SIZE */
    uint32_t            rpos, rlen; /* unparsed bytes: rbuf[rpos..rlen) */
    uint64_t            skip;       /* payload bytes to discard (N3) */
    struct nbd_req     *wr_req;     /* a WRITE whose payload is arriving */
    uint32_t            wr_have;
    bool                paused;     /* out of slots: input resumes when one frees */
    struct io_req       rpoll, wpoll;
    bool                rpoll_armed, wpoll_armed;

    /* Negotiation. */
    struct nbd_hs      *hs;
    bool                no_zeroes;
    bool                structured;
    bool                meta_allocation;    /* base:allocation selected for the export */
    unsigned            nchanged;           /* pitcopy:changed contexts selected: */
    char                changed[NBD_MAX_CHANGED][64];  /* mapping i has context id 2 + i */
    uint8_t            *hs_out;     /* option replies not yet sent */
    uint32_t            hs_off, hs_len, hs_cap;

    /* Transmission. */
    struct pc_volume   *vol;        /* held (pc_volume_get) */
    uint64_t            size;
    char                export_name[64];
    struct nbd_req     *reqs;       /* NBD_MAX_INFLIGHT slots */
    struct nbd_req     *free_reqs;
    unsigned            nfree;
    unsigned            nengine;    /* in pc_io_submit, done() not yet run */
    struct nbd_req     *sq_head, *sq_tail;  /* replies to send (N4) */
    uint32_t            sq_off;     /* bytes of sq_head already sent */

    /* TLS (tls.c). */
    enum nbd_tls_phase  tls_phase;
    struct nbd_tls_conn *tls;       /* the session, from STARTTLS until freed */
    uint8_t            *tls_stage;  /* NBD_TLS_RECORD bytes: small pieces, one record */
    bool                tls_want_write;     /* the last TLS call's -EAGAIN waits to send */
    bool                tls_read_blocked;   /* input waits on the write poll (N7) */

    /* Statistics for the close line. */
    uint64_t            nrequests;
    uint64_t            nerrors;
};

struct nbd_worker {
    struct nbd_server  *s;
    struct pc_worker   *w;
    struct io_loop     *loop;
    struct nbd_conn    *conns;      /* doubly linked */
    struct nbd_conn    *dirty;      /* connections to send for and sweep, this turn */
    struct io_timer     turn_timer; /* armed with no delay: runs at the end of this turn */
    bool                turn_armed;
    struct io_timer     grace_timer;/* nbd_server_stop: kill what is left */
    bool                stopping;   /* N6 */
    void               *zbuf;       /* NBD_ZERO_CHUNK zeros, lazily */
    struct pc_msg       stop_msg;   /* nbd_server_stop, step 2 (S2 in server.c) */
    struct pc_msg       teardown_msg;   /* step 4 */
};

struct nbd_server {
    struct pc_engine   *e;
    unsigned            nworkers;
    struct nbd_worker  *workers;
    _Atomic unsigned    next_worker;
    _Atomic uint64_t    next_id;
    _Atomic unsigned    nconns;
    _Atomic bool        stopping;

    enum nbd_tls_mode   tls_mode;
    struct nbd_tls     *tls;        /* NULL when tls_mode is NBD_TLS_OFF */

    int                 lfd[NBD_MAX_LISTENERS];
    bool                lfd_unix[NBD_MAX_LISTENERS];
    unsigned            nlfd;
    char               *unix_path;  /* to unlink at stop */
    int                 stop_fd;    /* eventfd: wakes the listener thread */
    pthread_t           listener;
    bool                listener_started;

    /* nbd_server_stop waits on cond for nconns == 0, then for workers_done. */
    pthread_mutex_t     lock;
    pthread_cond_t      cond;
    unsigned            workers_done;   /* lock */
};

/* conn.c */
/* Log one line to stderr, "pitcopy: nbd: ..." (lifetime events, first errors). */
void nbd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Take fd (non-blocking, ours to close) as a new connection and post it to
 * a worker.  Any thread but a worker's.  0 or -errno (fd then closed). */
int  nbd_conn_new(struct nbd_server *s, int fd, const char *peer);
/* Append to the handshake output, sent at the end of the turn; false when
 * out of memory (then dead). */
bool nbd_conn_out(struct nbd_conn *c, const void *p, size_t len);
/* Queue r's reply (built in r->hdr) to be sent at the end of the turn (N4). */
void nbd_conn_reply(struct nbd_conn *c, struct nbd_req *r);
/* A slot for a new request, or NULL (then input pauses). */
struct nbd_req *nbd_conn_req_get(struct nbd_conn *c);
/* Return a slot whose reply is sent or dropped (N2). */
void nbd_conn_req_put(struct nbd_conn *c, struct nbd_req *r);
/* End reading: graceful (drain) or not (kill).  why goes in the close line. */
void nbd_conn_drain(struct nbd_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nbd_conn_kill(struct nbd_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Something changed that the end-of-turn sweep must look at. */
void nbd_conn_kick(struct nbd_conn *c);
/* Set up the worker's timers (any thread, before the server is used). */
void nbd_worker_init(struct nbd_worker *nw);
/* Worker side of nbd_server_stop: drain every connection, arm the grace timer. */
void nbd_worker_stop(struct nbd_worker *nw);
/* Worker side of the end of nbd_server_stop (no connections left). */
void nbd_worker_teardown(struct nbd_worker *nw);

/* Accept NBD_OPT_STARTTLS (its ACK already queued): check that nothing
 * follows it (N6), create the session, enter TLS_STARTING.  0, or -errno
 * with the connection killed. */
int  nbd_conn_starttls(struct nbd_conn *c);

/* handshake.c */
/* Queue the server's greeting. */
void nbd_handshake_start(struct nbd_conn *c);
/* Parse one message of the negotiation from the receive buffer.  true:
 * one was consumed (the status may now be CONN_TRANSMISSION, or skip set);
 * false: more bytes are needed, or the connection is ending. */
bool nbd_handshake_parse(struct nbd_conn *c);
/* Transmission flags for this connection's export. */
uint16_t nbd_export_flags(const struct nbd_conn *c);
const char *nbd_opt_name(uint32_t opt);

/* transmission.c */
/* Parse requests from the receive buffer: read → validate → execute.
 * true: stopped at a WRITE payload to receive or skip (conn.c does that,
 * then calls again); false: more bytes or a free slot are needed, or the
 * connection is ending. */
bool nbd_transmission_parse(struct nbd_conn *c);
/* The payload of c->wr_req is complete: execute it. */
void nbd_write_ready(struct nbd_conn *c, struct nbd_req *r);
/* The one errno → NBD_E* table (positive errno in, wire value out). */
uint32_t nbd_errno_to_wire(int err);
const char *nbd_cmd_name(uint16_t cmd);

/* tls.c */
/* Load the credentials o names (the thread starting the server).  0 and
 * *out, or -errno with err naming the file and what is wrong with it. */
int  nbd_tls_load(const struct nbd_server_opts *o, struct nbd_tls **out, struct pc_error *err);
void nbd_tls_free(struct nbd_tls *t);
/* "X.509 certificate CN=... from DIR" or "pre-shared keys (3 users) from FILE". */
const char *nbd_tls_describe(const struct nbd_tls *t);
/* A server session for c on its sockets.  0, or -errno (logged as why). */
int  nbd_tls_session_new(struct nbd_conn *c, char *why, size_t whylen);
void nbd_tls_session_free(struct nbd_conn *c);
/*
 * The non-blocking calls below return -EAGAIN when the socket is not ready,
 * setting c->tls_want_write to say which poll to wait on; any other
 * negative value means the connection was killed, with the reason.
 */
/* 0 once the handshake is done (logged, with what was negotiated). */
int  nbd_tls_handshake(struct nbd_conn *c);
/* Decrypted bytes (> 0), or 0 at the end of the stream. */
ssize_t nbd_tls_recv(struct nbd_conn *c, void *buf, size_t len);
/* Plain-text bytes taken (> 0), at most len and NBD_TLS_RECORD. */
ssize_t nbd_tls_send(struct nbd_conn *c, const void *buf, size_t len);
/* A send returned -EAGAIN: the next nbd_tls_send finishes that record,
 * whatever it is given, and returns its length. */
bool nbd_tls_send_again(const struct nbd_conn *c);
/* GnuTLS holds decrypted input not yet returned (N7). */
bool nbd_tls_pending(const struct nbd_conn *c);
/* Best effort close_notify, without waiting. */
void nbd_tls_bye(struct nbd_conn *c);

/* server.c */
/* A connection ended: counts down, wakes nbd_server_stop at zero. */
void nbd_server_conn_gone(struct nbd_server *s);
/* A worker finished its teardown. */
void nbd_server_worker_done(struct nbd_server *s);

#endif
