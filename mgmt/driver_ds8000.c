/* SPDX-License-Identifier: MIT */
/*
 * mgmt/driver_ds8000.c — the `ds8000` driver: FlashCopy on an IBM DS8000
 * storage image, through its HMC's REST API or the `dscli` executable.
 *
 * Role
 *   A copy set H1 -> T1 is the FlashCopy relationship H1:T1 (volume IDs in
 *   the array's form: 0100 is volume 00 of LSS 01).  A flash establishes
 *   every copy set in one request with change recording and persistence
 *   (so the next flash refreshes only what changed, as resyncflash), with
 *   -nocp when the session's copy rate is 0, and with freeze consistency
 *   when the sources span more than one LSS, followed by unfreezeflash of
 *   those LSSs.  A restore is one fast reverse of every pair (the
 *   relationships are T1:H1 afterwards, and the next flash withdraws them
 *   and establishes H1:T1 anew); terminate withdraws both directions.
 *   The array's limits (12 targets per source, one incremental relationship
 *   per source) are checked before anything is sent.
 *
 *   Over DSCLI every command is one `dscli -hmc1 H -user U -pwfile F CMD`
 *   (exit code and CMUC/CMUN lines read); over REST a token from POST
 *   /tokens, then the /cs/flashcopies calls, each answer's
 *   server.status/code/message read.  The commands recorded (and printed by
 *   a dry run) are the dscli lines or "METHOD PATH BODY".
 *
 * Invariants
 *   V1-V3 (driver.h).
 *   D1  The password is read from the password file only for the REST login
 *       and wiped after; dscli reads the file itself (-pwfile).  It is never
 *       in argv, a recorded command, a message or a log line.
 *   D2  One establish request carries every pair: the array checks them all
 *       before making any, so a refused flash leaves no relationship made.
 *
 * Context
 *   The action's thread.
 */
#include <ctype.h>
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

#include <curl/curl.h>

#include "mgmt/driver.h"
#include "mgmt/svc.h"
#include "mgmt/zos.h"

#define DS_REST_PORT        8452
#define DS_MAX_TARGETS      12
#define DS_TIMEOUT_S        120
#define DS_OUT_MAX          (1 << 20)

extern char **environ;

struct ds_link {
    bool  rest;
    char  token[256];
    char  base[300];          /* https://HMC:PORT/api/v1 */
    json_t *snap;             /* dscli: the session's pairs both ways, read in one
                               * lsflash; NULL once anything was changed */
};

struct ds_buf {
    char  *p;
    size_t n;
};

static const char *ostr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void buf_add(struct ds_buf *b, const char *s, size_t n)
{
    if (b->n + n > DS_OUT_MAX)
        n = b->n < DS_OUT_MAX ? DS_OUT_MAX - b->n : 0;
    char *p = realloc(b->p, b->n + n + 1);
    if (!p)
        return;
    memcpy(p + b->n, s, n);
    b->n += n;
    p[b->n] = '\0';
    b->p = p;
}

static void upper(char *s)
{
    for (; *s; s++)
        *s = (char)toupper((unsigned char)*s);
}

/* A volume ID as the array spells it: four hex digits, upper case. */
static bool vol_ok(const char *v)
{
    if (strlen(v) != 4)
        return false;
    for (int i = 0; i < 4; i++)
        if (!isxdigit((unsigned char)v[i]))
            return false;
    return true;
}

static struct ds_link *link_of(struct mgmt_driver *d)
{
    if (!d->priv) {
        struct ds_link *l = calloc(1, sizeof *l);
        if (!l)
            return NULL;
        l->rest = strcmp(ostr(d->options, "via"), "rest") == 0;
        const char *hmc = ostr(d->options, "hmc");
        snprintf(l->base, sizeof l->base, "https://%s%s/api/v1", hmc,
                 strchr(hmc, ':') ? "" : ":" "8452");
        d->priv = l;
    }
    return d->priv;
}

/* ------------------------------------------------------------------------
 * DSCLI. */

/* Run dscli with words (the command); *out gets stdout and stderr. */
static int dscli_run(struct mgmt_driver *d, char *const words[], struct ds_buf *out,
                     int *exit_code, struct pc_error *err)
{
    const char *argv[40];
    int n = 0, fds[2];
    argv[n++] = ostr(d->options, "dscli")[0] ? ostr(d->options, "dscli") : "dscli";
    argv[n++] = "-hmc1";
    argv[n++] = ostr(d->options, "hmc");
    argv[n++] = "-user";
    argv[n++] = ostr(d->options, "user");
    argv[n++] = "-pwfile";                                   /* D1 */
    argv[n++] = ostr(d->options, "password_file");
    for (int i = 0; words[i] && n < 39; i++)
        argv[n++] = words[i];
    argv[n] = NULL;
    int r = svc_password_file_ok(ostr(d->options, "password_file"), err);
    if (r < 0)
        return r;
    if (pipe2(fds, O_CLOEXEC) < 0)
        return mgmt_fail(err, -errno, "pipe: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (r) {
        close(fds[0]);
        return mgmt_fail(err, -r, "system %s: cannot run %s: %s", d->system, argv[0],
                         strerror(r));
    }
    time_t end = time(NULL) + DS_TIMEOUT_S;
    char chunk[4096];
    for (;;) {
        struct pollfd p = { fds[0], POLLIN, 0 };
        int pr = poll(&p, 1, 1000);
        if (pr > 0) {
            ssize_t k = read(fds[0], chunk, sizeof chunk);
            if (k <= 0)
                break;
            buf_add(out, chunk, (size_t)k);
        } else if (time(NULL) > end) {
            kill(pid, SIGKILL);
            break;
        }
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status))
        return mgmt_fail(err, -ETIMEDOUT, "system %s: dscli did not finish in %d s", d->system,
                         DS_TIMEOUT_S);
    *exit_code = WEXITSTATUS(status);
    return 0;
}

