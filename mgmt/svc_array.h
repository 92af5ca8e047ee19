/* SPDX-License-Identifier: MIT */
/*
 * mgmt/svc_array.h — everything the `svc` driver assumes about an IBM
 * Spectrum Virtualize array (SVC, Storwize, FlashSystem), in one place.
 *
 * Role
 *   Command spellings, the flags the driver sends, the columns it reads
 *   (by header name, never by position), the states it acts on, how a
 *   success and a refusal look on each transport, and what the CMMVC codes
 *   it meets mean.  The source of each is ../shared/reference/
 *   spectrum-virtualize.md (section numbers below); what the reference
 *   marks UNVERIFIED is marked so here too.  If an array answers otherwise,
 *   this is the file to change.
 *
 * Invariants
 *   S1  Nothing else in mgmt/ spells an array command, column, state or
 *       CMMVC code: driver_svc.c, svc_transport.c and svc_parse.c use these
 *       names.
 *   S2  Every name the driver puts on a command line matches
 *       SVC_NAME_CHARS (§1 naming rules), so a line needs no quoting and no
 *       name can smuggle shell syntax to the array.
 *
 * Context
 *   Constants and one lookup; no state.
 */
#ifndef PITCOPY_MGMT_SVC_ARRAY_H
#define PITCOPY_MGMT_SVC_ARRAY_H

#include <errno.h>
#include <stddef.h>
#include <string.h>

/* ---- Transports (§3, §4) --------------------------------------------- */

/* SSH: `svctask CMD ...` changes, `svcinfo CMD ...` lists (§4). */
#define SVC_PREFIX_TASK     "svctask"
#define SVC_PREFIX_INFO     "svcinfo"
/* Listings are asked for with this delimiter and parsed by header (§1.7). */
#define SVC_DELIM           ':'
#define SVC_DELIM_FLAG      "delim"
#define SVC_DEFAULT_SSH_PORT 22
/* REST: POST BASE/rest/CMD[/OBJ], JSON flags; auth at BASE/rest/auth (§3.1). */
#define SVC_REST_PREFIX     "/rest"
#define SVC_REST_AUTH       "auth"
#define SVC_REST_USER_HDR   "X-Auth-Username"
#define SVC_REST_PASS_HDR   "X-Auth-Password"
#define SVC_REST_TOKEN_HDR  "X-Auth-Token"
#define SVC_REST_TOKEN_KEY  "token"
/* HTTP answers (§3.3): 500 = the command refused (body `error code: 1,
 * error text: CMMVC...`); 404 = unknown command; 403 = bad credentials or
 * token (UNVERIFIED: the reference's suggestion, what the emulator does). */
#define SVC_HTTP_OK         200
#define SVC_HTTP_REFUSED    500
#define SVC_HTTP_UNKNOWN    404
#define SVC_HTTP_AUTH       403
#define SVC_HTTP_UNAUTH     401   /* UNVERIFIED; treated like 403 */
/* `mk*` print "<noun>, id [N], successfully created" (§0, §1.1). */
#define SVC_CREATED_TEXT    "successfully created"
/* An ssh exit status this high is the ssh client's own failure. */
#define SVC_SSH_FAILED      255

/* ---- Names (§1, S2) --------------------------------------------------- */

#define SVC_NAME_MAX        63
#define SVC_NAME_FIRST      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
#define SVC_NAME_CHARS      SVC_NAME_FIRST "0123456789.-"

static inline int svc_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= SVC_NAME_MAX && strchr(SVC_NAME_FIRST, s[0]) &&
           strspn(s, SVC_NAME_CHARS) == n;
}

/* ---- Commands and flags (§1) ----------------------------------------- */

#define SVC_LSVDISK         "lsvdisk"
#define SVC_LSFCMAP         "lsfcmap"
#define SVC_LSFCGRP         "lsfcconsistgrp"
#define SVC_MKFCGRP         "mkfcconsistgrp"
#define SVC_RMFCGRP         "rmfcconsistgrp"
#define SVC_PRESTARTFCGRP   "prestartfcconsistgrp"
#define SVC_STARTFCGRP      "startfcconsistgrp"
#define SVC_STOPFCGRP       "stopfcconsistgrp"
#define SVC_MKFCMAP         "mkfcmap"
#define SVC_CHFCMAP         "chfcmap"
#define SVC_RMFCMAP         "rmfcmap"
#define SVC_STARTFCMAP      "startfcmap"
#define SVC_STOPFCMAP       "stopfcmap"

