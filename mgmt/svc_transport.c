/* SPDX-License-Identifier: MIT */
/*
 * mgmt/svc_transport.c — carrying one array command over SSH or REST.
 *
 * Role
 *   SSH: every command is one run of the system's `ssh` client (so the
 *   user's ~/.ssh/config, known_hosts and agent apply as they do for the
 *   user), with these options and no others:
 *     -T                          no terminal: the array's CLI is not a login
 *     -o BatchMode=yes            never prompt (a daemon has no one to ask)
 *     -o StrictHostKeyChecking=yes  never accept an unknown or changed host key
 *     -o ConnectTimeout=15        a dead array fails in seconds, not minutes
 *     -o ServerAliveInterval=15 -o ServerAliveCountMax=4   a cut line is noticed
 *     -i KEY -o IdentitiesOnly=yes  only with --key: that key and no other
 *     -o UserKnownHostsFile=FILE  only with --known-hosts
 *     -o ControlMaster=auto -o ControlPath=STATE/svc-PID-N -o ControlPersist=60
 *                                 one connection (one login, one host key
 *                                 check) for all the commands of one action;
 *                                 svc_link_close ends it (ssh -O exit)
 *     -p PORT -l USER -- HOST 'svctask ...'
 *   stdin is /dev/null; stdout is the answer, stderr the refusal (§4).
 *
 *   REST: libcurl, POST BASE/rest/CMD[/OBJ] with the flags as a JSON
 *   object (§3).  A login (POST BASE/rest/auth with the user and the
 *   password read from the password file at that moment) gets a token that
 *   the link keeps for its life (one action); a 403 on a command logs in
 *   again once.  TLS is verified against --cacert or the system's CAs
 *   unless the system was added with --insecure.
 *
 * Invariants
 *   T1, T2 (svc.h).
 *   T3  The password file is checked (owner, mode) every time it is read,
 *       not only when the system was added.
 *   T4  A child (ssh) gets a fresh signal mask and default dispositions,
 *       and only stdin/stdout/stderr: the daemon's other descriptors are
 *       close-on-exec.
 *
 * Context
 *   The action's thread.  svc_link_run blocks for as long as the array
 *   takes, at most SVC_CMD_TIMEOUT_S (then ssh is killed / curl gives up).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "mgmt/internal.h"
#include "mgmt/svc.h"
#include "mgmt/svc_array.h"

extern char **environ;

#define SVC_CMD_TIMEOUT_S   300
#define SVC_CONNECT_S       15
#define SVC_OUTPUT_MAX      (16u << 20)
#define SVC_PASSWORD_MAX    1024

struct svc_link {
    char    system[64];
    bool    rest;
    /* ssh */
    char    host[256], user[128], key[4096], known_hosts[4096];
    int     port;
    char    control[108];            /* ControlPath; "" no multiplexing */
    bool    master;                  /* a master may be running on it */
    /* rest */
    char    base[512];               /* https://host:7443/rest */
    char    password_file[4096], cacert[4096];
    bool    insecure;
    CURL   *curl;
    char    token[256];
};