static const char *dscli_exit_text(int code)
{
    switch (code) {
    case 2: return "syntax error";
    case 3: return "cannot reach the HMC";
    case 4: return "server error";
    case 5: return "authentication failed";
    case 6: return "the storage image refused it";
    default: return "failed";
    }
}

/* The CMUN line of out (or its last line) into msg. */
static void dscli_reason(const char *out, char *msg, size_t len)
{
    const char *c = out ? strstr(out, "CMUN") : NULL;
    const char *s = c ? c : out ? out : "";
    if (!c) {                                         /* the last non-empty line */
        const char *e = s + strlen(s);
        while (e > s && (e[-1] == '\n' || e[-1] == ' '))
            e--;
        const char *b = e;
        while (b > s && b[-1] != '\n')
            b--;
        snprintf(msg, len, "%.*s", (int)(e - b), b);
        return;
    }
    size_t n = strcspn(s, "\n");
    snprintf(msg, len, "%.*s", (int)n, s);
}

/* ------------------------------------------------------------------------
 * REST. */

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    buf_add(arg, p, size * nmemb);
    return size * nmemb;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    struct ds_link *l = arg;
    size_t n = size * nmemb;
    if (n > 13 && strncasecmp(p, "X-Auth-Token:", 13) == 0) {
        const char *v = p + 13;
        while (*v == ' ')
            v++;
        size_t k = strcspn(v, "\r\n");
        snprintf(l->token, sizeof l->token, "%.*s", (int)k, v);
    }
    return n;
}

/* One request; *ans the parsed answer (or NULL).  -EREMOTEIO: refused, with
 * err naming the CMUN code and message; other -errno: not reached. */
static int rest_req(struct mgmt_driver *d, const char *method, const char *path,
                    const char *body, json_t **ans, struct pc_error *err)
{
    struct ds_link *l = link_of(d);
    char url[600], tok[300] = "";
    struct ds_buf b = { 0 };
    *ans = NULL;
    snprintf(url, sizeof url, "%s%s", l->base, path);
    CURL *c = curl_easy_init();
    if (!c)
        return mgmt_fail(err, -ENOMEM, "out of memory");
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: application/json");
    if (l->token[0]) {
        snprintf(tok, sizeof tok, "X-Auth-Token: %s", l->token);
        h = curl_slist_append(h, tok);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)DS_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, l);
    if (ostr(d->options, "cacert")[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, ostr(d->options, "cacert"));
    if (json_is_true(json_object_get(d->options, "insecure"))) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode cr = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (tok[0])
        explicit_bzero(tok, sizeof tok);
    int r = 0;
    if (cr != CURLE_OK) {
        r = mgmt_fail(err, -EHOSTUNREACH, "system %s: cannot reach the HMC at %s: %s",
                      d->system, l->base, curl_easy_strerror(cr));
    } else {
        json_t *a = b.p ? json_loads(b.p, 0, NULL) : NULL;
        json_t *srv = json_object_get(a, "server");
        if (!a || !srv) {
            r = mgmt_fail(err, -EPROTO, "system %s: %s %s answered HTTP %ld without the "
                          "DS8000's {\"server\": ...} envelope", d->system, method, path, code);
            json_decref(a);
        } else if (strcmp(ostr(srv, "status"), "ok") != 0) {
            r = mgmt_fail(err, code == 401 ? -EACCES : -EREMOTEIO, "%s %s (HTTP %ld)",
                          ostr(srv, "code"), ostr(srv, "message"), code);
            json_decref(a);
        } else {
            *ans = a;
        }
    }
    free(b.p);
    return r;
}

static int rest_login(struct mgmt_driver *d, struct pc_error *err)
{
    struct ds_link *l = link_of(d);
    if (l->token[0])
        return 0;
    char pw[512];
    int r = svc_password_read(ostr(d->options, "password_file"), pw, sizeof pw, err);
    if (r < 0) {
        explicit_bzero(pw, sizeof pw);
        return r;
    }
    json_t *p = json_pack("{s:{s:{s:s, s:s}}}", "request", "params", "username",
                          ostr(d->options, "user"), "password", pw);
    explicit_bzero(pw, sizeof pw);
    char *body = json_dumps(p, JSON_COMPACT);
    json_decref(p);                 /* jansson's copy: freed, not wiped (small risk) */
    json_t *ans = NULL;
    r = rest_req(d, "POST", "/tokens", body, &ans, err);
    if (body) {
        explicit_bzero(body, strlen(body));
        free(body);
    }
    if (r == 0 && !l->token[0]) {
        const char *t = ostr(json_object_get(ans, "token"), "token");
        snprintf(l->token, sizeof l->token, "%s", t);
    }
    json_decref(ans);
    if (r < 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return mgmt_fail(err, r, "system %s: login as %s at the HMC refused: %s", d->system,
                         ostr(d->options, "user"), why);
    }
    return 0;
}

static int rest_call(struct mgmt_driver *d, const char *method, const char *path,
                     const char *body, json_t **ans, struct pc_error *err)
{
    int r = rest_login(d, err);
    if (r < 0)
        return r;
    return rest_req(d, method, path, body, ans, err);
}

/* ------------------------------------------------------------------------
 * The array's operations, one shape whatever the transport. */

