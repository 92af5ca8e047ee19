/* SPDX-License-Identifier: MIT */
/*
 * nbd/transmission.c — the transmission phase: read → validate → execute → reply.
 *
 * Role
 *   nbd_transmission_parse() takes request headers from the receive buffer;
 *   validate() decides, once, whether a request may run (command, flags,
 *   what was negotiated, length bounds, range, alignment), yielding an
 *   errno; execute() is one switch onto the engine with no checks left to
 *   make.  Completions build the reply in the request's slot and queue it
 *   (conn.c sends at the end of the turn).  errno is the currency inside;
 *   nbd_errno_to_wire() turns it into NBD_E* only when a reply is built,
 *   after the first error of a connection was logged with the real one.
 *
 * Commands
 *   READ, WRITE (FUA)      one pc_io each, the buffer from the worker's pool.
 *   FLUSH                  pc_io FLUSH: fdatasync of the volume, which makes
 *                          every completed write durable whichever connection
 *                          made it (hence NBD_FLAG_CAN_MULTI_CONN).
 *   TRIM (FUA), WRITE_ZEROES (FUA, NO_HOLE)
 *                          PC_IO_ZERO, PC_MAX_IO at a time: the range becomes
 *                          a hole (reads as zeros) — an engine write like any
 *                          other, so copy-on-write and the target-write rules
 *                          keep every target right.  With NO_HOLE, or on a
 *                          volume that cannot make holes (-EOPNOTSUPP), zeros
 *                          are written from the worker's zero buffer instead,
 *                          NBD_ZERO_CHUNK at a time.  TRIM reads as zeros
 *                          afterwards too, which the protocol allows.
 *   BLOCK_STATUS           base:allocation from pc_volume_block_status(): hole
 *                          and zero where the volume (for a target: where its
 *                          grains resolve) has no data; up to
 *                          NBD_BS_MAX_EXTENTS descriptors, one with REQ_ONE.
 *                          pitcopy:changed[:MAP]: runs of grains, flag 1 =
 *                          changed since the mapping's last start
 *                          (engine/changed.c), one chunk per context, in buf.
 *   DISC                   no reply: the connection drains and closes.
 *
 *   While the server stops (N6), every request but DISC is refused with
 *   ESHUTDOWN before validation; a refused WRITE's payload is skipped (N3).
 *
 * Invariants
 *   T1  execute() and everything after it see only requests that validate()
 *       passed: offset and count are NBD_MIN_BLOCK aligned, count > 0, the
 *       range lies inside the export, READ/WRITE are at most
 *       NBD_MAX_PAYLOAD, flags are ones the command takes.
 *   T2  A READ with structured replies negotiated is answered with a
 *       structured reply even when it is refused; BLOCK_STATUS likewise
 *       (it requires them).  Other commands answer success with a simple
 *       reply and errors with a structured error chunk when negotiated.
 *   T3  A request is in the engine (nengine counts it) from its first
 *       pc_io_submit until its last done(); its slot is reused only after
 *       the reply left (N2).
 *
 * Context
 *   The connection's worker.  done() may run inside pc_io_submit (the
 *   engine fails some requests at once), so nothing after a submit touches
 *   the request, and completions only queue (N1).
 */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/internal.h"
#include "nbd/wire.h"

const char *nbd_cmd_name(uint16_t cmd)
{
    switch (cmd) {
    case NBD_CMD_READ:          return "NBD_CMD_READ";
    case NBD_CMD_WRITE:         return "NBD_CMD_WRITE";
    case NBD_CMD_DISC:          return "NBD_CMD_DISC";
    case NBD_CMD_FLUSH:         return "NBD_CMD_FLUSH";
    case NBD_CMD_TRIM:          return "NBD_CMD_TRIM";
    case NBD_CMD_CACHE:         return "NBD_CMD_CACHE";
    case NBD_CMD_WRITE_ZEROES:  return "NBD_CMD_WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS:  return "NBD_CMD_BLOCK_STATUS";
    default:                    return "unknown command";
    }
}

