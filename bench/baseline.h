/* SPDX-License-Identifier: MIT */
/*
 * bench/baseline.h — the peers the engine is measured against, run as child
 * processes: fio (--output-format=json, parsed here) and qemu-img convert
 * (timed).
 *
 * Role
 *   A baseline is measured in the same run, on the same files, as the engine
 *   number it is compared with.  This module only runs the programs and reads
 *   their results; main.c decides what to run.
 *
 * Context
 *   Blocking calls for the control thread.  At most one child runs at a
 *   time; its pid is published in baseline_child so that the harness's
 *   SIGINT handler can kill it (the only state shared with a handler).
 *   Children also get PR_SET_PDEATHSIG, so they die with the harness.
 */
#ifndef PITCOPY_BENCH_BASELINE_H
#define PITCOPY_BENCH_BASELINE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* The running child's pid, or 0 (for a signal handler: kill it). */
extern volatile sig_atomic_t baseline_child;

/* One direction of one fio job (fio's "read" or "write" object). */
struct fio_dir {
    uint64_t io_bytes;
    uint64_t total_ios;
    double   iops;
    double   bw_bytes;     /* bytes per second over runtime */
    double   runtime_s;
    double   lat_us;       /* mean completion-to-submission latency (lat_ns.mean) */
};

#define FIO_MAX_JOBS 4

struct fio_result {
    unsigned njobs;
    struct {
        char           name[64];
        int            error;     /* fio's per-job error (errno) */
        struct fio_dir read, write;
    } jobs[FIO_MAX_JOBS];
};

/*
 * Run fio with argv (argv[0] = "fio"; "--output-format=json" is added) and
 * parse its JSON.  Returns 0, or -errno (with a sentence in msg) when fio
 * could not run, exited non-zero, printed no JSON, or a job reported an error.
 */
int fio_run(char *const argv[], struct fio_result *r, char *msg, size_t msglen);

/* fio's name for the ioengine that matches the engine's backend name. */
const char *fio_ioengine(const char *pc_backend);

/*
 * qemu-img convert -f raw -O raw -t none -T none -W -m 16 src dst, timed from
 * spawn to exit.  dst is created by qemu-img (remove it first for a fresh
 * file).  Returns 0 and *secs, or -errno with a sentence in msg.
 */
int qemu_img_convert(const char *src, const char *dst, double *secs, char *msg, size_t msglen);

/* Does prog run (prog --version exits 0)?  For a clear error up front. */
int baseline_probe(const char *prog);

/* prog's full path (as execv needs it) by $PATH, or -ENOENT. */
int baseline_find_in_path(const char *prog, char *out, size_t outlen);

#endif
