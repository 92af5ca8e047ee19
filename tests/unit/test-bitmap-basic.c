/* Description: bitmap bits, ranges, counts and searches at size, word and page edges, and the page-full summary. */
/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cmocka.h>

#include "bitmap/bitmap.h"

#define PS ((uint64_t)BITMAP_PAGE_BITS)

/* Timing bounds are loose; TSan instruments every atomic load (~40x). */
#ifdef __SANITIZE_THREAD__
#define SLOW 10
#else
#define SLOW 1
#endif

/* Sizes: one bit, either side of a word, either side of a page, and a
 * 1 PiB volume at 64 KiB grains (sparse: only touched pages exist). */
static const uint64_t sizes[] = {
	1, 63, 64, 65, 32767, 32768, 32769, 1ull << 34,
};

/* Bit positions measured from the start (S) or back from the end (E). */
enum from { S, E };
struct pos {
	enum from from;
	uint64_t off;
};

static const struct pos edge_bits[] = {
	{S, 0}, {S, 1}, {S, 62}, {S, 63}, {S, 64}, {S, 65}, {S, 127}, {S, 128},
	{S, 32767}, {S, 32768}, {S, 32769}, {S, 65535}, {S, 65536},
	{E, 1}, {E, 2}, {E, 63}, {E, 64}, {E, 65}, {E, 32768}, {E, 32769},
};

/* Resolve p against size n; false if it falls outside [0, n). */
static bool resolve(const struct pos *p, uint64_t n, uint64_t *bit)
{
	if (p->from == S)
		*bit = p->off;
	else if (p->off <= n)
		*bit = n - p->off;
	else
		return false;
	return *bit < n;
}

static struct bitmap *make(uint64_t n)
{
	int err = 1;
	struct bitmap *b = bitmap_create(n, &err);
	assert_non_null(b);
	assert_int_equal(err, 0);
	assert_int_equal(bitmap_size(b), n);
	return b;
}

static void assert_empty(struct bitmap *b)
{
	uint64_t n = bitmap_size(b);
	assert_int_equal(bitmap_count(b), 0);
	assert_int_equal(bitmap_count_range(b, 0, n), 0);
	assert_int_equal(bitmap_find_next_set(b, 0), n);
	assert_int_equal(bitmap_find_next_unset(b, 0), 0);
	assert_true(bitmap_check(b));
}

/* ---------------------------------------------------------------------- */

static void test_empty(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		uint64_t n = sizes[i];
		struct bitmap *b = make(n);
		assert_empty(b);
		assert_false(bitmap_test(b, 0));
		assert_false(bitmap_test(b, n - 1));
		assert_int_equal(bitmap_find_next_unset(b, n - 1), n - 1);
		assert_int_equal(bitmap_find_next_unset(b, n), n);
		assert_int_equal(bitmap_find_next_set(b, n - 1), n);
		assert_int_equal(bitmap_find_next_set(b, n), n);
		bitmap_destroy(b);
	}
}

static void test_zero_size(void **state)
{
	(void)state;
	struct bitmap *b = make(0);
	assert_int_equal(bitmap_count(b), 0);
	assert_int_equal(bitmap_find_next_set(b, 0), 0);
	assert_int_equal(bitmap_find_next_unset(b, 0), 0);
	assert_int_equal(bitmap_set_range(b, 0, 0), 0);
	bitmap_clear_range(b, 0, 0);
	bitmap_clear_all(b);
	assert_true(bitmap_check(b));
	bitmap_destroy(b);
}

/* Sizes whose directory alone exceeds any address space (2^62 bits need
 * 1 PiB of page pointers): refused as the header says, NULL and -ENOMEM,
 * not a crash and not a bitmap that fails later. */
static void test_too_big(void **state)
{
	(void)state;
	static const uint64_t huge[] = { 1ull << 62, UINT64_MAX };
	for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
		int err = 0;
		assert_null(bitmap_create(huge[i], &err));
		assert_int_equal(err, -ENOMEM);
	}
}

