/* Description: bitmap sets, page installs, counts, searches and same-page clears racing across threads. */
/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdatomic.h>
#include <cmocka.h>

#include "bitmap/bitmap.h"

#define PS ((uint64_t)BITMAP_PAGE_BITS)
#define NTHREADS 4

/* cmocka's asserts longjmp and are not thread-safe: workers only record,
 * the main thread asserts after join. */

struct shared {
	struct bitmap *b;
	pthread_barrier_t go;
	uint64_t nbits;
	uint64_t npages;              /* page-race: pages to hit */
	_Atomic int setters_left;
	_Atomic uint64_t violations;  /* reader-side contract breaks */
	uint8_t *wins[NTHREADS];      /* per thread: 1 where its set saw old == 0 */
	_Atomic uint64_t enomem;
};

struct worker {
	struct shared *sh;
	int id;
};

static void run_threads(struct shared *sh, void *(*fn)(void *), int n)
{
	pthread_t t[NTHREADS + 1];
	struct worker w[NTHREADS + 1];
	assert_int_equal(pthread_barrier_init(&sh->go, NULL, (unsigned)n), 0);
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){ sh, i };
		assert_int_equal(pthread_create(&t[i], NULL, fn, &w[i]), 0);
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&sh->go);
}

static struct bitmap *make(uint64_t n)
{
	int err;
	struct bitmap *b = bitmap_create(n, &err);
	assert_non_null(b);
	return b;
}

/* ---------------------------------------------------------------------- */
/* Same bits: each bit's old value is false for exactly one thread.        */

static void *same_bits(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	uint64_t n = sh->nbits;
	pthread_barrier_wait(&sh->go);
	/* Everyone walks every bit, half forwards and half backwards, from
	 * staggered starts, so every pair of threads collides somewhere. */
	for (uint64_t k = 0; k < n; k++) {
		uint64_t i = (k + (uint64_t)w->id * 977) % n;
		if (w->id & 1)
			i = n - 1 - i;
		int err = 0;
		if (!bitmap_test_and_set(sh->b, i, &err))
			sh->wins[w->id][i] = 1;
		if (err)
			atomic_fetch_add(&sh->enomem, 1);
	}
	return NULL;
}

static void test_same_bits(void **state)
{
	(void)state;
	struct shared sh = { .nbits = 3 * PS + 1000 };
	for (int t = 0; t < NTHREADS; t++) {
		sh.wins[t] = calloc(sh.nbits, 1);
		assert_non_null(sh.wins[t]);
	}
	for (int round = 0; round < 8; round++) {
		sh.b = make(sh.nbits);
		for (int t = 0; t < NTHREADS; t++)
			memset(sh.wins[t], 0, sh.nbits);
		run_threads(&sh, same_bits, NTHREADS);
		assert_int_equal(atomic_load(&sh.enomem), 0);
		for (uint64_t i = 0; i < sh.nbits; i++) {
			int w = 0;
			for (int t = 0; t < NTHREADS; t++)
				w += sh.wins[t][i];
			if (w != 1)
				fail_msg("bit %llu: %d threads saw it clear",
					 (unsigned long long)i, w);
		}
		assert_int_equal(bitmap_count(sh.b), sh.nbits);
		assert_int_equal(bitmap_find_next_unset(sh.b, 0), sh.nbits);
		assert_true(bitmap_check(sh.b));
		bitmap_destroy(sh.b);
	}
	for (int t = 0; t < NTHREADS; t++)
		free(sh.wins[t]);
}

/* ---------------------------------------------------------------------- */
/* Page installs: many threads hit the same fresh pages at once.           */

#define BITS_PER_THREAD_PAGE 3

static uint64_t race_page(uint64_t k)
{
	return k * 509 + k % 7;      /* spread over the directory and summaries */
}