struct buf {
    char  *p;
    size_t n, cap;
    bool   over;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > SVC_OUTPUT_MAX) {
        b->over = true;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->over = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static const char *buf_str(const struct buf *b)
{
    return b->p ? b->p : "";
}

/* The last non-empty line of s, for a message. */
static void last_line(const char *s, char *out, size_t len)
{
    const char *end = s + strlen(s);
    while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    const char *start = end;
    while (start > s && start[-1] != '\n')
        start--;
    size_t n = (size_t)(end - start);
    snprintf(out, len, "%.*s", (int)(n < len ? n : len - 1), start);
}

static const char *ostr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

int svc_link_open(const char *system, const json_t *o, const char *state_dir,
                  struct svc_link **out, struct pc_error *err)
{
    static _Atomic unsigned long links;   /* names control sockets apart */
    struct svc_link *l = calloc(1, sizeof *l);
    *out = NULL;
    if (!l)
        return mgmt_fail(err, -ENOMEM, "out of memory");
    snprintf(l->system, sizeof l->system, "%s", system);
    l->rest = strcmp(ostr(o, "transport"), "rest") == 0;
    snprintf(l->user, sizeof l->user, "%s", ostr(o, "user"));
    if (l->rest) {
        const char *url = ostr(o, "url");
        size_t n = strlen(url);
        while (n && url[n - 1] == '/')
            n--;
        /* BASE or BASE/rest or BASE/rest/v1 (§3.1): the prefix as given. */
        bool has_prefix = (n >= 5 && strncmp(url + n - 5, "/rest", 5) == 0) ||
                          (n >= 8 && strncmp(url + n - 8, "/rest/v1", 8) == 0);
        snprintf(l->base, sizeof l->base, "%.*s%s", (int)n, url, has_prefix ? ""
                                                                           : SVC_REST_PREFIX);
        snprintf(l->password_file, sizeof l->password_file, "%s", ostr(o, "password_file"));
        snprintf(l->cacert, sizeof l->cacert, "%s", ostr(o, "cacert"));
        l->insecure = json_is_true(json_object_get(o, "insecure"));
    } else {
        snprintf(l->host, sizeof l->host, "%s", ostr(o, "host"));
        snprintf(l->key, sizeof l->key, "%s", ostr(o, "key"));
        snprintf(l->known_hosts, sizeof l->known_hosts, "%s", ostr(o, "known_hosts"));
        json_int_t port = json_integer_value(json_object_get(o, "port"));
        l->port = port > 0 ? (int)port : SVC_DEFAULT_SSH_PORT;
        /* A socket path must fit sun_path; else one connection per command. */
        if (state_dir && strlen(state_dir) + 40 < sizeof l->control)
            snprintf(l->control, sizeof l->control, "%s/svc-%d-%lu", state_dir, (int)getpid(),
                     ++links);
    }
    if (!l->user[0] || (l->rest ? !l->base[0] : !l->host[0])) {
        free(l);
        return mgmt_fail(err, -EINVAL, "system %s: its connection is incomplete in the "
                         "catalog; remove it and add it again", system);
    }
    *out = l;
    return 0;
}

static int spawn_collect(char *const argv[], struct buf *out, struct buf *errb, int *status,
                         int timeout_s, bool *timed_out);

void svc_link_close(struct svc_link *l)
{
    if (!l)
        return;
    if (l->master) {
        char cp[160];
        struct buf o = { 0 }, e = { 0 };
        int st;
        bool to;
        snprintf(cp, sizeof cp, "ControlPath=%s", l->control);
        const char *argv[] = { "ssh", "-o", cp, "-O", "exit", "--", l->host, NULL };
        spawn_collect((char *const *)argv, &o, &e, &st, SVC_CONNECT_S, &to);
        free(o.p);
        free(e.p);
        unlink(l->control);               /* a master killed hard leaves it */
    }
    if (l->curl)
        curl_easy_cleanup(l->curl);
    explicit_bzero(l->token, sizeof l->token);
    free(l);
}

void svc_transport_global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

void svc_transport_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ------------------------------------------------------------------------
 * Rendering. */

static void ssh_line(const struct svc_cmd *c, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "%s %s", c->listing ? SVC_PREFIX_INFO
                                                               : SVC_PREFIX_TASK, c->name);
    if (c->listing && n < len)
        n += (size_t)snprintf(buf + n, len - n, " -%s %c", SVC_DELIM_FLAG, SVC_DELIM);
    for (unsigned i = 0; i < c->nargs && n < len; i++) {
        const struct svc_arg *a = &c->args[i];
        /* A filter may hold `*`: quoted so no shell expands it. */
        bool quote = a->value && strpbrk(a->value, "*=");
        n += (size_t)snprintf(buf + n, len - n, " -%s%s%s%s%s", a->flag, a->value ? " " : "",
                              quote ? "\"" : "", a->value ? a->value : "", quote ? "\"" : "");
    }
    if (c->obj && n < len)
        snprintf(buf + n, len - n, " %s", c->obj);
}

