/* SPDX-License-Identifier: MIT */
/*
 * bitmap/bitmap.h — grain bitmaps: one bit per grain, lock-free, lazily paged.
 *
 * Role
 *   A mapping keeps one bit per grain of its volume (set = the target holds
 *   its own copy of that grain).  Volumes run to petabytes, so a bitmap costs
 *   nothing until a grain is touched: the page directory is an anonymous
 *   mapping that the kernel zero-fills on first touch, and each 4 KiB page of
 *   bits (32,768 grains) is allocated the first time a bit in it is set.  A
 *   summary level — one "page full" bit per page — lets find_next_unset skip
 *   whole pages of a mostly-copied map in one word test.
 *
 * Invariants
 *   B1  An absent page reads as all zero; pages are never freed before
 *       bitmap_destroy (so a reader never sees a page vanish).
 *   B2  Bits go 0 → 1 only through bitmap_test_and_set / bitmap_set_range;
 *       1 → 0 only through bitmap_clear_range / bitmap_clear_all.  Clearing
 *       must not run concurrently with setting the same bits (the engine
 *       clears only under its write hold); tests, sets and counts may race
 *       freely with each other.
 *   B3  count() is exact when no set/clear is in flight; while they are it
 *       is some value between the counts before and after.
 *   B4  Memory: 1 bit per grain for touched pages, plus 8 bytes of directory
 *       and 1 summary bit per 32,768 grains (only touched parts are resident).
 *
 * Ordering
 *   test_and_set is a release (seq_cst) RMW; test is an acquire load.  A
 *   thread that sets a bit and then issues I/O, and a thread that tests the
 *   bit after that I/O became visible, agree on the bit (engine read re-check).
 *
 * Context
 *   Every call is safe from any thread and never blocks except the first set
 *   in a page, which allocates 4 KiB (a lost race frees its page).
 *   bitmap_clear_all clears every bit, so by B2 no set may run beside it; it
 *   costs one word read per 64 pages plus ~100 ns per page with bits set.
 *   A find that races a clear in the same page may, for that moment, treat
 *   the page as still full; with no clear in flight the summary is exact.
 */
#ifndef PITCOPY_BITMAP_H
#define PITCOPY_BITMAP_H

#include <stdbool.h>
#include <stdint.h>

#define BITMAP_PAGE_BITS  (4096u * 8u)

struct bitmap;

/* A bitmap of nbits bits, all clear.  Returns NULL (and *err = -ENOMEM) on failure. */
struct bitmap *bitmap_create(uint64_t nbits, int *err);
void     bitmap_destroy(struct bitmap *b);
uint64_t bitmap_size(const struct bitmap *b);

bool     bitmap_test(const struct bitmap *b, uint64_t bit);
/* Set bit; return its old value.  *err (if not NULL) is 0 on success; if the
 * bit's page cannot be allocated this returns false, *err is -ENOMEM, and the
 * bit is still clear. */
bool     bitmap_test_and_set(struct bitmap *b, uint64_t bit, int *err);
/* Set / clear bits [first, first+n). set returns 0 or -ENOMEM. */
int      bitmap_set_range(struct bitmap *b, uint64_t first, uint64_t n);
void     bitmap_clear_range(struct bitmap *b, uint64_t first, uint64_t n);
void     bitmap_clear_all(struct bitmap *b);

/* Number of set bits (B3). O(pages touched). */
uint64_t bitmap_count(const struct bitmap *b);
/* Set bits in [first, first+n) (B3).  Whole pages cost O(1), partial ones a
 * popcount of the words in range. */
uint64_t bitmap_count_range(const struct bitmap *b, uint64_t first, uint64_t n);

/* First clear bit ≥ from, or bitmap_size() if none.  Fast on mostly-set maps. */
uint64_t bitmap_find_next_unset(const struct bitmap *b, uint64_t from);
/* First set bit ≥ from, or bitmap_size() if none.  Skips absent pages. */
uint64_t bitmap_find_next_set(const struct bitmap *b, uint64_t from);

/* Copy n words of bits, starting at bit 64*first_word, into out (absent pages
 * and bits past nbits read as zero).  For persisting the bitmap: the copy is
 * a snapshot only if no set runs beside it (B3's caveat applies per word). */
void     bitmap_get_words(const struct bitmap *b, uint64_t first_word, uint64_t n,
                          uint64_t *out);

/* Bytes of memory actually allocated (resident pages and summary), for meta_bits_per_grain. */
uint64_t bitmap_mem_bytes(const struct bitmap *b);

/* Whole-object consistency check (counts, summary bits, no bits past nbits),
 * for tests and assert(bitmap_check(b)).  Only meaningful while no set or
 * clear is in flight; O(pages touched × 512 words). */
bool     bitmap_check(const struct bitmap *b);

#endif
