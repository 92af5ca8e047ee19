/* SPDX-License-Identifier: MIT */
/*
 * nbd/tls.c — TLS for NBD connections (GnuTLS): credentials, sessions, records.
 *
 * Role
 *   Loads the server's credentials once, at start: X.509 from a directory
 *   in the layout qemu and nbdkit use (ca-cert.pem, server-cert.pem,
 *   server-key.pem, optional ca-crl.pem), or pre-shared keys from a file in
 *   psktool's format ("username:hexkey" per line).  Then, per connection,
 *   a GnuTLS server session on the connection's non-blocking socket: the
 *   handshake and every record go through our push and pull functions,
 *   which never wait; GnuTLS's GNUTLS_E_AGAIN becomes -EAGAIN, and conn.c
 *   waits on the poll GnuTLS asked for (gnutls_record_get_direction).
 *   Which bytes to send and where received bytes go stays in conn.c: this
 *   file only turns plain text into records and back.
 *
 *   Versions TLS 1.2 and 1.3 only (NBD_TLS_PRIORITY).  No session tickets
 *   (NBD clients do not resume), no renegotiation (a client asking for it
 *   is disconnected).
 *
 * Invariants
 *   L1  Secrets (the server's private key, the pre-shared keys) are read
 *       only from a regular file owned by the user pitcopy runs as, with no
 *       permission for group or others, as fstat says of the very
 *       descriptor that is then read.  They never reach a log line or an
 *       error text: errors name the file, the line and what is wrong, never
 *       what it holds.  Copies we make are wiped before they are freed.
 *   L2  After gnutls_record_send returned GNUTLS_E_AGAIN the record is
 *       encrypted and held inside GnuTLS; the next send on the session
 *       only flushes it (data NULL, size 0, as the GnuTLS manual allows)
 *       and returns its length, whatever the caller now offers.
 *   L3  A connection's session exists from NBD_OPT_STARTTLS until conn_free
 *       (nbd_tls_session_free), and nothing else frees it.
 *
 * Context
 *   nbd_tls_load, nbd_tls_free: the thread starting or stopping the
 *   server.  Everything else: the connection's worker thread.  The
 *   credentials and the priority cache are only read once loaded, so every
 *   worker's sessions share them (GnuTLS allows it).  Nothing here blocks:
 *   even the pull timeout function only peeks (poll with 0 ms).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "nbd/internal.h"

/*
 * TLS 1.2 and 1.3 with GnuTLS's default ciphers.  For pre-shared keys:
 * their key exchanges (NORMAL leaves them out), only those with an
 * ephemeral (EC)DH so a key that leaks later does not open recorded
 * sessions; and since a TLS 1.3 external PSK is bound to SHA-256, which
 * rules out AES-256-GCM, AES-128-GCM ahead of CHACHA20-POLY1305, by our
 * order rather than the client's: with AES instructions it is ten times
 * faster (gnutls-cli --benchmark-ciphers), and NBD moves volumes.
 */
#define NBD_TLS_PRIORITY     "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define NBD_TLS_PRIORITY_PSK NBD_TLS_PRIORITY ":+ECDHE-PSK:+DHE-PSK" \
                             ":-CHACHA20-POLY1305:+CHACHA20-POLY1305:%SERVER_PRECEDENCE"

#define TLS_FILE_MAX     (1u << 20)     /* no credential file is bigger */
#define TLS_PSK_MIN      16u            /* bytes: 128 bits at least */
#define TLS_PSK_MAX      512u
#define TLS_PSK_USER_MAX 255u

struct tls_psk {
    char     *user;
    uint8_t  *key;
    unsigned  len;
};

struct nbd_tls {
    enum nbd_tls_mode                 mode;
    bool                              verify_peer;
    gnutls_certificate_credentials_t  x509;     /* X.509, or ... */
    gnutls_psk_server_credentials_t   psk;      /* ... pre-shared keys */
    struct tls_psk                   *keys;
    unsigned                          nkeys;
    gnutls_priority_t                 prio;
    char                             *desc;     /* for the start-up log */
};

struct nbd_tls_conn {
    gnutls_session_t  s;
    bool              send_again;   /* L2 */
};

