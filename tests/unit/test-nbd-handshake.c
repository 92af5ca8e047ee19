/* SPDX-License-Identifier: MIT */
/* Description: every malformed NBD option gets its documented reply (type and message) with the stream kept in step, framing violations and clients vanishing mid-handshake end only their connection. */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engineutil.h"
#include "nbdutil.h"
#include "testutil.h"

#define VSIZE     (4u * TU_MIB)
#define MAX_STR   4096u             /* nbd/internal.h NBD_MAX_STRING */
#define MAX_OPT   (64u << 10)       /* NBD_MAX_OPTION_LEN */
#define MAX_OPTS  32u               /* NBD_MAX_OPTIONS */

static const char default_refused[] =
    "pitcopy has no default export: name a volume, e.g. nbd+unix:///VOLUME?socket=PATH";

struct fx {
    struct tu_eng *f;
    struct tu_nbd  n;
};

static int fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);

    if (!x || tu_eng_setup(state) != 0)
        return -1;
    x->f = *state;
    *state = x;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *x = *state;

    if (x->n.s)
        tu_nbd_stop(&x->n);
    *state = x->f;
    tu_eng_teardown(state);
    free(x);
    return 0;
}

/* The fixture with volume v1 and a server; skips a refused backend. */
static struct fx *fx_get(void **state)
{
    struct fx *x = *state;
    void *inner = x->f;

    tu_eng_get(&inner);
    tu_vol_new(x->f, "v1", VSIZE);
    tu_nbd_start(x->f, &x->n);
    return x;
}

