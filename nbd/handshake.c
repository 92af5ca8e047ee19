/* SPDX-License-Identifier: MIT */
/*
 * nbd/handshake.c — fixed-newstyle option negotiation.
 *
 * Role
 *   From the greeting to the transmission phase: the client's flags, then
 *   options, each answered before the next is read (the client waits for
 *   our reply; one that does not still gets them in order).  Understood:
 *   EXPORT_NAME, ABORT, LIST, INFO, GO, STRUCTURED_REPLY,
 *   LIST_META_CONTEXT and SET_META_CONTEXT (base:allocation, and
 *   pitcopy:changed:MAP for every incremental mapping MAP the export is
 *   source or target of — plus plain pitcopy:changed when there is just
 *   one, the way QEMU offers qemu:dirty-bitmap:NAME), and
 *   STARTTLS when the server has TLS credentials; anything else gets
 *   NBD_REP_ERR_UNSUP; while the server stops, everything but ABORT gets
 *   NBD_REP_ERR_SHUTDOWN (N6).  Every engine volume is an export under its
 *   name; there is no default export (the empty name), and a client asking
 *   for it is told so.
 *
 *   TLS: with NBD_TLS_REQUIRE, every option before TLS but STARTTLS and
 *   ABORT is answered NBD_REP_ERR_TLS_REQD, so a client learns nothing,
 *   not even the export names, in plain text; EXPORT_NAME, which cannot be
 *   refused politely, ends the connection.  STARTTLS is acknowledged in
 *   plain text, conn.c runs the TLS handshake, and negotiation starts over
 *   inside TLS: what was agreed before is forgotten (N7).
 *
 *   Size constraints: the engine takes 4 KiB aligned offsets and lengths
 *   only, so NBD_INFO_BLOCK_SIZE says minimum 4 KiB, preferred 64 KiB,
 *   maximum 32 MiB, sent whether or not the client asked (the protocol
 *   allows it; clients that asked must obey it, and transmission.c refuses
 *   unaligned requests from the others with EINVAL rather than refusing
 *   them at NBD_OPT_GO).
 *
 * Invariants
 *   H1  An option is acted on only once all its data is in the buffer, and
 *       every length inside it is checked against what is left before it is
 *       read (N5).  Option data longer than NBD_MAX_OPTION_LEN is skipped
 *       unread and answered NBD_REP_ERR_TOO_BIG.
 *   H2  The volume of a successful GO or EXPORT_NAME is held
 *       (pc_volume_get) until the connection is freed; INFO and the meta
 *       context options hold it only while they look at it.
 *   H3  base:allocation and pitcopy:changed contexts are on in
 *       transmission only if the last SET_META_CONTEXT chose them for the
 *       very export that GO names.
 *   H4  While the server stops (N6), an option is still framed and counted
 *       as usual (H1, NBD_MAX_OPTIONS) before it is refused, so the stream
 *       stays in step and a client cannot keep the connection forever.
 *
 * Context
 *   The connection's worker.  pc_volume_get/put/list take the engine's
 *   vol_lock briefly (engine/internal.h allows it on workers).
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/internal.h"
#include "nbd/wire.h"

#define META_ALLOCATION     "base:allocation"
#define META_ALLOCATION_ID  1u          /* the context id we hand out */
#define META_CHANGED        "pitcopy:changed"   /* + ":MAP"; ids 2, 3, … (nbd_conn.changed) */

const char *nbd_opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME:       return "NBD_OPT_EXPORT_NAME";
    case NBD_OPT_ABORT:             return "NBD_OPT_ABORT";
    case NBD_OPT_LIST:              return "NBD_OPT_LIST";
    case NBD_OPT_PEEK_EXPORT:       return "NBD_OPT_PEEK_EXPORT";
    case NBD_OPT_STARTTLS:          return "NBD_OPT_STARTTLS";
    case NBD_OPT_INFO:              return "NBD_OPT_INFO";
    case NBD_OPT_GO:                return "NBD_OPT_GO";
    case NBD_OPT_STRUCTURED_REPLY:  return "NBD_OPT_STRUCTURED_REPLY";
    case NBD_OPT_LIST_META_CONTEXT: return "NBD_OPT_LIST_META_CONTEXT";
    case NBD_OPT_SET_META_CONTEXT:  return "NBD_OPT_SET_META_CONTEXT";
    case NBD_OPT_EXTENDED_HEADERS:  return "NBD_OPT_EXTENDED_HEADERS";
    default:                        return "unknown option";
    }
}