static void set_error(struct pc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(struct pc_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------
 * Credentials (the thread starting the server)
 */

struct tls_file {
    char   *data;       /* NUL-terminated (PEM parsers want text) */
    size_t  len;
    bool    secret;     /* wiped when freed (L1) */
};

static void tls_file_free(struct tls_file *f)
{
    if (f->data && f->secret)
        explicit_bzero(f->data, f->len);
    free(f->data);
    f->data = NULL;
    f->len = 0;
}

/*
 * Read path whole.  what names it in errors ("TLS private key").  With
 * secret, the file must be private (L1).  -ENOENT without an error set
 * when optional and missing.
 */
static int tls_read_file(const char *path, const char *what, bool secret, bool optional,
                         struct tls_file *f, struct pc_error *err)
{
    struct stat st;
    ssize_t n;
    int fd, r;

    f->data = NULL;
    f->len = 0;
    f->secret = secret;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        r = -errno;
        if (r == -ENOENT && optional)
            return r;
        set_error(err, r, "%s %s: %s", what, path, strerror(-r));
        return r;
    }
    if (fstat(fd, &st) < 0) {
        r = -errno;
        set_error(err, r, "%s %s: %s", what, path, strerror(-r));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = -EINVAL;
        set_error(err, r, "%s %s is not a regular file", what, path);
        goto out;
    }
    if (secret && st.st_uid != geteuid()) {
        r = -EPERM;
        set_error(err, r, "%s %s belongs to uid %u, not to uid %u that pitcopy runs as; "
                  "refusing to use a secret another user controls", what, path,
                  (unsigned)st.st_uid, (unsigned)geteuid());
        goto out;
    }
    if (secret && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        r = -EPERM;
        set_error(err, r, "%s %s is accessible to group or others (mode %04o); "
                  "refusing to use it: chmod 600 %s", what, path,
                  (unsigned)(st.st_mode & 07777), path);
        goto out;
    }
    if (st.st_size > (off_t)TLS_FILE_MAX) {
        r = -EFBIG;
        set_error(err, r, "%s %s is larger than %u bytes", what, path, TLS_FILE_MAX);
        goto out;
    }
    f->data = malloc((size_t)st.st_size + 1);
    if (!f->data) {
        r = -ENOMEM;
        set_error(err, r, "out of memory reading %s %s", what, path);
        goto out;
    }
    /* Read to the end, not to st_size: a file may change under us. */
    while (f->len < (size_t)st.st_size &&
           (n = read(fd, f->data + f->len, (size_t)st.st_size - f->len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            set_error(err, r, "%s %s: %s", what, path, strerror(-r));
            tls_file_free(f);
            goto out;
        }
        f->len += (size_t)n;
    }
    f->data[f->len] = '\0';
    r = 0;
out:
    close(fd);
    return r;
}

static int tls_gnutls_error(struct pc_error *err, int ret, const char *what, const char *path)
{
    /* gnutls_strerror says what kind of thing went wrong, never what the
     * file holds (L1). */
    set_error(err, -EINVAL, "%s %s: %s", what, path, gnutls_strerror(ret));
    return -EINVAL;
}

/* "CN=server.example.com, valid until 2034-05-01" into buf; logs a
 * certificate that is not valid now (clients would refuse it). */
static void tls_describe_cert(const struct tls_file *cert, const char *path, char *buf,
                              size_t len)
{
    gnutls_x509_crt_t crt;
    gnutls_datum_t in = { (unsigned char *)cert->data, (unsigned)cert->len }, dn = { 0 };
    time_t until, from, now = time(NULL);
    char day[32] = "?";
    struct tm tm;

    snprintf(buf, len, "unreadable");
    if (gnutls_x509_crt_init(&crt) < 0)
        return;
    if (gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_PEM) < 0 ||
        gnutls_x509_crt_get_dn3(crt, &dn, 0) < 0) {
        gnutls_x509_crt_deinit(crt);
        return;
    }
    until = gnutls_x509_crt_get_expiration_time(crt);
    from = gnutls_x509_crt_get_activation_time(crt);
    if (until != (time_t)-1 && gmtime_r(&until, &tm))
        strftime(day, sizeof day, "%Y-%m-%d", &tm);
    snprintf(buf, len, "%s, valid until %s", (const char *)dn.data, day);
    if (until != (time_t)-1 && until < now)
        nbd_log("warning: TLS certificate %s expired on %s: clients will refuse it",
                path, day);
    else if (from != (time_t)-1 && from > now)
        nbd_log("warning: TLS certificate %s is not valid yet: clients will refuse it", path);
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
}

static int tls_load_x509(struct nbd_tls *t, const char *dir, struct pc_error *err)
{
    char ca[PATH_MAX], crl[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], about[300];
    struct tls_file fca = { 0 }, fcrl = { 0 }, fcert = { 0 }, fkey = { 0 };
    gnutls_datum_t dcert, dkey;
    int r, ret;

    if ((size_t)snprintf(ca, sizeof ca, "%s/ca-cert.pem", dir) >= sizeof ca ||
        (size_t)snprintf(crl, sizeof crl, "%s/ca-crl.pem", dir) >= sizeof crl ||
        (size_t)snprintf(cert, sizeof cert, "%s/server-cert.pem", dir) >= sizeof cert ||
        (size_t)snprintf(key, sizeof key, "%s/server-key.pem", dir) >= sizeof key) {
        /* The reason first: the path itself may not fit the message. */
        set_error(err, -ENAMETOOLONG, "TLS credentials directory path too long (%zu bytes): "
                  "%.80s...", strlen(dir), dir);
        return -ENAMETOOLONG;
    }
    ret = gnutls_certificate_allocate_credentials(&t->x509);
    if (ret < 0) {
        set_error(err, -ENOMEM, "cannot allocate TLS credentials: %s", gnutls_strerror(ret));
        return -ENOMEM;
    }
    /* The CA checks client certificates: needed only to verify them. */
    r = tls_read_file(ca, "TLS CA certificate", false, !t->verify_peer, &fca, err);
    if (r < 0 && (r != -ENOENT || t->verify_peer))
        goto out;
    if (r == 0) {
        gnutls_datum_t d = { (unsigned char *)fca.data, (unsigned)fca.len };

        ret = gnutls_certificate_set_x509_trust_mem(t->x509, &d, GNUTLS_X509_FMT_PEM);
        if (ret < 0) {
            r = tls_gnutls_error(err, ret, "TLS CA certificate", ca);
            goto out;
        }
        if (ret == 0) {
            r = -EINVAL;
            set_error(err, r, "TLS CA certificate %s holds no certificate", ca);
            goto out;
        }
        r = tls_read_file(crl, "TLS CA revocation list", false, true, &fcrl, err);
        if (r < 0 && r != -ENOENT)
            goto out;
        if (r == 0) {
            gnutls_datum_t dc = { (unsigned char *)fcrl.data, (unsigned)fcrl.len };

            ret = gnutls_certificate_set_x509_crl_mem(t->x509, &dc, GNUTLS_X509_FMT_PEM);
            if (ret < 0) {
                r = tls_gnutls_error(err, ret, "TLS CA revocation list", crl);
                goto out;
            }
        }
    }
    r = tls_read_file(cert, "TLS server certificate", false, false, &fcert, err);
    if (r < 0)
        goto out;
    r = tls_read_file(key, "TLS private key", true, false, &fkey, err);
    if (r < 0)
        goto out;
    dcert = (gnutls_datum_t){ (unsigned char *)fcert.data, (unsigned)fcert.len };
    dkey = (gnutls_datum_t){ (unsigned char *)fkey.data, (unsigned)fkey.len };
    ret = gnutls_certificate_set_x509_key_mem(t->x509, &dcert, &dkey, GNUTLS_X509_FMT_PEM);
    if (ret < 0) {
        /* Either file may be at fault (a key that is not the certificate's). */
        set_error(err, -EINVAL, "TLS server certificate %s with private key %s: %s",
                  cert, key, gnutls_strerror(ret));
        r = -EINVAL;
        goto out;
    }
    /* DHE key exchanges (TLS 1.2) need a group; GnuTLS knows good ones. */
    gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
    tls_describe_cert(&fcert, cert, about, sizeof about);
    if (asprintf(&t->desc, "X.509 certificate %s (%s); client certificates %s", cert, about,
                 t->verify_peer ? "required, checked against ca-cert.pem" : "not asked for") < 0)
        t->desc = NULL;
    r = 0;
out:
    tls_file_free(&fca);
    tls_file_free(&fcrl);
    tls_file_free(&fcert);
    tls_file_free(&fkey);
    return r;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* One "username:hexkey" line (NUL-terminated, without its newline). */
static int tls_psk_line(struct nbd_tls *t, const char *path, unsigned lineno, char *line,
                        struct pc_error *err)
{
    char *colon = strchr(line, ':');
    size_t ulen, hlen;
    struct tls_psk *k, *keys;

    if (!colon || colon == line) {
        set_error(err, -EINVAL, "TLS PSK file %s, line %u: expected username:hexkey "
                  "(as psktool writes)", path, lineno);
        return -EINVAL;
    }
    ulen = (size_t)(colon - line);
    hlen = strlen(colon + 1);
    if (ulen > TLS_PSK_USER_MAX) {
        set_error(err, -EINVAL, "TLS PSK file %s, line %u: user name longer than %u bytes",
                  path, lineno, TLS_PSK_USER_MAX);
        return -EINVAL;
    }
    if (hlen % 2 || hlen / 2 < TLS_PSK_MIN || hlen / 2 > TLS_PSK_MAX) {
        set_error(err, -EINVAL, "TLS PSK file %s, line %u: the key must be %u to %u bytes "
                  "in hexadecimal (psktool -s 32 makes one)", path, lineno, TLS_PSK_MIN,
                  TLS_PSK_MAX);
        return -EINVAL;
    }
    *colon = '\0';
    for (unsigned i = 0; i < t->nkeys; i++)
        if (strcmp(t->keys[i].user, line) == 0) {
            set_error(err, -EINVAL, "TLS PSK file %s, line %u: a second key for user \"%s\"",
                      path, lineno, line);
            return -EINVAL;
        }
    keys = realloc(t->keys, (t->nkeys + 1) * sizeof *keys);
    if (!keys)
        goto nomem;
    t->keys = keys;
    k = &t->keys[t->nkeys];
    k->user = strdup(line);
    k->key = malloc(hlen / 2);
    k->len = (unsigned)(hlen / 2);
    if (!k->user || !k->key) {
        free(k->user);
        free(k->key);
        goto nomem;
    }
    t->nkeys++;
    for (size_t i = 0; i < hlen; i += 2) {
        int hi = hexval(colon[1 + i]), lo = hexval(colon[2 + i]);

        if (hi < 0 || lo < 0) {
            set_error(err, -EINVAL, "TLS PSK file %s, line %u: the key is not hexadecimal",
                      path, lineno);
            return -EINVAL;
        }
        k->key[i / 2] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
nomem:
    set_error(err, -ENOMEM, "out of memory reading TLS PSK file %s", path);
    return -ENOMEM;
}

/* The client named a user: hand GnuTLS its key (a copy it frees), or say
 * there is none, which fails the handshake. */
static int tls_psk_lookup(gnutls_session_t session, const char *user, gnutls_datum_t *key)
{
    struct nbd_conn *c = gnutls_session_get_ptr(session);
    const struct nbd_tls *t = c->s->tls;

    for (unsigned i = 0; i < t->nkeys; i++)
        if (strcmp(t->keys[i].user, user) == 0) {
            key->data = gnutls_malloc(t->keys[i].len);
            if (!key->data)
                return -1;
            memcpy(key->data, t->keys[i].key, t->keys[i].len);
            key->size = t->keys[i].len;
            return 0;
        }
    return -1;
}

static int tls_load_psk(struct nbd_tls *t, const char *path, struct pc_error *err)
{
    struct tls_file f;
    unsigned lineno = 0;
    char *line, *next;
    int r, ret;

    r = tls_read_file(path, "TLS PSK file", true, false, &f, err);
    if (r < 0)
        return r;
    if (memchr(f.data, '\0', f.len)) {
        set_error(err, -EINVAL, "TLS PSK file %s is not text", path);
        r = -EINVAL;
        goto out;
    }
    for (line = f.data; line && *line; line = next) {
        size_t n;

        lineno++;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[--n] = '\0';
        if (n == 0)
            continue;
        r = tls_psk_line(t, path, lineno, line, err);
        if (r < 0)
            goto out;
    }
    if (t->nkeys == 0) {
        set_error(err, -EINVAL, "TLS PSK file %s holds no key (psktool -u USER -p %s adds one)",
                  path, path);
        r = -EINVAL;
        goto out;
    }
    ret = gnutls_psk_allocate_server_credentials(&t->psk);
    if (ret < 0) {
        set_error(err, -ENOMEM, "cannot allocate TLS credentials: %s", gnutls_strerror(ret));
        r = -ENOMEM;
        goto out;
    }
    gnutls_psk_set_server_credentials_function(t->psk, tls_psk_lookup);
    gnutls_psk_set_server_known_dh_params(t->psk, GNUTLS_SEC_PARAM_MEDIUM);
    if (asprintf(&t->desc, "pre-shared keys from %s (%u user%s)", path, t->nkeys,
                 t->nkeys == 1 ? "" : "s") < 0)
        t->desc = NULL;
    r = 0;
out:
    tls_file_free(&f);
    return r;
}

void nbd_tls_free(struct nbd_tls *t)
{
    if (!t)
        return;
    if (t->x509)
        gnutls_certificate_free_credentials(t->x509);
    if (t->psk)
        gnutls_psk_free_server_credentials(t->psk);
    if (t->prio)
        gnutls_priority_deinit(t->prio);
    for (unsigned i = 0; i < t->nkeys; i++) {
        explicit_bzero(t->keys[i].key, t->keys[i].len);     /* L1 */
        free(t->keys[i].key);
        free(t->keys[i].user);
    }
    free(t->keys);
    free(t->desc);
    free(t);
}

int nbd_tls_load(const struct nbd_server_opts *o, struct nbd_tls **out, struct pc_error *err)
{
    struct nbd_tls *t;
    const char *errpos = NULL;
    int r, ret;

    *out = NULL;
    if (!o->tls_creds_dir == !o->tls_psk_file) {
        set_error(err, -EINVAL, "TLS needs either X.509 credentials (a directory) or a PSK "
                  "file, one of the two");
        return -EINVAL;
    }
    if (o->tls_verify_peer && !o->tls_creds_dir) {
        set_error(err, -EINVAL, "verifying client certificates needs X.509 credentials");
        return -EINVAL;
    }
    t = calloc(1, sizeof *t);
    if (!t) {
        set_error(err, -ENOMEM, "out of memory loading TLS credentials");
        return -ENOMEM;
    }
    t->mode = o->tls;
    t->verify_peer = o->tls_verify_peer;
    r = o->tls_creds_dir ? tls_load_x509(t, o->tls_creds_dir, err)
                         : tls_load_psk(t, o->tls_psk_file, err);
    if (r < 0) {
        nbd_tls_free(t);
        return r;
    }
    ret = gnutls_priority_init(&t->prio, t->psk ? NBD_TLS_PRIORITY_PSK : NBD_TLS_PRIORITY,
                               &errpos);
    if (ret < 0) {
        set_error(err, -EINVAL, "TLS priority string: %s", gnutls_strerror(ret));
        nbd_tls_free(t);
        return -EINVAL;
    }
    *out = t;
    return 0;
}

const char *nbd_tls_describe(const struct nbd_tls *t)
{
    return t->desc ? t->desc : "credentials loaded";
}

/* ------------------------------------------------------------------------
 * Transport: the connection's non-blocking sockets, never waited on here
 */

static ssize_t tls_push(gnutls_transport_ptr_t p, const giovec_t *iov, int n)
{
    struct nbd_conn *c = p;
    ssize_t w;

    if (c->is_sock) {
        struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)n };

        w = sendmsg(c->wfd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } else {
        w = writev(c->wfd, (const struct iovec *)iov, n);
    }
    if (w < 0)
        gnutls_transport_set_errno(c->tls->s, errno);
    return w;
}

static ssize_t tls_pull(gnutls_transport_ptr_t p, void *buf, size_t len)
{
    struct nbd_conn *c = p;
    ssize_t n = c->is_sock ? recv(c->fd, buf, len, 0) : read(c->fd, buf, len);

    if (n < 0)
        gnutls_transport_set_errno(c->tls->s, errno);
    return n;
}

/* GnuTLS asks whether input is waiting; we answer without waiting, whatever
 * ms says, because a worker must never block. */
static int tls_pull_timeout(gnutls_transport_ptr_t p, unsigned int ms)
{
    struct nbd_conn *c = p;
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };

    (void)ms;
    return poll(&pfd, 1, 0);
}

/* ------------------------------------------------------------------------
 * Sessions (the connection's worker)
 */

int nbd_tls_session_new(struct nbd_conn *c, char *why, size_t whylen)
{
    const struct nbd_tls *t = c->s->tls;
    struct nbd_tls_conn *tc = calloc(1, sizeof *tc);
    int ret;

    if (!tc) {
        snprintf(why, whylen, "out of memory for a TLS session");
        return -ENOMEM;
    }
    ret = gnutls_init(&tc->s, GNUTLS_SERVER | GNUTLS_NONBLOCK | GNUTLS_NO_TICKETS);
    if (ret < 0) {
        snprintf(why, whylen, "cannot create a TLS session: %s", gnutls_strerror(ret));
        free(tc);
        return -ENOMEM;
    }
    ret = gnutls_priority_set(tc->s, t->prio);
    if (ret >= 0)
        ret = t->x509 ? gnutls_credentials_set(tc->s, GNUTLS_CRD_CERTIFICATE, t->x509)
                      : gnutls_credentials_set(tc->s, GNUTLS_CRD_PSK, t->psk);
    if (ret < 0) {
        snprintf(why, whylen, "cannot set up a TLS session: %s", gnutls_strerror(ret));
        gnutls_deinit(tc->s);
        free(tc);
        return -EINVAL;
    }
    if (t->verify_peer) {
        /* No certificate, or one the CA did not sign: no handshake. */
        gnutls_certificate_server_set_request(tc->s, GNUTLS_CERT_REQUIRE);
        gnutls_session_set_verify_cert(tc->s, NULL, 0);
    }
    gnutls_session_set_ptr(tc->s, c);               /* for tls_psk_lookup */
    gnutls_transport_set_ptr(tc->s, c);
    gnutls_transport_set_vec_push_function(tc->s, tls_push);
    gnutls_transport_set_pull_function(tc->s, tls_pull);
    gnutls_transport_set_pull_timeout_function(tc->s, tls_pull_timeout);
    /* A client that never finishes is like one that never sends an
     * option: it holds a connection, nothing more. */
    gnutls_handshake_set_timeout(tc->s, 0);
    c->tls = tc;
    return 0;
}

void nbd_tls_session_free(struct nbd_conn *c)
{
    if (!c->tls)
        return;
    gnutls_deinit(c->tls->s);
    free(c->tls);
    c->tls = NULL;
}

/* Which poll a GNUTLS_E_AGAIN waits for. */
static int tls_again(struct nbd_conn *c)
{
    c->tls_want_write = gnutls_record_get_direction(c->tls->s) == 1;
    return -EAGAIN;
}

/* After a handshake: one line with what was negotiated and who the client is. */
static void tls_log_session(struct nbd_conn *c)
{
    gnutls_session_t s = c->tls->s;
    char *desc = gnutls_session_get_desc(s);
    char who[300] = "";

    if (gnutls_auth_get_type(s) == GNUTLS_CRD_PSK) {
        const char *user = gnutls_psk_server_get_username(s);
        const char *group = gnutls_group_get_name(gnutls_group_get(s));

        /* get_desc leaves out a TLS 1.3 PSK's key exchange: name it. */
        snprintf(who, sizeof who, ", %s%s, PSK user \"%s\"", group ? "key exchange " : "",
                 group ? group : "no ephemeral key exchange", user ? user : "?");
    } else if (c->s->tls->verify_peer) {
        unsigned n = 0;
        const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
        gnutls_x509_crt_t crt;
        gnutls_datum_t dn = { 0 };

        if (certs && n > 0 && gnutls_x509_crt_init(&crt) >= 0) {
            if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0 &&
                gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
                snprintf(who, sizeof who, ", client certificate %s", (const char *)dn.data);
                gnutls_free(dn.data);
            }
            gnutls_x509_crt_deinit(crt);
        }
    }
    nbd_log("connection %llu: TLS %s%s", (unsigned long long)c->id, desc ? desc : "", who);
    gnutls_free(desc);
}

