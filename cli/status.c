/* SPDX-License-Identifier: MIT */
/*
 * cli/status.c — `pitcopy status`: the daemon at a glance.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void status_print(const json_t *s)
{
    char states[256] = "", up[64];
    size_t n = 0;
    const char *key;
    const json_t *v;
    long long secs = out_int(s, "uptime_s");
    if (secs >= 86400)
        snprintf(up, sizeof up, "%lldd %lldh %lldm", secs / 86400, secs % 86400 / 3600,
                 secs % 3600 / 60);
    else
        snprintf(up, sizeof up, "%lldh %lldm %llds", secs / 3600, secs % 3600 / 60, secs % 60);
    json_object_foreach((json_t *)json_object_get(s, "states"), key, v)
        if (json_integer_value(v) && n < sizeof states)
            n += (size_t)snprintf(states + n, sizeof states - n, "%s%lld %s", n ? ", " : "",
                                  (long long)json_integer_value(v), key);
    out_kv("version", "%s", out_str(s, "version"));
    out_kv("pid", "%lld", out_int(s, "pid"));
    out_kv("uptime", "%s", up);
    out_kv("state directory", "%s", out_str(s, "state_dir"));
    out_kv("control socket", "%s", out_str(s, "control"));
    out_kv("NBD", "%s%s%s%s%s%s", out_str(s, "nbd_unix"),
           *out_str(s, "nbd_unix") && *out_str(s, "nbd_tcp") ? ", " : "",
           *out_str(s, "nbd_tcp") ? out_str(s, "nbd_tcp") : "",
           *out_str(s, "nbd_tls") ? " (TLS " : "", out_str(s, "nbd_tls"),
           *out_str(s, "nbd_tls") ? ")" : "");
    if (json_is_integer(json_object_get(s, "nbd_connections")))
        out_kv("NBD connections", "%lld", out_int(s, "nbd_connections"));
    else
        out_kv("NBD connections", "-");
    out_kv("I/O backend", "%s, %lld workers", out_str(s, "io_backend"), out_int(s, "workers"));
    out_kv("volumes", "%lld", out_int(s, "volumes"));
    out_kv("mappings", "%lld%s%s%s", out_int(s, "mappings"), n ? " (" : "", states, n ? ")" : "");
    const json_t *mg = json_object_get(s, "mgmt");
    if (json_is_string(json_object_get(mg, "error")))
        out_kv("catalog", "%s", out_str(mg, "error"));
    else if (json_is_object(mg))
        out_kv("catalog", "%s (schema %lld): %lld systems, %lld sessions, %lld schedules%s",
               out_str(mg, "catalog"), out_int(mg, "schema_version"), out_int(mg, "systems"),
               out_int(mg, "sessions"), out_int(mg, "schedules"),
               out_bool(mg, "test_clock") ? "; test clock" : "");
    static const char *const kinds[] = { "skipped_volumes", "skipped_mappings" };
    for (int k = 0; k < 2; k++) {
        const json_t *e;
        size_t i;
        json_array_foreach(json_object_get(s, kinds[k]), i, e)
            out_kv(k ? "skipped mapping" : "skipped volume", "%s: %s", out_str(e, "name"),
                   out_str(e, "reason"));
    }
}

int cmd_status(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "status", false, status_print);
}
