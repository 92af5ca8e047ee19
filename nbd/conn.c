/* SPDX-License-Identifier: MIT */
/*
 * nbd/conn.c — a connection's life on its worker: input, output, status.
 *
 * Role
 *   Owns everything about a connection that is not protocol: the socket
 *   (non-blocking, waited for with one-shot polls on the worker's loop),
 *   the receive buffer and its parse driver, the request slots, the send
 *   queue, and the status machine drawn in internal.h.  handshake.c and
 *   transmission.c parse what this file receives and hand back replies.
 *
 *   Input: a readable poll → recv as much as the buffer takes → parse every
 *   whole message → re-arm the poll once a recv comes back short (the poll
 *   reports at once if more arrived in between).  A WRITE's payload is
 *   copied out of the buffer, or received straight into the request's own
 *   buffer when the buffer holds nothing else.  Input pauses while every
 *   slot is taken (NBD_MAX_INFLIGHT in flight) and resumes as replies go.
 *
 *   Output: completions queue their reply on the connection and mark it
 *   dirty; a timer armed with no delay runs after the turn's completions
 *   (io/loop.c runs timers last), so each dirty connection gets one
 *   sendmsg() per turn carrying every reply ready by then.  A full socket
 *   arms a writable poll on wfd, a dup of the socket (loop.h allows one
 *   poll per fd), and the timer leaves the connection alone until it fires.
 *
 *   TLS (tls.c does the records): after NBD_OPT_STARTTLS the ACK goes out
 *   in plain text, then the handshake runs on the same two polls, waiting
 *   on whichever GnuTLS asks for.  From then on input is decrypted into the
 *   same places (the receive buffer, or a WRITE's own buffer), a record of
 *   at most 16 KiB per call, and reads go on until the socket is empty
 *   rather than stopping at a short one; output goes out as records of up
 *   to NBD_TLS_RECORD bytes, straight from the reply's buffers when the
 *   next piece fills a record, else gathered into tls_stage so a reply
 *   header and its first data share one.  The plain path is as it was: one
 *   test of tls_phase per call, no copy.
 *
 * Invariants
 *   N1–N8 (internal.h).  In particular nothing here frees a connection but
 *   conn_sweep (N1), and the send queue is only ever appended to in
 *   completion order (N4).
 *
 * Locking
 *   None: a connection belongs to its worker thread.
 *
 * Context
 *   Worker thread, except nbd_conn_new (listener or control thread) and
 *   nbd_log (any).  Nothing blocks; the data path neither allocates (slots
 *   and buffers come from the connection and the worker's pool) nor locks,
 *   but for what GnuTLS allocates inside itself for its records under TLS.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "nbd/internal.h"
#include "nbd/wire.h"

/* recv calls per readable poll before we let other connections run.  A
 * TLS read returns one record (16 KiB at most), so TLS gets more of them. */
#define CONN_INPUT_ROUNDS     16
#define CONN_INPUT_ROUNDS_TLS 64

static void conn_input(struct nbd_conn *c);
static void conn_send(struct nbd_conn *c);
static void conn_rpoll_done(struct io_req *req, int res);
static void conn_wpoll_done(struct io_req *req, int res);
static void conn_tls_handshake(struct nbd_conn *c);

void nbd_log(const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One fprintf so lines from several threads do not interleave. */
    fprintf(stderr, "pitcopy: nbd: %s\n", line);
}

/* ------------------------------------------------------------------------
 * Creation (listener or control thread) and start (worker)
 */

static void conn_free_memory(struct nbd_conn *c)
{
    if (c->hs)
        free(c->hs->meta_export);
    free(c->hs);
    free(c->hs_out);
    free(c->reqs);
    free(c->rbuf);
    free(c->tls_stage);
    free(c);
}

