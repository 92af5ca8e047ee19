/* SPDX-License-Identifier: MIT */
/* Description: the NBD server holds at most 1024 connections: the next is closed before its greeting while the others keep working, and a freed place is taken again. */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "engineutil.h"
#include "nbdutil.h"
#include "testutil.h"

#define LIMIT 1024u                 /* nbd/internal.h NBD_MAX_CONNS */

/* Each connection costs the server two descriptors (socket, dup) and this
 * process one for its end: raise the soft limit, skip if the hard one is
 * too low (an environment, not the server). */
static bool enough_fds(void)
{
    struct rlimit rl;
    rlim_t want = 4 * LIMIT + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return false;
    if (rl.rlim_cur >= want)
        return true;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        return false;
    rl.rlim_cur = want;
    return setrlimit(RLIMIT_NOFILE, &rl) == 0;
}

static void wait_connections(struct tu_nbd *n, unsigned want)
{
    for (int tries = 0; nbd_server_connections(n->s) != want && tries < 1000; tries++)
        usleep(10000);
    assert_int_equal(nbd_server_connections(n->s), want);
}

static void test_limit(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_nbd n = { 0 };
    struct tu_reply rep;
    uint8_t buf[4096];
    int *fds = calloc(LIMIT, sizeof *fds), over;

    if (!enough_fds()) {
        printf("RLIMIT_NOFILE is below %u here: skipping\n", 4 * LIMIT + 256);
        skip();
    }
    assert_non_null(fds);
    tu_vol_new(f, "v1", 4 * TU_MIB);
    tu_nbd_start(f, &n);

    /* Every one of them greeted: counted, not refused. */
    for (unsigned i = 0; i < LIMIT; i++) {
        fds[i] = tu_raw_connect(&n);
        tu_raw_hello(fds[i]);
    }
    wait_connections(&n, LIMIT);

    /* One more: accepted by the kernel, closed by the server unanswered. */
    over = tu_raw_connect(&n);
    assert_false(tu_raw_recv(over, buf, 18));
    close(over);
    wait_connections(&n, LIMIT);        /* it counted only while refused */

    /* Those already in go on: the last one reads. */
    tu_raw_go(fds[LIMIT - 1], "v1", true, false);
    tu_raw_req(fds[LIMIT - 1], 0, NBD_CMD_READ, 7, 0, 4096);
    tu_raw_reply(fds[LIMIT - 1], true, 4096, buf, sizeof buf, &rep);
    assert_int_equal(rep.error, 0);
    assert_int_equal(rep.cookie, 7);

    /* A place freed is a place for the next client. */
    close(fds[0]);
    wait_connections(&n, LIMIT - 1);
    fds[0] = tu_raw_open(&n, "v1", true, false, NULL);
    wait_connections(&n, LIMIT);

    for (unsigned i = 0; i < LIMIT; i++)
        close(fds[i]);
    wait_connections(&n, 0);
    tu_nbd_stop(&n);
    free(fds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
