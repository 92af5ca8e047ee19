/* SPDX-License-Identifier: MIT */
/* tests/common/testutil.h — small helpers shared by the C tests. */
#ifndef PITCOPY_TESTUTIL_H
#define PITCOPY_TESTUTIL_H

#include <stdint.h>
#include <stddef.h>

/* Exit code for "this environment cannot run the test" (automake, liburing). */
#define T_EXIT_SKIP 77

/* A fresh private directory under $TMPDIR (or /tmp), removed by tu_rmdir. */
char *tu_tmpdir(const char *tag);
void  tu_rmdir(char *dir);

/* xorshift64*: deterministic, seedable, fast. */
static inline uint64_t tu_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static inline uint64_t tu_rand_below(uint64_t *s, uint64_t n) { return n ? tu_rand(s) % n : 0; }

/* Fill buf with a pattern derived from seed (every byte depends on its position). */
void tu_fill(void *buf, size_t len, uint64_t seed);

/* Seed from $PITCOPY_SEED, else from the clock; printed so a failure can be replayed. */
uint64_t tu_seed(const char *test);

/* Environment number with a default. */
uint64_t tu_env_u64(const char *name, uint64_t def);

#endif