static void conn_start_msg(struct pc_msg *m)
{
    struct nbd_conn *c = m->arg;
    struct nbd_worker *nw = c->nw;

    c->next = nw->conns;
    if (nw->conns)
        nw->conns->prev = c;
    nw->conns = c;
    if (nw->stopping) {
        nbd_conn_kill(c, "server shutting down");
        return;
    }
    nbd_handshake_start(c);         /* the greeting goes out at the end of the turn */
    nbd_conn_kick(c);
    /* The client speaks after our greeting: wait for it. */
    c->rpoll_armed = true;
    io_loop_submit(nw->loop, &c->rpoll);
}

int nbd_conn_new(struct nbd_server *s, int fd, const char *peer)
{
    struct nbd_conn *c;
    int type = 0, flags;
    socklen_t tlen = sizeof type;
    unsigned n;

    if (atomic_fetch_add(&s->nconns, 1) >= NBD_MAX_CONNS) {
        nbd_log("refusing a connection from %s: %u connections are open already",
                peer, NBD_MAX_CONNS);
        close(fd);
        nbd_server_conn_gone(s);
        return -EMFILE;
    }
    c = calloc(1, sizeof *c);
    if (!c)
        goto nomem;
    c->fd = fd;
    c->wfd = -1;
    c->rbuf = malloc(NBD_RBUF_SIZE);
    c->reqs = calloc(NBD_MAX_INFLIGHT, sizeof *c->reqs);
    c->hs = calloc(1, sizeof *c->hs);
    if (!c->rbuf || !c->reqs || !c->hs)
        goto nomem;
    for (unsigned i = 0; i < NBD_MAX_INFLIGHT; i++) {
        c->reqs[i].c = c;
        c->reqs[i].next = c->free_reqs;
        c->free_reqs = &c->reqs[i];
    }
    c->nfree = NBD_MAX_INFLIGHT;
    c->is_sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) == 0;
    /* stdio: a socket serves both ways; otherwise fd 0 reads and fd 1 writes. */
    c->wfd = dup(!c->is_sock && fd == 0 ? 1 : fd);
    if (c->wfd < 0) {
        int r = -errno;
        nbd_log("refusing a connection from %s: dup: %s", peer, strerror(-r));
        close(fd);
        conn_free_memory(c);
        nbd_server_conn_gone(s);
        return r;
    }
    for (int i = 0; i < 2; i++) {
        int f = i ? c->wfd : fd;

        flags = fcntl(f, F_GETFL);
        if (flags >= 0 && !(flags & O_NONBLOCK))
            fcntl(f, F_SETFL, flags | O_NONBLOCK);
    }
    fcntl(c->wfd, F_SETFD, FD_CLOEXEC);     /* dup() does not copy it */
    c->s = s;
    c->id = atomic_fetch_add(&s->next_id, 1) + 1;
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    n = atomic_fetch_add(&s->next_worker, 1) % s->nworkers;
    c->nw = &s->workers[n];
    c->rpoll.op = IO_OP_POLL;
    c->rpoll.fd = c->fd;
    c->rpoll.len = POLLIN;
    c->rpoll.done = conn_rpoll_done;
    c->rpoll.priv = c;
    c->wpoll.op = IO_OP_POLL;
    c->wpoll.fd = c->wfd;
    c->wpoll.len = POLLOUT;
    c->wpoll.done = conn_wpoll_done;
    c->wpoll.priv = c;
    nbd_log("connection %llu opened from %s (worker %u)",
            (unsigned long long)c->id, c->peer, n);
    c->start_msg.fn = conn_start_msg;
    c->start_msg.arg = c;
    pc_worker_post(c->nw->w, &c->start_msg);
    return 0;

nomem:
    nbd_log("refusing a connection from %s: out of memory", peer);
    close(fd);
    if (c)
        conn_free_memory(c);
    nbd_server_conn_gone(s);
    return -ENOMEM;
}

