/* Description: bitmap_check() holds on real bitmaps and catches each invariant broken by hand: a bit past nbits, a wrong count, a wrong or misplaced full bit, a summary bit past the end, a wrong installed-page count. */
/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

/* The checker looks at the private arrays, and so must its test: compiled
 * in whole, as the CLI tests do with cli/args.c. */
#include "bitmap/bitmap.c"

#define PS ((uint64_t)BITMAP_PAGE_BITS)

/* Three pages, the last one partial: page 0 full, page 1 absent, page 2
 * holding a few bits. */
static struct bitmap *make(void)
{
	int err = 1;
	struct bitmap *b = bitmap_create(2 * PS + 100, &err);
	assert_non_null(b);
	assert_int_equal(err, 0);
	assert_int_equal(bitmap_set_range(b, 0, PS), 0);
	assert_false(bitmap_test_and_set(b, 2 * PS + 3, &err));
	assert_false(bitmap_test_and_set(b, 2 * PS + 99, &err));
	assert_true(page_full(b, 0));
	assert_true(bitmap_check(b));
	return b;
}

static void flip(_Atomic uint64_t *w, uint64_t mask)
{
	atomic_fetch_xor(w, mask);
}

/* Each case breaks one thing, shows the checker sees it, and puts it back
 * (the bitmap is then whole again, and destroyed as usual). */
static void test_catches(void **state)
{
	(void)state;
	struct bitmap *b = make();
	struct bm_page *last = page_get(b, 2);

	printf("I1: a bit past nbits, counted\n");
	flip(&last->w[100 / 64], 1ull << (100 % 64));
	atomic_fetch_add(&b->cnt[2], 1);
	assert_false(bitmap_check(b));
	flip(&last->w[100 / 64], 1ull << (100 % 64));
	atomic_fetch_sub(&b->cnt[2], 1);
	assert_true(bitmap_check(b));

	printf("I3: a count one off\n");
	atomic_fetch_add(&b->cnt[2], 1);
	assert_false(bitmap_check(b));
	atomic_fetch_sub(&b->cnt[2], 1);
	assert_true(bitmap_check(b));

	printf("I4: a full page not marked full\n");
	flip(&b->full[0], 1ull << 0);
	assert_false(bitmap_check(b));
	flip(&b->full[0], 1ull << 0);

	printf("I4: a partial page marked full\n");
	flip(&b->full[0], 1ull << 2);
	assert_false(bitmap_check(b));
	flip(&b->full[0], 1ull << 2);
	assert_true(bitmap_check(b));

	printf("full without present: page 1 is absent\n");
	flip(&b->full[0], 1ull << 1);
	assert_false(bitmap_check(b));
	flip(&b->full[0], 1ull << 1);

	printf("summary bits past the last page\n");
	flip(&b->present[0], 1ull << 3);
	assert_false(bitmap_check(b));
	flip(&b->present[0], 1ull << 3);
	flip(&b->present[0], 1ull << 40);     /* both, or it is "full without present" */
	flip(&b->full[0], 1ull << 40);
	assert_false(bitmap_check(b));
	flip(&b->full[0], 1ull << 40);
	flip(&b->present[0], 1ull << 40);
	assert_true(bitmap_check(b));

	printf("installed pages miscounted\n");
	atomic_fetch_add(&b->npresent, 1);
	assert_false(bitmap_check(b));
	atomic_fetch_sub(&b->npresent, 1);

	/* Present with no page yet (an installer between its two steps, I2)
	 * is not a fault: it reads as all zero. */
	flip(&b->present[0], 1ull << 1);
	assert_true(bitmap_check(b));
	flip(&b->present[0], 1ull << 1);
	assert_true(bitmap_check(b));
	bitmap_destroy(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catches),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
