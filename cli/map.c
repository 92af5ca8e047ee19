/* SPDX-License-Identifier: MIT */
/*
 * cli/map.c — `pitcopy map create|prepare|start|stop|delete|set|list|show|wait`.
 *
 * Role
 *   One request each (map.* in ctl/protocol.h), except wait: it asks the
 *   daemon to wait in slices of a second (map.wait), and between slices
 *   reads the mapping (map.show) to draw its progress, so the bar moves and
 *   the wait ends the moment the state is reached.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

/* Requests that may wait on the engine (cleaning before a prepare, a forced
 * delete): no client-side limit; the daemon answers when done. */
#define MAP_SLOW_TIMEOUT_MS (-1)
#define MAP_WAIT_SLICE_MS   1000

static json_t *rate_json(int rate)
{
    return rate == PC_RATE_UNLIMITED ? json_string("unlimited") : json_integer(rate);
}

static int rate_opt(struct cli_ctx *ctx, const char *flag, const char *s, json_t *params,
                    const char *key)
{
    int rate;
    if (!s)
        return -1;
    if (pc_rate_parse(s, &rate) < 0)
        return cli_usage_error(ctx, "--%s: '%s' is not a rate (0-150 or unlimited)", flag, s);
    json_object_set_new(params, key, rate_json(rate));
    return -1;
}

static void map_print(const json_t *m)
{
    char grain[32], copy[64], clean[64];
    args_format_size((uint64_t)out_int(m, "grain_size"), grain, sizeof grain);
    out_rate(m, "copy_rate", copy, sizeof copy);
    out_rate(m, "clean_rate", clean, sizeof clean);
    out_kv("name", "%s", out_str(m, "name"));
    out_kv("source", "%s", out_str(m, "source"));
    out_kv("target", "%s", out_str(m, "target"));
    out_kv("state", "%s", out_str(m, "state"));
    out_kv("progress", "%lld%% (%lld of %lld grains split)", out_int(m, "progress"),
           out_int(m, "grains_split"), out_int(m, "grains"));
    out_kv("grain size", "%s", grain);
    out_kv("copy rate", "%s", copy);
    out_kv("clean rate", "%s", clean);
    out_kv("complete", "%s", out_bool(m, "complete") ? "yes" : "no");
    out_kv("target online", "%s", out_bool(m, "target_online") ? "yes" : "no");
    out_kv("dependent mappings", "%lld", out_int(m, "dependent_mappings"));
    out_kv("grains to clean", "%lld", out_int(m, "grains_to_clean"));
    out_kv("consistency group", "%s",
           json_is_string(json_object_get(m, "group")) ? out_str(m, "group") : "none");
    out_kv("autodelete", "%s", out_bool(m, "autodelete") ? "on" : "off");
    if (json_is_string(json_object_get(m, "partner")))
        out_kv("restore partner", "%s%s", out_str(m, "partner"),
               out_bool(m, "restoring") ? " (restoring now)" : "");
    out_kv("incremental", "%s", out_bool(m, "incremental") ? "yes" : "no");
    if (json_is_integer(json_object_get(m, "grains_changed")))
        out_kv("grains changed", "%lld since the last start", out_int(m, "grains_changed"));
    else if (out_bool(m, "incremental"))
        out_kv("grains changed", "unknown: the next start copies everything");
    if (json_is_string(json_object_get(m, "started_at")))
        out_kv("last start", "%s, writes held %.3f ms", out_str(m, "started_at"),
               (double)out_int(m, "start_hold_ns") / 1e6);
    else
        out_kv("last start", "never");
}

/*
 * NAME, at most one flag (flag_name: sent as "flag_name": true when given),
 * one call, and its answer: map.show as a table, the others as one line.
 */
