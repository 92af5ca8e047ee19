/* SPDX-License-Identifier: MIT */
/*
 * bench/load.h — a closed-loop load generator that runs on the engine's workers.
 *
 * Role
 *   load_run() keeps qd requests of bs bytes in flight against one volume,
 *   through the same pc_io_submit path a front end uses: it posts one message
 *   to each worker taking part, which allocates its share of the queue depth
 *   from the worker's registered buffer pool (pc_buf_alloc), submits them all,
 *   and resubmits from each done() until the deadline passes or the request
 *   count is reached.  It reports requests, bytes, IOPS, MB/s (10^6 bytes per
 *   second) and the mean request latency.
 *
 * Patterns
 *   LOAD_RANDOM  uniform random bs-aligned offsets in [base, base+span), with
 *                replacement (as fio --norandommap).
 *   LOAD_SEQ     base, base+bs, … wrapping at the end of the span; the workers
 *                share one cursor, so with a count of span/bs every block is
 *                written exactly once (how the harness fills a volume).
 *   LOAD_LIST    the offsets of list[] in order, each once (first-touch
 *                workloads: one write per grain, see load_grain_list), or
 *                round and round with wrap (the same writes as a plain
 *                baseline that must run for a while).
 *
 * Invariants
 *   L1  Every request counted has completed successfully; the elapsed time
 *       runs from just before the first submission to the last completion,
 *       so IOPS = ios / secs includes the drain after the deadline.
 *   L2  Write buffers hold non-zero pseudo-random bytes (no zero detection
 *       on the way can skip them); read buffers are never inspected.
 *
 * Context
 *   load_run() is a blocking call for a non-worker thread.  One run at a time
 *   per spec; concurrent runs on one engine are allowed (each has its own
 *   state) but the harness never does it.
 */
#ifndef PITCOPY_BENCH_LOAD_H
#define PITCOPY_BENCH_LOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pitcopy.h"

enum load_pattern { LOAD_RANDOM, LOAD_SEQ, LOAD_LIST };

struct load_spec {
    struct pc_volume *vol;
    enum pc_io_op     op;         /* PC_IO_READ or PC_IO_WRITE */
    uint32_t          bs;         /* multiple of PC_BLOCK_SIZE, ≤ 32 MiB */
    unsigned          qd;         /* total queue depth, split across the workers */
    enum load_pattern pattern;
    uint64_t          base, span; /* LOAD_RANDOM, LOAD_SEQ: the region */
    const uint64_t   *list;       /* LOAD_LIST: offsets, each used once */
    uint64_t          nlist;
    bool              wrap;       /* LOAD_LIST: start over at the end of list */
    uint64_t          count;      /* stop after this many requests; 0 = no limit */
    double            seconds;    /* stop issuing after this long; 0 = no limit */
    const _Atomic bool *stop;     /* stop issuing once *stop (another thread sets it) */
    uint64_t          seed;       /* LOAD_RANDOM offsets, write contents */
};

struct load_result {
    uint64_t ios;
    uint64_t bytes;
    double   secs;
    double   iops;
    double   mbps;      /* 10^6 bytes per second */
    double   lat_us;    /* mean completion latency */
};

/* Run spec on e's workers and wait for it.  0, or -errno of the first failed
 * request (then r holds what completed before it), or -EINVAL for a spec
 * that cannot run (no stop condition, bad sizes). */
int load_run(struct pc_engine *e, const struct load_spec *spec, struct load_result *r);

/*
 * Offsets for a first-touch workload: one bs-sized block in each grain of
 * [base, base+span) (at a random bs-aligned place inside the grain), grains
 * in random order.  *n is the number of grains.  free() the result.  NULL
 * when out of memory or when the arguments are not multiples of each other.
 */
uint64_t *load_grain_list(uint64_t base, uint64_t span, uint32_t grain, uint32_t bs,
                          uint64_t seed, uint64_t *n);

/* xorshift64* (seed must not be 0). */
static inline uint64_t load_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* CLOCK_MONOTONIC in ns. */
uint64_t load_now_ns(void);

#endif
