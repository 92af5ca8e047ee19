/* SPDX-License-Identifier: MIT */
/*
 * tests/nbd/loadtest.c — sustained load: many NBD clients of mixed I/O for a
 * bounded time while mappings start, stop and change rate; every read
 * checked as it completes, every byte checked at the end, and the daemon's
 * memory and descriptors measured.
 *
 *   pitcopy-loadtest --pitcopy build/pitcopy [--clients 16] [--depth 4]
 *                    [--seconds 30] [--warmup 5] [--seed S] [--size MIB]
 *                    [--grain SIZE] [--rough] [--rss-bound MIB] [--keep]
 *
 * One source and two targets (mappings m1 and m2 in one chain), served by a
 * real `pitcopy serve`.  Each client is a thread with its own three NBD
 * connections (source, t1, t2), keeping up to --depth requests in flight
 * across them (libnbd aio): reads, writes, write-zeroes of 4-64 KiB (a
 * quarter of them in the first MiB, so requests meet on the same grains),
 * some FUA, and flushes.  A control thread meanwhile starts mappings (with
 * the source quiesced, or live with writes in flight), stops them (cleaning
 * into the older target), prepares and stops, and changes copy and clean
 * rates, through the real CLI.  The targets begin as plain volumes of
 * zeroes (idle_or_copied).
 *
 * The model is per 4 KiB block (every write covers whole blocks; every
 * 512-byte sector written is 32 copies of (tag, sector number), tag 0 being
 * zeroes), and the daemon is never killed, so a completed write is what a
 * read must see:
 *
 *   L1  A block has at most one write in flight, and no write starts on a
 *       block while a read of it is in flight.  So a read returns, per
 *       sector, the block's value when the read was issued or the one write
 *       in flight then.
 *   L2  A target started with the source quiesced reads as the source did;
 *       a live start's point in time lies somewhere in the `map start`
 *       call, so each target block may hold the source's value when the
 *       call began or any write to it issued before the call returned: its
 *       candidates, in the order written.  The first read that sees one
 *       candidate in the whole block settles it; a block mixing two is
 *       torn.  The settled blocks must agree on one instant H: a write seen
 *       (or superseded) in one block was issued before H, one not seen in
 *       another (a later candidate) completed after H, so no write seen may
 *       have been issued after a write not seen completed; and no write may
 *       be seen in one block and not in another (a torn write).  Zeroes
 *       name no write: a block showing 0 with several write-zeroes (or the
 *       creation) among its candidates settles without telling which.
 *   L3  A target is online (the model holds, every request succeeds),
 *       changing (the control thread is starting, stopping or preparing
 *       its mapping: requests may fail), or offline (stopped with an
 *       incomplete image: every read and write must fail).  By default the
 *       control thread first waits out the target's requests in flight and
 *       lets no new one in until the change is done.  With --rough clients
 *       go on through every change: a read across a start is not checked
 *       (the start replaced what it read); a target write that crossed a
 *       start, or was issued during one, or failed, may or may not have
 *       landed, so it joins the block's candidates.  A stop that ends with
 *       the image complete (idle_or_copied, or stopped after prepare) leaves
 *       the target online with the same contents.
 *   L4  Every request to the source, and to an online target, succeeds: an
 *       error, a dead connection or a daemon that exits is a failure.
 *
 * After the load: every block of the source and of every online target is
 * read and checked; then every mapping still copying copies at full rate to
 * idle_or_copied and every online target is checked again (background copy
 * and cleaning wrote the right data).
 *
 * Memory and descriptors: the daemon's resident memory (VmRSS less its I/O
 * buffer arenas, see proc_rss_kib) and the entries of /proc/PID/fd are taken
 * after --warmup seconds of load (control thread paused, clients running)
 * and again at the end of the load.  The descriptors must be the same ones
 * (the same 3 x --clients connections and the control thread's, the same
 * volume, metadata and io_uring files), and again the same as before the
 * first client came once every client has gone.  Resident memory may grow
 * by --rss-bound MiB, 8 by default: by the end of the warm-up every
 * connection, worker and buffer the load uses exists and the allocator's
 * caches are warm; a request holds nothing after its reply and a start
 * only a bitmap of 256 grains, so what is left is allocator noise (under
 * 1.5 MiB measured over 30-150 s).  8 MiB is a leak of about 12 bytes per
 * request over a 30 s run (700 k requests).  Under ASan its quarantine of
 * freed memory (ASAN_OPTIONS quarantine_size_mb, 256 MiB by default) is
 * added to the bound; under TSan memory is not bounded.
 *
 * Prints ops/s, bytes verified, RSS and descriptors; exits 0 when all
 * held, 1 on any violation, 2 when the test itself could not run.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <libnbd.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
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
#define MAXNB       16u             /* 64 KiB per request at most */
#define MAXDEPTH    16u
#define NVOL        3               /* src, t1, t2 */
#define NMAP        2               /* m1: src -> t1, m2: src -> t2 */
#define NCAND       24              /* candidates of a block after a live start */
#ifndef STALL_S
#define STALL_S     60              /* no request completing for this long: hung */
#endif

static const char *const vol_names[NVOL] = { "src", "t1", "t2" };
static const char *const map_names[NMAP] = { "m1", "m2" };

/*
 * Writes are numbered from 1 (write ids); id 0 is what a volume was created
 * with.  A sector written by write id holds the tag id, or 0 for a
 * write-zeroes (val()).
 */
struct tinfo {
    uint32_t issue, done;       /* T.seq when issued and when seen complete (0: not yet) */
    uint32_t cut_epoch[NMAP];   /* the start of the mapping cut_flags speak of (L2) */
    uint32_t b0;                /* its first block ... */
    uint8_t  nb;                /* ... and how many */
    uint8_t  vol;
    uint8_t  zero;
    uint8_t  cut_flags;         /* CUT_IN(mi): in that start's point in time; CUT_OUT(mi): not */
};
#define CUT_IN(mi)  (1u << (2 * (mi)))
#define CUT_OUT(mi) (2u << (2 * (mi)))

/* What a block may hold: one of id[0..n), in the order written; more than
 * one after a live start (L2) or a target write that may not have landed
 * (L3). */
struct cands {
    uint64_t id[NCAND];
    uint8_t  n;                 /* >= 1 (a map's tw may be empty) */
    bool     any;               /* more candidates than NCAND: any tag written */
};

struct blk {
    struct cands v;
    bool     wbusy;             /* a write in flight (L1) ... */
    uint64_t wid;               /* ... this one */
    uint32_t readers;           /* reads in flight (L1) */
    uint32_t gen;               /* bumped whenever v changes */
};

/* A target's point in time as its settled blocks tell it (L2). */
struct cut {
    uint32_t epoch;
    uint32_t open_seq, close_seq;               /* T.seq when `map start` began and returned */
    bool     live;
    uint64_t max_in_issue, in_id, in_blk;       /* the latest-issued write seen */
    uint64_t min_out_done, out_id, out_blk;     /* the earliest-completed write not seen */
    bool     reported;
};

/* A target's state as the control thread knows it (L3). */
enum tstate {
    T_ONLINE,                   /* the model holds; every request must succeed */
    T_CHANGING,                 /* a start, stop or prepare is under way: requests may fail */
    T_OFFLINE,                  /* stopped: every request must fail; contents unknown */
};

struct vol {
    struct blk *b;
    bool     open;              /* clients may issue to it (L3) */
    enum tstate st;
    uint32_t tseq;              /* changes of st so far */
    uint32_t epoch;             /* starts begun and ended: odd while one is under way */
    unsigned inflight;          /* client requests in flight */
    struct cut cut;             /* targets: since the last start */
};

struct map {
    bool          window;       /* a live start is in progress: source writes join pit */
    bool          twindow;      /* a start is in progress: target writes join tw */
    struct cands *pit;          /* per block: the target's candidates at the start */
    struct cands *tw;           /* per block: target writes issued during the start */
    bool          stop_pending; /* stopped by us; not yet seen stopped or idle_or_copied */
};

