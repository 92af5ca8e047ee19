/* Description: LeakSanitizer sees the pages of a live bitmap as reachable (they hang off an anonymous mapping); ASan builds only. */
/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include "bitmap/bitmap.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* libFuzzer runs a leak check after any input that allocated more than it
 * freed; a copy-on-write installs a bitmap page and keeps it.  Without the
 * directory registered as a root region, that check reported the page. */
static void test_live_pages_not_leaked(void **state)
{
	(void)state;
#ifndef HAVE_LSAN
	skip();
#else
	struct bitmap *b = bitmap_create(64 * (uint64_t)BITMAP_PAGE_BITS, NULL);

	assert_non_null(b);
	for (uint64_t p = 0; p < 64; p += 7)
		assert_false(bitmap_test_and_set(b, p * BITMAP_PAGE_BITS + 3, NULL));
	assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
	bitmap_destroy(b);
	/* A second bitmap at the same address range after the first is gone. */
	b = bitmap_create(BITMAP_PAGE_BITS, NULL);
	assert_non_null(b);
	assert_false(bitmap_test_and_set(b, 1, NULL));
	assert_int_equal(__lsan_do_recoverable_leak_check(), 0);
	bitmap_destroy(b);
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_live_pages_not_leaked),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
