/* SPDX-License-Identifier: MIT */
/* Description: nbd_server_start's Unix socket: a dead server's socket is taken over, a live server's or a non-socket file is refused with its reason and left alone; no listener at all is refused; out of descriptors, start fails naming what it could not create and leaks nothing. */
#include <endian.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "engineutil.h"
#include "nbdutil.h"
#include "testutil.h"

/* Descriptors open in this process now. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n - 1;                           /* not opendir's own */
}

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

/* ------------------------------------------------------------------------
 * Out of descriptors at start.  RLIMIT_NOFILE is lowered and every free
 * number below it filled with /dev/null, then `spare` of them closed. */

struct fill {
    struct rlimit saved;
    int           fds[256];
    int           n;
};

static void fill_fds(struct fill *fl, int spare)
{
    struct rlimit rl;

    assert_int_equal(getrlimit(RLIMIT_NOFILE, &fl->saved), 0);
    rl = fl->saved;
    rl.rlim_cur = (rlim_t)(open_fds() + 128);
    assert_true(rl.rlim_cur <= fl->saved.rlim_cur);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    for (fl->n = 0; fl->n < 256; fl->n++) {
        fl->fds[fl->n] = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fl->fds[fl->n] < 0) {
            assert_int_equal(errno, EMFILE);
            break;
        }
    }
    assert_true(fl->n >= spare && fl->n < 256);
    while (spare-- > 0)
        close(fl->fds[--fl->n]);
}

static void unfill_fds(struct fill *fl)
{
    while (fl->n > 0)
        close(fl->fds[--fl->n]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &fl->saved), 0);
}

static void test_out_of_fds(void **state)
{
    struct tu_eng *f = tu_eng_get(state);
    struct nbd_server_opts o = { .stdio_fd = -1, .tcp_port = "1" };
    struct nbd_server *s;
    struct tu_nbd n = { 0 };
    struct pc_error err;
    struct fill fl;
    int before = open_fds();

    sock_path(f, &n);
    /* None free: the first thing the server needs is its stop eventfd. */
    fill_fds(&fl, 0);
    assert_int_equal(start(f, n.sock, &s, &err), -EMFILE);
    unfill_fds(&fl);
    assert_string_equal(err.msg, "cannot create an eventfd for the NBD server: "
                        "Too many open files");
    assert_int_equal(open_fds(), before);           /* nothing leaked */

    /* One: the eventfd, then no socket for the Unix listener... */
    fill_fds(&fl, 1);
    assert_int_equal(start(f, n.sock, &s, &err), -EMFILE);
    unfill_fds(&fl);
    assert_string_equal(err.msg, "cannot create the NBD socket: Too many open files");
    assert_int_equal(open_fds(), before);
    assert_int_equal(access(n.sock, F_OK), -1);

    /* ...nor for TCP (port 1: never reached). */
    fill_fds(&fl, 1);
    memset(&err, 0, sizeof err);
    assert_int_equal(nbd_server_start(f->e, &o, &s, &err), -EMFILE);
    unfill_fds(&fl);
    assert_string_equal(err.msg, "cannot listen on 127.0.0.1 port 1: Too many open files");
    assert_int_equal(open_fds(), before);

    /* With descriptors again, the same start works. */
    assert_int_equal(start(f, n.sock, &n.s, &err), 0);
    expect_serving(&n);
    tu_nbd_stop(&n);
    assert_int_equal(open_fds(), before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        TU_BOTH(test_no_listener),
        TU_BOTH(test_stale_replaced),
        TU_BOTH(test_live_refused),
        TU_BOTH(test_not_a_socket),
        TU_BOTH(test_out_of_fds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