enum op { OP_NONE, OP_READ, OP_WRITE, OP_ZERO, OP_FLUSH };
static const char *const op_names[] = { "none", "read", "write", "write-zeroes", "flush" };

struct slot {
    enum op      op;
    unsigned     vi, nb;
    enum tstate  st0;           /* the volume's st, tseq and epoch at issue */
    uint32_t     tseq0, epoch0;
    uint64_t     b0, wid;
    bool         fua;
    int64_t      cookie;
    char        *buf;
    struct timespec t0;
    /* A read's snapshot of its blocks at issue (L1). */
    struct cands snap[MAXNB];
    bool         snap_w[MAXNB];
    uint64_t     snap_wid[MAXNB];
    uint32_t     snap_gen[MAXNB];
};

struct client {
    unsigned id;
    uint64_t rs;
    struct nbd_handle *h[NVOL];
    struct slot s[MAXDEPTH];
    unsigned nactive;
};

static struct {
    const char *pitcopy;
    unsigned    clients, depth, seconds, warmup;
    uint64_t    seed, size, nblk, rss_bound;
    const char *grain;          /* map create --grain, NULL: the default */
    char        dir[256], sock[300], log[300];
    bool        keep;
    bool        rough;          /* target I/O goes on across starts and stops (L3) */
    pid_t       daemon;

    pthread_mutex_t lock;       /* everything below */
    pthread_cond_t  cond;       /* a volume's inflight reached 0 */
    struct vol  v[NVOL];
    struct map  m[NMAP];
    uint32_t    seq;            /* write issues and completions so far */
    uint32_t    epoch;          /* starts so far */
    uint64_t    next_id;
    struct tinfo *ti;           /* per write id */
    uint64_t    ti_cap;
    bool        stop;           /* clients: drain and leave */
    bool        fatal;          /* a connection died: give up */

    pthread_mutex_t ctl_pause;  /* held by the control thread per step; main takes it to measure */
    bool        ctl_stop;

    /* Counters (under lock). */
    uint64_t    ops[5], bytes_read, bytes_written, bytes_verified, settled, settled_cut;
    uint64_t    overflow, busy_retries, failed_ok, unchecked;
    uint64_t    starts, live_starts, stops, stops_complete, prep_stops, cli_calls;
    double      max_lat;        /* the slowest request ... */
    char        max_lat_what[96];   /* ... what it was */

    pthread_mutex_t vlock;      /* violations (taken inside lock) */
    uint64_t    violations;
} T;

/* ------------------------------------------------------------------ util */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&T.vlock);
    if (T.violations++ < 20) {
        va_start(ap, fmt);
        fprintf(stderr, "VIOLATION: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    }
    pthread_mutex_unlock(&T.vlock);
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadtest: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (T.daemon > 0)
        kill(T.daemon, SIGKILL);
    fprintf(stderr, "loadtest: state and daemon log kept in %s\n", T.dir);
    exit(2);
}

/* Run the CLI with a NULL-terminated argument list; its exit status, and
 * its stdout in *out (malloc'd) when asked. */
static int cli(char **out, ...)
{
    const char *argv[16] = { T.pitcopy, "--state-dir", T.dir };
    unsigned n = 3;
    va_list ap;
    va_start(ap, out);
    while (n < 15 && (argv[n] = va_arg(ap, const char *)))
        n++;
    va_end(ap);
    argv[n] = NULL;

    int p[2], st;
    pid_t pid;
    posix_spawn_file_actions_t fa;
    if (pipe2(p, O_CLOEXEC) < 0)
        die("pipe: %m");
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&pid, T.pitcopy, &fa, NULL, (char **)argv, environ) != 0)
        die("cannot run %s", T.pitcopy);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(p[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
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
    pthread_mutex_lock(&T.lock);
    T.cli_calls++;
    pthread_mutex_unlock(&T.lock);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* A mapping's state ("?" if the CLI failed), and whether its target is online. */
static void map_state(unsigned mi, char *state, size_t len, bool *online)
{
    char *out = NULL;
    snprintf(state, len, "?");
    if (online)
        *online = false;
    if (cli(&out, "map", "show", map_names[mi], "--json", NULL) == 0) {
        json_t *j = json_loads(out, 0, NULL);
        const char *s = json_string_value(json_object_get(j, "state"));
        if (s)
            snprintf(state, len, "%s", s);
        if (online)
            *online = json_is_true(json_object_get(j, "target_online"));
        json_decref(j);
    }
    free(out);
}

static void start_daemon(void)
{
    const char *argv[] = { T.pitcopy, "serve", "--state-dir", T.dir, NULL };
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, T.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (posix_spawn(&T.daemon, T.pitcopy, &fa, NULL, (char **)argv, environ) != 0)
        die("cannot start pitcopy serve");
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 1000; i++) {
        if (cli(NULL, "status", NULL) == 0)
            return;
        int st;
        if (waitpid(T.daemon, &st, WNOHANG) == T.daemon) {
            T.daemon = 0;
            die("pitcopy serve exited at start; its log: %s", T.log);
        }
        usleep(10000);
    }
    die("pitcopy serve did not answer within 10 s");
}

/* The daemon is still running (else a violation, once). */
static bool daemon_alive(void)
{
    int st;
    if (T.daemon <= 0)
        return false;
    if (waitpid(T.daemon, &st, WNOHANG) != T.daemon)
        return true;
    violation("pitcopy serve died under load (%s %d); its log: %s",
              WIFEXITED(st) ? "exit status" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), T.log);
    T.daemon = 0;
    return false;
}

/* The daemon stopped answering: show its threads (gdb, when there is one)
 * and kill it, so that the clients and a control call waiting on it end. */
static void daemon_hung(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v gdb >/dev/null && timeout 60 gdb -p %d -batch "
             "-ex 'thread apply all bt' >&2 2>/dev/null", (int)T.daemon);
    if (system(cmd) != 0)
        fprintf(stderr, "loadtest: no stacks of the hung daemon (gdb missing or failed)\n");
    kill(T.daemon, SIGKILL);
    waitpid(T.daemon, NULL, 0);
    T.daemon = 0;
    pthread_mutex_lock(&T.lock);
    T.fatal = true;
    pthread_cond_broadcast(&T.cond);
    pthread_mutex_unlock(&T.lock);
}

/* ------------------------------------------------------------------ /proc */

/*
 * The daemon's resident memory outside its I/O buffer arenas, in KiB (and
 * the arenas' part in *arena).  Each worker's pool arena (io/pool.c) is one
 * anonymous mapping advised MADV_HUGEPAGE ("hg" in smaps' VmFlags, which
 * nothing else in the daemon asks for).  Registered with io_uring it is
 * pinned, all resident from the start; with libaio its pages are touched as
 * the pool's high-water mark rises, up to the arena's size: bounded by
 * design, not a leak.
 */
static uint64_t proc_rss_kib(uint64_t *arena)
{
    char path[64], line[512];
    uint64_t total = 0, rss = 0, in_arena = 0;
    bool anon = false;
    snprintf(path, sizeof path, "/proc/%d/status", (int)T.daemon);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %" SCNu64, &total) == 1)
            break;
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/smaps", (int)T.daemon);
    if (!(f = fopen(path, "r")))
        return total;
    while (fgets(line, sizeof line, f)) {
        unsigned long long a, b, ino;
        char perm[8], dev[16];
        int end = 0;
        if (sscanf(line, "%llx-%llx %7s %*x %15s %llu %n", &a, &b, perm, dev, &ino, &end) == 5 &&
            end > 0) {
            anon = ino == 0 && (line[end] == '\n' || line[end] == 0);
        } else if (sscanf(line, "Rss: %" SCNu64, &rss) == 1) {
            continue;
        } else if (!strncmp(line, "VmFlags:", 8) && anon && strstr(line, " hg")) {
            in_arena += rss;
        }
    }
    fclose(f);
    if (arena)
        *arena = in_arena;
    return total - in_arena;
}

