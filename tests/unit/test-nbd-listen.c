/* SPDX-License-Identifier: MIT */
/* Description: nbd_server_start's Unix socket: a dead server's socket is taken over, a live server's or a non-socket file is refused with its reason and left alone; no listener at all is refused. */
#include <endian.h>
#include <errno.h>
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
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "engineutil.h"
#include "nbdutil.h"
#include "testutil.h"

/* The engine fixture's socket path, as tu_nbd_start would use it. */
static void sock_path(struct tu_eng *f, struct tu_nbd *n)
{
    snprintf(n->sock, sizeof n->sock, "%s/nbd.sock", f->dir);
}

static int start(struct tu_eng *f, const char *path, struct nbd_server **s,
                 struct pc_error *err)
{
    struct nbd_server_opts o = { .unix_path = path, .stdio_fd = -1 };

    memset(err, 0, sizeof *err);
    return nbd_server_start(f->e, &o, s, err);
}

/* A server answers at n->sock: a connection gets the greeting. */
static void expect_serving(const struct tu_nbd *n)
{
    int fd = tu_raw_connect(n);

    tu_raw_hello(fd);
    close(fd);
}

/* What a server that died leaves: a socket file nobody listens on. */
static void make_stale(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    close(fd);                              /* the file stays */
}

static void test_no_listener(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct nbd_server_opts o = { .stdio_fd = -1 };
    struct nbd_server *s = (void *)1;
    struct pc_error err = { 0 };

    assert_int_equal(nbd_server_start(f->e, &o, &s, &err), -EINVAL);
    assert_null(s);
    assert_int_equal(err.code, -EINVAL);
    assert_string_equal(err.msg, "the NBD server needs a Unix socket path, a TCP port or an fd");
}

static void test_stale_replaced(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_nbd n = { 0 };
    struct pc_error err;
    struct stat st;

    sock_path(f, &n);
    make_stale(n.sock);
    assert_int_equal(start(f, n.sock, &n.s, &err), 0);
    expect_serving(&n);
    assert_int_equal(stat(n.sock, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    tu_nbd_stop(&n);
    assert_int_equal(access(n.sock, F_OK), -1);     /* removed at stop */
}

static void test_live_refused(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_nbd n = { 0 };
    struct nbd_server *second = (void *)1;
    struct pc_error err;
    char want[700];

    sock_path(f, &n);
    assert_int_equal(start(f, n.sock, &n.s, &err), 0);
    assert_int_equal(start(f, n.sock, &second, &err), -EADDRINUSE);
    assert_null(second);
    snprintf(want, sizeof want, "NBD socket %s is in use by another server; "
             "stop it or choose another path", n.sock);
    assert_string_equal(err.msg, want);
    expect_serving(&n);                     /* the first one's socket is intact */
    tu_nbd_stop(&n);
}

static void test_not_a_socket(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct tu_nbd n = { 0 };
    struct nbd_server *s = (void *)1;
    struct pc_error err;
    struct stat st;
    char want[700];
    int fd;

    sock_path(f, &n);
    fd = open(n.sock, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "data", 4), 4);
    close(fd);
    assert_int_equal(start(f, n.sock, &s, &err), -EEXIST);
    assert_null(s);
    snprintf(want, sizeof want, "%s exists and is not a socket; move it aside", n.sock);
    assert_string_equal(err.msg, want);
    assert_int_equal(stat(n.sock, &st), 0);
    assert_true(S_ISREG(st.st_mode) && st.st_size == 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_no_listener),
        TU_BOTH(test_stale_replaced),
        TU_BOTH(test_live_refused),
        TU_BOTH(test_not_a_socket),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
