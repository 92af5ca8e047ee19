/* SPDX-License-Identifier: MIT */
/*
 * mgmt/svc.h — what the files of the `svc` driver share: one array command
 * as data, the link that carries it (SSH or REST), and the parsers.
 *
 * Role
 *   driver_svc.c builds struct svc_cmd values (svc_array.h spells them);
 *   svc_transport.c renders one as a line for `ssh` or as a REST request,
 *   sends it, and hands back the answer as JSON of one shape whatever the
 *   transport: a listing is an array of objects keyed by column header,
 *   a detailed view an object, a `mk*` {id, message}, anything else null.
 *   svc_parse.c turns `-delim` text and refusals into that.
 *
 * Invariants
 *   T1  A secret (the REST password) lives only inside svc_transport.c, for
 *       the duration of one login, and is wiped after it; it is never in a
 *       rendered command, a message, a log line or a child's argv.
 *   T2  svc_link_run returns 0 (the array ran it), -EREMOTEIO with *ref
 *       filled (the array refused it: it did not run), -ECONNABORTED (the
 *       connection was lost after the command went out: the array may or
 *       may not have run it), or another -errno (it never reached the array).
 *
 * Context
 *   The action's thread; a link is used by one thread at a time.
 */
#ifndef PITCOPY_MGMT_SVC_H
#define PITCOPY_MGMT_SVC_H

#include <stdbool.h>

#include <jansson.h>

#include "pitcopy.h"

#define SVC_MAX_ARGS 10

struct svc_arg {
    const char *flag;       /* without the dash */
    const char *value;      /* NULL: a flag without value */
};

struct svc_cmd {
    const char    *name;    /* "mkfcmap" */
    bool           listing; /* svcinfo (-delim added over SSH) rather than svctask */
    struct svc_arg args[SVC_MAX_ARGS];
    unsigned       nargs;
    const char    *obj;     /* the object, last on the line; NULL: none */
    char           num[4][24];  /* storage for numeric values */
    unsigned       nnum;
};

struct svc_refusal {
    char code[16];          /* "CMMVC5753E" */
    char text[200];         /* the array's own text after the code */
};

/* svc_transport.c */
struct svc_link;
/*
 * A link for system `system` with its catalog options (driver_svc.c's
 * configure() made them).  Connects lazily; over SSH one connection
 * carries every command of the link, its control socket in state_dir.
 * 0 or -errno with err.
 */
int   svc_link_open(const char *system, const json_t *options, const char *state_dir,
                    struct svc_link **out, struct pc_error *err);
void  svc_link_close(struct svc_link *l);
/* The exact line or request cmd becomes, for a dry run and the history. */
void  svc_link_render(struct svc_link *l, const struct svc_cmd *cmd, char *buf, size_t len);
/* T2.  *result (may be NULL) gets the answer; err says what went wrong. */
int   svc_link_run(struct svc_link *l, const struct svc_cmd *cmd, json_t **result,
                   struct svc_refusal *ref, struct pc_error *err);
/*
 * A password file pitcopy may use: a regular file owned by this user that
 * no one else can read or write.  0, or -EPERM/-ENOENT with err naming it
 * (never its contents).
 */
int   svc_password_file_ok(const char *path, struct pc_error *err);
/* Check it (above), then read the password, one line without its newline,
 * into pw (len bytes); -EINVAL for an empty or multi-line file.  The caller
 * wipes pw (explicit_bzero) after use, whatever the answer. */
int   svc_password_read(const char *path, char *pw, size_t len, struct pc_error *err);
void  svc_transport_global_init(void);
void  svc_transport_global_cleanup(void);

/* svc_parse.c */
/* A concise view (a header line, then rows) → array of objects.  -EPROTO
 * with why when a row does not fit the header. */
int   svc_parse_concise(const char *text, char delim, json_t **rows, char *why, size_t len);
/* A detailed view (key DELIM value lines) → object; a repeated key → array. */
json_t *svc_parse_detail(const char *text, char delim);
/* "<noun>, id [N], successfully created" → {id, message}; NULL if not that. */
json_t *svc_parse_created(const char *text);
/* The first CMMVCnnnnE in text and what follows it on its line.  false: none. */
bool  svc_parse_refusal(const char *text, struct svc_refusal *ref);

#endif