/* One bit at each edge: test, test_and_set, count, both searches, clear. */
static void test_single_bits(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		uint64_t n = sizes[i];
		struct bitmap *b = make(n);
		for (size_t j = 0; j < sizeof edge_bits / sizeof *edge_bits; j++) {
			uint64_t bit;
			if (!resolve(&edge_bits[j], n, &bit))
				continue;
			int err = 1;
			assert_false(bitmap_test(b, bit));
			assert_false(bitmap_test_and_set(b, bit, &err));
			assert_int_equal(err, 0);
			assert_true(bitmap_test(b, bit));
			assert_true(bitmap_test_and_set(b, bit, &err));
			assert_int_equal(err, 0);
			if (bit > 0)
				assert_false(bitmap_test(b, bit - 1));
			if (bit + 1 < n)
				assert_false(bitmap_test(b, bit + 1));

			assert_int_equal(bitmap_count(b), 1);
			assert_int_equal(bitmap_count_range(b, 0, n), 1);
			assert_int_equal(bitmap_count_range(b, bit, 1), 1);
			assert_int_equal(bitmap_count_range(b, 0, bit), 0);
			assert_int_equal(bitmap_find_next_set(b, 0), bit);
			assert_int_equal(bitmap_find_next_set(b, bit), bit);
			assert_int_equal(bitmap_find_next_set(b, bit + 1), n);
			assert_int_equal(bitmap_find_next_unset(b, bit), bit + 1);
			assert_int_equal(bitmap_find_next_unset(b, 0), bit == 0 ? 1 : 0);
			assert_true(bitmap_check(b));

			bitmap_clear_range(b, bit, 1);
			assert_false(bitmap_test(b, bit));
			assert_empty(b);
		}
		bitmap_destroy(b);
	}
}

/* Ranges: start and length from the start or back from the end; len 0 = to
 * the end of the bitmap. */
struct range {
	enum from from;
	uint64_t off, len;
};

static const struct range ranges[] = {
	{S, 0, 1}, {S, 0, 64}, {S, 1, 63}, {S, 63, 2}, {S, 60, 10}, {S, 64, 64},
	{S, 0, 65}, {S, 32767, 2}, {S, 32700, 200}, {S, 0, 32768}, {S, 1, 32768},
	{S, 32768, 1}, {S, 32768, 32768}, {S, 100, 3 * 32768},
	{S, 0, 0}, {S, 1, 0},
	{E, 1, 1}, {E, 64, 64}, {E, 65, 65}, {E, 100, 37}, {E, 32768, 32768},
	{E, 32769, 32769}, {E, 32769, 2},
};

static void test_ranges(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		uint64_t n = sizes[i];
		struct bitmap *b = make(n);
		for (size_t j = 0; j < sizeof ranges / sizeof *ranges; j++) {
			const struct range *r = &ranges[j];
			uint64_t first = r->from == S ? r->off : n - r->off;
			if (r->from == E && r->off > n)
				continue;
			if (first >= n)
				continue;
			uint64_t len = r->len ? r->len : n - first;
			if (len > n - first || len > (1u << 20))
				continue;   /* doesn't fit, or would fill a sparse map */
			uint64_t end = first + len;

			assert_int_equal(bitmap_set_range(b, first, len), 0);
			assert_int_equal(bitmap_count(b), len);
			assert_int_equal(bitmap_count_range(b, 0, n), len);
			assert_int_equal(bitmap_count_range(b, first, len), len);
			assert_int_equal(bitmap_count_range(b, 0, first), 0);
			assert_true(bitmap_test(b, first));
			assert_true(bitmap_test(b, end - 1));
			if (first > 0)
				assert_false(bitmap_test(b, first - 1));
			if (end < n)
				assert_false(bitmap_test(b, end));
			assert_int_equal(bitmap_find_next_set(b, 0), first);
			assert_int_equal(bitmap_find_next_set(b, end - 1), end - 1);
			assert_int_equal(bitmap_find_next_set(b, end), n);
			assert_int_equal(bitmap_find_next_unset(b, first), end);
			assert_int_equal(bitmap_find_next_unset(b, 0), first > 0 ? 0 : end);
			assert_true(bitmap_test_and_set(b, end - 1, NULL));
			assert_true(bitmap_check(b));

			/* Punch out the middle, leaving the two ends. */
			if (len > 2) {
				bitmap_clear_range(b, first + 1, len - 2);
				assert_int_equal(bitmap_count(b), 2);
				assert_int_equal(bitmap_find_next_unset(b, first), first + 1);
				assert_int_equal(bitmap_find_next_set(b, first + 1), end - 1);
				assert_true(bitmap_check(b));
			}
			bitmap_clear_range(b, first, len);
			assert_empty(b);
		}
		bitmap_destroy(b);
	}
}

