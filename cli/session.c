/* SPDX-License-Identifier: MIT */
/*
 * cli/session.c — `pitcopy session ...`: FlashCopy sessions, their copy
 * sets, hooks, actions and history.
 *
 * Role
 *   One request each (session.* in ctl/protocol.h).  Actions (flash, start,
 *   initiate-background-copy, terminate, restore) wait as long as the
 *   daemon takes (hooks have their own timeout there) and exit 1 whenever
 *   any step failed (X1): unlike the product's own CLI, a script can trust
 *   the exit status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

#define SESSION_ACTION_TIMEOUT_MS (-1)

static void session_print(const json_t *s)
{
    out_kv("name", "%s", out_str(s, "name"));
    out_kv("system", "%s (%s)", out_str(s, "system"), out_str(s, "system_type"));
    if (*out_str(s, "zos"))
        out_kv("z/OS", "%s%s", out_str(s, "zos"),
               strcmp(out_str(s, "zos_fallback"), "direct") == 0 ? " (fallback: direct)" : "");
    if (*out_str(s, "description"))
        out_kv("description", "%s", out_str(s, "description"));
    out_kv("state", "%s", out_str(s, "state"));
    out_kv("status", "%s%s%s", out_str(s, "status"), *out_str(s, "message") ? ": " : "",
           out_str(s, "message"));
    if (json_is_string(json_object_get(s, "query_error")))
        out_kv("query", "failed: %s", out_str(s, "query_error"));
    if (json_is_string(json_object_get(s, "busy")))
        out_kv("in progress", "%s", out_str(s, "busy"));
    out_kv("pre-flash hook", "%s", *out_str(s, "pre_flash") ? out_str(s, "pre_flash") : "-");
    out_kv("post-flash hook", "%s", *out_str(s, "post_flash") ? out_str(s, "post_flash") : "-");
    out_kv("hook timeout", "%lld s", out_int(s, "hook_timeout"));
    out_kv("copy rate", "%lld%s", out_int(s, "copy_rate"),
           out_int(s, "copy_rate") ? "" : " (no background copy at flash)");
    out_kv("group", "%s", out_str(s, "group"));
    if (json_is_string(json_object_get(s, "last_action")))
        out_kv("last action", "%s at %s", out_str(s, "last_action"),
               out_str(s, "last_action_at"));
    if (json_is_number(json_object_get(s, "last_freeze_ms")))
        out_kv("last freeze", "%.1f ms (pre-flash hook end to post-flash hook start)",
               json_number_value(json_object_get(s, "last_freeze_ms")));
    if (json_is_integer(json_object_get(s, "last_hold_ns")))
        out_kv("last write hold", "%.3f ms", (double)out_int(s, "last_hold_ns") / 1e6);
    printf("\n");
    static const char *const hdr[] = { ">ID", "H1", "T1", "MAPPING", "STATE", ">PROGRESS",
                                       "RESTORE" };
    struct out_table *t = out_table_new(7, hdr);
    const json_t *c;
    size_t i;
    json_array_foreach(json_object_get(s, "copysets"), i, c) {
        char id[24], pct[16], rst[48] = "-";
        snprintf(id, sizeof id, "%lld", out_int(c, "id"));
        if (json_is_integer(json_object_get(c, "progress")))
            snprintf(pct, sizeof pct, "%lld%%", out_int(c, "progress"));
        else
            snprintf(pct, sizeof pct, "-");
        if (json_is_string(json_object_get(c, "restore_state")))
            snprintf(rst, sizeof rst, "%s %lld%%", out_str(c, "restore_state"),
                     out_int(c, "restore_progress"));
        const char *row[] = { id, out_str(c, "h1"), out_str(c, "t1"),
                              out_str(c, "relationship"),
                              json_is_string(json_object_get(c, "state")) ? out_str(c, "state")
                                                                          : "-",
                              pct, rst };
        out_table_row(t, row);
    }
    out_table_print(t, stdout);
    out_table_free(t);
}

static void session_list_print(const json_t *res)
{
    static const char *const hdr[] = { "NAME", "SYSTEM", "STATE", "STATUS", ">COPY SETS",
                                       "LAST ACTION", "DESCRIPTION" };
    struct out_table *t = out_table_new(7, hdr);
    const json_t *s;
    size_t i;
    json_array_foreach(json_object_get(res, "sessions"), i, s) {
        char n[16], last[80] = "-";
        snprintf(n, sizeof n, "%zu", json_array_size(json_object_get(s, "copysets")));
        if (json_is_string(json_object_get(s, "last_action")))
            snprintf(last, sizeof last, "%s %s", out_str(s, "last_action"),
                     out_str(s, "last_action_at"));
        const char *row[] = { out_str(s, "name"), out_str(s, "system"), out_str(s, "state"),
                              out_str(s, "status"), n, last, out_str(s, "description") };
        out_table_row(t, row);
    }
    out_table_print(t, stdout);
    out_table_free(t);
}

/* Send params; print the session (or, with --json, the answer). */
static int session_change(struct cli_ctx *ctx, const char *method, json_t *params,
                          const char *done)
{
    json_t *res;
    int rc = cli_call(ctx, method, params, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else if (done)
        printf("session %s %s\n", out_str(res, "name"), done);
    json_decref(res);
    return CLI_OK;
}

int cmd_session_create(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *system = NULL, *desc = NULL;
    struct args_opt opts[] = { ARGS_OPT_VALUE("system", &system),
                               ARGS_OPT_VALUE("description", &desc),
                               CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!system)
        return cli_usage_error(ctx, "--system is required");
    json_t *p = json_pack("{s:s, s:s}", "name", a.pos[0], "system", system);
    if (desc)
        json_object_set_new(p, "description", json_string(desc));
    return session_change(ctx, "session.create", p, "created: Defined, Inactive");
}

int cmd_session_add_copyset(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *h1 = NULL, *t1 = NULL;
    struct args_opt opts[] = { ARGS_OPT_VALUE("h1", &h1), ARGS_OPT_VALUE("t1", &t1),
                               CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!h1 || !t1)
        return cli_usage_error(ctx, "--%s is required", !h1 ? "h1" : "t1");
    char done[200];
    snprintf(done, sizeof done, "has copy set %s -> %s", h1, t1);
    return session_change(ctx, "session.add_copyset",
                          json_pack("{s:s, s:s, s:s}", "name", a.pos[0], "h1", h1, "t1", t1),
                          done);
}

int cmd_session_remove_copyset(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *h1 = NULL;
    struct args_opt opts[] = { ARGS_OPT_VALUE("h1", &h1), CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!h1)
        return cli_usage_error(ctx, "--h1 is required");
    char done[200];
    snprintf(done, sizeof done, "no longer has the copy set of %s", h1);
    return session_change(ctx, "session.remove_copyset",
                          json_pack("{s:s, s:s}", "name", a.pos[0], "h1", h1), done);
}

int cmd_session_list(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "session.list", false, session_list_print);
}