/* The JSON body of a REST call: flags without dashes, booleans as true. */
static char *rest_body(const struct svc_cmd *c)
{
    json_t *o = json_object();
    for (unsigned i = 0; i < c->nargs; i++)
        json_object_set_new(o, c->args[i].flag, c->args[i].value
                                                ? json_string(c->args[i].value) : json_true());
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    return s;
}

static void rest_url(struct svc_link *l, const struct svc_cmd *c, char *buf, size_t len)
{
    /* Names are SVC names (S2): nothing in them needs escaping in a path. */
    snprintf(buf, len, "%s/%s%s%s", l->base, c->name, c->obj ? "/" : "", c->obj ? c->obj : "");
}

void svc_link_render(struct svc_link *l, const struct svc_cmd *c, char *buf, size_t len)
{
    if (!l->rest) {
        ssh_line(c, buf, len);
        return;
    }
    char url[768];
    char *body = rest_body(c);
    rest_url(l, c, url, sizeof url);
    snprintf(buf, len, "POST %s %s", url, body ? body : "{}");
    free(body);
}

/* ------------------------------------------------------------------------
 * SSH. */

/* Run argv, stdin /dev/null; collect stdout and stderr; *status its exit. */
static int spawn_collect(char *const argv[], struct buf *out, struct buf *errb, int *status,
                         int timeout_s, bool *timed_out)
{
    int po[2] = { -1, -1 }, pe[2] = { -1, -1 }, r;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, all;
    pid_t pid;

    *timed_out = false;
    if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0) {
        r = -errno;
        if (po[0] >= 0) {
            close(po[0]);
            close(po[1]);
        }
        return r;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawnattr_init(&at);
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigmask(&at, &none);                           /* T4 */
    posix_spawnattr_setsigdefault(&at, &all);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    r = posix_spawnp(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(po[1]);
    close(pe[1]);
    if (r != 0) {
        close(po[0]);
        close(pe[0]);
        return -r;
    }
    struct pollfd pf[2] = { { po[0], POLLIN, 0 }, { pe[0], POLLIN, 0 } };
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int open_fds = 2;
    bool exited = false;
    /*
     * Until both pipes close or the child exits: a ControlPersist master
     * it forked keeps stderr open for as long as it lives, so an exited
     * child ends the wait; what it wrote is drained below.
     */
    while (open_fds > 0 && !exited) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (long)timeout_s * 1000 - ((now.tv_sec - t0.tv_sec) * 1000 +
                                              (now.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) {
            *timed_out = true;
            kill(pid, SIGKILL);
            break;
        }
        int n = poll(pf, 2, (int)(left > 50 ? 50 : left));
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2 && n > 0; i++) {
            if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char chunk[8192];
            ssize_t got = read(pf[i].fd, chunk, sizeof chunk);
            if (got > 0) {
                buf_add(i == 0 ? out : errb, chunk, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                close(pf[i].fd);
                pf[i].fd = -1;
                open_fds--;
            }
        }
        if (waitpid(pid, status, WNOHANG) == pid)
            exited = true;
    }
    for (int i = 0; i < 2; i++) {
        if (pf[i].fd < 0)
            continue;
        if (exited) {                     /* what is left in the pipe */
            char chunk[8192];
            ssize_t got;
            fcntl(pf[i].fd, F_SETFL, O_NONBLOCK);
            while ((got = read(pf[i].fd, chunk, sizeof chunk)) > 0)
                buf_add(i == 0 ? out : errb, chunk, (size_t)got);
        }
        close(pf[i].fd);
    }
    while (!exited && waitpid(pid, status, 0) < 0 && errno == EINTR)
        ;
    return 0;
}

static int ssh_run(struct svc_link *l, const struct svc_cmd *c, json_t **result,
                   struct svc_refusal *ref, struct pc_error *err)
{
    char line[2048], port[16], timeout[48];
    const char *argv[40];
    int n = 0;
    ssh_line(c, line, sizeof line);
    snprintf(port, sizeof port, "%d", l->port);
    snprintf(timeout, sizeof timeout, "ConnectTimeout=%d", SVC_CONNECT_S);
    char khf[4200];
    argv[n++] = "ssh";
    argv[n++] = "-T";
    argv[n++] = "-o";
    argv[n++] = "BatchMode=yes";
    argv[n++] = "-o";
    argv[n++] = "StrictHostKeyChecking=yes";
    argv[n++] = "-o";
    argv[n++] = timeout;
    argv[n++] = "-o";
    argv[n++] = "ServerAliveInterval=15";
    argv[n++] = "-o";
    argv[n++] = "ServerAliveCountMax=4";
    if (l->key[0]) {
        argv[n++] = "-i";
        argv[n++] = l->key;
        argv[n++] = "-o";
        argv[n++] = "IdentitiesOnly=yes";
    }
    if (l->known_hosts[0]) {
        snprintf(khf, sizeof khf, "UserKnownHostsFile=%s", l->known_hosts);
        argv[n++] = "-o";
        argv[n++] = khf;
    }
    char cp[160];
    if (l->control[0]) {
        snprintf(cp, sizeof cp, "ControlPath=%s", l->control);
        argv[n++] = "-o";
        argv[n++] = "ControlMaster=auto";
        argv[n++] = "-o";
        argv[n++] = cp;
        argv[n++] = "-o";
        argv[n++] = "ControlPersist=60";
        l->master = true;
    }
    argv[n++] = "-p";
    argv[n++] = port;
    argv[n++] = "-l";
    argv[n++] = l->user;
    argv[n++] = "--";
    argv[n++] = l->host;
    argv[n++] = line;
    argv[n] = NULL;

    struct buf out = { 0 }, eb = { 0 };
    int status = 0;
    bool timed_out;
    int r = spawn_collect((char *const *)argv, &out, &eb, &status, SVC_CMD_TIMEOUT_S,
                          &timed_out);
    char last[200];
    if (r < 0) {
        r = mgmt_fail(err, r, "system %s: cannot run ssh: %s (is openssh-client installed?)",
                      l->system, strerror(-r));
        goto out;
    }
    last_line(buf_str(&eb), last, sizeof last);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (timed_out) {
        r = mgmt_fail(err, -ECONNABORTED, "system %s: `%s` got no answer within %d s; ssh "
                      "was stopped, the array may or may not have run it", l->system, c->name,
                      SVC_CMD_TIMEOUT_S);
    } else if (code == 0) {
        r = 0;
        if (out.over) {
            r = mgmt_fail(err, -EFBIG, "system %s: `%s` answered more than %u bytes",
                          l->system, c->name, SVC_OUTPUT_MAX);
        } else if (result && c->listing) {
            char why[128];
            if (c->obj) {
                *result = svc_parse_detail(buf_str(&out), SVC_DELIM);
            } else if (svc_parse_concise(buf_str(&out), SVC_DELIM, result, why,
                                         sizeof why) < 0) {
                r = mgmt_fail(err, -EPROTO, "system %s: cannot read the answer to `%s`: %s",
                              l->system, c->name, why);
            }
        } else if (result) {
            *result = svc_parse_created(buf_str(&out));
        }
    } else if (code != SVC_SSH_FAILED && svc_parse_refusal(buf_str(&eb), ref)) {
        r = mgmt_fail(err, -EREMOTEIO, "system %s refused %s: %s %s", l->system, c->name,
                      ref->code, ref->text);
    } else if (code != SVC_SSH_FAILED) {
        r = mgmt_fail(err, -EPROTO, "system %s: `%s` failed (exit %d) without a CMMVC code: "
                      "%s", l->system, c->name, code, last[0] ? last : "no message");
    } else if (strstr(buf_str(&eb), "Host key verification failed") ||
               strstr(buf_str(&eb), "REMOTE HOST IDENTIFICATION HAS CHANGED") ||
               strstr(buf_str(&eb), "No ED25519 host key is known") ||
               strstr(buf_str(&eb), "host key is known")) {
        r = mgmt_fail(err, -EPERM, "system %s: ssh to %s: the array's host key is unknown or "
                      "changed; pitcopy never accepts one: verify its fingerprint, then add it "
                      "to known_hosts (ssh-keyscan -p %d %s)", l->system, l->host, l->port,
                      l->host);
    } else if (strstr(buf_str(&eb), "Permission denied")) {
        r = mgmt_fail(err, -EACCES, "system %s: ssh to %s@%s:%d: the array refused the key "
                      "(%s); check --key, the agent, and the user's keys on the array",
                      l->system, l->user, l->host, l->port, last);
    } else if (strstr(buf_str(&eb), "Connection refused") ||
               strstr(buf_str(&eb), "Could not resolve") ||
               strstr(buf_str(&eb), "No route to host") ||
               strstr(buf_str(&eb), "timed out") ||
               strstr(buf_str(&eb), "Network is unreachable")) {
        r = mgmt_fail(err, -EHOSTUNREACH, "system %s: cannot reach %s:%d by ssh: %s",
                      l->system, l->host, l->port, last);
    } else {
        r = mgmt_fail(err, -ECONNABORTED, "system %s: the ssh connection was lost during "
                      "`%s`%s%s; the array may or may not have run it", l->system, c->name,
                      last[0] ? ": " : "", last);
    }
out:
    free(out.p);
    free(eb.p);
    return r;
}

/* ------------------------------------------------------------------------
 * REST. */

int svc_password_file_ok(const char *path, struct pc_error *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return mgmt_fail(err, -errno, "password file %s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return mgmt_fail(err, -EPERM, "password file %s is not a regular file", path);
    if (st.st_uid != geteuid())
        return mgmt_fail(err, -EPERM, "password file %s belongs to uid %u, not to the user "
                         "pitcopy runs as (uid %u); it must be yours, mode 0600", path,
                         (unsigned)st.st_uid, (unsigned)geteuid());
    if (st.st_mode & 077)
        return mgmt_fail(err, -EPERM, "password file %s has mode %04o: others can read it; "
                         "refused (chmod 600 %s)", path, (unsigned)(st.st_mode & 07777), path);
    return 0;
}

/* T1, T3: the password, without its trailing newline, into pw. */
int svc_password_read(const char *path, char *pw, size_t len, struct pc_error *err)
{
    pw[0] = '\0';
    int r = svc_password_file_ok(path, err);
    if (r < 0)
        return r;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return mgmt_fail(err, -errno, "password file %s: %s", path, strerror(errno));
    ssize_t n = read(fd, pw, len - 1);
    int e = errno;
    close(fd);
    if (n < 0)
        return mgmt_fail(err, -e, "password file %s: %s", path, strerror(e));
    pw[n] = '\0';
    while (n > 0 && (pw[n - 1] == '\n' || pw[n - 1] == '\r'))
        pw[--n] = '\0';
    if (n == 0 || strchr(pw, '\n') || strchr(pw, '\r'))
        return mgmt_fail(err, -EINVAL, "password file %s must hold the password on one "
                         "line", path);
    return 0;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    buf_add(b, p, size * nmemb);
    return b->over ? 0 : size * nmemb;
}

static void slist_wipe_free(struct curl_slist *h)
{
    for (struct curl_slist *s = h; s; s = s->next)
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(h);
}

/* One POST; *http the status (0: none).  -errno with err for curl's failures. */
static int rest_post(struct svc_link *l, const char *url, const char *body,
                     struct curl_slist *hdr, const char *what, long *http, struct buf *resp,
                     struct pc_error *err)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    *http = 0;
    if (!l->curl && !(l->curl = curl_easy_init()))
        return mgmt_fail(err, -ENOMEM, "system %s: libcurl could not start", l->system);
    CURL *h = l->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)SVC_CONNECT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)SVC_CMD_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    if (l->cacert[0])
        curl_easy_setopt(h, CURLOPT_CAINFO, l->cacert);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, l->insecure ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, l->insecure ? 0L : 2L);
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, http);
    /* Drop the header list (it may hold the password) from the handle. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    if (rc == CURLE_OK)
        return 0;
    const char *why = ebuf[0] ? ebuf : curl_easy_strerror(rc);
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
#if LIBCURL_VERSION_NUM < 0x073e00
    case CURLE_SSL_CACERT:
#endif
    case CURLE_SSL_CONNECT_ERROR:
        return mgmt_fail(err, -EPERM, "system %s: %s: the array's TLS certificate is not "
                         "trusted (%s); give its CA with --cacert FILE (or, knowingly, "
                         "--insecure)", l->system, l->base, why);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
        if (rc != CURLE_OPERATION_TIMEDOUT || *http == 0)
            return mgmt_fail(err, rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EHOSTUNREACH,
                             "system %s: cannot reach %s: %s", l->system, l->base, why);
        /* fall through */
    default:
        return mgmt_fail(err, -ECONNABORTED, "system %s: the connection was lost during %s "
                         "(%s); the array may or may not have run it", l->system, what, why);
    }
}