/*
 * MiB of memory the daemon may gain beyond --rss-bound: 0; under
 * AddressSanitizer (libasan mapped) its quarantine of freed memory,
 * quarantine_size_mb from ASAN_OPTIONS, 256 by default; under
 * ThreadSanitizer, whose shadow and history grow with the run, no bound
 * (UINT64_MAX).
 */
static uint64_t proc_sanitizer_slack_mib(void)
{
    char path[64], line[512];
    bool asan = false, tsan = false;
    snprintf(path, sizeof path, "/proc/%d/maps", (int)T.daemon);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    while (!asan && !tsan && fgets(line, sizeof line, f)) {
        asan = strstr(line, "/libasan.") != NULL;
        tsan = strstr(line, "/libtsan.") != NULL;
    }
    fclose(f);
    if (tsan)
        return UINT64_MAX;
    if (!asan)
        return 0;
    const char *o = getenv("ASAN_OPTIONS"), *q = o ? strstr(o, "quarantine_size_mb=") : NULL;
    return q ? strtoull(q + strlen("quarantine_size_mb="), NULL, 10) : 256;
}

/* The daemon's descriptors, one "N -> target" line each, sorted by N. */
struct fdlist {
    unsigned n;
    char     line[2048][128];
};

static int fd_cmp(const void *a, const void *b)
{
    return atoi(a) - atoi(b);
}

static void proc_fds(struct fdlist *l)
{
    char path[64], p2[320], target[100];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)T.daemon);
    l->n = 0;
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) && l->n < 2048) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p2, sizeof p2, "%s/%s", path, de->d_name);
        ssize_t n = readlink(p2, target, sizeof target - 1);
        target[n < 0 ? 0 : n] = 0;
        snprintf(l->line[l->n++], sizeof l->line[0], "%d -> %s", atoi(de->d_name), target);
    }
    closedir(d);
    qsort(l->line, l->n, sizeof l->line[0], fd_cmp);
}

static bool fds_equal(const struct fdlist *a, const struct fdlist *b)
{
    if (a->n != b->n)
        return false;
    for (unsigned i = 0; i < a->n; i++)
        if (strcmp(a->line[i], b->line[i]))
            return false;
    return true;
}

static bool fds_has(const struct fdlist *l, const char *line)
{
    for (unsigned i = 0; i < l->n; i++)
        if (!strcmp(l->line[i], line))
            return true;
    return false;
}

/* What b has that a has not (+) and the reverse (-). */
static void fds_diff(const char *what, const struct fdlist *a, const struct fdlist *b)
{
    fprintf(stderr, "  descriptors %s: %u before, %u after\n", what, a->n, b->n);
    for (unsigned i = 0; i < a->n; i++)
        if (!fds_has(b, a->line[i]))
            fprintf(stderr, "    - %s\n", a->line[i]);
    for (unsigned i = 0; i < b->n; i++)
        if (!fds_has(a, b->line[i]))
            fprintf(stderr, "    + %s\n", b->line[i]);
}

/* Descriptors once the count has settled (a CLI's connection that just
 * closed is noticed by the daemon a moment later). */
static void proc_fds_settled(struct fdlist *l)
{
    static struct fdlist prev;
    proc_fds(l);
    for (int i = 0; i < 50; i++) {
        usleep(20000);
        prev = *l;
        proc_fds(l);
        if (fds_equal(&prev, l))
            return;
    }
}

/* ------------------------------------------------------------------ model */

/* What a sector written by id holds (under lock). */
static uint64_t val(uint64_t id)
{
    return T.ti[id].zero ? 0 : id;
}

static bool cands_has_locked(const struct cands *c, uint64_t tag)
{
    for (unsigned k = 0; k < c->n; k++)
        if (val(c->id[k]) == tag)
            return true;
    return c->any && (tag == 0 || (tag <= T.next_id && !T.ti[tag].zero));
}

static void cands_add(struct cands *c, uint64_t id)
{
    for (unsigned k = 0; k < c->n; k++)
        if (c->id[k] == id)
            return;
    if (c->any)
        return;
    if (c->n == NCAND) {
        c->any = true;
        T.overflow++;
    } else {
        c->id[c->n++] = id;
    }
}

static void cands_set(struct cands *c, uint64_t id)
{
    c->id[0] = id;
    c->n = 1;
    c->any = false;
}

static const char *where_locked(uint64_t tag)
{
    if (tag == 0)
        return "zeroes";
    if (tag == UINT64_MAX)
        return "garbage, not a whole sector of one tag";
    if (tag > T.next_id || T.ti[tag].zero)
        return "never written";
    return vol_names[T.ti[tag].vol];
}

static void cands_str_locked(const struct cands *c, char *out, size_t len)
{
    size_t n = 0;
    out[0] = 0;
    for (unsigned k = 0; k < c->n && n + 24 < len; k++)
        n += (size_t)snprintf(out + n, len - n, "%s%" PRIu64, k ? " or " : "", val(c->id[k]));
    if (c->any && n + 16 < len)
        snprintf(out + n, len - n, " or any");
}

/*
 * Check one 4 KiB block read from volume vi at block blk against what it
 * may hold (ok, plus write wid if wbusy, L1).  Returns the one value other
 * than wid's the block showed (L2), wid's if it showed only that, or
 * UINT64_MAX when a sector was wrong or the block mixed two old values.
 */
static uint64_t check_block_locked(const char *p, unsigned vi, uint64_t blk,
                                   const struct cands *ok, bool wbusy, uint64_t wid,
                                   const char *when)
{
    uint64_t seen = UINT64_MAX, wval = wbusy ? val(wid) : UINT64_MAX;
    bool only_w = true;
    for (unsigned i = 0; i < SPB; i++) {
        uint64_t sect = blk * SPB + i, tag = tags_of_sector(p + i * SECTOR, sect);
        if (tag == wval)
            continue;
        only_w = false;
        if (!cands_has_locked(ok, tag)) {
            char want[400], inflight[64] = "";
            cands_str_locked(ok, want, sizeof want);
            if (wbusy)
                snprintf(inflight, sizeof inflight, " or %" PRIu64 " (in flight)", wval);
            violation("%s: %s sector %" PRIu64 " (block %" PRIu64 "): holds tag %" PRIu64
                      " (%s), expected %s%s", when, vol_names[vi], sect, blk,
                      tag == UINT64_MAX ? 0 : tag, where_locked(tag), want, inflight);
            return UINT64_MAX;
        }
        if (seen == UINT64_MAX) {
            seen = tag;
        } else if (seen != tag) {
            violation("%s: %s block %" PRIu64 " is torn: its sectors hold both %" PRIu64
                      " and %" PRIu64 "%s", when, vol_names[vi], blk, seen, tag,
                      ok->n > 1 ? " (candidates of a live start)" : "");
            return UINT64_MAX;
        }
    }
    return only_w ? wval : seen;
}

/* What a cut violation needs to be understood: the start, the writes. */
static void cut_explain_locked(unsigned mi, uint64_t id1, uint64_t id2)
{
    const struct cut *cu = &T.v[1 + mi].cut;
    fprintf(stderr, "  the start of %s: %s, `map start` from seq %u to %u\n", map_names[mi],
            cu->live ? "live" : "quiesced", cu->open_seq, cu->close_seq);
    uint64_t ids[2] = { id1, id2 };
    for (unsigned i = 0; i < 2; i++) {
        const struct tinfo *t = &T.ti[ids[i]];
        if (!ids[i])
            continue;
        fprintf(stderr, "  write %" PRIu64 ": %s%s blocks %u-%u, issued at seq %u, completed at "
                "%u\n", ids[i], t->zero ? "zeroes, " : "", vol_names[t->vol], t->b0,
                t->b0 + t->nb - 1, t->issue, t->done);
    }
}

/* Write id is in (in) or not in (!in) target mi's point in time (L2);
 * false if that contradicts what other blocks said. */