static int map_call(struct cli_ctx *ctx, int argc, char **argv, const char *method,
                    const char *flag_name, int timeout_ms)
{
    bool flag = false;
    /* Without a flag the list starts after it (a NULL name would end it). */
    struct args_opt opts[] = {
        ARGS_OPT_FLAG(flag_name, &flag),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, flag_name ? opts : opts + 1, &a, 1, 1);
    if (rc >= 0)
        return rc;
    json_t *params = json_pack("{s:s}", "name", a.pos[0]);
    if (flag)
        json_object_set_new(params, flag_name, json_true());
    rc = cli_call(ctx, method, params, timeout_ms, &res);
    if (rc)
        return rc;
    if (ctx->json) {
        out_json(res);
    } else if (strcmp(method, "map.show") == 0) {
        map_print(res);
    } else if (strcmp(method, "map.delete") == 0) {
        printf("mapping %s deleted\n", out_str(res, "name"));
    } else if (strcmp(method, "map.start") == 0 && flag) {
        printf("mapping %s started: restoring %s from %s; writes held %.3f ms\n",
               out_str(res, "name"), out_str(res, "target"), out_str(res, "source"),
               (double)out_int(res, "start_hold_ns") / 1e6);
    } else if (strcmp(method, "map.start") == 0) {
        printf("mapping %s started: %s; writes held %.3f ms\n", out_str(res, "name"),
               out_str(res, "state"), (double)out_int(res, "start_hold_ns") / 1e6);
    } else {
        printf("mapping %s is %s", out_str(res, "name"), out_str(res, "state"));
        if (strcmp(out_str(res, "state"), "stopping") == 0)
            printf(" (cleaning %lld grains%s)", out_int(res, "grains_to_clean"),
                   flag ? " at full speed: split" : "");
        printf("; target %s is %s\n", out_str(res, "target"),
               out_bool(res, "target_online") ? "online" : "offline");
    }
    json_decref(res);
    return CLI_OK;
}

int cmd_map_show(struct cli_ctx *ctx, int argc, char **argv)
{
    return map_call(ctx, argc, argv, "map.show", NULL, CLI_TIMEOUT_MS);
}

int cmd_map_prepare(struct cli_ctx *ctx, int argc, char **argv)
{
    return map_call(ctx, argc, argv, "map.prepare", NULL, MAP_SLOW_TIMEOUT_MS);
}

int cmd_map_start(struct cli_ctx *ctx, int argc, char **argv)
{
    return map_call(ctx, argc, argv, "map.start", "restore", MAP_SLOW_TIMEOUT_MS);
}

int cmd_map_stop(struct cli_ctx *ctx, int argc, char **argv)
{
    return map_call(ctx, argc, argv, "map.stop", "split", MAP_SLOW_TIMEOUT_MS);
}

int cmd_map_create(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *name = NULL, *grain = NULL, *copy = NULL, *clean = NULL, *group = NULL;
    bool autodelete = false, incremental = false;
    struct args_opt opts[] = {
        ARGS_OPT_VALUE("name", &name),
        ARGS_OPT_FLAG("incremental", &incremental),
        ARGS_OPT_VALUE("grain", &grain),
        ARGS_OPT_VALUE("group", &group),
        ARGS_OPT_FLAG("autodelete", &autodelete),
        ARGS_OPT_VALUE("copy-rate", &copy),
        ARGS_OPT_VALUE("clean-rate", &clean),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    json_t *res, *params;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 2, 2);
    if (rc >= 0)
        return rc;
    params = json_pack("{s:s, s:s}", "source", a.pos[0], "target", a.pos[1]);
    if (name)
        json_object_set_new(params, "name", json_string(name));
    if (group)
        json_object_set_new(params, "group", json_string(group));
    if (autodelete)
        json_object_set_new(params, "autodelete", json_true());
    if (incremental)
        json_object_set_new(params, "incremental", json_true());
    if (grain) {
        uint64_t g;
        if (args_parse_size(grain, &g) < 0 || g == 0 || g > INT32_MAX) {
            json_decref(params);
            return cli_usage_error(ctx, "--grain: '%s' is not a grain size (a power of two "
                                   "from 4K to 1M, like 64K)", grain);
        }
        json_object_set_new(params, "grain", json_integer((json_int_t)g));
    }
    if ((rc = rate_opt(ctx, "copy-rate", copy, params, "copy_rate")) >= 0 ||
        (rc = rate_opt(ctx, "clean-rate", clean, params, "clean_rate")) >= 0) {
        json_decref(params);
        return rc;
    }
    cli_what(ctx, name ? name : a.pos[0]);
    rc = cli_call(ctx, "map.create", params, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json) {
        out_json(res);
    } else {
        char g[32], cr[64];
        args_format_size((uint64_t)out_int(res, "grain_size"), g, sizeof g);
        out_rate(res, "copy_rate", cr, sizeof cr);
        printf("mapping %s created: %s -> %s, %s grains, copy rate %s%s%s%s; %s\n",
               out_str(res, "name"), out_str(res, "source"), out_str(res, "target"), g, cr,
               group ? ", consistency group " : "", group ? group : "",
               autodelete ? ", autodelete" : "", out_str(res, "state"));
    }
    json_decref(res);
    return CLI_OK;
}

