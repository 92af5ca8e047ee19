/* SPDX-License-Identifier: MIT */
/*
 * cli/serve.c — `pitcopy serve`: the daemon.
 *
 * Role
 *   Takes the state directory (creating it 0700), locks it, creates the
 *   engine, loads pitcopy.json (volumes reopened, mappings recreated),
 *   starts the NBD server (every volume an export under its name; TLS as
 *   --tls, --tls-creds and --tls-psk say, required by default once there
 *   are credentials) and the control server, then waits for SIGTERM/SIGINT
 *   on a signalfd, saving the state every few seconds if a mapping changed
 *   state on its own.
 *
 *   The management layer (mgmt/) opens DIR/catalog.db and, once the
 *   control server runs, starts its scheduler; its local driver calls the
 *   control methods in-process.
 *
 *   Shutdown, in order: stop the scheduler (an action it runs finishes);
 *   stop taking control requests and let those in
 *   progress finish (a map.wait ends at once); stop NBD (requests in flight
 *   finish, connections close); save the state; destroy the engine.  A
 *   second signal during the drain saves the state and quits at once.
 *
 * Invariants
 *   D1  One daemon per state directory: flock on DIR/lock, held for life.
 *   D2  SIGTERM, SIGINT are blocked in every thread (the mask is set before
 *       the engine starts its workers) and read only from the signalfd.
 *   D3  The engine is destroyed only once neither server can call into it.
 *   D4  A socket path is taken over only from a dead server: before
 *       anything starts, a socket left at the control or NBD path is
 *       removed if nothing answers on it, and the start is refused if
 *       something does.  The lock (D1) cannot vouch for these paths:
 *       --control and --nbd unix:PATH may lie outside DIR, even in another
 *       daemon's.
 *
 * Context
 *   The process's main thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "io/fault.h"
#include "mgmt/mgmt.h"
#include "nbd/nbd.h"

#define SERVE_REFRESH_MS 1000

/* mkdir -p; the last component 0700 (D1's directory is private). */
static int serve_make_dir(const char *dir)
{
    char p[PATH_MAX];
    if ((size_t)snprintf(p, sizeof p, "%s", dir) >= sizeof p)
        return -ENAMETOOLONG;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return -errno;
    struct stat sb;
    if (stat(p, &sb) < 0)
        return -errno;
    if (!S_ISDIR(sb.st_mode))
        return -ENOTDIR;
    /* Anyone who can write here can swap the metadata or the sockets. */
    if (sb.st_mode & (S_IWGRP | S_IWOTH))
        return -EPERM;
    return 0;
}

/* D1.  Returns the lock's fd, or -1 after logging why. */
static int serve_lock_dir(const char *dir)
{
    char path[PATH_MAX], pid[32] = "";
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, CTL_LOCK_NAME) >= sizeof path) {
        ctl_log("state directory %s: path too long", dir);
        return -1;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        ctl_log("cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
        if (n > 0) {
            pid[n] = '\0';
            pid[strcspn(pid, "\n")] = '\0';
        }
        if (e == EWOULDBLOCK)
            ctl_log("another pitcopy serve%s%s%s is using state directory %s (it holds %s); "
                    "stop it first or use another --state-dir", n > 0 ? " (pid " : "",
                    n > 0 ? pid : "", n > 0 ? ")" : "", dir, path);
        else
            ctl_log("cannot lock %s: %s", path, strerror(e));
        close(fd);
        return -1;
    }
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        ctl_log("cannot write the pid to %s: %s (carrying on)", path, strerror(errno));
    return fd;
}

struct serve_nbd {
    const char *unix_path;
    char        host[256];
    char        port[16];
    bool        tcp;
};

