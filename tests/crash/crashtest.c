/* SPDX-License-Identifier: MIT */
/*
 * tests/crash/crashtest.c — crash points: kill -9 or power loss, restart, check.
 *
 *   pitcopy-crashtest --pitcopy build/pitcopy [--mode kill|power] [--points N]
 *                     [--seed S] [--size MIB] [--keep]
 *
 * One source and two targets (mappings m1 and m2 in one chain), served by a
 * real `pitcopy serve`.  Three clients write through NBD — two to the
 * source, one to the targets — with FUA and FLUSH at random, while a
 * control thread starts (after quiescing and flushing the source, as a
 * bank's batch does), stops and re-rates the mappings with the real CLI.
 * At a random moment the daemon dies: `kill -9` (mode kill), or SIGUSR1
 * under PITCOPY_CRASHSIM=1 (mode power: the daemon throws away a random
 * subset of its writes not yet made durable, some torn, then exits; see
 * io/fault.h).  The daemon restarts on the same state directory and every
 * 512-byte sector of every volume is checked against the model:
 *
 *   source  holds its newest durable write, or one written after it: a
 *           write is durable once FUA'd or followed by a completed FLUSH
 *           (mode power), or once completed (mode kill: the page cache
 *           survives the process);
 *   target  of a mapping whose start was acknowledged (and not stopped
 *           since) is online and reads exactly as the source did at the
 *           start, except where the client wrote the target, which follows
 *           the source's rule.
 *
 * Every sector the test writes is 32 copies of (tag, sector number); tag 0
 * is the zero sector the volumes start with.  Prints the crash points and
 * violations; exits 1 if any violation was found.
 *
 * Debugging: CRASHTEST_STOP=1 stops at the first crash point with a
 * violation and keeps its state directory; CRASHTEST_SIGNAL=15 (mode kill)
 * stops the daemon in order instead, to tell a crash bug from a model one.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libnbd.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/sector_tags.h"

extern char **environ;

#define SECTOR      TAG_SECTOR
#define BLOCK       4096u
#define SPB         (BLOCK / SECTOR)
#define NVOL        3               /* src, t1, t2 */
#define NMAP        2
#define MAXCAND     64

static const char *const vol_names[NVOL] = { "src", "t1", "t2" };

struct cand { uint64_t tag, done; };   /* done: completion seq, 0 = in flight */

struct sector {
    uint64_t    durable;            /* newest write known durable */
    uint8_t     n;                  /* candidates after it */
    bool        unknown;            /* target not checkable (not started) */
    struct cand c[MAXCAND];
};

struct vol {
    struct sector *s;
    _Atomic uint8_t *busy;          /* per block: a write in flight */
};

static struct {
    const char *pitcopy, *mode;
    bool        power;
    unsigned    points;
    uint64_t    seed;
    uint64_t    size;               /* bytes per volume */
    uint64_t    nsect, nblk;
    char        dir[256], sock[300], log[300];
    bool        keep;

    pthread_mutex_t lock;           /* the model */
    struct vol  v[NVOL];
    uint64_t    next_tag;
    uint64_t    done_seq;           /* completion sequence */
    bool        pit_valid[NMAP];    /* start acknowledged, no stop since */
    bool        start_pending[NMAP];
    uint64_t   *pit[NMAP];          /* source tags per sector at the start */
    bool        restore_pending;    /* r1 (t1 -> src) asked to start as a restore */
    uint64_t   *pit_r;              /* t1's tags per sector at that restore */

    pid_t       daemon;
    _Atomic bool crashed;
    pthread_rwlock_t src_gate;      /* source writers: read; a start's quiesce: write */
    pthread_rwlock_t tgt_gate[NMAP];/* target writers: read; its start or stop: write */

    uint64_t    violations, crash_points, writes, flushes, starts, stops, restores;
    uint8_t    *tag_vol;            /* which volume each tag was written to */
    size_t      tag_cap;
} T;