/* N1: only from conn_sweep. */
static void conn_free(struct nbd_conn *c)
{
    struct nbd_worker *nw = c->nw;
    struct nbd_server *s = c->s;

    assert(c->state == CONN_DEAD && c->nengine == 0);                   /* N1 */
    assert(!c->rpoll_armed && !c->wpoll_armed && !c->dirty);
    assert(c->nfree == NBD_MAX_INFLIGHT && !c->sq_head && !c->wr_req);  /* N2 */

    if (c->prev)
        c->prev->next = c->next;
    else
        nw->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nbd_log("connection %llu closed (export %s, %llu request%s, %llu error%s): %s",
            (unsigned long long)c->id, c->export_name[0] ? c->export_name : "none",
            (unsigned long long)c->nrequests, c->nrequests == 1 ? "" : "s",
            (unsigned long long)c->nerrors, c->nerrors == 1 ? "" : "s",
            c->why[0] ? c->why : "closed");
    if (c->vol)
        pc_volume_put(c->vol);
    nbd_tls_session_free(c);                            /* L3 (tls.c) */
    close(c->fd);
    close(c->wfd);
    conn_free_memory(c);
    nbd_server_conn_gone(s);
}

/* ------------------------------------------------------------------------
 * Slots and replies
 */

struct nbd_req *nbd_conn_req_get(struct nbd_conn *c)
{
    struct nbd_req *r = c->free_reqs;

    if (!r)
        return NULL;
    c->free_reqs = r->next;
    c->nfree--;
    r->next = NULL;
    r->buf = NULL;
    r->buf_len = 0;
    r->err = 0;
    r->hdr_len = 0;
    r->data_len = 0;
    return r;
}

void nbd_conn_req_put(struct nbd_conn *c, struct nbd_req *r)
{
    assert(c->nfree < NBD_MAX_INFLIGHT);                                /* N2 */
    if (r->buf)
        pc_buf_free(c->nw->w, r->buf, r->buf_len);
    r->buf = NULL;
    r->next = c->free_reqs;
    c->free_reqs = r;
    c->nfree++;
}

void nbd_conn_reply(struct nbd_conn *c, struct nbd_req *r)
{
    r->next = NULL;
    if (c->sq_tail)
        c->sq_tail->next = r;
    else
        c->sq_head = r;
    c->sq_tail = r;
    nbd_conn_kick(c);
}

bool nbd_conn_out(struct nbd_conn *c, const void *p, size_t len)
{
    if (c->state == CONN_DEAD)
        return false;
    if (len > UINT32_MAX - c->hs_len) {
        nbd_conn_kill(c, "handshake output too large");
        return false;
    }
    if (c->hs_len + len > c->hs_cap) {
        uint32_t cap = c->hs_cap ? c->hs_cap : 4096;
        uint8_t *m;

        while (cap < c->hs_len + len)
            cap = cap > UINT32_MAX / 2 ? UINT32_MAX : cap * 2;
        m = realloc(c->hs_out, cap);
        if (!m) {
            nbd_conn_kill(c, "out of memory for handshake output");
            return false;
        }
        c->hs_out = m;
        c->hs_cap = cap;
    }
    memcpy(c->hs_out + c->hs_len, p, len);
    c->hs_len += (uint32_t)len;
    nbd_conn_kick(c);
    return true;
}

static bool conn_output_pending(const struct nbd_conn *c)
{
    return c->hs_off < c->hs_len || c->sq_head;
}

/* ------------------------------------------------------------------------
 * Status
 */

static void conn_why(struct nbd_conn *c, const char *fmt, va_list ap)
{
    if (!c->why[0] && fmt)
        vsnprintf(c->why, sizeof c->why, fmt, ap);
}

/* A WRITE whose payload never fully arrived goes nowhere. */
static void conn_drop_partial_write(struct nbd_conn *c)
{
    if (c->wr_req) {
        nbd_conn_req_put(c, c->wr_req);
        c->wr_req = NULL;
    }
    c->skip = 0;
}

