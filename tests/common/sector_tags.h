/* SPDX-License-Identifier: MIT */
/*
 * tests/common/sector_tags.h — self-describing sectors, for the programs
 * that check what a real daemon kept (tests/crash/crashtest.c,
 * tests/nbd/loadtest.c).
 *
 * Every 512-byte sector a test writes holds, sixteen bytes at a time, the
 * write's tag and the sector's own number.  Reading a sector back then says
 * which write it holds, and that it was written whole and in the right
 * place: a torn, misplaced or stale sector does not parse.  Header-only, so
 * that each program stays one source file.
 */
#ifndef PITCOPY_TESTS_SECTOR_TAGS_H
#define PITCOPY_TESTS_SECTOR_TAGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TAG_SECTOR 512u

/* Fill nsect sectors at buf, numbered from sect0, with tag. */
static inline void tags_fill(char *buf, uint64_t sect0, unsigned nsect, uint64_t tag)
{
    for (unsigned i = 0; i < nsect; i++) {
        uint64_t *w = (uint64_t *)(buf + (size_t)i * TAG_SECTOR);
        for (unsigned j = 0; j < TAG_SECTOR / 16; j++) {
            w[2 * j] = tag;
            w[2 * j + 1] = sect0 + i;
        }
    }
}

/* The tag sector sect (read into p) holds: 0 for zeros (never written), or
 * UINT64_MAX if it is not one whole sector of one write. */
static inline uint64_t tags_of_sector(const char *p, uint64_t sect)
{
    const uint64_t *w = (const uint64_t *)p;
    bool zero = true;
    for (unsigned j = 0; j < TAG_SECTOR / 8 && zero; j++)
        zero = w[j] == 0;
    if (zero)
        return 0;
    for (unsigned j = 0; j < TAG_SECTOR / 16; j++)
        if (w[2 * j] != w[0] || w[2 * j + 1] != sect)
            return UINT64_MAX;
    return w[0];
}

/* xorshift64: the tests' reproducible random numbers (state never 0). */
static inline uint64_t tags_rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

#endif
