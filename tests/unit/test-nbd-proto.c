/* SPDX-License-Identifier: MIT */
/* Description: nbd/ protocol edges from a raw client: options, validation, stream sync, pipelining, disconnects, stop; both backends. */
#include <endian.h>
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engineutil.h"
#include "io/loop.h"
#include "nbdutil.h"
#include "testutil.h"

#define VSIZE (16u * TU_MIB)

struct fx {
    struct tu_eng *f;
    struct tu_nbd  n;
    struct tu_vol *v1, *v2;
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

/* The fixture with volumes v1, v2 and a server; skips a refused backend. */
static struct fx *fx_get(void **state)
{
    struct fx *x = *state;
    void *inner = x->f;

    tu_eng_get(&inner);
    x->v1 = tu_vol_new(x->f, "v1", VSIZE);
    x->v2 = tu_vol_new(x->f, "v2", VSIZE);
    tu_nbd_start(x->f, &x->n);
    return x;
}

#define BOTH(fn) \
    { #fn "/uring", fn, fx_setup, fx_teardown, (void *)"uring" }, \
    { #fn "/aio",   fn, fx_setup, fx_teardown, (void *)"aio" }

static uint32_t be32(uint32_t v) { return htobe32(v); }

/* NBD_OPT_INFO/GO data: name, then the info requests. */
static uint32_t info_data(uint8_t *buf, const char *name, uint32_t claimed_nlen)
{
    uint32_t nlen = (uint32_t)strlen(name), be = be32(claimed_nlen);
    uint16_t nreq = 0;

    memcpy(buf, &be, 4);
    memcpy(buf + 4, name, nlen);
    memcpy(buf + 4 + nlen, &nreq, 2);
    return 6 + nlen;
}

/* ------------------------------------------------------------------------ */

static void test_options(void **state)
{
    struct fx *x = fx_get(state);
    uint8_t *buf = malloc(128 * 1024);
    uint32_t len, n;
    int fd = tu_raw_connect(&x->n);
    bool seen1 = false, seen2 = false;

    assert_non_null(buf);
    tu_raw_hello(fd);

    /* LIST: every volume, then ACK; data is refused. */
    tu_raw_opt(fd, NBD_OPT_LIST, NULL, 0);
    while (tu_raw_opt_reply(fd, NBD_OPT_LIST, buf, 4096, &len) == NBD_REP_SERVER) {
        memcpy(&n, buf, 4);
        n = be32toh(n);
        assert_int_equal(n, len - 4);
        if (n == 2 && memcmp(buf + 4, "v1", 2) == 0)
            seen1 = true;
        if (n == 2 && memcmp(buf + 4, "v2", 2) == 0)
            seen2 = true;
    }
    assert_true(seen1 && seen2);
    tu_raw_opt(fd, NBD_OPT_LIST, "x", 1);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_LIST, buf, 4096, &len), NBD_REP_ERR_INVALID);

    /* INFO: unknown export, the default export, a bad name length. */
    len = info_data(buf, "nope", 4);
    tu_raw_opt(fd, NBD_OPT_INFO, buf, len);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, 4096, &len), NBD_REP_ERR_UNKNOWN);
    len = info_data(buf, "", 0);
    tu_raw_opt(fd, NBD_OPT_INFO, buf, len);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, 4096, &len), NBD_REP_ERR_UNKNOWN);
    buf[len] = '\0';
    assert_non_null(strstr((char *)buf, "no default export"));
    len = info_data(buf, "v1", 200);
    tu_raw_opt(fd, NBD_OPT_INFO, buf, len);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, 4096, &len), NBD_REP_ERR_INVALID);
    len = info_data(buf, "v1", 2);
    tu_raw_opt(fd, NBD_OPT_INFO, buf, len);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, 4096, &len), NBD_REP_INFO);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, 4096, &len), NBD_REP_INFO);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, 4096, &len), NBD_REP_ACK);

    /* Meta contexts need structured replies first. */
    {
        uint8_t q[64];
        uint32_t off = 0, v;

        v = be32(2); memcpy(q + off, &v, 4); off += 4;
        memcpy(q + off, "v1", 2); off += 2;
        v = be32(0); memcpy(q + off, &v, 4); off += 4;
        tu_raw_opt(fd, NBD_OPT_LIST_META_CONTEXT, q, off);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_LIST_META_CONTEXT, buf, 4096, &len),
                         NBD_REP_ERR_INVALID);

        tu_raw_opt(fd, NBD_OPT_STRUCTURED_REPLY, "x", 1);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, buf, 4096, &len),
                         NBD_REP_ERR_INVALID);
        tu_raw_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, buf, 4096, &len),
                         NBD_REP_ACK);
        tu_raw_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, buf, 4096, &len),
                         NBD_REP_ERR_INVALID);

        /* No query: everything there is. */
        tu_raw_opt(fd, NBD_OPT_LIST_META_CONTEXT, q, off);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_LIST_META_CONTEXT, buf, 4096, &len),
                         NBD_REP_META_CONTEXT);
        assert_int_equal(len, 4 + 15);
        assert_memory_equal(buf + 4, "base:allocation", 15);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_LIST_META_CONTEXT, buf, 4096, &len),
                         NBD_REP_ACK);
        /* A query whose length runs past the option. */
        v = be32(1); memcpy(q + off - 4, &v, 4);
        v = be32(50); memcpy(q + off, &v, 4);
        tu_raw_opt(fd, NBD_OPT_LIST_META_CONTEXT, q, off + 4);
        assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_LIST_META_CONTEXT, buf, 4096, &len),
                         NBD_REP_ERR_INVALID);
    }

    /* Unknown options, TLS. */
    tu_raw_opt(fd, 99, "abc", 3);
    assert_int_equal(tu_raw_opt_reply(fd, 99, buf, 4096, &len), NBD_REP_ERR_UNSUP);
    tu_raw_opt(fd, NBD_OPT_STARTTLS, NULL, 0);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_STARTTLS, buf, 4096, &len), NBD_REP_ERR_UNSUP);

    /* Too much option data: refused unread, and the stream stays in step. */
    memset(buf, 'z', 100 * 1024);
    tu_raw_opt(fd, NBD_OPT_INFO, buf, 100 * 1024);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_INFO, buf, 4096, &len), NBD_REP_ERR_TOO_BIG);
    tu_raw_opt(fd, NBD_OPT_LIST, NULL, 0);
    while (tu_raw_opt_reply(fd, NBD_OPT_LIST, buf, 4096, &len) == NBD_REP_SERVER)
        ;

    /* ABORT: acknowledged, then closed. */
    tu_raw_opt(fd, NBD_OPT_ABORT, NULL, 0);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_ABORT, buf, 4096, &len), NBD_REP_ACK);
    assert_true(tu_raw_closed(fd));
    close(fd);
    free(buf);
}