/* The one table from errno to the protocol's error values. */
uint32_t nbd_errno_to_wire(int err)
{
    switch (err) {
    case 0:             return NBD_SUCCESS;
    case EPERM:
    case EROFS:         return NBD_EPERM;
    case EIO:           return NBD_EIO;
    case ENOMEM:        return NBD_ENOMEM;
    case EINVAL:        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:         return NBD_ENOSPC;
    case EOVERFLOW:     return NBD_EOVERFLOW;
    case ENOTSUP:       return NBD_ENOTSUP;
    case ESHUTDOWN:     return NBD_ESHUTDOWN;
    default:            return NBD_EIO;     /* the engine's failures are I/O failures */
    }
}

/* ------------------------------------------------------------------------
 * Validation (T1)
 */

static int validate(const struct nbd_conn *c, const struct nbd_req *r)
{
    uint16_t allowed = NBD_CMD_FLAG_FUA;    /* FUA is valid on every command */

    switch (r->cmd) {
    case NBD_CMD_READ:
        if (c->structured)
            allowed |= NBD_CMD_FLAG_DF;
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed |= NBD_CMD_FLAG_NO_HOLE;
        break;
    case NBD_CMD_BLOCK_STATUS:
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default:
        return -EINVAL;         /* unknown, or not advertised (CACHE) */
    }
    if (r->flags & ~allowed)
        return -EINVAL;
    if (r->cmd == NBD_CMD_FLUSH)
        return r->offset || r->count ? -EINVAL : 0;
    if ((r->cmd == NBD_CMD_READ || r->cmd == NBD_CMD_WRITE) && r->count > NBD_MAX_PAYLOAD)
        return -EINVAL;
    if (r->count == 0)
        return -EINVAL;
    if (r->offset > c->size || r->count > c->size - r->offset)
        return r->cmd == NBD_CMD_WRITE || r->cmd == NBD_CMD_WRITE_ZEROES ? -ENOSPC : -EINVAL;
    if ((r->offset | r->count) % NBD_MIN_BLOCK)
        return -EINVAL;
    if (r->cmd == NBD_CMD_BLOCK_STATUS && !c->meta_allocation && !c->nchanged)
        return -EINVAL;
    return 0;
}

/* ------------------------------------------------------------------------
 * Replies (T2)
 */

static void put_structured(struct nbd_req *r, uint16_t flags, uint16_t type, uint32_t length)
{
    struct nbd_structured_reply h = {
        .magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
        .flags = htobe16(flags),
        .type = htobe16(type),
        .cookie = r->cookie,                /* opaque: sent back as it came */
        .length = htobe32(length),
    };

    memcpy(r->hdr, &h, sizeof h);
    r->hdr_len = sizeof h;
}

static void put_simple(struct nbd_req *r, uint32_t error)
{
    struct nbd_simple_reply h = {
        .magic = htobe32(NBD_SIMPLE_REPLY_MAGIC),
        .error = htobe32(error),
        .cookie = r->cookie,
    };

    memcpy(r->hdr, &h, sizeof h);
    r->hdr_len = sizeof h;
}

/* What an error means, for logs and error chunks.  ESHUTDOWN is ours, not
 * a socket's: strerror's "transport endpoint" text would mislead. */
static const char *err_text(int err)
{
    return err == -ESHUTDOWN ? "the server is shutting down" : strerror(-err);
}

/* Log the first error of a connection with its real errno; count the rest. */
static void note_error(struct nbd_conn *c, const struct nbd_req *r, bool rejected)
{
    if (c->nerrors++ == 0)
        nbd_log("connection %llu (export %s): %s %s at offset %llu length %u: %s "
                "(further errors on this connection are counted, not logged)",
                (unsigned long long)c->id, c->export_name, nbd_cmd_name(r->cmd),
                rejected ? "rejected" : "failed", (unsigned long long)r->offset,
                r->count, err_text(r->err));
}

