/* SPDX-License-Identifier: MIT */
/* Description: copy and clean rates: the SVC table, parsing, and a background copy paced by it. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "engineutil.h"
#include "testutil.h"

static void test_rate_table(void **state)
{
    static const struct { int rate; uint64_t bps; } rows[] = {
        { 0,                 0 },
        { 1,                 128ull << 10 },
        { 10,                128ull << 10 },
        { 11,                256ull << 10 },
        { 20,                256ull << 10 },
        { 41,                2ull << 20 },
        { 50,                2ull << 20 },
        { 91,                64ull << 20 },
        { 100,               64ull << 20 },
        { 101,               128ull << 20 },
        { 141,               2ull << 30 },
        { 150,               2ull << 30 },
        { PC_RATE_UNLIMITED, UINT64_MAX },
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t got = pc_rate_bytes_per_sec(rows[i].rate);
        if (got != rows[i].bps)
            fail_msg("rate %d: %llu bytes/s, expected %llu", rows[i].rate,
                     (unsigned long long)got, (unsigned long long)rows[i].bps);
    }
    /* Monotonic across the whole table. */
    for (int r = 1; r <= 150; r++)
        assert_true(pc_rate_bytes_per_sec(r) >= pc_rate_bytes_per_sec(r - 1));
}

static void test_rate_parse(void **state)
{
    static const struct { const char *s; int ret; int rate; } rows[] = {
        { "0",         0,       0 },
        { "1",         0,       1 },
        { "150",       0,       150 },
        { "unlimited", 0,       PC_RATE_UNLIMITED },
        { "151",       -EINVAL, 0 },
        { "-1",        -EINVAL, 0 },
        { "",          -EINVAL, 0 },
        { "abc",       -EINVAL, 0 },
        { "50x",       -EINVAL, 0 },
        { "1000",      -EINVAL, 0 },
        { "Unlimited", -EINVAL, 0 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int rate = -12345;
        int r = pc_rate_parse(rows[i].s, &rate);
        if (r != rows[i].ret)
            fail_msg("pc_rate_parse(\"%s\") = %d, expected %d", rows[i].s, r, rows[i].ret);
        if (r == 0)
            assert_int_equal(rate, rows[i].rate);
        else
            assert_int_equal(rate, -12345);         /* untouched on error */
    }
    int rate = 7;
    assert_int_equal(pc_rate_parse(NULL, &rate), -EINVAL);
    assert_int_equal(rate, 7);
}

/* 4 MiB at rate 41-50 (2 MiB/s) takes about 2 s.  Machines are noisy:
 * only loose bounds, and the time is printed. */
static void test_rate_paced_copy(void **state)
{
    static const int rates[] = { 41, 50 };
    const uint64_t size = 4 * TU_MIB;
    struct tu_eng *f = tu_eng_get(state);

    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        char sn[16], tn[16];
        snprintf(sn, sizeof sn, "s%d", rates[i]);
        snprintf(tn, sizeof tn, "t%d", rates[i]);
        struct tu_vol *s = tu_vol_new(f, sn, size), *t = tu_vol_new(f, tn, size);
        tu_write(f, s, 0, size);
        struct pc_map *m = tu_map(f, tn, s, t, 64 * TU_KIB, rates[i], PC_RATE_UNLIMITED);

        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        tu_start(m, s, t);
        tu_wait(m, PC_MAP_IDLE_OR_COPIED);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        printf("%s: 4 MiB at copy rate %d took %.2f s (expected about 2)\n", f->backend,
               rates[i], secs);
        assert_true(secs > 1.0);
        assert_true(secs < 6.0);
        assert_int_equal(tu_info(m).progress, 100);
        tu_check_all(f, t);
    }
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rate_table),
        cmocka_unit_test(test_rate_parse),
        TU_BOTH(test_rate_paced_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
