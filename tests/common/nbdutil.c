/* SPDX-License-Identifier: MIT */
/* tests/common/nbdutil.c — see nbdutil.h. */
#include <endian.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "nbdutil.h"

void tu_nbd_start(struct tu_eng *f, struct tu_nbd *n)
{
    struct nbd_server_opts o = { .stdio_fd = -1 };
    struct pc_error err = { 0 };

    snprintf(n->sock, sizeof n->sock, "%s/nbd.sock", f->dir);
    o.unix_path = n->sock;
    if (nbd_server_start(f->e, &o, &n->s, &err) != 0)
        fail_msg("nbd_server_start: %s", err.msg);
}

void tu_nbd_stop(struct tu_nbd *n)
{
    nbd_server_stop(n->s);
    n->s = NULL;
}

void tu_nbd_uri(const struct tu_nbd *n, const char *vol, char *out, size_t len)
{
    snprintf(out, len, "nbd+unix:///%s?socket=%s", vol, n->sock);
}

int tu_sh(const char *fmt, ...)
{
    char *cmd;
    va_list ap;
    pid_t pid;
    int st;

    va_start(ap, fmt);
    assert_true(vasprintf(&cmd, fmt, ap) >= 0);
    va_end(ap);
    printf("$ %s\n", cmd);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execlp("timeout", "timeout", "-k", "5", "120", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    free(cmd);
    while (waitpid(pid, &st, 0) < 0)
        assert_int_equal(errno, EINTR);
    if (!WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

bool tu_have(const char *prog)
{
    char cmd[256];

    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

/* ------------------------------------------------------------------------
 * Raw client
 */

int tu_raw_connect(const struct tu_nbd *n)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = 10 };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    assert_true(strlen(n->sock) < sizeof sa.sun_path);
    memcpy(sa.sun_path, n->sock, strlen(n->sock) + 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    return fd;
}

void tu_raw_send(int fd, const void *p, size_t len)
{
    const char *c = p;

    while (len > 0) {
        ssize_t n = send(fd, c, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        c += n;
        len -= (size_t)n;
    }
}

bool tu_raw_recv(int fd, void *p, size_t len)
{
    char *c = p;

    while (len > 0) {
        ssize_t n = recv(fd, c, len, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        c += n;
        len -= (size_t)n;
    }
    return true;
}

bool tu_raw_closed(int fd)
{
    char buf[4096];

    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);

        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
        /* Replies still in the socket are fine: read past them. */
    }
}

void tu_raw_hello(int fd)
{
    struct nbd_greeting g;
    uint32_t flags = htobe32(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);

    assert_true(tu_raw_recv(fd, &g, sizeof g));
    assert_true(be64toh(g.nbdmagic) == NBD_MAGIC);
    assert_true(be64toh(g.version) == NBD_IHAVEOPT);
    assert_int_equal(be16toh(g.gflags), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    tu_raw_send(fd, &flags, sizeof flags);
}

void tu_raw_opt(int fd, uint32_t opt, const void *data, uint32_t len)
{
    struct nbd_option h = {
        .version = htobe64(NBD_IHAVEOPT),
        .option = htobe32(opt),
        .len = htobe32(len),
    };

    tu_raw_send(fd, &h, sizeof h);
    if (len)
        tu_raw_send(fd, data, len);
}

uint32_t tu_raw_opt_reply(int fd, uint32_t opt, void *buf, uint32_t cap, uint32_t *len)
{
    struct nbd_option_reply r;
    uint32_t n;

    assert_true(tu_raw_recv(fd, &r, sizeof r));
    assert_true(be64toh(r.magic) == NBD_REP_MAGIC);
    assert_int_equal(be32toh(r.option), opt);
    n = be32toh(r.len);
    assert_true(n <= cap);
    if (n)
        assert_true(tu_raw_recv(fd, buf, n));
    if (len)
        *len = n;
    return be32toh(r.reply);
}

uint64_t tu_raw_go(int fd, const char *export, bool structured, bool meta)
{
    uint8_t buf[1024];
    uint32_t nlen = (uint32_t)strlen(export), len, type, be;
    uint16_t nreq = htobe16(1), info = htobe16(NBD_INFO_BLOCK_SIZE);
    uint64_t size = 0;
    bool got_export = false, got_bs = false;

    if (structured) {
        tu_raw_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, buf, sizeof buf, &len),
                         NBD_REP_ACK);
    }
    if (meta) {
        static const char q[] = "base:allocation";
        uint32_t off = 0, one = htobe32(1), ql = htobe32(sizeof q - 1);

        be = htobe32(nlen);
        memcpy(buf + off, &be, 4);
        off += 4;
        memcpy(buf + off, export, nlen);
        off += nlen;
        memcpy(buf + off, &one, 4);
        off += 4;
        memcpy(buf + off, &ql, 4);
        off += 4;
        memcpy(buf + off, q, sizeof q - 1);
        off += sizeof q - 1;
        tu_raw_opt(fd, NBD_OPT_SET_META_CONTEXT, buf, off);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                         NBD_REP_META_CONTEXT);
        assert_int_equal(len, 4 + sizeof q - 1);
        assert_memory_equal(buf + 4, q, sizeof q - 1);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                         NBD_REP_ACK);
    }
    be = htobe32(nlen);
    memcpy(buf, &be, 4);
    memcpy(buf + 4, export, nlen);
    memcpy(buf + 4 + nlen, &nreq, 2);
    memcpy(buf + 6 + nlen, &info, 2);
    tu_raw_opt(fd, NBD_OPT_GO, buf, 8 + nlen);
    while ((type = tu_raw_opt_reply(fd, NBD_OPT_GO, buf, sizeof buf, &len)) == NBD_REP_INFO) {
        uint16_t t;

        memcpy(&t, buf, 2);
        if (be16toh(t) == NBD_INFO_EXPORT) {
            struct nbd_info_export ie;

            assert_int_equal(len, sizeof ie);
            memcpy(&ie, buf, sizeof ie);
            size = be64toh(ie.size);
            got_export = true;
        } else if (be16toh(t) == NBD_INFO_BLOCK_SIZE) {
            struct nbd_info_block_size ib;

            assert_int_equal(len, sizeof ib);
            memcpy(&ib, buf, sizeof ib);
            assert_int_equal(be32toh(ib.minimum), 4096);
            assert_int_equal(be32toh(ib.preferred), 65536);
            assert_int_equal(be32toh(ib.maximum), 32u << 20);
            got_bs = true;
        }
    }
    assert_int_equal(type, NBD_REP_ACK);
    assert_true(got_export && got_bs);
    return size;
}

