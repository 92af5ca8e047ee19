/* SPDX-License-Identifier: MIT */
/*
 * cli/schedule.c — `pitcopy schedule add|list|show|remove|print-crontab`.
 *
 * Role
 *   One request each (schedule.* in ctl/protocol.h).  print-crontab turns
 *   the daemon's schedules into crontab(5) lines that run this pitcopy
 *   against this state directory, for people who prefer cron.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

/* The CLI's action words (session initiate-background-copy) to the daemon's. */
const char *cli_action_name(const char *word)
{
    if (strcmp(word, "initiate-background-copy") == 0 || strcmp(word, "background-copy") == 0 ||
        strcmp(word, "background_copy") == 0)
        return "background_copy";
    return word;
}

static const char *action_word(const char *action)
{
    return strcmp(action, "background_copy") == 0 ? "initiate-background-copy" : action;
}

static void schedule_print(const json_t *s)
{
    out_kv("name", "%s", out_str(s, "name"));
    out_kv("session", "%s", out_str(s, "session"));
    out_kv("action", "%s", action_word(out_str(s, "action")));
    out_kv("cron", "%s", out_str(s, "cron"));
    out_kv("missed runs", "%s", out_str(s, "missed"));
    out_kv("next run", "%s", json_is_string(json_object_get(s, "next_run"))
                                 ? out_str(s, "next_run") : "never");
    if (json_is_string(json_object_get(s, "last_run")))
        out_kv("last run", "%s: %s (%s)", out_str(s, "last_run"), out_str(s, "last_outcome"),
               out_str(s, "last_message"));
    else
        out_kv("last run", "never");
}

static void schedule_list_print(const json_t *res)
{
    static const char *const hdr[] = { "NAME", "SESSION", "ACTION", "CRON", "MISSED",
                                       "NEXT RUN", "LAST RUN", "OUTCOME" };
    struct out_table *t = out_table_new(8, hdr);
    const json_t *s;
    size_t i;
    json_array_foreach(json_object_get(res, "schedules"), i, s) {
        const char *last = json_is_string(json_object_get(s, "last_run"))
                           ? out_str(s, "last_run") : "-";
        const char *row[] = { out_str(s, "name"), out_str(s, "session"),
                              action_word(out_str(s, "action")), out_str(s, "cron"),
                              out_str(s, "missed"),
                              json_is_string(json_object_get(s, "next_run"))
                                  ? out_str(s, "next_run") : "never",
                              last, json_is_string(json_object_get(s, "last_outcome"))
                                        ? out_str(s, "last_outcome") : "-" };
        out_table_row(t, row);
    }
    out_table_print(t, stdout);
    out_table_free(t);
}

int cmd_schedule_add(struct cli_ctx *ctx, int argc, char **argv)
{
    const char *session = NULL, *action = NULL, *cron = NULL, *missed = NULL;
    struct args_opt opts[] = {
        ARGS_OPT_VALUE("session", &session),
        ARGS_OPT_VALUE("action", &action),
        ARGS_OPT_VALUE("cron", &cron),
        ARGS_OPT_VALUE("missed", &missed),
        CLI_COMMON_OPTS(ctx), ARGS_OPT_END,
    };
    struct args a;
    json_t *res;
    int rc = cli_parse(ctx, argc, argv, opts, &a, 1, 1);
    if (rc >= 0)
        return rc;
    if (!session || !action || !cron)
        return cli_usage_error(ctx, "--%s is required", !session ? "session"
                               : !action ? "action" : "cron");
    if (missed && strcmp(missed, "run") && strcmp(missed, "skip"))
        return cli_usage_error(ctx, "--missed: '%s' is not run or skip", missed);
    json_t *p = json_pack("{s:s, s:s, s:s, s:s}", "name", a.pos[0], "session", session,
                          "action", cli_action_name(action), "cron", cron);
    if (missed)
        json_object_set_new(p, "missed", json_string(missed));
    rc = cli_call(ctx, "schedule.add", p, CLI_TIMEOUT_MS, &res);
    if (rc)
        return rc;
    if (ctx->json)
        out_json(res);
    else
        printf("schedule %s added: %s session %s at '%s'; next run %s\n", out_str(res, "name"),
               action_word(out_str(res, "action")), out_str(res, "session"),
               out_str(res, "cron"), out_str(res, "next_run"));
    json_decref(res);
    return CLI_OK;
}

int cmd_schedule_list(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "schedule.list", false, schedule_list_print);
}

int cmd_schedule_show(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "schedule.show", true, schedule_print);
}

static void schedule_removed(const json_t *res)
{
    printf("schedule %s removed\n", out_str(res, "name"));
}

int cmd_schedule_remove(struct cli_ctx *ctx, int argc, char **argv)
{
    return cli_query(ctx, argc, argv, "schedule.remove", true, schedule_removed);
}

/* Single quotes for sh; crontab(5) also treats % specially: escape it. */
static void print_quoted(const char *s)
{
    putchar('\'');
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", stdout);
        else if (*s == '%')
            fputs("\\%", stdout);
        else
            putchar(*s);
    }
    putchar('\'');
}

int cmd_schedule_print_crontab(struct cli_ctx *ctx, int argc, char **argv)
{
    struct args_opt opts[] = { CLI_COMMON_OPTS(ctx), ARGS_OPT_END };
    struct args a;
    json_t *res, *st;
    char exe[PATH_MAX];
    int rc = cli_parse(ctx, argc, argv, opts, &a, 0, 0);
    if (rc >= 0)
        return rc;
    if ((rc = cli_call(ctx, "status", NULL, CLI_TIMEOUT_MS, &st)))
        return rc;
    if ((rc = cli_call(ctx, "schedule.list", NULL, CLI_TIMEOUT_MS, &res))) {
        json_decref(st);
        return rc;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(exe + (n > 0 ? n : 0), sizeof exe - (size_t)(n > 0 ? n : 0), "%s",
             n > 0 ? "" : "pitcopy");
    if (ctx->json) {
        json_t *lines = json_array(), *s;
        size_t i;
        json_array_foreach(json_object_get(res, "schedules"), i, s) {
            char *line = NULL;
            if (asprintf(&line, "%s %s --state-dir %s session %s %s", out_str(s, "cron"), exe,
                         out_str(st, "state_dir"), action_word(out_str(s, "action")),
                         out_str(s, "session")) > 0)
                json_array_append_new(lines, json_pack("{s:s, s:s}", "schedule",
                                                       out_str(s, "name"), "line", line));
            free(line);
        }
        json_t *j = json_pack("{s:o}", "crontab", lines);
        out_json(j);
        json_decref(j);
    } else {
        const json_t *s;
        size_t i;
        printf("# pitcopy schedules of %s as crontab(5) lines.\n"
               "# pitcopy serve runs these itself: install the lines only after removing\n"
               "# the schedules there (pitcopy schedule remove NAME), or both will run.\n",
               out_str(st, "state_dir"));
        json_array_foreach(json_object_get(res, "schedules"), i, s) {
            printf("%s ", out_str(s, "cron"));
            print_quoted(exe);
            printf(" --state-dir ");
            print_quoted(out_str(st, "state_dir"));
            printf(" session %s %s   # schedule %s\n", action_word(out_str(s, "action")),
                   out_str(s, "session"), out_str(s, "name"));
        }
    }
    json_decref(res);
    json_decref(st);
    return CLI_OK;
}
