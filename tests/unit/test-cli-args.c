/* SPDX-License-Identifier: MIT */
/* Description: the CLI's option parser: order, forms, errors that name the flag. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "cli/args.c"   /* pure functions: compiled in whole (cli/args.h) */

struct parsed {
    const char *size, *file, *state_dir;
    bool json, help, force;
    const char *multi[2];
    unsigned nmulti;
    struct args a;
    char err[256];
};

static int parse(struct parsed *p, const char *line)
{
    static char buf[512];
    char *argv[32];
    int argc = 0;
    memset(p, 0, sizeof *p);
    snprintf(buf, sizeof buf, "%s", line);
    for (char *t = strtok(buf, " "); t && argc < 32; t = strtok(NULL, " "))
        argv[argc++] = strcmp(t, "''") == 0 ? (char *)"" : t;
    struct args_opt opts[] = {
        ARGS_OPT_VALUE("size", &p->size),
        ARGS_OPT_VALUE("file", &p->file),
        ARGS_OPT_VALUE("state-dir", &p->state_dir),
        ARGS_OPT_FLAG("json", &p->json),
        ARGS_OPT_FLAG("help", &p->help),
        ARGS_OPT_FLAG("force", &p->force),
        ARGS_OPT_MULTI("nbd", p->multi, &p->nmulti, 2),
        ARGS_OPT_END,
    };
    return args_parse(argc, argv, opts, &p->a, p->err, sizeof p->err);
}

static void test_accepts(void **state)
{
    struct parsed p;
    (void)state;
    assert_int_equal(parse(&p, "db --size 1G"), 0);
    assert_int_equal(p.a.npos, 1);
    assert_string_equal(p.a.pos[0], "db");
    assert_string_equal(p.size, "1G");

    /* Options before, between and after positionals; --opt=value. */
    assert_int_equal(parse(&p, "--json a --size=2G b --force --file=/x=y"), 0);
    assert_int_equal(p.a.npos, 2);
    assert_string_equal(p.a.pos[1], "b");
    assert_string_equal(p.size, "2G");
    assert_string_equal(p.file, "/x=y");
    assert_true(p.json && p.force && !p.help);

    /* The last of a repeated value wins; a value may look like an option. */
    assert_int_equal(parse(&p, "--size 1G --size 2G --file --json"), 0);
    assert_string_equal(p.size, "2G");
    assert_string_equal(p.file, "--json");
    assert_false(p.json);

    /* "--" ends the options; "-" alone is a positional; empty values are values. */
    assert_int_equal(parse(&p, "-- --size - --json"), 0);
    assert_int_equal(p.a.npos, 3);
    assert_string_equal(p.a.pos[0], "--size");
    assert_string_equal(p.a.pos[1], "-");
    assert_null(p.size);
    assert_int_equal(parse(&p, "--size= x"), 0);
    assert_string_equal(p.size, "");

    /* -h is --help. */
    assert_int_equal(parse(&p, "-h"), 0);
    assert_true(p.help);

    /* A multi option collects each. */
    assert_int_equal(parse(&p, "--nbd unix:/a --nbd=tcp::1"), 0);
    assert_int_equal(p.nmulti, 2);
    assert_string_equal(p.multi[0], "unix:/a");
    assert_string_equal(p.multi[1], "tcp::1");

    /* ARGS_MAX_POS positionals fit. */
    assert_int_equal(parse(&p, "1 2 3 4 5 6 7 8"), 0);
    assert_int_equal(p.a.npos, ARGS_MAX_POS);
}

static void test_refuses(void **state)
{
    static const struct { const char *line; const char *msg; } rows[] = {
        { "--sise 1G",            "unknown option --sise" },
        { "--size",               "option --size needs a value" },
        { "db --size",            "option --size needs a value" },
        { "--json=yes",           "option --json takes no value" },
        { "--force=",             "option --force takes no value" },
        { "-x",                   "unknown option -x (options are spelled --name)" },
        { "-size 1G",             "unknown option -size (options are spelled --name)" },
        { "--",                   NULL },
        { "--=1",                 "unknown option --" },
        { "--nbd a --nbd b --nbd c", "option --nbd given more than 2 times" },
        { "1 2 3 4 5 6 7 8 9",    "too many arguments (from '9' on)" },
    };
    struct parsed p;
    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int r = parse(&p, rows[i].line);
        if (!rows[i].msg) {
            assert_int_equal(r, 0);
            continue;
        }
        if (r != -EINVAL)
            fail_msg("'%s': returned %d, expected -EINVAL", rows[i].line, r);
        if (strcmp(p.err, rows[i].msg) != 0)
            fail_msg("'%s': said '%s', expected '%s'", rows[i].line, p.err, rows[i].msg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepts),
        cmocka_unit_test(test_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