int cmd_session_show(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "session.show", true, session_print);
}

int cmd_session_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    bool force = false;
    struct args_opt opts[] = { ARGS_OPT_FLAG("force", &force), CLI_COMMON_OPTS(ctx),
                               ARGS_OPT_END };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    rc = cli_call(ctx, "session.delete", json_pack("{s:s, s:b}", "name", a.pos[0], "force",
                                                   force), SESSION_ACTION_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else
        printf("session %s deleted\n", out_str(res, "name"));
    json_decref(res);
    return CLI_OK;
}

static int int_opt(struct cli_ctx *ctx, const char *flag, const char *s, long lo, long hi,
                   json_t *p, const char *key)
{
    char *end;
    if (!s)
        return -1;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < lo || v > hi)
        return cli_usage_error(ctx, "--%s: '%s' is not a number from %ld to %ld", flag, s,
                               lo, hi);
    json_object_set_new(p, key, json_integer(v));
    return -1;
}

int cmd_session_set(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *pre = NULL, *post = NULL, *timeout = NULL, *desc = NULL, *rate = NULL;
    const char *zos = NULL, *fallback = NULL;
    struct args_opt opts[] = {
        ARGS_OPT_VALUE("zos", &zos),
        ARGS_OPT_VALUE("fallback", &fallback),
        ARGS_OPT_VALUE("pre-flash", &pre),
        ARGS_OPT_VALUE("post-flash", &post),
        ARGS_OPT_VALUE("hook-timeout", &timeout),
        ARGS_OPT_VALUE("description", &desc),
        ARGS_OPT_VALUE("copy-rate", &rate),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!pre && !post && !timeout && !desc && !rate && !zos && !fallback)
        return cli_usage_error(ctx, "give at least one of --pre-flash, --post-flash, "
                               "--hook-timeout, --description, --copy-rate, --zos, "
                               "--fallback");
    json_t *p = json_pack("{s:s}", "name", a.pos[0]);
    if (zos)
        json_object_set_new(p, "zos", json_string(zos));
    if (fallback)
        json_object_set_new(p, "zos_fallback", json_string(fallback));
    if (pre)
        json_object_set_new(p, "pre_flash", json_string(pre));
    if (post)
        json_object_set_new(p, "post_flash", json_string(post));
    if (desc)
        json_object_set_new(p, "description", json_string(desc));
    if ((rc = int_opt(ctx, "hook-timeout", timeout, 1, 86400, p, "hook_timeout")) >= 0 ||
        (rc = int_opt(ctx, "copy-rate", rate, 0, 150, p, "copy_rate")) >= 0) {
        json_decref(p);
        return rc;
    }
    return session_change(ctx, "session.set", p, "updated");
}

