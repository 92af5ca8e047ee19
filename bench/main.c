/* SPDX-License-Identifier: MIT */
/*
 * bench/main.c — pitcopy-bench: the engine against its baselines, one JSON line per number.
 *
 * Role
 *   Parses the options, creates one engine, runs the selected benchmark
 *   groups in a fixed order and prints one JSON object per result line:
 *     {"name", "value", "unit", "baseline", "ratio", "goal", "goal_cmp",
 *      "pass", "runs", "baseline_runs", "detail", "backend"}
 *   value and baseline are medians of the runs.  Every baseline is measured
 *   in the same process run, on the same files, and where the two can be
 *   paired each run measures the engine and its baseline back to back
 *   (alternating which goes first); ratio is then the median of the per-run
 *   ratios, which a noisy shared host disturbs far less than the ratio of
 *   the medians (also given, as detail.ratio_of_medians).  Unpaired results
 *   (establish, meta) say how they define ratio.  Progress goes to stderr;
 *   stdout carries only result lines (--out DIR gets a copy in
 *   DIR/results.jsonl).
 *
 * Files
 *   Volumes are files in a private directory made under --dir (mkdtemp),
 *   the 1 TiB and 1 PiB establish cases in one under /dev/shm.  Every path
 *   is registered before it is created, so that a normal exit and SIGINT,
 *   SIGTERM, SIGHUP, SIGPIPE all remove exactly what was made.
 *
 * Invariants
 *   H1  Each measured engine number has a baseline taken in the same run
 *       with the same sizes, queue depth and offsets (the same offset list
 *       for first-touch workloads).
 *   H2  A first-touch run always writes into a fresh sparse target file and
 *       a fresh mapping: no grain it touches was split or allocated before.
 *   H3  Nothing but result lines is written to stdout (children's stdout is
 *       captured or sent to stderr, baseline.c).
 *
 * Global state
 *   Only what the signal handler needs: the registered paths (cleanup_*),
 *   baseline_child (baseline.c) and the NBD groups' daemons (nbd.c).
 *   Everything else hangs off struct bench (bench/bench.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <linux/magic.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "pitcopy.h"
#include "bitmap/bitmap.h"
#include "bench/baseline.h"
#include "bench/load.h"
#include "bench/bench.h"


#define QD           32u              /* random-I/O queue depth */
#define IO_4K        4096u
#define COPY_BS      (1u << 20)       /* fill and the fio copy ceiling */
#define COPY_QD      16u
#define NTARGETS     16u
#define WAIT_MS      (30 * 60 * 1000) /* a background copy that takes longer is broken */

/* ------------------------------------------------------------------------
 * Files to remove at exit or on a signal. */

#define MAX_PATHS 64

static char cleanup_files[MAX_PATHS][PATH_LEN];
static volatile sig_atomic_t cleanup_nfiles;
#define MAX_DIRS 4
static char cleanup_dirs[MAX_DIRS][PATH_LEN];
static volatile sig_atomic_t cleanup_ndirs;

static void cleanup_all(void)
{
    for (int i = 0; i < cleanup_nfiles; i++)
        unlink(cleanup_files[i]);
    for (int i = cleanup_ndirs - 1; i >= 0; i--)     /* the newest, which may be nested, first */
        rmdir(cleanup_dirs[i]);
}

static void cleanup_add_dir(const char *path)
{
    for (int i = 0; i < cleanup_ndirs; i++)
        if (strcmp(cleanup_dirs[i], path) == 0)
            return;
    if (cleanup_ndirs < MAX_DIRS) {
        memcpy(cleanup_dirs[cleanup_ndirs], path, PATH_LEN);
        cleanup_ndirs = cleanup_ndirs + 1;  /* after the copy, as in bench_path */
    }
}