enum { F_RECORD = 1, F_NOCP = 2, F_FREEZE = 4, F_TGTINHIBIT = 8, F_FAST = 16 };

struct ds_pairs {
    const char *src[256], *tgt[256];
    unsigned    n;
};

/* Record (and unless a dry run, send) a changing command.  what: for errors. */
static int ds_change(struct mgmt_driver *d, const char *verb, unsigned flags,
                     const struct ds_pairs *p, const char *const *lss, unsigned nlss,
                     const char *what, struct pc_error *err)
{
    struct ds_link *l = link_of(d);
    char line[8192];
    size_t n = 0;
    int r = 0;
    if (!l)
        return mgmt_fail(err, -ENOMEM, "out of memory");
    if (!d->dry_run) {
        json_decref(l->snap);          /* the array changes: read it again */
        l->snap = NULL;
    }
    if (!l->rest) {
        char *words[300];
        int w = 0;
        words[w++] = (char *)verb;
        const char *img = ostr(d->options, "storage_image");
        if (img[0] && strcmp(verb, "unfreezeflash") != 0) {
            words[w++] = "-dev";
            words[w++] = (char *)img;
        }
        if (strcmp(verb, "rmflash") == 0)
            words[w++] = "-quiet";
        if (flags & F_RECORD) {
            words[w++] = "-record";
            words[w++] = "-persist";
        }
        if (flags & F_NOCP)
            words[w++] = "-nocp";
        if (flags & F_FREEZE)
            words[w++] = "-freeze";
        if (flags & F_TGTINHIBIT)
            words[w++] = "-tgtinhibit";
        if (flags & F_FAST)
            words[w++] = "-fast";
        char pairs[256][12];
        for (unsigned i = 0; p && i < p->n && w < 298; i++) {
            snprintf(pairs[i], sizeof pairs[i], "%s:%s", p->src[i], p->tgt[i]);
            words[w++] = pairs[i];
        }
        for (unsigned i = 0; i < nlss && w < 298; i++)
            words[w++] = (char *)lss[i];
        words[w] = NULL;
        n += (size_t)snprintf(line + n, sizeof line - n, "dscli");
        for (int i = 0; i < w && n < sizeof line; i++)
            n += (size_t)snprintf(line + n, sizeof line - n, " %s", words[i]);
        json_array_append_new(d->commands, json_string(line));
        if (d->dry_run)
            return 0;
        struct ds_buf out = { 0 };
        int code = 0;
        r = dscli_run(d, words, &out, &code, err);
        if (r == 0 && code != 0) {
            char why[600];
            dscli_reason(out.p, why, sizeof why);
            r = mgmt_fail(err, code == 5 ? -EACCES : code == 3 ? -EHOSTUNREACH : -EREMOTEIO,
                          "system %s: %s %s: %s (dscli exit %d: %s)", d->system, verb, what,
                          why, code, dscli_exit_text(code));
        }
        free(out.p);
        return r;
    }
    /* REST. */
    char path[300];
    json_t *body = NULL;
    const char *method = "POST";
    if (strcmp(verb, "rmflash") == 0) {
        for (unsigned i = 0; i < p->n && r == 0; i++) {
            snprintf(path, sizeof path, "/cs/flashcopies/%s:%s", p->src[i], p->tgt[i]);
            snprintf(line, sizeof line, "DELETE %s%s", l->base, path);
            json_array_append_new(d->commands, json_string(line));
            json_t *ans = NULL;
            if (!d->dry_run && (r = rest_call(d, "DELETE", path, NULL, &ans, err)) < 0) {
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err->msg);
                r = mgmt_fail(err, r, "system %s: withdraw %s:%s: %s", d->system, p->src[i],
                              p->tgt[i], why);
            }
            json_decref(ans);
        }
        return r;
    }
    if (strcmp(verb, "unfreezeflash") == 0) {
        json_t *ids = json_array();
        for (unsigned i = 0; i < nlss; i++)
            json_array_append_new(ids, json_string(lss[i]));
        body = json_pack("{s:{s:{s:o}}}", "request", "params", "lss_ids", ids);
        snprintf(path, sizeof path, "/cs/flashcopies/unfreeze");
    } else {
        json_t *vp = json_array(), *opts = json_array();
        for (unsigned i = 0; i < p->n; i++)
            json_array_append_new(vp, json_pack("{s:s, s:s}", "source_volume", p->src[i],
                                                "target_volume", p->tgt[i]));
        if (flags & F_RECORD) {
            json_array_append_new(opts, json_string("record_changes"));
            json_array_append_new(opts, json_string("persistent"));
        }
        if (flags & F_NOCP)
            json_array_append_new(opts, json_string("no_background_copy"));
        if (flags & F_FREEZE)
            json_array_append_new(opts, json_string("freeze_consistency"));
        if (flags & F_TGTINHIBIT)
            json_array_append_new(opts, json_string("inhibit_target_writes"));
        if (flags & F_FAST)
            json_array_append_new(opts, json_string("fast_reverse_restore"));
        body = json_pack("{s:{s:{s:o, s:o}}}", "request", "params", "volume_pairs", vp,
                         "options", opts);
        snprintf(path, sizeof path, "/cs/flashcopies");
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    snprintf(line, sizeof line, "%s %s%s %s", method, l->base, path, text ? text : "");
    json_array_append_new(d->commands, json_string(line));
    json_t *ans = NULL;
    if (!d->dry_run && (r = rest_call(d, method, path, text, &ans, err)) < 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        r = mgmt_fail(err, r, "system %s: %s %s: %s", d->system, verb, what, why);
    }
    json_decref(ans);
    free(text);
    return r;
}