#define BOTH(fn) \
    { #fn "/uring", fn, fx_setup, fx_teardown, (void *)"uring" }, \
    { #fn "/aio",   fn, fx_setup, fx_teardown, (void *)"aio" }

/* ------------------------------------------------------------------------
 * Option data, built field by field (big-endian on the wire). */

struct bb {
    uint8_t  d[MAX_OPT + 64];
    uint32_t n;
};

static struct bb *bb_new(void)
{
    struct bb *b = calloc(1, sizeof *b);

    assert_non_null(b);
    return b;
}

static void put32(struct bb *b, uint32_t v)
{
    v = htobe32(v);
    memcpy(b->d + b->n, &v, 4);
    b->n += 4;
}

static void put16(struct bb *b, uint16_t v)
{
    v = htobe16(v);
    memcpy(b->d + b->n, &v, 2);
    b->n += 2;
}

static void putb(struct bb *b, const void *p, uint32_t len)
{
    memcpy(b->d + b->n, p, len);
    b->n += len;
}

/* A length-prefixed string (export name, meta context query). */
static void puts32(struct bb *b, const char *s)
{
    put32(b, (uint32_t)strlen(s));
    putb(b, s, (uint32_t)strlen(s));
}

/* Read one reply to opt; assert its type and, when msg is not NULL, that
 * its text is exactly msg. */
static void expect_reply(int fd, uint32_t opt, uint32_t type, const char *msg)
{
    char buf[512];
    uint32_t len, got = tu_raw_opt_reply(fd, opt, buf, sizeof buf - 1, &len);

    buf[len] = '\0';
    printf("option %u -> %#x \"%s\"\n", opt, got, buf);
    assert_int_equal(got, type);
    if (msg)
        assert_string_equal(buf, msg);
}

/* The stream is in step: the next option is read as one and answered. */
static void expect_in_step(int fd)
{
    struct bb *b = bb_new();

    puts32(b, "v1");
    put16(b, 0);
    tu_raw_opt(fd, NBD_OPT_INFO, b->d, b->n);
    expect_reply(fd, NBD_OPT_INFO, NBD_REP_INFO, NULL);     /* export */
    expect_reply(fd, NBD_OPT_INFO, NBD_REP_INFO, NULL);     /* block size */
    expect_reply(fd, NBD_OPT_INFO, NBD_REP_ACK, NULL);
    free(b);
}

/* A fresh connection after the greeting, structured replies on if asked. */
static int open_hs(struct fx *x, bool structured)
{
    int fd = tu_raw_connect(&x->n);

    tu_raw_hello(fd);
    if (structured) {
        tu_raw_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        expect_reply(fd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL);
    }
    return fd;
}

/* Connections the server still holds drop to zero within 10 s. */
static void expect_no_connections(struct fx *x)
{
    for (int tries = 0; nbd_server_connections(x->n.s) > 0 && tries < 1000; tries++)
        usleep(10000);
    assert_int_equal(nbd_server_connections(x->n.s), 0);
}

/* An option header alone, claiming len bytes of data. */
static void opt_header(int fd, uint32_t opt, uint32_t len)
{
    struct nbd_option h = {
        .version = htobe64(NBD_IHAVEOPT),
        .option = htobe32(opt),
        .len = htobe32(len),
    };

    tu_raw_send(fd, &h, sizeof h);
}

/* ------------------------------------------------------------------------ */

/* NBD_OPT_INFO and NBD_OPT_GO: one table, run for both options. */
static void test_info_go(void **state)
{
    struct fx *x = fx_get(state);
    static const uint32_t opts[] = { NBD_OPT_INFO, NBD_OPT_GO };
    char name[MAX_STR + 2], msg[256], xs[77];

    memset(xs, 'x', 76);
    xs[76] = '\0';
    for (size_t o = 0; o < 2; o++) {
        uint32_t opt = opts[o];
        const char *on = opt == NBD_OPT_GO ? "NBD_OPT_GO" : "NBD_OPT_INFO";

        for (int c = 0; c < 9; c++) {
            struct bb *b = bb_new();
            uint32_t type = NBD_REP_ERR_INVALID;
            int fd = open_hs(x, false);

            msg[0] = '\0';
            switch (c) {
            case 0:         /* shorter than a name length and a count */
                putb(b, "\0\0\0\0\0", 5);
                snprintf(msg, sizeof msg, "%s: option data too short", on);
                break;
            case 1:         /* a name running past the option */
                put32(b, 200);
                putb(b, "v1", 2);
                put16(b, 0);
                snprintf(msg, sizeof msg, "%s: export name longer than the option", on);
                break;
            case 2:         /* a name over NBD_MAX_STRING, though it fits */
                memset(name, 'n', MAX_STR + 1);
                put32(b, MAX_STR + 1);
                putb(b, name, MAX_STR + 1);
                put16(b, 0);
                snprintf(msg, sizeof msg, "%s: export name longer than %u bytes", on, MAX_STR);
                break;
            case 3:         /* two requests announced, one sent */
                puts32(b, "v1");
                put16(b, 2);
                put16(b, NBD_INFO_NAME);
                snprintf(msg, sizeof msg, "%s: 2 information requests do not fill the option", on);
                break;
            case 4:         /* a byte after the requests */
                puts32(b, "v1");
                put16(b, 0);
                putb(b, "!", 1);
                snprintf(msg, sizeof msg, "%s: 0 information requests do not fill the option", on);
                break;
            case 5:         /* the default export */
                put32(b, 0);
                put16(b, 0);
                type = NBD_REP_ERR_UNKNOWN;
                snprintf(msg, sizeof msg, "%s", default_refused);
                break;
            case 6:         /* no such volume */
                puts32(b, "nope");
                put16(b, 0);
                type = NBD_REP_ERR_UNKNOWN;
                snprintf(msg, sizeof msg, "no volume named \"nope\"");
                break;
            case 7:         /* a NUL inside the name: never a volume, shown as '?' */
                put32(b, 3);
                putb(b, "v\0" "1", 3);
                put16(b, 0);
                type = NBD_REP_ERR_UNKNOWN;
                snprintf(msg, sizeof msg, "no volume named \"v?1\"");
                break;
            case 8:         /* a long unknown name: cut short in the message */
                memset(name, 'x', 300);
                put32(b, 300);
                putb(b, name, 300);
                put16(b, 0);
                type = NBD_REP_ERR_UNKNOWN;
                snprintf(msg, sizeof msg, "no volume named \"%s...\"", xs);
                break;
            }
            printf("%s case %d\n", on, c);
            tu_raw_opt(fd, opt, b->d, b->n);
            expect_reply(fd, opt, type, msg);
            expect_in_step(fd);
            close(fd);
            free(b);
        }
    }
    expect_no_connections(x);
}

/* NBD_INFO_NAME asked for: the name comes back as the volume has it. */
static void test_info_name(void **state)
{
    struct fx *x = fx_get(state);
    struct bb *b = bb_new();
    uint8_t buf[512];
    uint32_t len, type;
    bool got_name = false;
    int fd = open_hs(x, false);

    puts32(b, "v1");
    put16(b, 2);
    put16(b, NBD_INFO_DESCRIPTION);     /* not ours to give: ignored */
    put16(b, NBD_INFO_NAME);
    tu_raw_opt(fd, NBD_OPT_INFO, b->d, b->n);
    while ((type = tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, sizeof buf, &len)) == NBD_REP_INFO) {
        uint16_t t;

        memcpy(&t, buf, 2);
        assert_int_not_equal(be16toh(t), NBD_INFO_DESCRIPTION);
        if (be16toh(t) == NBD_INFO_NAME) {
            assert_int_equal(len, 2 + 2);
            assert_memory_equal(buf + 2, "v1", 2);
            got_name = true;
        }
    }
    assert_int_equal(type, NBD_REP_ACK);
    assert_true(got_name);
    close(fd);
    free(b);
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static void test_meta_context(void **state)
{
    struct fx *x = fx_get(state);
    static const uint32_t opts[] = { NBD_OPT_LIST_META_CONTEXT, NBD_OPT_SET_META_CONTEXT };
    char name[MAX_STR + 2], msg[256];

    for (size_t o = 0; o < 2; o++) {
        uint32_t opt = opts[o];
        const char *on = opt == NBD_OPT_SET_META_CONTEXT ? "NBD_OPT_SET_META_CONTEXT"
                                                         : "NBD_OPT_LIST_META_CONTEXT";

        for (int c = 0; c < 8; c++) {
            struct bb *b = bb_new();
            uint32_t type = NBD_REP_ERR_INVALID;
            int fd = open_hs(x, true);

            switch (c) {
            case 0:         /* shorter than a name length and a count */
                putb(b, "\0\0\0\0\0\0\0", 7);
                snprintf(msg, sizeof msg, "%s: option data too short", on);
                break;
            case 1:         /* a name running past the option */
                put32(b, 9);
                putb(b, "v1", 2);
                put32(b, 0);
                snprintf(msg, sizeof msg, "%s: bad export name length", on);
                break;
            case 2:         /* a name over NBD_MAX_STRING, though it fits */
                memset(name, 'n', MAX_STR + 1);
                put32(b, MAX_STR + 1);
                putb(b, name, MAX_STR + 1);
                put32(b, 0);
                snprintf(msg, sizeof msg, "%s: bad export name length", on);
                break;
            case 3:         /* two queries announced, one sent */
                puts32(b, "v1");
                put32(b, 2);
                puts32(b, "base:allocation");
                snprintf(msg, sizeof msg, "%s: 2 queries do not fit the option", on);
                break;
            case 4:         /* a query over NBD_MAX_STRING, though it fits */
                puts32(b, "v1");
                put32(b, 1);
                memset(name, 'q', MAX_STR + 1);
                put32(b, MAX_STR + 1);
                putb(b, name, MAX_STR + 1);
                snprintf(msg, sizeof msg, "%s: bad query length", on);
                break;
            case 5:         /* bytes after the last query */
                puts32(b, "v1");
                put32(b, 1);
                puts32(b, "base:allocation");
                putb(b, "xyz", 3);
                snprintf(msg, sizeof msg, "%s: trailing bytes after the queries", on);
                break;
            case 6:         /* the default export */
                put32(b, 0);
                put32(b, 0);
                type = NBD_REP_ERR_UNKNOWN;
                snprintf(msg, sizeof msg, "%s", default_refused);
                break;
            case 7:         /* no such volume */
                puts32(b, "nope");
                put32(b, 1);
                puts32(b, "base:allocation");
                type = NBD_REP_ERR_UNKNOWN;
                snprintf(msg, sizeof msg, "no volume named \"nope\"");
                break;
            }
            printf("%s case %d\n", on, c);
            tu_raw_opt(fd, opt, b->d, b->n);
            expect_reply(fd, opt, type, msg);
            expect_in_step(fd);
            close(fd);
            free(b);
        }
    }
    expect_no_connections(x);
}

/* What LIST finds for each query, and a SET that fails forgets the
 * previous choice (handshake.c: "A SET replaces the previous choice, even
 * when it fails"), so BLOCK_STATUS is then refused. */
static void test_meta_queries(void **state)
{
    struct fx *x = fx_get(state);
    struct bb *b = bb_new();
    uint8_t buf[512];
    uint32_t len, id;
    struct tu_reply rep;
    int fd = open_hs(x, true);

    /* "base:" lists what the namespace has; other namespaces and leaves
     * are ignored, not refused. */
    puts32(b, "v1");
    put32(b, 3);
    puts32(b, "base:");
    puts32(b, "qemu:dirty-bitmap:x");
    puts32(b, "base:no-such-leaf");
    tu_raw_opt(fd, NBD_OPT_LIST_META_CONTEXT, b->d, b->n);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_LIST_META_CONTEXT, buf, sizeof buf, &len),
                     NBD_REP_META_CONTEXT);
    assert_int_equal(len, 4 + 15);
    memcpy(&id, buf, 4);
    assert_int_equal(be32toh(id), 0);               /* LIST hands out no ids */
    assert_memory_equal(buf + 4, "base:allocation", 15);
    expect_reply(fd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK, NULL);
    b->n = 0;
    puts32(b, "v1");
    put32(b, 1);
    puts32(b, "qemu:dirty-bitmap:x");
    tu_raw_opt(fd, NBD_OPT_LIST_META_CONTEXT, b->d, b->n);
    expect_reply(fd, NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK, NULL);

    /* SET base:allocation, then a SET that fails. */
    b->n = 0;
    puts32(b, "v1");
    put32(b, 1);
    puts32(b, "base:allocation");
    tu_raw_opt(fd, NBD_OPT_SET_META_CONTEXT, b->d, b->n);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                     NBD_REP_META_CONTEXT);
    memcpy(&id, buf, 4);
    assert_int_not_equal(be32toh(id), 0);
    expect_reply(fd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK, NULL);
    b->n = 0;
    puts32(b, "nope");
    put32(b, 0);
    tu_raw_opt(fd, NBD_OPT_SET_META_CONTEXT, b->d, b->n);
    expect_reply(fd, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_UNKNOWN, "no volume named \"nope\"");
    tu_raw_go(fd, "v1", false, false);
    tu_raw_req(fd, 0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, NBD_EINVAL);
    close(fd);
    free(b);
}

