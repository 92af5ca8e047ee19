/* SPDX-License-Identifier: MIT */
/*
 * cli/volume.c — `pitcopy volume create|list|show|delete`.
 *
 * Role
 *   Parses the command line into one request each (volume.* in
 *   ctl/protocol.h) and prints the answer.  A relative --file is made
 *   absolute here: the daemon's working directory is not the caller's.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void volume_print_row(struct out_table *t, const json_t *v)
{
    char size[32], maps[256] = "";
    args_format_size((uint64_t)out_int(v, "size"), size, sizeof size);
    const json_t *src = json_object_get(v, "source_of"), *m;
    size_t i, n = 0;
    json_array_foreach(src, i, m)
        n += (size_t)snprintf(maps + n, n < sizeof maps ? sizeof maps - n : 0, "%s%s",
                              i ? "," : "source of ", json_string_value(m));
    if (json_is_string(json_object_get(v, "target_of")) && n < sizeof maps)
        snprintf(maps + n, sizeof maps - n, "%starget of %s", n ? "; " : "",
                 out_str(v, "target_of"));
    const char *row[] = { out_str(v, "name"), size, out_str(v, "path"), maps[0] ? maps : "-" };
    out_table_row(t, row);
}

static void volume_print(const json_t *v)
{
    char size[32], list[256] = "";
    args_format_size((uint64_t)out_int(v, "size"), size, sizeof size);
    out_kv("name", "%s", out_str(v, "name"));
    out_kv("size", "%s (%lld bytes)", size, out_int(v, "size"));
    out_kv("file", "%s", out_str(v, "path"));
    out_kv("direct I/O", "%s", out_bool(v, "direct") ? "yes" : "no (buffered)");
    const json_t *src = json_object_get(v, "source_of"), *m;
    size_t i, n = 0;
    json_array_foreach(src, i, m)
        n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s%s",
                              i ? ", " : "", json_string_value(m));
    out_kv("source of", "%s", list[0] ? list : "-");
    out_kv("target of", "%s", json_is_string(json_object_get(v, "target_of"))
                                  ? out_str(v, "target_of") : "-");
    out_kv("NBD export", "%s", out_str(v, "name"));
}

int cmd_volume_create(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *size_s = NULL, *file = NULL;
    struct args_opt opts[] = {
        ARGS_OPT_VALUE("size", &size_s),
        ARGS_OPT_VALUE("file", &file),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    uint64_t size;
    char abs[PATH_MAX];
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!size_s)
        return cli_usage_error(ctx, "--size is required");
    int r = args_parse_size(size_s, &size);
    if (r < 0 || size == 0 || size > INT64_MAX)
        return cli_usage_error(ctx, "--size: '%s' is not a size (like 4096, 64K, 10G, 2T)%s",
                               size_s, r == -ERANGE || size > INT64_MAX ? ": too large" : "");
    json_t *params = json_pack("{s:s, s:I}", "name", a.pos[0], "size", (json_int_t)size);
    if (file) {
        if (!*file) {
            json_decref(params);
            return cli_usage_error(ctx, "--file: empty path");
        }
        if (file[0] != '/') {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof cwd) ||
                (size_t)snprintf(abs, sizeof abs, "%s/%s", cwd, file) >= sizeof abs) {
                json_decref(params);
                return cli_usage_error(ctx, "--file: cannot make '%s' an absolute path", file);
            }
            file = abs;
        }
        json_object_set_new(params, "file", json_string(file));
    }
    rc = cli_call(ctx, "volume.create", params, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json) {
        out_json(res);
    } else {
        char sz[32];
        args_format_size((uint64_t)out_int(res, "size"), sz, sizeof sz);
        printf("volume %s created: %s at %s\n", out_str(res, "name"), sz, out_str(res, "path"));
    }
    json_decref(res);
    return CLI_OK;
}

static void volume_list_print(const json_t *res)
{
    static const char *const hdr[] = { "NAME", ">SIZE", "FILE", "MAPPINGS" };
    struct out_table *t = out_table_new(4, hdr);
    const json_t *v;
    size_t i;
    json_array_foreach(json_object_get(res, "volumes"), i, v)
        volume_print_row(t, v);
    out_table_print(t, stdout);
    out_table_free(t);
}

int cmd_volume_list(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "volume.list", false, volume_list_print);
}

int cmd_volume_show(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "volume.show", true, volume_print);
}

int cmd_volume_delete(struct cli_ctx *ctx, int argc, char **argv)
{
    bool keep = false;
    struct args_opt opts[] = {
        ARGS_OPT_FLAG("keep-file", &keep),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    rc = cli_call(ctx, "volume.delete", json_pack("{s:s, s:b}", "name", a.pos[0],
                                                  "keep_file", keep), CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else
        printf("volume %s deleted; %s %s\n", out_str(res, "name"),
               out_bool(res, "file_removed") ? "removed" : "kept", out_str(res, "path"));
    json_decref(res);
    return CLI_OK;
}