int cmd_session_history(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *limit = NULL;
    struct args_opt opts[] = { ARGS_OPT_VALUE("limit", &limit), CLI_COMMON_OPTS(ctx),
                               ARGS_OPT_END };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    json_t *p = json_pack("{s:s}", "name", a.pos[0]);
    if ((rc = int_opt(ctx, "limit", limit, 1, 100000, p, "limit")) >= 0) {
        json_decref(p);
        return rc;
    }
    rc = cli_call(ctx, "session.history", p, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json) {
        out_json(res);
        json_decref(res);
        return CLI_OK;
    }
    static const char *const hdr[] = { ">ID", "START", ">DURATION", "WHAT", "ORIGIN",
                                       "OUTCOME", "MESSAGE" };
    struct out_table *t = out_table_new(7, hdr);
    const json_t *e;
    size_t i;
    json_array_foreach(json_object_get(res, "entries"), i, e) {
        char id[24], dur[32] = "-", what[64];
        snprintf(id, sizeof id, "%lld", out_int(e, "id"));
        if (json_is_integer(json_object_get(e, "duration_ms")))
            snprintf(dur, sizeof dur, "%.3f s", (double)out_int(e, "duration_ms") / 1000);
        snprintf(what, sizeof what, "%s%s", strcmp(out_str(e, "kind"), "hook") == 0 ? "  " : "",
                 strcmp(out_str(e, "action"), "background_copy") == 0
                     ? "initiate-background-copy" : out_str(e, "action"));
        const char *row[] = { id, out_str(e, "start"), dur, what, out_str(e, "origin"),
                              out_str(e, "outcome"), out_str(e, "message") };
        out_table_row(t, row);
    }
    out_table_print(t, stdout);
    out_table_free(t);
    json_decref(res);
    return CLI_OK;
}

/* flash, start, initiate-background-copy, terminate, restore. */
static int session_act(struct cli_ctx *ctx, int argc, char **argv, const char *action,
                       bool takes_rate)
{
    bool dry = false;
    const char *rate = NULL;
    struct args_opt opts[] = { ARGS_OPT_FLAG("dry-run", &dry), ARGS_OPT_VALUE("copy-rate", &rate),
                               CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (rate && !takes_rate)
        return cli_usage_error(ctx, "--copy-rate: not an option of this action");
    char method[64];
    snprintf(method, sizeof method, "session.%s", action);
    json_t *p = json_pack("{s:s}", "name", a.pos[0]);
    if (dry)
        json_object_set_new(p, "dry_run", json_true());
    if ((rc = int_opt(ctx, "copy-rate", rate, 0, 150, p, "copy_rate")) >= 0) {
        json_decref(p);
        return rc;
    }
    rc = cli_call(ctx, method, p, SESSION_ACTION_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json) {
        out_json(res);
        json_decref(res);
        return CLI_OK;
    }
    const json_t *st = json_object_get(res, "session_state");
    if (dry) {
        const json_t *c;
        size_t i;
        printf("session %s: %s (dry run): would send\n", a.pos[0], action);
        json_array_foreach(json_object_get(res, "commands"), i, c)
            printf("  %s\n", json_string_value(c));
        json_decref(res);
        return CLI_OK;
    }
    printf("session %s: %s done; state %s (%s)\n", a.pos[0],
           strcmp(action, "background_copy") == 0 ? "initiate-background-copy" : action,
           out_str(st, "state"), out_str(st, "status"));
    const json_t *hooks = json_object_get(res, "hooks");
    static const char *const which[] = { "pre_flash", "post_flash" };
    for (int k = 0; k < 2; k++) {
        const json_t *h = json_object_get(hooks, which[k]);
        if (h)
            printf("  %s hook: %s in %.3f s\n", k ? "post-flash" : "pre-flash",
                   out_str(h, "outcome"), json_number_value(json_object_get(h, "duration_s")));
    }
    if (json_is_integer(json_object_get(res, "start_hold_ns")))
        printf("  writes held %.3f ms at the point in time\n",
               (double)out_int(res, "start_hold_ns") / 1e6);
    if (json_is_number(json_object_get(res, "freeze_ms")))
        printf("  freeze (pre-flash hook end to post-flash hook start): %.1f ms\n",
               json_number_value(json_object_get(res, "freeze_ms")));
    json_decref(res);
    return CLI_OK;
}

int cmd_session_flash(struct cli_ctx *ctx, int argc, char **argv)
{
    return session_act(ctx, argc, argv, "flash", false);
}

int cmd_session_start(struct cli_ctx *ctx, int argc, char **argv)
{
    return session_act(ctx, argc, argv, "start", true);
}

int cmd_session_background_copy(struct cli_ctx *ctx, int argc, char **argv)
{
    return session_act(ctx, argc, argv, "background_copy", true);
}

int cmd_session_terminate(struct cli_ctx *ctx, int argc, char **argv)
{
    return session_act(ctx, argc, argv, "terminate", false);
}

int cmd_session_restore(struct cli_ctx *ctx, int argc, char **argv)
{
    return session_act(ctx, argc, argv, "restore", false);
}