void nbd_conn_drain(struct nbd_conn *c, const char *fmt, ...)
{
    va_list ap;

    if (c->state >= CONN_DRAIN)
        return;
    va_start(ap, fmt);
    conn_why(c, fmt, ap);
    va_end(ap);
    if (c->tls_phase == TLS_STARTING || c->tls_phase == TLS_HANDSHAKE) {
        /* Half way into TLS there is nothing to finish: no request can be
         * in flight, and no reply can be sent in plain text any more. */
        nbd_conn_kill(c, NULL);
        return;
    }
    c->state = CONN_DRAIN;
    c->paused = false;
    conn_drop_partial_write(c);
    if (c->rpoll_armed)
        io_loop_poll_cancel(c->nw->loop, &c->rpoll);
    nbd_conn_kick(c);
}

void nbd_conn_kill(struct nbd_conn *c, const char *fmt, ...)
{
    va_list ap;

    if (c->state == CONN_DEAD)
        return;
    va_start(ap, fmt);
    conn_why(c, fmt, ap);
    va_end(ap);
    c->state = CONN_DEAD;
    c->paused = false;
    /* The client sees the end now, not when the engine is done with us. */
    if (c->is_sock)
        shutdown(c->fd, SHUT_RDWR);
    if (c->rpoll_armed)
        io_loop_poll_cancel(c->nw->loop, &c->rpoll);
    if (c->wpoll_armed)
        io_loop_poll_cancel(c->nw->loop, &c->wpoll);
    conn_drop_partial_write(c);
    while (c->sq_head) {
        struct nbd_req *r = c->sq_head;

        c->sq_head = r->next;
        nbd_conn_req_put(c, r);
    }
    c->sq_tail = NULL;
    c->sq_off = 0;
    c->hs_off = c->hs_len = 0;
    nbd_conn_kick(c);
}

/* The end of a turn for one connection: send, then see whether it is done. */
static void conn_sweep(struct nbd_conn *c)
{
    if (c->state != CONN_DEAD && !c->wpoll_armed)
        conn_send(c);
    /* Server stop (N6): once what was in flight is done, close.  Replies
     * still queued (ESHUTDOWN ones included) go out first, as in any drain. */
    if (c->state == CONN_TRANSMISSION && c->nw->stopping && c->nengine == 0 && !c->wr_req)
        nbd_conn_drain(c, "server shutting down");
    if (c->state == CONN_DRAIN && c->nengine == 0 && !conn_output_pending(c)) {
        if (c->tls_phase == TLS_ON)
            nbd_tls_bye(c);     /* an orderly end: close_notify */
        nbd_conn_kill(c, NULL);
    }
    if (c->state == CONN_DEAD && c->nengine == 0 && !c->rpoll_armed &&
        !c->wpoll_armed && !c->dirty)
        conn_free(c);                                   /* N1 */
}

static void turn_timer_fn(struct io_timer *t)
{
    struct nbd_worker *nw = t->priv;
    struct nbd_conn *c = nw->dirty;

    nw->turn_armed = false;
    nw->dirty = NULL;           /* kicks from here on start a new list */
    while (c) {
        struct nbd_conn *next = c->dirty_next;

        c->dirty = false;
        c->dirty_next = NULL;
        conn_sweep(c);          /* may free c, never another connection */
        c = next;
    }
}

void nbd_conn_kick(struct nbd_conn *c)
{
    struct nbd_worker *nw = c->nw;

    if (!c->dirty) {
        c->dirty = true;
        c->dirty_next = nw->dirty;
        nw->dirty = c;
    }
    if (!nw->turn_armed) {
        /* No delay: due as soon as it is armed, it runs in this turn's
         * timer phase, after every completion of the turn. */
        nw->turn_armed = true;
        io_loop_timer_arm(nw->loop, &nw->turn_timer, 0);
    }
}

