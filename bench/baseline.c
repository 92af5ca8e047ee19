/* SPDX-License-Identifier: MIT */
/*
 * bench/baseline.c — run fio and qemu-img as children; read fio's JSON.
 *
 * Children
 *   Forked from a process whose engine threads are running, so between fork
 *   and exec the child calls only async-signal-safe functions: the program's
 *   path is resolved before the fork.  The child's stdout goes to a pipe
 *   (fio's JSON) or to our stderr (qemu-img): the harness's own stdout
 *   carries nothing but result lines.
 *
 * JSON
 *   fio's report is read in place with a small navigator (skip a value, find
 *   a key in an object, index an array), not a general parser: the harness
 *   needs a dozen numbers from a document fio's own tests keep stable.  Any
 *   malformed input makes a lookup fail, never read past the end (the
 *   buffer is NUL-terminated and every step checks for it).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/baseline.h"

volatile sig_atomic_t baseline_child;

/* ------------------------------------------------------------------------
 * Children. */

int baseline_find_in_path(const char *prog, char *out, size_t outlen)
{
    if (strchr(prog, '/')) {
        snprintf(out, outlen, "%s", prog);
        return access(out, X_OK) == 0 ? 0 : -ENOENT;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n && (size_t)snprintf(out, outlen, "%.*s/%s", (int)n, path, prog) < outlen &&
            access(out, X_OK) == 0)
            return 0;
        path += n + (end != NULL);
    }
    return -ENOENT;
}

/*
 * Run argv; with out, capture its stdout (NUL-terminated, malloc'd).
 * Returns 0 and the exit status in *status, or -errno.
 */
static int child_run(char *const argv[], char **out, int *status)
{
    char path[PATH_MAX];
    int pfd[2] = { -1, -1 };
    size_t len = 0, cap = 0;
    char *buf = NULL;
    pid_t parent = getpid(), pid;
    int r = baseline_find_in_path(argv[0], path, sizeof path);

    if (r < 0)
        return r;
    if (out && pipe2(pfd, O_CLOEXEC) < 0)
        return -errno;
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        r = -errno;
        if (out) {
            close(pfd[0]);
            close(pfd[1]);
        }
        return r;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        dup2(out ? pfd[1] : STDERR_FILENO, STDOUT_FILENO);
        execv(path, argv);
        _exit(127);
    }
    baseline_child = pid;
    if (out) {
        close(pfd[1]);
        for (;;) {
            if (cap - len < 4096) {
                char *nb = realloc(buf, cap ? cap * 2 : 65536);
                if (!nb) {
                    r = -ENOMEM;
                    break;
                }
                buf = nb;
                cap = cap ? cap * 2 : 65536;
            }
            ssize_t n = read(pfd[0], buf + len, cap - len - 1);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            len += (size_t)n;
        }
        close(pfd[0]);
    }
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR) {
            if (!r)
                r = -errno;
            break;
        }
    }
    baseline_child = 0;
    if (out) {
        if (r == 0 && buf) {
            buf[len] = 0;
            *out = buf;
        } else {
            free(buf);
        }
    }
    return r;
}

int baseline_probe(const char *prog)
{
    char *const argv[] = { (char *)prog, "--version", NULL };
    char *out = NULL;
    int status = 0;
    int r = child_run(argv, &out, &status);
    free(out);
    if (r < 0)
        return r;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ENOEXEC;
}

/* ------------------------------------------------------------------------
 * JSON navigation (read in place). */