static void test_handshake_violations(void **state)
{
    struct fx *x = fx_get(state);
    struct nbd_greeting g;
    uint8_t buf[4096];
    uint32_t flags, len;
    int fd;

    /* Unknown client flags: the server must hang up. */
    fd = tu_raw_connect(&x->n);
    assert_true(tu_raw_recv(fd, &g, sizeof g));
    flags = be32(NBD_FLAG_C_FIXED_NEWSTYLE | 0x100);
    tu_raw_send(fd, &flags, 4);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* Bad option magic. */
    fd = tu_raw_connect(&x->n);
    tu_raw_hello(fd);
    memset(buf, 0x55, 16);
    tu_raw_send(fd, buf, 16);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* Too many options. */
    fd = tu_raw_connect(&x->n);
    tu_raw_hello(fd);
    for (int i = 0; i < 32; i++) {
        tu_raw_opt(fd, 99, NULL, 0);
        assert_int_equal(tu_raw_opt_reply(fd, 99, buf, sizeof buf, &len), NBD_REP_ERR_UNSUP);
    }
    tu_raw_opt(fd, 99, NULL, 0);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* EXPORT_NAME of an unknown export: nothing to reply, so a hang-up. */
    fd = tu_raw_connect(&x->n);
    tu_raw_hello(fd);
    tu_raw_opt(fd, NBD_OPT_EXPORT_NAME, "nope", 4);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* A non-fixed client may only send EXPORT_NAME. */
    fd = tu_raw_connect(&x->n);
    assert_true(tu_raw_recv(fd, &g, sizeof g));
    flags = 0;
    tu_raw_send(fd, &flags, 4);
    tu_raw_opt(fd, NBD_OPT_LIST, NULL, 0);
    assert_true(tu_raw_closed(fd));
    close(fd);

    /* The server is still fine. */
    fd = tu_raw_open(&x->n, "v1", true, false, NULL);
    close(fd);
}

