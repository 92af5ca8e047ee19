/* SPDX-License-Identifier: MIT */
/*
 * nbd/server.c — listeners, the listener thread, start and stop.
 *
 * Role
 *   nbd_server_start loads the TLS credentials (tls.c), opens the
 *   listeners (a Unix socket, mode 0600, and/or TCP, 127.0.0.1 unless told
 *   otherwise) and starts one thread that waits on them and accepts; each
 *   new connection goes to the next engine worker, round-robin (conn.c).
 *   A stdio fd is served as one connection.
 *   nbd_server_stop undoes it all in order:
 *
 *     1. stop the listener thread, close the listeners, unlink the socket;
 *     2. on every worker: refuse what is new (NBD_REP_ERR_SHUTDOWN,
 *        ESHUTDOWN), let requests in flight finish and their replies go out,
 *        close each connection once it is quiet (N6), and arm a grace timer
 *        that kills what remains;
 *     3. wait until every connection is freed (nconns == 0);
 *     4. on every worker: cancel the timers, free the zero buffer;
 *     5. free the server.
 *
 * Invariants
 *   S1  nconns counts connections from nbd_conn_new until conn_free, so
 *       when it reaches 0 after the listener thread has ended, no
 *       connection exists or can appear, and no callback of one is pending.
 *   S2  Each worker gets its stop message before its teardown message, both
 *       posted by the stopping thread (io/loop.h I3 keeps them in order);
 *       they are separate pc_msg, so neither is reposted while queued.
 *   S3  No TCP listener on an address other hosts can reach (anything but
 *       127.0.0.0/8 and ::1) serves plain NBD unless the caller said
 *       insecure_tcp: without it such an address needs NBD_TLS_REQUIRE.
 *       The check is on the resolved addresses, all of them, before any is
 *       bound, so "localhost" passes and a name that also resolves to a
 *       public address does not.
 *   S4  The TLS credentials live from nbd_server_start until server_free,
 *       after every connection (and so every session using them) is gone.
 *
 * Locking
 *   lock/cond: only the stop handshake (nconns reaching 0, workers done).
 *
 * Context
 *   nbd_server_start/stop: control threads; they block (stop for as long
 *   as in-flight requests and the grace period take).  nbd_server_conn_gone
 *   and nbd_server_worker_done: workers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd/internal.h"

static void set_error(struct pc_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_error(struct pc_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (!err)
        return;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

void nbd_server_conn_gone(struct nbd_server *s)
{
    if (atomic_fetch_sub(&s->nconns, 1) == 1) {
        pthread_mutex_lock(&s->lock);
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
    }
}

void nbd_server_worker_done(struct nbd_server *s)
{
    pthread_mutex_lock(&s->lock);
    s->workers_done++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

unsigned nbd_server_connections(const struct nbd_server *s)
{
    return atomic_load(&((struct nbd_server *)s)->nconns);
}

/* ------------------------------------------------------------------------
 * Listeners
 */

static int add_listener(struct nbd_server *s, int fd, bool is_unix, struct pc_error *err)
{
    if (s->nlfd == NBD_MAX_LISTENERS) {
        close(fd);
        set_error(err, -EMFILE, "more than %u NBD listening sockets", NBD_MAX_LISTENERS);
        return -EMFILE;
    }
    s->lfd[s->nlfd] = fd;
    s->lfd_unix[s->nlfd] = is_unix;
    s->nlfd++;
    return 0;
}

/* A socket file nobody listens on (a crashed server's) may be replaced. */
static bool unix_path_stale(const char *path, const struct sockaddr_un *sa)
{
    struct stat st;
    int fd, r;

    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return false;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    r = connect(fd, (const struct sockaddr *)sa, sizeof *sa);
    close(fd);
    return r < 0 && errno == ECONNREFUSED;
}

