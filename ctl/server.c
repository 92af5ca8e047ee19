/* SPDX-License-Identifier: MIT */
/*
 * ctl/server.c — the control socket inside `pitcopy serve`.
 *
 * Role
 *   An accept thread takes connections on a Unix socket (mode 0600) and
 *   gives each its own thread (P3: at most CTL_MAX_CONNS), so a map.wait
 *   blocks only the connection that asked.  A connection thread reads one
 *   line at a time (at most CTL_LINE_MAX), parses it, checks the envelope
 *   (id, method, params), validates the params against the method's table
 *   (methods.c), and only then runs the method; every request line gets one
 *   reply line (P1).  Requests that change something are logged when they
 *   fail; methods log their own successes.
 *
 * Invariants
 *   P1-P3 (protocol.h).
 *   C1  A connection slot is reused only after its thread was joined; drain
 *       joins the accept thread first, so no slot is taken after it.
 *   C2  The wake pipe is written once, at drain, and never read: from then
 *       on every poll that includes it returns at once.
 *
 * Locking
 *   ctl_server.lock guards conns[] and active.  Never held across a method.
 *
 * Context
 *   ctl_server_start/drain/destroy: the daemon's main thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ctl/internal.h"

struct ctl_conn {
    struct ctl_server *s;
    pthread_t          th;
    int                fd;
    bool               used;   /* a thread was started and not joined yet */
    bool               done;   /* its thread has finished */
};

struct ctl_server {
    struct pc_engine  *e;
    struct ctl_state  *st;
    char              *path;
    char              *nbd_unix, *nbd_tcp;
    const char        *nbd_tls;          /* a literal: not freed */
    unsigned         (*nbd_connections)(void *arg);
    void              *nbd_arg;
    struct mgmt       *mgmt;
    int                lfd;
    int                wake[2];          /* C2 */
    pthread_t          accept_th;
    bool               accept_joined;
    atomic_bool        stopping;
    pthread_mutex_t    lock;
    pthread_cond_t     cond;             /* a connection finished */
    unsigned           active;
    struct ctl_conn    conns[CTL_MAX_CONNS];
};

struct mgmt *ctl_server_mgmt(struct ctl_server *s)
{
    return s->mgmt;
}

bool ctl_server_stopping(const struct ctl_server *s)
{
    return atomic_load(&s->stopping);
}

json_t *ctl_server_status(struct ctl_server *s)
{
    struct ctl_state *st = s->st;
    struct timespec now;
    json_t *states = json_object(), *skv = json_array(), *skm = json_array();
    unsigned nvol = 0, nmap = 0;
    size_t i;
    json_t *e;

    for (int k = PC_MAP_IDLE_OR_COPIED; k <= PC_MAP_SUSPENDED; k++)
        json_object_set_new(states, pc_map_state_name((enum pc_map_state)k), json_integer(0));
    clock_gettime(CLOCK_MONOTONIC, &now);
    pthread_mutex_lock(&st->lock);
    for (struct ctl_vol *v = st->vols; v; v = v->next)
        nvol++;
    for (struct ctl_map *m = st->maps; m; m = m->next) {
        nmap++;
        if (m->deleting)
            continue;
        struct pc_map_info info;
        pc_map_info(m->m, &info);
        const char *name = pc_map_state_name(info.state);
        json_object_set_new(states, name,
                            json_integer(json_integer_value(json_object_get(states, name)) + 1));
    }
    json_array_foreach(st->skipped_vols, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        json_array_append_new(skv, json_pack("{s:s?, s:O?}", "name", n, "reason",
                                             n ? json_object_get(st->skipped_why, n) : NULL));
    }
    json_array_foreach(st->skipped_maps, i, e) {
        const char *n = json_string_value(json_object_get(e, "name"));
        json_array_append_new(skm, json_pack("{s:s?, s:O?}", "name", n, "reason",
                                             n ? json_object_get(st->skipped_why, n) : NULL));
    }
    pthread_mutex_unlock(&st->lock);
    pthread_mutex_lock(&s->lock);
    unsigned conns = s->active;
    pthread_mutex_unlock(&s->lock);

    json_t *j = json_pack("{s:s, s:i, s:I, s:s, s:s, s:s?, s:s?, s:s?, s:s, s:i, s:i, s:i, s:o}",
                          "version", PITCOPY_VERSION, "pid", (int)getpid(),
                          "uptime_s", (json_int_t)(now.tv_sec - st->started.tv_sec),
                          "state_dir", st->dir, "control", s->path,
                          "nbd_unix", s->nbd_unix, "nbd_tcp", s->nbd_tcp, "nbd_tls", s->nbd_tls,
                          "io_backend", pc_engine_io_backend(s->e),
                          "workers", (int)pc_engine_workers(s->e),
                          "volumes", (int)nvol, "mappings", (int)nmap, "states", states);
    json_object_set_new(j, "nbd_connections",
                        s->nbd_connections ? json_integer(s->nbd_connections(s->nbd_arg))
                                           : json_null());
    json_object_set_new(j, "control_connections", json_integer(conns));
    json_object_set_new(j, "skipped_volumes", skv);
    json_object_set_new(j, "skipped_mappings", skm);
    json_object_set_new(j, "mgmt", s->mgmt ? mgmt_status(s->mgmt) : json_null());
    return j;
}