/* ------------------------------------------------------------------------
 * Input
 */

static void conn_arm_read(struct nbd_conn *c)
{
    if (c->rpoll_armed || c->state >= CONN_DRAIN)
        return;
    c->rpoll_armed = true;
    io_loop_submit(c->nw->loop, &c->rpoll);
}

static void conn_arm_write(struct nbd_conn *c)
{
    if (c->wpoll_armed || c->state == CONN_DEAD)
        return;
    c->wpoll_armed = true;
    io_loop_submit(c->nw->loop, &c->wpoll);
}

/* The socket has no input for us now: wait for it.  Under TLS a read may
 * have to send first (GnuTLS answering a key update into a full socket):
 * then it waits on the write poll, which comes back here (N8). */
static void conn_wait_input(struct nbd_conn *c)
{
    if (c->tls_phase == TLS_ON && c->tls_want_write) {
        c->tls_read_blocked = true;
        conn_arm_write(c);
        return;
    }
    conn_arm_read(c);
}

/* Parse everything whole in the receive buffer (N3). */
static void conn_parse(struct nbd_conn *c)
{
    for (;;) {
        uint32_t avail = c->rlen - c->rpos;

        if (c->state >= CONN_DRAIN)
            return;
        if (c->tls_phase == TLS_STARTING || c->tls_phase == TLS_HANDSHAKE)
            return;                                                 /* N7 */
        if (c->skip) {
            uint32_t n = c->skip < avail ? (uint32_t)c->skip : avail;

            c->rpos += n;
            c->skip -= n;
            if (c->skip)
                return;
            continue;
        }
        if (c->wr_req) {
            struct nbd_req *r = c->wr_req;
            uint32_t n = r->count - c->wr_have;

            if (n > avail)
                n = avail;
            memcpy((uint8_t *)r->buf + c->wr_have, c->rbuf + c->rpos, n);
            c->rpos += n;
            c->wr_have += n;
            if (c->wr_have < r->count)
                return;
            c->wr_req = NULL;
            nbd_write_ready(c, r);
            continue;
        }
        if (c->state == CONN_HANDSHAKE) {
            if (!nbd_handshake_parse(c))
                return;
        } else if (!nbd_transmission_parse(c)) {
            return;
        }
    }
}

static void conn_input(struct nbd_conn *c)
{
    bool drained = false;

    for (unsigned round = 0;; round++) {
        uint8_t *dst;
        size_t want;
        ssize_t n;
        bool direct = false, tls;

        conn_parse(c);
        if (c->state >= CONN_DRAIN || c->paused)
            return;
        if (c->tls_phase == TLS_STARTING || c->tls_phase == TLS_HANDSHAKE) {
            conn_tls_handshake(c);
            return;
        }
        tls = c->tls_phase == TLS_ON;
        /* The poll reports at once if more is waiting, except for what
         * GnuTLS already holds (N8). */
        if (drained || (round >= (tls ? CONN_INPUT_ROUNDS_TLS : CONN_INPUT_ROUNDS) &&
                        !(tls && nbd_tls_pending(c)))) {
            conn_arm_read(c);
            return;
        }
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        if (c->wr_req && c->rlen == 0) {
            /* Straight into the request's buffer: no copy for big writes. */
            direct = true;
            dst = (uint8_t *)c->wr_req->buf + c->wr_have;
            want = c->wr_req->count - c->wr_have;
        } else {
            if (c->rpos > 0) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                c->rlen -= c->rpos;
                c->rpos = 0;
            }
            dst = c->rbuf + c->rlen;
            want = NBD_RBUF_SIZE - c->rlen;
            if (NBD_NEVER(want == 0)) {
                /* Every message we wait for whole fits the buffer (N5). */
                nbd_conn_kill(c, "receive buffer full");
                return;
            }
        }
        if (tls) {
            n = nbd_tls_recv(c, dst, want);     /* < 0: -EAGAIN, or dead */
        } else {
            n = c->is_sock ? recv(c->fd, dst, want, 0) : read(c->fd, dst, want);
            if (n < 0)
                n = -errno;
        }
        if (n > 0) {
            if (direct) {
                c->wr_have += (uint32_t)n;
                if (c->wr_have == c->wr_req->count) {
                    struct nbd_req *r = c->wr_req;

                    c->wr_req = NULL;
                    nbd_write_ready(c, r);
                }
            } else {
                c->rlen += (uint32_t)n;
            }
            /* Short: the socket is (nearly) empty.  Parse, then wait.
             * Not under TLS, where every read is one record: there reads
             * go on until the socket has nothing. */
            if ((size_t)n < want && !tls)
                drained = true;
            continue;
        }
        if (n == 0) {
            if (c->wr_req || c->skip || c->rpos < c->rlen)
                nbd_conn_drain(c, "client disconnected in the middle of a %s",
                               c->state == CONN_HANDSHAKE ? "handshake message" : "request");
            else if (c->state == CONN_HANDSHAKE)
                nbd_conn_drain(c, "client disconnected during the handshake");
            else
                nbd_conn_drain(c, "client disconnected without NBD_CMD_DISC");
            return;
        }
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            conn_wait_input(c);
            return;
        }
        if (!tls)
            nbd_conn_kill(c, "receive failed: %s", strerror((int)-n));
        return;                 /* under TLS, nbd_tls_recv said why */
    }
}