int nbd_tls_handshake(struct nbd_conn *c)
{
    gnutls_session_t s = c->tls->s;
    int ret;

    /* Non-fatal results but AGAIN (a warning alert, EINTR) only mean
     * "call again", as the GnuTLS manual's handshake loop does. */
    do
        ret = gnutls_handshake(s);
    while (ret < 0 && ret != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(ret));
    if (ret == GNUTLS_E_SUCCESS) {
        tls_log_session(c);
        return 0;
    }
    if (ret == GNUTLS_E_AGAIN)
        return tls_again(c);
    if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        gnutls_datum_t out = { 0 };
        unsigned status = gnutls_session_get_verify_cert_status(s);

        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) >= 0) {
            nbd_conn_kill(c, "TLS handshake failed: client certificate refused: %s",
                          (const char *)out.data);
            gnutls_free(out.data);
            return -EACCES;
        }
    }
    /* A wrong or unknown pre-shared key shows as a failed decryption or
     * an unknown user; say which, never what key was tried (L1). */
    nbd_conn_kill(c, "TLS handshake failed: %s", gnutls_strerror(ret));
    return -EPROTO;
}

ssize_t nbd_tls_recv(struct nbd_conn *c, void *buf, size_t len)
{
    ssize_t n;

    /* A warning alert was consumed, nothing more: read on. */
    do
        n = gnutls_record_recv(c->tls->s, buf, len);
    while (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_WARNING_ALERT_RECEIVED);
    if (n >= 0)
        return n;
    if (n == GNUTLS_E_AGAIN)
        return tls_again(c);
    /* The client closed the socket without close_notify: to NBD that is
     * an end of file like any other (conn.c judges where it fell). */
    if (n == GNUTLS_E_PREMATURE_TERMINATION)
        return 0;
    if (n == GNUTLS_E_REHANDSHAKE) {
        nbd_conn_kill(c, "client asked for TLS renegotiation, which pitcopy does not do");
        return -EPROTO;
    }
    nbd_conn_kill(c, "TLS receive failed: %s", gnutls_strerror((int)n));
    return -EPROTO;
}