/* Summary level: a full page is skipped by find_next_unset and comes back
 * when a bit in it is cleared; partial last pages count as full too. */
static void test_summary(void **state)
{
	(void)state;
	const uint64_t n = 3 * PS + 100;
	struct bitmap *b = make(n);

	/* Fill page 1 one bit at a time: the count path sets the full bit. */
	for (uint64_t i = PS; i < 2 * PS; i++)
		assert_false(bitmap_test_and_set(b, i, NULL));
	assert_true(bitmap_check(b));          /* full bit agrees with count */
	assert_int_equal(bitmap_find_next_unset(b, PS), 2 * PS);
	assert_int_equal(bitmap_find_next_unset(b, PS + 5), 2 * PS);
	assert_int_equal(bitmap_find_next_unset(b, 0), 0);
	assert_int_equal(bitmap_find_next_set(b, 0), PS);
	assert_int_equal(bitmap_find_next_set(b, PS + 5), PS + 5);

	/* A hole in it is found again, and refilling it restores the skip. */
	bitmap_clear_range(b, PS + 777, 1);
	assert_true(bitmap_check(b));
	assert_int_equal(bitmap_find_next_unset(b, PS), PS + 777);
	assert_false(bitmap_test_and_set(b, PS + 777, NULL));
	assert_true(bitmap_check(b));
	assert_int_equal(bitmap_find_next_unset(b, PS), 2 * PS);

	/* The last page holds 100 bits: full at 100. */
	assert_int_equal(bitmap_set_range(b, 3 * PS, 100), 0);
	assert_true(bitmap_check(b));
	assert_int_equal(bitmap_find_next_unset(b, 3 * PS), n);
	assert_int_equal(bitmap_find_next_unset(b, n - 1), n);

	/* Everything set: nothing unset anywhere. */
	assert_int_equal(bitmap_set_range(b, 0, n), 0);
	assert_int_equal(bitmap_count(b), n);
	assert_int_equal(bitmap_find_next_unset(b, 0), n);
	assert_true(bitmap_check(b));
	bitmap_clear_range(b, n - 1, 1);
	assert_int_equal(bitmap_find_next_unset(b, 0), n - 1);
	assert_int_equal(bitmap_count(b), n - 1);
	assert_true(bitmap_check(b));
	bitmap_destroy(b);
}

/* Runs of full pages across summary-word edges (pages 63/64, 127/128). */
static void test_summary_words(void **state)
{
	(void)state;
	static const uint64_t holes[] = {
		0, 63 * PS - 1, 63 * PS, 64 * PS - 1, 64 * PS, 64 * PS + 1,
		127 * PS + 5, 128 * PS, 150 * PS + 3, 200 * PS - 1,
	};
	const uint64_t n = 200 * PS;
	struct bitmap *b = make(n);
	assert_int_equal(bitmap_set_range(b, 0, n), 0);
	assert_int_equal(bitmap_find_next_unset(b, 0), n);
	for (size_t i = 0; i < sizeof holes / sizeof *holes; i++) {
		uint64_t h = holes[i];
		bitmap_clear_range(b, h, 1);
		assert_int_equal(bitmap_find_next_unset(b, 0), h);
		assert_int_equal(bitmap_find_next_unset(b, h), h);
		assert_int_equal(bitmap_find_next_unset(b, h + 1), n);
		assert_int_equal(bitmap_count(b), n - 1);
		assert_true(bitmap_check(b));
		assert_false(bitmap_test_and_set(b, h, NULL));
		assert_int_equal(bitmap_find_next_unset(b, 0), n);
	}
	assert_true(bitmap_check(b));
	bitmap_destroy(b);
}

/* The summary is really used: on a full map, find_next_unset reads one
 * word per 64 pages instead of 512 per page (~1000x fewer loads).  The
 * bound is loose; a scan of every word would take seconds here. */