uint16_t nbd_export_flags(const struct nbd_conn *c)
{
    /* Multi-conn: FLUSH is an fdatasync of the volume, which covers every
     * completed write from any connection, and a write is visible to every
     * connection once it completed (one engine, one file). */
    uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                 NBD_FLAG_CAN_MULTI_CONN;

    if (c->structured)
        f |= NBD_FLAG_SEND_DF;      /* a READ is always one chunk anyway */
    return f;
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof v);
    return be32toh(v);
}

static uint16_t get16(const uint8_t *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof v);
    return be16toh(v);
}

/* A client's string, made printable for logs and messages. */
static void printable(char *dst, size_t dstlen, const uint8_t *p, uint32_t len)
{
    size_t n = 0;

    for (uint32_t i = 0; i < len && n + 4 < dstlen; i++)
        dst[n++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    if (len > 0 && n + 4 >= dstlen && n < len) {
        dst[n++] = '.';
        dst[n++] = '.';
        dst[n++] = '.';
    }
    dst[n] = '\0';
}

/* ------------------------------------------------------------------------
 * Replies
 */

static void rep(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len)
{
    struct nbd_option_reply h = {
        .magic = htobe64(NBD_REP_MAGIC),
        .option = htobe32(opt),
        .reply = htobe32(type),
        .len = htobe32(len),
    };

    if (nbd_conn_out(c, &h, sizeof h) && len)
        nbd_conn_out(c, data, len);
}

/* An error reply with a sentence for the user. */
static void rep_err(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void rep_err(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof msg)
        n = sizeof msg - 1;
    rep(c, opt, type, msg, (uint32_t)n);
}

/* N6: the server is stopping; the client must give up (soft disconnect). */
static void rep_shutdown(struct nbd_conn *c, uint32_t opt)
{
    rep_err(c, opt, NBD_REP_ERR_SHUTDOWN, "%s: pitcopy is shutting down", nbd_opt_name(opt));
}

/* ------------------------------------------------------------------------
 * Exports
 */

/*
 * The volume named by the client's bytes, held (pc_volume_get), or NULL.
 * name receives it NUL-terminated when it can be a volume name at all.
 */
static struct pc_volume *export_get(struct nbd_conn *c, const uint8_t *p, uint32_t len,
                                    char name[NBD_MAX_STRING + 1])
{
    name[0] = '\0';
    if (len == 0 || len > NBD_MAX_STRING || memchr(p, '\0', len))
        return NULL;
    memcpy(name, p, len);
    name[len] = '\0';
    return pc_volume_get(c->s->e, name);
}

static void start_transmission(struct nbd_conn *c, struct pc_volume *v, const char *name)
{
    c->vol = v;                                         /* H2 */
    c->size = pc_volume_size(v);
    snprintf(c->export_name, sizeof c->export_name, "%s", pc_volume_name(v));
    bool ours = c->hs->meta_set && c->hs->meta_export &&
                strcmp(c->hs->meta_export, name) == 0;              /* H3 */
    c->meta_allocation = ours && c->hs->meta_alloc;
    c->nchanged = ours ? c->hs->nchanged : 0;
    memcpy(c->changed, c->hs->changed, sizeof c->changed);
    free(c->hs->meta_export);
    free(c->hs);
    c->hs = NULL;
    c->state = CONN_TRANSMISSION;
}

static const char default_refused[] =
    "pitcopy has no default export: name a volume, e.g. nbd+unix:///VOLUME?socket=PATH";

/* ------------------------------------------------------------------------
 * Options
 */

static void opt_export_name(struct nbd_conn *c, const uint8_t *data, uint32_t len)
{
    char name[NBD_MAX_STRING + 1], shown[80];
    struct pc_volume *v;
    struct nbd_export_name_reply r;
    static const uint8_t zeroes[NBD_EXPORT_NAME_PAD];

    /* This option cannot fail politely: the protocol says to hang up. */
    if (len == 0) {
        nbd_conn_kill(c, "NBD_OPT_EXPORT_NAME: %s", default_refused);
        return;
    }
    v = export_get(c, data, len, name);
    if (!v) {
        printable(shown, sizeof shown, data, len);
        nbd_conn_kill(c, "NBD_OPT_EXPORT_NAME: no volume named \"%s\"", shown);
        return;
    }
    r.size = htobe64(pc_volume_size(v));
    r.eflags = htobe16(nbd_export_flags(c));
    if (!nbd_conn_out(c, &r, sizeof r) ||
        (!c->no_zeroes && !nbd_conn_out(c, zeroes, sizeof zeroes))) {
        pc_volume_put(v);
        return;
    }
    start_transmission(c, v, name);
}

struct list_ctx {
    struct nbd_conn *c;
};

/* Under the engine's vol_lock: no calls back into the engine. */
static void list_one(struct pc_volume *v, void *arg)
{
    struct list_ctx *lc = arg;
    const char *name = pc_volume_name(v);
    uint32_t n = (uint32_t)strlen(name);
    uint8_t buf[4 + 64];
    uint32_t be = htobe32(n);

    memcpy(buf, &be, 4);
    memcpy(buf + 4, name, n);
    rep(lc->c, NBD_OPT_LIST, NBD_REP_SERVER, buf, 4 + n);
}

static void opt_list(struct nbd_conn *c, uint32_t len)
{
    struct list_ctx lc = { .c = c };

    if (len != 0) {
        rep_err(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
        return;
    }
    pc_volume_list(c->s->e, list_one, &lc);
    rep(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

/* NBD_OPT_INFO and NBD_OPT_GO (same request, same replies). */
static void opt_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    char name[NBD_MAX_STRING + 1], shown[80];
    uint32_t nlen;
    uint16_t nreq;
    bool want_name = false;
    struct pc_volume *v;
    struct nbd_info_export ie;
    struct nbd_info_block_size ib;
    const char *oname = nbd_opt_name(opt);

    if (len < 6) {
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: option data too short", oname);
        return;
    }
    nlen = get32(data);
    if (nlen > len - 6) {                                           /* H1 */
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: export name longer than the option", oname);
        return;
    }
    if (nlen > NBD_MAX_STRING) {
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: export name longer than %u bytes",
                oname, NBD_MAX_STRING);
        return;
    }
    nreq = get16(data + 4 + nlen);
    if (len != 6 + nlen + 2u * nreq) {
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: %u information requests do not fill the option",
                oname, nreq);
        return;
    }
    for (uint16_t i = 0; i < nreq; i++)
        if (get16(data + 6 + nlen + 2u * i) == NBD_INFO_NAME)
            want_name = true;
    if (nlen == 0) {
        rep_err(c, opt, NBD_REP_ERR_UNKNOWN, "%s", default_refused);
        return;
    }
    v = export_get(c, data + 4, nlen, name);
    if (!v) {
        printable(shown, sizeof shown, data + 4, nlen);
        rep_err(c, opt, NBD_REP_ERR_UNKNOWN, "no volume named \"%s\"", shown);
        return;
    }

    ie.info = htobe16(NBD_INFO_EXPORT);
    ie.size = htobe64(pc_volume_size(v));
    ie.eflags = htobe16(nbd_export_flags(c));
    rep(c, opt, NBD_REP_INFO, &ie, sizeof ie);
    /* Always, asked for or not: these are not the protocol's defaults. */
    ib.info = htobe16(NBD_INFO_BLOCK_SIZE);
    ib.minimum = htobe32(NBD_MIN_BLOCK);
    ib.preferred = htobe32(NBD_PREF_BLOCK);
    ib.maximum = htobe32(NBD_MAX_PAYLOAD);
    rep(c, opt, NBD_REP_INFO, &ib, sizeof ib);
    if (want_name) {
        uint8_t buf[2 + 64];
        uint16_t t = htobe16(NBD_INFO_NAME);
        size_t n = strlen(pc_volume_name(v));

        memcpy(buf, &t, 2);
        memcpy(buf + 2, pc_volume_name(v), n);
        rep(c, opt, NBD_REP_INFO, buf, (uint32_t)(2 + n));
    }
    rep(c, opt, NBD_REP_ACK, NULL, 0);
    if (c->state == CONN_DEAD) {            /* out of memory on the way */
        pc_volume_put(v);
        return;
    }
    if (opt == NBD_OPT_GO)
        start_transmission(c, v, name);     /* H2 */
    else
        pc_volume_put(v);
}

static void opt_structured_reply(struct nbd_conn *c, uint32_t len)
{
    if (len != 0) {
        rep_err(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                "NBD_OPT_STRUCTURED_REPLY takes no data");
        return;
    }
    if (c->structured) {
        rep_err(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                "structured replies are already negotiated");
        return;
    }
    c->structured = true;
    rep(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL, 0);
}

static bool query_is(const uint8_t *q, uint32_t qlen, const char *s)
{
    return qlen == strlen(s) && memcmp(q, s, qlen) == 0;
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static void opt_meta_context(struct nbd_conn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    bool set = opt == NBD_OPT_SET_META_CONTEXT;
    const char *oname = nbd_opt_name(opt);
    char name[NBD_MAX_STRING + 1], shown[80];
    uint32_t nlen, nq, left;
    const uint8_t *p;
    bool alloc = false;
    struct pc_volume *v;
    char maps[NBD_MAX_CHANGED][64];
    unsigned nmaps;
    bool want[NBD_MAX_CHANGED + 1] = { false };     /* [NBD_MAX_CHANGED]: the plain name */

    if (set) {
        /* A SET replaces the previous choice, even when it fails. */
        c->hs->meta_set = false;
        c->hs->meta_alloc = false;
        c->hs->nchanged = 0;
        free(c->hs->meta_export);
        c->hs->meta_export = NULL;
    }
    if (!c->structured) {
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: negotiate structured replies first", oname);
        return;
    }
    if (len < 8) {
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: option data too short", oname);
        return;
    }
    nlen = get32(data);
    if (nlen > len - 8 || nlen > NBD_MAX_STRING) {                  /* H1 */
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: bad export name length", oname);
        return;
    }
    nq = get32(data + 4 + nlen);
    p = data + 8 + nlen;
    left = len - 8 - nlen;
    /* Check every query's length before looking at any (H1). */
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t ql;

        if (left < 4) {
            rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: %u queries do not fit the option", oname, nq);
            return;
        }
        ql = get32(p);
        if (ql > left - 4 || ql > NBD_MAX_STRING) {
            rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: bad query length", oname);
            return;
        }
        p += 4 + ql;
        left -= 4 + ql;
    }
    if (left != 0) {
        rep_err(c, opt, NBD_REP_ERR_INVALID, "%s: trailing bytes after the queries", oname);
        return;
    }
    if (nlen == 0) {
        rep_err(c, opt, NBD_REP_ERR_UNKNOWN, "%s", default_refused);
        return;
    }
    v = export_get(c, data + 4, nlen, name);
    if (!v) {
        printable(shown, sizeof shown, data + 4, nlen);
        rep_err(c, opt, NBD_REP_ERR_UNKNOWN, "no volume named \"%s\"", shown);
        return;
    }
    nmaps = pc_volume_changed_maps(v, maps, NBD_MAX_CHANGED);
    if (nmaps > NBD_MAX_CHANGED)
        nmaps = NBD_MAX_CHANGED;
    pc_volume_put(v);

    /* Every volume has base:allocation.  LIST with no query lists all we
     * have, "base:" lists the base namespace; SET with none selects none.
     * Unknown namespaces and leaves are ignored, as the protocol says. */
    p = data + 8 + nlen;
    if (nq == 0)
        alloc = !set;
    for (uint32_t i = 0; i < nq; i++) {
        uint32_t ql = get32(p);

        if (query_is(p + 4, ql, META_ALLOCATION) || (!set && query_is(p + 4, ql, "base:")))
            alloc = true;
        bool all = !set && (query_is(p + 4, ql, "pitcopy:") || query_is(p + 4, ql, META_CHANGED));
        if (nmaps == 1 && (all || query_is(p + 4, ql, META_CHANGED)))
            want[NBD_MAX_CHANGED] = true;
        for (unsigned j = 0; j < nmaps; j++) {
            char full[sizeof META_CHANGED + 64];
            snprintf(full, sizeof full, "%s:%s", META_CHANGED, maps[j]);
            if (all || query_is(p + 4, ql, full))
                want[j] = true;
        }
        p += 4 + ql;
    }
    if (nq == 0 && !set) {
        want[NBD_MAX_CHANGED] = nmaps == 1;
        for (unsigned j = 0; j < nmaps; j++)
            want[j] = true;
    }
    if (alloc) {
        uint8_t buf[4 + sizeof META_ALLOCATION - 1];
        uint32_t id = htobe32(set ? META_ALLOCATION_ID : 0);

        memcpy(buf, &id, 4);
        memcpy(buf + 4, META_ALLOCATION, sizeof META_ALLOCATION - 1);
        rep(c, opt, NBD_REP_META_CONTEXT, buf, sizeof buf);
    }
    for (unsigned j = 0; j <= NBD_MAX_CHANGED; j++) {
        if (!want[j])
            continue;
        const char *map = j == NBD_MAX_CHANGED ? maps[0] : maps[j];
        uint8_t buf[4 + sizeof META_CHANGED + 64];
        int n = j == NBD_MAX_CHANGED
                ? snprintf((char *)buf + 4, sizeof buf - 4, "%s", META_CHANGED)
                : snprintf((char *)buf + 4, sizeof buf - 4, "%s:%s", META_CHANGED, map);
        uint32_t id = 0;
        if (set) {
            id = htobe32(2u + c->hs->nchanged);
            memcpy(c->hs->changed[c->hs->nchanged++], map, 64);
        }
        memcpy(buf, &id, 4);
        rep(c, opt, NBD_REP_META_CONTEXT, buf, 4 + (uint32_t)n);
    }
    if (set && (alloc || c->hs->nchanged)) {
        c->hs->meta_export = strdup(name);
        c->hs->meta_set = c->hs->meta_export != NULL;
        c->hs->meta_alloc = alloc;
    }
    rep(c, opt, NBD_REP_ACK, NULL, 0);
}

static void opt_starttls(struct nbd_conn *c, uint32_t len)
{
    if (!c->s->tls) {
        rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
                "TLS is not enabled on this server (pitcopy serve --tls-creds DIR or "
                "--tls-psk FILE enables it)");
        return;
    }
    if (len != 0) {
        rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
        return;
    }
    if (c->tls_phase != TLS_NONE) {
        rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already negotiated");
        return;
    }
    /* N7: start over inside TLS. */
    c->structured = false;
    c->hs->meta_alloc = false;
    c->hs->nchanged = 0;
    c->hs->meta_set = false;
    free(c->hs->meta_export);
    c->hs->meta_export = NULL;
    rep(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0);
    nbd_conn_starttls(c);                   /* kills on failure */
}

