/* SPDX-License-Identifier: MIT */
/*
 * bench/bench.h — what main.c shares with the benchmark groups in other files
 * (bench/nbd.c): the run's state, a result, and the helpers that make, fill
 * and emit one.  main.c owns all of them; see its header comment.
 */
#ifndef PITCOPY_BENCH_BENCH_H
#define PITCOPY_BENCH_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pitcopy.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define TiB (1ull << 40)
#define PiB (1ull << 50)

#define MAX_RUNS     25
#define PATH_LEN  512

struct bench {
    /* options */
    bool          quick;
    const char   *out_dir;
    const char   *dir_opt;
    const char   *only;
    const char   *backend;
    unsigned      workers;
    unsigned      runs;
    double        secs;
    uint64_t      vol_size;     /* the populated source; bgcopy copies all of it */
    uint64_t      region;       /* random-I/O and first-touch workloads */
    uint32_t      grain;

    /* state */
    char          dir[PATH_LEN];
    char          shm[PATH_LEN];
    FILE         *out;
    struct pc_engine *e;
    struct pc_volume *src;      /* the source of every mapping below */
    struct pc_volume *plain;    /* the same file as a plain volume: baselines (H1) */
    char          src_path[PATH_LEN];
    uint64_t      seed;
    bool          strict;       /* a missed goal fails the run too */
    unsigned      missed;       /* results that missed their goal */
    unsigned      errors;       /* results that could not be measured */
    unsigned      emitted;      /* bit i: names[i] of the current group was emitted */
    char          msg[512];     /* why the current group failed */
    const char   *group_tag;    /* the running group's --only tag (its names print with it) */
};

struct result {
    const char *name;
    const char *unit;
    double      value, baseline, ratio;
    double      goal;
    const char *cmp;            /* ">=", "<=", or "~=" (within a factor of 2) */
    double      value_max;      /* > 0: value must also be at most this */
    double      abs_tol;        /* "~=": also met when |value - baseline| <= abs_tol */
    double      runs[MAX_RUNS], base_runs[MAX_RUNS];
    unsigned    nruns, nbase;
    bool        unpaired;       /* ratio is not the median of runs[i] / base_runs[i] */
    char        detail[4096];   /* JSON members, comma-separated */
    const char *error;
};

void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int fail(struct bench *b, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
double now_s(void);
uint64_t next_seed(struct bench *b);
/* Register dir/name for removal at exit (and on a signal); its path in out. */
const char *bench_path(const char *dir, const char *name, char *out);
/* A private directory under parent, removed at exit (at most two per run). */
int make_dir(struct bench *b, const char *parent, char *out);
/* dir/name into out, a directory something else creates under a work
 * directory: removed (if empty by then) before it, at exit and on signals. */
const char *bench_subdir(const char *dir, const char *name, char *out);
double median(const double *v, unsigned n);
void detail_num(struct result *r, const char *key, double v);
void detail_str(struct result *r, const char *key, const char *s);
void detail_runs(struct result *r, const char *key, const double *v, unsigned n);
struct result result_new(const char *name, const char *unit, double goal, const char *cmp);
/* Medians, ratio (paired unless r->unpaired), pass; print if wanted.  idx: the
 * name's index in its group. */
void emit(struct bench *b, struct result *r, unsigned idx);

/* bench/nbd.c: the NBD daemon against qemu-storage-daemon (group "nbd"). */
int bench_nbd_rand(struct bench *b);
int bench_nbd_cow(struct bench *b);
int bench_nbd_durability(struct bench *b);
int bench_nbd_bgcopy(struct bench *b);
int bench_serve_rss(struct bench *b);
/* Kill the daemons bench/nbd.c started (async-signal-safe, for on_signal). */
void nbd_kill_children(void);

#endif