static void build_reply(struct nbd_conn *c, struct nbd_req *r)
{
    r->data_len = 0;
    if (r->err) {
        uint32_t wire = nbd_errno_to_wire(-r->err);

        if (c->structured) {
            char msg[NBD_ERR_MSG_MAX + 1];
            struct nbd_chunk_error e;
            int n = snprintf(msg, sizeof msg, "%s: %s", nbd_cmd_name(r->cmd), err_text(r->err));

            if (n < 0)
                n = 0;
            if (n > (int)NBD_ERR_MSG_MAX)
                n = NBD_ERR_MSG_MAX;
            put_structured(r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, sizeof e + (uint32_t)n);
            e.error = htobe32(wire);
            e.msg_len = htobe16((uint16_t)n);
            memcpy(r->hdr + r->hdr_len, &e, sizeof e);
            memcpy(r->hdr + r->hdr_len + sizeof e, msg, (size_t)n);
            r->hdr_len += sizeof e + (uint32_t)n;
        } else {
            put_simple(r, wire);
        }
        return;
    }
    switch (r->cmd) {
    case NBD_CMD_READ:
        if (c->structured) {
            /* One content chunk, final: the data is already read, so no
             * error can follow it. */
            uint64_t off = htobe64(r->offset);

            put_structured(r, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA,
                           sizeof off + r->count);
            memcpy(r->hdr + r->hdr_len, &off, sizeof off);
            r->hdr_len += sizeof off;
        } else {
            put_simple(r, NBD_SUCCESS);
        }
        r->data_len = r->count;
        break;
    case NBD_CMD_BLOCK_STATUS:
        /* hdr holds the base:allocation chunk (alloc_status), buf the
         * pitcopy:changed ones (changed_status). */
        r->data_len = r->bs_len;
        break;
    default:
        put_simple(r, NBD_SUCCESS);
        break;
    }
}

/* Answer r now (no engine work: refused, or nothing to do). */
static void reply_now(struct nbd_conn *c, struct nbd_req *r, int err)
{
    r->err = err;
    if (err)
        note_error(c, r, true);
    build_reply(c, r);
    nbd_conn_reply(c, r);
}

/* ------------------------------------------------------------------------
 * Execution (T1, T3)
 */

static void req_done(struct pc_io *io, int res);

static void req_submit(struct nbd_conn *c, struct nbd_req *r, uint8_t op, uint64_t off,
                       uint32_t len, void *buf, uint8_t flags)
{
    struct pc_io *io = &r->io;

    io->op = op;
    io->flags = flags;
    io->vol = c->vol;
    io->off = off;
    io->len = len;
    io->buf = buf;
    io->done = req_done;
    io->priv = r;
    pc_io_submit(c->nw->w, io);       /* done() may already have run */
}

static uint8_t io_flags(const struct nbd_req *r)
{
    return r->flags & NBD_CMD_FLAG_FUA ? PC_IO_FUA : 0;
}

/* The worker's buffer of NBD_ZERO_CHUNK zeros, made on first use. */
static bool zbuf_ready(struct nbd_conn *c)
{
    if (!c->nw->zbuf) {
        c->nw->zbuf = pc_buf_alloc(c->nw->w, NBD_ZERO_CHUNK);
        if (!c->nw->zbuf)
            return false;
        memset(c->nw->zbuf, 0, NBD_ZERO_CHUNK);
    }
    return true;
}

/* TRIM, WRITE_ZEROES: the next chunk, as a hole or as zeros (see the header). */
static void zero_next(struct nbd_conn *c, struct nbd_req *r)
{
    uint64_t end = r->offset + r->count;
    uint32_t chunk = r->zero_write ? NBD_ZERO_CHUNK : PC_MAX_IO;
    uint32_t len = end - r->zero_off < chunk ? (uint32_t)(end - r->zero_off) : chunk;
    uint64_t off = r->zero_off;

    r->zero_off += len;
    r->zero_len = len;
    if (r->zero_write)
        req_submit(c, r, PC_IO_WRITE, off, len, c->nw->zbuf, io_flags(r));
    else
        req_submit(c, r, PC_IO_ZERO, off, len, NULL, io_flags(r));
}

