/* SPDX-License-Identifier: MIT */
/* Description: NBD over TLS (pre-shared keys) with a raw client: when TLS is required every option but STARTTLS and ABORT gets NBD_REP_ERR_TLS_REQD and EXPORT_NAME hangs up; STARTTLS takes no data, no plain text after it, and forgets what came before; 32 MiB READs and WRITEs and a full pipe round-trip through non-blocking records; a wrong key fails only its own handshake; credential files that are not private or not well formed are refused naming file and line, never the key; plain TCP beyond loopback is refused. */
#include <endian.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <gnutls/gnutls.h>

#include "engineutil.h"
#include "nbdutil.h"
#include "testutil.h"

#define VSIZE   (64u * TU_MIB)
#define BIG     (32u * TU_MIB)          /* NBD_MAX_PAYLOAD */

static const char key_hex[] =
    "5c1e0f3a9b7d2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";
static const char other_hex[] =
    "0000000000000000000000000000000000000000000000000000000000000001";

struct fx {
    struct tu_eng *f;
    struct tu_nbd  n;
    char           psk[4200];
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
        nbd_server_stop(x->n.s);
    *state = x->f;
    tu_eng_teardown(state);
    free(x);
    return 0;
}

#define BOTH(fn) \
    { #fn "/uring", fn, fx_setup, fx_teardown, (void *)"uring" }, \
    { #fn "/aio",   fn, fx_setup, fx_teardown, (void *)"aio" }
#define ONCE(fn) { #fn, fn, fx_setup, fx_teardown, (void *)"aio" }

/* Write text to DIR/name with mode; returns the path in x->psk. */
static const char *write_file(struct fx *x, const char *name, const char *text, mode_t mode)
{
    int fd;

    snprintf(x->psk, sizeof x->psk, "%s/%s", x->f->dir, name);
    unlink(x->psk);
    fd = open(x->psk, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
    return x->psk;
}

static int try_start(struct fx *x, struct nbd_server_opts *o, struct pc_error *err)
{
    memset(err, 0, sizeof *err);
    snprintf(x->n.sock, sizeof x->n.sock, "%s/nbd.sock", x->f->dir);
    if (!o->unix_path && !o->tcp_port)
        o->unix_path = x->n.sock;
    o->stdio_fd = -1;
    return nbd_server_start(x->f->e, o, &x->n.s, err);
}

/* The fixture with volume v1 and a server whose PSK file knows alice. */
static struct fx *fx_get(void **state, enum nbd_tls_mode mode)
{
    struct fx *x = *state;
    void *inner = x->f;
    char text[256];
    struct nbd_server_opts o = { .tls = mode };
    struct pc_error err;

    tu_eng_get(&inner);
    tu_vol_new(x->f, "v1", VSIZE);
    /* CRLF and blank lines are taken. */
    snprintf(text, sizeof text, "alice:%s\r\n\nbob:%s\n", key_hex, other_hex);
    o.tls_psk_file = write_file(x, "keys.psk", text, 0600);
    if (try_start(x, &o, &err) != 0)
        fail_msg("nbd_server_start: %s", err.msg);
    return x;
}

static void expect_no_connections(struct fx *x)
{
    for (int tries = 0; nbd_server_connections(x->n.s) > 0 && tries < 1000; tries++)
        usleep(10000);
    assert_int_equal(nbd_server_connections(x->n.s), 0);
}

/* Read one reply to opt in plain text; assert its type and text. */
static void expect_reply(int fd, uint32_t opt, uint32_t type, const char *msg)
{
    char buf[512];
    uint32_t len, got = tu_raw_opt_reply(fd, opt, buf, sizeof buf - 1, &len);

    buf[len] = '\0';
    if (got != type)
        fail_msg("%s: reply 0x%x, wanted 0x%x (\"%s\")", msg ? msg : "", got, type, buf);
    if (msg)
        assert_string_equal(buf, msg);
}

/* The socket ends with nothing more for us: no reply was sent. */
static void expect_eof_now(int fd)
{
    char c;
    ssize_t n = recv(fd, &c, 1, 0);

    assert_true(n == 0 || (n < 0 && errno == ECONNRESET));
}

/* ------------------------------------------------------------------------
 * A blocking TLS client on a raw socket (the socket's 10 s timeouts bound
 * every call).
 */

struct tc {
    gnutls_session_t                 s;
    gnutls_psk_client_credentials_t  cred;
};

/* The handshake with user and key; GnuTLS's result (0 or an error). */
static int tc_start(struct tc *t, int fd, const char *user, const char *hex)
{
    gnutls_datum_t key = { (unsigned char *)hex, (unsigned)strlen(hex) };
    int r, tries = 0;

    assert_int_equal(gnutls_psk_allocate_client_credentials(&t->cred), 0);
    assert_int_equal(gnutls_psk_set_client_credentials(t->cred, user, &key,
                                                       GNUTLS_PSK_KEY_HEX), 0);
    assert_int_equal(gnutls_init(&t->s, GNUTLS_CLIENT), 0);
    assert_int_equal(gnutls_priority_set_direct(t->s, "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK",
                                                NULL), 0);
    assert_int_equal(gnutls_credentials_set(t->s, GNUTLS_CRD_PSK, t->cred), 0);
    gnutls_transport_set_int(t->s, fd);
    do
        r = gnutls_handshake(t->s);
    while (r < 0 && !gnutls_error_is_fatal(r) && ++tries < 3);
    return r;
}

static void tc_end(struct tc *t)
{
    gnutls_deinit(t->s);
    gnutls_psk_free_client_credentials(t->cred);
}

static void tc_send(struct tc *t, const void *p, size_t len)
{
    const char *c = p;

    while (len > 0) {
        ssize_t n = gnutls_record_send(t->s, c, len);

        if (n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n <= 0)
            fail_msg("gnutls_record_send: %s", gnutls_strerror((int)n));
        c += n;
        len -= (size_t)n;
    }
}

static bool tc_recv(struct tc *t, void *p, size_t len)
{
    char *c = p;

    while (len > 0) {
        ssize_t n = gnutls_record_recv(t->s, c, len);

        if (n == GNUTLS_E_INTERRUPTED)
            continue;
        if (n <= 0)
            return false;
        c += n;
        len -= (size_t)n;
    }
    return true;
}

static void tc_opt(struct tc *t, uint32_t opt, const void *data, uint32_t len)
{
    struct nbd_option h = {
        .version = htobe64(NBD_IHAVEOPT),
        .option = htobe32(opt),
        .len = htobe32(len),
    };

    tc_send(t, &h, sizeof h);
    if (len)
        tc_send(t, data, len);
}

static uint32_t tc_reply(struct tc *t, uint32_t opt, char *buf, uint32_t cap, uint32_t *len)
{
    struct nbd_option_reply r;
    uint32_t n;

    assert_true(tc_recv(t, &r, sizeof r));
    assert_true(be64toh(r.magic) == NBD_REP_MAGIC);
    assert_int_equal(be32toh(r.option), opt);
    n = be32toh(r.len);
    assert_true(n <= cap);
    if (n)
        assert_true(tc_recv(t, buf, n));
    *len = n;
    return be32toh(r.reply);
}

static void tc_expect(struct tc *t, uint32_t opt, uint32_t type, const char *msg)
{
    char buf[512];
    uint32_t len, got = tc_reply(t, opt, buf, sizeof buf - 1, &len);

    buf[len] = '\0';
    if (got != type)
        fail_msg("reply 0x%x, wanted 0x%x (\"%s\")", got, type, buf);
    if (msg)
        assert_string_equal(buf, msg);
}

/* NBD_OPT_GO for v1 over TLS; returns the export size. */
static uint64_t tc_go(struct tc *t)
{
    uint8_t data[10] = { 0, 0, 0, 2, 'v', '1', 0, 0 };
    char buf[512];
    uint32_t len, type;
    uint64_t size = 0;

    tc_opt(t, NBD_OPT_GO, data, 8);
    while ((type = tc_reply(t, NBD_OPT_GO, buf, sizeof buf, &len)) == NBD_REP_INFO) {
        struct nbd_info_export ie;

        if (len == sizeof ie) {
            memcpy(&ie, buf, sizeof ie);
            size = be64toh(ie.size);
        }
    }
    assert_int_equal(type, NBD_REP_ACK);
    return size;
}

static void tc_req(struct tc *t, uint16_t type, uint64_t cookie, uint64_t off, uint32_t count)
{
    struct nbd_request r = {
        .magic = htobe32(NBD_REQUEST_MAGIC),
        .type = htobe16(type),
        .cookie = htobe64(cookie),
        .offset = htobe64(off),
        .count = htobe32(count),
    };

    tc_send(t, &r, sizeof r);
}

/* A simple reply with no error; its cookie. */
static uint64_t tc_ok(struct tc *t)
{
    struct nbd_simple_reply r;

    assert_true(tc_recv(t, &r, sizeof r));
    assert_int_equal(be32toh(r.magic), NBD_SIMPLE_REPLY_MAGIC);
    assert_int_equal(be32toh(r.error), 0);
    return be64toh(r.cookie);
}

/* Connect, read the greeting, send STARTTLS, take the plain ACK. */
static int plain_to_starttls(struct fx *x)
{
    int fd = tu_raw_connect(&x->n);

    tu_raw_hello(fd);
    tu_raw_opt(fd, NBD_OPT_STARTTLS, NULL, 0);
    expect_reply(fd, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL);
    return fd;
}

/* ------------------------------------------------------------------------
 * Tests
 */

/* TLS required: nothing but STARTTLS and ABORT before TLS. */
static void test_required(void **state)
{
    struct fx *x = fx_get(state, NBD_TLS_REQUIRE);
    static const struct {
        uint32_t    opt;
        const char *name;
    } opts[] = {
        { NBD_OPT_LIST, "NBD_OPT_LIST" },
        { NBD_OPT_INFO, "NBD_OPT_INFO" },
        { NBD_OPT_GO, "NBD_OPT_GO" },
        { NBD_OPT_STRUCTURED_REPLY, "NBD_OPT_STRUCTURED_REPLY" },
        { NBD_OPT_LIST_META_CONTEXT, "NBD_OPT_LIST_META_CONTEXT" },
        { NBD_OPT_SET_META_CONTEXT, "NBD_OPT_SET_META_CONTEXT" },
        { NBD_OPT_PEEK_EXPORT, "NBD_OPT_PEEK_EXPORT" },
        { 99, "unknown option" },
    };
    uint8_t go[8] = { 0, 0, 0, 2, 'v', '1', 0, 0 };
    char msg[200];
    int fd = tu_raw_connect(&x->n);

    tu_raw_hello(fd);
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        /* Whatever the data: refused unread, the stream kept in step. */
        tu_raw_opt(fd, opts[i].opt, go, sizeof go);
        snprintf(msg, sizeof msg, "%s: this server requires TLS: send NBD_OPT_STARTTLS "
                 "first (nbds:// or nbds+unix:// URIs)", opts[i].name);
        expect_reply(fd, opts[i].opt, NBD_REP_ERR_TLS_REQD, msg);
    }
    tu_raw_opt(fd, NBD_OPT_STARTTLS, "x", 1);
    expect_reply(fd, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "NBD_OPT_STARTTLS takes no data");
    tu_raw_opt(fd, NBD_OPT_ABORT, NULL, 0);
    expect_reply(fd, NBD_OPT_ABORT, NBD_REP_ACK, NULL);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* EXPORT_NAME cannot be answered with an error: the server hangs up. */
    fd = tu_raw_connect(&x->n);
    tu_raw_hello(fd);
    tu_raw_opt(fd, NBD_OPT_EXPORT_NAME, "v1", 2);
    expect_eof_now(fd);
    close(fd);
    expect_no_connections(x);
}

/* Plain text sent behind STARTTLS, before its reply, is never acted on:
 * the connection ends without even the ACK (N6). */
static void test_no_plaintext_after_starttls(void **state)
{
    struct fx *x = fx_get(state, NBD_TLS_REQUIRE);
    struct nbd_option h[2] = {
        { htobe64(NBD_IHAVEOPT), htobe32(NBD_OPT_STARTTLS), 0 },
        { htobe64(NBD_IHAVEOPT), htobe32(NBD_OPT_LIST), 0 },
    };
    int fd = tu_raw_connect(&x->n);

    tu_raw_hello(fd);
    tu_raw_send(fd, h, sizeof h);           /* one send: one read on the other side */
    expect_eof_now(fd);
    close(fd);
    expect_no_connections(x);
}

/* Through TLS: the biggest WRITE and READ, then a full pipe: the server's
 * records wait on its write poll while we do not read. */
static void test_round_trip(void **state)
{
    struct fx *x = fx_get(state, NBD_TLS_REQUIRE);
    enum { NPIPE = 64, PIECE = 256u << 10 };
    uint8_t *in = malloc(BIG), *out = malloc(BIG);
    struct tc t;
    int fd = plain_to_starttls(x);

    assert_non_null(in);
    assert_non_null(out);
    assert_int_equal(tc_start(&t, fd, "alice", key_hex), 0);
    tc_opt(&t, NBD_OPT_STARTTLS, NULL, 0);
    tc_expect(&t, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already negotiated");
    assert_int_equal(tc_go(&t), VSIZE);

    tu_fill(in, BIG, 42);
    tc_req(&t, NBD_CMD_WRITE, 1, 4096, BIG);
    tc_send(&t, in, BIG);
    assert_int_equal(tc_ok(&t), 1);
    tc_req(&t, NBD_CMD_READ, 2, 4096, BIG);
    assert_int_equal(tc_ok(&t), 2);
    assert_true(tc_recv(&t, out, BIG));
    assert_memory_equal(in, out, BIG);

    /* 16 MiB of replies asked for before any is read. */
    for (unsigned i = 0; i < NPIPE; i++)
        tc_req(&t, NBD_CMD_READ, 100 + i, 4096 + (uint64_t)i * PIECE, PIECE);
    for (unsigned i = 0; i < NPIPE; i++) {
        uint64_t cookie = tc_ok(&t);

        assert_true(cookie >= 100 && cookie < 100 + NPIPE);
        assert_true(tc_recv(&t, out, PIECE));
        assert_memory_equal(out, in + (cookie - 100) * PIECE, PIECE);
    }
    tc_req(&t, NBD_CMD_DISC, 3, 0, 0);
    /* The server ends TLS properly: close_notify, then the end. */
    assert_int_equal(gnutls_record_recv(t.s, out, 1), 0);
    tc_end(&t);
    close(fd);
    free(in);
    free(out);
    tu_check(x->f, x->f->vols, 0, 4096);        /* untouched around the write */
    expect_no_connections(x);
}

/* TLS optional: plain clients are served; STARTTLS forgets what was
 * negotiated in plain text (N6). */
static void test_optional(void **state)
{
    struct fx *x = fx_get(state, NBD_TLS_ON);
    uint8_t meta[8 + 2 + 4 + 15] = { 0, 0, 0, 2, 'v', '1', 0, 0, 0, 1, 0, 0, 0, 15 };
    struct tc t;
    uint64_t size;
    int fd = tu_raw_open(&x->n, "v1", false, false, &size);

    assert_int_equal(size, VSIZE);
    tu_raw_req(fd, 0, NBD_CMD_DISC, 1, 0, 0);
    assert_true(tu_raw_closed(fd));
    close(fd);

    memcpy(meta + 14, "base:allocation", 15);
    fd = tu_raw_connect(&x->n);
    tu_raw_hello(fd);
    tu_raw_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    expect_reply(fd, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL);
    tu_raw_opt(fd, NBD_OPT_STARTTLS, NULL, 0);
    expect_reply(fd, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL);
    assert_int_equal(tc_start(&t, fd, "bob", other_hex), 0);
    tc_opt(&t, NBD_OPT_SET_META_CONTEXT, meta, sizeof meta);
    tc_expect(&t, NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID,
              "NBD_OPT_SET_META_CONTEXT: negotiate structured replies first");
    tc_opt(&t, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    tc_expect(&t, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL);
    assert_int_equal(tc_go(&t), VSIZE);
    tc_req(&t, NBD_CMD_DISC, 2, 0, 0);
    tc_end(&t);
    close(fd);
    expect_no_connections(x);
}

/* A wrong key, or a user the file does not know: that handshake fails,
 * nothing else does. */
static void test_wrong_key(void **state)
{
    struct fx *x = fx_get(state, NBD_TLS_REQUIRE);
    struct tc t;
    int fd = plain_to_starttls(x);

    assert_true(tc_start(&t, fd, "alice", other_hex) < 0);
    tc_end(&t);
    close(fd);
    fd = plain_to_starttls(x);
    assert_true(tc_start(&t, fd, "carol", key_hex) < 0);
    tc_end(&t);
    close(fd);
    /* A client that leaves half way through the handshake. */
    fd = plain_to_starttls(x);
    tu_raw_send(fd, "\x16\x03\x01", 3);
    close(fd);
    fd = plain_to_starttls(x);
    assert_int_equal(tc_start(&t, fd, "alice", key_hex), 0);
    assert_int_equal(tc_go(&t), VSIZE);
    tc_req(&t, NBD_CMD_DISC, 1, 0, 0);
    tc_end(&t);
    close(fd);
    expect_no_connections(x);
}

/* Credential files: refused with the file and the reason, never the key;
 * no socket is left behind. */
static void test_bad_credentials(void **state)
{
    struct fx *x = *state;
    void *inner = x->f;
    char text[300], dir[4200];
    struct nbd_server_opts o;
    struct pc_error err;
    static const struct {
        const char *text;
        mode_t      mode;
        int         code;
        const char *says;
    } cases[] = {
        { "alice:%s\n", 0640, -EPERM, "is accessible to group or others (mode 0640); "
                                      "refusing to use it: chmod 600 " },
        { "alice:%s\n", 0604, -EPERM, "(mode 0604)" },
        { "alice:%s\nalice:%s\n", 0600, -EINVAL, "line 2: a second key for user \"alice\"" },
        { "alice %s\n", 0600, -EINVAL, "line 1: expected username:hexkey" },
        { "# psktool writes no comments\nalice:%s\n", 0600, -EINVAL,
          "line 1: expected username:hexkey" },
        { ":%s\n", 0600, -EINVAL, "line 1: expected username:hexkey" },
        { "\nalice:%.30s\n", 0600, -EINVAL, "line 2: the key must be 16 to 512 bytes" },
        { "alice:%.62sxy\n", 0600, -EINVAL, "line 1: the key is not hexadecimal" },
        { "\n\n", 0600, -EINVAL, "holds no key" },
    };

    tu_eng_get(&inner);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(text, sizeof text, cases[i].text, key_hex, key_hex);
        o = (struct nbd_server_opts){ .tls = NBD_TLS_REQUIRE };
        o.tls_psk_file = write_file(x, "bad.psk", text, cases[i].mode);
        assert_int_equal(try_start(x, &o, &err), cases[i].code);
        printf("refused: %s\n", err.msg);
        assert_non_null(strstr(err.msg, x->psk));
        assert_non_null(strstr(err.msg, cases[i].says));
        assert_null(strstr(err.msg, "5c1e0f3a"));                       /* L1 */
        assert_int_equal(access(x->n.sock, F_OK), -1);
    }
    o = (struct nbd_server_opts){ .tls = NBD_TLS_REQUIRE };
    snprintf(text, sizeof text, "%s/none.psk", x->f->dir);
    o.tls_psk_file = text;
    assert_int_equal(try_start(x, &o, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "none.psk: No such file or directory"));

    /* X.509: an empty directory; the CA is needed only to check clients. */
    snprintf(dir, sizeof dir, "%s/pki", x->f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    o = (struct nbd_server_opts){ .tls = NBD_TLS_REQUIRE, .tls_creds_dir = dir };
    assert_int_equal(try_start(x, &o, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "TLS server certificate "));
    assert_non_null(strstr(err.msg, "pki/server-cert.pem: No such file or directory"));
    o.tls_verify_peer = true;
    assert_int_equal(try_start(x, &o, &err), -ENOENT);
    printf("refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "pki/ca-cert.pem: No such file or directory"));

    /* A CA that is not one, a CA file with no certificate in it. */
    char ca[4300];
    snprintf(ca, sizeof ca, "%s/ca-cert.pem", dir);
    static const char *const bad_ca[] = {
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
        "a text file with no certificate in it\n",
    };
    for (size_t i = 0; i < 2; i++) {
        FILE *fc = fopen(ca, "w");
        assert_non_null(fc);
        fputs(bad_ca[i], fc);
        fclose(fc);
        o = (struct nbd_server_opts){ .tls = NBD_TLS_REQUIRE, .tls_creds_dir = dir,
                                      .tls_verify_peer = true };
        assert_true(try_start(x, &o, &err) < 0);
        printf("refused: %s\n", err.msg);
        assert_non_null(strstr(err.msg, "TLS CA certificate "));
        assert_non_null(strstr(err.msg, "pki/ca-cert.pem"));
    }
    unlink(ca);

    /* A credentials directory whose file names do not fit a path. */
    char *longdir = malloc(PATH_MAX);
    assert_non_null(longdir);
    memset(longdir, 'd', PATH_MAX - 1);
    longdir[0] = '/';
    longdir[PATH_MAX - 10] = 0;
    o = (struct nbd_server_opts){ .tls = NBD_TLS_REQUIRE, .tls_creds_dir = longdir };
    assert_int_equal(try_start(x, &o, &err), -ENAMETOOLONG);
    printf("refused: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "too long"));
    free(longdir);

    /* PSK: a user name past 255 bytes; a file that is not text. */
    char *text2 = malloc(1024);
    assert_non_null(text2);
    memset(text2, 'u', 300);
    snprintf(text2 + 300, 1024 - 300, ":%s\n", key_hex);
    o = (struct nbd_server_opts){ .tls = NBD_TLS_REQUIRE };
    o.tls_psk_file = write_file(x, "long.psk", text2, 0600);
    assert_int_equal(try_start(x, &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "user name longer than 255 bytes"));
    free(text2);
    int bfd = open(x->psk, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_true(bfd >= 0);
    assert_int_equal(write(bfd, "alice\0:00", 10), 10);
    close(bfd);
    assert_int_equal(try_start(x, &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "is not text"));

    /* Options that do not fit together. */
    o = (struct nbd_server_opts){ .tls = NBD_TLS_ON };
    assert_int_equal(try_start(x, &o, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "one of the two"));
    o = (struct nbd_server_opts){ .tls = NBD_TLS_OFF, .tls_creds_dir = dir };
    assert_int_equal(try_start(x, &o, &err), -EINVAL);
    assert_string_equal(err.msg, "TLS credentials given with TLS off");
    o = (struct nbd_server_opts){ .tls = NBD_TLS_REQUIRE, .tls_psk_file = x->psk,
                                  .tls_verify_peer = true };
    assert_int_equal(try_start(x, &o, &err), -EINVAL);
    assert_string_equal(err.msg, "verifying client certificates needs X.509 credentials");
    assert_null(x->n.s);
}

/* Plain NBD on an address other hosts can reach: only when told to (S3). */
static void test_reach(void **state)
{
    struct fx *x = *state;
    void *inner = x->f;
    char text[200];
    struct pc_error err;
    struct nbd_server_opts o;
    static const struct {
        const char       *host;
        enum nbd_tls_mode mode;
        bool              insecure;
        int               want;
    } cases[] = {
        { "0.0.0.0", NBD_TLS_OFF, false, -EPERM },
        { "0.0.0.0", NBD_TLS_ON, false, -EPERM },
        { "0.0.0.0", NBD_TLS_OFF, true, 0 },
        { "0.0.0.0", NBD_TLS_ON, true, 0 },
        { "0.0.0.0", NBD_TLS_REQUIRE, false, 0 },
        { "127.0.0.1", NBD_TLS_OFF, false, 0 },
        { "127.0.0.2", NBD_TLS_OFF, false, 0 },
        { "localhost", NBD_TLS_OFF, false, 0 },
    };

    tu_eng_get(&inner);
    snprintf(text, sizeof text, "alice:%s\n", key_hex);
    write_file(x, "keys.psk", text, 0600);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        o = (struct nbd_server_opts){
            .tcp_host = cases[i].host, .tcp_port = "0", .tls = cases[i].mode,
            .tls_psk_file = cases[i].mode ? x->psk : NULL, .insecure_tcp = cases[i].insecure,
        };
        printf("%s, TLS mode %d%s\n", cases[i].host, cases[i].mode,
               cases[i].insecure ? ", insecure_tcp" : "");
        assert_int_equal(try_start(x, &o, &err), cases[i].want);
        if (cases[i].want == 0) {
            nbd_server_stop(x->n.s);
            x->n.s = NULL;
            continue;
        }
        printf("refused: %s\n", err.msg);
        assert_non_null(strstr(err.msg, "0.0.0.0 port 0, which other hosts can reach"));
        assert_non_null(strstr(err.msg, cases[i].mode == NBD_TLS_ON ? "--tls require"
                                                                      : "--tls-creds DIR"));
        assert_non_null(strstr(err.msg, "--insecure-tcp"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_required),
        BOTH(test_no_plaintext_after_starttls),
        BOTH(test_round_trip),
        BOTH(test_optional),
        BOTH(test_wrong_key),
        ONCE(test_bad_credentials),
        ONCE(test_reach),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