/* "unix:PATH", "tcp:HOST:PORT", "tcp::PORT", "tcp:PORT", "tcp:[::1]:PORT". */
static int serve_parse_nbd(const char *spec, struct serve_nbd *n, char *err, size_t errlen)
{
    if (strncmp(spec, "unix:", 5) == 0) {
        if (!spec[5] || n->unix_path) {
            snprintf(err, errlen, "--nbd %s: %s", spec,
                     n->unix_path ? "one Unix socket at most" : "no path after unix:");
            return -EINVAL;
        }
        n->unix_path = spec + 5;
        return 0;
    }
    if (strncmp(spec, "tcp:", 4) != 0 || n->tcp) {
        snprintf(err, errlen, "--nbd %s: %s", spec, n->tcp ? "one TCP address at most"
                 : "expected unix:PATH or tcp:[HOST]:PORT");
        return -EINVAL;
    }
    const char *a = spec + 4, *port;
    size_t hlen;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "--nbd %s: expected tcp:[ADDRESS]:PORT", spec);
            return -EINVAL;
        }
        hlen = (size_t)(close - a - 1);
        memcpy(n->host, a + 1, hlen < sizeof n->host ? hlen : 0);
        port = close + 2;
    } else {
        const char *colon = strrchr(a, ':');
        hlen = colon ? (size_t)(colon - a) : 0;
        if (hlen >= sizeof n->host) {
            snprintf(err, errlen, "--nbd %s: host name too long", spec);
            return -EINVAL;
        }
        memcpy(n->host, a, hlen);
        port = colon ? colon + 1 : a;
    }
    n->host[hlen < sizeof n->host ? hlen : 0] = '\0';
    char *end;
    long p = strtol(port, &end, 10);
    if (!*port || *end || p < 1 || p > 65535) {
        snprintf(err, errlen, "--nbd %s: the port must be a number from 1 to 65535", spec);
        return -EINVAL;
    }
    snprintf(n->port, sizeof n->port, "%ld", p);
    n->tcp = true;
    return 0;
}

static unsigned serve_nbd_connections(void *arg)
{
    return nbd_server_connections(arg);
}

static const char *serve_signal_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "a signal";
}

/* A signal waiting on fd, or 0 after timeout_ms. */
static int serve_wait_signal(int fd, int timeout_ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    struct signalfd_siginfo si;
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    if (read(fd, &si, sizeof si) != (ssize_t)sizeof si)
        return 0;
    return (int)si.ssi_signo;
}

