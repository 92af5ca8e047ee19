/* SPDX-License-Identifier: MIT */
/* Description: the CLI's size and duration parsing and size printing, at their boundaries. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cli/args.c"   /* pure functions: compiled in whole (cli/args.h) */

static void test_size_table(void **state)
{
    static const struct { const char *in; int ret; uint64_t out; } rows[] = {
        { "0",                     0,       0 },
        { "1",                     0,       1 },
        { "4096",                  0,       4096 },
        { "64K",                   0,       64ull << 10 },
        { "64k",                   0,       64ull << 10 },
        { "64KiB",                 0,       64ull << 10 },
        { "64KB",                  0,       64ull << 10 },
        { "64kb",                  0,       64ull << 10 },
        { "1M",                    0,       1ull << 20 },
        { "10G",                   0,       10ull << 30 },
        { "10GiB",                 0,       10ull << 30 },
        { "2T",                    0,       2ull << 40 },
        { "1P",                    0,       1ull << 50 },
        { "16383P",                0,       16383ull << 50 },
        { "16384P",                -ERANGE, 0 },
        { "18446744073709551615",  0,       UINT64_MAX },
        { "18446744073709551616",  -ERANGE, 0 },
        { "99999999999999999999K", -ERANGE, 0 },
        { "",                      -EINVAL, 0 },
        { "K",                     -EINVAL, 0 },
        { "-1",                    -EINVAL, 0 },
        { "+1",                    -EINVAL, 0 },
        { " 1",                    -EINVAL, 0 },
        { "1 ",                    -EINVAL, 0 },
        { "1.5G",                  -EINVAL, 0 },
        { "1E",                    -EINVAL, 0 },
        { "1Gi",                   -EINVAL, 0 },
        { "1GBB",                  -EINVAL, 0 },
        { "1iB",                   -EINVAL, 0 },
        { "0x10",                  -EINVAL, 0 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        uint64_t out = 12345;
        int r = args_parse_size(rows[i].in, &out);
        if (r != rows[i].ret)
            fail_msg("'%s': returned %d, expected %d", rows[i].in, r, rows[i].ret);
        if (r == 0 && out != rows[i].out)
            fail_msg("'%s': %llu, expected %llu", rows[i].in, (unsigned long long)out,
                     (unsigned long long)rows[i].out);
        if (r < 0 && out != 12345)
            fail_msg("'%s': failed but wrote the output", rows[i].in);
    }
}

static void test_duration_table(void **state)
{
    static const struct { const char *in; int ret; int64_t ms; } rows[] = {
        { "0",         0,       0 },
        { "30",        0,       30000 },
        { "30s",       0,       30000 },
        { "1.5",       0,       1500 },
        { "0.001",     0,       1 },
        { "0.0005",    0,       0 },
        { "10m",       0,       600000 },
        { "1.5m",      0,       90000 },
        { "2h",        0,       7200000 },
        { "87600h",    0,       87600ll * 3600 * 1000 },
        { "87601h",    -ERANGE, 0 },
        { "315360000", 0,       315360000000ll },
        { "315360001", -ERANGE, 0 },
        { "",          -EINVAL, 0 },
        { "-1",        -EINVAL, 0 },
        { "1.",        -EINVAL, 0 },
        { ".5",        -EINVAL, 0 },
        { "1d",        -EINVAL, 0 },
        { "1ss",       -EINVAL, 0 },
        { "1 s",       -EINVAL, 0 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int64_t ms = -7;
        int r = args_parse_duration(rows[i].in, &ms);
        if (r != rows[i].ret)
            fail_msg("'%s': returned %d, expected %d", rows[i].in, r, rows[i].ret);
        if (r == 0 && ms != rows[i].ms)
            fail_msg("'%s': %lld ms, expected %lld", rows[i].in, (long long)ms,
                     (long long)rows[i].ms);
    }
}

static void test_format_size(void **state)
{
    static const struct { uint64_t in; const char *out; } rows[] = {
        { 0,                     "0 B" },
        { 1000,                  "1000 B" },
        { 1023,                  "1023 B" },
        { 1024,                  "1 KiB" },
        { 1536,                  "1.5 KiB" },
        { 1025,                  "1.0 KiB" },
        { 64ull << 10,           "64 KiB" },
        { (2ull << 30) - 1,      "1.9 GiB" },
        { 10ull << 30,           "10 GiB" },
        { (1ull << 40) * 3 / 2,  "1.5 TiB" },
        { UINT64_MAX,            "15.9 EiB" },
    };
    char buf[32];
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        args_format_size(rows[i].in, buf, sizeof buf);
        if (strcmp(buf, rows[i].out) != 0)
            fail_msg("%llu: '%s', expected '%s'", (unsigned long long)rows[i].in, buf,
                     rows[i].out);
    }
    /* Whatever the value, the round trip through the parser is exact when whole. */
    for (unsigned s = 10; s <= 50; s += 10) {
        uint64_t v;
        char joined[32], *o = joined;
        args_format_size(7ull << s, buf, sizeof buf);
        for (const char *c = buf; *c; c++)        /* "7 GiB" → "7GiB" */
            if (*c != ' ')
                *o++ = *c;
        *o = '\0';
        assert_int_equal(args_parse_size(joined, &v), 0);
        assert_true(v == 7ull << s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_table),
        cmocka_unit_test(test_duration_table),
        cmocka_unit_test(test_format_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