/* EXPORT_NAME (old way in), without NO_ZEROES, then simple replies. */
static void test_export_name_simple(void **state)
{
    struct fx *x = fx_get(state);
    struct nbd_greeting g;
    struct nbd_export_name_reply r;
    uint8_t pad[124], *data = malloc(8192), *back = malloc(8192);
    uint32_t flags = be32(NBD_FLAG_C_FIXED_NEWSTYLE);
    struct tu_reply rep;
    uint64_t cookie;
    int fd = tu_raw_connect(&x->n);

    assert_true(tu_raw_recv(fd, &g, sizeof g));
    tu_raw_send(fd, &flags, 4);
    tu_raw_opt(fd, NBD_OPT_EXPORT_NAME, "v2", 2);
    assert_true(tu_raw_recv(fd, &r, sizeof r));
    assert_true(tu_raw_recv(fd, pad, sizeof pad));
    assert_true(be64toh(r.size) == VSIZE);
    assert_true(be16toh(r.eflags) & NBD_FLAG_CAN_MULTI_CONN);
    assert_false(be16toh(r.eflags) & NBD_FLAG_SEND_DF);    /* no structured replies */

    tu_fill(data, 8192, 5);
    tu_raw_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 7, 4096, 8192);
    tu_raw_send(fd, data, 8192);
    assert_int_equal(tu_raw_simple(fd, &cookie), 0);
    assert_int_equal(cookie, 7);
    memcpy(x->v2->img + 4096, data, 8192);

    tu_raw_req(fd, 0, NBD_CMD_READ, 8, 4096, 8192);
    tu_raw_reply(fd, true, 8192, back, 8192, &rep);
    assert_false(rep.structured);
    assert_int_equal(rep.error, 0);
    assert_memory_equal(back, data, 8192);

    /* A refused READ: an error and no data, and the stream goes on. */
    tu_raw_req(fd, 0, NBD_CMD_READ, 9, 100, 4096);
    tu_raw_reply(fd, true, 4096, back, 8192, &rep);
    assert_int_equal(rep.error, NBD_EINVAL);
    assert_int_equal(rep.cookie, 9);
    tu_raw_req(fd, 0, NBD_CMD_FLUSH, 10, 0, 0);
    assert_int_equal(tu_raw_simple(fd, &cookie), 0);
    /* BLOCK_STATUS was never negotiated. */
    tu_raw_req(fd, 0, NBD_CMD_BLOCK_STATUS, 11, 0, 4096);
    assert_int_equal(tu_raw_simple(fd, &cookie), NBD_EINVAL);
    tu_raw_req(fd, 0, NBD_CMD_DISC, 12, 0, 0);
    assert_true(tu_raw_closed(fd));
    close(fd);
    tu_check_all(x->f, x->v2);
    free(data);
    free(back);
}