/*
 * The relationships of a volume (as source or target) or of one pair:
 * *rows = [{id, src, tgt, recording, bgcopy, oos}].  0, or -errno.
 */
static int ds_lsflash_n(struct mgmt_driver *d, const char *const *refs, unsigned nrefs,
                        json_t **rows, struct pc_error *err);

static int ds_lsflash(struct mgmt_driver *d, const char *ref, json_t **rows,
                      struct pc_error *err)
{
    return ds_lsflash_n(d, &ref, 1, rows, err);
}

static int ds_lsflash_n(struct mgmt_driver *d, const char *const *refs, unsigned nrefs,
                        json_t **rows, struct pc_error *err)
{
    struct ds_link *l = link_of(d);
    const char *ref = refs[0];
    *rows = json_array();
    if (!l->rest) {
        char *words[600] = { "lsflash", "-fmt", "delim", "-delim", ",", "-hdr", "on", "-bnr",
                             "off" };
        unsigned w = 9;
        for (unsigned i = 0; i < nrefs && w < 599; i++)
            words[w++] = (char *)refs[i];
        words[w] = NULL;
        struct ds_buf out = { 0 };
        int code = 0;
        int r = dscli_run(d, words, &out, &code, err);
        if (r == 0 && code != 0) {
            char why[600];
            dscli_reason(out.p, why, sizeof why);
            r = mgmt_fail(err, code == 5 ? -EACCES : -EREMOTEIO, "system %s: lsflash %s: %s "
                          "(dscli exit %d: %s)", d->system, ref, why, code,
                          dscli_exit_text(code));
        }
        /* Header "ID,SrcLSS,...", a rule, then rows. */
        char *save = NULL, *line;
        int ci_rec = -1, ci_bg = -1, ci_oos = -1;
        bool hdr = false;
        for (line = r == 0 && out.p ? strtok_r(out.p, "\n", &save) : NULL; line;
             line = strtok_r(NULL, "\n", &save)) {
            char *cols[32], *sv = NULL, *t;
            int nc = 0;
            if (line[0] == '=' || strncmp(line, "CMU", 3) == 0)
                continue;
            for (t = strtok_r(line, ",", &sv); t && nc < 32; t = strtok_r(NULL, ",", &sv))
                cols[nc++] = t;
            if (!hdr && nc && strcmp(cols[0], "ID") == 0) {
                for (int i = 0; i < nc; i++) {
                    if (!strcmp(cols[i], "Recording"))
                        ci_rec = i;
                    if (!strcmp(cols[i], "BackgroundCopy"))
                        ci_bg = i;
                    if (!strcmp(cols[i], "OutOfSyncTracks"))
                        ci_oos = i;
                }
                hdr = true;
                continue;
            }
            if (!hdr || nc < 1 || !strchr(cols[0], ':'))
                continue;
            char src[8] = "", tgt[8] = "";
            sscanf(cols[0], "%7[^:]:%7s", src, tgt);
            json_array_append_new(*rows, json_pack(
                "{s:s, s:s, s:s, s:b, s:b, s:I}", "id", cols[0], "src", src, "tgt", tgt,
                "recording", ci_rec >= 0 && ci_rec < nc && !strcmp(cols[ci_rec], "Enabled"),
                "bgcopy", ci_bg >= 0 && ci_bg < nc && !strcmp(cols[ci_bg], "Enabled"),
                "oos", (json_int_t)(ci_oos >= 0 && ci_oos < nc ? atoll(cols[ci_oos]) : 0)));
        }
        free(out.p);
        return r;
    }
    for (unsigned k = 1; k < nrefs; k++) {
        json_t *more = NULL;
        int r = ds_lsflash_n(d, &refs[k], 1, &more, err);
        if (r == 0)
            json_array_extend(*rows, more);
        json_decref(more);
        if (r < 0)
            return r;
    }
    char path[200];
    json_t *ans = NULL, *fc;
    size_t i;
    if (strchr(ref, ':'))
        snprintf(path, sizeof path, "/cs/flashcopies/%s", ref);
    else
        snprintf(path, sizeof path, "/cs/flashcopies?volume_id_from=%s&volume_id_to=%s", ref,
                 ref);
    int r = rest_call(d, "GET", path, NULL, &ans, err);
    if (r == -EREMOTEIO && strstr(err->msg, "HTTP 404"))
        return 0;                                    /* no such relationship */
    if (r < 0) {
        char why[sizeof err->msg];
        snprintf(why, sizeof why, "%s", err->msg);
        return mgmt_fail(err, r, "system %s: query of %s: %s", d->system, ref, why);
    }
    json_array_foreach(json_object_get(json_object_get(ans, "data"), "flashcopy"), i, fc) {
        const char *src = ostr(json_object_get(fc, "source_volume"), "id");
        const char *tgt = ostr(json_object_get(fc, "target_volume"), "id");
        /* A volume query also lists the pairs it is the source of only by range;
         * keep those that involve the volume. */
        if (!strchr(ref, ':') && strcmp(src, ref) && strcmp(tgt, ref))
            continue;
        json_array_append_new(*rows, json_pack(
            "{s:s, s:s, s:s, s:b, s:b, s:I}", "id", ostr(fc, "id"), "src", src, "tgt", tgt,
            "recording", !strcmp(ostr(fc, "recording"), "enabled"),
            "bgcopy", !strcmp(ostr(fc, "backgroundcopy"), "enabled"),
            "oos", (json_int_t)atoll(ostr(fc, "out_of_sync_tracks"))));
    }
    json_decref(ans);
    return 0;
}