/* ------------------------------------------------------------------------
 * One connection. */

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int reply(int fd, json_t *id, json_t *result, const struct pc_error *err)
{
    json_t *j = json_object();
    json_object_set(j, "id", id ? id : json_null());
    if (result)
        json_object_set(j, "result", result);
    else
        json_object_set_new(j, "error", json_pack("{s:i, s:s}", "code", err->code,
                                                  "message", err->msg));
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(j);
    size_t n = text ? strlen(text) : 0;
    char *line = text ? realloc(text, n + 2) : NULL;
    if (!line) {
        free(text);
        return -ENOMEM;
    }
    line[n] = '\n';
    int r = send_all(fd, line, n + 1);
    free(line);
    return r;
}

static int reply_error(int fd, json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int reply_error(int fd, json_t *id, int code, const char *fmt, ...)
{
    struct pc_error err = { .code = code };
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof err.msg, fmt, ap);
    va_end(ap);
    return reply(fd, id, NULL, &err);
}

/* One request line (without its newline). */
static int conn_handle_line(struct ctl_server *s, int fd, const char *line, size_t len,
                            bool *warned)
{
    json_error_t jerr;
    json_t *req, *id = NULL, *params;
    const struct ctl_method *m;
    const char *key;
    json_t *v;
    int r;

    req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!req) {
        if (!*warned)
            ctl_log("control: bad request (not JSON: %s); replying with an error", jerr.text);
        *warned = true;
        return reply_error(fd, NULL, -EBADMSG, "the request is not valid JSON: %s "
                           "(column %d)", jerr.text, jerr.column);
    }
    if (!json_is_object(req)) {
        r = reply_error(fd, NULL, -EINVAL, "a request must be a JSON object with "
                        "\"id\", \"method\" and \"params\"");
        goto out;
    }
    id = json_object_get(req, "id");
    if (id && !json_is_integer(id)) {
        r = reply_error(fd, NULL, -EINVAL, "the request's \"id\" must be an integer");
        goto out;
    }
    json_object_foreach(req, key, v) {
        if (strcmp(key, "id") && strcmp(key, "method") && strcmp(key, "params") &&
            strcmp(key, "jsonrpc")) {
            r = reply_error(fd, id, -EINVAL, "unknown request field '%.64s' (a request "
                            "has \"id\", \"method\" and \"params\")", key);
            goto out;
        }
    }
    v = json_object_get(req, "method");
    if (!json_is_string(v)) {
        r = reply_error(fd, id, -EINVAL, "the request's \"method\" must be a string");
        goto out;
    }
    m = ctl_method_find(json_string_value(v));
    if (!m) {
        r = reply_error(fd, id, -ENOSYS, "unknown method '%.64s'", json_string_value(v));
        goto out;
    }
    params = json_object_get(req, "params");
    struct ctl_call c = { .method = m->name, .srv = s, .st = s->st, .fd = fd };
    r = ctl_params_validate(m, params, &c.err);
    if (r < 0) {
        if (!*warned)
            ctl_log("control: bad request (%s); replying with an error", c.err.msg);
        *warned = true;
    } else {
        c.params = params ? params : json_object();
        if (!params)
            json_object_set_new(req, "params", c.params);   /* freed with req */
        r = m->fn(&c);
    }
    if (r < 0 && m->changes && c.params) {
        const char *what = json_string_value(json_object_get(params, "name"));
        ctl_log("%s%s%s refused: %s", m->name, what ? " " : "", what ? what : "", c.err.msg);
    }
    if (r == -ECONNRESET && !c.result) {
        r = -ECONNRESET;   /* nobody to answer */
        goto out;
    }
    r = reply(fd, id, r < 0 ? NULL : c.result, &c.err);
    json_decref(c.result);