/* Options the server knows of but does not do: refused by number. */
static void test_unsupported(void **state)
{
    struct fx *x = fx_get(state);
    int fd = open_hs(x, false);

    tu_raw_opt(fd, NBD_OPT_PEEK_EXPORT, NULL, 0);
    expect_reply(fd, NBD_OPT_PEEK_EXPORT, NBD_REP_ERR_UNSUP, "option 4 is not supported by pitcopy");
    /* Extended headers: a client must fall back to compact requests. */
    tu_raw_opt(fd, NBD_OPT_EXTENDED_HEADERS, NULL, 0);
    expect_reply(fd, NBD_OPT_EXTENDED_HEADERS, NBD_REP_ERR_UNSUP,
                 "option 11 is not supported by pitcopy");
    tu_raw_opt(fd, NBD_OPT_STARTTLS, NULL, 0);
    expect_reply(fd, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
                 "TLS is not enabled on this server (pitcopy serve --tls-creds DIR or "
                 "--tls-psk FILE enables it)");
    expect_in_step(fd);
    /* ABORT's data, if any, is ignored: acknowledged, then closed. */
    tu_raw_opt(fd, NBD_OPT_ABORT, "junk", 4);
    expect_reply(fd, NBD_OPT_ABORT, NBD_REP_ACK, NULL);
    assert_true(tu_raw_closed(fd));
    close(fd);
    expect_no_connections(x);
}