static void conn_rpoll_done(struct io_req *req, int res)
{
    struct nbd_conn *c = req->priv;

    c->rpoll_armed = false;
    if (c->state >= CONN_DRAIN) {
        nbd_conn_kick(c);                       /* the sweep may free it now */
        return;
    }
    /* -EPERM: epoll refuses regular files (a fuzzer's stdin); they are
     * always readable, so go ahead. */
    if (res < 0 && res != -EPERM) {
        nbd_conn_kill(c, "waiting for input failed: %s", strerror(-res));
        return;
    }
    conn_input(c);
}

/* ------------------------------------------------------------------------
 * TLS: the switch from plain text (N7)
 */

int nbd_conn_starttls(struct nbd_conn *c)
{
    char why[160];
    int r;

    if (c->rpos != c->rlen) {
        nbd_conn_kill(c, "client sent %u bytes after NBD_OPT_STARTTLS without waiting for "
                      "its reply", c->rlen - c->rpos);
        return -EPROTO;
    }
    c->tls_stage = malloc(NBD_TLS_RECORD);
    if (!c->tls_stage) {
        nbd_conn_kill(c, "out of memory for TLS");
        return -ENOMEM;
    }
    r = nbd_tls_session_new(c, why, sizeof why);
    if (r < 0) {
        nbd_conn_kill(c, "%s", why);
        return r;
    }
    c->tls_phase = TLS_STARTING;
    return 0;
}

/* Move the TLS start on: from conn_input (nothing is read meanwhile),
 * from conn_send once the plain ACK is out, and from either poll. */
static void conn_tls_handshake(struct nbd_conn *c)
{
    int r;

    if (c->state != CONN_HANDSHAKE)
        return;                 /* killed meanwhile */
    if (c->tls_phase == TLS_STARTING) {
        if (conn_output_pending(c))
            return;             /* conn_send comes back when the ACK is out */
        c->tls_phase = TLS_HANDSHAKE;
    }
    r = nbd_tls_handshake(c);
    if (r == -EAGAIN) {
        if (c->tls_want_write)
            conn_arm_write(c);
        else
            conn_arm_read(c);
        return;
    }
    if (r < 0)
        return;                 /* killed, and why */
    c->tls_phase = TLS_ON;
    conn_input(c);              /* the options go on, encrypted */
}

/* ------------------------------------------------------------------------
 * Output (N4)
 */