int cmd_serve(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *nbd_specs[2], *control = NULL, *workers_s = NULL, *durability_s = NULL;
    const char *tls_s = NULL, *tls_creds = NULL, *tls_psk = NULL;
    bool tls_verify_peer = false, insecure_tcp = false;
    unsigned nnbd = 0;
    struct args_opt opts[] = {
        ARGS_OPT_MULTI("nbd", nbd_specs, &nnbd, 2),
        ARGS_OPT_VALUE("control", &control),
        ARGS_OPT_VALUE("workers", &workers_s),
        ARGS_OPT_VALUE("durability", &durability_s),
        ARGS_OPT_VALUE("tls", &tls_s),
        ARGS_OPT_VALUE("tls-creds", &tls_creds),
        ARGS_OPT_VALUE("tls-psk", &tls_psk),
        ARGS_OPT_FLAG("tls-verify-peer", &tls_verify_peer),
        ARGS_OPT_FLAG("insecure-tcp", &insecure_tcp),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    struct serve_nbd nbd = { 0 };
    struct pc_engine_opts eo = { 0 };
    struct pc_error err = { 0 };
    char msg[256], ctl_path[PATH_MAX], nbd_path[PATH_MAX], tcp_desc[300] = "";
    struct pc_engine *e = NULL;
    struct ctl_state *st = NULL;
    struct nbd_server *ns = NULL;
    struct ctl_server *cs = NULL;
    struct mgmt *mg = NULL;
    int lock_fd = -1, sig_fd = -1, rc = CLI_FAIL, sig;

    rc = cli_parse(ctx, argc, argv, opts, &a, 0, 0);
    if (rc >= 0)
        return rc;
    rc = CLI_FAIL;
    for (unsigned i = 0; i < nnbd; i++)
        if (serve_parse_nbd(nbd_specs[i], &nbd, msg, sizeof msg) < 0)
            return cli_usage_error(ctx, "%s", msg);
    if (workers_s) {
        char *end;
        long w = strtol(workers_s, &end, 10);
        if (!*workers_s || *end || w < 1 || w > (long)PC_MAX_WORKERS)
            return cli_usage_error(ctx, "--workers: '%s' is not a number from 1 to %u",
                                   workers_s, PC_MAX_WORKERS);
        eo.workers = (unsigned)w;
    }
    enum pc_durability durability = PC_DURABILITY_STRICT;
    if (durability_s) {
        if (!strcmp(durability_s, "none"))
            durability = PC_DURABILITY_NONE;
        else if (strcmp(durability_s, "strict"))
            return cli_usage_error(ctx, "--durability: '%s' is not strict or none", durability_s);
    }
    /* TLS: with credentials, required unless --tls says otherwise (as
     * nbdkit).  Contradictions are usage errors, not silent choices. */
    enum nbd_tls_mode tls = tls_creds || tls_psk ? NBD_TLS_REQUIRE : NBD_TLS_OFF;
    if (tls_s) {
        if (!strcmp(tls_s, "off"))
            tls = NBD_TLS_OFF;
        else if (!strcmp(tls_s, "on"))
            tls = NBD_TLS_ON;
        else if (!strcmp(tls_s, "require"))
            tls = NBD_TLS_REQUIRE;
        else
            return cli_usage_error(ctx, "--tls: '%s' is not off, on or require", tls_s);
    }
    if (tls_creds && tls_psk)
        return cli_usage_error(ctx, "--tls-creds and --tls-psk: give one or the other");
    if (tls != NBD_TLS_OFF && !tls_creds && !tls_psk)
        return cli_usage_error(ctx, "--tls %s needs --tls-creds DIR or --tls-psk FILE", tls_s);
    if (tls == NBD_TLS_OFF && (tls_creds || tls_psk))
        return cli_usage_error(ctx, "--tls off with %s: drop one of them",
                               tls_creds ? "--tls-creds" : "--tls-psk");
    if (tls_verify_peer && !tls_creds)
        return cli_usage_error(ctx, "--tls-verify-peer checks X.509 client certificates: "
                               "it needs --tls-creds DIR");
    const char *tls_word = tls == NBD_TLS_REQUIRE ? "required" : tls == NBD_TLS_ON ? "optional"
                                                                                   : "off";
    const char *dir = ctx->state_dir;
    if (nnbd == 0) {
        snprintf(nbd_path, sizeof nbd_path, "%s/%s", dir, CTL_NBD_SOCK_NAME);
        nbd.unix_path = nbd_path;
    }
    snprintf(ctl_path, sizeof ctl_path, "%s", control ? control : ctx->sock);

    int r = serve_make_dir(dir);
    if (r == -EPERM) {
        ctl_log("state directory %s is writable by group or others; refusing to use it "
                "(chmod go-w %s)", dir, dir);
        return CLI_FAIL;
    }
    if (r < 0) {
        ctl_log("cannot create state directory %s: %s", dir, strerror(-r));
        return CLI_FAIL;
    }
    /* Absolute from here on: default volume paths are recorded in
     * pitcopy.json and must not depend on where the next start runs. */
    char abs_dir[PATH_MAX];
    if (!realpath(dir, abs_dir)) {
        ctl_log("cannot resolve state directory %s: %s", dir, strerror(errno));
        return CLI_FAIL;
    }
    dir = abs_dir;
    lock_fd = serve_lock_dir(dir);
    if (lock_fd < 0)
        return CLI_FAIL;
    /* D4: refuse before anything starts. */
    if (ctl_socket_clear("control socket", ctl_path, &err) < 0 ||
        (nbd.unix_path && ctl_socket_clear("NBD socket", nbd.unix_path, &err) < 0)) {
        ctl_log("%s", err.msg);
        goto out;
    }

    /* D2: before any thread exists. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    /* Tests only: under PITCOPY_CRASHSIM, SIGUSR1 is a power cut (io/fault.h). */
    const char *sim = getenv("PITCOPY_CRASHSIM");
    bool crashsim = sim && *sim && strcmp(sim, "0");
    if (crashsim)
        sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    sig_fd = signalfd(-1, &set, SFD_CLOEXEC);
    if (sig_fd < 0) {
        ctl_log("signalfd: %s", strerror(errno));
        goto out;
    }

    if (pc_engine_create(&eo, &e, &err) < 0) {
        ctl_log("cannot start the engine: %s", err.msg);
        goto out;
    }
    if (ctl_state_load(e, dir, durability, &st, &err) < 0) {
        ctl_log("%s", err.msg);
        goto out;
    }
    struct nbd_server_opts no = {
        .unix_path = nbd.unix_path,
        .tcp_host = nbd.tcp && nbd.host[0] ? nbd.host : NULL,
        .tcp_port = nbd.tcp ? nbd.port : NULL,
        .stdio_fd = -1,
        .tls = tls,
        .tls_creds_dir = tls_creds,
        .tls_psk_file = tls_psk,
        .tls_verify_peer = tls_verify_peer,
        .insecure_tcp = insecure_tcp,
    };
    if (nbd.tcp)
        snprintf(tcp_desc, sizeof tcp_desc, "%s%s%s:%s", strchr(nbd.host, ':') ? "[" : "",
                 nbd.host[0] ? nbd.host : "127.0.0.1", strchr(nbd.host, ':') ? "]" : "",
                 nbd.port);
    if (nbd_server_start(e, &no, &ns, &err) < 0) {
        ctl_log("cannot start the NBD server: %s", err.msg);
        goto out;
    }
    /* Tests only: a mgmt clock starting at this local time (mgmt/mgmt.h). */
    struct mgmt_opts mo = { .dir = dir };
    const char *test_clock = getenv("PITCOPY_TEST_CLOCK");
    if (test_clock && *test_clock) {
        struct tm tm = { 0 };
        char *end = strptime(test_clock, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!end || *end) {
            ctl_log("PITCOPY_TEST_CLOCK=%s is not a time like 2024-05-01T23:58:00", test_clock);
            goto out;
        }
        tm.tm_isdst = -1;
        mo.test_clock = (int64_t)mktime(&tm);
        ctl_log("test clock: the management layer's time starts at %s", test_clock);
    }
    if (mgmt_open(&mo, &mg, &err) < 0) {
        ctl_log("cannot start the management layer: %s", err.msg);
        goto out;
    }
    struct ctl_server_opts co = {
        .path = ctl_path,
        .mgmt = mg,
        .state = st,
        .nbd_unix = nbd.unix_path,
        .nbd_tcp = nbd.tcp ? tcp_desc : NULL,
        .nbd_tls = tls_word,
        .nbd_connections = serve_nbd_connections,
        .nbd_arg = ns,
    };
    if (ctl_server_start(e, &co, &cs, &err) < 0) {
        ctl_log("%s", err.msg);
        goto out;
    }
    /* The local driver reaches the engine through the control methods;
     * then the scheduler may fire (missed runs first). */
    mgmt_set_call(mg, ctl_server_call, cs);
    if (mgmt_start(mg, &err) < 0) {
        ctl_log("%s", err.msg);
        goto out;
    }
    ctl_log("serving state directory %s (pid %d, %s I/O, %u workers): control %s, NBD %s%s%s%s"
            " (TLS %s)", dir, (int)getpid(), pc_engine_io_backend(e), pc_engine_workers(e),
            ctl_path, nbd.unix_path ? "unix:" : "", nbd.unix_path ? nbd.unix_path : "",
            nbd.unix_path && nbd.tcp ? ", tcp:" : nbd.tcp ? "tcp:" : "", tcp_desc, tls_word);

    while (!(sig = serve_wait_signal(sig_fd, SERVE_REFRESH_MS)) || sig == SIGUSR1) {
        if (sig == SIGUSR1 && crashsim)
            io_crashsim_crash((uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL));
        ctl_state_refresh(st);
    }
    ctl_log("%s: stopping (finishing requests, closing connections, saving state; "
            "a second signal quits at once)", serve_signal_name(sig));
    rc = CLI_OK;

out:
    /* No schedule fires once shutdown begins; one firing now finishes. */
    mgmt_stop(mg);
    if (cs) {
        unsigned left, rounds = 0;
        while ((left = ctl_server_drain(cs, 500)) > 0) {
            if (++rounds == 10)
                ctl_log("waiting for %u control request%s in progress (a forced delete waits "
                        "for its cleaning); a second signal quits at once", left,
                        left == 1 ? "" : "s");
            if (serve_wait_signal(sig_fd, 0)) {
                ctl_log("second signal: quitting with %u control request%s unfinished",
                        left, left == 1 ? "" : "s");
                ctl_state_save(st, &err);
                _exit(CLI_FAIL);
            }
        }
        ctl_server_destroy(cs);
    }
    mgmt_close(mg);
    if (ns)
        nbd_server_stop(ns);
    if (st) {
        if (ctl_state_save(st, &err) < 0)
            rc = CLI_FAIL;
    }
    if (e)
        pc_engine_destroy(e);      /* D3 */
    ctl_state_free(st);
    if (sig_fd >= 0)
        close(sig_fd);
    if (lock_fd >= 0)
        close(lock_fd);
    if (rc == CLI_OK)
        ctl_log("stopped; state saved in %s/%s", dir, CTL_STATE_FILE);
    return rc;
}