static void *page_race(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	pthread_barrier_wait(&sh->go);
	for (uint64_t k = 0; k < sh->npages; k++) {
		uint64_t base = race_page(k) * PS;
		for (int j = 0; j < BITS_PER_THREAD_PAGE; j++) {
			/* Distinct bits per thread, plus bit base+0 shared by all. */
			uint64_t bit = j == 0 ? base : base + 1 + (uint64_t)w->id * 100 + (uint64_t)j * 7;
			int err = 0;
			bitmap_test_and_set(sh->b, bit, &err);
			if (err)
				atomic_fetch_add(&sh->enomem, 1);
		}
		/* A set_range crossing into the next fresh page too. */
		if (w->id == NTHREADS - 1 && k % 16 == 0)
			bitmap_set_range(sh->b, base + PS - 10, 20);
	}
	return NULL;
}

static void test_page_install_race(void **state)
{
	(void)state;
	struct shared sh = { .nbits = 1ull << 34, .npages = 1024 };
	for (int round = 0; round < 10; round++) {
		sh.b = make(sh.nbits);
		uint64_t m0 = bitmap_mem_bytes(sh.b);
		run_threads(&sh, page_race, NTHREADS);
		assert_int_equal(atomic_load(&sh.enomem), 0);

		/* Bits: 1 shared + (BITS-1) per thread per page, plus the
		 * set_range tails: 10 in the page and 10 in page+1. */
		uint64_t expect = sh.npages * (1 + (BITS_PER_THREAD_PAGE - 1) * NTHREADS);
		uint64_t extra_pages = 0;
		for (uint64_t k = 0; k < sh.npages; k += 16) {
			expect += 20;
			extra_pages++;      /* race_page(k)+1 is never a race page */
		}
		assert_int_equal(bitmap_count(sh.b), expect);
		assert_true(bitmap_check(sh.b));   /* includes npresent == installed */

		/* One page per page touched: no duplicates kept, none lost. */
		uint64_t pages = sh.npages + extra_pages;
		uint64_t mem = bitmap_mem_bytes(sh.b) - m0;
		assert_true(mem >= pages * 4096);
		assert_true(mem < pages * 4096 + pages * 4 * 4096);
		for (uint64_t k = 0; k < sh.npages; k++)
			assert_true(bitmap_test(sh.b, race_page(k) * PS));
		bitmap_destroy(sh.b);   /* ASan: losers freed theirs, this frees the rest */
	}
}

/* ---------------------------------------------------------------------- */
/* Counts and searches while others set.                                   */