/* w bytes went out: advance past them, returning slots whose reply is done. */
static void conn_sent(struct nbd_conn *c, size_t w)
{
    if (c->hs_off < c->hs_len) {
        size_t n = c->hs_len - c->hs_off;

        if (n > w)
            n = w;
        c->hs_off += (uint32_t)n;
        w -= n;
        if (c->hs_off == c->hs_len)
            c->hs_off = c->hs_len = 0;
    }
    while (w > 0 && c->sq_head) {
        struct nbd_req *r = c->sq_head;
        size_t left = (size_t)r->hdr_len + r->data_len - c->sq_off;

        if (w < left) {
            c->sq_off += (uint32_t)w;
            return;
        }
        w -= left;
        c->sq_off = 0;
        c->sq_head = r->next;
        if (!c->sq_head)
            c->sq_tail = NULL;
        nbd_conn_req_put(c, r);                 /* N2 */
    }
}

#define CONN_IOV_MAX ((int)(2 * NBD_MAX_INFLIGHT + 1))

/* What is left to send, in order, as at most CONN_IOV_MAX pieces, or
 * fewer once they hold enough bytes. */
static int conn_gather(const struct nbd_conn *c, struct iovec *iov, size_t enough,
                       size_t *total)
{
    const struct nbd_req *r;
    uint32_t skip = c->sq_off;
    int n = 0;

    *total = 0;
    if (c->hs_off < c->hs_len) {
        iov[n].iov_base = c->hs_out + c->hs_off;
        iov[n].iov_len = c->hs_len - c->hs_off;
        *total += iov[n++].iov_len;
    }
    for (r = c->sq_head; r && n + 2 <= CONN_IOV_MAX && *total < enough; r = r->next) {
        if (skip < r->hdr_len) {
            iov[n].iov_base = (uint8_t *)r->hdr + skip;
            iov[n].iov_len = r->hdr_len - skip;
            *total += iov[n++].iov_len;
            skip = 0;
        } else {
            skip -= r->hdr_len;
        }
        if (r->data_len > skip) {
            iov[n].iov_base = (uint8_t *)r->buf + skip;
            iov[n].iov_len = r->data_len - skip;
            *total += iov[n++].iov_len;
        }
        skip = 0;
    }
    return n;
}

/* Send one record's worth under TLS: > 0 bytes sent, -EAGAIN, or dead. */
static ssize_t conn_send_record(struct nbd_conn *c, struct iovec *iov)
{
    size_t total, len = 0;
    int n;

    if (nbd_tls_send_again(c))
        return nbd_tls_send(c, NULL, 0);
    n = conn_gather(c, iov, NBD_TLS_RECORD, &total);
    if (iov[0].iov_len >= NBD_TLS_RECORD)
        return nbd_tls_send(c, iov[0].iov_base, NBD_TLS_RECORD);    /* no copy */
    for (int i = 0; i < n && len < NBD_TLS_RECORD; i++) {
        size_t k = iov[i].iov_len < NBD_TLS_RECORD - len ? iov[i].iov_len
                                                          : NBD_TLS_RECORD - len;

        memcpy(c->tls_stage + len, iov[i].iov_base, k);
        len += k;
    }
    return nbd_tls_send(c, c->tls_stage, len);
}