static bool cut_mark_locked(unsigned mi, uint64_t id, uint64_t blk, bool in)
{
    struct cut *cu = &T.v[1 + mi].cut;
    struct tinfo *t = &T.ti[id];
    bool ok = true;
    if (id == 0)
        return true;               /* the volume's creation: not one write */
    if (t->cut_epoch[mi] != cu->epoch) {
        t->cut_epoch[mi] = cu->epoch;
        t->cut_flags &= (uint8_t)~(CUT_IN(mi) | CUT_OUT(mi));
    }
    if (t->cut_flags & (in ? CUT_OUT(mi) : CUT_IN(mi))) {
        violation("%s: write %" PRIu64 " to the source is torn by the start of %s: in its "
                  "point in time at one block and not at another (block %" PRIu64 ", %s)",
                  vol_names[1 + mi], id, map_names[mi], blk, in ? "in" : "not in");
        cut_explain_locked(mi, id, 0);
        ok = false;
    }
    t->cut_flags |= (uint8_t)(in ? CUT_IN(mi) : CUT_OUT(mi));
    if (in && t->issue > cu->max_in_issue) {
        cu->max_in_issue = t->issue;
        cu->in_id = id;
        cu->in_blk = blk;
    }
    if (!in && t->done && t->done < cu->min_out_done) {
        cu->min_out_done = t->done;
        cu->out_id = id;
        cu->out_blk = blk;
    }
    if (cu->max_in_issue > cu->min_out_done && !cu->reported) {
        cu->reported = true;
        violation("%s's point in time is not one instant: it holds write %" PRIu64
                  " (block %" PRIu64 ", issued at %" PRIu64 ") but not write %" PRIu64
                  " (block %" PRIu64 "), which completed before that (at %" PRIu64 ")",
                  vol_names[1 + mi], cu->in_id, cu->in_blk, cu->max_in_issue, cu->out_id,
                  cu->out_blk, cu->min_out_done);
        cut_explain_locked(mi, cu->in_id, cu->out_id);
        ok = false;
    }
    return ok;
}

/* A read showed block blk of volume vi holding value seen: if it had
 * candidates, it holds that one from now on (L2). */
static void settle_locked(unsigned vi, uint64_t blk, uint64_t seen)
{
    struct blk *b = &T.v[vi].b[blk];
    unsigned match = 0, at = 0;
    if (b->v.n == 1 && !b->v.any)
        return;
    for (unsigned k = 0; k < b->v.n; k++)
        if (val(b->v.id[k]) == seen) {
            match++;
            at = k;
        }
    T.settled++;
    /* Only the source's writes speak of the point in time: a target write
     * among the candidates (L3) landed after it. */
    if (match == 1 && !b->v.any && vi > 0 && T.ti[b->v.id[at]].vol == 0) {
        bool ok = true;
        for (unsigned k = 0; k < b->v.n; k++)
            if (T.ti[b->v.id[k]].vol == 0)
                ok &= cut_mark_locked(vi - 1, b->v.id[k], blk, k <= at);
        if (!ok) {
            char c[400];
            cands_str_locked(&b->v, c, sizeof c);
            fprintf(stderr, "  %s block %" PRIu64 " showed %" PRIu64 " of its candidates %s\n",
                    vol_names[vi], blk, seen, c);
        }
        T.settled_cut++;
    }
    /* Several candidates of value 0 (write-zeroes): the block holds one of
     * them, and no later read may say which (id 0 speaks of no write). */
    cands_set(&b->v, match == 1 ? b->v.id[at] : match ? 0 : seen);
    b->gen++;
}

/* ------------------------------------------------------------------ clients */

static struct nbd_handle *connect_vol(unsigned vi)
{
    struct nbd_handle *h = nbd_create();
    if (!h)
        return NULL;
    if (nbd_set_export_name(h, vol_names[vi]) < 0 || nbd_connect_unix(h, T.sock) < 0) {
        fprintf(stderr, "loadtest: cannot connect to %s: %s\n", vol_names[vi], nbd_get_error());
        nbd_close(h);
        return NULL;
    }
    return h;
}

/* Choose and reserve a request for slot s (under T.lock); false: nothing now. */
static bool pick_locked(struct client *c, struct slot *s)
{
    uint64_t r = tags_rnd(&c->rs);
    unsigned vi = r % 4 < 2 ? 0 : (unsigned)(r % 4) - 1;
    if (!T.v[vi].open || (T.v[vi].st != T_ONLINE && !T.rough))
        vi = 0;
    if (!T.v[vi].open)
        return false;
    struct vol *v = &T.v[vi];
    s->st0 = v->st;
    s->tseq0 = v->tseq;
    s->epoch0 = v->epoch;

    unsigned x = (unsigned)(tags_rnd(&c->rs) % 100);
    s->op = x < 50 ? OP_READ : x < 88 ? OP_WRITE : x < 93 ? OP_ZERO : OP_FLUSH;
    s->vi = vi;
    s->fua = tags_rnd(&c->rs) % 8 == 0;
    s->nb = tags_rnd(&c->rs) % 2 ? 1 : 1 + (unsigned)(tags_rnd(&c->rs) % MAXNB);
    uint64_t span = tags_rnd(&c->rs) % 4 == 0 && T.nblk > 256 ? 256 : T.nblk;
    s->b0 = tags_rnd(&c->rs) % (span - s->nb + 1);

    switch (s->op) {
    case OP_FLUSH:
        break;
    case OP_READ:
        for (unsigned i = 0; i < s->nb; i++) {
            struct blk *b = &v->b[s->b0 + i];
            b->readers++;
            s->snap[i] = b->v;
            s->snap_w[i] = b->wbusy;
            s->snap_wid[i] = b->wid;
            s->snap_gen[i] = b->gen;
        }
        break;
    case OP_WRITE:
    case OP_ZERO:
        for (unsigned i = 0; i < s->nb; i++) {
            struct blk *b = &v->b[s->b0 + i];
            if (b->wbusy || b->readers) {
                T.busy_retries++;
                return false;      /* L1: pick again next time round */
            }
        }
        s->wid = ++T.next_id;
        if (s->wid >= T.ti_cap) {
            T.ti_cap *= 2;
            T.ti = realloc(T.ti, T.ti_cap * sizeof *T.ti);
            if (!T.ti)
                abort();
        }
        T.ti[s->wid] = (struct tinfo){ .issue = ++T.seq, .vol = (uint8_t)vi,
                                       .zero = s->op == OP_ZERO, .b0 = (uint32_t)s->b0,
                                       .nb = (uint8_t)s->nb };
        for (unsigned i = 0; i < s->nb; i++) {
            struct blk *b = &v->b[s->b0 + i];
            b->wbusy = true;
            b->wid = s->wid;
            for (unsigned mi = 0; vi == 0 && mi < NMAP; mi++)
                if (T.m[mi].window)
                    cands_add(&T.m[mi].pit[s->b0 + i], s->wid);   /* L2 */
            if (vi > 0 && T.m[vi - 1].twindow)
                cands_add(&T.m[vi - 1].tw[s->b0 + i], s->wid);    /* L3 */
        }
        break;
    default:
        abort();
    }
    v->inflight++;
    return true;
}