/* Every refusal, each followed by proof that the stream is still in step. */
static void test_validation(void **state)
{
    struct fx *x = fx_get(state);
    const uint32_t big = (32u << 20) + 4096;
    uint8_t *buf = malloc(big), *back = malloc(1u << 20);
    struct tu_reply rep;
    uint64_t size, cookie = 100;
    int fd = tu_raw_open(&x->n, "v1", true, false, &size);

    assert_true(size == VSIZE);
    assert_non_null(buf);
    tu_fill(buf, 65536, 9);
    tu_raw_req(fd, 0, NBD_CMD_WRITE, 1, 65536, 65536);
    tu_raw_send(fd, buf, 65536);
    assert_int_equal(tu_raw_simple(fd, NULL), 0);
    memcpy(x->v1->img + 65536, buf, 65536);

    struct {
        const char *what;
        uint16_t flags, type;
        uint64_t off;
        uint32_t count;
        bool payload;
        uint32_t want;
    } bad[] = {
        { "unaligned read offset",   0, NBD_CMD_READ, 512, 4096, false, NBD_EINVAL },
        { "unaligned read length",   0, NBD_CMD_READ, 0, 1000, false, NBD_EINVAL },
        { "read past the end",       0, NBD_CMD_READ, VSIZE - 4096, 8192, false, NBD_EINVAL },
        { "read offset overflow",    0, NBD_CMD_READ, UINT64_MAX - 4095, 8192, false, NBD_EINVAL },
        { "zero-length read",        0, NBD_CMD_READ, 0, 0, false, NBD_EINVAL },
        { "read over 32 MiB",        0, NBD_CMD_READ, 0, (32u << 20) + 4096, false, NBD_EINVAL },
        { "read with REQ_ONE",       NBD_CMD_FLAG_REQ_ONE, NBD_CMD_READ, 0, 4096, false, NBD_EINVAL },
        { "write past the end",      0, NBD_CMD_WRITE, VSIZE, 4096, true, NBD_ENOSPC },
        { "unaligned write",         0, NBD_CMD_WRITE, 4096, 100, true, NBD_EINVAL },
        { "write over 32 MiB",       0, NBD_CMD_WRITE, 0, big, true, NBD_EINVAL },
        { "write with NO_HOLE",      NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE, 0, 4096, true, NBD_EINVAL },
        { "zeroes past the end",     0, NBD_CMD_WRITE_ZEROES, VSIZE - 4096, 8192, false, NBD_ENOSPC },
        { "fast zero",               NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 0, 4096, false, NBD_EINVAL },
        { "unaligned trim",          0, NBD_CMD_TRIM, 4097, 4096, false, NBD_EINVAL },
        { "flush with a length",     0, NBD_CMD_FLUSH, 0, 4096, false, NBD_EINVAL },
        { "cache (not advertised)",  0, NBD_CMD_CACHE, 0, 4096, false, NBD_EINVAL },
        { "unknown command",         0, 42, 0, 4096, false, NBD_EINVAL },
        { "unknown flag",            1u << 9, NBD_CMD_FLUSH, 0, 0, false, NBD_EINVAL },
        { "block status, no meta",   0, NBD_CMD_BLOCK_STATUS, 0, 4096, false, NBD_EINVAL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        printf("refusal: %s\n", bad[i].what);
        tu_raw_req(fd, bad[i].flags, bad[i].type, cookie, bad[i].off, bad[i].count);
        if (bad[i].payload) {
            memset(buf, 0xee, bad[i].count);
            tu_raw_send(fd, buf, bad[i].count);
        }
        tu_raw_reply(fd, bad[i].type == NBD_CMD_READ, bad[i].count, back, 1u << 20, &rep);
        assert_int_equal(rep.cookie, cookie);
        assert_int_equal(rep.error, bad[i].want);
        assert_true(rep.structured);        /* errors come with a message */
        cookie++;
        /* In step: a read right after returns the data written above. */
        tu_raw_req(fd, 0, NBD_CMD_READ, cookie, 65536, 65536);
        tu_raw_reply(fd, true, 65536, back, 1u << 20, &rep);
        assert_int_equal(rep.cookie, cookie);
        assert_int_equal(rep.error, 0);
        assert_int_equal(rep.len, 65536);
        assert_memory_equal(back, x->v1->img + 65536, 65536);
        cookie++;
    }
    close(fd);
    tu_check_all(x->f, x->v1);      /* none of the refused writes landed */
    free(buf);
    free(back);
}

static void test_commands(void **state)
{
    struct fx *x = fx_get(state);
    uint8_t *buf = malloc(4u << 20), *back = malloc(4u << 20);
    struct tu_reply rep;
    int fd = tu_raw_open(&x->n, "v1", true, true, NULL);

    /* Data everywhere first, so zeroes are visible. */
    tu_write(x->f, x->v1, 0, VSIZE);

    /* WRITE_ZEROES across several chunks, FUA, NO_HOLE. */
    tu_raw_req(fd, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE_ZEROES, 1,
               TU_MIB - 4096, 3 * TU_MIB + 8192);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    memset(x->v1->img + TU_MIB - 4096, 0, 3 * TU_MIB + 8192);

    /* TRIM makes a hole, which reads as zeros (PC_IO_ZERO). */
    tu_raw_req(fd, 0, NBD_CMD_TRIM, 2, 8 * TU_MIB, TU_MIB);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    memset(x->v1->img + 8 * TU_MIB, 0, TU_MIB);
    /* So does WRITE_ZEROES without NO_HOLE, FUA or not. */
    tu_raw_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE_ZEROES, 20, 9 * TU_MIB + 4096, 8192);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    memset(x->v1->img + 9 * TU_MIB + 4096, 0, 8192);

    /* A 4 MiB FUA write, read back in one structured chunk (DF too). */
    tu_fill(buf, 4u << 20, 77);
    tu_raw_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 3, 10 * TU_MIB, 4u << 20);
    tu_raw_send(fd, buf, 4u << 20);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    memcpy(x->v1->img + 10 * TU_MIB, buf, 4u << 20);
    tu_raw_req(fd, NBD_CMD_FLAG_DF, NBD_CMD_READ, 4, 10 * TU_MIB, 4u << 20);
    tu_raw_reply(fd, true, 4u << 20, back, 4u << 20, &rep);
    assert_int_equal(rep.error, 0);
    assert_int_equal(rep.len, 4u << 20);
    assert_memory_equal(back, buf, 4u << 20);

    tu_raw_req(fd, 0, NBD_CMD_FLUSH, 5, 0, 0);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);

    /* BLOCK_STATUS: data (NO_HOLE zeroes stay allocated), then the hole
     * TRIM made; with and without REQ_ONE. */
    tu_raw_req(fd, 0, NBD_CMD_BLOCK_STATUS, 6, 4096, 2 * TU_MIB);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    assert_int_equal(rep.nextents, 1);
    assert_int_equal(rep.ext_len, 2 * TU_MIB);
    assert_int_equal(rep.ext_flags, 0);
    tu_raw_req(fd, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 7, 0, VSIZE);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.nextents, 1);
    assert_int_equal(rep.ext_len, 8 * TU_MIB);
    assert_int_equal(rep.ext_flags, 0);
    tu_raw_req(fd, 0, NBD_CMD_BLOCK_STATUS, 21, 8 * TU_MIB, 2 * TU_MIB);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    assert_int_equal(rep.nextents, 4);                  /* hole, data, hole, data */
    assert_int_equal(rep.ext_len, TU_MIB);
    assert_int_equal(rep.ext_flags, NBD_STATE_HOLE | NBD_STATE_ZERO);
    tu_raw_req(fd, 0, NBD_CMD_BLOCK_STATUS, 8, VSIZE - 4096, 8192);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, NBD_EINVAL);

    tu_raw_req(fd, 0, NBD_CMD_DISC, 9, 0, 0);
    assert_true(tu_raw_closed(fd));
    close(fd);
    tu_check_all(x->f, x->v1);
    free(buf);
    free(back);
}