out:
    json_decref(req);
    return r;
}

int ctl_server_call(void *server, const char *method, json_t *params, json_t **result,
                    struct pc_error *err)
{
    struct ctl_server *s = server;
    const struct ctl_method *m = ctl_method_find(method);
    *result = NULL;
    if (!m) {
        json_decref(params);
        return ctl_error_set(err, -ENOSYS, "unknown method '%.64s'", method);
    }
    struct ctl_call c = { .method = m->name, .srv = s, .st = s->st, .fd = -1 };
    int r = ctl_params_validate(m, params, &c.err);
    if (r == 0) {
        c.params = params ? params : json_object();
        params = c.params;
        r = m->fn(&c);
    }
    json_decref(params);
    if (r < 0) {
        if (err)
            *err = c.err;
        json_decref(c.result);
        return r;
    }
    *result = c.result;
    return 0;
}

static bool all_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

/* Read lines from fd and answer each until the client leaves or the server
 * drains (C2); then close fd. */
static void conn_serve(struct ctl_server *s, int fd)
{
    char *buf = malloc(CTL_LINE_MAX);
    size_t have = 0, start = 0;     /* buf[start, have): not yet handled */
    bool discarding = false, warned = false, eof = false;

    while (buf && !eof) {
        char *line = buf + start;
        char *nl = memchr(line, '\n', have - start);
        if (!nl && start > 0) {
            /* The partial line to the front, once per read: moving the
             * rest after every line cost a full buffer of short lines its
             * length squared. */
            memmove(buf, line, have - start);
            have -= start;
            start = 0;
            line = buf;
        }
        if (!nl && have == CTL_LINE_MAX) {
            discarding = true;      /* P2: drop it up to its newline */
            have = 0;
            continue;
        }
        if (!nl) {
            struct pollfd p[2] = { { .fd = fd, .events = POLLIN },
                                   { .fd = s->wake[0], .events = POLLIN } };
            if (poll(p, 2, -1) < 0) {
                if (errno == EINTR)
                    continue;
                break;
            }
            if (p[1].revents)
                break;              /* draining: between requests, so stop here */
            ssize_t n = recv(fd, buf + have, CTL_LINE_MAX - have, 0);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                if (have == 0 || discarding)
                    break;
                /* A last line without its newline still gets an answer. */
                eof = true;
                nl = buf + have;
            } else {
                have += (size_t)n;
                continue;
            }
        }
        size_t len = (size_t)(nl - line);
        int r = 0;
        if (discarding) {
            discarding = false;
            r = reply_error(fd, NULL, -E2BIG, "the request is longer than %u bytes",
                            CTL_LINE_MAX - 1);
        } else if (!all_blank(line, len)) {
            r = conn_handle_line(s, fd, line, len, &warned);
        }
        if (r < 0)
            break;
        if (!eof)
            start += len + 1;
    }
    free(buf);
    close(fd);
}

