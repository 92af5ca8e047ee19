/* SPDX-License-Identifier: MIT */
/*
 * ctl/client.c — the client side of the control protocol (the CLI's).
 *
 * Role
 *   Connects to the daemon's control socket, sends one request line, reads
 *   one reply line (up to CTL_REPLY_MAX) within a timeout, and splits it into
 *   a result or the daemon's error.
 *
 * Invariants
 *   K1  Replies come in request order (P1), so a reply whose id is not the
 *       request's means the stream is out of step: the client is broken and
 *       makes no further calls.
 *
 * Context
 *   Any thread; one call at a time per client.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl/protocol.h"

struct ctl_client {
    int      fd;
    char    *path;
    bool     broken;
    int64_t  next_id;
    char    *buf;       /* bytes received past the last reply */
    size_t   have, cap;
};

static int client_fail(struct pc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int client_fail(struct pc_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return err->code = code;
}

int ctl_client_connect(const char *path, struct ctl_client **out, struct pc_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return client_fail(err, -ENAMETOOLONG, "cannot reach pitcopy serve at %s: the path is "
                           "longer than %zu bytes", path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return client_fail(err, -errno, "cannot create a socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        int r = -errno;
        close(fd);
        return client_fail(err, r, "cannot reach pitcopy serve at %s: %s (is it running?)",
                           path, strerror(-r));
    }
    struct ctl_client *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        close(fd);
        return client_fail(err, -ENOMEM, "out of memory");
    }
    c->fd = fd;
    c->next_id = 1;
    *out = c;
    return 0;
}

bool ctl_client_broken(const struct ctl_client *c)
{
    return c->broken;
}

void ctl_client_close(struct ctl_client *c)
{
    if (!c)
        return;
    close(c->fd);
    free(c->buf);
    free(c->path);
    free(c);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_line(struct ctl_client *c, const char *text, struct pc_error *err)
{
    size_t n = strlen(text);
    while (n) {
        ssize_t w = send(c->fd, text, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return client_fail(err, -errno, "cannot send to pitcopy serve at %s: %s",
                               c->path, strerror(errno));
        }
        text += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Read up to a newline; *len excludes it.  The line stays in c->buf. */
static int recv_line(struct ctl_client *c, int timeout_ms, size_t *len, struct pc_error *err)
{
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        char *nl = c->have ? memchr(c->buf, '\n', c->have) : NULL;
        if (nl) {
            *len = (size_t)(nl - c->buf);
            return 0;
        }
        if (c->have == CTL_REPLY_MAX)
            return client_fail(err, -E2BIG, "the reply from pitcopy serve is longer than %u "
                               "bytes", CTL_REPLY_MAX);
        if (c->cap - c->have < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 64 << 10;
            if (cap > CTL_REPLY_MAX)
                cap = CTL_REPLY_MAX;
            char *b = realloc(c->buf, cap);
            if (!b)
                return client_fail(err, -ENOMEM, "out of memory");
            c->buf = b;
            c->cap = cap;
        }
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return client_fail(err, -ETIMEDOUT, "pitcopy serve at %s did not answer "
                                   "within %.1f s", c->path, timeout_ms / 1000.0);
            wait = (int)left;
        }
        struct pollfd p = { .fd = c->fd, .events = POLLIN };
        int r = poll(&p, 1, wait);
        if (r < 0 && errno != EINTR)
            return client_fail(err, -errno, "poll: %s", strerror(errno));
        if (r <= 0)
            continue;
        ssize_t n = recv(c->fd, c->buf + c->have, c->cap - c->have, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return client_fail(err, -errno, "lost pitcopy serve at %s: %s", c->path,
                               strerror(errno));
        if (n == 0)
            return client_fail(err, -ECONNRESET, "pitcopy serve at %s closed the connection "
                               "without answering", c->path);
        c->have += (size_t)n;
    }
}

int ctl_client_call(struct ctl_client *c, const char *method, json_t *params,
                    int timeout_ms, json_t **result, struct pc_error *err)
{
    json_error_t jerr;
    size_t len = 0;
    int r;

    *result = NULL;
    if (c->broken) {
        json_decref(params);
        return client_fail(err, -EPIPE, "the connection to pitcopy serve is broken");
    }
    int64_t id = c->next_id++;
    json_t *req = json_pack("{s:I, s:s}", "id", (json_int_t)id, "method", method);
    if (params)
        json_object_set_new(req, "params", params);
    char *text = json_dumps(req, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(req);
    if (!text)
        return client_fail(err, -ENOMEM, "out of memory");
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return client_fail(err, -ENOMEM, "out of memory");
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    r = send_line(c, line, err);
    free(line);
    if (r == 0)
        r = recv_line(c, timeout_ms, &len, err);
    if (r < 0) {
        c->broken = true;
        return r;
    }
    json_t *rep = json_loadb(c->buf, len, 0, &jerr);
    c->have -= len + 1;
    memmove(c->buf, c->buf + len + 1, c->have);
    json_t *rid = json_object_get(rep, "id");
    json_t *res = json_object_get(rep, "result"), *e = json_object_get(rep, "error");
    if (!json_is_object(rep) || (!res && !json_is_object(e))) {
        c->broken = true;
        json_decref(rep);
        return client_fail(err, -EPROTO, "pitcopy serve at %s sent a reply that is not a "
                           "result or an error", c->path);
    }
    if (!json_is_integer(rid) || json_integer_value(rid) != id) {
        /* K1 — except an error the daemon could not pin to a request. */
        if (!(json_is_null(rid) && e)) {
            c->broken = true;
            json_decref(rep);
            return client_fail(err, -EPROTO, "pitcopy serve at %s answered request %lld "
                               "out of order", c->path, (long long)id);
        }
    }
    if (res) {
        *result = json_incref(res);
        json_decref(rep);
        return 0;
    }
    json_t *code = json_object_get(e, "code"), *msg = json_object_get(e, "message");
    r = json_is_integer(code) && json_integer_value(code) < 0 &&
        json_integer_value(code) > -4096 ? (int)json_integer_value(code) : -EPROTO;
    client_fail(err, r, "%s", json_is_string(msg) ? json_string_value(msg) : "(no message)");
    json_decref(rep);
    return r;
}