static void complete(struct client *c, struct slot *s, int err)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double lat = (double)(t1.tv_sec - s->t0.tv_sec) + (double)(t1.tv_nsec - s->t0.tv_nsec) / 1e9;
    char when[64];

    snprintf(when, sizeof when, "client %u read", c->id);

    pthread_mutex_lock(&T.lock);
    struct vol *v = &T.v[s->vi];
    /* L3: a target that changed state under the request may fail it; one
     * that was offline all along must (a FLUSH syncs the file whatever). */
    bool changed = s->tseq0 != v->tseq;
    bool same_contents = s->epoch0 == v->epoch && !(s->epoch0 & 1);
    bool may_fail = s->st0 != T_ONLINE || v->st != T_ONLINE || changed;
    bool must_fail = s->st0 == T_OFFLINE && !changed && s->op != OP_FLUSH;
    if (err && may_fail)
        T.failed_ok++;
    else if (err)
        violation("client %u: %s of %u KiB at %" PRIu64 " KiB on %s%s failed: %s", c->id,
                  op_names[s->op], s->nb * 4, s->b0 * 4, vol_names[s->vi],
                  s->fua ? " (FUA)" : "", strerror(err));
    else if (must_fail)
        violation("client %u: %s of %u KiB at %" PRIu64 " KiB on %s succeeded though its "
                  "mapping %s is stopped and the target offline", c->id, op_names[s->op],
                  s->nb * 4, s->b0 * 4, vol_names[s->vi], map_names[s->vi - 1]);
    switch (s->op) {
    case OP_READ:
        for (unsigned i = 0; i < s->nb; i++) {
            struct blk *b = &v->b[s->b0 + i];
            b->readers--;
            if (err || must_fail)
                continue;
            if (!same_contents || s->st0 == T_OFFLINE) {
                T.unchecked += BLOCK;   /* a start replaced what it read (L3) */
                continue;
            }
            uint64_t seen = check_block_locked(s->buf + (size_t)i * BLOCK, s->vi, s->b0 + i,
                                               &s->snap[i], s->snap_w[i], s->snap_wid[i],
                                               when);
            /* L2: a block that showed one candidate holds it, unless a
             * write has replaced the candidates since. */
            if (seen != UINT64_MAX && b->gen == s->snap_gen[i] &&
                !(s->snap_w[i] && seen == val(s->snap_wid[i])))
                settle_locked(s->vi, s->b0 + i, seen);
            T.bytes_verified += BLOCK;
        }
        T.bytes_read += (uint64_t)s->nb * BLOCK;
        break;
    case OP_WRITE:
    case OP_ZERO:
        T.ti[s->wid].done = ++T.seq;
        for (unsigned i = 0; i < s->nb; i++) {
            struct blk *b = &v->b[s->b0 + i];
            b->wbusy = false;
            /* A write that failed may or may not have landed; one that
             * crossed a start may have landed before it (L3). */
            if (err || !same_contents)
                cands_add(&b->v, s->wid);
            else
                cands_set(&b->v, s->wid);
            b->gen++;
        }
        T.bytes_written += (uint64_t)s->nb * BLOCK;
        break;
    case OP_FLUSH:
        break;
    default:
        abort();
    }
    T.ops[s->op]++;
    if (lat > T.max_lat) {
        T.max_lat = lat;
        if (s->op == OP_FLUSH)
            snprintf(T.max_lat_what, sizeof T.max_lat_what, "flush of %s", vol_names[s->vi]);
        else
            snprintf(T.max_lat_what, sizeof T.max_lat_what, "%s%s of %u KiB on %s",
                     op_names[s->op], s->fua ? " (FUA)" : "", s->nb * 4, vol_names[s->vi]);
    }
    if (--v->inflight == 0)
        pthread_cond_broadcast(&T.cond);
    pthread_mutex_unlock(&T.lock);
    s->op = OP_NONE;
    c->nactive--;
}

