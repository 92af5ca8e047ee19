/* SPDX-License-Identifier: MIT */
/* tests/common/testutil.c — see testutil.h. */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

char *tu_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *path;
    if (!base || !*base)
        base = "/tmp";
    if (asprintf(&path, "%s/pitcopy-%s-XXXXXX", base, tag) < 0)
        return NULL;
    if (!mkdtemp(path)) {
        fprintf(stderr, "cannot create a directory under %s: %s\n", base, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void tu_rmdir(char *dir)
{
    if (!dir)
        return;
    if (!getenv("PITCOPY_KEEP"))
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

void tu_fill(void *buf, size_t len, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1, *p = buf;
    for (size_t i = 0; i < len / 8; i++)
        p[i] = tu_rand(&s);
    for (size_t i = len / 8 * 8; i < len; i++)
        ((uint8_t *)buf)[i] = (uint8_t)tu_rand(&s);
}

uint64_t tu_env_u64(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    return strtoull(v, NULL, 0);
}

uint64_t tu_seed(const char *test)
{
    uint64_t seed = tu_env_u64("PITCOPY_SEED", 0);
    if (!seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    }
    printf("%s: seed %llu (replay with PITCOPY_SEED=%llu)\n", test,
           (unsigned long long)seed, (unsigned long long)seed);
    fflush(stdout);
    return seed;
}