int tu_raw_open(const struct tu_nbd *n, const char *export, bool structured, bool meta,
                uint64_t *size)
{
    int fd = tu_raw_connect(n);
    uint64_t sz;

    tu_raw_hello(fd);
    sz = tu_raw_go(fd, export, structured, meta);
    if (size)
        *size = sz;
    return fd;
}

void tu_raw_req(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t off,
                uint32_t count)
{
    struct nbd_request r = {
        .magic = htobe32(NBD_REQUEST_MAGIC),
        .flags = htobe16(flags),
        .type = htobe16(type),
        .cookie = htobe64(cookie),
        .offset = htobe64(off),
        .count = htobe32(count),
    };

    tu_raw_send(fd, &r, sizeof r);
}

uint32_t tu_raw_simple(int fd, uint64_t *cookie)
{
    struct nbd_simple_reply r;

    assert_true(tu_raw_recv(fd, &r, sizeof r));
    assert_int_equal(be32toh(r.magic), NBD_SIMPLE_REPLY_MAGIC);
    if (cookie)
        *cookie = be64toh(r.cookie);
    return be32toh(r.error);
}

void tu_raw_reply(int fd, bool is_read, uint32_t count, void *buf, uint32_t cap,
                  struct tu_reply *out)
{
    uint32_t magic;

    memset(out, 0, sizeof *out);
    assert_true(tu_raw_recv(fd, &magic, 4));
    if (be32toh(magic) == NBD_SIMPLE_REPLY_MAGIC) {
        struct nbd_simple_reply r;

        r.magic = magic;
        assert_true(tu_raw_recv(fd, (char *)&r + 4, sizeof r - 4));
        out->cookie = be64toh(r.cookie);
        out->error = be32toh(r.error);
        if (is_read && out->error == 0) {
            assert_true(count <= cap);
            assert_true(tu_raw_recv(fd, buf, count));
            out->len = count;
        }
        return;
    }
    assert_int_equal(be32toh(magic), NBD_STRUCTURED_REPLY_MAGIC);
    out->structured = true;
    for (;;) {
        struct nbd_structured_reply h;
        uint32_t len;
        uint16_t type, flags;
        uint8_t *payload;

        h.magic = magic;
        assert_true(tu_raw_recv(fd, (char *)&h + 4, sizeof h - 4));
        out->cookie = be64toh(h.cookie);
        len = be32toh(h.length);
        type = be16toh(h.type);
        flags = be16toh(h.flags);
        payload = malloc(len ? len : 1);
        assert_non_null(payload);
        assert_true(len == 0 || tu_raw_recv(fd, payload, len));
        switch (type) {
        case NBD_REPLY_TYPE_OFFSET_DATA:
            assert_true(len >= 8);
            assert_true(len - 8 <= cap);
            memcpy(buf, payload + 8, len - 8);
            out->len = len - 8;
            break;
        case NBD_REPLY_TYPE_BLOCK_STATUS:
            assert_true(len >= 12 && (len - 4) % 8 == 0);
            out->nextents = (len - 4) / 8;
            memcpy(&out->ext_len, payload + 4, 4);
            memcpy(&out->ext_flags, payload + 8, 4);
            out->ext_len = be32toh(out->ext_len);
            out->ext_flags = be32toh(out->ext_flags);
            break;
        case NBD_REPLY_TYPE_ERROR: {
            uint32_t e;
            uint16_t ml;

            assert_true(len >= 6);
            memcpy(&e, payload, 4);
            memcpy(&ml, payload + 4, 2);
            out->error = be32toh(e);
            assert_true(out->error != 0);
            ml = be16toh(ml);
            assert_true(ml <= len - 6 && ml < sizeof out->msg);
            memcpy(out->msg, payload + 6, ml);
            out->msg[ml] = '\0';
            break;
        }
        case NBD_REPLY_TYPE_NONE:
            assert_int_equal(len, 0);
            break;
        default:
            fail_msg("unexpected structured reply type %u", type);
        }
        free(payload);
        if (flags & NBD_REPLY_FLAG_DONE)
            return;
        assert_true(tu_raw_recv(fd, &magic, 4));
        assert_int_equal(be32toh(magic), NBD_STRUCTURED_REPLY_MAGIC);
    }
}
