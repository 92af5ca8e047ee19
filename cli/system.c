/* SPDX-License-Identifier: MIT */
/*
 * cli/system.c — `pitcopy system add|list|show|remove|clock`.
 *
 * Role
 *   One request each (system.* in ctl/protocol.h), printed as a table or
 *   key/value lines, or the daemon's JSON with --json.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

static void system_print(const json_t *s)
{
    char list[512] = "";
    size_t i, n = 0;
    const json_t *v;
    json_array_foreach(json_object_get(s, "sessions"), i, v)
        n += (size_t)snprintf(list + n, n < sizeof list ? sizeof list - n : 0, "%s%s",
                              i ? ", " : "", json_string_value(v));
    out_kv("name", "%s", out_str(s, "name"));
    out_kv("type", "%s", out_str(s, "type"));
    if (*out_str(s, "address"))
        out_kv("address", "%s", out_str(s, "address"));
    out_kv("created", "%s", out_str(s, "created"));
    out_kv("sessions", "%s", list[0] ? list : "-");
}

static void system_list_print(const json_t *res)
{
    static const char *const hdr[] = { "NAME", "TYPE", ">SESSIONS", "CREATED" };
    struct out_table *t = out_table_new(4, hdr);
    const json_t *s;
    size_t i;
    json_array_foreach(json_object_get(res, "systems"), i, s) {
        char n[16];
        snprintf(n, sizeof n, "%zu", json_array_size(json_object_get(s, "sessions")));
        const char *row[] = { out_str(s, "name"), out_str(s, "type"), n, out_str(s, "created") };
        out_table_row(t, row);
    }
    out_table_print(t, stdout);
    out_table_free(t);
}

/* A file option as an absolute path (the daemon has another cwd). */
static int abs_file(struct cli_ctx *ctx, const char *opt, const char *file, json_t *p,
                    const char *key)
{
    char abs[PATH_MAX];
    if (!file)
        return 0;
    if (!*file || !realpath(file, abs))
        return cli_usage_error(ctx, "--%s: cannot use '%s': %s", opt, file,
                               *file ? strerror(errno) : "empty path");
    json_object_set_new(p, key, json_string(abs));
    return 0;
}

int cmd_system_add(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *type = NULL, *host = NULL, *port = NULL, *user = NULL, *key = NULL;
    const char *kh = NULL, *rest = NULL, *pwf = NULL, *ca = NULL;
    const char *hmc = NULL, *via = NULL, *image = NULL, *dscli = NULL;   /* ds8000 */
    bool insecure = false, tgtinhibit = false;
    struct args_opt opts[] = { ARGS_OPT_VALUE("type", &type), ARGS_OPT_VALUE("host", &host),
                               ARGS_OPT_VALUE("port", &port), ARGS_OPT_VALUE("user", &user),
                               ARGS_OPT_VALUE("key", &key), ARGS_OPT_VALUE("known-hosts", &kh),
                               ARGS_OPT_VALUE("rest", &rest),
                               ARGS_OPT_VALUE("password-file", &pwf),
                               ARGS_OPT_VALUE("cacert", &ca), ARGS_OPT_FLAG("insecure", &insecure),
                               ARGS_OPT_VALUE("hmc", &hmc), ARGS_OPT_VALUE("via", &via),
                               ARGS_OPT_VALUE("storage-image", &image),
                               ARGS_OPT_VALUE("dscli", &dscli),
                               ARGS_OPT_FLAG("tgtinhibit", &tgtinhibit),
                               CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!type)
        return cli_usage_error(ctx, "--type is required (local, svc or ds8000)");
    json_t *p = json_pack("{s:s, s:s}", "name", a.pos[0], "type", type);
    if (host)
        json_object_set_new(p, "host", json_string(host));
    if (rest)
        json_object_set_new(p, "rest", json_string(rest));
    if (user)
        json_object_set_new(p, "user", json_string(user));
    if (insecure)
        json_object_set_new(p, "insecure", json_true());
    if (hmc)
        json_object_set_new(p, "hmc", json_string(hmc));
    if (via)
        json_object_set_new(p, "via", json_string(via));
    if (image)
        json_object_set_new(p, "storage_image", json_string(image));
    if (tgtinhibit)
        json_object_set_new(p, "tgtinhibit", json_true());
    /* A dscli given with a path: absolute (the daemon has another cwd). */
    if (dscli && !strchr(dscli, '/'))
        json_object_set_new(p, "dscli", json_string(dscli));
    else if ((rc = abs_file(ctx, "dscli", dscli, p, "dscli"))) {
        json_decref(p);
        return rc;
    }
    if (port) {
        char *end;
        long v = strtol(port, &end, 10);
        if (*end || v < 1 || v > 65535) {
            json_decref(p);
            return cli_usage_error(ctx, "--port: '%s' is not a port (1-65535)", port);
        }
        json_object_set_new(p, "port", json_integer(v));
    }
    if ((rc = abs_file(ctx, "key", key, p, "key")) ||
        (rc = abs_file(ctx, "known-hosts", kh, p, "known_hosts")) ||
        (rc = abs_file(ctx, "password-file", pwf, p, "password_file")) ||
        (rc = abs_file(ctx, "cacert", ca, p, "cacert"))) {
        json_decref(p);
        return rc;
    }
    rc = cli_call(ctx, "system.add", p, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else
        printf("system %s added: type %s%s%s\n", out_str(res, "name"), out_str(res, "type"),
               *out_str(res, "address") ? ", " : "", out_str(res, "address"));
    json_decref(res);
    return CLI_OK;
}

int cmd_system_list(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "system.list", false, system_list_print);
}