static void on_signal(int sig)
{
    pid_t c = baseline_child;
    if (c > 0)
        kill(c, SIGKILL);
    nbd_kill_children();
    cleanup_all();                  /* unlink, rmdir: async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ------------------------------------------------------------------------
 * The run's state. */


struct bvol {
    struct pc_volume *v;
    char              path[PATH_LEN];
};

void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void logf_(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[bench] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int fail(struct bench *b, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fail(struct bench *b, int r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->msg, sizeof b->msg, fmt, ap);
    va_end(ap);
    return r < 0 ? r : -EIO;
}

double now_s(void)
{
    return (double)load_now_ns() / 1e9;
}

uint64_t next_seed(struct bench *b)
{
    return load_rand(&b->seed) | 1;
}

/* Register dir/name for removal and return its path in out. */
const char *bench_path(const char *dir, const char *name, char *out)
{
    snprintf(out, PATH_LEN, "%s/%s", dir, name);
    for (int i = 0; i < cleanup_nfiles; i++)
        if (strcmp(cleanup_files[i], out) == 0)
            return out;
    if (cleanup_nfiles < MAX_PATHS) {
        memcpy(cleanup_files[cleanup_nfiles], out, PATH_LEN);
        cleanup_nfiles = cleanup_nfiles + 1;   /* after the copy: the handler sees whole paths */
    }
    return out;
}

int make_dir(struct bench *b, const char *parent, char *out)
{
    if (cleanup_ndirs >= MAX_DIRS - 1)
        return fail(b, -ENOSPC, "internal: too many work directories");
    snprintf(out, PATH_LEN, "%s/pitcopy-bench.XXXXXX", parent);
    if (!mkdtemp(out))
        return fail(b, -errno, "cannot create a work directory in %s: %s", parent, strerror(errno));
    cleanup_add_dir(out);
    return 0;
}

const char *bench_subdir(const char *dir, const char *name, char *out)
{
    snprintf(out, PATH_LEN, "%s/%s", dir, name);
    cleanup_add_dir(out);
    return out;
}

static const char *fs_name(const char *path)
{
    struct statfs sf;
    if (statfs(path, &sf) < 0)
        return "unknown";
    switch ((unsigned long)sf.f_type) {
    case EXT4_SUPER_MAGIC: return "ext4";
    case TMPFS_MAGIC:      return "tmpfs";
    case XFS_SUPER_MAGIC:  return "xfs";
    case BTRFS_SUPER_MAGIC: return "btrfs";
    default:               return "other";
    }
}

/* ------------------------------------------------------------------------
 * Results. */


double median(const double *v, unsigned n)
{
    double s[MAX_RUNS];
    if (n == 0)
        return NAN;
    memcpy(s, v, n * sizeof *v);
    for (unsigned i = 1; i < n; i++)            /* insertion sort: n ≤ MAX_RUNS */
        for (unsigned j = i; j > 0 && s[j - 1] > s[j]; j--) {
            double t = s[j];
            s[j] = s[j - 1];
            s[j - 1] = t;
        }
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void fmt_num(char *out, size_t n, double v)
{
    if (!isfinite(v))
        snprintf(out, n, "null");
    else if (v == floor(v) && fabs(v) < 9e15)        /* counts and sizes, exactly */
        snprintf(out, n, "%.0f", v);
    else if (fabs(v) >= 1000)
        snprintf(out, n, "%.1f", v);
    else if (fabs(v) < 1e-3)
        snprintf(out, n, "%.6g", v);
    else
        snprintf(out, n, "%.4f", v);
}

void detail_num(struct result *r, const char *key, double v)
{
    char num[64];
    size_t len = strlen(r->detail);
    fmt_num(num, sizeof num, v);
    snprintf(r->detail + len, sizeof r->detail - len, "%s\"%s\":%s", len ? "," : "", key, num);
}

void detail_str(struct result *r, const char *key, const char *s)
{
    size_t len = strlen(r->detail);
    snprintf(r->detail + len, sizeof r->detail - len, "%s\"%s\":\"%s\"", len ? "," : "", key, s);
}

void detail_runs(struct result *r, const char *key, const double *v, unsigned n)
{
    size_t len = strlen(r->detail);
    len += (size_t)snprintf(r->detail + len, sizeof r->detail - len, "%s\"%s\":[", len ? "," : "", key);
    for (unsigned i = 0; i < n && len < sizeof r->detail; i++) {
        char num[64];
        fmt_num(num, sizeof num, v[i]);
        len += (size_t)snprintf(r->detail + len, sizeof r->detail - len, "%s%s", i ? "," : "", num);
    }
    if (len < sizeof r->detail)
        snprintf(r->detail + len, sizeof r->detail - len, "]");
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static bool wanted(const struct bench *b, const char *name)
{
    if (!b->only)
        return true;
    const char *p = b->only;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n && strncmp(name, p, n) == 0)
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

static bool passes(const struct result *r)
{
    if (r->error || !isfinite(r->ratio))
        return false;
    if (r->value_max > 0 && !(r->value <= r->value_max))
        return false;
    if (strcmp(r->cmp, ">=") == 0)
        return r->ratio >= r->goal;
    if (strcmp(r->cmp, "<=") == 0)
        return r->ratio <= r->goal;
    return (r->ratio >= r->goal / 2 && r->ratio <= r->goal * 2) ||
           fabs(r->value - r->baseline) <= r->abs_tol;
}

static void emit_to(const struct bench *b, FILE *f, const struct result *r)
{
    char v[64], bl[64], ra[64], g[64], vm[64];
    fmt_num(v, sizeof v, r->value);
    fmt_num(bl, sizeof bl, r->baseline);
    fmt_num(ra, sizeof ra, r->ratio);
    fmt_num(g, sizeof g, r->goal);
    fprintf(f, "{\"name\":\"%s\",\"value\":%s,\"unit\":\"%s\",\"baseline\":%s,\"ratio\":%s,"
               "\"goal\":%s,\"goal_cmp\":\"%s\"",
            r->name, r->error ? "null" : v, r->unit, r->error ? "null" : bl,
            r->error ? "null" : ra, g, r->cmp);
    if (r->value_max > 0) {
        fmt_num(vm, sizeof vm, r->value_max);
        fprintf(f, ",\"value_max\":%s", vm);
    }
    fprintf(f, ",\"pass\":%s", passes(r) ? "true" : "false");
    if (r->error) {
        fputs(",\"error\":", f);
        json_str(f, r->error);
    } else {
        fputs(",\"runs\":[", f);
        for (unsigned i = 0; i < r->nruns; i++) {
            fmt_num(v, sizeof v, r->runs[i]);
            fprintf(f, "%s%s", i ? "," : "", v);
        }
        fputs("],\"baseline_runs\":[", f);
        for (unsigned i = 0; i < r->nbase; i++) {
            fmt_num(v, sizeof v, r->base_runs[i]);
            fprintf(f, "%s%s", i ? "," : "", v);
        }
        fputc(']', f);
        if (r->detail[0])
            fprintf(f, ",\"detail\":{%s}", r->detail);
    }
    fprintf(f, ",\"backend\":\"%s\"}\n", pc_engine_io_backend(b->e));
    fflush(f);
}

void emit(struct bench *b, struct result *r, unsigned idx)
{
    b->emitted |= 1u << idx;
    if (!wanted(b, r->name) && !(b->group_tag && wanted(b, b->group_tag)))
        return;
    if (!r->error) {
        r->value = median(r->runs, r->nruns);
        if (r->nbase)
            r->baseline = median(r->base_runs, r->nbase);
        if (!r->unpaired && r->nruns == r->nbase) {
            double q[MAX_RUNS];
            for (unsigned i = 0; i < r->nruns; i++)
                q[i] = r->runs[i] / r->base_runs[i];
            r->ratio = median(q, r->nruns);
            detail_runs(r, "ratio_runs", q, r->nruns);
            detail_num(r, "ratio_of_medians", r->value / r->baseline);
        } else if (!isfinite(r->ratio)) {
            r->ratio = r->value / r->baseline;
        }
    }
    if (r->error)
        b->errors++;
    else if (!passes(r))
        b->missed++;
    emit_to(b, stdout, r);
    if (b->out)
        emit_to(b, b->out, r);
}

struct result result_new(const char *name, const char *unit, double goal, const char *cmp)
{
    return (struct result){ .name = name, .unit = unit, .goal = goal, .cmp = cmp,
                            .value = NAN, .baseline = NAN, .ratio = NAN };
}

/* ------------------------------------------------------------------------
 * Volumes and mappings. */

static int vol_fresh(struct bench *b, const char *dir, const char *name, uint64_t size,
                     struct bvol *out)
{
    char file[96];
    struct pc_error err = { 0 };
    snprintf(file, sizeof file, "%s.raw", name);
    bench_path(dir, file, out->path);
    unlink(out->path);
    int r = pc_volume_open(b->e, name, out->path, size, PC_VOL_CREATE, &out->v, &err);
    if (r < 0)
        return fail(b, r, "%s", err.msg);
    return 0;
}

static void vol_drop(struct bvol *v)
{
    if (v->v) {
        struct pc_error err = { 0 };
        if (pc_volume_close(v->v, &err) < 0)
            logf_("warning: %s", err.msg);
        v->v = NULL;
    }
    unlink(v->path);
}

static int map_start(struct bench *b, struct pc_volume *s, struct pc_volume *t, int rate,
                     struct pc_map **out)
{
    struct pc_error err = { 0 };
    struct pc_map_opts o = { .source = s, .target = t, .grain_size = b->grain,
                             .copy_rate = rate, .clean_rate = PC_RATE_UNLIMITED };
    int r = pc_map_create(b->e, &o, out, &err);
    if (r == 0)
        r = pc_map_start(*out, &err);
    if (r < 0) {
        if (*out)
            pc_map_delete(*out, true, NULL);
        *out = NULL;
        return fail(b, r, "%s", err.msg);
    }
    return 0;
}

static void map_drop(struct pc_map **m)
{
    if (*m) {
        struct pc_error err = { 0 };
        if (pc_map_delete(*m, true, &err) < 0)
            logf_("warning: %s", err.msg);
        *m = NULL;
    }
}

static int run_load(struct bench *b, const struct load_spec *s, struct load_result *r,
                    const char *what)
{
    int rc = load_run(b->e, s, r);
    if (rc < 0)
        return fail(b, rc, "%s on volume %s failed: %s", what, pc_volume_name(s->vol),
                    strerror(-rc));
    return 0;
}

static struct load_spec rand_spec(struct bench *b, struct pc_volume *v, enum pc_io_op op,
                                  uint32_t bs, double secs)
{
    return (struct load_spec){ .vol = v, .op = op, .bs = bs, .qd = QD, .pattern = LOAD_RANDOM,
                               .base = 0, .span = b->region, .seconds = secs,
                               .seed = next_seed(b) };
}

static struct load_spec list_spec(struct pc_volume *v, uint32_t bs, const uint64_t *list,
                                  uint64_t n, double secs)
{
    return (struct load_spec){ .vol = v, .op = PC_IO_WRITE, .bs = bs, .qd = QD,
                               .pattern = LOAD_LIST, .list = list, .nlist = n, .count = n,
                               .seconds = secs, .seed = 1 };
}

/*
 * One run of an engine-vs-baseline pair of timed loads: b->secs per side,
 * cut into PAIR_SLICES slices each, in the order ABBA ABBA... (BAAB... on
 * odd runs), so that the device's drift within the run weighs the same on
 * both sides.  ra/rb get each side's totals.
 */
#define PAIR_SLICES 4

static int paired_run(struct bench *b, unsigned run, struct load_spec sa, struct load_spec sb,
                      struct load_result *ra, struct load_result *rb, const char *what)
{
    double lat[2] = { 0, 0 };
    struct load_result *tot[2] = { ra, rb };
    memset(ra, 0, sizeof *ra);
    memset(rb, 0, sizeof *rb);
    sa.seconds = sb.seconds = b->secs / PAIR_SLICES;
    for (unsigned k = 0; k < 2 * PAIR_SLICES; k++) {
        unsigned side = (((k + 1) / 2) % 2) ^ (run % 2);
        struct load_spec *s = side ? &sb : &sa;
        struct load_result lr;
        s->seed = next_seed(b);
        int r = run_load(b, s, &lr, what);
        if (r < 0)
            return r;
        tot[side]->ios += lr.ios;
        tot[side]->bytes += lr.bytes;
        tot[side]->secs += lr.secs;
        lat[side] += lr.lat_us * (double)lr.ios;
    }
    for (unsigned side = 0; side < 2; side++) {
        struct load_result *t = tot[side];
        t->iops = t->secs > 0 ? (double)t->ios / t->secs : 0;
        t->mbps = t->secs > 0 ? (double)t->bytes / t->secs / 1e6 : 0;
        t->lat_us = t->ios ? lat[side] / (double)t->ios : 0;
    }
    return 0;
}

static uint64_t map_split(struct pc_map *m)
{
    struct pc_map_info info;
    pc_map_info(m, &info);
    return info.grains_split;
}

/* The populated source and its plain alias, made once, on first need. */
static int need_source(struct bench *b)
{
    struct pc_error err = { 0 };
    struct load_result lr;
    int r;

    if (b->src)
        return 0;
    bench_path(b->dir, "src.raw", b->src_path);
    r = pc_volume_open(b->e, "src", b->src_path, b->vol_size, PC_VOL_CREATE, &b->src, &err);
    if (r == 0)
        r = pc_volume_open(b->e, "src-plain", b->src_path, b->vol_size, 0, &b->plain, &err);
    if (r < 0)
        return fail(b, r, "%s", err.msg);
    if (!pc_volume_direct(b->src))
        logf_("warning: %s does not take O_DIRECT; numbers include the page cache",
              b->src_path);
    struct load_spec fill = {
        .vol = b->plain, .op = PC_IO_WRITE, .bs = COPY_BS, .qd = COPY_QD, .pattern = LOAD_SEQ,
        .base = 0, .span = b->vol_size, .count = b->vol_size / COPY_BS, .seed = next_seed(b),
    };
    r = run_load(b, &fill, &lr, "filling the source");
    if (r < 0)
        return r;
    pc_io_sync(b->e, PC_IO_FLUSH, b->plain, 0, 0, NULL, 0);
    logf_("source %s: %llu MiB of data written in %.2f s (%.0f MB/s), %s, %s",
          b->src_path, (unsigned long long)(b->vol_size >> 20), lr.secs, lr.mbps,
          fs_name(b->dir), pc_volume_direct(b->src) ? "O_DIRECT" : "buffered");
    return 0;
}

/* ------------------------------------------------------------------------
 * establish_us_1g / _1t / _1p
 *
 * The value is the hold with the engine idle (what the size could change).
 * Two more series go into the detail, because a hold drains what is in
 * flight: one under 4 KiB random writes to the source itself, and one under
 * writes to an unrelated volume (which the hold must not wait for: it
 * drains only the source's and target's writes).  The unrelated volume is the populated source of
 * the other benchmarks (its plain alias): its blocks are all allocated, so
 * the writes are plain overwrites and leave no fragmented file behind. */

struct bg_load {
    pthread_t         th;
    struct pc_engine *e;
    struct load_spec  spec;
    struct load_result res;
    _Atomic bool      stop;
    int               rc;
};

static void *bg_load_main(void *arg)
{
    struct bg_load *l = arg;
    l->rc = load_run(l->e, &l->spec, &l->res);
    return NULL;
}

/* One uncounted start first (first-touch page faults, cold caches), then
 * b->runs counted ones; with load_on, under writes to that volume. */
static int establish_series(struct bench *b, struct pc_volume *s, struct pc_volume *t,
                            struct pc_volume *load_on, double *hold, double *start,
                            uint64_t *grains)
{
    struct bg_load l = { .e = b->e };
    int r = 0;

    if (load_on) {
        uint64_t span = pc_volume_size(load_on) < 1 * GiB ? pc_volume_size(load_on) : 1 * GiB;
        l.spec = (struct load_spec){ .vol = load_on, .op = PC_IO_WRITE, .bs = IO_4K, .qd = QD,
                                     .pattern = LOAD_RANDOM, .span = span, .seconds = 120,
                                     .stop = &l.stop, .seed = next_seed(b) };
        if ((r = -pthread_create(&l.th, NULL, bg_load_main, &l)) < 0)
            return fail(b, r, "cannot start a load thread: %s", strerror(-r));
        usleep(50 * 1000);            /* the queue is full by now */
    }
    for (unsigned i = 0; i <= b->runs && r == 0; i++) {
        struct pc_map_opts o = { .source = s, .target = t, .grain_size = b->grain,
                                 .copy_rate = 0, .clean_rate = PC_RATE_UNLIMITED };
        struct pc_error err = { 0 };
        struct pc_map_info info;
        struct pc_map *m = NULL;
        r = pc_map_create(b->e, &o, &m, &err);
        if (r < 0) {
            r = fail(b, r, "%s", err.msg);
            break;
        }
        double t0 = now_s();
        r = pc_map_start(m, &err);
        double t1 = now_s();
        if (r < 0)
            r = fail(b, r, "%s", err.msg);
        pc_map_info(m, &info);
        *grains = info.grains;
        if (i > 0) {
            hold[i - 1] = (double)info.start_hold_ns / 1e3;
            start[i - 1] = (t1 - t0) * 1e6;
        }
        map_drop(&m);
    }
    if (load_on) {
        atomic_store(&l.stop, true);
        pthread_join(l.th, NULL);
        if (r == 0 && l.rc < 0)
            r = fail(b, l.rc, "writes to %s during the starts failed: %s",
                     pc_volume_name(load_on), strerror(-l.rc));
        if (r == 0)
            logf_("  (under %.0f write IOPS to %s, %.0f us mean latency)", l.res.iops,
                  pc_volume_name(load_on), l.res.lat_us);
    }
    return r;
}

static int bench_establish(struct bench *b)
{
    static const struct { const char *name; uint64_t size; bool shm; } cases[] = {
        { "establish_us_1g", 1 * GiB, false },
        { "establish_us_1t", 1 * TiB, true },
        { "establish_us_1p", 1 * PiB, true },
    };
    enum { IDLE, SRC_LOAD, OTHER_LOAD, NSERIES };
    double hold[3][NSERIES][MAX_RUNS], start[3][NSERIES][MAX_RUNS];
    const char *fs[3];
    uint64_t grains[3];
    int r = 0;

    for (unsigned c = 0; c < 3 && r == 0; c++) {
        const char *dir = b->dir;
        if (cases[c].shm) {
            if (!b->shm[0] && (r = make_dir(b, "/dev/shm", b->shm)) < 0)
                break;
            dir = b->shm;
        }
        char sname[32], tname[32];
        snprintf(sname, sizeof sname, "est-src%u", c);
        snprintf(tname, sizeof tname, "est-tgt%u", c);
        struct bvol s = { 0 }, t = { 0 };
        fs[c] = fs_name(dir);
        if ((r = vol_fresh(b, dir, sname, cases[c].size, &s)) == 0 &&
            (r = vol_fresh(b, dir, tname, cases[c].size, &t)) == 0) {
            struct pc_volume *load_on[NSERIES] = { NULL, s.v, b->plain };
            for (unsigned k = 0; k < NSERIES && r == 0; k++)
                r = establish_series(b, s.v, t.v, load_on[k], hold[c][k], start[c][k], &grains[c]);
        }
        vol_drop(&t);
        vol_drop(&s);
        if (r == 0)
            logf_("%s: hold %.2f us, start %.1f us idle; hold %.1f us under source writes, "
                  "%.1f us under other writes (medians of %u)", cases[c].name,
                  median(hold[c][IDLE], b->runs), median(start[c][IDLE], b->runs),
                  median(hold[c][SRC_LOAD], b->runs), median(hold[c][OTHER_LOAD], b->runs),
                  b->runs);
    }
    if (r < 0)
        return r;
    for (unsigned c = 0; c < 3; c++) {
        struct result res = result_new(cases[c].name, "us", 1.0, "~=");
        res.value_max = 100;
        res.abs_tol = 1.0;
        memcpy(res.runs, hold[c][IDLE], b->runs * sizeof(double));
        memcpy(res.base_runs, hold[0][IDLE], b->runs * sizeof(double));
        res.nruns = res.nbase = b->runs;
        res.unpaired = true;         /* ratio: median hold here / median hold at 1 GiB */
        res.ratio = median(hold[c][IDLE], b->runs) / median(hold[0][IDLE], b->runs);
        detail_num(&res, "start_us", median(start[c][IDLE], b->runs));
        detail_runs(&res, "start_us_runs", start[c][IDLE], b->runs);
        detail_num(&res, "hold_us_source_writes", median(hold[c][SRC_LOAD], b->runs));
        detail_runs(&res, "hold_us_source_writes_runs", hold[c][SRC_LOAD], b->runs);
        detail_num(&res, "start_us_source_writes", median(start[c][SRC_LOAD], b->runs));
        detail_num(&res, "hold_us_other_writes", median(hold[c][OTHER_LOAD], b->runs));
        detail_runs(&res, "hold_us_other_writes_runs", hold[c][OTHER_LOAD], b->runs);
        detail_num(&res, "start_us_other_writes", median(start[c][OTHER_LOAD], b->runs));
        detail_num(&res, "volume_bytes", (double)cases[c].size);
        detail_num(&res, "grains", (double)grains[c]);
        detail_str(&res, "fs", fs[c]);
        emit(b, &res, c);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * group_hold_us_1 / _16 / _128: a consistency group's start holds writes on
 * every source and target at once; the hold must not grow with the number of
 * mappings beyond what setting and draining each volume costs (goal: within
 * 1 ms of one mapping's, and under 1 ms).  Each mapping has its own 1 GiB
 * source and target (sparse, in /dev/shm).  Detail: the same under 4 KiB
 * random writes to the first source. */

static int group_series(struct bench *b, struct pc_group *g, struct pc_map **ms, unsigned n,
                        struct pc_volume *load_on, double *hold)
{
    struct bg_load l = { .e = b->e };
    int r = 0;
    if (load_on) {
        l.spec = (struct load_spec){ .vol = load_on, .op = PC_IO_WRITE, .bs = IO_4K, .qd = QD,
                                     .pattern = LOAD_RANDOM, .span = pc_volume_size(load_on),
                                     .seconds = 120, .stop = &l.stop, .seed = next_seed(b) };
        if ((r = -pthread_create(&l.th, NULL, bg_load_main, &l)) < 0)
            return fail(b, r, "cannot start a load thread: %s", strerror(-r));
        usleep(50 * 1000);
    }
    for (unsigned i = 0; i <= b->runs && r == 0; i++) {
        struct pc_error err = { 0 };
        struct pc_group_info gi;
        if ((r = pc_group_start(g, &err)) < 0) {
            r = fail(b, r, "%s", err.msg);
            break;
        }
        pc_group_info(g, &gi);
        if (i > 0)
            hold[i - 1] = (double)gi.start_hold_ns / 1e3;
        if ((r = pc_group_stop(g, false, &err)) < 0) {
            r = fail(b, r, "%s", err.msg);
            break;
        }
        for (unsigned k = 0; k < n; k++)
            pc_map_wait(ms[k], PC_MAP_STOPPED, -1);
    }
    if (load_on) {
        atomic_store(&l.stop, true);
        pthread_join(l.th, NULL);
        if (r == 0 && l.rc < 0)
            r = fail(b, l.rc, "writes during the group starts failed: %s", strerror(-l.rc));
    }
    return r;
}

static int bench_group_hold(struct bench *b)
{
    static const unsigned counts[] = { 1, 16, 128 };
    static const char *const names[] = { "group_hold_us_1", "group_hold_us_16",
                                         "group_hold_us_128" };
    enum { IDLE, LOADED, NSERIES };
    double hold[3][NSERIES][MAX_RUNS];
    struct bvol vols[2 * 128] = { { 0 } };
    struct pc_map *ms[128] = { NULL };
    int r = 0;

    if (!b->shm[0] && (r = make_dir(b, "/dev/shm", b->shm)) < 0)
        return r;
    for (unsigned c = 0; c < 3 && r == 0; c++) {
        unsigned n = counts[c];
        char gname[32];
        struct pc_group *g = NULL;
        struct pc_error err = { 0 };
        snprintf(gname, sizeof gname, "bench-cg%u", n);
        if ((r = pc_group_create(b->e, gname, &g, &err)) < 0) {
            r = fail(b, r, "%s", err.msg);
            break;
        }
        for (unsigned k = 0; k < n && r == 0; k++) {
            char sn[32], tn[32];
            snprintf(sn, sizeof sn, "cg-src%u", k);
            snprintf(tn, sizeof tn, "cg-tgt%u", k);
            if ((r = vol_fresh(b, b->shm, sn, 1 * GiB, &vols[2 * k])) < 0 ||
                (r = vol_fresh(b, b->shm, tn, 1 * GiB, &vols[2 * k + 1])) < 0)
                break;
            struct pc_map_opts o = { .source = vols[2 * k].v, .target = vols[2 * k + 1].v,
                                     .grain_size = b->grain, .copy_rate = 0,
                                     .clean_rate = PC_RATE_UNLIMITED, .group = g };
            if ((r = pc_map_create(b->e, &o, &ms[k], &err)) < 0)
                r = fail(b, r, "%s", err.msg);
        }
        if (r == 0)
            r = group_series(b, g, ms, n, NULL, hold[c][IDLE]);
        if (r == 0)
            r = group_series(b, g, ms, n, vols[0].v, hold[c][LOADED]);
        for (unsigned k = 0; k < n; k++) {
            map_drop(&ms[k]);
            vol_drop(&vols[2 * k + 1]);
            vol_drop(&vols[2 * k]);
        }
        if (g)
            pc_group_delete(g, true, NULL);
        if (r == 0)
            logf_("%s: hold %.2f us idle, %.2f us under writes to one source (medians of %u)",
                  names[c], median(hold[c][IDLE], b->runs), median(hold[c][LOADED], b->runs),
                  b->runs);
    }
    if (r < 0)
        return r;
    for (unsigned c = 0; c < 3; c++) {
        struct result res = result_new(names[c], "us", 1.0, "~=");
        res.value_max = 1000;
        res.abs_tol = 1000;
        memcpy(res.runs, hold[c][IDLE], b->runs * sizeof(double));
        memcpy(res.base_runs, hold[0][IDLE], b->runs * sizeof(double));
        res.nruns = res.nbase = b->runs;
        res.unpaired = true;     /* ratio: median hold here / median hold with one mapping */
        res.ratio = median(hold[c][IDLE], b->runs) / median(hold[0][IDLE], b->runs);
        detail_num(&res, "mappings", counts[c]);
        detail_num(&res, "hold_us_source_writes", median(hold[c][LOADED], b->runs));
        detail_runs(&res, "hold_us_source_writes_runs", hold[c][LOADED], b->runs);
        emit(b, &res, c);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * meta_bits_per_grain: a mapping's metadata is its split bitmap (engine/
 * internal.h, struct pc_map::bits); build one of the same grain count, set
 * every bit, and ask it what it holds. */

static int bench_meta(struct bench *b)
{
    const uint64_t sizes[] = { b->vol_size, 1 * TiB, 64 * TiB };
    const char *keys[] = { "bits_per_grain_bench_volume", "bits_per_grain_1t", "bits_per_grain_64t" };
    unsigned nsizes = b->quick ? 2 : 3;
    struct result res = result_new("meta_bits_per_grain", "bits/grain", 2.0, "<=");
    res.unpaired = true;             /* baseline: one bit per grain; ratio = value */
    uint64_t mem_1t = 0;

    for (unsigned s = 0; s < nsizes; s++) {
        uint64_t grains = sizes[s] / b->grain;
        double v[MAX_RUNS];
        for (unsigned i = 0; i < b->runs; i++) {
            int err = 0;
            struct bitmap *bm = bitmap_create(grains, &err);
            if (!bm)
                return fail(b, err, "cannot create a bitmap of %llu bits: %s",
                            (unsigned long long)grains, strerror(-err));
            if ((err = bitmap_set_range(bm, 0, grains)) < 0 || bitmap_count(bm) != grains) {
                bitmap_destroy(bm);
                return fail(b, err, "setting %llu bits failed", (unsigned long long)grains);
            }
            uint64_t mem = bitmap_mem_bytes(bm);
            bitmap_destroy(bm);
            v[i] = (double)mem * 8 / (double)grains;
            if (sizes[s] == 1 * TiB) {
                mem_1t = mem;
                res.runs[i] = v[i];
                res.base_runs[i] = 1.0;
            }
        }
        detail_num(&res, keys[s], median(v, b->runs));
    }
    res.nruns = res.nbase = b->runs;
    detail_num(&res, "volume_bytes", (double)TiB);
    detail_num(&res, "grain", b->grain);
    detail_num(&res, "grains", (double)(TiB / b->grain));
    detail_num(&res, "mem_bytes", (double)mem_1t);
    detail_num(&res, "bench_volume_bytes", (double)b->vol_size);
    emit(b, &res, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * loadgen_vs_fio_randread / _randwrite: trust in the load generator. */

/* One fio run of 4 KiB random I/O on the source file, as load_run does it. */
static int fio_4k(struct bench *b, bool write, double secs, struct fio_dir *out)
{
    char rt[32], size[32], ioeng[32], msg[256], fname[PATH_LEN + 16];
    struct fio_result fr;
    int r;

    snprintf(rt, sizeof rt, "--runtime=%ums", (unsigned)(secs * 1000));
    snprintf(size, sizeof size, "--size=%llu", (unsigned long long)b->region);
    snprintf(ioeng, sizeof ioeng, "--ioengine=%s", fio_ioengine(pc_engine_io_backend(b->e)));
    snprintf(fname, sizeof fname, "--filename=%s", b->src_path);
    char *const argv[] = {
        "fio", "--name=fio-4k", fname, ioeng, "--direct=1",
        write ? "--rw=randwrite" : "--rw=randread", "--bs=4k", "--iodepth=32",
        size, "--time_based", rt, "--norandommap", "--randrepeat=0", "--numjobs=1", NULL };
    if ((r = fio_run(argv, &fr, msg, sizeof msg)) < 0)
        return fail(b, r, "%s", msg);
    *out = write ? fr.jobs[0].write : fr.jobs[0].read;
    if (out->runtime_s <= 0 || out->total_ios == 0)
        return fail(b, -EIO, "fio reported no %s I/O", write ? "write" : "read");
    return 0;
}

/*
 * Each run gives the load generator and fio the same time in two slices
 * each, ABBA (BAAB on odd runs): fio cannot be cut finer without paying its
 * start-up each time, and two halves already cancel a steady drift.
 */
static int bench_loadgen(struct bench *b)
{
    static const char *names[] = { "loadgen_vs_fio_randread", "loadgen_vs_fio_randwrite" };
    /* a check of the harness, not of the engine: half time in --quick */
    double slice = (b->quick ? b->secs / 2 : b->secs) / 2;
    int r;

    for (unsigned k = 0; k < 2; k++) {
        struct result res = result_new(names[k], "IOPS", 0.9, ">=");
        double lat[MAX_RUNS], flat[MAX_RUNS];
        if (!wanted(b, names[k])) {
            b->emitted |= 1u << k;
            continue;
        }
        for (unsigned i = 0; i < b->runs; i++) {
            double ios[2] = { 0, 0 }, secs[2] = { 0, 0 }, latsum[2] = { 0, 0 };
            for (unsigned step = 0; step < 4; step++) {
                unsigned side = (((step + 1) / 2) % 2) ^ (i % 2);   /* 0 loadgen, 1 fio */
                if (side == 0) {
                    struct load_result lr;
                    struct load_spec s = rand_spec(b, b->plain, k ? PC_IO_WRITE : PC_IO_READ,
                                                   IO_4K, slice);
                    if ((r = run_load(b, &s, &lr, names[k])) < 0)
                        return r;
                    ios[0] += (double)lr.ios;
                    secs[0] += lr.secs;
                    latsum[0] += lr.lat_us * (double)lr.ios;
                } else {
                    struct fio_dir d = { 0 };
                    if ((r = fio_4k(b, k, slice, &d)) < 0)
                        return r;
                    ios[1] += (double)d.total_ios;
                    secs[1] += d.runtime_s;
                    latsum[1] += d.lat_us * (double)d.total_ios;
                }
            }
            res.runs[i] = ios[0] / secs[0];
            res.base_runs[i] = ios[1] / secs[1];
            lat[i] = latsum[0] / ios[0];
            flat[i] = latsum[1] / ios[1];
            logf_("%s run %u/%u: loadgen %.0f IOPS, fio %.0f IOPS", names[k], i + 1, b->runs,
                  res.runs[i], res.base_runs[i]);
        }
        res.nruns = res.nbase = b->runs;
        detail_num(&res, "loadgen_lat_us", median(lat, b->runs));
        detail_num(&res, "fio_lat_us", median(flat, b->runs));
        detail_num(&res, "region_bytes", (double)b->region);
        detail_num(&res, "qd", QD);
        detail_num(&res, "workers", pc_engine_workers(b->e));
        emit(b, &res, k);
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * bgcopy, bgcopy_vs_qemu_img */

/* Compare n random 4 KiB blocks of target and source. */
static int verify_copy(struct bench *b, struct pc_volume *t, unsigned n)
{
    char *x = pc_buf_alloc_any(IO_4K), *y = pc_buf_alloc_any(IO_4K);
    int r = x && y ? 0 : -ENOMEM;
    for (unsigned i = 0; i < n && r == 0; i++) {
        uint64_t off = load_rand(&b->seed) % (b->vol_size / IO_4K) * IO_4K;
        r = pc_io_sync(b->e, PC_IO_READ, b->plain, off, IO_4K, x, 0);
        if (r == 0)
            r = pc_io_sync(b->e, PC_IO_READ, t, off, IO_4K, y, 0);
        if (r == 0 && memcmp(x, y, IO_4K) != 0)
            r = fail(b, -EIO, "background copy: target differs from source at offset %llu",
                     (unsigned long long)off);
        else if (r < 0)
            r = fail(b, r, "background copy: reading back failed: %s", strerror(-r));
    }
    pc_buf_free_any(x, IO_4K);
    pc_buf_free_any(y, IO_4K);
    return r;
}

static int make_sparse(struct bench *b, const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        int r = -errno;
        if (fd >= 0)
            close(fd);
        return fail(b, r, "cannot create %s: %s", path, strerror(-r));
    }
    close(fd);
    return 0;
}

static int bench_bgcopy(struct bench *b)
{
    struct result res = result_new("bgcopy", "MB/s", 0.9, ">=");
    struct result rq = result_new("bgcopy_vs_qemu_img", "MB/s", 1.3, ">=");
    double secs[MAX_RUNS], fio_rd[MAX_RUNS], fio_wr[MAX_RUNS], qsecs[MAX_RUNS];
    double size = (double)b->vol_size;
    int r;

    for (unsigned i = 0; i < b->runs; i++) {
        /* pitcopy: start to idle_or_copied */
        struct bvol t = { 0 };
        struct pc_map *m = NULL;
        if ((r = vol_fresh(b, b->dir, "bg-tgt", b->vol_size, &t)) < 0)
            return r;
        double t0 = now_s();
        r = map_start(b, b->src, t.v, PC_RATE_UNLIMITED, &m);
        if (r == 0 && (r = pc_map_wait(m, PC_MAP_IDLE_OR_COPIED, WAIT_MS)) < 0)
            r = fail(b, r, "background copy did not finish: %s", strerror(-r));
        double t1 = now_s();
        if (r == 0) {
            struct pc_map_info info;
            pc_map_info(m, &info);
            if (!info.complete || info.grains_split != info.grains)
                r = fail(b, -EIO, "background copy ended incomplete: %llu of %llu grains",
                         (unsigned long long)info.grains_split, (unsigned long long)info.grains);
        }
        map_drop(&m);
        if (r == 0)
            r = verify_copy(b, t.v, 16);
        vol_drop(&t);
        if (r < 0)
            return r;
        secs[i] = t1 - t0;
        res.runs[i] = rq.runs[i] = size / secs[i] / 1e6;

        /* the copy ceiling: fio reading the source while writing the target */
        char msg[256], size_o[32], ioeng[32], fsrc[PATH_LEN + 16], ftgt[PATH_LEN + 16];
        struct fio_result fr;
        if ((r = make_sparse(b, t.path, b->vol_size)) < 0)
            return r;
        snprintf(size_o, sizeof size_o, "--size=%llu", (unsigned long long)b->vol_size);
        snprintf(ioeng, sizeof ioeng, "--ioengine=%s", fio_ioengine(pc_engine_io_backend(b->e)));
        snprintf(fsrc, sizeof fsrc, "--filename=%s", b->src_path);
        snprintf(ftgt, sizeof ftgt, "--filename=%s", t.path);
        char *const argv[] = {
            "fio", ioeng, "--direct=1", "--bs=1M", "--iodepth=16", size_o, "--fallocate=none",
            "--name=read-src", fsrc, "--rw=read",
            "--name=write-tgt", ftgt, "--rw=write", NULL };
        r = fio_run(argv, &fr, msg, sizeof msg);
        unlink(t.path);
        if (r < 0)
            return fail(b, r, "%s", msg);
        if (fr.njobs < 2 || fr.jobs[0].read.runtime_s <= 0 || fr.jobs[1].write.runtime_s <= 0)
            return fail(b, -EIO, "fio copy ceiling: unexpected report (%u jobs)", fr.njobs);
        fio_rd[i] = (double)fr.jobs[0].read.io_bytes / fr.jobs[0].read.runtime_s / 1e6;
        fio_wr[i] = (double)fr.jobs[1].write.io_bytes / fr.jobs[1].write.runtime_s / 1e6;
        res.base_runs[i] = fio_rd[i] < fio_wr[i] ? fio_rd[i] : fio_wr[i];

        /* qemu-img convert into a fresh file */
        unlink(t.path);
        r = qemu_img_convert(b->src_path, t.path, &qsecs[i], msg, sizeof msg);
        unlink(t.path);
        if (r < 0)
            return fail(b, r, "%s", msg);
        rq.base_runs[i] = size / qsecs[i] / 1e6;
        logf_("bgcopy run %u/%u: pitcopy %.0f MB/s (%.2f s), fio read %.0f / write %.0f MB/s, "
              "qemu-img %.0f MB/s (%.2f s)", i + 1, b->runs, res.runs[i], secs[i],
              fio_rd[i], fio_wr[i], rq.base_runs[i], qsecs[i]);
    }
    res.nruns = res.nbase = rq.nruns = rq.nbase = b->runs;
    detail_num(&res, "copy_bytes", size);
    detail_num(&res, "secs", median(secs, b->runs));
    detail_num(&res, "fio_read_mbps", median(fio_rd, b->runs));
    detail_num(&res, "fio_write_mbps", median(fio_wr, b->runs));
    detail_num(&res, "grain", b->grain);
    emit(b, &res, 0);
    detail_num(&rq, "copy_bytes", size);
    detail_num(&rq, "secs", median(secs, b->runs));
    detail_num(&rq, "qemu_img_secs", median(qsecs, b->runs));
    emit(b, &rq, 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * thin_copy_time, thin_copy_bytes
 *
 * A source with 10 % of its bytes allocated (1 MiB of data every 10 MiB, the
 * rest never written) against the fully allocated source of the same size,
 * each copied by an unlimited background copy into a fresh sparse target,
 * back to back in every run (alternating which goes first).  Time is start
 * to idle_or_copied; bytes are what the target file has allocated after
 * (st_blocks): the copy skips the source's holes and writes none.  Both
 * ratios should be near 0.1. */

static uint64_t file_alloc(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/* One copy of s into a fresh target: seconds and the target's allocation. */
static int thin_one(struct bench *b, struct pc_volume *s, double *secs, double *alloc)
{
    struct bvol t = { 0 };
    struct pc_map *m = NULL;
    int r = vol_fresh(b, b->dir, "thin-tgt", b->vol_size, &t);
    if (r < 0)
        return r;
    double t0 = now_s();
    r = map_start(b, s, t.v, PC_RATE_UNLIMITED, &m);
    if (r == 0 && (r = pc_map_wait(m, PC_MAP_IDLE_OR_COPIED, WAIT_MS)) < 0)
        r = fail(b, r, "background copy of %s did not finish: %s", pc_volume_name(s),
                 strerror(-r));
    *secs = now_s() - t0;
    map_drop(&m);
    *alloc = (double)file_alloc(t.path);
    vol_drop(&t);
    return r;
}

static int bench_thin(struct bench *b)
{
    struct result rt = result_new("thin_copy_time", "s", 0.2, "<=");
    struct result rb = result_new("thin_copy_bytes", "B", 0.15, "<=");
    struct bvol ts = { 0 };
    const uint64_t step = 10 * MiB, piece = 1 * MiB;
    uint64_t data = 0;
    int r = vol_fresh(b, b->dir, "thin-src", b->vol_size, &ts);
    void *buf = pc_buf_alloc_any(piece);
    if (r == 0 && !buf)
        r = fail(b, -ENOMEM, "out of memory");
    for (uint64_t off = 0; r == 0 && off + piece <= b->vol_size; off += step) {
        for (size_t i = 0; i < piece / 8; i++)
            ((uint64_t *)buf)[i] = load_rand(&b->seed) | 1;
        r = pc_io_sync(b->e, PC_IO_WRITE, ts.v, off, (uint32_t)piece, buf, 0);
        if (r < 0)
            r = fail(b, r, "writing the thin source: %s", strerror(-r));
        data += piece;
    }
    if (r == 0)
        pc_io_sync(b->e, PC_IO_FLUSH, ts.v, 0, 0, NULL, 0);
    pc_buf_free_any(buf, piece);
    logf_("thin source: %llu MiB of data in %llu MiB (%.1f %% allocated)",
          (unsigned long long)(data >> 20), (unsigned long long)(b->vol_size >> 20),
          100.0 * (double)file_alloc(ts.path) / (double)b->vol_size);
    for (unsigned i = 0; i < b->runs && r == 0; i++) {
        double st = 0, sa = 0, ft = 0, fa = 0;
        if (i % 2 == 0) {
            r = thin_one(b, ts.v, &st, &sa);
            if (r == 0)
                r = thin_one(b, b->src, &ft, &fa);
        } else {
            r = thin_one(b, b->src, &ft, &fa);
            if (r == 0)
                r = thin_one(b, ts.v, &st, &sa);
        }
        if (r < 0)
            break;
        rt.runs[i] = st;
        rt.base_runs[i] = ft;
        rb.runs[i] = sa;
        rb.base_runs[i] = fa;
        logf_("thin_copy run %u/%u: thin %.3f s, %.1f MiB allocated; full %.3f s, %.1f MiB",
              i + 1, b->runs, st, sa / (double)MiB, ft, fa / (double)MiB);
    }
    vol_drop(&ts);
    if (r < 0)
        return r;
    rt.nruns = rt.nbase = rb.nruns = rb.nbase = b->runs;
    detail_num(&rt, "source_bytes", (double)b->vol_size);
    detail_num(&rt, "source_data_bytes", (double)data);
    detail_num(&rt, "grain", b->grain);
    emit(b, &rt, 0);
    detail_num(&rb, "source_bytes", (double)b->vol_size);
    detail_num(&rb, "source_data_bytes", (double)data);
    emit(b, &rb, 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * cow_first_touch */

/* First-touch 4 KiB writes of list to the source through n fresh started
 * nocopy mappings (H2); the newest must end with every grain split. */
static int first_touch(struct bench *b, unsigned ntargets, const uint64_t *list, uint64_t n,
                       struct load_result *lr)
{
    struct bvol t[NTARGETS] = { 0 };
    struct pc_map *m[NTARGETS] = { 0 };
    int r = 0;

    for (unsigned i = 0; i < ntargets && r == 0; i++) {
        char name[32];
        snprintf(name, sizeof name, "ft-tgt%u", i);
        r = vol_fresh(b, b->dir, name, b->vol_size, &t[i]);
        if (r == 0)
            r = map_start(b, b->src, t[i].v, 0, &m[i]);
    }
    if (r == 0) {
        struct load_spec s = list_spec(b->src, IO_4K, list, n, 0);
        r = run_load(b, &s, lr, "first-touch writes");
    }
    if (r == 0 && map_split(m[ntargets - 1]) != n)
        r = fail(b, -EIO, "after %llu first-touch writes the newest mapping has %llu grains split",
                 (unsigned long long)n, (unsigned long long)map_split(m[ntargets - 1]));
    for (unsigned i = 0; i < ntargets; i++)     /* oldest first: nothing to clean */
        map_drop(&m[i]);
    for (unsigned i = 0; i < ntargets; i++)
        vol_drop(&t[i]);
    return r;
}

static int bench_cow(struct bench *b)
{
    struct result res = result_new("cow_first_touch", "IOPS", NAN, ">=");
    double grd[MAX_RUNS], gwr[MAX_RUNS], clat[MAX_RUNS], blat[MAX_RUNS];
    double gsecs = b->secs / 2;
    int r;

    for (unsigned i = 0; i < b->runs; i++) {
        uint64_t n, ng;
        uint64_t seed = next_seed(b);
        uint64_t *list = load_grain_list(0, b->region, b->grain, IO_4K, seed, &n);
        uint64_t *glist = load_grain_list(0, b->region, b->grain, b->grain, seed, &ng);
        struct load_result lr;
        struct bvol scratch = { 0 };
        if (!list || !glist) {
            free(list);
            free(glist);
            return fail(b, -ENOMEM, "out of memory for the offset lists");
        }
        /* the same writes with no mapping, round the list for a while */
        struct load_spec s = list_spec(b->plain, IO_4K, list, n, b->secs);
        s.wrap = true;
        s.count = 0;
        if ((r = run_load(b, &s, &lr, "first-touch baseline")) < 0)
            goto out;
        res.base_runs[i] = lr.iops;
        blat[i] = lr.lat_us;
        /* the model's inputs: grain reads from the source, grain writes into
         * a fresh sparse file (as the copy writes into the fresh target) */
        s = rand_spec(b, b->plain, PC_IO_READ, b->grain, gsecs);
        if ((r = run_load(b, &s, &lr, "grain reads")) < 0)
            goto out;
        grd[i] = lr.mbps;
        if ((r = vol_fresh(b, b->dir, "grain-scratch", b->vol_size, &scratch)) < 0)
            goto out;
        s = list_spec(scratch.v, b->grain, glist, ng, gsecs);
        r = run_load(b, &s, &lr, "grain writes");
        vol_drop(&scratch);
        if (r < 0)
            goto out;
        gwr[i] = lr.mbps;
        /* the engine */
        if ((r = first_touch(b, 1, list, n, &lr)) < 0)
            goto out;
        res.runs[i] = lr.iops;
        clat[i] = lr.lat_us;
        logf_("cow_first_touch run %u/%u: %llu grains, cow %.0f IOPS, plain %.0f IOPS, "
              "grain read %.0f MB/s, grain write %.0f MB/s", i + 1, b->runs,
              (unsigned long long)n, res.runs[i], res.base_runs[i], grd[i], gwr[i]);
out:
        free(list);
        free(glist);
        if (r < 0)
            return r;
    }
    res.nruns = res.nbase = b->runs;
    /* The bound, per run: with a plain 4 KiB write costing t4k = 1/IOPS, a
     * split costs read(grain) + write(grain) + t4k, at the same queue depth. */
    double best[MAX_RUNS], to_best[MAX_RUNS], best_iops[MAX_RUNS];
    for (unsigned i = 0; i < b->runs; i++) {
        double t4k = 1 / res.base_runs[i];
        double split = t4k + b->grain / (grd[i] * 1e6) + b->grain / (gwr[i] * 1e6);
        best[i] = t4k / split;
        best_iops[i] = 1 / split;
        to_best[i] = res.runs[i] / res.base_runs[i] / best[i];
    }
    res.goal = 0.9 * median(best, b->runs);
    detail_num(&res, "best_ratio", median(best, b->runs));
    detail_num(&res, "ratio_to_best", median(to_best, b->runs));
    detail_runs(&res, "ratio_to_best_runs", to_best, b->runs);
    detail_num(&res, "best_iops", median(best_iops, b->runs));
    detail_num(&res, "grain_read_mbps", median(grd, b->runs));
    detail_num(&res, "grain_write_mbps", median(gwr, b->runs));
    detail_num(&res, "cow_lat_us", median(clat, b->runs));
    detail_num(&res, "plain_lat_us", median(blat, b->runs));
    detail_num(&res, "grains", (double)(b->region / b->grain));
    detail_num(&res, "grain", b->grain);
    detail_num(&res, "qd", QD);
    emit(b, &res, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * steady_write, redirect_read: one mapping, interleaved runs. */

static int bench_steady(struct bench *b)
{
    struct result res = result_new("steady_write", "IOPS", 0.95, ">=");
    struct bvol t = { 0 };
    struct pc_map *m = NULL;
    struct load_result lr;
    uint64_t n;
    uint64_t *list = load_grain_list(0, b->region, b->grain, IO_4K, next_seed(b), &n);
    int r;

    if (!list)
        return fail(b, -ENOMEM, "out of memory for the offset list");
    if ((r = vol_fresh(b, b->dir, "st-tgt", b->vol_size, &t)) < 0 ||
        (r = map_start(b, b->src, t.v, 0, &m)) < 0)
        goto out;
    struct load_spec s = list_spec(b->src, IO_4K, list, n, 0);
    if ((r = run_load(b, &s, &lr, "splitting every grain")) < 0)
        goto out;
    if (map_split(m) != n) {
        r = fail(b, -EIO, "steady_write: %llu of %llu grains split after touching each",
                 (unsigned long long)map_split(m), (unsigned long long)n);
        goto out;
    }
    double prep_iops = lr.iops;
    for (unsigned i = 0; i < b->runs; i++) {
        struct load_result ra, rb;
        r = paired_run(b, i, rand_spec(b, b->src, PC_IO_WRITE, IO_4K, 0),
                       rand_spec(b, b->plain, PC_IO_WRITE, IO_4K, 0), &ra, &rb,
                       "4 KiB random writes");
        if (r < 0)
            goto out;
        res.runs[i] = ra.iops;
        res.base_runs[i] = rb.iops;
        logf_("steady_write run %u/%u: mapped %.0f IOPS, plain %.0f IOPS", i + 1, b->runs,
              res.runs[i], res.base_runs[i]);
    }
    if (map_split(m) != n) {
        r = fail(b, -EIO, "steady_write: split count moved from %llu to %llu",
                 (unsigned long long)n, (unsigned long long)map_split(m));
        goto out;
    }
    res.nruns = res.nbase = b->runs;
    detail_num(&res, "split_iops", prep_iops);
    detail_num(&res, "grains", (double)n);
    detail_num(&res, "region_bytes", (double)b->region);
    detail_num(&res, "qd", QD);
    emit(b, &res, 0);
out:
    map_drop(&m);
    vol_drop(&t);
    free(list);
    return r;
}

static int bench_redirect(struct bench *b)
{
    struct result res = result_new("redirect_read", "IOPS", 0.95, ">=");
    struct bvol t = { 0 };
    struct pc_map *m = NULL;
    double lat[MAX_RUNS], blat[MAX_RUNS];
    int r;

    if ((r = vol_fresh(b, b->dir, "rd-tgt", b->vol_size, &t)) < 0 ||
        (r = map_start(b, b->src, t.v, 0, &m)) < 0)
        goto out;
    for (unsigned i = 0; i < b->runs; i++) {
        struct load_result ra, rb;
        r = paired_run(b, i, rand_spec(b, t.v, PC_IO_READ, IO_4K, 0),
                       rand_spec(b, b->src, PC_IO_READ, IO_4K, 0), &ra, &rb,
                       "4 KiB random reads");
        if (r < 0)
            goto out;
        res.runs[i] = ra.iops;
        lat[i] = ra.lat_us;
        res.base_runs[i] = rb.iops;
        blat[i] = rb.lat_us;
        logf_("redirect_read run %u/%u: target %.0f IOPS, source %.0f IOPS", i + 1, b->runs,
              res.runs[i], res.base_runs[i]);
    }
    if (map_split(m) != 0) {
        r = fail(b, -EIO, "redirect_read: reads split %llu grains",
                 (unsigned long long)map_split(m));
        goto out;
    }
    res.nruns = res.nbase = b->runs;
    detail_num(&res, "target_lat_us", median(lat, b->runs));
    detail_num(&res, "source_lat_us", median(blat, b->runs));
    detail_num(&res, "region_bytes", (double)b->region);
    detail_num(&res, "qd", QD);
    emit(b, &res, 0);
out:
    map_drop(&m);
    vol_drop(&t);
    return r;
}

/* ------------------------------------------------------------------------
 * targets_16v1 */

static int bench_targets(struct bench *b)
{
    struct result res = result_new("targets_16v1", "IOPS", 0.9, ">=");
    int r = 0;

    for (unsigned i = 0; i < b->runs && r == 0; i++) {
        uint64_t n;
        uint64_t *list = load_grain_list(0, b->region, b->grain, IO_4K, next_seed(b), &n);
        if (!list)
            return fail(b, -ENOMEM, "out of memory for the offset list");
        for (unsigned step = 0; step < 2 && r == 0; step++) {
            bool sixteen = (step == 0) == (i % 2 == 0);
            struct load_result lr;
            r = first_touch(b, sixteen ? NTARGETS : 1, list, n, &lr);
            if (r == 0)
                *(sixteen ? &res.runs[i] : &res.base_runs[i]) = lr.iops;
        }
        free(list);
        if (r == 0)
            logf_("targets_16v1 run %u/%u: 16 targets %.0f IOPS, 1 target %.0f IOPS", i + 1,
                  b->runs, res.runs[i], res.base_runs[i]);
    }
    if (r < 0)
        return r;
    res.nruns = res.nbase = b->runs;
    detail_num(&res, "targets", NTARGETS);
    detail_num(&res, "grains", (double)(b->region / b->grain));
    detail_num(&res, "qd", QD);
    emit(b, &res, 0);
    return 0;
}

/* ------------------------------------------------------------------------
 * incremental_restart_bytes, incremental_restart_time */

/* Start m with no background copy, note what it must copy, then copy at
 * the unlimited rate; the bytes and seconds from start to idle_or_copied. */
static int timed_start(struct bench *b, struct pc_map *m, double *bytes, double *secs)
{
    struct pc_error err = { 0 };
    struct pc_map_info info;
    double t0 = now_s();
    int r = pc_map_set_copy_rate(m, 0, &err);
    if (r == 0)
        r = pc_map_start(m, &err);
    if (r < 0)
        return fail(b, r, "%s", err.msg);
    pc_map_info(m, &info);
    *bytes = (double)(info.grains - info.grains_split) * info.grain_size;
    if ((r = pc_map_set_copy_rate(m, PC_RATE_UNLIMITED, &err)) < 0)
        return fail(b, r, "%s", err.msg);
    if ((r = pc_map_wait(m, PC_MAP_IDLE_OR_COPIED, WAIT_MS)) < 0)
        return fail(b, r, "background copy did not finish: %s", strerror(-r));
    *secs = now_s() - t0;
    pc_map_info(m, &info);
    if (!info.complete)
        return fail(b, -EIO, "an incremental copy ended incomplete");
    return 0;
}

/* A full copy of the source, 1 % of its grains changed (one 4 KiB write
 * each, at random), and the restart: ratio = restart / full copy. */
static int bench_incremental(struct bench *b)
{
    struct result rb = result_new("incremental_restart_bytes", "bytes", 0.0105, "<=");
    struct result rt = result_new("incremental_restart_time", "s", 0.02, "<=");
    char *buf = pc_buf_alloc_any(IO_4K);
    uint64_t grains = b->vol_size / b->grain, nchange = grains / 100;
    int r = buf ? 0 : -ENOMEM;

    for (unsigned i = 0; i < b->runs && r == 0; i++) {
        struct bvol t = { 0 };
        struct pc_map *m = NULL;
        struct pc_error err = { 0 };
        double full_b, full_s, inc_b, inc_s;
        if ((r = vol_fresh(b, b->dir, "inc-tgt", b->vol_size, &t)) < 0)
            break;
        struct pc_map_opts o = { .name = "inc", .source = b->src, .target = t.v,
                                 .grain_size = b->grain, .copy_rate = 0,
                                 .clean_rate = PC_RATE_UNLIMITED, .incremental = true };
        if ((r = pc_map_create(b->e, &o, &m, &err)) < 0)
            r = fail(b, r, "%s", err.msg);
        if (r == 0)
            r = timed_start(b, m, &full_b, &full_s);
        /* 1 % of the grains, distinct: a random start and an odd stride. */
        uint64_t g = load_rand(&b->seed) % grains, stride = (grains / nchange) | 1;
        for (uint64_t k = 0; k < nchange && r == 0; k++, g = (g + stride) % grains) {
            memset(buf, (int)(k + i + 1), IO_4K);
            r = pc_io_sync(b->e, PC_IO_WRITE, b->src, g * b->grain, IO_4K, buf, 0);
            if (r < 0)
                r = fail(b, r, "writing the source: %s", strerror(-r));
        }
        if (r == 0) {
            struct pc_map_info info;
            pc_map_info(m, &info);
            if (info.grains_changed != nchange)
                r = fail(b, -EIO, "%llu grains recorded as changed, not %llu",
                         (unsigned long long)info.grains_changed, (unsigned long long)nchange);
        }
        if (r == 0)
            r = timed_start(b, m, &inc_b, &inc_s);
        if (r == 0)
            r = verify_copy(b, t.v, 64);
        map_drop(&m);
        vol_drop(&t);
        if (r < 0)
            break;
        rb.runs[i] = inc_b;
        rb.base_runs[i] = full_b;
        rt.runs[i] = inc_s;
        rt.base_runs[i] = full_s;
        logf_("incremental run %u/%u: full copy %.0f MB in %.3f s, restart after 1 %% changed "
              "%.1f MB in %.4f s", i + 1, b->runs, full_b / 1e6, full_s, inc_b / 1e6, inc_s);
    }
    pc_buf_free_any(buf, IO_4K);
    if (r < 0)
        return r;
    rb.nruns = rb.nbase = rt.nruns = rt.nbase = b->runs;
    detail_num(&rb, "grains", (double)grains);
    detail_num(&rb, "grains_changed", (double)nchange);
    detail_num(&rb, "grain", b->grain);
    emit(b, &rb, 0);
    detail_num(&rt, "grains_changed", (double)nchange);
    emit(b, &rt, 1);
    return 0;
}

/* ------------------------------------------------------------------------
 * Groups, options, main. */

static const struct group {
    const char *names[4];
    int       (*run)(struct bench *b);
    bool        needs_source;
    const char *tag;            /* --only TAG selects the group too (and prints its names) */
} groups[] = {
    { { "establish_us_1g", "establish_us_1t", "establish_us_1p" }, bench_establish, true, NULL },
    { { "meta_bits_per_grain" }, bench_meta, false, NULL },
    { { "group_hold_us_1", "group_hold_us_16", "group_hold_us_128" }, bench_group_hold, true,
      NULL },
    { { "loadgen_vs_fio_randread", "loadgen_vs_fio_randwrite" }, bench_loadgen, true, NULL },
    { { "bgcopy", "bgcopy_vs_qemu_img" }, bench_bgcopy, true, NULL },
    { { "thin_copy_time", "thin_copy_bytes" }, bench_thin, true, NULL },
    { { "cow_first_touch" }, bench_cow, true, NULL },
    { { "steady_write" }, bench_steady, true, NULL },
    { { "redirect_read" }, bench_redirect, true, NULL },
    { { "targets_16v1" }, bench_targets, true, NULL },
    { { "incremental_restart_bytes", "incremental_restart_time" }, bench_incremental, true,
      "incremental" },
    { { "nbd_randread_4k", "nbd_randread_4k_nj4", "nbd_randwrite_4k", "nbd_randwrite_4k_nj4" },
      bench_nbd_rand, false, "nbd" },
    { { "nbd_cow_first_touch_4k" }, bench_nbd_cow, false, "nbd" },
    { { "nbd_durability_cost" }, bench_nbd_durability, false, "nbd" },
    { { "nbd_bgcopy" }, bench_nbd_bgcopy, false, "nbd" },
    { { "serve_rss" }, bench_serve_rss, false, "nbd" },
};
#define NGROUPS (sizeof groups / sizeof groups[0])

static bool group_wanted(const struct bench *b, const struct group *g)
{
    for (unsigned i = 0; i < 4 && g->names[i]; i++)
        if (wanted(b, g->names[i]))
            return true;
    return g->tag && wanted(b, g->tag);
}

static void usage(FILE *f)
{
    fprintf(f,
"usage: pitcopy-bench [options]\n"
"\n"
"Measures the pitcopy engine against baselines taken in the same run on the\n"
"same files, and prints one JSON object per line on stdout:\n"
"  {\"name\", \"value\", \"unit\", \"baseline\", \"ratio\", \"goal\", \"goal_cmp\", \"pass\",\n"
"   \"runs\", \"baseline_runs\", \"detail\", \"backend\"}\n"
"value and baseline are medians of the runs.  ratio = pitcopy / baseline: the\n"
"median of the per-run ratios where each run measures both back to back\n"
"(detail.ratio_of_medians has the other), else as the benchmark says.  pass\n"
"says whether ratio meets goal by goal_cmp (\">=\", \"<=\", or \"~=\": within a\n"
"factor of 2; value_max, when present, bounds value too).  Progress goes to\n"
"stderr.  The exit status is 0 when every selected benchmark ran (whether or\n"
"not it met its goal: `make bench` goes on to draw the charts), 1 when one\n"
"could not be measured (its line carries \"error\") or, with --strict, missed\n"
"its goal, 2 for bad usage.\n"
"\n"
"Benchmarks (see bench/README.md):\n"
"  establish_us_1g|1t|1p     write hold of pc_map_start on 1 GiB, 1 TiB, 1 PiB\n"
"                            sparse sources (µs); baseline the 1 GiB case\n"
"  meta_bits_per_grain       split-bitmap memory per grain, every grain split\n"
"  loadgen_vs_fio_randread|randwrite  the load generator against fio, 4 KiB qd 32\n"
"  bgcopy                    unlimited-rate background copy vs fio's copy ceiling\n"
"  bgcopy_vs_qemu_img        the same copy vs qemu-img convert\n"
"  cow_first_touch           first-touch 4 KiB writes vs no mapping (+ model bound)\n"
"  steady_write              4 KiB writes, every grain split, vs no mapping\n"
"  redirect_read             4 KiB reads of an unsplit target vs the source\n"
"  targets_16v1              first-touch writes with 16 targets vs 1\n"
"  incremental (tag)         a restart after 1 %% of the grains changed vs the full\n"
"    incremental_restart_bytes|time  copy before it: bytes and seconds (ratio)\n"
"  nbd (tag: all of these)   `pitcopy serve` over NBD vs qemu-storage-daemon:\n"
"    nbd_randread_4k|randwrite_4k[_nj4]  fio nbd engine, 4 KiB qd 32, 1|4 jobs\n"
"    nbd_cow_first_touch_4k  first-touch writes through NBD vs copy-before-write\n"
"    nbd_durability_cost     the same with --durability strict vs none\n"
"    nbd_bgcopy              background copy vs blockdev-backup sync=full\n"
"    serve_rss               daemon RSS, 16 x 1 TiB volumes, 8 started maps (MiB)\n"
"\n"
"Options:\n"
"  --quick          3 runs of 1 s on a 512 MiB source (under a minute)\n"
"                   (default: 5 runs of 2 s on a 2 GiB source)\n"
"  --out DIR        also write DIR/results.jsonl (for bench/plot.sh DIR)\n"
"  --dir DIR        where the volume files go (default $TMPDIR, else /var/tmp);\n"
"                   a private directory is made there and removed at exit.\n"
"                   The 1 TiB and 1 PiB establish cases always use /dev/shm.\n"
"  --only NAME[,NAME...]  print only the results whose names start with a NAME\n"
"                   (and run only the groups that make them)\n"
"  --backend uring|aio    the engine's I/O backend (fio uses the matching engine)\n"
"  --runs N         runs per benchmark (median reported; max %u)\n"
"  --seconds S      duration of each timed measurement\n"
"  --size BYTES     source volume size (K/M/G suffixes)\n"
"  --region BYTES   region of the random and first-touch workloads (default\n"
"                   the whole source)\n"
"  --workers N      engine worker threads (default: one per CPU)\n"
"  --strict         exit 1 when a result misses its goal (for CI)\n"
"  --help           this text\n"
"\n"
"Needs fio and qemu-img (scripts/install-deps).  Free space in --dir: twice\n"
"the source size plus 1 GiB.\n", MAX_RUNS);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    case 't': case 'T': v <<= 40; end++; break;
    default: break;
    }
    if (*end == 'i' && end[1] == 'B')
        end += 2;
    if (*end)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_args(struct bench *b, int argc, char **argv)
{
    enum { O_OUT = 256, O_DIR, O_ONLY, O_BACKEND, O_RUNS, O_SECS, O_SIZE, O_REGION, O_WORKERS,
           O_STRICT };
    static const struct option opts[] = {
        { "quick", no_argument, NULL, 'q' },
        { "out", required_argument, NULL, O_OUT },
        { "dir", required_argument, NULL, O_DIR },
        { "only", required_argument, NULL, O_ONLY },
        { "backend", required_argument, NULL, O_BACKEND },
        { "runs", required_argument, NULL, O_RUNS },
        { "seconds", required_argument, NULL, O_SECS },
        { "size", required_argument, NULL, O_SIZE },
        { "region", required_argument, NULL, O_REGION },
        { "workers", required_argument, NULL, O_WORKERS },
        { "strict", no_argument, NULL, O_STRICT },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    long runs = 0, workers = -1;
    double secs = 0;
    uint64_t size = 0, region = 0;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 'q': b->quick = true; break;
        case O_OUT: b->out_dir = optarg; break;
        case O_DIR: b->dir_opt = optarg; break;
        case O_STRICT: b->strict = true; break;
        case O_ONLY: b->only = optarg; break;
        case O_BACKEND:
            if (strcmp(optarg, "uring") && strcmp(optarg, "aio")) {
                fprintf(stderr, "pitcopy-bench: --backend takes uring or aio, not '%s'\n", optarg);
                return -EINVAL;
            }
            b->backend = optarg;
            break;
        case O_RUNS:
            runs = strtol(optarg, &end, 10);
            if (*end || runs < 1 || runs > MAX_RUNS) {
                fprintf(stderr, "pitcopy-bench: --runs takes 1-%u\n", MAX_RUNS);
                return -EINVAL;
            }
            break;
        case O_SECS:
            secs = strtod(optarg, &end);
            if (*end || !(secs >= 0.1 && secs <= 600)) {
                fprintf(stderr, "pitcopy-bench: --seconds takes 0.1-600\n");
                return -EINVAL;
            }
            break;
        case O_SIZE:
        case O_REGION:
            if (parse_size(optarg, c == O_SIZE ? &size : &region) < 0) {
                fprintf(stderr, "pitcopy-bench: bad size '%s'\n", optarg);
                return -EINVAL;
            }
            break;
        case O_WORKERS:
            workers = strtol(optarg, &end, 10);
            if (*end || workers < 0 || workers > 256) {
                fprintf(stderr, "pitcopy-bench: --workers takes 0-256\n");
                return -EINVAL;
            }
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pitcopy-bench: unexpected argument '%s'\n", argv[optind]);
        return -EINVAL;
    }
    b->runs = runs ? (unsigned)runs : b->quick ? 3 : 5;
    b->secs = secs > 0 ? secs : b->quick ? 1.0 : 2.0;
    b->vol_size = size ? size : b->quick ? 512 * MiB : 2 * GiB;
    b->region = region ? region : b->vol_size;
    b->workers = workers >= 0 ? (unsigned)workers : 0;
    b->grain = PC_GRAIN_DEFAULT;
    if (b->vol_size % COPY_BS || b->region % b->grain || b->region == 0 ||
        b->region > b->vol_size) {
        fprintf(stderr, "pitcopy-bench: --size must be a multiple of 1 MiB and --region a "
                        "multiple of %u KiB no larger than it\n", b->grain >> 10);
        return -EINVAL;
    }
    if (b->only) {
        bool any = false;
        for (unsigned g = 0; g < NGROUPS; g++)
            any |= group_wanted(b, &groups[g]);
        if (!any) {
            fprintf(stderr, "pitcopy-bench: --only %s matches no benchmark; see --help\n", b->only);
            return -EINVAL;
        }
    }
    return 0;
}

static int check_space(struct bench *b)
{
    struct statvfs sv;
    /* the source, one full target (a copy, or the newest of the first-touch
     * targets), and the establish and scratch files' share */
    uint64_t need = 2 * b->vol_size + 1 * GiB;
    if (statvfs(b->dir, &sv) < 0)
        return fail(b, -errno, "cannot stat %s: %s", b->dir, strerror(errno));
    uint64_t have = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (have < need)
        return fail(b, -ENOSPC, "%s has %llu MiB free; the benchmarks need about %llu MiB "
                    "(use --dir or --quick)", b->dir, (unsigned long long)(have >> 20),
                    (unsigned long long)(need >> 20));
    return 0;
}

int main(int argc, char **argv)
{
    struct bench b = { .seed = 0x5eed1e55ull };
    struct pc_error err = { 0 };
    int r;

    if (parse_args(&b, argc, argv) < 0)
        return 2;
    b.seed ^= load_now_ns();

    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);   /* stdout piped into a reader that quit */

    const char *parent = b.dir_opt ? b.dir_opt : getenv("TMPDIR");
    if (!parent || !*parent)
        parent = "/var/tmp";
    if (make_dir(&b, parent, b.dir) < 0 || check_space(&b) < 0) {
        fprintf(stderr, "pitcopy-bench: %s\n", b.msg);
        cleanup_all();
        return 1;
    }
    for (unsigned g = 0; g < NGROUPS; g++) {
        if (!group_wanted(&b, &groups[g]) || groups[g].run == bench_establish ||
            groups[g].run == bench_meta)
            continue;
        if ((r = baseline_probe("fio")) < 0 || (r = baseline_probe("qemu-img")) < 0) {
            fprintf(stderr, "pitcopy-bench: fio and qemu-img are needed for the baselines "
                            "(scripts/install-deps installs them): %s\n", strerror(-r));
            cleanup_all();
            return 1;
        }
        break;
    }
    if (b.out_dir) {
        char path[PATH_LEN];
        mkdir(b.out_dir, 0755);
        snprintf(path, sizeof path, "%s/results.jsonl", b.out_dir);
        b.out = fopen(path, "w");
        if (!b.out) {
            fprintf(stderr, "pitcopy-bench: cannot write %s: %s\n", path, strerror(errno));
            cleanup_all();
            return 1;
        }
    }

    struct pc_engine_opts eo = { .workers = b.workers, .io_backend = b.backend };
    if ((r = pc_engine_create(&eo, &b.e, &err)) < 0) {
        fprintf(stderr, "pitcopy-bench: %s\n", err.msg);
        cleanup_all();
        return 1;
    }
    logf_("%s run: %u runs of %.1f s, source %llu MiB, region %llu MiB, grain %u KiB, "
          "%u workers, %s backend, files in %s (%s)", b.quick ? "quick" : "full", b.runs, b.secs,
          (unsigned long long)(b.vol_size >> 20), (unsigned long long)(b.region >> 20),
          b.grain >> 10, pc_engine_workers(b.e), pc_engine_io_backend(b.e), b.dir,
          fs_name(b.dir));

    double t_all = now_s();
    for (unsigned g = 0; g < NGROUPS; g++) {
        const struct group *gr = &groups[g];
        if (!group_wanted(&b, gr))
            continue;
        double t0 = now_s();
        b.emitted = 0;
        b.msg[0] = 0;
        b.group_tag = gr->tag;
        r = gr->needs_source ? need_source(&b) : 0;
        if (r == 0)
            r = gr->run(&b);
        if (r < 0) {
            logf_("%s: %s", gr->names[0], b.msg[0] ? b.msg : strerror(-r));
            for (unsigned i = 0; i < 4 && gr->names[i]; i++) {
                if (b.emitted & (1u << i))
                    continue;
                struct result res = result_new(gr->names[i], "", NAN, ">=");
                res.error = b.msg[0] ? b.msg : strerror(-r);
                emit(&b, &res, i);
            }
        }
        logf_("%s: %.1f s", gr->names[0], now_s() - t0);
    }
    logf_("all done in %.1f s; %u result(s) missed the goal, %u could not be measured",
          now_s() - t_all, b.missed, b.errors);

    pc_engine_destroy(b.e);
    if (b.out)
        fclose(b.out);
    cleanup_all();
    return b.errors || (b.strict && b.missed) ? 1 : 0;
}
