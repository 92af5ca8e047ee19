/* SPDX-License-Identifier: MIT */
/*
 * cli/group.c — `pitcopy group create|delete|list|show|prepare|start|stop`.
 *
 * Role
 *   One request each (group.* in ctl/protocol.h).  A group's mappings join
 *   it with `map create --group G` or `map set NAME --group G`.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Requests that may wait on the engine (a prepare cleaning first). */
#define GROUP_SLOW_TIMEOUT_MS (-1)

static void members_text(const json_t *g, char *buf, size_t len)
{
    const json_t *m;
    size_t i, used = 0;
    buf[0] = 0;
    json_array_foreach(json_object_get(g, "mappings"), i, m) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", json_string_value(m));
        if (n < 0 || (size_t)n >= len - used) {
            snprintf(buf + (len > 4 ? len - 4 : 0), 4, "...");
            return;
        }
        used += (size_t)n;
    }
}

static void group_print(const json_t *g)
{
    char members[1024];
    members_text(g, members, sizeof members);
    out_kv("name", "%s", out_str(g, "name"));
    out_kv("state", "%s", out_str(g, "state"));
    out_kv("mappings", "%zu%s%s", json_array_size(json_object_get(g, "mappings")),
           members[0] ? ": " : "", members);
    if (json_is_string(json_object_get(g, "started_at")))
        out_kv("last start", "%s, writes held %.3f ms", out_str(g, "started_at"),
               (double)out_int(g, "start_hold_ns") / 1e6);
    else
        out_kv("last start", "never");
    const json_t *list = json_object_get(g, "members"), *m;
    size_t i;
    if (!json_array_size(list))
        return;
    static const char *const hdr[] = { "MAPPING", "SOURCE", "TARGET", "STATE", ">PROGRESS",
                                       ">COPY", ">DEPENDENTS", ">TO CLEAN", "TARGET" };
    struct out_table *t = out_table_new(9, hdr);
    json_array_foreach(list, i, m) {
        char pct[16], rate[32], dep[16], cl[24];
        snprintf(pct, sizeof pct, "%lld%%", out_int(m, "progress"));
        out_rate(m, "copy_rate", rate, sizeof rate);
        snprintf(dep, sizeof dep, "%lld", out_int(m, "dependent_mappings"));
        snprintf(cl, sizeof cl, "%lld", out_int(m, "grains_to_clean"));
        const char *row[] = { out_str(m, "name"), out_str(m, "source"), out_str(m, "target"),
                              out_str(m, "state"), pct, rate, dep, cl,
                              out_bool(m, "target_online") ? "online" : "offline" };
        out_table_row(t, row);
    }
    printf("\n");
    out_table_print(t, stdout);
    out_table_free(t);
}

static void group_list_print(const json_t *res)
{
    static const char *const hdr[] = { "NAME", "STATE", ">MAPPINGS", "LAST START" };
    struct out_table *t = out_table_new(4, hdr);
    const json_t *g;
    size_t i;
    json_array_foreach(json_object_get(res, "groups"), i, g) {
        char n[16];
        snprintf(n, sizeof n, "%zu", json_array_size(json_object_get(g, "mappings")));
        const char *when = json_is_string(json_object_get(g, "started_at")) ?
                           out_str(g, "started_at") : "never";
        const char *row[] = { out_str(g, "name"), out_str(g, "state"), n, when };
        out_table_row(t, row);
    }
    out_table_print(t, stdout);
    out_table_free(t);
}

int cmd_group_list(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "group.list", false, group_list_print);
}

int cmd_group_show(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "group.show", true, group_print);
}

/* group create|prepare|start|stop|delete NAME [--force|--split] */
static int group_simple(struct cli_ctx *ctx, int argc, char **argv, const char *method,
                        const char *flag, int timeout_ms)
{
    bool set = false;
    struct args_opt with_flag[] = {
        ARGS_OPT_FLAG(flag ? flag : "-", &set), CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args_opt plain[] = { CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    json_t *res, *params;
    int rc = cli_parse(ctx, argc, argv, flag ? with_flag : plain, &a, 1, 1);
    if (rc >= 0)
        return rc;
    params = json_pack("{s:s}", "name", a.pos[0]);
    if (flag && set)
        json_object_set_new(params, flag, json_true());
    cli_what(ctx, a.pos[0]);
    rc = cli_call(ctx, method, params, timeout_ms, &res);
    if (rc)
        return rc;
    if (ctx->json) {
        out_json(res);
    } else if (strcmp(method, "group.delete") == 0) {
        printf("consistency group %s deleted\n", out_str(res, "name"));
    } else if (strcmp(method, "group.start") == 0) {
        printf("consistency group %s started: %zu mappings at one point in time; writes "
               "held %.3f ms\n", out_str(res, "name"),
               json_array_size(json_object_get(res, "mappings")),
               (double)out_int(res, "start_hold_ns") / 1e6);
    } else {
        printf("consistency group %s is %s\n", out_str(res, "name"), out_str(res, "state"));
    }
    json_decref(res);
    return CLI_OK;
}

int cmd_group_create(struct cli_ctx *ctx, int argc, char **argv)
{
    return group_simple(ctx, argc, argv, "group.create", NULL, CLI_TIMEOUT_MS);
}

int cmd_group_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    return group_simple(ctx, argc, argv, "group.delete", "force", CLI_TIMEOUT_MS);
}

int cmd_group_prepare(struct cli_ctx *ctx, int argc, char **argv)
{
    return group_simple(ctx, argc, argv, "group.prepare", NULL, GROUP_SLOW_TIMEOUT_MS);
}

int cmd_group_start(struct cli_ctx *ctx, int argc, char **argv)
{
    return group_simple(ctx, argc, argv, "group.start", "restore", GROUP_SLOW_TIMEOUT_MS);
}

int cmd_group_stop(struct cli_ctx *ctx, int argc, char **argv)
{
    return group_simple(ctx, argc, argv, "group.stop", "split", GROUP_SLOW_TIMEOUT_MS);
}