static void *conn_main(void *arg)
{
    struct ctl_conn *cn = arg;
    struct ctl_server *s = cn->s;

    conn_serve(s, cn->fd);
    pthread_mutex_lock(&s->lock);
    cn->done = true;
    s->active--;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

void ctl_server_serve_fd(struct ctl_server *s, int fd)
{
    conn_serve(s, fd);
}

/* ------------------------------------------------------------------------
 * Making way for a socket. */

int ctl_socket_clear(const char *what, const char *path, struct pc_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat sb;
    int fd, r;

    if (lstat(path, &sb) < 0)
        return 0;
    if (!S_ISSOCK(sb.st_mode))
        return ctl_error_set(err, -EEXIST, "%s %s exists and is not a socket; move it aside",
                             what, path);
    if (strlen(path) >= sizeof sa.sun_path)
        return ctl_error_set(err, -ENAMETOOLONG, "%s path %s is longer than %zu bytes",
                             what, path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    /* A state directory's lock says nothing about a path outside it
     * (--nbd unix:PATH, --control): only a server that answers does.
     * Non-blocking, so a server with a full backlog cannot hold us up
     * (EAGAIN: it is there). */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return ctl_error_set(err, -errno, "cannot create a socket to check %s %s: %s",
                             what, path, strerror(errno));
    r = connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ? -errno : 0;
    close(fd);
    switch (r) {
    case -ECONNREFUSED:                 /* a dead server's */
        if (unlink(path) < 0 && errno != ENOENT)
            return ctl_error_set(err, -errno, "cannot remove the stale %s %s: %s",
                                 what, path, strerror(errno));
        return 0;
    case -ENOENT:                       /* gone meanwhile */
        return 0;
    case 0:
    case -EAGAIN:
    case -EINPROGRESS:
        return ctl_error_set(err, -EADDRINUSE, "%s %s is in use by another server; "
                             "stop it or choose another path", what, path);
    default:
        return ctl_error_set(err, r, "cannot tell whether a server listens on %s %s: %s",
                             what, path, strerror(-r));
    }
}

/* ------------------------------------------------------------------------
 * Accepting. */

static void reap_locked(struct ctl_server *s)
{
    for (unsigned i = 0; i < CTL_MAX_CONNS; i++) {
        if (s->conns[i].used && s->conns[i].done) {
            pthread_join(s->conns[i].th, NULL);   /* C1 */
            s->conns[i].used = false;
        }
    }
}

static void *accept_main(void *arg)
{
    struct ctl_server *s = arg;
    for (;;) {
        struct pollfd p[2] = { { .fd = s->lfd, .events = POLLIN },
                               { .fd = s->wake[0], .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            ctl_log("control: poll failed: %s; no longer accepting", strerror(errno));
            return NULL;
        }
        if (p[1].revents)
            return NULL;
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED) {
                ctl_log("control: accept failed: %s", strerror(errno));
                usleep(100000);     /* EMFILE and friends: do not spin */
            }
            continue;
        }
        /* A reader that never reads must not hold a thread for ever. */
        struct timeval tv = { .tv_sec = 10 };
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

        pthread_mutex_lock(&s->lock);
        reap_locked(s);
        struct ctl_conn *cn = NULL;
        for (unsigned i = 0; i < CTL_MAX_CONNS && !cn; i++)
            if (!s->conns[i].used)
                cn = &s->conns[i];
        if (cn) {
            *cn = (struct ctl_conn){ .s = s, .fd = fd, .used = true };
            if (pthread_create(&cn->th, NULL, conn_main, cn) == 0) {
                s->active++;
            } else {
                cn->used = false;
                cn = NULL;
            }
        }
        pthread_mutex_unlock(&s->lock);
        if (!cn) {
            reply_error(fd, NULL, -EAGAIN, "pitcopy serve has too many control connections "
                        "(%u); try again later", CTL_MAX_CONNS);
            close(fd);
        }
    }
}

int ctl_server_start(struct pc_engine *e, const struct ctl_server_opts *o,
                     struct ctl_server **out, struct pc_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    bool bound = false;
    int r;

    if (strlen(o->path) >= sizeof sa.sun_path) {
        return ctl_error_set(err, -ENAMETOOLONG, "control socket path %s is longer than %zu "
                             "bytes; use a shorter state directory", o->path,
                             sizeof sa.sun_path - 1);
    }
    struct ctl_server *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(o->path))) {
        free(s);
        return ctl_error_set(err, -ENOMEM, "out of memory");
    }
    s->e = e;
    s->st = o->state;
    s->nbd_unix = o->nbd_unix ? strdup(o->nbd_unix) : NULL;
    s->nbd_tcp = o->nbd_tcp ? strdup(o->nbd_tcp) : NULL;
    s->nbd_tls = o->nbd_tls;
    s->nbd_connections = o->nbd_connections;
    s->nbd_arg = o->nbd_arg;
    s->mgmt = o->mgmt;
    s->lfd = s->wake[0] = s->wake[1] = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    atomic_init(&s->stopping, false);

    if ((r = ctl_socket_clear("control socket", o->path, err)) < 0)
        goto fail;
    if (pipe2(s->wake, O_CLOEXEC) < 0)
        goto fail_errno;
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->lfd < 0)
        goto fail_errno;
    memcpy(sa.sun_path, o->path, strlen(o->path) + 1);
    mode_t old = umask(0177);        /* born 0600: no window with a wider mode */
    r = bind(s->lfd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0)
        goto fail_errno;
    bound = true;                    /* the path is ours to remove from here on */
    if (chmod(o->path, 0600) < 0 || listen(s->lfd, 32) < 0)
        goto fail_errno;
    if ((r = -pthread_create(&s->accept_th, NULL, accept_main, s)) < 0)
        goto fail_r;
    *out = s;
    return 0;