/* Does relationship src:tgt exist?  1, 0 or -errno. */
static int ds_exists(struct mgmt_driver *d, const char *src, const char *tgt, json_t **row,
                     struct pc_error *err)
{
    char ref[16];
    json_t *rows, *snap = link_of(d)->snap, *x;
    size_t i;
    snprintf(ref, sizeof ref, "%s:%s", src, tgt);
    if (snap) {                        /* ds_prefetch read it, nothing changed since */
        if (row)
            *row = NULL;
        json_array_foreach(snap, i, x)
            if (strcmp(ostr(x, "id"), ref) == 0) {
                if (row)
                    *row = json_incref(x);
                return 1;
            }
        return 0;
    }
    int r = ds_lsflash(d, ref, &rows, err);
    if (row)
        *row = NULL;
    if (r == 0) {
        r = json_array_size(rows) > 0;
        if (row && r)
            *row = json_incref(json_array_get(rows, 0));
    }
    json_decref(rows);
    return r;
}

/*
 * dscli: read every pair of the session both ways in one lsflash (a dscli
 * process each is what makes an action slow); ds_exists answers from it
 * until ds_change.  REST asks per pair: a GET is cheap.
 */
static int ds_prefetch(struct mgmt_driver *d, const struct mgmt_dsession *s,
                       struct pc_error *err)
{
    struct ds_link *l = link_of(d);
    if (!l || l->rest || s->ncs > 256)
        return 0;
    char refs[512][16];
    const char *rp[512];
    unsigned n = 0;
    for (unsigned i = 0; i < s->ncs; i++) {
        snprintf(refs[n], sizeof refs[n], "%.4s:%.4s", s->cs[i].h1, s->cs[i].t1);
        upper(refs[n]);
        rp[n] = refs[n];
        n++;
        snprintf(refs[n], sizeof refs[n], "%.4s:%.4s", s->cs[i].t1, s->cs[i].h1);
        upper(refs[n]);
        rp[n] = refs[n];
        n++;
    }
    json_decref(l->snap);
    l->snap = NULL;
    json_t *rows = NULL;
    int r = ds_lsflash_n(d, rp, n, &rows, err);
    if (r == 0)
        l->snap = rows;
    else
        json_decref(rows);
    return r;
}

/* ------------------------------------------------------------------------
 * The driver. */

static int check_copyset(struct mgmt_driver *d, const char *h1, const char *t1,
                         struct pc_error *err)
{
    if (!vol_ok(h1) || !vol_ok(t1))
        return mgmt_fail(err, -EINVAL, "system %s: '%s' is not a DS8000 volume ID; use the "
                         "array's form, four hex digits (0100: volume 00 of LSS 01)", d->system,
                         vol_ok(h1) ? t1 : h1);
    if (strcasecmp(h1, t1) == 0)
        return mgmt_fail(err, -EINVAL, "H1 and T1 are both volume %s; a copy set needs two "
                         "volumes", h1);
    return 0;
}


/* The session's pairs; ids upper-cased into store. */
static void pairs_of(const struct mgmt_dsession *s, char (*store)[2][8], struct ds_pairs *p,
                     bool reverse)
{
    p->n = 0;
    for (unsigned i = 0; i < s->ncs && i < 256; i++) {
        snprintf(store[i][0], 8, "%.7s", s->cs[i].h1);
        snprintf(store[i][1], 8, "%.7s", s->cs[i].t1);
        upper(store[i][0]);
        upper(store[i][1]);
        p->src[p->n] = store[i][reverse ? 1 : 0];
        p->tgt[p->n] = store[i][reverse ? 0 : 1];
        p->n++;
    }
}

/* The limits, before anything is sent: per source at most 12 targets and one
 * incremental relationship, counting those the array has that are not ours. */
static int prepare(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    char ids[256][2][8];
    struct ds_pairs p;
    if (s->ncs > 256)
        return mgmt_fail(err, -E2BIG, "session %s: %u copy sets; the ds8000 driver takes at "
                         "most 256 in one flash", s->name, s->ncs);
    pairs_of(s, ids, &p, false);
    /* One read of every source's relationships (duplicates dropped below). */
    const char *srcs[256];
    unsigned nsrc = 0;
    for (unsigned i = 0; i < p.n; i++) {
        bool seen = false;
        for (unsigned k = 0; k < nsrc; k++)
            seen |= strcmp(srcs[k], p.src[i]) == 0;
        if (!seen)
            srcs[nsrc++] = p.src[i];
    }
    json_t *all = NULL;
    int r = ds_lsflash_n(d, srcs, nsrc, &all, err);
    if (r < 0) {
        json_decref(all);
        return r;
    }
    for (unsigned i = 0; i < p.n; i++) {
        unsigned targets = 0, incr = 0;
        char other[16] = "";
        for (unsigned k = 0; k < p.n; k++)
            targets += strcmp(p.src[k], p.src[i]) == 0;
        json_t *rows = all, *row, *seen = json_object();
        size_t j;
        json_array_foreach(rows, j, row) {
            const char *src = ostr(row, "src"), *tgt = ostr(row, "tgt");
            bool ours = false;
            if (json_object_get(seen, ostr(row, "id")))
                continue;
            json_object_set_new(seen, ostr(row, "id"), json_true());
            for (unsigned k = 0; k < p.n; k++)
                ours |= (!strcmp(src, p.src[k]) && !strcmp(tgt, p.tgt[k])) ||
                        (!strcmp(src, p.tgt[k]) && !strcmp(tgt, p.src[k]));
            if (ours || strcmp(src, p.src[i]))
                continue;
            targets++;
            if (json_is_true(json_object_get(row, "recording"))) {
                incr++;
                snprintf(other, sizeof other, "%s", ostr(row, "id"));
            }
        }
        json_decref(seen);
        if (targets > DS_MAX_TARGETS || incr > 0)
            json_decref(all);
        if (targets > DS_MAX_TARGETS)
            return mgmt_fail(err, -E2BIG, "session %s: source volume %s would have %u "
                             "FlashCopy targets; a DS8000 allows %d (nothing was sent)",
                             s->name, p.src[i], targets, DS_MAX_TARGETS);
        if (incr > 0)
            return mgmt_fail(err, -EBUSY, "session %s: source volume %s already has the "
                             "incremental relationship %s; a DS8000 allows one per source "
                             "(nothing was sent)", s->name, p.src[i], other);
    }
    json_decref(all);
    return 0;
}