int cmd_system_show(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "system.show", true, system_print);
}

static void system_removed(const json_t *res)
{
    printf("system %s removed\n", out_str(res, "name"));
}

int cmd_system_remove(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "system.remove", true, system_removed);
}

int cmd_system_clock(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *set = NULL;
    struct args_opt opts[] = { ARGS_OPT_VALUE("set", &set), CLI_COMMON_OPTS(ctx),
                               ARGS_OPT_END };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 0, 0);
    if (rc >= 0)
        return rc;
    rc = cli_call(ctx, "system.clock", set ? json_pack("{s:s}", "set", set) : NULL,
                  CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else
        printf("%s%s\n", out_str(res, "now"), out_bool(res, "test_clock") ? " (test clock)" : "");
    json_decref(res);
    return CLI_OK;
}

/* `pitcopy zos add`: a system of type zos (mgmt/zos.h), a z/OS connection. */
int cmd_zos_add(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *url = NULL, *user = NULL, *pwf = NULL, *ca = NULL, *systems = NULL;
    const char *dev[256];
    unsigned ndev = 0;
    bool insecure = false, apar = false;
    struct args_opt opts[] = { ARGS_OPT_VALUE("zosmf", &url), ARGS_OPT_VALUE("user", &user),
                               ARGS_OPT_VALUE("password-file", &pwf),
                               ARGS_OPT_VALUE("cacert", &ca), ARGS_OPT_FLAG("insecure", &insecure),
                               ARGS_OPT_FLAG("apar-applied", &apar),
                               ARGS_OPT_MULTI("device", dev, &ndev, 256),
                               ARGS_OPT_VALUE("systems", &systems),
                               CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!url || !user || !pwf)
        return cli_usage_error(ctx, "--zosmf https://HOST, --user and --password-file are "
                               "required");
    json_t *p = json_pack("{s:s, s:s, s:s, s:s}", "name", a.pos[0], "type", "zos", "zosmf",
                          url, "user", user);
    if (insecure)
        json_object_set_new(p, "insecure", json_true());
    if (apar)
        json_object_set_new(p, "apar_applied", json_true());
    if (systems)
        json_object_set_new(p, "systems", json_string(systems));
    char devs[4096] = "";
    size_t n = 0;
    for (unsigned i = 0; i < ndev && n < sizeof devs; i++)
        n += (size_t)snprintf(devs + n, sizeof devs - n, "%s%s", i ? "," : "", dev[i]);
    if (ndev)
        json_object_set_new(p, "devices", json_string(devs));
    if ((rc = abs_file(ctx, "password-file", pwf, p, "password_file")) ||
        (rc = abs_file(ctx, "cacert", ca, p, "cacert"))) {
        json_decref(p);
        return rc;
    }
    rc = cli_call(ctx, "system.add", p, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else
        printf("z/OS connection %s added: %s\n", out_str(res, "name"), out_str(res, "address"));
    json_decref(res);
    return CLI_OK;
}