static void req_done(struct pc_io *io, int res)
{
    struct nbd_req *r = io->priv;
    struct nbd_conn *c = r->c;

    bool zeroing = r->cmd == NBD_CMD_WRITE_ZEROES || r->cmd == NBD_CMD_TRIM;
    if (zeroing && res == -EOPNOTSUPP && !r->zero_write && c->state != CONN_DEAD) {
        /* No holes on this volume: write this chunk and the rest as zeros. */
        r->zero_off -= r->zero_len;
        r->zero_write = true;
        res = zbuf_ready(c) ? 0 : -ENOMEM;
        if (res == 0) {
            zero_next(c, r);            /* still in the engine (T3) */
            return;
        }
    }
    if (zeroing && res == 0 && c->state != CONN_DEAD && r->zero_off < r->offset + r->count) {
        zero_next(c, r);                /* still in the engine (T3) */
        return;
    }
    c->nengine--;
    if (c->state == CONN_DEAD) {
        nbd_conn_req_put(c, r);         /* nobody to tell */
        nbd_conn_kick(c);               /* the sweep may free it now */
        return;
    }
    r->err = res;
    if (res)
        note_error(c, r, false);
    build_reply(c, r);
    nbd_conn_reply(c, r);
}

/* The pitcopy:changed chunks of a BLOCK_STATUS reply, into r->buf: one per
 * context, the last one final. */
static int changed_status(struct nbd_conn *c, struct nbd_req *r)
{
    const uint32_t per = sizeof(struct nbd_structured_reply) + sizeof(struct nbd_chunk_block_status) +
                         NBD_CHANGED_EXTENTS * sizeof(struct nbd_block_descriptor);
    struct pc_extent ext[NBD_CHANGED_EXTENTS];
    uint32_t len = 0;

    r->bs_len = 0;
    if (!c->nchanged)
        return 0;
    r->buf_len = (c->nchanged * per + PC_BLOCK_SIZE - 1) / PC_BLOCK_SIZE * PC_BLOCK_SIZE;
    r->buf = pc_buf_alloc(c->nw->w, r->buf_len);
    if (!r->buf) {
        r->buf_len = 0;
        return -ENOMEM;
    }
    for (unsigned i = 0; i < c->nchanged; i++) {
        unsigned max = r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_CHANGED_EXTENTS;
        unsigned n = pc_volume_changed_extents(c->vol, c->changed[i], r->offset, r->count,
                                               ext, max);
        uint8_t *p = (uint8_t *)r->buf + len;
        struct nbd_structured_reply h = {
            .magic = htobe32(NBD_STRUCTURED_REPLY_MAGIC),
            .flags = htobe16(i + 1 == c->nchanged ? NBD_REPLY_FLAG_DONE : 0),
            .type = htobe16(NBD_REPLY_TYPE_BLOCK_STATUS),
            .cookie = r->cookie,
            .length = htobe32((uint32_t)(sizeof(struct nbd_chunk_block_status) +
                                         n * sizeof(struct nbd_block_descriptor))),
        };
        struct nbd_chunk_block_status bs = { .context_id = htobe32(2u + i) };
        memcpy(p, &h, sizeof h);
        memcpy(p + sizeof h, &bs, sizeof bs);
        p += sizeof h + sizeof bs;
        for (unsigned j = 0; j < n; j++) {
            struct nbd_block_descriptor d = {
                .length = htobe32((uint32_t)ext[j].len),
                .status_flags = htobe32(ext[j].changed ? NBD_STATE_CHANGED : 0),
            };
            memcpy(p, &d, sizeof d);
            p += sizeof d;
        }
        len = (uint32_t)(p - (uint8_t *)r->buf);
    }
    r->bs_len = len;
    return 0;
}

/* The base:allocation chunk of a BLOCK_STATUS reply, into hdr (context 1);
 * final unless pitcopy:changed chunks follow in buf. */