ssize_t nbd_tls_send(struct nbd_conn *c, const void *buf, size_t len)
{
    struct nbd_tls_conn *tc = c->tls;
    ssize_t n;

    if (tc->send_again) {               /* L2 */
        buf = NULL;
        len = 0;
    } else if (len > NBD_TLS_RECORD) {
        len = NBD_TLS_RECORD;
    }
    do
        n = gnutls_record_send(tc->s, buf, len);
    while (n == GNUTLS_E_INTERRUPTED);
    if (n > 0) {
        tc->send_again = false;
        return n;
    }
    if (n == GNUTLS_E_AGAIN) {
        tc->send_again = true;
        return tls_again(c);
    }
    nbd_conn_kill(c, "TLS send failed: %s", n == 0 ? "nothing sent" : gnutls_strerror((int)n));
    return -EPROTO;
}

bool nbd_tls_send_again(const struct nbd_conn *c)
{
    return c->tls->send_again;
}

bool nbd_tls_pending(const struct nbd_conn *c)
{
    return gnutls_record_check_pending(c->tls->s) > 0;
}

void nbd_tls_bye(struct nbd_conn *c)
{
    /* Non-blocking: if the alert does not fit the socket now, the client
     * sees the end of the stream without it, which NBD tolerates. */
    gnutls_bye(c->tls->s, GNUTLS_SHUT_WR);
}