/* base:allocation chosen for another export does not carry over (H3). */
static void test_meta_other_export(void **state)
{
    struct fx *x = fx_get(state);
    uint8_t q[64], buf[4096];
    uint32_t off = 0, v, len;
    struct tu_reply rep;
    int fd = tu_raw_connect(&x->n);

    tu_raw_hello(fd);
    tu_raw_opt(fd, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_STRUCTURED_REPLY, buf, sizeof buf, &len),
                     NBD_REP_ACK);
    v = be32(2); memcpy(q + off, &v, 4); off += 4;
    memcpy(q + off, "v2", 2); off += 2;
    v = be32(1); memcpy(q + off, &v, 4); off += 4;
    v = be32(15); memcpy(q + off, &v, 4); off += 4;
    memcpy(q + off, "base:allocation", 15); off += 15;
    tu_raw_opt(fd, NBD_OPT_SET_META_CONTEXT, q, off);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                     NBD_REP_META_CONTEXT);
    assert_int_equal(tu_raw_opt_reply(fd, NBD_OPT_SET_META_CONTEXT, buf, sizeof buf, &len),
                     NBD_REP_ACK);
    tu_raw_go(fd, "v1", false, false);
    tu_raw_req(fd, 0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, NBD_EINVAL);
    close(fd);
}

/* More requests in flight than a connection has slots, replies read by
 * another thread: all answered once, data right. */
struct pipe_ctx {
    int      fd;
    unsigned n;
    uint8_t *data;
};