int cmd_map_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    return map_call(ctx, argc, argv, "map.delete", "force", MAP_SLOW_TIMEOUT_MS);
}

int cmd_map_set(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *copy = NULL, *clean = NULL, *group = NULL, *autodel = NULL;
    bool no_group = false;
    struct args_opt opts[] = {
        ARGS_OPT_VALUE("copy-rate", &copy),
        ARGS_OPT_VALUE("clean-rate", &clean),
        ARGS_OPT_VALUE("group", &group),
        ARGS_OPT_FLAG("no-group", &no_group),
        ARGS_OPT_VALUE("autodelete", &autodel),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    json_t *res, *params;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!copy && !clean && !group && !no_group && !autodel)
        return cli_usage_error(ctx, "give --copy-rate, --clean-rate, --group, --no-group or "
                               "--autodelete");
    if (group && no_group)
        return cli_usage_error(ctx, "--group and --no-group contradict each other");
    if (autodel && strcmp(autodel, "on") != 0 && strcmp(autodel, "off") != 0)
        return cli_usage_error(ctx, "--autodelete: '%s' is not on or off", autodel);
    params = json_pack("{s:s}", "name", a.pos[0]);
    if (group || no_group)
        json_object_set_new(params, "group", json_string(group ? group : ""));
    if (autodel)
        json_object_set_new(params, "autodelete", json_boolean(strcmp(autodel, "on") == 0));
    if ((rc = rate_opt(ctx, "copy-rate", copy, params, "copy_rate")) >= 0 ||
        (rc = rate_opt(ctx, "clean-rate", clean, params, "clean_rate")) >= 0) {
        json_decref(params);
        return rc;
    }
    rc = cli_call(ctx, "map.set", params, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json) {
        out_json(res);
    } else {
        char cr[64], cl[64];
        out_rate(res, "copy_rate", cr, sizeof cr);
        out_rate(res, "clean_rate", cl, sizeof cl);
        printf("mapping %s: copy rate %s, clean rate %s, consistency group %s, autodelete %s\n",
               out_str(res, "name"), cr, cl,
               json_is_string(json_object_get(res, "group")) ? out_str(res, "group") : "none",
               out_bool(res, "autodelete") ? "on" : "off");
    }
    json_decref(res);
    return CLI_OK;
}

static void map_list_print(const json_t *res)
{
    static const char *const hdr[] = { "NAME", "SOURCE", "TARGET", "STATE", ">PROGRESS",
                                       ">GRAIN", ">COPY", ">CLEAN", ">DEPENDENTS",
                                       ">TO CLEAN", "GROUP" };
    struct out_table *t = out_table_new(11, hdr);
    const json_t *m;
    size_t i;
    json_array_foreach(json_object_get(res, "mappings"), i, m) {
        char pct[16], g[32], cr[32], cl[32];
        snprintf(pct, sizeof pct, "%lld%%", out_int(m, "progress"));
        args_format_size((uint64_t)out_int(m, "grain_size"), g, sizeof g);
        json_t *c = json_object_get(m, "copy_rate"), *l = json_object_get(m, "clean_rate");
        snprintf(cr, sizeof cr, "%s", json_is_string(c) ? json_string_value(c) : "");
        if (json_is_integer(c))
            snprintf(cr, sizeof cr, "%lld", (long long)json_integer_value(c));
        snprintf(cl, sizeof cl, "%s", json_is_string(l) ? json_string_value(l) : "");
        if (json_is_integer(l))
            snprintf(cl, sizeof cl, "%lld", (long long)json_integer_value(l));
        char dep[16], clean_n[24];
        snprintf(dep, sizeof dep, "%lld", out_int(m, "dependent_mappings"));
        snprintf(clean_n, sizeof clean_n, "%lld", out_int(m, "grains_to_clean"));
        const json_t *grp = json_object_get(m, "group");
        const char *row[] = { out_str(m, "name"), out_str(m, "source"),
                              out_str(m, "target"), out_str(m, "state"), pct, g, cr, cl,
                              dep, clean_n, json_is_string(grp) ? json_string_value(grp) : "-" };
        out_table_row(t, row);
    }
    out_table_print(t, stdout);
    out_table_free(t);
}

