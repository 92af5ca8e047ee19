/* Description: bitmap creation is O(1) whatever the size, and memory follows the pages touched, not the volume size. */
/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "bitmap/bitmap.h"

#define PS ((uint64_t)BITMAP_PAGE_BITS)

/* Timing bounds are loose; TSan instruments every atomic load (~40x). */
#ifdef __SANITIZE_THREAD__
#define SLOW 10
#else
#define SLOW 1
#endif

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Resident set size in bytes, from /proc/self/statm; 0 if unreadable. */
static uint64_t rss_bytes(void)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return 0;
	int n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

/* Creation time for volume-sized bitmaps: printed, bounded only loosely
 * (a loaded CI box must not fail this; O(n) creation would take seconds). */
static void test_create_time(void **state)
{
	(void)state;
	static const struct {
		const char *what;
		uint64_t nbits;
	} cases[] = {
		{ "1 PiB / 64 KiB grains", 1ull << 34 },
		{ "1 PiB / 4 KiB grains", 1ull << 38 },
		{ "1 TiB / 64 KiB grains", 1ull << 24 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		int err = 1;
		double t0 = now_us();
		struct bitmap *b = bitmap_create(cases[i].nbits, &err);
		double dt = now_us() - t0;
		assert_non_null(b);
		assert_int_equal(err, 0);
		printf("create %-22s (2^%d bits): %.1f us\n", cases[i].what,
		       __builtin_ctzll(cases[i].nbits), dt);
		assert_true(dt < 50000.0);
		bitmap_destroy(b);
	}
}

/* A source may have 256 mappings: 256 huge bitmaps at once stay cheap. */
static void test_many(void **state)
{
	(void)state;
	enum { N = 256 };
	struct bitmap **v = calloc(N, sizeof *v);
	assert_non_null(v);
	double t0 = now_us();
	for (int i = 0; i < N; i++) {
		int err;
		v[i] = bitmap_create(1ull << 34, &err);
		assert_non_null(v[i]);
	}
	double dt = now_us() - t0;
	printf("create 256 x 2^34 bits: %.1f us total, %.2f us each\n", dt, dt / N);
	assert_true(dt < N * 50000.0);
	uint64_t mem = 0;
	for (int i = 0; i < N; i++)
		mem += bitmap_mem_bytes(v[i]);
	assert_true(mem < N * 1024);
	for (int i = 0; i < N; i++)
		bitmap_destroy(v[i]);
	free(v);
}

/* Reading, searching, counting and clearing an empty map allocate nothing. */
static void test_reads_allocate_nothing(void **state)
{
	(void)state;
	const uint64_t n = 1ull << 34;
	uint64_t rss0 = rss_bytes();
	int err;
	struct bitmap *b = bitmap_create(n, &err);
	assert_non_null(b);
	uint64_t m0 = bitmap_mem_bytes(b);
	printf("mem_bytes after create: %llu\n", (unsigned long long)m0);
	assert_true(m0 < 4096);

	for (uint64_t bit = 0; bit < n; bit += n / 4096)
		assert_false(bitmap_test(b, bit));
	assert_int_equal(bitmap_find_next_set(b, 0), n);
	assert_int_equal(bitmap_find_next_unset(b, 12345), 12345);
	assert_int_equal(bitmap_count(b), 0);
	assert_int_equal(bitmap_count_range(b, 0, n), 0);
	bitmap_clear_range(b, 0, n);
	bitmap_clear_all(b);
	assert_int_equal(bitmap_mem_bytes(b), m0);

	/* The kernel agrees: the 6 MiB of mapping did not become resident
	 * (reads of untouched anonymous memory map the shared zero page).
	 * Not under TSan, whose shadow of every byte read is resident. */
	uint64_t rss1 = rss_bytes();
	printf("RSS growth after create + reads: %lld KiB\n",
	       (long long)(rss1 - rss0) / 1024);
#ifndef __SANITIZE_THREAD__
	if (rss0 && rss1)
		assert_true(rss1 < rss0 + (1u << 20));
#endif
	bitmap_destroy(b);
}

/* Setting one bit allocates one page (plus the directory/summary pages it
 * writes); more bits in that page cost nothing more. */
static void test_one_page_per_set(void **state)
{
	(void)state;
	const uint64_t n = 1ull << 34;
	const uint64_t os = (uint64_t)sysconf(_SC_PAGESIZE);
	static const uint64_t far_bits[] = {
		0, PS - 1, PS, (1ull << 33) + 17, (1ull << 34) - 1,
	};
	int err;
	struct bitmap *b = bitmap_create(n, &err);
	assert_non_null(b);

	for (size_t i = 0; i < sizeof far_bits / sizeof *far_bits; i++) {
		uint64_t bit = far_bits[i];
		uint64_t before = bitmap_mem_bytes(b);
		bool fresh_page = bitmap_count_range(b, bit / PS * PS, 1) == 0 &&
				  bitmap_find_next_set(b, bit / PS * PS) >= (bit / PS + 1) * PS;
		assert_false(bitmap_test_and_set(b, bit, &err));
		assert_int_equal(err, 0);
		uint64_t grew = bitmap_mem_bytes(b) - before;
		printf("set bit %llu: mem_bytes +%llu\n", (unsigned long long)bit,
		       (unsigned long long)grew);
		if (fresh_page) {
			assert_true(grew >= 4096);
			assert_true(grew <= 4096 + 4 * os);  /* page + one OS page of each array */
		}
		/* Neighbours in the same page are free. */
		uint64_t mid = bitmap_mem_bytes(b);
		uint64_t other = bit % PS ? bit - 1 : bit + 1;
		bitmap_test_and_set(b, other, NULL);
		assert_int_equal(bitmap_mem_bytes(b), mid);
	}
	/* clear_all keeps the pages (B1): memory does not shrink or grow. */
	uint64_t m = bitmap_mem_bytes(b);
	bitmap_clear_all(b);
	assert_int_equal(bitmap_mem_bytes(b), m);
	assert_int_equal(bitmap_count(b), 0);
	bitmap_destroy(b);
}

/* Searches skip absent pages 64 at a time (the present summary): on 2^38
 * bits (1 PiB at 4 KiB grains) find_next_set reads 64 Ki summary words,
 * not 8 Mi directory entries.  Loose bound; a per-page walk takes ~10x it. */
static void test_search_skips_absent(void **state)
{
	(void)state;
	const uint64_t n = 1ull << 38;
	int err;
	struct bitmap *b = bitmap_create(n, &err);
	assert_non_null(b);
	assert_false(bitmap_test_and_set(b, n - 3, NULL));
	double t0 = now_us();
	uint64_t sum = 0;
	for (int i = 0; i < 10; i++)
		sum += bitmap_find_next_set(b, (uint64_t)i);
	double dt = now_us() - t0;
	printf("find_next_set over 2^38 bits, one set at the end: %.1f us/call\n", dt / 10);
	assert_int_equal(sum, 10 * (n - 3));
	assert_true(dt < 50000.0 * SLOW);
	bitmap_destroy(b);
}

/* meta_bits_per_grain: a fully set map costs about one bit per grain, and
 * a map with one bit in every page no more (the 2-bit budget). */
static void test_bits_per_grain(void **state)
{
	(void)state;
	const uint64_t n = 1ull << 24;
	int err;
	struct bitmap *b = bitmap_create(n, &err);
	assert_non_null(b);
	for (uint64_t p = 0; p < n / PS; p++)
		bitmap_test_and_set(b, p * PS + p % 97, NULL);
	double sparse = bitmap_mem_bytes(b) * 8.0 / (double)n;
	assert_int_equal(bitmap_set_range(b, 0, n), 0);
	double dense = bitmap_mem_bytes(b) * 8.0 / (double)n;
	printf("meta bits per grain (2^24 grains): one bit per page %.4f, all set %.4f\n",
	       sparse, dense);
	assert_true(sparse <= 2.0);
	assert_true(dense <= 2.0);
	bitmap_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_time),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_reads_allocate_nothing),
		cmocka_unit_test(test_one_page_per_set),
		cmocka_unit_test(test_search_skips_absent),
		cmocka_unit_test(test_bits_per_grain),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
