/* SPDX-License-Identifier: MIT */
/* Description: io/ backend choice: PITCOPY_IO selects, unknown names give -EINVAL, refused io_uring falls back to libaio with one line. */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef PC_COVERAGE
void __gcov_dump(void);                  /* libgcov, linked by --coverage */
#endif

#include "io/loop.h"

/* Run fn with stderr going to a buffer; returns what it wrote. */
static int capture_stderr(char *out, size_t cap, int (*fn)(void *), void *arg)
{
    FILE *tmp = tmpfile();
    int saved, r;
    size_t n;

    assert_non_null(tmp);
    fflush(stderr);
    saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), 2) >= 0);
    r = fn(arg);
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    rewind(tmp);
    n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return r;
}

struct create_args {
    const char     *backend;
    struct io_loop *l;
};

static int do_create(void *arg)
{
    struct create_args *a = arg;

    return io_loop_create(a->backend, 8, &a->l);
}

/* PITCOPY_IO=<name> with no argument selects <name>. */
static void test_fallback_env_selects(void **state)
{
    const char *name = *state;
    struct io_loop *l;

    assert_int_equal(setenv("PITCOPY_IO", name, 1), 0);
    assert_int_equal(io_loop_create(NULL, 8, &l), 0);
    unsetenv("PITCOPY_IO");
    if (strcmp(name, "uring") == 0 && io_loop_backend(l) != IO_BACKEND_URING) {
        io_loop_destroy(l);
        skip();                          /* io_uring refused here */
    }
    assert_string_equal(io_loop_backend_name(l), name);
    assert_int_equal(io_loop_backend(l),
                     strcmp(name, "aio") == 0 ? IO_BACKEND_AIO : IO_BACKEND_URING);
    io_loop_destroy(l);

    /* An explicit argument wins over the environment. */
    assert_int_equal(setenv("PITCOPY_IO", strcmp(name, "aio") == 0 ? "uring" : "aio", 1), 0);
    assert_int_equal(io_loop_create(name, 8, &l), 0);
    unsetenv("PITCOPY_IO");
    assert_string_equal(io_loop_backend_name(l), name);
    io_loop_destroy(l);
}

static void test_fallback_default_is_uring(void **state)
{
    struct io_loop *l;

    (void)state;
    unsetenv("PITCOPY_IO");
    assert_int_equal(io_loop_create(NULL, 8, &l), 0);
    if (io_loop_backend(l) != IO_BACKEND_URING) {
        io_loop_destroy(l);
        skip();
    }
    assert_string_equal(io_loop_backend_name(l), "uring");
    io_loop_destroy(l);
}

static void test_fallback_unknown_name(void **state)
{
    struct create_args a = { .backend = "bogus", .l = (void *)1 };
    char log[1024];

    (void)state;
    assert_int_equal(capture_stderr(log, sizeof log, do_create, &a), -EINVAL);
    assert_null(a.l);
    assert_non_null(strstr(log, "\"bogus\""));

    assert_int_equal(setenv("PITCOPY_IO", "io_uring", 1), 0);
    a.backend = NULL;
    assert_int_equal(capture_stderr(log, sizeof log, do_create, &a), -EINVAL);
    unsetenv("PITCOPY_IO");
    assert_non_null(strstr(log, "\"io_uring\""));
    assert_non_null(strstr(log, "PITCOPY_IO"));

    /* Depth is checked too. */
    a.backend = "aio";
    assert_int_equal(capture_stderr(log, sizeof log, do_create, &a), 0);
    io_loop_destroy(a.l);
    assert_int_equal(io_loop_create("aio", 0, &a.l), -EINVAL);
}

/*
 * With io_uring_setup refused (EPERM, as seccomp profiles in containers
 * do), asking for uring yields a working aio loop and exactly one line
 * saying why.  Done in a child, since a seccomp filter cannot be removed.
 */
static int child_refuse_uring(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
    struct io_loop *l;

    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 77;
    if (io_loop_create("uring", 8, &l) != 0)
        return 1;
    if (io_loop_backend(l) != IO_BACKEND_AIO)
        return 2;
    if (io_loop_run_once(l, false) < 0)
        return 3;
    io_loop_destroy(l);
    return 0;
}

static void test_fallback_refused_uring(void **state)
{
    static const char want[] =
        "pitcopy: io_uring unavailable (Operation not permitted), using libaio\n";
    char log[4096];
    size_t n = 0;
    ssize_t got;
    int pfd[2], status;
    pid_t pid;

    (void)state;
    assert_int_equal(pipe(pfd), 0);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        dup2(pfd[1], 2);
        int rc = child_refuse_uring();
#ifdef PC_COVERAGE
        __gcov_dump();                   /* _exit skips gcov's flush at exit */
#endif
        /* _exit: the child must not run the parent's atexit handlers. */
        _exit(rc);
    }
    close(pfd[1]);
    while (n < sizeof log - 1 && (got = read(pfd[0], log + n, sizeof log - 1 - n)) > 0)
        n += (size_t)got;
    log[n] = '\0';
    close(pfd[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    if (WEXITSTATUS(status) == 77)
        skip();                          /* no seccomp here */
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_string_equal(log, want);
}

#define BOTH(f) \
    { #f "/uring", f, NULL, NULL, (void *)"uring" }, \
    { #f "/aio",   f, NULL, NULL, (void *)"aio" }

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_fallback_env_selects),
        cmocka_unit_test(test_fallback_default_is_uring),
        cmocka_unit_test(test_fallback_unknown_name),
        cmocka_unit_test(test_fallback_refused_uring),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