static void *setter_pages(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	int nset = NTHREADS - 1;
	pthread_barrier_wait(&sh->go);
	/* Setter t fills the pages p ≡ t (mod nset), bit by bit, in order. */
	for (uint64_t p = (uint64_t)w->id; p * PS < sh->nbits; p += (uint64_t)nset)
		for (uint64_t i = p * PS; i < (p + 1) * PS && i < sh->nbits; i++)
			bitmap_test_and_set(sh->b, i, NULL);
	atomic_fetch_sub(&sh->setters_left, 1);
	return NULL;
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void *reader(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct bitmap *b = sh->b;
	uint64_t n = sh->nbits, seed = 88172645463325252ull;
	uint64_t last_unset = 0, last_count = 0, last_set = n;
	pthread_barrier_wait(&sh->go);
	do {
		/* Bits only go 0 → 1 here, so the first unset bit never moves
		 * back, the first set bit never moves forward, count never
		 * drops (B3), and whatever a search reported set stays set. */
		uint64_t u = bitmap_find_next_unset(b, 0);
		uint64_t s = bitmap_find_next_set(b, 0);
		uint64_t c = bitmap_count(b);
		if (u < last_unset || s > last_set || c < last_count || c > n)
			atomic_fetch_add(&sh->violations, 1);
		last_unset = u;
		last_set = s;
		last_count = c;

		uint64_t from = xorshift(&seed) % n;
		uint64_t r = bitmap_find_next_unset(b, from);
		for (int k = 0; k < 32 && r > from; k++) {
			uint64_t i = from + xorshift(&seed) % (r - from);
			if (!bitmap_test(b, i))
				atomic_fetch_add(&sh->violations, 1);
		}
		if (r > from && !bitmap_test(b, r - 1))
			atomic_fetch_add(&sh->violations, 1);
		r = bitmap_find_next_set(b, from);
		if (r < n && !bitmap_test(b, r))
			atomic_fetch_add(&sh->violations, 1);
		if (r > n)
			atomic_fetch_add(&sh->violations, 1);
	} while (atomic_load(&sh->setters_left) > 0);
	return NULL;
}

static void *set_or_read(void *arg)
{
	struct worker *w = arg;
	return w->id == NTHREADS - 1 ? reader(arg) : setter_pages(arg);
}

static void test_search_while_setting(void **state)
{
	(void)state;
	static const uint64_t sizes[] = { 64 * PS, 130 * PS + 33 };
	for (size_t i = 0; i < 2; i++) {
		struct shared sh = { .nbits = sizes[i], .setters_left = NTHREADS - 1 };
		sh.b = make(sh.nbits);
		run_threads(&sh, set_or_read, NTHREADS);
		assert_int_equal(atomic_load(&sh.violations), 0);
		assert_int_equal(bitmap_count(sh.b), sh.nbits);
		assert_int_equal(bitmap_find_next_unset(sh.b, 0), sh.nbits);
		assert_true(bitmap_check(sh.b));   /* every page's full bit set */
		bitmap_destroy(sh.b);
	}
}

/* ---------------------------------------------------------------------- */
/* B2 allows clearing some bits while others in the same page are set:     */
/* counts and full bits must come out exact.                               */

static void *even_setter(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	pthread_barrier_wait(&sh->go);
	for (int pass = 0; pass < 4; pass++)
		for (uint64_t i = 2 * (uint64_t)w->id; i < sh->nbits; i += 2 * (NTHREADS - 1))
			bitmap_test_and_set(sh->b, i, NULL);
	atomic_fetch_sub(&sh->setters_left, 1);
	return NULL;
}

static void *odd_toggler(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	uint64_t seed = 0x2545f4914f6cdd1dull;
	pthread_barrier_wait(&sh->go);
	/* Fill each page's odd bits (so the page can fill up), then clear
	 * some of them again, while the even setters are still running. */
	do {
		for (uint64_t i = 1; i < sh->nbits; i += 2)
			bitmap_test_and_set(sh->b, i, NULL);
		for (int k = 0; k < 64; k++) {
			uint64_t i = xorshift(&seed) % sh->nbits | 1;
			if (i < sh->nbits)
				bitmap_clear_range(sh->b, i, 1);
		}
	} while (atomic_load(&sh->setters_left) > 0);
	return NULL;
}

static void *even_or_odd(void *arg)
{
	struct worker *w = arg;
	return w->id == NTHREADS - 1 ? odd_toggler(arg) : even_setter(arg);
}

static void test_clear_beside_sets(void **state)
{
	(void)state;
	struct shared sh = { .nbits = 4 * PS + 10, .setters_left = NTHREADS - 1 };
	for (int round = 0; round < 4; round++) {
		sh.b = make(sh.nbits);
		atomic_store(&sh.setters_left, NTHREADS - 1);
		run_threads(&sh, even_or_odd, NTHREADS);
		for (uint64_t i = 0; i < sh.nbits; i += 2)
			if (!bitmap_test(sh.b, i))
				fail_msg("even bit %llu lost", (unsigned long long)i);
		assert_true(bitmap_check(sh.b));   /* cnt == popcount, full exact */
		/* And the summary still works once quiet. */
		for (uint64_t i = 1; i < sh.nbits; i += 2)
			bitmap_test_and_set(sh.b, i, NULL);
		assert_int_equal(bitmap_find_next_unset(sh.b, 0), sh.nbits);
		assert_true(bitmap_check(sh.b));
		bitmap_destroy(sh.b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_same_bits),
		cmocka_unit_test(test_page_install_race),
		cmocka_unit_test(test_search_while_setting),
		cmocka_unit_test(test_clear_beside_sets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