static int rest_login(struct svc_link *l, struct pc_error *err)
{
    char pw[SVC_PASSWORD_MAX], url[600];
    char *uh = NULL, *ph = NULL;
    struct curl_slist *hdr = NULL;
    struct buf resp = { 0 };
    long http;
    int r = svc_password_read(l->password_file, pw, sizeof pw, err);
    if (r < 0) {
        explicit_bzero(pw, sizeof pw);
        return r;
    }
    snprintf(url, sizeof url, "%s/%s", l->base, SVC_REST_AUTH);
    if (asprintf(&uh, "%s: %s", SVC_REST_USER_HDR, l->user) < 0)
        uh = NULL;
    if (asprintf(&ph, "%s: %s", SVC_REST_PASS_HDR, pw) < 0)
        ph = NULL;
    explicit_bzero(pw, sizeof pw);                                  /* T1 */
    if (!uh || !ph) {
        free(uh);
        if (ph)
            explicit_bzero(ph, strlen(ph));
        free(ph);
        return mgmt_fail(err, -ENOMEM, "out of memory");
    }
    hdr = curl_slist_append(hdr, "Content-Type: application/json");
    hdr = curl_slist_append(hdr, uh);
    hdr = curl_slist_append(hdr, ph);
    explicit_bzero(ph, strlen(ph));
    free(ph);
    free(uh);
    r = rest_post(l, url, "", hdr, "the login", &http, &resp, err);
    slist_wipe_free(hdr);
    if (r == 0 && (http == SVC_HTTP_AUTH || http == SVC_HTTP_UNAUTH)) {
        r = mgmt_fail(err, -EACCES, "system %s: the array refused the login of user %s at "
                      "%s (HTTP %ld): wrong user name or password (the password is read from "
                      "%s)", l->system, l->user, l->base, http, l->password_file);
    } else if (r == 0 && http != SVC_HTTP_OK) {
        r = mgmt_fail(err, -EPROTO, "system %s: login at %s answered HTTP %ld; is this a "
                      "Spectrum Virtualize REST API?", l->system, l->base, http);
    } else if (r == 0) {
        json_t *j = json_loads(buf_str(&resp), 0, NULL);
        const char *t = json_string_value(json_object_get(j, SVC_REST_TOKEN_KEY));
        if (!t || !*t || strlen(t) >= sizeof l->token || strpbrk(t, "\r\n"))
            r = mgmt_fail(err, -EPROTO, "system %s: login at %s answered no usable token",
                          l->system, l->base);
        else
            snprintf(l->token, sizeof l->token, "%s", t);
        json_decref(j);
    }
    if (resp.p)
        explicit_bzero(resp.p, resp.n);
    free(resp.p);
    return r;
}