/* The distinct LSSs of the sources. */
static unsigned lss_of(const struct ds_pairs *p, char (*lss)[3], const char **ptr)
{
    unsigned n = 0;
    for (unsigned i = 0; i < p->n; i++) {
        bool seen = false;
        for (unsigned k = 0; k < n; k++)
            seen |= strncmp(lss[k], p->src[i], 2) == 0;
        if (!seen) {
            snprintf(lss[n], 3, "%.2s", p->src[i]);
            ptr[n] = lss[n];
            n++;
        }
    }
    return n;
}

/*
 * The flash as one z/OS job: FCWITHDR of the reversed pairs a restore left,
 * FCESTABL ... ACTION(FREEZE) of every pair (consecutive ones are one
 * establish: one point in time, all or none), FCWITHDR ... ACTION(THAW) of
 * one device per source LSS.
 */
static int zos_establish(struct mgmt_driver *d, const struct mgmt_dsession *s,
                         const struct ds_pairs *p, const struct ds_pairs *rev, bool nocopy,
                         struct pc_error *err)
{
    char in[12000], lss[256][3];
    const char *lssp[256];
    size_t n = 0;
    for (unsigned i = 0; i < rev->n; i++)
        n += (size_t)snprintf(in + n, sizeof in - n, " FCWITHDR SDEVN(X'%s') TDEVN(X'%s')\n",
                              zos_devn(d->zos, rev->src[i]), zos_devn(d->zos, rev->tgt[i]));
    for (unsigned i = 0; i < p->n && n < sizeof in; i++)
        n += (size_t)snprintf(in + n, sizeof in - n, " FCESTABL SDEVN(X'%s') TDEVN(X'%s') -\n"
                              "          MODE(%s) INCREMENTAL(YES) ACTION(FREEZE)\n",
                              zos_devn(d->zos, p->src[i]), zos_devn(d->zos, p->tgt[i]),
                              nocopy ? "NOCOPY" : "COPY");
    unsigned nlss = lss_of(p, lss, lssp);
    for (unsigned k = 0; k < nlss && n < sizeof in; k++)
        for (unsigned i = 0; i < p->n; i++)
            if (strncmp(p->src[i], lssp[k], 2) == 0) {
                n += (size_t)snprintf(in + n, sizeof in - n, " FCWITHDR DEVN(X'%s') "
                                      "ACTION(THAW)\n", zos_devn(d->zos, p->src[i]));
                break;
            }
    if (n >= sizeof in)
        return mgmt_fail(err, -E2BIG, "session %s: too many copy sets for one z/OS job",
                         s->name);
    return zos_run_job(d, "FLASH", in, err);
}

/* Z2: with --fallback direct an unreachable z/OSMF means the storage path. */
static bool zos_fall_back(struct mgmt_driver *d, int r, const struct pc_error *err)
{
    if (r != -EHOSTUNREACH || !d->zos_fallback)
        return false;
    char line[600];
    snprintf(line, sizeof line, "fallback: %s; going direct to system %s", err->msg,
             d->system);
    json_array_append_new(d->commands, json_string(line));
    mgmt_log("%s", line);
    return true;
}

