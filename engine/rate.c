/* SPDX-License-Identifier: MIT */
/*
 * engine/rate.c — copy and clean rates: Spectrum Virtualize's table.
 *
 * Rate r in 1..150 copies 128 KiB/s × 2^(ceil(r/10) − 1): 1–10 → 128 KiB/s,
 * 41–50 → 2 MiB/s (the default 50), 91–100 → 64 MiB/s, 141–150 → 2 GiB/s.
 * 0 means no background copy; PC_RATE_UNLIMITED means as fast as the
 * devices go.  (../shared/reference/spectrum-virtualize.md §2.4)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pitcopy.h"

uint64_t pc_rate_bytes_per_sec(int rate)
{
    if (rate <= 0)
        return 0;
    if (rate == PC_RATE_UNLIMITED)
        return UINT64_MAX;
    if (rate > 150)
        rate = 150;
    unsigned decade = (unsigned)(rate + 9) / 10;       /* ceil(r/10), 1..15 */
    return (128ull << 10) << (decade - 1);
}

int pc_rate_parse(const char *s, int *rate)
{
    char *end;
    long v;
    if (!s || !*s)
        return -EINVAL;
    if (strcmp(s, "unlimited") == 0) {
        *rate = PC_RATE_UNLIMITED;
        return 0;
    }
    v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 150)
        return -EINVAL;
    *rate = (int)v;
    return 0;
}
