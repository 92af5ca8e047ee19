/* SPDX-License-Identifier: MIT */
/*
 * cli/args.h — command-line parsing for `pitcopy`: options, sizes, durations.
 *
 * Role
 *   Pure functions (no I/O, no allocation, no engine, no jansson), so the
 *   unit tests can compile cli/args.c straight into themselves.  Errors are
 *   -errno with a sentence in the caller's buffer that names the offending
 *   flag or word; the CLI prints it as a usage error (exit 2).
 *
 * Context
 *   Any thread.
 */
#ifndef PITCOPY_CLI_ARGS_H
#define PITCOPY_CLI_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum args_kind {
    ARGS_FLAG = 1,   /* --json: sets *flag; "--json=x" is an error */
    ARGS_VALUE,      /* --size 1G or --size=1G: sets *value (the last one wins) */
    ARGS_MULTI,      /* --nbd A --nbd B: value[(*count)++], at most max of them */
};

struct args_opt {
    const char     *name;     /* without the leading "--"; NULL ends a table */
    enum args_kind  kind;
    const char    **value;
    bool           *flag;
    unsigned       *count;    /* ARGS_MULTI */
    unsigned        max;
};

#define ARGS_OPT_VALUE(n, p)  { (n), ARGS_VALUE, (p), NULL, NULL, 0 }
#define ARGS_OPT_FLAG(n, p)   { (n), ARGS_FLAG, NULL, (p), NULL, 0 }
#define ARGS_OPT_MULTI(n, arr, cnt, mx) { (n), ARGS_MULTI, (arr), NULL, (cnt), (mx) }
#define ARGS_OPT_END          { NULL, 0, NULL, NULL, NULL, 0 }

#define ARGS_MAX_POS 8

struct args {
    int         npos;
    const char *pos[ARGS_MAX_POS];
};

/*
 * Parse argv[0..argc) (no program name) against opts: options and
 * positionals in any order, "--" ends options, "-h" means "--help" when the
 * table has "help".  Returns 0, or -EINVAL with err naming the flag.
 */
int  args_parse(int argc, char **argv, const struct args_opt *opts, struct args *out,
                char *err, size_t errlen);

/*
 * "4096", "64K", "1G", "2TiB", "10gb": a byte count, suffixes K/M/G/T/P
 * (any case, optionally followed by "B" or "iB") as powers of 1024.
 * -EINVAL if it is not such a number, -ERANGE past UINT64_MAX.
 */
int  args_parse_size(const char *s, uint64_t *out);

/*
 * "30", "1.5", "90s", "5m", "2h": a duration in milliseconds (fractions to
 * the millisecond).  -EINVAL, or -ERANGE past ten years.
 */
int  args_parse_duration(const char *s, int64_t *ms);

/* 10737418240 → "10 GiB", 1610612736 → "1.5 GiB", 1000 → "1000 B". */
void args_format_size(uint64_t bytes, char *buf, size_t len);

#endif