static void conn_send(struct nbd_conn *c)
{
    struct iovec iov[CONN_IOV_MAX];

    if (c->tls_phase == TLS_HANDSHAKE)
        return;                 /* nothing to send but what GnuTLS sends */
    while (conn_output_pending(c)) {
        size_t total;
        ssize_t w;
        int n;

        if (c->tls_phase == TLS_ON) {
            w = conn_send_record(c, iov);
            if (w == -EAGAIN)
                break;
            if (w < 0)
                return;         /* dead, and why */
            conn_sent(c, (size_t)w);
            continue;
        }
        n = conn_gather(c, iov, SIZE_MAX, &total);
        if (c->is_sock) {
            struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };

            w = sendmsg(c->wfd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
        } else {
            w = writev(c->wfd, iov, n);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            nbd_conn_kill(c, "send failed: %s", strerror(errno));
            return;
        }
        conn_sent(c, (size_t)w);
        if ((size_t)w < total)
            break;              /* the socket is full */
    }
    if (conn_output_pending(c)) {
        conn_arm_write(c);
        return;
    }
    if (c->tls_phase == TLS_STARTING) {
        conn_tls_handshake(c);  /* the plain ACK is out: TLS from here */
        return;
    }
    if (c->paused && c->state == CONN_TRANSMISSION && c->free_reqs) {
        /* Slots are free again: go on with what the buffer holds, then the
         * socket.  Replies that produces wait for the next sweep. */
        c->paused = false;
        conn_input(c);
    }
}

static void conn_wpoll_done(struct io_req *req, int res)
{
    struct nbd_conn *c = req->priv;

    c->wpoll_armed = false;
    if (c->state == CONN_DEAD) {
        nbd_conn_kick(c);
        return;
    }
    if (res < 0 && res != -EPERM) {
        nbd_conn_kill(c, "waiting to send failed: %s", strerror(-res));
        return;
    }
    if (c->tls_phase == TLS_HANDSHAKE) {
        conn_tls_handshake(c);
        return;
    }
    conn_send(c);
    if (c->tls_read_blocked && c->state < CONN_DRAIN && !c->wpoll_armed) {
        c->tls_read_blocked = false;
        conn_input(c);          /* N8: the read that had to send first */
    }
    if (c->state == CONN_DRAIN)
        nbd_conn_kick(c);       /* the sweep closes it once all is sent */
}

/* ------------------------------------------------------------------------
 * The worker's side of the server
 */

static void grace_timer_fn(struct io_timer *t)
{
    struct nbd_worker *nw = t->priv;

    for (struct nbd_conn *c = nw->conns; c; c = c->next)
        nbd_conn_kill(c, "server shutting down (%s)",
                      c->state == CONN_HANDSHAKE ? "the client did not end its handshake" :
                      c->wr_req ? "a WRITE payload did not arrive" :
                      "the client did not take its replies");
}

void nbd_worker_init(struct nbd_worker *nw)
{
    nw->turn_timer.fn = turn_timer_fn;
    nw->turn_timer.priv = nw;
    nw->grace_timer.fn = grace_timer_fn;
    nw->grace_timer.priv = nw;
}

/*
 * N6: from here on handshake.c answers options with NBD_REP_ERR_SHUTDOWN and
 * transmission.c refuses new requests with ESHUTDOWN, as the protocol asks
 * of a server being shut down; requests in flight (a WRITE whose payload is
 * still arriving among them) finish and are answered.  The sweep closes a
 * connection in transmission once nothing of it is in flight; one in the
 * handshake stays until it sends NBD_OPT_ABORT or leaves.  The grace timer
 * bounds both.
 */
void nbd_worker_stop(struct nbd_worker *nw)
{
    nw->stopping = true;
    for (struct nbd_conn *c = nw->conns; c; c = c->next)
        nbd_conn_kick(c);
    io_loop_timer_arm(nw->loop, &nw->grace_timer, NBD_STOP_GRACE_NS);
}

void nbd_worker_teardown(struct nbd_worker *nw)
{
    assert(!nw->conns);                 /* S1 (server.c) */
    io_loop_timer_cancel(nw->loop, &nw->grace_timer);
    if (nw->turn_armed) {
        io_loop_timer_cancel(nw->loop, &nw->turn_timer);
        nw->turn_armed = false;
    }
    if (nw->zbuf) {
        pc_buf_free(nw->w, nw->zbuf, NBD_ZERO_CHUNK);
        nw->zbuf = NULL;
    }
}