static void issue(struct client *c, struct slot *s)
{
    pthread_mutex_lock(&T.lock);
    bool ok = !T.stop && pick_locked(c, s);
    pthread_mutex_unlock(&T.lock);
    if (!ok) {
        s->op = OP_NONE;
        return;
    }
    c->nactive++;
    struct nbd_handle *h = c->h[s->vi];
    size_t len = (size_t)s->nb * BLOCK;
    uint64_t off = s->b0 * BLOCK;
    uint32_t fl = s->fua ? LIBNBD_CMD_FLAG_FUA : 0;
    clock_gettime(CLOCK_MONOTONIC, &s->t0);
    switch (s->op) {
    case OP_READ:
        s->fua = false;
        s->cookie = nbd_aio_pread(h, s->buf, len, off, NBD_NULL_COMPLETION, 0);
        break;
    case OP_WRITE:
        tags_fill(s->buf, s->b0 * SPB, s->nb * SPB, s->wid);
        s->cookie = nbd_aio_pwrite(h, s->buf, len, off, NBD_NULL_COMPLETION, fl);
        break;
    case OP_ZERO:
        s->cookie = nbd_aio_zero(h, len, off, NBD_NULL_COMPLETION, fl);
        break;
    case OP_FLUSH:
        s->fua = false;
        s->cookie = nbd_aio_flush(h, NBD_NULL_COMPLETION, 0);
        break;
    default:
        abort();
    }
    if (s->cookie < 0) {
        int e = nbd_get_errno() ?: EIO;
        fprintf(stderr, "loadtest: client %u: %s\n", c->id, nbd_get_error());
        complete(c, s, e);
    }
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    for (unsigned i = 0; i < T.depth; i++)
        if (posix_memalign((void **)&c->s[i].buf, 4096, MAXNB * BLOCK))
            abort();
    for (;;) {
        pthread_mutex_lock(&T.lock);
        bool stop = T.stop || T.fatal, fatal = T.fatal;
        pthread_mutex_unlock(&T.lock);
        if (fatal || (stop && c->nactive == 0))
            break;
        for (unsigned i = 0; i < T.depth && !stop; i++)
            if (c->s[i].op == OP_NONE)
                issue(c, &c->s[i]);

        struct pollfd pf[NVOL];
        for (unsigned i = 0; i < NVOL; i++) {
            unsigned dir = nbd_aio_get_direction(c->h[i]);
            pf[i].fd = nbd_aio_get_fd(c->h[i]);
            pf[i].events = (dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
                           (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0);
            pf[i].revents = 0;
            if (pf[i].fd < 0 || nbd_aio_is_dead(c->h[i]) || nbd_aio_is_closed(c->h[i])) {
                violation("client %u: the connection to %s died: %s", c->id, vol_names[i],
                          nbd_get_error() ?: "closed");
                pthread_mutex_lock(&T.lock);
                T.fatal = true;
                pthread_cond_broadcast(&T.cond);
                pthread_mutex_unlock(&T.lock);
                goto out;
            }
        }
        if (c->nactive == 0) {
            usleep(500);          /* gates closed or blocks busy: try again soon */
            continue;
        }
        int n = poll(pf, NVOL, 100);
        if (n < 0 && errno != EINTR) {
            perror("poll");
            abort();
        }
        for (unsigned i = 0; i < NVOL && n > 0; i++) {
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
                nbd_aio_notify_read(c->h[i]);
            else if (pf[i].revents & POLLOUT)
                nbd_aio_notify_write(c->h[i]);
        }
        for (unsigned i = 0; i < T.depth; i++) {
            struct slot *s = &c->s[i];
            if (s->op == OP_NONE)
                continue;
            int r = nbd_aio_command_completed(c->h[s->vi], (uint64_t)s->cookie);
            if (r == 0)
                continue;
            complete(c, s, r < 0 ? (nbd_get_errno() ?: EIO) : 0);
        }
    }
out:
    for (unsigned i = 0; i < T.depth; i++)
        free(c->s[i].buf);
    return NULL;
}

/* ------------------------------------------------------------------ control */

/* Close volume vi's gate and wait for its client I/O in flight (L3). */
static void gate_close(unsigned vi)
{
    pthread_mutex_lock(&T.lock);
    T.v[vi].open = false;
    while (T.v[vi].inflight && !T.fatal)
        pthread_cond_wait(&T.cond, &T.lock);
    pthread_mutex_unlock(&T.lock);
}

static void gate_open(unsigned vi)
{
    pthread_mutex_lock(&T.lock);
    T.v[vi].open = true;
    pthread_mutex_unlock(&T.lock);
}

/* Target ti is about to change (L3): its requests may fail from now on;
 * unless --rough, none is in flight or issued until it has changed. */
static void change_begin(unsigned ti)
{
    pthread_mutex_lock(&T.lock);
    T.v[ti].st = T_CHANGING;
    T.v[ti].tseq++;
    pthread_mutex_unlock(&T.lock);
    if (!T.rough)
        gate_close(ti);
}

static void change_end(unsigned ti, enum tstate st)
{
    pthread_mutex_lock(&T.lock);
    T.v[ti].st = st;
    T.v[ti].tseq++;
    T.v[ti].open = T.rough || st == T_ONLINE;
    pthread_mutex_unlock(&T.lock);
}

static void control_start(unsigned mi, uint64_t *rs, struct nbd_handle *src)
{
    unsigned ti = 1 + mi;
    bool live = tags_rnd(rs) % 2, quiesce = !live;
    struct map *m = &T.m[mi];

    pthread_mutex_lock(&T.lock);
    for (uint64_t b = 0; b < T.nblk; b++)
        m->tw[b] = (struct cands){ .n = 0 };
    m->twindow = true;
    T.v[ti].epoch++;            /* odd: what the target holds is about to change */
    pthread_mutex_unlock(&T.lock);
    change_begin(ti);
    /* A live start prepares first (cleaning out of the chain, the flush):
     * the window of L2 is then the start alone. */
    if ((live || tags_rnd(rs) % 2) && cli(NULL, "map", "prepare", map_names[mi], NULL) != 0) {
        char st[32];
        map_state(mi, st, sizeof st, NULL);
        violation("map prepare %s failed; it is %s", map_names[mi], st);
        pthread_mutex_lock(&T.lock);
        m->twindow = false;
        T.v[ti].epoch++;
        pthread_mutex_unlock(&T.lock);
        change_end(ti, T_OFFLINE);
        return;
    }
    if (quiesce) {
        gate_close(0);
        if (nbd_flush(src, 0) < 0)
            violation("control: flush of the quiesced source failed: %s", nbd_get_error());
    }
    pthread_mutex_lock(&T.lock);
    for (uint64_t b = 0; b < T.nblk; b++) {
        struct blk *sb = &T.v[0].b[b];
        m->pit[b] = sb->v;
        if (sb->wbusy)
            cands_add(&m->pit[b], sb->wid);
    }
    m->window = live;
    uint32_t open_seq = T.seq;
    pthread_mutex_unlock(&T.lock);

    int rc = cli(NULL, "map", "start", map_names[mi], NULL);

    pthread_mutex_lock(&T.lock);
    m->window = false;
    m->twindow = false;
    T.v[ti].epoch++;
    if (rc == 0) {
        /* The point in time, and any target write issued during the start
         * or still in flight, which may have landed after it (L3). */
        for (uint64_t b = 0; b < T.nblk; b++) {
            struct blk *tb = &T.v[ti].b[b];
            tb->v = m->pit[b];
            for (unsigned k = 0; k < m->tw[b].n; k++)
                cands_add(&tb->v, m->tw[b].id[k]);
            if (tb->wbusy)
                cands_add(&tb->v, tb->wid);
            tb->gen++;
        }
        T.v[ti].cut = (struct cut){ .epoch = ++T.epoch, .min_out_done = UINT64_MAX,
                                    .open_seq = open_seq, .close_seq = T.seq, .live = live };
        T.starts++;
        T.live_starts += live;
    }
    pthread_mutex_unlock(&T.lock);
    if (quiesce)
        gate_open(0);
    if (rc == 0) {
        change_end(ti, T_ONLINE);
    } else {
        char st[32];
        map_state(mi, st, sizeof st, NULL);
        violation("map start %s failed (exit %d); it is %s", map_names[mi], rc, st);
        change_end(ti, T_OFFLINE);
    }
}

static void control_stop(unsigned mi)
{
    unsigned ti = 1 + mi;
    char st[32];
    bool online;

    change_begin(ti);
    if (cli(NULL, "map", "stop", map_names[mi], NULL) == 0) {
        T.m[mi].stop_pending = true;
        pthread_mutex_lock(&T.lock);
        T.stops++;
        pthread_mutex_unlock(&T.lock);
        return;
    }
    /* The copy may have completed since we looked: then the stop is refused
     * and the target still holds the model. */
    map_state(mi, st, sizeof st, &online);
    if (strcmp(st, "idle_or_copied"))
        violation("map stop %s failed; it is %s", map_names[mi], st);
    change_end(ti, online ? T_ONLINE : T_OFFLINE);
}

/*
 * A stop we issued has finished: idle_or_copied if the copy was complete,
 * else stopped.  A target whose image is complete stays online as it was
 * (map_target_online, engine/internal.h), whatever the state says; any
 * other goes offline (L3).
 */
static void control_stop_done(unsigned mi)
{
    char st[32];
    bool online;
    map_state(mi, st, sizeof st, &online);
    change_end(1 + mi, online ? T_ONLINE : T_OFFLINE);
    pthread_mutex_lock(&T.lock);
    T.stops_complete += online;
    pthread_mutex_unlock(&T.lock);
    T.m[mi].stop_pending = false;
}

/* prepared -> stopped: the target goes offline untouched (online again if
 * it was a complete copy, as control_stop_done). */
static void control_prepare_stop(unsigned mi)
{
    char st[32];
    bool online;
    change_begin(1 + mi);
    if (cli(NULL, "map", "prepare", map_names[mi], NULL) != 0 ||
        cli(NULL, "map", "stop", map_names[mi], NULL) != 0) {
        map_state(mi, st, sizeof st, NULL);
        violation("map prepare+stop %s failed; it is %s", map_names[mi], st);
    }
    map_state(mi, st, sizeof st, &online);
    change_end(1 + mi, online ? T_ONLINE : T_OFFLINE);
    pthread_mutex_lock(&T.lock);
    T.prep_stops++;
    pthread_mutex_unlock(&T.lock);
}

static void *control_main(void *arg)
{
    uint64_t rs = *(uint64_t *)arg;
    struct nbd_handle *src = connect_vol(0);
    /* Clean rate 0 cleans at the default 2 MiB/s (SVC); 20 would take a
     * minute to clean a 16 MiB target. */
    static const char *const rates[] = { "0", "50", "100", "unlimited", "20" };
    if (!src) {
        violation("control: cannot connect to the source");
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&T.ctl_pause);
        pthread_mutex_lock(&T.lock);
        bool fatal = T.fatal;
        pthread_mutex_unlock(&T.lock);
        if (T.ctl_stop || fatal) {
            pthread_mutex_unlock(&T.ctl_pause);
            break;
        }
        unsigned mi = (unsigned)(tags_rnd(&rs) % NMAP), op = (unsigned)(tags_rnd(&rs) % 8);
        char st[32];
        map_state(mi, st, sizeof st, NULL);
        if (T.m[mi].stop_pending) {
            if (strcmp(st, "stopping"))
                control_stop_done(mi);
        } else if (!strcmp(st, "copying")) {
            if (op < 2)
                control_stop(mi);
            else if (op < 5)
                cli(NULL, "map", "set", map_names[mi], "--copy-rate", rates[tags_rnd(&rs) % 5], NULL);
            else if (op < 6)
                cli(NULL, "map", "set", map_names[mi], "--clean-rate", rates[tags_rnd(&rs) % 4], NULL);
        } else if (!strcmp(st, "idle_or_copied") || !strcmp(st, "stopped")) {
            if (op == 0)
                control_prepare_stop(mi);
            else if (op < 5 || !strcmp(st, "stopped")) {
                control_start(mi, &rs, src);
            }
        } else if (strcmp(st, "preparing") && strcmp(st, "stopping")) {
            violation("mapping %s is %s, not a state this test leads it to", map_names[mi], st);
        }
        pthread_mutex_unlock(&T.ctl_pause);
        usleep((useconds_t)(tags_rnd(&rs) % 30000));
    }
    nbd_close(src);
    return NULL;
}

/* ------------------------------------------------------------------ check */

/* Read all of volume vi and check it against the model (no I/O in flight). */
static void check_volume(unsigned vi, const char *when)
{
    struct nbd_handle *h = connect_vol(vi);
    char *buf = malloc(1 << 20);
    if (!h || !buf) {
        violation("%s: cannot read %s", when, vol_names[vi]);
        free(buf);
        if (h)
            nbd_close(h);
        return;
    }
    for (uint64_t off = 0; off < T.size; off += 1 << 20) {
        size_t len = T.size - off < (1u << 20) ? (size_t)(T.size - off) : 1u << 20;
        if (nbd_pread(h, buf, len, off, 0) < 0) {
            violation("%s: %s: read at %" PRIu64 " failed: %s", when, vol_names[vi], off,
                      nbd_get_error());
            break;
        }
        pthread_mutex_lock(&T.lock);
        for (uint64_t i = 0; i < len / BLOCK; i++) {
            uint64_t blk = off / BLOCK + i;
            struct blk *b = &T.v[vi].b[blk];
            uint64_t seen = check_block_locked(buf + i * BLOCK, vi, blk, &b->v, false, 0, when);
            if (seen != UINT64_MAX)
                settle_locked(vi, blk, seen);
        }
        T.bytes_verified += len;
        pthread_mutex_unlock(&T.lock);
    }
    nbd_close(h);
    free(buf);
}