static int listen_unix(struct nbd_server *s, const char *path, struct pc_error *err)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, r;

    if (strlen(path) >= sizeof sa.sun_path) {
        set_error(err, -ENAMETOOLONG, "NBD socket path %s is longer than %zu bytes",
                  path, sizeof sa.sun_path - 1);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        set_error(err, r, "cannot create the NBD socket: %s", strerror(-r));
        return r;
    }
    r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno == EADDRINUSE && unix_path_stale(path, &sa)) {
        unlink(path);
        r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    }
    if (r < 0) {
        struct stat st;

        r = -errno;
        close(fd);
        /* EADDRINUSE is any file at the path: say which kind it is. */
        if (r == -EADDRINUSE && lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
            r = -EEXIST;
            set_error(err, r, "%s exists and is not a socket; move it aside", path);
        } else if (r == -EADDRINUSE) {
            set_error(err, r, "NBD socket %s is in use by another server; "
                      "stop it or choose another path", path);
        } else {
            set_error(err, r, "cannot bind the NBD socket %s: %s", path, strerror(-r));
        }
        return r;
    }
    /* Nobody can connect before listen(), so the mode is right before
     * anyone could use the socket, without touching the process umask. */
    if (chmod(path, 0600) < 0 || listen(fd, SOMAXCONN) < 0) {
        r = -errno;
        close(fd);
        unlink(path);
        set_error(err, r, "cannot listen on the NBD socket %s: %s", path, strerror(-r));
        return r;
    }
    s->unix_path = strdup(path);
    if (!s->unix_path) {
        close(fd);
        unlink(path);
        set_error(err, -ENOMEM, "out of memory");
        return -ENOMEM;
    }
    return add_listener(s, fd, true, err);
}

static bool addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24 == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return false;
}

/* S3 */
static int check_reach(const struct nbd_server *s, const struct addrinfo *res, const char *host,
                       const char *port, bool insecure_tcp, struct pc_error *err)
{
    if (insecure_tcp || s->tls_mode == NBD_TLS_REQUIRE)
        return 0;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (addr_is_loopback(ai->ai_addr))
            continue;
        if (s->tls_mode == NBD_TLS_ON)
            set_error(err, -EPERM, "refusing to serve NBD on %s port %s, which other hosts can "
                      "reach, with TLS optional (--tls on): use --tls require, or "
                      "--insecure-tcp to allow plain NBD on a trusted network", host, port);
        else
            set_error(err, -EPERM, "refusing to serve NBD without TLS on %s port %s, which other "
                      "hosts can reach: give --tls-creds DIR or --tls-psk FILE, or "
                      "--insecure-tcp to allow plain NBD on a trusted network", host, port);
        return -EPERM;
    }
    return 0;
}

static int listen_tcp(struct nbd_server *s, const char *host, const char *port,
                      bool insecure_tcp, struct pc_error *err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_ADDRCONFIG,
    };
    struct addrinfo *res, *ai;
    int r, nbound = 0, last = -EADDRNOTAVAIL;

    r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        set_error(err, -EINVAL, "cannot resolve NBD listen address %s port %s: %s",
                  host, port, gai_strerror(r));
        return -EINVAL;
    }
    r = check_reach(s, res, host, port, insecure_tcp, err);
    if (r < 0) {
        freeaddrinfo(res);
        return r;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                        ai->ai_protocol);

        if (fd < 0) {
            last = -errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0) {
            last = -errno;
            close(fd);
            continue;
        }
        r = add_listener(s, fd, false, err);
        if (r < 0) {
            freeaddrinfo(res);
            return r;
        }
        nbound++;
    }
    freeaddrinfo(res);
    if (nbound == 0) {
        set_error(err, last, "cannot listen on %s port %s: %s", host, port, strerror(-last));
        return last;
    }
    return 0;
}

