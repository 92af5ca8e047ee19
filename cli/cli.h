/* SPDX-License-Identifier: MIT */
/*
 * cli/cli.h — what the files of cli/ share: the command context, the command
 * table's shape, calls to the daemon, and output.
 *
 * Role
 *   main.c finds the command words (`volume create`), then hands the rest of
 *   the command line to the command's function, which parses its options
 *   (args.h), makes its requests through cli_call (a thin shell over
 *   ctl/client.c) and prints the answer as an aligned table or, with
 *   --json, as the daemon's JSON.
 *
 * Invariants
 *   X1  Exit codes: CLI_OK 0; CLI_FAIL 1 (the daemon refused, or a wait
 *       timed out); CLI_USAGE 2 (bad command line; the message names the
 *       flag); CLI_NODAEMON 3 (cannot reach the daemon, or it broke off).
 *   X2  Every failure prints exactly one line "pitcopy: ..." on stderr (with
 *       --json, also {"error": {"code", "message"}} on stdout).  Only
 *       cli/main.c exits.
 *
 * Context
 *   One thread (serve.c aside: the daemon has its own).
 */
#ifndef PITCOPY_CLI_H
#define PITCOPY_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include <jansson.h>

#include "cli/args.h"
#include "ctl/protocol.h"

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_NODAEMON = 3 };

struct cli_cmd;

struct cli_ctx {
    const struct cli_cmd *cmd;
    const char *state_dir_opt;     /* --state-dir */
    const char *state_dir;         /* resolved */
    char        sock[4096];        /* STATE_DIR/control.sock */
    bool        json;
    bool        help;
    char        what[192];         /* "map start nightly": prefixes error lines */
    struct ctl_client *client;
};

/* The options every command takes. */
#define CLI_COMMON_OPTS(ctx)                                            \
    ARGS_OPT_VALUE("state-dir", &(ctx)->state_dir_opt),                \
    ARGS_OPT_FLAG("json", &(ctx)->json),                                \
    ARGS_OPT_FLAG("help", &(ctx)->help)

typedef int (*cli_fn)(struct cli_ctx *ctx, int argc, char **argv);

struct cli_cmd {
    const char *group;     /* "volume", "map", "session", ..., or NULL */
    const char *name;
    cli_fn      fn;
    const char *usage;     /* one line, after "usage: pitcopy " */
    const char *help;      /* the rest of --help: what, options, example */
};

/* main.c */
/*
 * Parse the command's arguments with opts (which must include
 * CLI_COMMON_OPTS), resolve the state directory, and check the number of
 * positionals.  Returns -1 to go on, else an exit code (help printed: 0,
 * usage error printed: 2).
 */
int  cli_parse(struct cli_ctx *ctx, int argc, char **argv, const struct args_opt *opts,
               struct args *a, int min_pos, int max_pos);
/* Print a usage error naming the command; returns CLI_USAGE. */
int  cli_usage_error(struct cli_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Set ctx->what for error lines: "map start nightly". */
void cli_what(struct cli_ctx *ctx, const char *object);
/*
 * One request to the daemon (params stolen).  On failure prints the one
 * line (X2) and returns the exit code; on success returns CLI_OK and
 * *result.  timeout_ms < 0: no limit.
 */
int  cli_call(struct cli_ctx *ctx, const char *method, json_t *params, int timeout_ms,
              json_t **result);
/* The same without printing: the caller decides, and cli_fail prints. */
int  cli_call_quiet(struct cli_ctx *ctx, const char *method, json_t *params, int timeout_ms,
                    json_t **result, struct pc_error *err);
/* Print the failure line (X2) for rc and err; returns rc. */
int  cli_fail(struct cli_ctx *ctx, int rc, const struct pc_error *err);
/* The usual timeout for a request that does not wait on purpose. */
#define CLI_TIMEOUT_MS 30000
/*
 * The commands that take only a NAME (or nothing) and print the answer:
 * queries, and removals that need no options.  Parse the common options (and one
 * NAME when by_name), make the request, print the result as JSON with
 * --json or else with print.  Returns the exit code.
 */
int  cli_query(struct cli_ctx *ctx, int argc, char **argv, const char *method, bool by_name,
               void (*print)(const json_t *res));

/* output.c */
void out_json(const json_t *j);
/* A table: headers first; a header starting with '>' is right-aligned. */
struct out_table;
struct out_table *out_table_new(unsigned ncols, const char *const *headers);
void out_table_row(struct out_table *t, const char *const *cells);
void out_table_print(struct out_table *t, FILE *f);
void out_table_free(struct out_table *t);
/* "key:   value" lines, keys padded to width. */
void out_kv(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *out_str(const json_t *obj, const char *key);     /* "" when absent */
long long out_int(const json_t *obj, const char *key);
bool out_bool(const json_t *obj, const char *key);
/* "50 (2 MiB/s)", "0 (no background copy)", "unlimited" */
void out_rate(const json_t *obj, const char *key, char *buf, size_t len);
/*
 * Progress of a mapping on stderr: a redrawn bar on a terminal, else a
 * plain line whenever the state or percentage changes.  done ends the bar.
 */
struct out_progress {
    bool tty;
    bool drawn;
    char last[128];
};
void out_progress_init(struct out_progress *p);
void out_progress_show(struct out_progress *p, const json_t *map);
void out_progress_end(struct out_progress *p);

/* The commands. */
int cmd_serve(struct cli_ctx *ctx, int argc, char **argv);
int cmd_status(struct cli_ctx *ctx, int argc, char **argv);
int cmd_volume_create(struct cli_ctx *ctx, int argc, char **argv);
int cmd_volume_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_volume_show(struct cli_ctx *ctx, int argc, char **argv);
int cmd_volume_delete(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_create(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_prepare(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_start(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_stop(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_delete(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_set(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_show(struct cli_ctx *ctx, int argc, char **argv);
int cmd_map_wait(struct cli_ctx *ctx, int argc, char **argv);
int cmd_system_add(struct cli_ctx *ctx, int argc, char **argv);
int cmd_system_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_system_show(struct cli_ctx *ctx, int argc, char **argv);
int cmd_system_remove(struct cli_ctx *ctx, int argc, char **argv);
int cmd_zos_add(struct cli_ctx *ctx, int argc, char **argv);
int cmd_system_clock(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_create(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_add_copyset(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_remove_copyset(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_show(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_delete(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_set(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_flash(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_start(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_background_copy(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_terminate(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_restore(struct cli_ctx *ctx, int argc, char **argv);
int cmd_session_history(struct cli_ctx *ctx, int argc, char **argv);
int cmd_schedule_add(struct cli_ctx *ctx, int argc, char **argv);
int cmd_schedule_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_schedule_show(struct cli_ctx *ctx, int argc, char **argv);
int cmd_schedule_remove(struct cli_ctx *ctx, int argc, char **argv);
int cmd_schedule_print_crontab(struct cli_ctx *ctx, int argc, char **argv);
/* schedule.c: "initiate-background-copy" -> "background_copy"; others as they are. */
const char *cli_action_name(const char *word);
int cmd_group_create(struct cli_ctx *ctx, int argc, char **argv);
int cmd_group_delete(struct cli_ctx *ctx, int argc, char **argv);
int cmd_group_list(struct cli_ctx *ctx, int argc, char **argv);
int cmd_group_show(struct cli_ctx *ctx, int argc, char **argv);
int cmd_group_prepare(struct cli_ctx *ctx, int argc, char **argv);
int cmd_group_start(struct cli_ctx *ctx, int argc, char **argv);
int cmd_group_stop(struct cli_ctx *ctx, int argc, char **argv);

#endif