/* ------------------------------------------------------------------------
 * The parser
 */

void nbd_handshake_start(struct nbd_conn *c)
{
    struct nbd_greeting g = {
        .nbdmagic = htobe64(NBD_MAGIC),
        .version = htobe64(NBD_IHAVEOPT),
        .gflags = htobe16(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES),
    };

    nbd_conn_out(c, &g, sizeof g);
}

bool nbd_handshake_parse(struct nbd_conn *c)
{
    const uint8_t *p = c->rbuf + c->rpos;
    uint32_t avail = c->rlen - c->rpos;
    struct nbd_option h;
    uint32_t opt, len;

    if (!c->hs->got_flags) {
        uint32_t flags;

        if (avail < 4)
            return false;
        flags = get32(p);
        c->rpos += 4;
        if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
            nbd_conn_kill(c, "client sent unknown handshake flags 0x%x", flags);
            return false;
        }
        c->hs->got_flags = true;
        c->hs->fixed = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
        c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
        return true;
    }

    if (avail < sizeof h)
        return false;
    memcpy(&h, p, sizeof h);
    opt = be32toh(h.option);
    len = be32toh(h.len);
    if (be64toh(h.version) != NBD_IHAVEOPT) {
        nbd_conn_kill(c, "bad option magic 0x%016llx", (unsigned long long)be64toh(h.version));
        return false;
    }
    if (len > NBD_MAX_OPTION_LEN) {                                  /* H1 */
        c->rpos += sizeof h;
        if (opt == NBD_OPT_EXPORT_NAME || !c->hs->fixed ||
            c->hs->nr_options >= NBD_MAX_OPTIONS) {
            nbd_conn_kill(c, "%s with %u bytes of data", nbd_opt_name(opt), len);
            return false;
        }
        c->hs->nr_options++;
        c->skip = len;
        if (c->nw->stopping)
            rep_shutdown(c, opt);                                   /* N6 */
        else
            rep_err(c, opt, NBD_REP_ERR_TOO_BIG, "%s: %u bytes of option data is more than %u",
                    nbd_opt_name(opt), len, NBD_MAX_OPTION_LEN);
        return true;
    }
    if (avail - sizeof h < len)
        return false;                                               /* H1 */
    c->rpos += sizeof h + len;
    p += sizeof h;

    if (!c->hs->fixed && opt != NBD_OPT_EXPORT_NAME) {
        /* A plain newstyle client cannot read an option reply. */
        nbd_conn_kill(c, "%s from a client that is not fixed-newstyle", nbd_opt_name(opt));
        return false;
    }
    if (++c->hs->nr_options > NBD_MAX_OPTIONS) {
        nbd_conn_kill(c, "client sent more than %u options", NBD_MAX_OPTIONS);
        return false;
    }
    if (c->s->tls_mode == NBD_TLS_REQUIRE && c->tls_phase != TLS_ON &&
        opt != NBD_OPT_STARTTLS && opt != NBD_OPT_ABORT) {
        if (opt == NBD_OPT_EXPORT_NAME) {
            nbd_conn_kill(c, "NBD_OPT_EXPORT_NAME without TLS, which this server requires");
            return false;
        }
        /* Once per connection: the client's own message may not say why
         * (libnbd reports "Operation not supported"). */
        if (!c->hs->tls_refused)
            nbd_log("connection %llu: %s refused: the client did not start TLS, which this "
                    "server requires", (unsigned long long)c->id, nbd_opt_name(opt));
        c->hs->tls_refused = true;
        rep_err(c, opt, NBD_REP_ERR_TLS_REQD, "%s: this server requires TLS: send "
                "NBD_OPT_STARTTLS first (nbds:// or nbds+unix:// URIs)", nbd_opt_name(opt));
        return true;
    }

    if (c->nw->stopping && opt != NBD_OPT_ABORT) {                  /* N6 */
        if (opt == NBD_OPT_EXPORT_NAME) {
            /* It has no error reply: the protocol says to hang up. */
            nbd_conn_kill(c, "NBD_OPT_EXPORT_NAME while the server is shutting down");
            return false;
        }
        /* The client must now send NBD_OPT_ABORT; until it does (or the
         * stop's grace period ends) every option gets the same answer. */
        rep_shutdown(c, opt);
        return c->state <= CONN_TRANSMISSION;
    }

    switch (opt) {
    case NBD_OPT_EXPORT_NAME:
        opt_export_name(c, p, len);
        break;
    case NBD_OPT_ABORT:
        /* The data, if any, is ignored, as the protocol asks. */
        rep(c, opt, NBD_REP_ACK, NULL, 0);
        nbd_conn_drain(c, "client sent NBD_OPT_ABORT");
        return false;
    case NBD_OPT_LIST:
        opt_list(c, len);
        break;
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        opt_info_go(c, opt, p, len);
        break;
    case NBD_OPT_STRUCTURED_REPLY:
        opt_structured_reply(c, len);
        break;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta_context(c, opt, p, len);
        break;
    case NBD_OPT_STARTTLS:
        opt_starttls(c, len);   /* conn_parse reads no further in plain text (N7) */
        break;
    default:
        rep_err(c, opt, NBD_REP_ERR_UNSUP, "option %u is not supported by pitcopy", opt);
        break;
    }
    return c->state <= CONN_TRANSMISSION;
}
