/* SPDX-License-Identifier: MIT */
/*
 * mgmt/zos.c — z/OS connections (type `zos`) and their z/OSMF batch jobs.
 *
 * Role
 *   configure/describe for `pitcopy zos add` (a system row of type zos);
 *   the preconditions of a session routed through z/OS; one job submitted
 *   with PUT /zosmf/restjobs/jobs, polled until OUTPUT, its SYSTSPRT read
 *   and its return code turned into an error naming the job and the first
 *   ANTF/IKJ error message.  The storage operations of a zos "system"
 *   refuse: sessions run on a ds8000 system and use z/OS through
 *   `session set --zos`.  zos_query: the query as an FCQUERY job, parsed.
 *
 * Invariants
 *   Z1, Z2 (zos.h).
 *
 * Context
 *   The action's thread.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "mgmt/svc.h"
#include "mgmt/zos.h"

#define ZOS_JOB_TIMEOUT_S  300
#define ZOS_POLL_MS        100
#define ZOS_OUT_MAX        (1 << 20)
#define ZOS_APAR           "OA59561"

struct zbuf {
    char  *p;
    size_t n;
};

static const char *ostr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
    struct zbuf *b = arg;
    size_t n = size * nmemb;
    if (b->n + n > ZOS_OUT_MAX)
        return 0;
    char *q = realloc(b->p, b->n + n + 1);
    if (!q)
        return 0;
    memcpy(q + b->n, p, n);
    b->n += n;
    q[b->n] = '\0';
    b->p = q;
    return n;
}

const char *zos_devn(const json_t *zos, const char *vol)
{
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(zos, "devices"), key, v)
        if (strcasecmp(json_string_value(v), vol) == 0)
            return key;
    return NULL;
}

/* One request; *body the answer's text; *http its status.  -EHOSTUNREACH
 * when nothing reached z/OSMF (Z2). */