static int rest_run(struct svc_link *l, const struct svc_cmd *c, json_t **result,
                    struct svc_refusal *ref, struct pc_error *err)
{
    char url[768], th[320];
    char *body = rest_body(c);
    int r = 0;
    if (!body)
        return mgmt_fail(err, -ENOMEM, "out of memory");
    rest_url(l, c, url, sizeof url);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!l->token[0] && (r = rest_login(l, err)) < 0)
            break;
        struct curl_slist *hdr = NULL;
        struct buf resp = { 0 };
        long http;
        snprintf(th, sizeof th, "%s: %s", SVC_REST_TOKEN_HDR, l->token);
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
        hdr = curl_slist_append(hdr, th);
        r = rest_post(l, url, body, hdr, c->name, &http, &resp, err);
        slist_wipe_free(hdr);
        explicit_bzero(th, sizeof th);
        if (r == 0 && (http == SVC_HTTP_AUTH || http == SVC_HTTP_UNAUTH) && attempt == 0) {
            l->token[0] = '\0';                  /* expired: log in again, once */
            free(resp.p);
            continue;
        }
        char last[200];
        last_line(buf_str(&resp), last, sizeof last);
        if (r < 0) {
            /* err says it */
        } else if (http == SVC_HTTP_OK) {
            if (resp.over) {
                r = mgmt_fail(err, -EFBIG, "system %s: %s answered more than %u bytes",
                              l->system, c->name, SVC_OUTPUT_MAX);
            } else if (result && resp.n) {
                json_error_t je;
                *result = json_loads(buf_str(&resp), JSON_DECODE_ANY, &je);
                if (!*result)
                    r = mgmt_fail(err, -EPROTO, "system %s: the answer to %s is not JSON: %s",
                                  l->system, c->name, je.text);
            }
        } else if (http == SVC_HTTP_REFUSED && svc_parse_refusal(buf_str(&resp), ref)) {
            r = mgmt_fail(err, -EREMOTEIO, "system %s refused %s: %s %s", l->system, c->name,
                          ref->code, ref->text);
        } else if (http == SVC_HTTP_UNKNOWN) {
            r = mgmt_fail(err, -ENOSYS, "system %s: the REST API does not know %s (HTTP 404); "
                          "is %s the REST API of a Spectrum Virtualize array?", l->system,
                          c->name, l->base);
        } else if (http == SVC_HTTP_AUTH || http == SVC_HTTP_UNAUTH) {
            r = mgmt_fail(err, -EACCES, "system %s: the array refused %s for user %s (HTTP "
                          "%ld) right after a login", l->system, c->name, l->user, http);
        } else {
            r = mgmt_fail(err, -EPROTO, "system %s: %s answered HTTP %ld: %s", l->system,
                          c->name, http, last[0] ? last : "no message");
        }
        free(resp.p);
        break;
    }
    free(body);
    return r;
}

int svc_link_run(struct svc_link *l, const struct svc_cmd *c, json_t **result,
                 struct svc_refusal *ref, struct pc_error *err)
{
    if (result)
        *result = NULL;
    memset(ref, 0, sizeof *ref);
    int r = l->rest ? rest_run(l, c, result, ref, err) : ssh_run(l, c, result, ref, err);
    if (r < 0 && result) {
        json_decref(*result);
        *result = NULL;
    }
    return r;
}