/* "unix socket (pid 42)" or "192.0.2.1:4711". */
static void describe_peer(int fd, bool is_unix, const struct sockaddr_storage *ss,
                          char *out, size_t len)
{
    if (is_unix) {
        struct ucred cred;
        socklen_t cl = sizeof cred;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0 && cred.pid > 0)
            snprintf(out, len, "unix socket (pid %d)", (int)cred.pid);
        else
            snprintf(out, len, "unix socket");
        return;
    }
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        char a[INET_ADDRSTRLEN];

        inet_ntop(AF_INET, &in->sin_addr, a, sizeof a);
        snprintf(out, len, "%s:%u", a, ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        char a[INET6_ADDRSTRLEN];

        inet_ntop(AF_INET6, &in6->sin6_addr, a, sizeof a);
        snprintf(out, len, "[%s]:%u", a, ntohs(in6->sin6_port));
    } else {
        snprintf(out, len, "tcp");
    }
}

#define NBD_ACCEPT_BACKOFF_MS 100     /* out of descriptors: wait before retrying */

/* Accept what is waiting on one listener.  false: out of descriptors (or
 * memory) for now: back off before trying again.  *short_since counts the
 * failed attempts of a shortage, which is logged when it starts and when
 * it ends, not at every retry (ten a second). */
static bool accept_all(struct nbd_server *s, unsigned i, unsigned *short_since)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        char peer[96];
        int fd = accept4(s->lfd[i], (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
#if EAGAIN != EWOULDBLOCK
            case EWOULDBLOCK:
#endif
                return true;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
                continue;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                if ((*short_since)++ == 0)
                    nbd_log("cannot accept a connection: %s (retrying every %d ms, "
                            "logged again once one is accepted)", strerror(errno),
                            NBD_ACCEPT_BACKOFF_MS);
                return false;
            default:
                nbd_log("cannot accept a connection: %s", strerror(errno));
                return true;
            }
        }
        if (*short_since) {
            nbd_log("accepting connections again (%u attempts failed meanwhile)",
                    *short_since);
            *short_since = 0;
        }
        if (!s->lfd_unix[i]) {
            int one = 1;

            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        describe_peer(fd, s->lfd_unix[i], &ss, peer, sizeof peer);
        nbd_conn_new(s, fd, peer);          /* logs and closes fd itself on failure */
    }
}