/* Wait (60 s at most) for every mapping we stopped to finish stopping. */
static void settle_stops(void)
{
    char st[32];
    for (unsigned mi = 0; mi < NMAP; mi++) {
        for (int i = 0; T.m[mi].stop_pending && i < 600; i++) {
            map_state(mi, st, sizeof st, NULL);
            if (strcmp(st, "stopping"))
                control_stop_done(mi);
            else
                usleep(100000);
        }
        if (T.m[mi].stop_pending)
            violation("mapping %s still stopping 60 s after the load", map_names[mi]);
    }
}

static void check_all(void)
{
    settle_stops();
    check_volume(0, "after the load");
    for (unsigned mi = 0; mi < NMAP; mi++)
        if (T.v[1 + mi].st == T_ONLINE)
            check_volume(1 + mi, "after the load");
    /* Now make every started target a whole copy and read it again: what
     * the background copy (and any cleaning) wrote is checked too.  (A
     * target online in state stopped is a complete copy already.) */
    for (unsigned mi = 0; mi < NMAP; mi++) {
        char st[32];
        if (T.v[1 + mi].st != T_ONLINE)
            continue;
        map_state(mi, st, sizeof st, NULL);
        if (strcmp(st, "copying"))
            continue;
        if (cli(NULL, "map", "set", map_names[mi], "--copy-rate", "unlimited", NULL) != 0 ||
            cli(NULL, "map", "wait", map_names[mi], "--state", "idle_or_copied",
                "--timeout", "120", NULL) != 0) {
            map_state(mi, st, sizeof st, NULL);
            violation("mapping %s did not finish its copy (%s)", map_names[mi], st);
        }
    }
    for (unsigned mi = 0; mi < NMAP; mi++)
        if (T.v[1 + mi].st == T_ONLINE)
            check_volume(1 + mi, "after the full copy");
}

/* ------------------------------------------------------------------ main */

static void usage(void)
{
    fprintf(stderr, "usage: pitcopy-loadtest --pitcopy PATH [--clients N] [--depth N] "
            "[--seconds N] [--warmup N] [--seed S] [--size MIB] [--grain SIZE] [--rough] "
            "[--rss-bound MIB] [--keep]\n");
    exit(2);
}