/* ------------------------------------------------------------------ util */

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    va_list ap;
    if (T.violations++ < 20) {
        va_start(ap, fmt);
        fprintf(stderr, "VIOLATION: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
}

static void die(const char *what)
{
    fprintf(stderr, "crashtest: %s\n", what);
    exit(2);
}

/* Run the CLI; returns its exit status, its stdout in out (malloc'd) if asked. */
static int cli(char **out, const char *a1, const char *a2, const char *a3, const char *a4,
               const char *a5, const char *a6)
{
    const char *argv[12] = { T.pitcopy, "--state-dir", T.dir, a1, a2, a3, a4, a5, a6, NULL };
    int p[2], st;
    pid_t pid;
    posix_spawn_file_actions_t fa;
    if (pipe(p) < 0)
        die("pipe");
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, p[0]);
    if (posix_spawn(&pid, T.pitcopy, &fa, NULL, (char **)argv, environ) != 0)
        die("cannot run pitcopy");
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = read(p[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)n;
        if (cap - len < 1024)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = 0;
    close(p[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void start_daemon(void)
{
    const char *argv[] = { T.pitcopy, "serve", "--state-dir", T.dir, "--workers", "2", NULL };
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, T.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (T.power)
        setenv("PITCOPY_CRASHSIM", "1", 1);
    if (posix_spawn(&T.daemon, T.pitcopy, &fa, NULL, (char **)argv, environ) != 0)
        die("cannot start pitcopy serve");
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 400; i++) {
        if (cli(NULL, "status", NULL, NULL, NULL, NULL, NULL) == 0)
            return;
        int st;
        if (waitpid(T.daemon, &st, WNOHANG) == T.daemon) {
            fprintf(stderr, "crashtest: pitcopy serve exited at start (%s %d); its log: %s\n",
                    WIFEXITED(st) ? "status" : "signal",
                    WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), T.log);
            exit(2);
        }
        usleep(10000);
    }
    die("pitcopy serve did not answer within 4 s");
}

/* ------------------------------------------------------------------ model */

static void cand_add(struct sector *s, uint64_t tag)
{
    if (s->n == MAXCAND) {        /* cannot happen: writers flush well before */
        memmove(s->c, s->c + 1, sizeof s->c[0] * (MAXCAND - 1));
        s->n--;
    }
    s->c[s->n++] = (struct cand){ tag, 0 };
}

static void cand_done(struct sector *s, uint64_t tag, uint64_t seq, bool durable)
{
    for (unsigned i = 0; i < s->n; i++) {
        if (s->c[i].tag != tag)
            continue;
        s->c[i].done = seq;
        if (durable) {
            s->durable = tag;
            memmove(s->c, s->c + i + 1, sizeof s->c[0] * (s->n - i - 1));
            s->n -= (uint8_t)(i + 1);
        }
        return;
    }
}

/* A FLUSH issued when done_seq was snap completed: writes done by then are durable. */
static void model_flush(unsigned vi, uint64_t snap)
{
    struct vol *v = &T.v[vi];
    for (uint64_t i = 0; i < T.nsect; i++) {
        struct sector *s = &v->s[i];
        int last = -1;
        for (unsigned k = 0; k < s->n; k++)
            if (s->c[k].done && s->c[k].done <= snap)
                last = (int)k;
        if (last < 0)
            continue;
        s->durable = s->c[last].tag;
        memmove(s->c, s->c + last + 1, sizeof s->c[0] * (s->n - (unsigned)last - 1));
        s->n -= (uint8_t)(last + 1);
    }
}

static bool sector_ok(const struct sector *s, uint64_t tag)
{
    if (tag == s->durable)
        return true;
    for (unsigned k = 0; k < s->n; k++)
        if (s->c[k].tag == tag)
            return true;
    return false;
}

/* ------------------------------------------------------------------ clients */

struct client {
    unsigned id;
    uint64_t rs;
    struct nbd_handle *h[NVOL];
    char *buf;
};

static struct nbd_handle *connect_vol(unsigned vi)
{
    struct nbd_handle *h = nbd_create();
    if (!h)
        return NULL;
    if (nbd_set_export_name(h, vol_names[vi]) < 0 || nbd_connect_unix(h, T.sock) < 0) {
        nbd_close(h);
        return NULL;
    }
    return h;
}

static void client_close(struct client *c)
{
    for (unsigned i = 0; i < NVOL; i++) {
        if (c->h[i])
            nbd_close(c->h[i]);
        c->h[i] = NULL;
    }
}

/* One write (1-4 blocks) to vi, FUA sometimes; the model follows (see top). */
static bool client_write(struct client *c, unsigned vi)
{
    struct vol *v = &T.v[vi];
    unsigned nb = 1 + (unsigned)(tags_rnd(&c->rs) % 4);
    uint64_t b0 = tags_rnd(&c->rs) % (T.nblk - nb + 1);
    bool fua = tags_rnd(&c->rs) % 8 == 0;

    for (unsigned i = 0; i < nb; i++) {
        uint8_t z = 0;
        if (!atomic_compare_exchange_strong(&v->busy[b0 + i], &z, 1)) {
            while (i--)
                atomic_store(&v->busy[b0 + i], 0);
            return true;           /* another client writes there: pick again */
        }
    }
    pthread_mutex_lock(&T.lock);
    /* A target sector not yet started is not modelled: skip it. */
    uint64_t tag = ++T.next_tag;
    if (tag >= T.tag_cap) {
        T.tag_cap = T.tag_cap ? T.tag_cap * 2 : 1 << 16;
        T.tag_vol = realloc(T.tag_vol, T.tag_cap);
    }
    T.tag_vol[tag] = (uint8_t)vi;
    for (uint64_t s = b0 * SPB; s < (b0 + nb) * SPB; s++)
        cand_add(&v->s[s], tag);
    pthread_mutex_unlock(&T.lock);

    tags_fill(c->buf, b0 * SPB, nb * SPB, tag);
    int r = nbd_pwrite(c->h[vi], c->buf, (size_t)nb * BLOCK, b0 * BLOCK,
                       fua ? LIBNBD_CMD_FLAG_FUA : 0);
    pthread_mutex_lock(&T.lock);
    if (r == 0) {
        uint64_t seq = ++T.done_seq;
        for (uint64_t s = b0 * SPB; s < (b0 + nb) * SPB; s++)
            cand_done(&v->s[s], tag, seq, fua || !T.power);
        T.writes++;
    }
    pthread_mutex_unlock(&T.lock);
    for (unsigned i = 0; i < nb; i++)
        atomic_store(&v->busy[b0 + i], 0);
    if (r < 0 && !atomic_load(&T.crashed)) {
        /* A target that is offline (its mapping stopped) refuses writes. */
        return nbd_get_errno() == EIO && vi != 0;
    }
    return r == 0;
}

static bool client_flush(struct client *c, unsigned vi)
{
    pthread_mutex_lock(&T.lock);
    uint64_t snap = T.done_seq;
    pthread_mutex_unlock(&T.lock);
    int r = nbd_flush(c->h[vi], 0);
    if (r == 0) {
        pthread_mutex_lock(&T.lock);
        model_flush(vi, snap);
        T.flushes++;
        pthread_mutex_unlock(&T.lock);
    }
    return r == 0 || (vi != 0 && !atomic_load(&T.crashed));
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    if (posix_memalign((void **)&c->buf, 4096, 4 * BLOCK))
        return NULL;
    for (unsigned i = 0; i < NVOL; i++)
        if (!(c->h[i] = connect_vol(i)))
            goto out;
    while (!atomic_load(&T.crashed)) {
        bool ok;
        if (c->id < 2) {           /* source writers */
            pthread_rwlock_rdlock(&T.src_gate);
            ok = tags_rnd(&c->rs) % 16 ? client_write(c, 0) : client_flush(c, 0);
            pthread_rwlock_unlock(&T.src_gate);
        } else {                   /* target writer */
            unsigned vi = 1 + (unsigned)(tags_rnd(&c->rs) % 2);
            /* Only while the mapping is started, and not across a stop or
             * start (the model of the target changes there). */
            pthread_rwlock_rdlock(&T.tgt_gate[vi - 1]);
            pthread_mutex_lock(&T.lock);
            bool live = T.pit_valid[vi - 1];
            pthread_mutex_unlock(&T.lock);
            if (live)
                ok = tags_rnd(&c->rs) % 16 ? client_write(c, vi) : client_flush(c, vi);
            pthread_rwlock_unlock(&T.tgt_gate[vi - 1]);
            if (!live) {
                usleep(1000);
                continue;
            }
        }
        if (!ok)
            break;
    }
out:
    client_close(c);
    free(c->buf);
    return NULL;
}

/* ------------------------------------------------------------------ control */

static const char *map_name(unsigned m) { return m ? "m2" : "m1"; }

/* The start: quiesce and flush the source, start, snapshot the model. */
static void control_start(unsigned mi, struct nbd_handle *src)
{
    pthread_rwlock_wrlock(&T.src_gate);
    if (nbd_flush(src, 0) < 0) {
        pthread_rwlock_unlock(&T.src_gate);
        return;
    }
    pthread_mutex_lock(&T.lock);
    model_flush(0, T.done_seq);
    T.start_pending[mi] = true;
    for (uint64_t i = 0; i < T.nsect; i++) {
        if (T.v[0].s[i].n)
            violation("source sector %" PRIu64 " has writes in flight at a quiesced start", i);
        T.pit[mi][i] = T.v[0].s[i].durable;
    }
    pthread_mutex_unlock(&T.lock);
    int rc = cli(NULL, "map", "start", map_name(mi), NULL, NULL, NULL);
    pthread_mutex_lock(&T.lock);
    if (rc == 0) {
        T.pit_valid[mi] = true;
        T.starts++;
        /* The target now reads as the source did: model it so. */
        for (uint64_t i = 0; i < T.nsect; i++) {
            struct sector *s = &T.v[1 + mi].s[i];
            s->durable = T.pit[mi][i];
            s->n = 0;
            s->unknown = false;
        }
    }
    T.start_pending[mi] = rc != 0 && atomic_load(&T.crashed);
    pthread_mutex_unlock(&T.lock);
    pthread_rwlock_unlock(&T.src_gate);
}

/*
 * A restore of src from t1 (mapping r1, t1 -> src), under tgt_gate[0] for
 * writing: quiesce and flush both, snapshot t1's model, start.  From then on
 * src reads as t1 did — through the copy and any crash.  While it runs the
 * engine refuses starts and stops of m1 and m2 (those requests fail; the
 * model only loses checks by it).
 */
static void control_restore(struct nbd_handle *src, struct nbd_handle *t1, uint64_t *rs)
{
    static const char *const rates[] = { "50", "100", "unlimited", "unlimited" };
    cli(NULL, "map", "set", "r1", "--copy-rate", rates[tags_rnd(rs) % 4], NULL);
    pthread_rwlock_wrlock(&T.src_gate);
    pthread_mutex_lock(&T.lock);
    uint64_t snap = T.done_seq;
    pthread_mutex_unlock(&T.lock);
    if (nbd_flush(src, 0) < 0 || nbd_flush(t1, 0) < 0) {
        pthread_rwlock_unlock(&T.src_gate);
        return;
    }
    pthread_mutex_lock(&T.lock);
    model_flush(0, snap);
    model_flush(1, snap);
    for (uint64_t i = 0; i < T.nsect; i++) {
        if (T.v[0].s[i].n || T.v[1].s[i].n)
            violation("sector %" PRIu64 " has writes in flight at a quiesced restore", i);
        T.pit_r[i] = T.v[1].s[i].durable;
    }
    T.restore_pending = true;
    pthread_mutex_unlock(&T.lock);
    int rc = cli(NULL, "map", "start", "r1", "--restore", NULL, NULL);
    pthread_mutex_lock(&T.lock);
    if (rc == 0) {
        T.restores++;
        for (uint64_t i = 0; i < T.nsect; i++) {
            struct sector *s = &T.v[0].s[i];
            s->durable = T.pit_r[i];
            s->n = 0;
        }
    }
    T.restore_pending = rc != 0 && atomic_load(&T.crashed);
    pthread_mutex_unlock(&T.lock);
    pthread_rwlock_unlock(&T.src_gate);
}

static void *control_main(void *arg)
{
    uint64_t rs = *(uint64_t *)arg;
    struct nbd_handle *src = connect_vol(0), *t1 = connect_vol(1);
    static const char *const rates[] = { "0", "50", "100", "unlimited" };
    if (!src || !t1) {
        if (src)
            nbd_close(src);
        if (t1)
            nbd_close(t1);
        return NULL;
    }
    while (!atomic_load(&T.crashed)) {
        unsigned mi = (unsigned)(tags_rnd(&rs) % NMAP);
        char *out = NULL;
        if (cli(&out, "map", "show", map_name(mi), "--json", NULL, NULL) != 0) {
            free(out);
            break;
        }
        json_t *j = json_loads(out, 0, NULL);
        free(out);
        const char *state = j ? json_string_value(json_object_get(j, "state")) : NULL;
        if (!state) {
            json_decref(j);
            break;
        }
        unsigned op = (unsigned)(tags_rnd(&rs) % 4);
        pthread_rwlock_wrlock(&T.tgt_gate[mi]);
        if (!strcmp(state, "copying") && op == 0) {
            pthread_mutex_lock(&T.lock);
            T.pit_valid[mi] = false;     /* from here the target may go offline */
            for (uint64_t i = 0; i < T.nsect; i++)
                T.v[1 + mi].s[i].unknown = true;
            pthread_mutex_unlock(&T.lock);
            if (cli(NULL, "map", "stop", map_name(mi), NULL, NULL, NULL) == 0)
                T.stops++;
        } else if (!strcmp(state, "copying") && op == 1) {
            cli(NULL, "map", "set", map_name(mi), "--copy-rate", rates[tags_rnd(&rs) % 4], NULL);
        } else if (mi == 0 && op == 2 && tags_rnd(&rs) % 3 == 0 && T.pit_valid[0] &&
                   (!strcmp(state, "copying") || json_is_true(json_object_get(j, "complete")))) {
            control_restore(src, t1, &rs);
        } else if (!strcmp(state, "idle_or_copied") || !strcmp(state, "stopped")) {
            pthread_mutex_lock(&T.lock);
            T.pit_valid[mi] = false;
            for (uint64_t i = 0; i < T.nsect; i++)
                T.v[1 + mi].s[i].unknown = true;
            pthread_mutex_unlock(&T.lock);
            control_start(mi, src);
        }
        pthread_rwlock_unlock(&T.tgt_gate[mi]);
        json_decref(j);
        usleep((useconds_t)(tags_rnd(&rs) % 20000));
    }
    nbd_close(src);
    nbd_close(t1);
    return NULL;
}

/* ------------------------------------------------------------------ check */

static void check_volume(unsigned vi, const char *why_unknown)
{
    struct nbd_handle *h = connect_vol(vi);
    char *buf = malloc(1 << 20);
    if (!h || !buf) {
        violation("cannot read volume %s after the restart (%s)", vol_names[vi],
                  h ? "no memory" : nbd_get_error());
        free(buf);
        if (h)
            nbd_close(h);
        return;
    }
    for (uint64_t off = 0; off < T.size; off += 1 << 20) {
        if (nbd_pread(h, buf, 1 << 20, off, 0) < 0) {
            violation("%s: read at %" PRIu64 " failed after the restart: %s%s", vol_names[vi],
                      off, nbd_get_error(), why_unknown);
            break;
        }
        for (uint64_t i = 0; i < (1u << 20) / SECTOR; i++) {
            uint64_t sect = off / SECTOR + i;
            struct sector *s = &T.v[vi].s[sect];
            uint64_t tag = tags_of_sector(buf + i * SECTOR, sect);
            if (!sector_ok(s, tag))
                violation("crash point %" PRIu64 ": %s sector %" PRIu64 ": holds %s %" PRIu64
                          " (written to %s), expected %" PRIu64 " or one of %u later writes",
                          T.crash_points, vol_names[vi], sect,
                          tag == UINT64_MAX ? "garbage, not a whole sector of tag" : "tag",
                          tag == UINT64_MAX ? 0 : tag,
                          tag && tag < T.tag_cap ? vol_names[T.tag_vol[tag]] : "-",
                          s->durable, s->n);
            /* From now on the sector holds what it holds. */
            s->durable = tag;
            s->n = 0;
        }
    }
    nbd_close(h);
    free(buf);
}

static void check_all(void)
{
    char *out = NULL;
    if (T.restore_pending) {
        /* A restore the crash cut short: either it took effect or not. */
        for (uint64_t i = 0; i < T.nsect; i++)
            if (!sector_ok(&T.v[0].s[i], T.pit_r[i]))
                cand_add(&T.v[0].s[i], T.pit_r[i]);
        T.restore_pending = false;
    }
    check_volume(0, "");
    for (unsigned mi = 0; mi < NMAP; mi++) {
        if (cli(&out, "map", "show", map_name(mi), "--json", NULL, NULL) != 0) {
            violation("mapping %s is gone after the restart", map_name(mi));
            free(out);
            continue;
        }
        json_t *j = json_loads(out, 0, NULL);
        free(out);
        const char *state = json_string_value(json_object_get(j, "state"));
        bool online = json_is_true(json_object_get(j, "target_online"));
        if (T.start_pending[mi] && state && !strcmp(state, "copying") && online) {
            /* A start the crash cut short took effect: its point in time is
             * the quiesced source, as it would have been. */
            for (uint64_t i = 0; i < T.nsect; i++) {
                struct sector *s = &T.v[1 + mi].s[i];
                s->durable = T.pit[mi][i];
                s->n = 0;
                s->unknown = false;
            }
            T.pit_valid[mi] = true;
        }
        T.start_pending[mi] = false;
        if (T.pit_valid[mi]) {
            if (!online)
                violation("mapping %s was started and not stopped, but came back %s with "
                          "its target offline (%s)", map_name(mi), state ? state : "?",
                          json_string_value(json_object_get(j, "invalid")) ?: "no reason");
            else
                check_volume(1 + mi, "");
        }
        json_decref(j);
    }
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr, "usage: pitcopy-crashtest --pitcopy PATH [--mode kill|power] [--points N] "
            "[--seed S] [--size MIB] [--keep]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "pitcopy", 1, 0, 'p' }, { "mode", 1, 0, 'm' }, { "points", 1, 0, 'n' },
        { "seed", 1, 0, 's' }, { "size", 1, 0, 'z' }, { "keep", 0, 0, 'k' }, { 0, 0, 0, 0 },
    };
    int o;
    T.mode = "kill";
    T.points = 20;
    T.seed = (uint64_t)time(NULL);
    T.size = 8ull << 20;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'p': T.pitcopy = optarg; break;
        case 'm': T.mode = optarg; break;
        case 'n': T.points = (unsigned)strtoul(optarg, NULL, 10); break;
        case 's': T.seed = strtoull(optarg, NULL, 10); break;
        case 'z': T.size = strtoull(optarg, NULL, 10) << 20; break;
        case 'k': T.keep = true; break;
        default: usage();
        }
    }
    if (!T.pitcopy || (strcmp(T.mode, "kill") && strcmp(T.mode, "power")) || !T.size)
        usage();
    T.power = !strcmp(T.mode, "power");
    T.nsect = T.size / SECTOR;
    T.nblk = T.size / BLOCK;
    pthread_mutex_init(&T.lock, NULL);
    /* Writer-preferring: a start's quiesce must not starve behind the writers. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&T.src_gate, &ra);
    for (unsigned m = 0; m < NMAP; m++)
        pthread_rwlock_init(&T.tgt_gate[m], &ra);
    for (unsigned i = 0; i < NVOL; i++) {
        T.v[i].s = calloc(T.nsect, sizeof *T.v[i].s);
        T.v[i].busy = calloc(T.nblk, 1);
        if (!T.v[i].s || !T.v[i].busy)
            die("out of memory");
        if (i)
            for (uint64_t k = 0; k < T.nsect; k++)
                T.v[i].s[k].unknown = true;
    }
    for (unsigned m = 0; m < NMAP; m++)
        if (!(T.pit[m] = calloc(T.nsect, 8)))
            die("out of memory");
    if (!(T.pit_r = calloc(T.nsect, 8)))
        die("out of memory");

    snprintf(T.dir, sizeof T.dir, "%s/pitcopy-crash.XXXXXX", getenv("TMPDIR") ?: "/tmp");
    if (!mkdtemp(T.dir))
        die("mkdtemp");
    snprintf(T.sock, sizeof T.sock, "%s/nbd.sock", T.dir);
    snprintf(T.log, sizeof T.log, "%s/serve.log", T.dir);
    uint64_t rs = T.seed * 2654435761u + 1;
    printf("crashtest: mode %s, %u crash points, seed %" PRIu64 ", %" PRIu64 " MiB volumes, "
           "state %s\n", T.mode, T.points, T.seed, T.size >> 20, T.dir);
    fflush(stdout);

    start_daemon();
    char size[32];
    snprintf(size, sizeof size, "%" PRIu64, T.size);
    for (unsigned i = 0; i < NVOL; i++)
        if (cli(NULL, "volume", "create", vol_names[i], "--size", size, NULL) != 0)
            die("volume create failed");
    if (cli(NULL, "map", "create", "src", "t1", "--name", "m1") != 0 ||
        cli(NULL, "map", "create", "src", "t2", "--name", "m2") != 0)
        die("map create failed");
    cli(NULL, "map", "set", "m1", "--copy-rate", "50", NULL);
    cli(NULL, "map", "set", "m2", "--copy-rate", "0", NULL);
    if (cli(NULL, "map", "create", "t1", "src", "--name", "r1") != 0)
        die("map create r1 (the restore mapping) failed");

    for (unsigned p = 0; p < T.points; p++) {
        pthread_t th[4];
        struct client cl[3];
        uint64_t crs = tags_rnd(&rs);
        atomic_store(&T.crashed, false);
        for (unsigned i = 0; i < 3; i++) {
            cl[i] = (struct client){ .id = i, .rs = tags_rnd(&rs) | 1 };
            pthread_create(&th[i], NULL, client_main, &cl[i]);
        }
        pthread_create(&th[3], NULL, control_main, &crs);
        usleep((useconds_t)(20000 + tags_rnd(&rs) % 180000));

        /* The crash. */
        if (T.power)
            kill(T.daemon, SIGUSR1);
        else
            kill(T.daemon, getenv("CRASHTEST_SIGNAL") ? atoi(getenv("CRASHTEST_SIGNAL")) : SIGKILL);
        int st;
        waitpid(T.daemon, &st, 0);
        atomic_store(&T.crashed, true);
        if (T.power && !(WIFEXITED(st) && WEXITSTATUS(st) == 137))
            violation("crash point %u: the daemon did not simulate the power loss (status %d)",
                      p, st);
        for (unsigned i = 0; i < 4; i++)
            pthread_join(th[i], NULL);
        T.crash_points++;

        start_daemon();
        uint64_t before = T.violations;
        check_all();
        if (T.violations > before && getenv("CRASHTEST_STOP")) {
            fprintf(stderr, "crashtest: stopping at the first violation; state in %s\n", T.dir);
            kill(T.daemon, SIGKILL);
            return 1;
        }
    }
    kill(T.daemon, SIGTERM);
    waitpid(T.daemon, NULL, 0);
    printf("crashtest: %" PRIu64 " crash points (%s), %" PRIu64 " writes, %" PRIu64
           " flushes, %" PRIu64 " starts, %" PRIu64 " stops, %" PRIu64 " restores: %" PRIu64
           " violations\n", T.crash_points, T.mode, T.writes, T.flushes, T.starts, T.stops,
           T.restores, T.violations);
    if (T.violations || T.keep)
        printf("crashtest: state and daemon log kept in %s\n", T.dir);
    else {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", T.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "crashtest: could not remove %s\n", T.dir);
    }
    return T.violations ? 1 : 0;
}
