/* SPDX-License-Identifier: MIT */
/*
 * mgmt/hooks.c — quiesce hooks: run a user's command with a timeout.
 *
 * Role
 *   A session's pre-flash and post-flash commands run here: /bin/sh -c CMD
 *   in a new session (its own process group), stdin /dev/null, stdout and
 *   stderr into a pipe whose tail is kept for the history.  After timeout
 *   seconds the whole group is killed (SIGTERM, then SIGKILL a second
 *   later), so a hung quiesce script cannot hold the flash, or the
 *   daemon, for ever.
 *
 * Invariants
 *   H1  The child starts with the signal mask and dispositions of a fresh
 *       process: the daemon blocks SIGTERM/SIGINT in every thread and
 *       ignores SIGPIPE, and a script must not inherit either.
 *   H2  The child inherits no descriptor but 0, 1 and 2 (no control or NBD
 *       socket, no lock): posix_spawn with close-from 3.
 *   H3  hook_run returns only once the child has been reaped; output a
 *       grandchild keeps writing after the child exits is not waited for.
 *
 * Context
 *   Any thread; blocks up to the timeout (plus a second).  posix_spawn:
 *   safe in a multithreaded process, unlike fork and then work.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/internal.h"

extern char **environ;

#define HOOK_KILL_GRACE_MS 1000

int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Keep the last bytes of output, newlines as "; ", in r->output. */
static void keep_tail(struct hook_result *r, char *tail, size_t *have, const char *p, size_t n)
{
    const size_t cap = sizeof r->output - 1;
    for (size_t i = 0; i < n; i++) {
        if (*have == cap) {
            memmove(tail, tail + cap / 2, cap - cap / 2);
            *have = cap - cap / 2;
        }
        tail[(*have)++] = p[i];
    }
}

static void tidy_output(struct hook_result *r, char *tail, size_t have)
{
    size_t o = 0;
    while (have && (tail[have - 1] == '\n' || tail[have - 1] == ' '))
        have--;
    for (size_t i = 0; i < have && o + 3 < sizeof r->output; i++) {
        char ch = tail[i];
        if (ch == '\n') {
            r->output[o++] = ';';
            r->output[o++] = ' ';
        } else if ((unsigned char)ch >= 0x20 && ch != 0x7f) {
            r->output[o++] = ch;
        }
    }
    r->output[o] = '\0';
}

int hook_run(const char *cmd, const char *const *env, int timeout_s, struct hook_result *r,
             struct pc_error *err)
{
    int pfd[2] = { -1, -1 };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, dfl;
    char **envp = NULL;
    size_t nenv = 0, nextra = 0;
    pid_t pid;
    int rc;

    memset(r, 0, sizeof *r);
    r->rc = -1;
    while (environ[nenv])
        nenv++;
    while (env && env[nextra])
        nextra++;
    envp = calloc(nenv + nextra + 1, sizeof *envp);
    if (!envp)
        return mgmt_fail(err, -ENOMEM, "out of memory starting a hook");
    /* Ours last, and the daemon's of the same name left out. */
    size_t k = 0;
    for (size_t i = 0; i < nenv; i++) {
        bool shadowed = false;
        for (size_t j = 0; j < nextra && !shadowed; j++) {
            size_t n = strcspn(env[j], "=");
            shadowed = strncmp(environ[i], env[j], n + 1) == 0;
        }
        if (!shadowed)
            envp[k++] = environ[i];
    }
    for (size_t j = 0; j < nextra; j++)
        envp[k++] = (char *)env[j];

    if (pipe2(pfd, O_CLOEXEC) < 0) {
        free(envp);
        return mgmt_fail(err, -errno, "cannot start the hook: pipe: %s", strerror(errno));
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pfd[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);        /* H2 */
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigfillset(&dfl);
    posix_spawnattr_setsigmask(&at, &none);                   /* H1 */
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                  POSIX_SPAWN_SETSID);
    char *argv[] = { "/bin/sh", "-c", (char *)cmd, NULL };
    r->start_mono_ns = mono_ns();
    rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    close(pfd[1]);
    if (rc != 0) {
        close(pfd[0]);
        r->end_mono_ns = mono_ns();
        return mgmt_fail(err, -rc, "cannot start the hook: %s", strerror(rc));
    }
    r->started = true;

    char tail[sizeof r->output];
    size_t have = 0;
    int64_t deadline = r->start_mono_ns + (int64_t)timeout_s * 1000000000;
    int64_t kill_at = 0;
    bool pipe_open = true;
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        int64_t now = mono_ns();
        if (!r->timed_out && now >= deadline) {
            r->timed_out = true;
            kill(-pid, SIGTERM);
            kill_at = now + (int64_t)HOOK_KILL_GRACE_MS * 1000000;
        } else if (kill_at && now >= kill_at) {
            kill(-pid, SIGKILL);
            kill_at = 0;
        }
        /* Poll the output, or sleep a little once it closed (H3). */
        struct pollfd p = { .fd = pipe_open ? pfd[0] : -1, .events = POLLIN };
        int n = poll(&p, 1, 20);
        if (n > 0 && pipe_open) {
            char buf[4096];
            ssize_t got = read(pfd[0], buf, sizeof buf);
            if (got > 0)
                keep_tail(r, tail, &have, buf, (size_t)got);
            else if (got == 0 || (errno != EINTR && errno != EAGAIN))
                pipe_open = false;
        }
    }
    /* What is already in the pipe, without waiting for grandchildren. */
    fcntl(pfd[0], F_SETFL, O_NONBLOCK);
    for (int i = 0; pipe_open && i < 64; i++) {
        char buf[4096];
        ssize_t got = read(pfd[0], buf, sizeof buf);
        if (got <= 0)
            break;
        keep_tail(r, tail, &have, buf, (size_t)got);
    }
    close(pfd[0]);
    if (r->timed_out)
        kill(-pid, SIGKILL);     /* whatever of the group is left */
    r->end_mono_ns = mono_ns();
    tidy_output(r, tail, have);

    if (r->timed_out)
        return mgmt_fail(err, -ETIMEDOUT, "did not finish within %d s and was killed%s%s",
                         timeout_s, r->output[0] ? "; output: " : "", r->output);
    if (WIFSIGNALED(status))
        return mgmt_fail(err, -EINTR, "was killed by signal %d%s%s", WTERMSIG(status),
                         r->output[0] ? "; output: " : "", r->output);
    r->rc = WEXITSTATUS(status);
    if (r->rc != 0)
        return mgmt_fail(err, -ECANCELED, "exited with status %d%s%s", r->rc,
                         r->output[0] ? "; output: " : "", r->output);
    return 0;
}