static void test_summary_skips(void **state)
{
	(void)state;
	const uint64_t n = 1ull << 26;     /* 2048 pages */
	struct bitmap *b = make(n);
	assert_int_equal(bitmap_set_range(b, 0, n), 0);
	struct timespec t0, t1;
	uint64_t sum = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 1000; i++)
		sum += bitmap_find_next_unset(b, (uint64_t)i * 7);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double us = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
	printf("find_next_unset on a full 2^26-bit map: %.3f us/call\n", us / 1000);
	assert_int_equal(sum, 1000 * n);
	assert_true(us < 50000.0 * SLOW);
	bitmap_destroy(b);
}

/* A huge sparse map: searches jump over absent pages, full pages at the end. */
static void test_sparse_huge(void **state)
{
	(void)state;
	static const uint64_t sizes_huge[] = { 1ull << 34, (1ull << 34) + 5 };
	for (size_t i = 0; i < 2; i++) {
		uint64_t n = sizes_huge[i];
		uint64_t last = (n - 1) / PS * PS;         /* last page's first bit */
		struct bitmap *b = make(n);
		assert_int_equal(bitmap_set_range(b, 0, PS), 0);
		assert_int_equal(bitmap_set_range(b, last, n - last), 0);
		assert_int_equal(bitmap_find_next_unset(b, 0), PS);
		assert_int_equal(bitmap_find_next_unset(b, last), n);
		assert_int_equal(bitmap_find_next_set(b, PS), last);
		assert_int_equal(bitmap_find_next_set(b, 1), 1);
		assert_int_equal(bitmap_count(b), PS + (n - last));
		assert_int_equal(bitmap_count_range(b, PS, last - PS), 0);
		bitmap_clear_range(b, PS, n - PS);   /* walks only present pages */
		assert_int_equal(bitmap_count(b), PS);
		assert_int_equal(bitmap_find_next_set(b, PS), n);
		assert_true(bitmap_check(b));
		bitmap_clear_all(b);
		assert_empty(b);
		assert_false(bitmap_test_and_set(b, n - 1, NULL));
		assert_int_equal(bitmap_find_next_set(b, 0), n - 1);
		bitmap_destroy(b);
	}
}

/* Random operations against a plain bool array (deterministic seed). */
static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void test_model(void **state)
{
	(void)state;
	const uint64_t n = 3 * PS + 77;
	bool *m = calloc(n, 1);
	assert_non_null(m);
	struct bitmap *b = make(n);
	uint64_t seed = 0x9e3779b97f4a7c15ull, cnt = 0;

	for (int op = 0; op < 20000; op++) {
		uint64_t x = rng(&seed) % n;
		uint64_t len = rng(&seed) % (n - x) % (rng(&seed) % 4 == 0 ? n : 300);
		switch (rng(&seed) % 6) {
		case 0:
			assert_int_equal(bitmap_test_and_set(b, x, NULL), m[x]);
			cnt += !m[x];
			m[x] = true;
			break;
		case 1:
			assert_int_equal(bitmap_set_range(b, x, len), 0);
			for (uint64_t i = x; i < x + len; i++) {
				cnt += !m[i];
				m[i] = true;
			}
			break;
		case 2:
			bitmap_clear_range(b, x, len / 4);
			for (uint64_t i = x; i < x + len / 4; i++) {
				cnt -= m[i];
				m[i] = false;
			}
			break;
		case 3: {
			uint64_t e = x;
			while (e < n && m[e])
				e++;
			assert_int_equal(bitmap_find_next_unset(b, x), e);
			break;
		}
		case 4: {
			uint64_t e = x;
			while (e < n && !m[e])
				e++;
			assert_int_equal(bitmap_find_next_set(b, x), e);
			break;
		}
		case 5: {
			uint64_t c = 0;
			for (uint64_t i = x; i < x + len; i++)
				c += m[i];
			assert_int_equal(bitmap_count_range(b, x, len), c);
			assert_int_equal(bitmap_test(b, x), m[x]);
			break;
		}
		}
		assert_int_equal(bitmap_count(b), cnt);
		if (op % 1000 == 0)
			assert_true(bitmap_check(b));
	}
	assert_true(bitmap_check(b));
	bitmap_destroy(b);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_zero_size),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_single_bits),
		cmocka_unit_test(test_ranges),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_summary_words),
		cmocka_unit_test(test_summary_skips),
		cmocka_unit_test(test_sparse_huge),
		cmocka_unit_test(test_model),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