/* More than NBD_MAX_OPTION_LEN of data: refused unread (ERR_TOO_BIG, the
 * option named), the data skipped so the stream stays in step — except
 * where no reply is possible, which ends the connection. */
static void test_too_big(void **state)
{
    struct fx *x = fx_get(state);
    static const struct {
        uint32_t    opt;
        const char *name;
    } named[] = {
        { NBD_OPT_GO, "NBD_OPT_GO" },
        { NBD_OPT_PEEK_EXPORT, "NBD_OPT_PEEK_EXPORT" },
        { NBD_OPT_STARTTLS, "NBD_OPT_STARTTLS" },
        { NBD_OPT_STRUCTURED_REPLY, "NBD_OPT_STRUCTURED_REPLY" },
        { NBD_OPT_EXTENDED_HEADERS, "NBD_OPT_EXTENDED_HEADERS" },
        { 1000, "unknown option" },
    };
    uint8_t *big = calloc(1, MAX_OPT + 1);
    char msg[256];
    uint32_t flags = 0;
    struct nbd_greeting g;
    int fd;

    assert_non_null(big);
    fd = open_hs(x, false);
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        tu_raw_opt(fd, named[i].opt, big, MAX_OPT + 1);
        snprintf(msg, sizeof msg, "%s: %u bytes of option data is more than %u",
                 named[i].name, MAX_OPT + 1, MAX_OPT);
        expect_reply(fd, named[i].opt, NBD_REP_ERR_TOO_BIG, msg);
    }
    expect_in_step(fd);
    close(fd);

    /* EXPORT_NAME has no error reply: the server hangs up, at the header
     * (the data is not sent: the server may be gone before it is). */
    fd = open_hs(x, false);
    opt_header(fd, NBD_OPT_EXPORT_NAME, MAX_OPT + 1);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* Nor can a client that is not fixed-newstyle read one. */
    fd = tu_raw_connect(&x->n);
    assert_true(tu_raw_recv(fd, &g, sizeof g));
    tu_raw_send(fd, &flags, 4);
    opt_header(fd, NBD_OPT_GO, MAX_OPT + 1);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* Too big counts as an option: past NBD_MAX_OPTIONS it ends it all. */
    fd = open_hs(x, false);
    for (unsigned i = 0; i < MAX_OPTS; i++) {
        tu_raw_opt(fd, 1000, NULL, 0);
        expect_reply(fd, 1000, NBD_REP_ERR_UNSUP, "option 1000 is not supported by pitcopy");
    }
    opt_header(fd, NBD_OPT_GO, MAX_OPT + 1);
    assert_true(tu_raw_closed(fd));
    close(fd);
    free(big);
    expect_no_connections(x);
}