static int establish(struct mgmt_driver *d, const struct mgmt_dsession *s, bool nocopy,
                     json_t **info, struct pc_error *err)
{
    char ids[256][2][8], lss[256][3];
    const char *lssp[256];
    struct ds_pairs p, rev = { .n = 0 };
    int r = 0;
    *info = NULL;
    pairs_of(s, ids, &p, false);
    if ((r = ds_prefetch(d, s, err)) < 0)
        return r;
    /* After a restore the relationships are T1:H1: withdrawn before the flash. */
    for (unsigned i = 0; i < p.n && r >= 0; i++) {
        r = ds_exists(d, p.tgt[i], p.src[i], NULL, err);
        if (r == 1) {
            rev.src[rev.n] = p.tgt[i];
            rev.tgt[rev.n++] = p.src[i];
        }
    }
    if (r < 0)
        return r;
    if (d->zos) {
        if ((r = zos_check(d, s, err)) < 0)
            return r;
        r = zos_establish(d, s, &p, &rev, nocopy, err);
        if (!zos_fall_back(d, r, err)) {
            if (r == 0)
                *info = json_pack("{s:s}", "how", "z/OS");
            else if (r == -EHOSTUNREACH) {
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err->msg);
                r = mgmt_fail(err, r, "%s; nothing was flashed (`pitcopy session set %s "
                              "--fallback direct` flashes through the storage system "
                              "instead)", why, s->name);
            }
            return r;
        }
    }
    if (rev.n && ((r = ds_change(d, "rmflash", 0, &rev, NULL, 0, "of the restore's "
                                 "relationships", err)) < 0 || (r = ds_prefetch(d, s, err)) < 0))
        return r;
    bool refresh = true;
    for (unsigned i = 0; i < p.n && refresh; i++) {
        json_t *row = NULL;
        r = ds_exists(d, p.src[i], p.tgt[i], &row, err);
        if (r < 0)
            return r;
        refresh = r == 1 && json_is_true(json_object_get(row, "recording"));
        json_decref(row);
    }
    unsigned nlss = lss_of(&p, lss, lssp);
    unsigned flags = F_RECORD | (nocopy ? F_NOCP : 0) | (nlss > 1 ? F_FREEZE : 0) |
                     (json_is_true(json_object_get(d->options, "tgtinhibit")) ? F_TGTINHIBIT
                                                                              : 0);
    char what[64];
    snprintf(what, sizeof what, "of session %s (%u pair%s)", s->name, p.n, p.n == 1 ? "" : "s");
    /* Over dscli a refresh is resyncflash; over REST record_changes on the
     * existing pairs is one.  D2: one request for every pair. */
    bool rest = link_of(d)->rest;
    r = ds_change(d, refresh && !rest ? "resyncflash" : "mkflash", flags, &p, NULL, 0, what,
                  err);
    if (r == 0 && (flags & F_FREEZE))
        r = ds_change(d, "unfreezeflash", 0, NULL, lssp, nlss, "of the sources' LSSs", err);
    if (r == 0)
        *info = json_pack("{s:s}", "how", refresh ? "refresh" : "establish");
    return r;
}

static int flash(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **info,
                 struct pc_error *err)
{
    return establish(d, s, s->copy_rate == 0, info, err);
}

static int start_incremental(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                             json_t **info, struct pc_error *err)
{
    (void)rate;                        /* the array copies at its own pace */
    return establish(d, s, false, info, err);
}

static int background_copy(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                           struct pc_error *err)
{
    (void)d;
    (void)rate;
    return mgmt_fail(err, -ENOTSUP, "session %s: a DS8000 starts a background copy only "
                     "with a new point in time; use `pitcopy session start %s`", s->name,
                     s->name);
}

static int stop(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    (void)d;
    (void)s;
    (void)err;
    return 0;                          /* a FlashCopy relationship has no stopped state */
}

static int withdraw(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    char ids[256][2][8];
    struct ds_pairs p, gone = { .n = 0 };
    int r = ds_prefetch(d, s, err);
    pairs_of(s, ids, &p, false);
    for (unsigned i = 0; i < p.n && r >= 0; i++)
        for (int k = 0; k < 2 && r >= 0; k++) {
            const char *a = k ? p.tgt[i] : p.src[i], *b = k ? p.src[i] : p.tgt[i];
            r = ds_exists(d, a, b, NULL, err);
            if (r == 1) {
                gone.src[gone.n] = a;
                gone.tgt[gone.n++] = b;
            }
        }
    if (r < 0)
        return r;
    if (gone.n == 0)
        return 0;                                                              /* V2 */
    if (d->zos) {
        if ((r = zos_check(d, s, err)) < 0)
            return r;
        char in[8192];
        size_t n = 0;
        for (unsigned i = 0; i < gone.n && n < sizeof in; i++)
            n += (size_t)snprintf(in + n, sizeof in - n, " FCWITHDR SDEVN(X'%s') "
                                  "TDEVN(X'%s')\n", zos_devn(d->zos, gone.src[i]),
                                  zos_devn(d->zos, gone.tgt[i]));
        r = zos_run_job(d, "WITHDRAW", in, err);
        if (!zos_fall_back(d, r, err))
            return r;
    }
    return ds_change(d, "rmflash", 0, &gone, NULL, 0, "of the session's relationships", err);
}

static int restore(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    char ids[256][2][8];
    struct ds_pairs p;
    pairs_of(s, ids, &p, false);
    int pr = ds_prefetch(d, s, err);
    if (pr < 0)
        return pr;
    for (unsigned i = 0; i < p.n; i++) {
        int r = ds_exists(d, p.src[i], p.tgt[i], NULL, err);
        if (r < 0)
            return r;
        if (r == 0)
            return mgmt_fail(err, -ENOENT, "session %s: copy set %s -> %s has no FlashCopy "
                             "relationship %s:%s on system %s; flash it before restoring",
                             s->name, s->cs[i].h1, s->cs[i].t1, p.src[i], p.tgt[i], d->system);
    }
    char what[64];
    snprintf(what, sizeof what, "of session %s", s->name);
    return ds_change(d, "reverseflash", F_FAST, &p, NULL, 0, what, err);
}

