/* SPDX-License-Identifier: MIT */
/* Description: an I/O error under an NBD request reaches the client as the protocol's value from nbd_errno_to_wire's table, with the command and the real error in a structured reply's message; the next request succeeds. */
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
#include "io/fault.h"
#include "nbdutil.h"
#include "testutil.h"

#define VSIZE (4u * TU_MIB)

/* errno → NBD error: the protocol's own values pass through, the
 * kinds of "no space" become ENOSPC, read-only becomes EPERM, anything
 * else is an I/O error. */
static const struct {
    int      err;
    uint32_t wire;
} table[] = {
    { EPERM, NBD_EPERM },       { EROFS, NBD_EPERM },
    { EIO, NBD_EIO },           { ENOMEM, NBD_ENOMEM },
    { EINVAL, NBD_EINVAL },     { ENOSPC, NBD_ENOSPC },
    { EDQUOT, NBD_ENOSPC },     { EFBIG, NBD_ENOSPC },
    { EOVERFLOW, NBD_EOVERFLOW }, { ENOTSUP, NBD_ENOTSUP },
    { ESHUTDOWN, NBD_ESHUTDOWN }, { ETIMEDOUT, NBD_EIO },
    { EBADF, NBD_EIO },
};

/* The commands and the I/O each one's failure is injected into. */
static const struct {
    uint16_t    cmd;
    uint16_t    flags;
    const char *name;
    const char *op;
} cmds[] = {
    { NBD_CMD_READ, 0, "NBD_CMD_READ", "read" },
    { NBD_CMD_WRITE, 0, "NBD_CMD_WRITE", "write" },
    { NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_NO_HOLE, "NBD_CMD_WRITE_ZEROES", "write" },
    { NBD_CMD_TRIM, 0, "NBD_CMD_TRIM", "write" },          /* a punch: a write of zeros */
    { NBD_CMD_FLUSH, 0, "NBD_CMD_FLUSH", "sync" },
};

static void request(int fd, uint16_t cmd, uint16_t flags, uint64_t cookie, uint8_t *buf,
                    struct tu_reply *rep)
{
    bool flush = cmd == NBD_CMD_FLUSH;

    tu_raw_req(fd, flags, cmd, cookie, flush ? 0 : 8192, flush ? 0 : 4096);
    if (cmd == NBD_CMD_WRITE)
        tu_raw_send(fd, buf, 4096);
    tu_raw_reply(fd, cmd == NBD_CMD_READ, 4096, buf, 4096, rep);
    assert_int_equal(rep->cookie, cookie);
}

static void test_errno_table(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *v = tu_vol_new(f, "v1", VSIZE);
    struct tu_nbd n = { 0 };
    struct tu_reply rep;
    uint8_t buf[4096];
    char rule[4200], want[160];
    uint64_t cookie = 1;
    int sfd, pfd;

    tu_nbd_start(f, &n);
    sfd = tu_raw_open(&n, "v1", true, false, NULL);     /* structured replies */
    pfd = tu_raw_open(&n, "v1", false, false, NULL);    /* simple replies */
    memset(buf, 0, sizeof buf);
    for (size_t c = 0; c < sizeof cmds / sizeof cmds[0]; c++) {
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
            for (int structured = 0; structured < 2; structured++) {
                int fd = structured ? sfd : pfd;
                /* From fallocate these mean "no holes in this file": the
                 * server writes zeros instead (transmission.c), so they are
                 * no failure of a TRIM.  (And the volume would stop punching.) */
                if (cmds[c].cmd == NBD_CMD_TRIM &&
                    (table[i].err == EINVAL || table[i].err == ENOTSUP))
                    continue;

                printf("%s, %s, %s replies\n", cmds[c].name, strerror(table[i].err),
                       structured ? "structured" : "simple");
                /* The next one request of that kind on v1's file fails. */
                snprintf(rule, sizeof rule, "%s:%s:%d:0:1", v->path, cmds[c].op,
                         table[i].err);
                assert_int_equal(io_fault_add(rule), 0);
                request(fd, cmds[c].cmd, cmds[c].flags, cookie++, buf, &rep);
                io_fault_clear();
                assert_int_equal(rep.error, table[i].wire);
                assert_int_equal(rep.structured, structured);
                if (structured) {
                    /* ESHUTDOWN is the stopping server's own (transmission.c). */
                    snprintf(want, sizeof want, "%s: %s", cmds[c].name,
                             table[i].err == ESHUTDOWN ? "the server is shutting down"
                                                       : strerror(table[i].err));
                    assert_string_equal(rep.msg, want);
                }
                /* One failure, not a broken connection. */
                request(fd, cmds[c].cmd, cmds[c].flags, cookie++, buf, &rep);
                assert_int_equal(rep.error, 0);
            }
        }
    }
    close(sfd);
    close(pfd);
    tu_nbd_stop(&n);
    tu_check_all(f, v);         /* the zeroes and writes were of zeroes */
}

/* A file that cannot punch holes (fallocate says EOPNOTSUPP): TRIM and
 * WRITE_ZEROES still succeed, writing zeros instead, and read back as zeros. */
static void test_zeroing_without_holes(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_vol *v = tu_vol_new(f, "v1", VSIZE);
    struct tu_nbd n = { 0 };
    struct tu_reply rep;
    uint8_t buf[4096];
    char rule[4200];
    uint64_t cookie = 1;
    static const uint16_t zcmds[] = { NBD_CMD_TRIM, NBD_CMD_WRITE_ZEROES };

    tu_nbd_start(f, &n);
    int fd = tu_raw_open(&n, "v1", true, false, NULL);
    for (size_t c = 0; c < 2; c++) {
        memset(buf, 0xa5, sizeof buf);
        request(fd, NBD_CMD_WRITE, 0, cookie++, buf, &rep);
        assert_int_equal(rep.error, 0);
        /* The first punch of v1's file is refused as unsupported; the
         * volume remembers, so the second command writes zeros at once. */
        if (c == 0) {
            snprintf(rule, sizeof rule, "%s:write:%d:0:1", v->path, EOPNOTSUPP);
            assert_int_equal(io_fault_add(rule), 0);
        }
        request(fd, zcmds[c], 0, cookie++, buf, &rep);
        io_fault_clear();
        if (rep.error)
            fail_msg("zeroing command %zu: error %u: %s", c, rep.error, rep.msg);
        request(fd, NBD_CMD_READ, 0, cookie++, buf, &rep);
        assert_int_equal(rep.error, 0);
        for (size_t i = 0; i < sizeof buf; i++)
            assert_int_equal(buf[i], 0);
    }
    close(fd);
    tu_nbd_stop(&n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_errno_table),
        TU_BOTH(test_zeroing_without_holes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