/* EXPORT_NAME with an empty name: the default export, which pitcopy has
 * not; EXPORT_NAME cannot fail politely, so the server hangs up. */
static void test_export_name_default(void **state)
{
    struct fx *x = fx_get(state);
    int fd = open_hs(x, false);

    tu_raw_opt(fd, NBD_OPT_EXPORT_NAME, NULL, 0);
    assert_true(tu_raw_closed(fd));
    close(fd);
    expect_no_connections(x);
}

/* A client gone at any point of the handshake: its connection is freed
 * and nothing else is disturbed. */
static void test_vanish(void **state)
{
    struct fx *x = fx_get(state);
    struct nbd_greeting g;
    struct bb *b = bb_new();
    int keep = open_hs(x, true), fd;

    puts32(b, "v1");
    put16(b, 0);
    for (int step = 0; step < 6; step++) {
        fd = tu_raw_connect(&x->n);
        switch (step) {
        case 0:         /* before reading the greeting */
            break;
        case 1:         /* after it, before the flags */
            assert_true(tu_raw_recv(fd, &g, sizeof g));
            break;
        case 2:         /* half the flags */
            assert_true(tu_raw_recv(fd, &g, sizeof g));
            tu_raw_send(fd, "\0\0", 2);
            break;
        case 3:         /* half an option header */
            tu_raw_hello(fd);
            tu_raw_send(fd, "IHAVEOPT\0\0\0", 11);
            break;
        case 4:         /* the header, half the data */
            tu_raw_hello(fd);
            opt_header(fd, NBD_OPT_INFO, b->n);
            tu_raw_send(fd, b->d, b->n - 3);
            break;
        case 5:         /* options answered, but never read */
            tu_raw_hello(fd);
            for (int i = 0; i < 8; i++)
                tu_raw_opt(fd, NBD_OPT_INFO, b->d, b->n);
            break;
        }
        close(fd);
        /* Only the one kept open is left. */
        for (int tries = 0; nbd_server_connections(x->n.s) > 1 && tries < 1000; tries++)
            usleep(10000);
        assert_int_equal(nbd_server_connections(x->n.s), 1);
    }
    expect_in_step(keep);
    tu_raw_go(keep, "v1", false, false);
    close(keep);
    expect_no_connections(x);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_info_go),
        BOTH(test_info_name),
        BOTH(test_meta_context),
        BOTH(test_meta_queries),
        BOTH(test_unsupported),
        BOTH(test_too_big),
        BOTH(test_export_name_default),
        BOTH(test_vanish),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