static int alloc_status(struct nbd_conn *c, struct nbd_req *r)
{
    struct pc_alloc_extent ext[NBD_BS_MAX_EXTENTS];
    int n = pc_volume_block_status(c->nw->w, c->vol, r->offset, r->count, ext,
                                   r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_BS_MAX_EXTENTS);
    struct nbd_chunk_block_status bs = { .context_id = htobe32(1) };

    if (n < 0)
        return n;
    put_structured(r, r->bs_len ? 0 : NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_BLOCK_STATUS,
                   (uint32_t)(sizeof bs + (unsigned)n * sizeof(struct nbd_block_descriptor)));
    memcpy(r->hdr + r->hdr_len, &bs, sizeof bs);
    r->hdr_len += sizeof bs;
    for (int i = 0; i < n; i++) {
        uint32_t f = (ext[i].flags & PC_ALLOC_HOLE ? NBD_STATE_HOLE : 0) |
                     (ext[i].flags & PC_ALLOC_ZERO ? NBD_STATE_ZERO : 0);
        /* Each fits: the request's count is 32 bits and bounds the sum. */
        struct nbd_block_descriptor d = { .length = htobe32((uint32_t)ext[i].len),
                                          .status_flags = htobe32(f) };
        memcpy(r->hdr + r->hdr_len, &d, sizeof d);
        r->hdr_len += sizeof d;
    }
    return 0;
}

static void execute(struct nbd_conn *c, struct nbd_req *r)
{
    switch (r->cmd) {
    case NBD_CMD_READ:
        r->buf = pc_buf_alloc(c->nw->w, r->count);
        if (!r->buf) {
            reply_now(c, r, -ENOMEM);
            return;
        }
        r->buf_len = r->count;
        c->nengine++;
        req_submit(c, r, PC_IO_READ, r->offset, r->count, r->buf, 0);
        return;
    case NBD_CMD_FLUSH:
        c->nengine++;
        req_submit(c, r, PC_IO_FLUSH, 0, 0, NULL, 0);
        return;
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
        r->zero_write = r->flags & NBD_CMD_FLAG_NO_HOLE;
        if (r->zero_write && !zbuf_ready(c)) {
            reply_now(c, r, -ENOMEM);
            return;
        }
        r->zero_off = r->offset;
        c->nengine++;
        zero_next(c, r);
        return;
    case NBD_CMD_BLOCK_STATUS: {
        int err = changed_status(c, r);
        r->hdr_len = 0;
        if (!err && c->meta_allocation)
            err = alloc_status(c, r);
        reply_now(c, r, err);
        return;
    }
    default:
        abort();                        /* T1: validate() let nothing else through */
    }
}

void nbd_write_ready(struct nbd_conn *c, struct nbd_req *r)
{
    c->nengine++;
    req_submit(c, r, PC_IO_WRITE, r->offset, r->count, r->buf, io_flags(r));
}

bool nbd_transmission_parse(struct nbd_conn *c)
{
    while (c->state == CONN_TRANSMISSION) {
        struct nbd_request h;
        struct nbd_req *r;
        int err;

        if (c->rlen - c->rpos < sizeof h)
            return false;
        if (!c->free_reqs) {
            c->paused = true;           /* resumes when a reply has gone */
            return false;
        }
        memcpy(&h, c->rbuf + c->rpos, sizeof h);
        c->rpos += sizeof h;
        if (be32toh(h.magic) != NBD_REQUEST_MAGIC) {
            /* Out of step with the client: nothing after this can be
             * trusted to be a header (N3). */
            nbd_conn_kill(c, "bad request magic 0x%08x", be32toh(h.magic));
            return false;
        }
        r = nbd_conn_req_get(c);
        r->cookie = h.cookie;
        r->offset = be64toh(h.offset);
        r->count = be32toh(h.count);
        r->cmd = be16toh(h.type);
        r->flags = be16toh(h.flags);
        c->nrequests++;

        if (r->cmd == NBD_CMD_DISC) {
            nbd_conn_req_put(c, r);
            nbd_conn_drain(c, "client sent NBD_CMD_DISC");
            return false;
        }
        err = c->nw->stopping ? -ESHUTDOWN : validate(c, r);         /* N6 */
        if (r->cmd == NBD_CMD_WRITE) {
            if (!err) {
                r->buf = pc_buf_alloc(c->nw->w, r->count);
                if (r->buf)
                    r->buf_len = r->count;
                else
                    err = -ENOMEM;
            }
            if (err) {
                c->skip = r->count;     /* N3: its payload still comes */
                reply_now(c, r, err);
                return true;
            }
            c->wr_req = r;              /* conn.c receives the payload */
            c->wr_have = 0;
            return true;
        }
        if (err)
            reply_now(c, r, err);
        else
            execute(c, r);
    }
    return false;
}