int cmd_map_list(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "map.list", false, map_list_print);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool settled(const char *state)
{
    return strcmp(state, "idle_or_copied") == 0 || strcmp(state, "prepared") == 0 ||
           strcmp(state, "stopped") == 0 || strcmp(state, "suspended") == 0;
}

/* What "wait until it is done" means for a mapping in this state. */
static const char *map_wait_default(const json_t *m)
{
    const char *s = out_str(m, "state");
    if (strcmp(s, "copying") == 0)
        return "idle_or_copied";
    if (strcmp(s, "stopping") == 0)
        return out_bool(m, "complete") ? "idle_or_copied" : "stopped";
    if (strcmp(s, "preparing") == 0)
        return "prepared";
    return s;
}

int cmd_map_wait(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *state = NULL, *timeout_s = NULL;
    struct args_opt opts[] = {
        ARGS_OPT_VALUE("state", &state),
        ARGS_OPT_VALUE("timeout", &timeout_s),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    struct pc_error err = { 0 };
    struct out_progress prog;
    enum pc_map_state st;
    int64_t timeout = -1, t0 = now_ms();
    json_t *m = NULL, *res;
    char want[32];
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (state && ctl_state_parse(state, &st) < 0)
        return cli_usage_error(ctx, "--state: '%s' is not a state (idle_or_copied, preparing, "
                               "prepared, copying, stopping, stopped, suspended)", state);
    if (timeout_s && args_parse_duration(timeout_s, &timeout) < 0)
        return cli_usage_error(ctx, "--timeout: '%s' is not a duration (like 30, 1.5, 10m, "
                               "2h)", timeout_s);
    const char *name = a.pos[0];
    rc = cli_call(ctx, "map.show", json_pack("{s:s}", "name", name), CLI_TIMEOUT_MS, &m);
    if (rc)
        return rc;
    snprintf(want, sizeof want, "%s", state ? state : map_wait_default(m));
    out_progress_init(&prog);
    for (;;) {
        const char *now = out_str(m, "state");
        if (strcmp(now, want) == 0)
            break;
        if (!state && settled(now)) {
            /* It will not get there on its own (stopped meanwhile, say). */
            out_progress_end(&prog);
            err.code = -EINVAL;
            snprintf(err.msg, sizeof err.msg, "mapping %s is %s now; it will not reach %s",
                     name, now, want);
            json_decref(m);
            return cli_fail(ctx, CLI_FAIL, &err);
        }
        int64_t left = timeout < 0 ? MAP_WAIT_SLICE_MS : timeout - (now_ms() - t0);
        if (left <= 0) {
            out_progress_end(&prog);
            err.code = -ETIMEDOUT;
            snprintf(err.msg, sizeof err.msg, "mapping %s is still %s (%lld%%) after %.1f s; "
                     "it did not reach %s", name, now, out_int(m, "progress"),
                     (double)timeout / 1000, want);
            json_decref(m);
            return cli_fail(ctx, CLI_FAIL, &err);
        }
        if (!ctx->json)
            out_progress_show(&prog, m);
        int slice = (int)(left < MAP_WAIT_SLICE_MS ? left : MAP_WAIT_SLICE_MS);
        rc = cli_call_quiet(ctx, "map.wait", json_pack("{s:s, s:s, s:i}", "name", name,
                                                       "state", want, "timeout_ms", slice),
                            slice + CLI_TIMEOUT_MS, &res, &err);
        if (rc == CLI_OK) {
            json_decref(m);
            m = res;
            continue;
        }
        if (rc != CLI_FAIL || err.code != -ETIMEDOUT) {
            out_progress_end(&prog);
            json_decref(m);
            return cli_fail(ctx, rc, &err);
        }
        json_decref(m);
        rc = cli_call(ctx, "map.show", json_pack("{s:s}", "name", name), CLI_TIMEOUT_MS, &m);
        if (rc) {
            out_progress_end(&prog);
            return rc;
        }
    }
    if (ctx->json) {
        out_json(m);
    } else {
        out_progress_show(&prog, m);
        out_progress_end(&prog);
        printf("mapping %s is %s (%lld%%)\n", name, out_str(m, "state"), out_int(m, "progress"));
    }
    json_decref(m);
    return CLI_OK;
}