static uint64_t ops_total(void)
{
    uint64_t n = 0;
    for (unsigned i = 1; i < 5; i++)
        n += T.ops[i];
    return n;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        { "pitcopy", 1, 0, 'p' }, { "clients", 1, 0, 'c' }, { "depth", 1, 0, 'd' },
        { "seconds", 1, 0, 't' }, { "warmup", 1, 0, 'w' }, { "seed", 1, 0, 's' },
        { "size", 1, 0, 'z' }, { "rss-bound", 1, 0, 'r' }, { "keep", 0, 0, 'k' },
        { "grain", 1, 0, 'g' }, { "rough", 0, 0, 'R' },
        { 0, 0, 0, 0 },
    };
    int o;
    T.clients = 16;
    T.depth = 4;
    T.seconds = 30;
    T.warmup = 5;
    T.seed = (uint64_t)time(NULL);
    T.size = 16ull << 20;
    T.rss_bound = 8;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'p': T.pitcopy = optarg; break;
        case 'c': T.clients = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'd': T.depth = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': T.seconds = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'w': T.warmup = (unsigned)strtoul(optarg, NULL, 10); break;
        case 's': T.seed = strtoull(optarg, NULL, 10); break;
        case 'z': T.size = strtoull(optarg, NULL, 10) << 20; break;
        case 'r': T.rss_bound = strtoull(optarg, NULL, 10); break;
        case 'k': T.keep = true; break;
        case 'g': T.grain = optarg; break;
        case 'R': T.rough = true; break;
        default: usage();
        }
    }
    if (!T.pitcopy || !T.clients || T.clients > 256 || !T.depth || T.depth > MAXDEPTH ||
        T.size < (1u << 20) || !T.seconds)
        usage();
    T.nblk = T.size / BLOCK;
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_mutex_init(&T.lock, NULL);
    pthread_cond_init(&T.cond, NULL);
    pthread_mutex_init(&T.ctl_pause, NULL);
    pthread_mutex_init(&T.vlock, NULL);
    T.ti_cap = 1 << 20;
    if (!(T.ti = calloc(T.ti_cap, sizeof *T.ti)))
        die("out of memory");
    T.ti[0].zero = 1;           /* id 0: the volumes as created */
    for (unsigned i = 0; i < NVOL; i++) {
        T.v[i].b = calloc(T.nblk, sizeof *T.v[i].b);
        if (!T.v[i].b)
            die("out of memory");
        for (uint64_t b = 0; b < T.nblk; b++)
            cands_set(&T.v[i].b[b].v, 0);
        /* The targets start as plain volumes of zeroes (idle_or_copied). */
        T.v[i].open = true;
        T.v[i].st = T_ONLINE;
    }
    for (unsigned m = 0; m < NMAP; m++)
        if (!(T.m[m].pit = calloc(T.nblk, sizeof *T.m[m].pit)) ||
            !(T.m[m].tw = calloc(T.nblk, sizeof *T.m[m].tw)))
            die("out of memory");

    snprintf(T.dir, sizeof T.dir, "%s/pitcopy-load.XXXXXX", getenv("TMPDIR") ?: "/tmp");
    if (!mkdtemp(T.dir))
        die("mkdtemp: %m");
    snprintf(T.sock, sizeof T.sock, "%s/nbd.sock", T.dir);
    snprintf(T.log, sizeof T.log, "%s/serve.log", T.dir);
    uint64_t rs = T.seed * 2654435761u + 1;
    printf("loadtest: %u clients x depth %u, %u s (+%u s warm-up), seed %" PRIu64
           ", %" PRIu64 " MiB volumes%s, state %s\n", T.clients, T.depth, T.seconds, T.warmup,
           T.seed, T.size >> 20, T.rough ? ", rough" : "", T.dir);
    fflush(stdout);

    start_daemon();
    char size[32];
    snprintf(size, sizeof size, "%" PRIu64, T.size);
    for (unsigned i = 0; i < NVOL; i++)
        if (cli(NULL, "volume", "create", vol_names[i], "--size", size, NULL) != 0)
            die("volume create %s failed", vol_names[i]);
    if (cli(NULL, "map", "create", "src", "t1", "--name", "m1", "--copy-rate", "20",
            "--grain", T.grain ? T.grain : "64K", NULL) ||
        cli(NULL, "map", "create", "src", "t2", "--name", "m2", "--copy-rate", "0",
            "--grain", T.grain ? T.grain : "64K", NULL))
        die("map create failed");

    static struct fdlist fd_idle, fd0, fd1, fd_end;
    proc_fds_settled(&fd_idle);

    struct client *cl = calloc(T.clients, sizeof *cl);
    pthread_t *th = calloc(T.clients, sizeof *th), cth;
    for (unsigned i = 0; i < T.clients; i++) {
        cl[i] = (struct client){ .id = i, .rs = tags_rnd(&rs) | 1 };
        for (unsigned k = 0; k < NVOL; k++)
            if (!(cl[i].h[k] = connect_vol(k)))
                die("client %u cannot connect", i);
    }
    for (unsigned i = 0; i < T.clients; i++)
        pthread_create(&th[i], NULL, client_main, &cl[i]);
    uint64_t crs = tags_rnd(&rs) | 1;
    pthread_create(&cth, NULL, control_main, &crs);

    /* Warm-up, then the load; a line every 5 s. */
    double t0 = now_s(), t_load = 0, last_ops_t = t0;
    uint64_t rss0 = 0, rss1 = 0, rss_max = 0, arena0 = 0, arena1 = 0, ops0 = 0, last_ops = 0;
    uint64_t bytes0 = 0;
    bool measuring = false;
    for (;;) {
        usleep(200000);
        double t = now_s();
        pthread_mutex_lock(&T.lock);
        uint64_t ops = ops_total();
        bool fatal = T.fatal;
        pthread_mutex_unlock(&T.lock);
        if (fatal || !daemon_alive())
            break;
        if (ops != last_ops) {
            last_ops = ops;
            last_ops_t = t;
        } else if (t - last_ops_t > STALL_S) {
            violation("no request completed for %d s: the daemon hangs", STALL_S);
            daemon_hung();
            break;
        }
        if (!measuring && t - t0 >= T.warmup) {
            pthread_mutex_lock(&T.ctl_pause);
            rss0 = proc_rss_kib(&arena0);
            proc_fds_settled(&fd0);
            pthread_mutex_unlock(&T.ctl_pause);
            pthread_mutex_lock(&T.lock);
            ops0 = ops_total();
            bytes0 = T.bytes_read + T.bytes_written;
            pthread_mutex_unlock(&T.lock);
            t_load = now_s();
            measuring = true;
            printf("loadtest: after %u s warm-up: %" PRIu64 " ops, daemon RSS %" PRIu64
                   " KiB + %" PRIu64 " KiB of buffer arenas, %u descriptors\n", T.warmup, ops0,
                   rss0, arena0, fd0.n);
            fflush(stdout);
        }
        if (measuring) {
            uint64_t r = proc_rss_kib(NULL);
            if (r > rss_max)
                rss_max = r;
            static double last_print = -1;
            if (last_print < 0)
                last_print = t;
            if (t - last_print >= 5) {
                last_print = t;
                pthread_mutex_lock(&T.lock);
                printf("loadtest: %5.1f s: %" PRIu64 " ops, RSS %" PRIu64 " KiB, starts %"
                       PRIu64 " (live %" PRIu64 "), stops %" PRIu64 ", violations %" PRIu64
                       "\n", t - t_load, ops_total() - ops0, r, T.starts, T.live_starts,
                       T.stops, T.violations);
                pthread_mutex_unlock(&T.lock);
                fflush(stdout);
            }
            if (t - t_load >= T.seconds)
                break;
        }
    }
    double t_end = now_s();
    pthread_mutex_lock(&T.ctl_pause);
    bool alive = T.daemon > 0;
    if (alive) {
        rss1 = proc_rss_kib(&arena1);
        proc_fds_settled(&fd1);
    }
    T.ctl_stop = true;
    pthread_mutex_unlock(&T.ctl_pause);
    pthread_mutex_lock(&T.lock);
    uint64_t ops1 = ops_total(), bytes1 = T.bytes_read + T.bytes_written;
    T.stop = true;
    if (!alive)
        T.fatal = true;
    pthread_cond_broadcast(&T.cond);
    pthread_mutex_unlock(&T.lock);
    pthread_join(cth, NULL);
    for (unsigned i = 0; i < T.clients; i++)
        pthread_join(th[i], NULL);
    for (unsigned i = 0; i < T.clients; i++)
        for (unsigned k = 0; k < NVOL; k++)
            nbd_close(cl[i].h[k]);
    free(cl);
    free(th);

    if (!T.fatal && daemon_alive()) {
        check_all();
        /* Every connection gone: the daemon holds what it held idle. */
        for (int i = 0; i < 100; i++) {
            char *out = NULL;
            bool none = cli(&out, "status", "--json", NULL) == 0 &&
                        strstr(out, "\"nbd_connections\": 0");
            free(out);
            if (none)
                break;
            usleep(50000);
        }
        proc_fds_settled(&fd_end);
    }

    double secs = t_end - t_load;
    printf("loadtest: %u clients, %.1f s: %" PRIu64 " ops (%.0f ops/s, %.1f MiB/s): %" PRIu64
           " reads, %" PRIu64 " writes, %" PRIu64 " write-zeroes, %" PRIu64 " flushes; "
           "slowest request %.3f s (a %s)\n", T.clients, secs, ops1 - ops0,
           (double)(ops1 - ops0) / secs, (double)(bytes1 - bytes0) / secs / (1 << 20),
           T.ops[OP_READ], T.ops[OP_WRITE], T.ops[OP_ZERO], T.ops[OP_FLUSH], T.max_lat,
           T.max_lat_what);
    printf("loadtest: mappings: %" PRIu64 " starts (%" PRIu64 " live), %" PRIu64 " stops (%"
           PRIu64 " ended complete), %" PRIu64 " prepare+stop, %" PRIu64 " CLI calls\n",
           T.starts, T.live_starts, T.stops, T.stops_complete, T.prep_stops, T.cli_calls);
    if (T.rough)
        printf("loadtest: --rough: %" PRIu64 " requests to a changing or stopped target "
               "failed, as they may; %.1f MiB read across a start not checked\n", T.failed_ok,
               (double)T.unchecked / (1 << 20));
    printf("loadtest: %.1f MiB verified; %" PRIu64 " blocks of a live start settled by a "
           "read (%" PRIu64 " checked against one instant, %" PRIu64 " with too many "
           "candidates); %" PRIu64 " writes deferred behind a request on their blocks\n",
           (double)T.bytes_verified / (1 << 20), T.settled, T.settled_cut, T.overflow,
           T.busy_retries);
    if (alive) {
        uint64_t q = proc_sanitizer_slack_mib();
        uint64_t bound = q == UINT64_MAX ? 0 : T.rss_bound + q;
        printf("loadtest: daemon RSS outside buffer arenas %" PRIu64 " KiB after warm-up, %"
               PRIu64 " KiB at the end (%+" PRId64 " KiB, max %" PRIu64 " KiB; ", rss0, rss1,
               (int64_t)rss1 - (int64_t)rss0, rss_max);
        if (q == UINT64_MAX)
            printf("not bounded under TSan");
        else if (q)
            printf("bound +%" PRIu64 " MiB, of which %" PRIu64 " MiB for ASan's quarantine",
                   bound, q);
        else
            printf("bound +%" PRIu64 " MiB", bound);
        printf("); buffer arenas %" PRIu64 " KiB, then %" PRIu64 " KiB\n", arena0, arena1);
        printf("loadtest: daemon descriptors: %u idle, %u after warm-up, %u at the end, %u "
               "after the clients left\n", fd_idle.n, fd0.n, fd1.n, fd_end.n);
        if (q != UINT64_MAX && rss1 > rss0 + (bound << 10))
            violation("the daemon's RSS grew by %" PRIu64 " KiB under load, more than %" PRIu64
                      " MiB", rss1 - rss0, bound);
        if (!fds_equal(&fd0, &fd1)) {
            violation("the daemon's descriptors changed under load");
            fds_diff("under load", &fd0, &fd1);
        }
        if (fd_end.n && !fds_equal(&fd_idle, &fd_end)) {
            violation("the daemon holds other descriptors after the clients left than before");
            fds_diff("idle before and after", &fd_idle, &fd_end);
        }
    }

    if (T.daemon > 0) {
        int st;
        kill(T.daemon, SIGTERM);
        waitpid(T.daemon, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            violation("pitcopy serve exited with %s %d after SIGTERM (log: %s)",
                      WIFEXITED(st) ? "status" : "signal",
                      WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), T.log);
    }
    printf("loadtest: %" PRIu64 " violations\n", T.violations);
    if (T.violations || T.keep) {
        printf("loadtest: state and daemon log kept in %s\n", T.dir);
    } else {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", T.dir);
        if (system(cmd) != 0)
            fprintf(stderr, "loadtest: could not remove %s\n", T.dir);
    }
    return T.violations ? 1 : 0;
}