static void *listener_main(void *arg)
{
    struct nbd_server *s = arg;
    struct pollfd pfd[NBD_MAX_LISTENERS + 1];
    bool backoff = false;
    unsigned short_since = 0;

    for (;;) {
        unsigned n = 0;
        int r;

        pfd[n].fd = s->stop_fd;
        pfd[n++].events = POLLIN;
        /* After running out of descriptors, wait a little with the
         * listeners out of the set, or poll would spin on them. */
        if (!backoff)
            for (unsigned i = 0; i < s->nlfd; i++) {
                pfd[n].fd = s->lfd[i];
                pfd[n++].events = POLLIN;
            }
        r = poll(pfd, n, backoff ? NBD_ACCEPT_BACKOFF_MS : -1);
        if (r < 0 && errno != EINTR) {
            nbd_log("listener: poll: %s", strerror(errno));
            break;
        }
        if (r > 0 && pfd[0].revents)
            break;                          /* nbd_server_stop */
        if (backoff) {
            backoff = false;
            continue;
        }
        for (unsigned i = 0; r > 0 && i < s->nlfd; i++)
            if (pfd[1 + i].revents && !accept_all(s, i, &short_since))
                backoff = true;
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Start and stop
 */

static void worker_stop_msg(struct pc_msg *m)
{
    nbd_worker_stop(m->arg);
}

static void worker_teardown_msg(struct pc_msg *m)
{
    struct nbd_worker *nw = m->arg;

    nbd_worker_teardown(nw);
    nbd_server_worker_done(nw->s);
}

static void server_free(struct nbd_server *s)
{
    for (unsigned i = 0; i < s->nlfd; i++)
        close(s->lfd[i]);
    if (s->unix_path) {
        unlink(s->unix_path);
        free(s->unix_path);
    }
    if (s->stop_fd >= 0)
        close(s->stop_fd);
    nbd_tls_free(s->tls);                   /* S4 */
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s->workers);
    free(s);
}

int nbd_server_start(struct pc_engine *e, const struct nbd_server_opts *o,
                     struct nbd_server **out, struct pc_error *err)
{
    struct nbd_server *s;
    int r;

    *out = NULL;
    if (!o->unix_path && !o->tcp_port && o->stdio_fd < 0) {
        set_error(err, -EINVAL, "the NBD server needs a Unix socket path, a TCP port or an fd");
        return -EINVAL;
    }
    if (o->tls == NBD_TLS_OFF && (o->tls_creds_dir || o->tls_psk_file)) {
        set_error(err, -EINVAL, "TLS credentials given with TLS off");
        return -EINVAL;
    }
    s = calloc(1, sizeof *s);
    if (!s) {
        set_error(err, -ENOMEM, "out of memory starting the NBD server");
        return -ENOMEM;
    }
    s->e = e;
    s->stop_fd = -1;
    s->tls_mode = o->tls;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->nworkers = pc_engine_workers(e);
    s->workers = calloc(s->nworkers, sizeof *s->workers);
    if (!s->workers) {
        server_free(s);
        set_error(err, -ENOMEM, "out of memory starting the NBD server");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct nbd_worker *nw = &s->workers[i];

        nw->s = s;
        nw->w = pc_engine_worker(e, i);
        nw->loop = pc_worker_loop(nw->w);
        nbd_worker_init(nw);
    }
    s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->stop_fd < 0) {
        r = -errno;
        server_free(s);
        set_error(err, r, "cannot create an eventfd for the NBD server: %s", strerror(-r));
        return r;
    }
    /* Credentials first: a bad key file fails the start before any
     * socket exists. */
    if (o->tls != NBD_TLS_OFF) {
        r = nbd_tls_load(o, &s->tls, err);
        if (r < 0) {
            server_free(s);
            return r;
        }
        nbd_log("TLS %s: %s", o->tls == NBD_TLS_REQUIRE ? "required" : "optional",
                nbd_tls_describe(s->tls));
    }
    if (o->unix_path && (r = listen_unix(s, o->unix_path, err)) < 0) {
        server_free(s);
        return r;
    }
    if (o->tcp_port &&
        (r = listen_tcp(s, o->tcp_host ? o->tcp_host : "127.0.0.1", o->tcp_port,
                        o->insecure_tcp, err)) < 0) {
        server_free(s);
        return r;
    }
    if (s->nlfd > 0) {
        r = -pthread_create(&s->listener, NULL, listener_main, s);
        if (r < 0) {
            server_free(s);
            set_error(err, r, "cannot start the NBD listener thread: %s", strerror(-r));
            return r;
        }
        s->listener_started = true;
    }
    if (o->stdio_fd >= 0)
        nbd_conn_new(s, o->stdio_fd, "stdio");
    *out = s;
    return 0;
}

void nbd_server_stop(struct nbd_server *s)
{
    uint64_t one = 1;

    if (!s)
        return;
    atomic_store(&s->stopping, true);
    /* 1 */
    if (s->listener_started) {
        if (write(s->stop_fd, &one, sizeof one) < 0)
            nbd_log("cannot wake the listener thread: %s", strerror(errno));
        pthread_join(s->listener, NULL);
    }
    for (unsigned i = 0; i < s->nlfd; i++)
        close(s->lfd[i]);
    s->nlfd = 0;
    if (s->unix_path) {
        unlink(s->unix_path);
        free(s->unix_path);
        s->unix_path = NULL;
    }
    /* 2 (S2) */
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct nbd_worker *nw = &s->workers[i];

        nw->stop_msg.fn = worker_stop_msg;
        nw->stop_msg.arg = nw;
        pc_worker_post(nw->w, &nw->stop_msg);
    }
    /* 3 (S1) */
    pthread_mutex_lock(&s->lock);
    while (atomic_load(&s->nconns) > 0)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    /* 4 */
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct nbd_worker *nw = &s->workers[i];

        nw->teardown_msg.fn = worker_teardown_msg;
        nw->teardown_msg.arg = nw;
        pc_worker_post(nw->w, &nw->teardown_msg);
    }
    pthread_mutex_lock(&s->lock);
    while (s->workers_done < s->nworkers)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
    /* 5 */
    server_free(s);
}