static int zreq(struct mgmt_driver *d, const char *method, const char *path, const char *body,
                struct zbuf *out, long *http, struct pc_error *err)
{
    const json_t *z = d->zos;
    char url[600], pw[512] = "";
    snprintf(url, sizeof url, "%s%s", ostr(z, "zosmf"), path);
    int r = svc_password_read(ostr(z, "password_file"), pw, sizeof pw, err);
    if (r < 0) {
        explicit_bzero(pw, sizeof pw);
        return r;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        explicit_bzero(pw, sizeof pw);
        return mgmt_fail(err, -ENOMEM, "out of memory");
    }
    struct curl_slist *h = curl_slist_append(NULL, "X-CSRF-ZOSMF-HEADER: true");
    h = curl_slist_append(h, body ? "Content-Type: text/plain" : "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_USERNAME, ostr(z, "user"));
    curl_easy_setopt(c, CURLOPT_PASSWORD, pw);                 /* Z1 */
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (ostr(z, "cacert")[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, ostr(z, "cacert"));
    if (json_is_true(json_object_get(z, "insecure"))) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode cr = curl_easy_perform(c);
    explicit_bzero(pw, sizeof pw);
    *http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    /* Z2: only failures before anything was sent (a timeout may come after). */
    if (cr == CURLE_COULDNT_CONNECT || cr == CURLE_COULDNT_RESOLVE_HOST)
        return mgmt_fail(err, -EHOSTUNREACH, "z/OS connection %s: z/OSMF at %s is "
                         "unreachable: %s", d->zos_name, ostr(z, "zosmf"),
                         curl_easy_strerror(cr));
    if (cr != CURLE_OK)
        return mgmt_fail(err, -EIO, "z/OS connection %s: %s %s: %s", d->zos_name, method,
                         url, curl_easy_strerror(cr));
    if (*http == 401)
        return mgmt_fail(err, -EACCES, "z/OS connection %s: z/OSMF refused the login of %s "
                         "(HTTP 401): check the password file and --user", d->zos_name,
                         ostr(z, "user"));
    return 0;
}

int zos_check(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    const json_t *z = d->zos;
    bool reaches = false;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(z, "systems"), i, v)
        reaches |= strcmp(json_string_value(v), d->system) == 0;
    if (!reaches)
        return mgmt_fail(err, -EINVAL, "session %s: storage system %s has no z/OS connection "
                         "through %s (pitcopy zos add %s ... --systems %s)", s->name,
                         d->system, d->zos_name, d->zos_name, d->system);
    if (!json_is_true(json_object_get(z, "apar_applied")))
        return mgmt_fail(err, -EINVAL, "session %s: APAR " ZOS_APAR " is not declared "
                         "applied on z/OS connection %s; the flash through z/OS needs it "
                         "(pitcopy zos add %s ... --apar-applied once it is)", s->name,
                         d->zos_name, d->zos_name);
    for (unsigned k = 0; k < s->ncs; k++) {
        const char *vols[2] = { s->cs[k].h1, s->cs[k].t1 };
        for (int j = 0; j < 2; j++)
            if (!zos_devn(z, vols[j]))
                return mgmt_fail(err, -ENODEV, "session %s: volume %s (copy set %s -> %s) "
                                 "has no device number on z/OS connection %s: it is not "
                                 "online there (--device DEVN=%s)", s->name, vols[j],
                                 s->cs[k].h1, s->cs[k].t1, d->zos_name, vols[j]);
    }
    return 0;
}

/* The first error message (ANTF…E, IKJ…) of the spool, else its last line. */
static void spool_reason(const char *text, char *out, size_t len)
{
    const char *line = text;
    out[0] = '\0';
    while (line && *line) {
        size_t n = strcspn(line, "\n");
        const char *p = line;
        while (*p == ' ')
            p++;
        if ((strncmp(p, "ANTF", 4) == 0 && n > 8 && p[8] == 'E') || strncmp(p, "IKJ", 3) == 0) {
            snprintf(out, len, "%.*s", (int)(n - (size_t)(p - line)), p);
            return;
        }
        line = line[n] ? line + n + 1 : NULL;
    }
}

/* zos_run_job; with spool non-NULL a read: it runs even in a dry run and
 * *spool is SYSTSPRT's text (the caller frees it). */
static int run_job(struct mgmt_driver *d, const char *what, const char *systsin, char **spool,
                   struct pc_error *err)
{
    char jcl[16384], path[300], line[17000];
    snprintf(jcl, sizeof jcl,
             "//PITCOPY  JOB (ACCT),'PITCOPY %.10s',CLASS=A,MSGCLASS=X\n"
             "//STEP1    EXEC PGM=IKJEFT01\n"
             "//SYSTSPRT DD SYSOUT=*\n"
             "//SYSTSIN  DD *\n"
             "%s"
             "/*\n", what, systsin);
    snprintf(line, sizeof line, "PUT %s/zosmf/restjobs/jobs\n%s", ostr(d->zos, "zosmf"), jcl);
    json_array_append_new(d->commands, json_string(line));
    if (d->dry_run && !spool)
        return 0;
    struct zbuf b = { 0 };
    long http;
    int r = zreq(d, "PUT", "/zosmf/restjobs/jobs", jcl, &b, &http, err);
    json_t *job = r == 0 && b.p ? json_loads(b.p, 0, NULL) : NULL;
    free(b.p);
    if (r < 0)
        return r;
    char name[16], id[16];
    snprintf(name, sizeof name, "%s", ostr(job, "jobname"));
    snprintf(id, sizeof id, "%s", ostr(job, "jobid"));
    if (http != 201 || !name[0] || !id[0]) {
        r = mgmt_fail(err, -EREMOTEIO, "z/OS connection %s: z/OSMF did not take the job "
                      "(HTTP %ld): %s", d->zos_name, http, ostr(job, "message"));
        json_decref(job);
        return r;
    }
    json_decref(job);
    /* Poll until OUTPUT. */
    char retcode[32] = "";
    snprintf(path, sizeof path, "/zosmf/restjobs/jobs/%s/%s", name, id);
    for (int waited = 0;; waited += ZOS_POLL_MS) {
        struct zbuf s = { 0 };
        r = zreq(d, "GET", path, NULL, &s, &http, err);
        json_t *j = r == 0 && s.p ? json_loads(s.p, 0, NULL) : NULL;
        free(s.p);
        if (r < 0)
            return mgmt_fail(err, r, "z/OS connection %s: job %s(%s) was submitted but its "
                             "status cannot be read: %s", d->zos_name, name, id,
                             strerror(-r));
        bool done = strcmp(ostr(j, "status"), "OUTPUT") == 0;
        if (done)
            snprintf(retcode, sizeof retcode, "%s", ostr(j, "retcode"));
        json_decref(j);
        if (done)
            break;
        if (waited > ZOS_JOB_TIMEOUT_S * 1000)
            return mgmt_fail(err, -ETIMEDOUT, "z/OS connection %s: job %s(%s) did not end "
                             "in %d s", d->zos_name, name, id, ZOS_JOB_TIMEOUT_S);
        struct timespec ts = { 0, ZOS_POLL_MS * 1000000L };
        nanosleep(&ts, NULL);
    }
    /* SYSTSPRT: what the TSO commands said. */
    char reason[400] = "";
    struct zbuf fl = { 0 };
    snprintf(path, sizeof path, "/zosmf/restjobs/jobs/%s/%s/files", name, id);
    if (zreq(d, "GET", path, NULL, &fl, &http, err) == 0 && fl.p) {
        json_t *files = json_loads(fl.p, 0, NULL), *f;
        size_t i;
        json_array_foreach(files, i, f) {
            if (strcmp(ostr(f, "ddname"), "SYSTSPRT") != 0)
                continue;
            struct zbuf rec = { 0 };
            snprintf(path, sizeof path, "/zosmf/restjobs/jobs/%s/%s/files/%lld/records", name,
                     id, (long long)json_integer_value(json_object_get(f, "id")));
            if (zreq(d, "GET", path, NULL, &rec, &http, err) == 0 && rec.p)
                spool_reason(rec.p, reason, sizeof reason);
            if (spool && rec.p) {
                *spool = rec.p;
                rec.p = NULL;
            }
            free(rec.p);
            break;
        }
        json_decref(files);
    }
    free(fl.p);
    snprintf(line, sizeof line, "job %s(%s) ended %s", name, id, retcode);
    json_array_append_new(d->commands, json_string(line));
    if (strcmp(retcode, "CC 0000") == 0)
        return 0;
    if (spool) {
        free(*spool);
        *spool = NULL;
    }
    return mgmt_fail(err, -EREMOTEIO, "z/OS connection %s: %s job %s(%s) ended %s%s%s",
                     d->zos_name, what, name, id, retcode[0] ? retcode : "without a return code",
                     reason[0] ? ": " : "", reason);
}

int zos_run_job(struct mgmt_driver *d, const char *what, const char *systsin,
                struct pc_error *err)
{
    return run_job(d, what, systsin, NULL, err);
}

/*
 * FCQUERY's relationship lines (the emulator's format, UNVERIFIED; see
 * tests/emulators/zosmf/zosmfemu/tso.py), after the echo of
 * `FCQUERY DEVN(X'dddd')`:
 *   SOURCE|TARGET OF X'oooo' VOL ssss:tttt FC..NNN%|FC...... INCREMENTAL(YES|NO)
 *   OUTOFSYNC(n) STATE(VALID|INVALID)
 * Mapped per copy set, DEVN that of H1, as the storage path maps lsflash:
 *   SOURCE OF X'<T1's devn>'  the relationship exists: state "copying" when
 *                             background copy (FC..NNN%) has tracks out of
 *                             sync, else "idle_or_copied"; "invalid" for
 *                             STATE(INVALID); progress NNN (null without
 *                             background copy), out_of_sync_tracks n,
 *                             complete when copied.
 *   TARGET OF X'<T1's devn>'  T1:H1 exists (a restore): state "reversed",
 *                             restore_state as state above.
 *   neither                   exists false, state null.
 */
struct fcq_rel {
    bool found, bg, valid;
    long pct, oos;
};

static void fcq_line(const char *p, struct fcq_rel *r)
{
    const char *q;
    r->found = true;
    r->bg = (q = strstr(p, " FC..")) && isdigit((unsigned char)q[5]);
    r->pct = r->bg ? strtol(q + 5, NULL, 10) : -1;
    r->oos = (q = strstr(p, "OUTOFSYNC(")) ? strtol(q + 10, NULL, 10) : 0;
    r->valid = !strstr(p, "STATE(INVALID)");
}

static json_t *fcq_state(const struct fcq_rel *r)
{
    if (!r->valid)
        return json_string("invalid");
    return json_string(r->bg && r->oos ? "copying" : "idle_or_copied");
}

int zos_query(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **out,
              struct pc_error *err)
{
    char in[12000];
    size_t n = 0;
    *out = NULL;
    for (unsigned i = 0; i < s->ncs && n < sizeof in; i++)
        n += (size_t)snprintf(in + n, sizeof in - n, " FCQUERY DEVN(X'%s')\n",
                              zos_devn(d->zos, s->cs[i].h1));
    if (n >= sizeof in)
        return mgmt_fail(err, -E2BIG, "session %s: too many copy sets for one z/OS job",
                         s->name);
    char *spool = NULL;
    int r = run_job(d, "QUERY", in, &spool, err);
    if (r < 0)
        return r;
    json_t *a = json_array();
    for (unsigned i = 0; i < s->ncs; i++) {
        const char *h = zos_devn(d->zos, s->cs[i].h1), *t = zos_devn(d->zos, s->cs[i].t1);
        struct fcq_rel fw = { 0 }, bw = { 0 };
        bool mine = false;
        for (const char *line = spool; line && *line;) {
            size_t len = strcspn(line, "\n");
            char l[512];
            snprintf(l, sizeof l, "%.*s", (int)(len < sizeof l ? len : sizeof l - 1), line);
            const char *p = l;
            while (*p == ' ')
                p++;
            char dev[8];
            if (sscanf(p, "FCQUERY DEVN(X'%7[0-9A-Fa-f]')", dev) == 1)
                mine = strcasecmp(dev, h) == 0;
            else if (mine && sscanf(p, "SOURCE OF X'%7[0-9A-Fa-f]'", dev) == 1 &&
                     strcasecmp(dev, t) == 0)
                fcq_line(p, &fw);
            else if (mine && sscanf(p, "TARGET OF X'%7[0-9A-Fa-f]'", dev) == 1 &&
                     strcasecmp(dev, t) == 0)
                fcq_line(p, &bw);
            line = line[len] ? line + len + 1 : NULL;
        }
        char rel[160];
        snprintf(rel, sizeof rel, "%s:%s", s->cs[i].h1, s->cs[i].t1);
        json_t *c = json_pack("{s:I, s:s, s:s, s:s, s:b, s:s}", "id", (json_int_t)s->cs[i].id,
                              "h1", s->cs[i].h1, "t1", s->cs[i].t1, "relationship", rel,
                              "exists", fw.found || bw.found, "source", "FCQUERY");
        json_object_set_new(c, "state", fw.found ? fcq_state(&fw)
                                                 : bw.found ? json_string("reversed")
                                                            : json_null());
        json_object_set_new(c, "out_of_sync_tracks", fw.found ? json_integer(fw.oos)
                                                              : json_null());
        json_object_set_new(c, "progress", fw.found && fw.bg ? json_integer(fw.pct)
                                                             : json_null());
        json_object_set_new(c, "copy_rate", json_null());
        json_object_set_new(c, "started_at", json_null());
        json_object_set_new(c, "complete", fw.found ? json_boolean(fw.bg && !fw.oos)
                                                    : json_null());
        json_object_set_new(c, "restore_state", bw.found ? fcq_state(&bw) : json_null());
        json_object_set_new(c, "restore_progress", bw.found && bw.bg ? json_integer(bw.pct)
                                                                     : json_null());
        json_array_append_new(a, c);
    }
    free(spool);
    *out = json_pack("{s:n, s:o}", "group", "copysets", a);
    return 0;
}

/* ------------------------------------------------------------------------
 * The `zos` system type. */

static int configure(const char *system, const json_t *p, json_t **options,
                     struct pc_error *err)
{
    static const char *const known[] = { "name", "type", "zosmf", "user", "password_file",
                                         "cacert", "insecure", "apar_applied", "devices",
                                         "systems" };
    char flag[64];
    if (mgmt_unknown_option(p, known, sizeof known / sizeof known[0], flag, sizeof flag))
        return mgmt_fail(err, -EINVAL, "z/OS connection %s takes --zosmf, --user, "
                         "--password-file, --cacert, --insecure, --apar-applied, "
                         "--device, --systems; not %s", system, flag);
    const char *url = ostr(p, "zosmf"), *user = ostr(p, "user"), *pf = ostr(p, "password_file");
    if (strncmp(url, "https://", 8) != 0)
        return mgmt_fail(err, -EINVAL, "z/OS connection %s: --zosmf '%s' is not an https:// "
                         "URL", system, url);
    if (!user[0] || !pf[0])
        return mgmt_fail(err, -EINVAL, "z/OS connection %s needs --user and --password-file",
                         system);
    int r = svc_password_file_ok(pf, err);
    if (r < 0)
        return r;
    json_t *dev = json_object(), *sys = json_array();
    /* devices: "8100=0100,8200=0200"; systems: "ds8k,other". */
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", ostr(p, "devices"));
    for (char *sv = NULL, *t = strtok_r(buf, ", ", &sv); t; t = strtok_r(NULL, ", ", &sv)) {
        char *eq = strchr(t, '=');
        bool ok = eq && eq - t >= 1 && eq - t <= 4 && strlen(eq + 1) == 4;
        for (char *c = t; ok && c < eq; c++)
            ok = isxdigit((unsigned char)*c);
        if (!ok) {
            json_decref(dev);
            json_decref(sys);
            return mgmt_fail(err, -EINVAL, "z/OS connection %s: --device '%s' is not "
                             "DEVN=VOLUME (8100=0100)", system, t);
        }
        *eq = '\0';
        for (char *c = t; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        for (char *c = eq + 1; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        json_object_set_new(dev, t, json_string(eq + 1));
    }
    snprintf(buf, sizeof buf, "%s", ostr(p, "systems"));
    for (char *sv = NULL, *t = strtok_r(buf, ", ", &sv); t; t = strtok_r(NULL, ", ", &sv))
        json_array_append_new(sys, json_string(t));
    size_t n = strlen(url);
    while (n > 8 && url[n - 1] == '/')
        n--;
    *options = json_pack("{s:s%, s:s, s:s, s:o, s:o, s:b}", "zosmf", url, n, "user", user,
                         "password_file", pf, "devices", dev, "systems", sys, "apar_applied",
                         json_is_true(json_object_get(p, "apar_applied")));
    if (ostr(p, "cacert")[0])
        json_object_set_new(*options, "cacert", json_string(ostr(p, "cacert")));
    if (json_is_true(json_object_get(p, "insecure")))
        json_object_set_new(*options, "insecure", json_true());
    return 0;
}

static void describe(const json_t *o, char *buf, size_t len)
{
    snprintf(buf, len, "z/OSMF %s as %s, %zu device%s, APAR " ZOS_APAR " %s",
             ostr(o, "zosmf"), ostr(o, "user"), json_object_size(json_object_get(o, "devices")),
             json_object_size(json_object_get(o, "devices")) == 1 ? "" : "s",
             json_is_true(json_object_get(o, "apar_applied")) ? "declared applied"
                                                               : "not declared applied");
}

static int not_storage(struct mgmt_driver *d, struct pc_error *err)
{
    return mgmt_fail(err, -EINVAL, "system %s is a z/OS connection, not a storage system: "
                     "create the session on its ds8000 system and route it with `pitcopy "
                     "session set SESSION --zos %s`", d->system, d->system);
}

static int z_check(struct mgmt_driver *d, const char *h1, const char *t1, struct pc_error *err)
{
    (void)h1;
    (void)t1;
    return not_storage(d, err);
}

static int z_sess(struct mgmt_driver *d, const struct mgmt_dsession *s, struct pc_error *err)
{
    (void)s;
    return not_storage(d, err);
}

static int z_flash(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **info,
                   struct pc_error *err)
{
    (void)s;
    *info = NULL;
    return not_storage(d, err);
}

static int z_start(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                   json_t **info, struct pc_error *err)
{
    (void)s;
    (void)rate;
    *info = NULL;
    return not_storage(d, err);
}

static int z_bg(struct mgmt_driver *d, const struct mgmt_dsession *s, int rate,
                struct pc_error *err)
{
    (void)s;
    (void)rate;
    return not_storage(d, err);
}

static int z_query(struct mgmt_driver *d, const struct mgmt_dsession *s, json_t **out,
                   struct pc_error *err)
{
    (void)d;
    (void)s;
    (void)err;
    *out = json_pack("{s:n, s:[]}", "group", "copysets");
    return 0;
}

const struct mgmt_driver_ops driver_zos_ops = {
    .type = "zos",
    .configure = configure,
    .describe = describe,
    .check_copyset = z_check,
    .prepare = z_sess,
    .flash = z_flash,
    .start_incremental = z_start,
    .background_copy = z_bg,
    .stop = z_sess,
    .withdraw = z_sess,
    .restore = z_sess,
    .query = z_query,
};