static void *pipe_sender(void *arg)
{
    struct pipe_ctx *p = arg;

    for (unsigned i = 0; i < p->n; i++) {
        uint64_t off = (uint64_t)(i % 512) * 8192;

        if (i % 3 == 0) {
            tu_raw_req(p->fd, 0, NBD_CMD_READ, i, off, 8192);
        } else {
            tu_raw_req(p->fd, i % 7 == 0 ? NBD_CMD_FLAG_FUA : 0, NBD_CMD_WRITE, i, off, 8192);
            tu_raw_send(p->fd, p->data + off, 8192);
        }
    }
    return NULL;
}

static void test_pipeline(void **state)
{
    enum { N = 3000 };
    struct fx *x = fx_get(state);
    struct pipe_ctx p = { .n = N };
    uint8_t *seen = calloc(N, 1), back[8192];
    pthread_t th;

    p.data = malloc(512 * 8192);
    tu_fill(p.data, 512 * 8192, 3);
    /* Reads see the same bytes whether they run before or after a write. */
    tu_write(x->f, x->v1, 0, 512 * 8192);
    memcpy(p.data, x->v1->img, 512 * 8192);
    p.fd = tu_raw_open(&x->n, "v1", true, false, NULL);
    assert_int_equal(pthread_create(&th, NULL, pipe_sender, &p), 0);
    for (unsigned k = 0; k < N; k++) {
        struct tu_reply rep;
        uint64_t c;

        /* Which request this answers is only known from the cookie: read
         * the magic-dependent reply generically. */
        tu_raw_reply(p.fd, false, 0, back, sizeof back, &rep);
        c = rep.cookie;
        assert_true(c < N);
        assert_false(seen[c]);
        seen[c] = 1;
        assert_int_equal(rep.error, 0);
        if (c % 3 == 0) {
            assert_int_equal(rep.len, 8192);
            assert_memory_equal(back, p.data + (c % 512) * 8192, 8192);
        }
    }
    pthread_join(th, NULL);
    close(p.fd);
    tu_check_all(x->f, x->v1);
    free(seen);
    free(p.data);
}