#define SVC_F_BYTES         "bytes"
#define SVC_F_FILTER        "filtervalue"     /* attr=value; `*` a wildcard (§5) */
#define SVC_F_NAME          "name"
#define SVC_F_SOURCE        "source"
#define SVC_F_TARGET        "target"
#define SVC_F_CONSISTGRP    "consistgrp"
#define SVC_F_COPYRATE      "copyrate"        /* 0-150; 0 = no background copy */
#define SVC_F_INCREMENTAL   "incremental"     /* fixed at mkfcmap */
#define SVC_F_FORCE         "force"
#define SVC_F_PREP          "prep"
#define SVC_F_RESTORE       "restore"

/* ---- Columns read, by header name (§1.7, §1.9) ------------------------ */

#define SVC_C_ID            "id"
#define SVC_C_NAME          "name"
#define SVC_C_STATUS        "status"
#define SVC_C_CAPACITY      "capacity"        /* bytes with -bytes */
#define SVC_C_SOURCE_NAME   "source_vdisk_name"
#define SVC_C_TARGET_NAME   "target_vdisk_name"
#define SVC_C_GROUP_NAME    "group_name"
#define SVC_C_PROGRESS      "progress"
#define SVC_C_COPY_RATE     "copy_rate"
#define SVC_C_START_TIME    "start_time"      /* YYMMDDHHMMSS, "" never started */
#define SVC_C_RESTORING     "restoring"

/* ---- States (§2.2) ---------------------------------------------------- */

#define SVC_S_IDLE          "idle_or_copied"
#define SVC_S_PREPARING     "preparing"
#define SVC_S_PREPARED      "prepared"
#define SVC_S_COPYING       "copying"
#define SVC_S_STOPPING      "stopping"
#define SVC_S_STOPPED       "stopped"
#define SVC_S_SUSPENDED     "suspended"
#define SVC_S_EMPTY         "empty"           /* a group without mappings */

/* Waits (the array moves through preparing and stopping on its own). */
#define SVC_WAIT_S          600
#define SVC_POLL_MIN_MS     100
#define SVC_POLL_MAX_MS     2000

/* ---- CMMVC codes (§1.12, §4) ----------------------------------------- */

struct svc_code {
    const char *code;
    int         err;        /* -errno the driver reports it as */
    const char *meaning;    /* short: messages have 256 bytes */
};

/*
 * What a refusal means; NULL for a code not in the table (the array's own
 * text is shown then).  Codes whose meaning the reference marks UNVERIFIED
 * say so.
 */
static inline const struct svc_code *svc_code_find(const char *code)
{
    static const struct svc_code codes[] = {
        { "CMMVC5701E", -EINVAL,  "no object was given" },
        { "CMMVC5707E", -EINVAL,  "a parameter is invalid or duplicated" },
        { "CMMVC5709E", -EINVAL,  "a parameter is not supported on this code level" },
        /* UNVERIFIED: also "already the target of a mapping" (emulator's choice). */
        { "CMMVC5753E", -ENOENT,  "the object does not exist or is not a suitable candidate" },
        { "CMMVC5754E", -ENOENT,  "the object does not exist" },
        { "CMMVC5767E", -EINVAL,  "a parameter is invalid or missing" },
        { "CMMVC5804E", -ENOENT,  "an object in the command does not exist" },
        { "CMMVC5903E", -EBUSY,   "the mapping or group is in another state" },
        { "CMMVC5907E", -EBUSY,   "the mapping or group is already copying" },
        { "CMMVC5912E", -EBUSY,   "the mapping or group is already stopped" },
        { "CMMVC5924E", -EINVAL,  "source and target are different sizes" },
        { "CMMVC6035E", -EEXIST,  "the object already exists" },
        { "CMMVC6303E", -EINVAL,  "source and target are the same volume" },
        { "CMMVC6466E", -EEXIST,  "an identical mapping already exists" },
        { "CMMVC6527E", -EINVAL,  "the name is not valid" },
        { "CMMVC7205E", -ENOSYS,  "the command is not supported" },
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(codes[i].code, code) == 0)
            return &codes[i];
    return NULL;
}

#endif