static int query(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **out,
                 struct pc_error *err)
{
    char ids[256][2][8];
    struct ds_pairs p;
    struct pc_error e;
    if (d->zos) {
        int r = zos_check(d, s, err);
        if (r < 0)
            return r;
        r = zos_query(d, s, out, err);
        if (!zos_fall_back(d, r, err)) {
            if (r == -EHOSTUNREACH) {
                char why[sizeof err->msg];
                snprintf(why, sizeof why, "%s", err->msg);
                r = mgmt_fail(err, r, "%s; the query (FCQUERY) was not run (`pitcopy session "
                              "set %s --fallback direct` queries the storage system "
                              "instead)", why, s->name);
            }
            return r;
        }
    }
    json_t *a = json_array();
    pairs_of(s, ids, &p, false);
    ds_prefetch(d, s, &e);         /* else per pair below */
    for (unsigned i = 0; i < p.n; i++) {
        json_t *fw = NULL, *bw = NULL;
        char rel[16];
        snprintf(rel, sizeof rel, "%s:%s", p.src[i], p.tgt[i]);
        if (ds_exists(d, p.src[i], p.tgt[i], &fw, &e) < 0)
            fw = NULL;
        if (ds_exists(d, p.tgt[i], p.src[i], &bw, &e) < 0)
            bw = NULL;
        json_t *c = json_pack("{s:I, s:s, s:s, s:s, s:b}", "id", (json_int_t)s->cs[i].id,
                              "h1", s->cs[i].h1, "t1", s->cs[i].t1, "relationship", rel,
                              "exists", fw != NULL);
        json_int_t oos = fw ? json_integer_value(json_object_get(fw, "oos")) : 0;
        bool bg = fw && json_is_true(json_object_get(fw, "bgcopy"));
        /* After a restore only T1:H1 exists: the copy set is reversed, not lost. */
        json_object_set_new(c, "state", fw ? json_string(bg && oos ? "copying"
                                                                    : "idle_or_copied")
                                            : bw ? json_string("reversed") : json_null());
        json_object_set_new(c, "exists", json_boolean(fw || bw));
        json_object_set_new(c, "out_of_sync_tracks", fw ? json_integer(oos) : json_null());
        json_object_set_new(c, "progress", json_null());
        json_object_set_new(c, "copy_rate", json_null());
        json_object_set_new(c, "started_at", json_null());
        json_object_set_new(c, "complete", fw ? json_boolean(bg && !oos) : json_null());
        json_int_t roos = bw ? json_integer_value(json_object_get(bw, "oos")) : 0;
        json_object_set_new(c, "restore_state", !bw ? json_null()
                                                    : json_string(roos ? "copying"
                                                                       : "idle_or_copied"));
        json_object_set_new(c, "restore_progress", json_null());
        json_array_append_new(a, c);
        json_decref(fw);
        json_decref(bw);
    }
    *out = json_pack("{s:n, s:o}", "group", "copysets", a);
    return 0;
}

static int configure(const char *system, const json_t *p, json_t **options,
                     struct pc_error *err)
{
    static const char *const known[] = { "name", "type", "hmc", "user", "password_file", "via",
                                         "storage_image", "cacert", "insecure", "dscli",
                                         "tgtinhibit" };
    char flag[64];
    if (mgmt_unknown_option(p, known, sizeof known / sizeof known[0], flag, sizeof flag))
        return mgmt_fail(err, -EINVAL, "system %s: type ds8000 takes --hmc, --user, "
                         "--password-file, --via, --storage-image, --cacert, --insecure, "
                         "--dscli; not %s", system, flag);
    const char *hmc = ostr(p, "hmc"), *user = ostr(p, "user"), *pf = ostr(p, "password_file");
    const char *via = ostr(p, "via")[0] ? ostr(p, "via") : "rest";
    if (!hmc[0] || !user[0] || !pf[0])
        return mgmt_fail(err, -EINVAL, "system %s: type ds8000 needs --hmc HOST, --user USER "
                         "and --password-file FILE", system);
    if (strcmp(via, "rest") && strcmp(via, "dscli"))
        return mgmt_fail(err, -EINVAL, "system %s: --via %s: use rest or dscli", system, via);
    if (strpbrk(hmc, "/ ") || strpbrk(user, " \n"))
        return mgmt_fail(err, -EINVAL, "system %s: --hmc takes HOST or HOST:PORT, not '%s'",
                         system, hmc);
    int r = svc_password_file_ok(pf, err);
    if (r < 0)
        return r;
    *options = json_pack("{s:s, s:s, s:s, s:s}", "hmc", hmc, "user", user, "password_file",
                         pf, "via", via);
    static const char *const copy[] = { "storage_image", "cacert", "dscli" };
    for (size_t i = 0; i < 3; i++)
        if (ostr(p, copy[i])[0])
            json_object_set_new(*options, copy[i], json_string(ostr(p, copy[i])));
    if (json_is_true(json_object_get(p, "insecure")))
        json_object_set_new(*options, "insecure", json_true());
    if (json_is_true(json_object_get(p, "tgtinhibit")))
        json_object_set_new(*options, "tgtinhibit", json_true());
    return 0;
}

static void describe(const json_t *o, char *buf, size_t len)
{
    bool rest = strcmp(ostr(o, "via"), "rest") == 0;
    const char *hmc = ostr(o, "hmc");
    if (rest)
        snprintf(buf, len, "REST https://%s%s/api/v1 as %s%s%s", hmc,
                 strchr(hmc, ':') ? "" : ":8452", ostr(o, "user"),
                 ostr(o, "storage_image")[0] ? ", image " : "", ostr(o, "storage_image"));
    else
        snprintf(buf, len, "dscli -hmc1 %s as %s%s%s", hmc, ostr(o, "user"),
                 ostr(o, "storage_image")[0] ? ", image " : "", ostr(o, "storage_image"));
}

static void ds_close(struct mgmt_driver *d)
{
    struct ds_link *l = d->priv;
    if (l) {
        explicit_bzero(l->token, sizeof l->token);
        json_decref(l->snap);
        free(l);
    }
}

const struct mgmt_driver_ops driver_ds8000_ops = {
    .type = "ds8000",
    .configure = configure,
    .describe = describe,
    .close = ds_close,
    .check_copyset = check_copyset,
    .prepare = prepare,
    .flash = flash,
    .start_incremental = start_incremental,
    .background_copy = background_copy,
    .stop = stop,
    .withdraw = withdraw,
    .restore = restore,
    .query = query,
};