static void test_bad_magic(void **state)
{
    struct fx *x = fx_get(state);
    uint8_t junk[28];
    struct tu_reply rep;
    int good = tu_raw_open(&x->n, "v1", true, false, NULL);
    int bad = tu_raw_open(&x->n, "v1", true, false, NULL);

    memset(junk, 0x42, sizeof junk);
    tu_raw_send(bad, junk, sizeof junk);
    assert_true(tu_raw_closed(bad));
    close(bad);
    tu_raw_req(good, 0, NBD_CMD_FLUSH, 1, 0, 0);
    tu_raw_reply(good, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    close(good);
}

/* Clients that vanish mid-request: the server frees them and goes on. */
static void test_disconnects(void **state)
{
    struct fx *x = fx_get(state);
    uint8_t *buf = calloc(1, 1u << 20);
    struct tu_reply rep;
    int fd;

    for (int i = 0; i < 5; i++) {
        /* Half a WRITE payload. */
        fd = tu_raw_open(&x->n, "v1", true, false, NULL);
        tu_raw_req(fd, 0, NBD_CMD_WRITE, 1, 0, 1u << 20);
        tu_raw_send(fd, buf, 300000);
        close(fd);
        /* Half a header. */
        fd = tu_raw_open(&x->n, "v1", true, false, NULL);
        tu_raw_send(fd, buf, 10);
        close(fd);
        /* Big reads in flight, nobody left to answer. */
        fd = tu_raw_open(&x->n, "v1", false, false, NULL);
        for (int k = 0; k < 8; k++)
            tu_raw_req(fd, 0, NBD_CMD_READ, k, 0, 8u << 20);
        close(fd);
        /* Gone in the middle of an option. */
        fd = tu_raw_connect(&x->n);
        tu_raw_hello(fd);
        tu_raw_send(fd, buf, 7);
        close(fd);
    }
    fd = tu_raw_open(&x->n, "v1", true, false, NULL);
    tu_raw_req(fd, 0, NBD_CMD_READ, 1, 0, 4096);
    tu_raw_reply(fd, true, 4096, buf, 1u << 20, &rep);
    assert_int_equal(rep.error, 0);
    close(fd);
    tu_check_all(x->f, x->v1);      /* the half write wrote nothing */
    free(buf);
}

/* nbd_server_stop with clients in every phase returns and closes them all. */
static void test_stop_with_clients(void **state)
{
    struct fx *x = fx_get(state);
    int hs = tu_raw_connect(&x->n);
    int idle = tu_raw_open(&x->n, "v1", true, false, NULL);
    int busy = tu_raw_open(&x->n, "v2", true, false, NULL);
    uint64_t t0;

    tu_raw_hello(hs);
    for (int k = 0; k < 16; k++)
        tu_raw_req(busy, 0, NBD_CMD_READ, k, 0, 1u << 20);
    /* Let the busy one's requests reach the server before the stop. */
    tu_raw_req(busy, 0, NBD_CMD_FLUSH, 99, 0, 0);
    t0 = io_now_ns();
    tu_nbd_stop(&x->n);
    assert_true(io_now_ns() - t0 < 10ull * 1000000000u);
    assert_true(tu_raw_closed(hs));
    assert_true(tu_raw_closed(idle));
    assert_true(tu_raw_closed(busy));   /* after any replies it still had */
    close(hs);
    close(idle);
    close(busy);
    /* The volumes are no longer held: they can be closed. */
    assert_int_equal(pc_volume_close(x->v1->v, NULL), 0);
    assert_int_equal(pc_volume_close(x->v2->v, NULL), 0);
}

/* Many connections at once, each doing a little. */
static void test_many_connections(void **state)
{
    enum { N = 200 };
    struct fx *x = fx_get(state);
    int fds[N];
    uint8_t buf[4096];
    struct tu_reply rep;

    for (int i = 0; i < N; i++)
        fds[i] = tu_raw_open(&x->n, i % 2 ? "v1" : "v2", i % 3 != 0, false, NULL);
    assert_int_equal(nbd_server_connections(x->n.s), N);
    for (int i = 0; i < N; i++)
        tu_raw_req(fds[i], 0, NBD_CMD_READ, (uint64_t)i, (uint64_t)i * 4096, 4096);
    for (int i = 0; i < N; i++) {
        tu_raw_reply(fds[i], true, 4096, buf, sizeof buf, &rep);
        assert_int_equal(rep.error, 0);
        assert_int_equal(rep.cookie, (uint64_t)i);
        close(fds[i]);
    }
    for (int tries = 0; nbd_server_connections(x->n.s) > 0 && tries < 1000; tries++)
        usleep(10000);
    assert_int_equal(nbd_server_connections(x->n.s), 0);
}

/* A target offline (its mapping prepared, not started): every I/O fails
 * with EIO, some of them inside pc_io_submit itself; replies still come,
 * in step, and the connection goes on. */
static void test_offline_target(void **state)
{
    struct fx *x = fx_get(state);
    struct pc_map *m = tu_map(x->f, "m", x->v1, x->v2, 64 * 1024, 0, 0);
    struct pc_error err = { 0 };
    uint8_t *buf = calloc(1, 1u << 20);
    struct tu_reply rep;
    int fd = tu_raw_open(&x->n, "v2", true, false, NULL);
    int simple = tu_raw_open(&x->n, "v2", false, false, NULL);

    if (pc_map_prepare(m, &err) != 0)
        fail_msg("prepare: %s", err.msg);
    tu_check_offline(x->f, x->v2);
    for (int k = 0; k < 20; k++) {
        tu_raw_req(fd, 0, NBD_CMD_READ, 1, 0, 65536);
        tu_raw_reply(fd, true, 65536, buf, 1u << 20, &rep);
        assert_int_equal(rep.error, NBD_EIO);
        tu_raw_req(fd, 0, NBD_CMD_WRITE, 2, 0, 8192);
        tu_raw_send(fd, buf, 8192);
        tu_raw_reply(fd, false, 0, NULL, 0, &rep);
        assert_int_equal(rep.error, NBD_EIO);
        tu_raw_req(fd, 0, NBD_CMD_WRITE_ZEROES, 3, 0, 4u << 20);
        tu_raw_reply(fd, false, 0, NULL, 0, &rep);
        assert_int_equal(rep.error, NBD_EIO);
        tu_raw_req(simple, 0, NBD_CMD_READ, 4, 4096, 4096);
        tu_raw_reply(simple, true, 4096, buf, 1u << 20, &rep);
        assert_int_equal(rep.error, NBD_EIO);
        assert_int_equal(rep.cookie, 4);
    }
    /* Started, the target reads as the source. */
    tu_start(m, x->v1, x->v2);
    tu_raw_req(fd, 0, NBD_CMD_READ, 5, 0, 65536);
    tu_raw_reply(fd, true, 65536, buf, 1u << 20, &rep);
    assert_int_equal(rep.error, 0);
    assert_memory_equal(buf, x->v2->img, 65536);
    close(fd);
    close(simple);
    free(buf);
}

/* One connection on a given fd (stdio_fd: the fuzzing entry), served
 * without any listener. */
static void test_stdio(void **state)
{
    struct fx *x = fx_get(state);
    struct nbd_server_opts o = { .stdio_fd = -1 };
    struct nbd_server *s;
    struct pc_error err = { 0 };
    struct timeval tv = { .tv_sec = 10 };
    struct tu_reply rep;
    uint8_t buf[4096];
    int sv[2];

    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    o.stdio_fd = sv[0];                     /* the server's now */
    if (nbd_server_start(x->f->e, &o, &s, &err) != 0)
        fail_msg("nbd_server_start: %s", err.msg);
    tu_raw_hello(sv[1]);
    tu_raw_go(sv[1], "v2", true, true);
    tu_raw_req(sv[1], 0, NBD_CMD_READ, 5, 0, 4096);
    tu_raw_reply(sv[1], true, 4096, buf, sizeof buf, &rep);
    assert_int_equal(rep.error, 0);
    assert_int_equal(rep.cookie, 5);
    tu_raw_req(sv[1], 0, NBD_CMD_DISC, 6, 0, 0);
    assert_true(tu_raw_closed(sv[1]));
    for (int tries = 0; nbd_server_connections(s) > 0 && tries < 1000; tries++)
        usleep(10000);
    assert_int_equal(nbd_server_connections(s), 0);
    nbd_server_stop(s);
    close(sv[1]);
}

/* A TCP listener on 127.0.0.1. */
static void test_tcp(void **state)
{
    struct fx *x = fx_get(state);
    struct nbd_server_opts o = { .stdio_fd = -1, .tcp_port = NULL };
    struct nbd_server *s = NULL;
    struct pc_error err = { 0 };
    struct timeval tv = { .tv_sec = 10 };
    struct sockaddr_in sa = { .sin_family = AF_INET };
    struct tu_reply rep;
    uint8_t buf[4096];
    char port[16];
    int fd, r = -1;

    /* A free port: try a few at random. */
    for (int i = 0; i < 20 && r != 0; i++) {
        snprintf(port, sizeof port, "%d", 20000 + (int)(io_now_ns() / 1000 % 40000));
        o.tcp_port = port;
        r = nbd_server_start(x->f->e, &o, &s, &err);
        if (r != 0 && r != -EADDRINUSE)
            fail_msg("nbd_server_start: %s", err.msg);
    }
    assert_int_equal(r, 0);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    sa.sin_port = htons((uint16_t)atoi(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    tu_raw_hello(fd);
    tu_raw_go(fd, "v1", true, false);
    tu_raw_req(fd, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 1, 0, 4096);
    memset(buf, 0x42, sizeof buf);
    tu_raw_send(fd, buf, sizeof buf);
    tu_raw_reply(fd, false, 0, NULL, 0, &rep);
    assert_int_equal(rep.error, 0);
    memset(x->v1->img, 0x42, 4096);
    close(fd);
    nbd_server_stop(s);
    tu_check_all(x->f, x->v1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_options),
        BOTH(test_handshake_violations),
        BOTH(test_export_name_simple),
        BOTH(test_validation),
        BOTH(test_commands),
        BOTH(test_meta_other_export),
        BOTH(test_pipeline),
        BOTH(test_bad_magic),
        BOTH(test_disconnects),
        BOTH(test_stop_with_clients),
        BOTH(test_many_connections),
        BOTH(test_offline_target),
        BOTH(test_stdio),
        BOTH(test_tcp),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