fail_errno:
    r = -errno;
fail_r:
    if (r == -EADDRINUSE)           /* bound by another server since the check */
        ctl_error_set(err, r, "control socket %s is in use by another server; "
                      "stop it or choose another path", o->path);
    else
        ctl_error_set(err, r, "cannot listen on control socket %s: %s",
                      o->path, strerror(-r));
fail:
    if (s->lfd >= 0)
        close(s->lfd);
    if (bound)
        unlink(o->path);
    if (s->wake[0] >= 0) {
        close(s->wake[0]);
        close(s->wake[1]);
    }
    free(s->nbd_unix);
    free(s->nbd_tcp);
    free(s->path);
    free(s);
    return r;
}

unsigned ctl_server_drain(struct ctl_server *s, int timeout_ms)
{
    if (!atomic_exchange(&s->stopping, true)) {
        ssize_t w = write(s->wake[1], "x", 1);   /* C2 */
        (void)w;
    }
    if (!s->accept_joined) {
        pthread_join(s->accept_th, NULL);
        s->accept_joined = true;
        close(s->lfd);
        s->lfd = -1;
        unlink(s->path);                         /* nobody new can connect */
    }
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    while (s->active && pthread_cond_timedwait(&s->cond, &s->lock, &dl) == 0)
        ;
    unsigned left = s->active;
    pthread_mutex_unlock(&s->lock);
    return left;
}

void ctl_server_destroy(struct ctl_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    reap_locked(s);
    pthread_mutex_unlock(&s->lock);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->nbd_unix);
    free(s->nbd_tcp);
    free(s->path);
    free(s);
}