static const char *js_ws(const char *p)
{
    while (p && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* p at a string's opening quote; returns just past the closing quote. */
static const char *js_skip_string(const char *p)
{
    for (p++; *p; p++) {
        if (*p == '\\') {
            if (!*++p)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* p at a value; returns just past it, or NULL if malformed. */
static const char *js_skip(const char *p)
{
    int depth = 0;
    p = js_ws(p);
    if (!p || !*p)
        return NULL;
    do {
        switch (*p) {
        case '"':
            p = js_skip_string(p);
            if (!p)
                return NULL;
            break;
        case '{':
        case '[':
            depth++;
            p++;
            break;
        case '}':
        case ']':
            if (--depth < 0)
                return NULL;
            p++;
            break;
        case 0:
            return NULL;
        default:
            if (depth == 0) {   /* a scalar: number, true, false, null */
                while (*p && !strchr(",}] \t\r\n", *p))
                    p++;
                return p;
            }
            p++;
            break;
        }
    } while (depth > 0);
    return p;
}

/* obj at '{': the value of key, or NULL. */
static const char *js_get(const char *obj, const char *key)
{
    size_t klen = strlen(key);
    const char *p = js_ws(obj);
    if (!p || *p != '{')
        return NULL;
    p = js_ws(p + 1);
    while (p && *p == '"') {
        const char *k = p + 1, *kend = js_skip_string(p);
        if (!kend)
            return NULL;
        p = js_ws(kend);
        if (*p != ':')
            return NULL;
        p = js_ws(p + 1);
        if ((size_t)(kend - 1 - k) == klen && memcmp(k, key, klen) == 0)
            return p;
        p = js_ws(js_skip(p));
        if (!p || *p != ',')
            return NULL;
        p = js_ws(p + 1);
    }
    return NULL;
}

/* arr at '[': element i, or NULL. */
static const char *js_at(const char *arr, unsigned i)
{
    const char *p = js_ws(arr);
    if (!p || *p != '[')
        return NULL;
    p = js_ws(p + 1);
    if (*p == ']')
        return NULL;
    for (unsigned n = 0; p; n++) {
        if (n == i)
            return p;
        p = js_ws(js_skip(p));
        if (!p || *p != ',')
            return NULL;
        p = js_ws(p + 1);
    }
    return NULL;
}

static double js_num(const char *p, double def)
{
    char *end;
    if (!p)
        return def;
    double v = strtod(p, &end);
    return end == p ? def : v;
}

static void js_str(const char *p, char *out, size_t outlen)
{
    out[0] = 0;
    if (!p || *p != '"')
        return;
    const char *end = js_skip_string(p);
    if (!end)
        return;
    snprintf(out, outlen, "%.*s", (int)(end - p - 2), p + 1);
}

static void fio_dir_read(const char *d, struct fio_dir *out)
{
    memset(out, 0, sizeof *out);
    if (!d)
        return;
    out->io_bytes = (uint64_t)js_num(js_get(d, "io_bytes"), 0);
    out->total_ios = (uint64_t)js_num(js_get(d, "total_ios"), 0);
    out->iops = js_num(js_get(d, "iops"), 0);
    out->bw_bytes = js_num(js_get(d, "bw_bytes"), 0);
    out->runtime_s = js_num(js_get(d, "runtime"), 0) / 1e3;
    out->lat_us = js_num(js_get(js_get(d, "lat_ns"), "mean"), 0) / 1e3;
}

/* ------------------------------------------------------------------------
 * fio, qemu-img. */

const char *fio_ioengine(const char *pc_backend)
{
    return pc_backend && strcmp(pc_backend, "aio") == 0 ? "libaio" : "io_uring";
}

int fio_run(char *const argv[], struct fio_result *r, char *msg, size_t msglen)
{
    char *args[64];
    unsigned n = 0;
    char *out = NULL;
    int status = 0, rc;

    memset(r, 0, sizeof *r);
    args[n++] = argv[0];
    args[n++] = "--output-format=json";
    for (unsigned i = 1; argv[i]; i++) {
        if (n + 2 > sizeof args / sizeof args[0]) {
            snprintf(msg, msglen, "fio: too many arguments");
            return -E2BIG;
        }
        args[n++] = argv[i];
    }
    args[n] = NULL;
    rc = child_run(args, &out, &status);
    if (rc < 0) {
        snprintf(msg, msglen, "cannot run fio: %s", strerror(-rc));
        return rc;
    }
    const char *doc = strchr(out, '{');
    const char *jobs = doc ? js_get(doc, "jobs") : NULL;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !jobs) {
        snprintf(msg, msglen, "fio failed (%s %d)%s",
                 WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                 jobs ? "" : " and printed no JSON report; see its messages above");
        free(out);
        return -EIO;
    }
    for (unsigned i = 0; i < FIO_MAX_JOBS; i++) {
        const char *j = js_at(jobs, i);
        if (!j)
            break;
        js_str(js_get(j, "jobname"), r->jobs[i].name, sizeof r->jobs[i].name);
        r->jobs[i].error = (int)js_num(js_get(j, "error"), 0);
        fio_dir_read(js_get(j, "read"), &r->jobs[i].read);
        fio_dir_read(js_get(j, "write"), &r->jobs[i].write);
        r->njobs = i + 1;
        if (r->jobs[i].error) {
            snprintf(msg, msglen, "fio job %s failed: %s", r->jobs[i].name,
                     strerror(r->jobs[i].error));
            free(out);
            return -r->jobs[i].error;
        }
    }
    free(out);
    if (r->njobs == 0) {
        snprintf(msg, msglen, "fio's JSON report lists no jobs");
        return -EIO;
    }
    return 0;
}

int qemu_img_convert(const char *src, const char *dst, double *secs, char *msg, size_t msglen)
{
    char *const argv[] = { "qemu-img", "convert", "-f", "raw", "-O", "raw", "-t", "none",
                           "-T", "none", "-W", "-m", "16", (char *)src, (char *)dst, NULL };
    struct timespec a, b;
    int status = 0, r;

    clock_gettime(CLOCK_MONOTONIC, &a);
    r = child_run(argv, NULL, &status);
    clock_gettime(CLOCK_MONOTONIC, &b);
    if (r < 0) {
        snprintf(msg, msglen, "cannot run qemu-img: %s", strerror(-r));
        return r;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(msg, msglen, "qemu-img convert %s %s failed (%s %d); see its messages above",
                 src, dst, WIFEXITED(status) ? "exit status" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        return -EIO;
    }
    *secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    return 0;
}
