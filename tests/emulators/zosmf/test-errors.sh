#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: z/OSMF refusals — auth (401), no CSRF header (403), input that is not a job, an unknown job; jobs ending CC 0008 with the reason in SYSTSPRT (a device not online, the storage system refusing), CC 0012 without APAR OA59561, JCL ERROR, ABEND S806; and z/OSMF unreachable, then back.
. "$(dirname "$0")/lib.sh"
start_emulators

M=$((1024 * 1024))
mkvol 0100 0101 0200 $M
zosmfemu_devices 8100=0100 8101=0101 8200=0200 --offline 8300 || fail "device table"

# Auth, CSRF, not a job, no such job.
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$ZOSMF_CACERT" -u "$ZOSMF_USER:wrong" \
    "$ZOSMF_URL/zosmf/restjobs/jobs")
[ "$code" = 401 ] || fail "bad password: HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ZOSMF_CACERT" \
    -u "$ZOSMF_USER:$(cat "$ZOSMF_PASSWORD_FILE")" -X PUT -H 'Content-Type: text/plain' \
    --data-binary $'//X JOB\n//S EXEC PGM=IEFBR14\n' "$ZOSMF_URL/zosmf/restjobs/jobs")
[ "$code" = 403 ] || fail "no CSRF header: HTTP $code"
printf ' FCQUERY DEVN(X%s8100%s)\n' "'" "'" >"$tmp/notajob"
zosmf PUT /zosmf/restjobs/jobs -H 'Content-Type: text/plain' --data-binary "@$tmp/notajob"
[ "$code" = 400 ] || fail "not a job: HTTP $code: $body"
contains "$(echo "$body" | jq -r .message)" "Job input was not recognized by system as a job"
zosmf GET /zosmf/restjobs/jobs/NOSUCH/JOB09999
[ "$code" = 400 ] && [ "$(echo "$body" | jq -r .message)" = "No job found for reference: 'NOSUCH(JOB09999)'" ] ||
    fail "unknown job: $code $body"

tsojob()    # NAME COMMAND... → a job file running the commands under IKJEFT01
{
    local name=$1
    shift
    { echo "//$name JOB CLASS=A"; echo "//STEP1    EXEC PGM=IKJEFT01"
      echo "//SYSTSPRT DD SYSOUT=*"; echo "//SYSTSIN  DD *"
      printf ' %s\n' "$@"; echo "/*"; } >"$tmp/$name.jcl"
}

# A device that is not online: CC 0008, the reason in SYSTSPRT, nothing made.
tsojob BADDEV "FCESTABL SDEVN(X'8100') TDEVN(X'8300') MODE(NOCOPY)" \
    "FCESTABL SDEVN(X'8100') TDEVN(X'9999') MODE(NOCOPY)"
submit "$tmp/BADDEV.jcl"
wait_job
[ "$retcode" = "CC 0008" ] || fail "a job on an offline device ended $retcode"
out=$(spool SYSTSPRT)
contains "$out" "ANTF0310E FCESTABL DEVICE X'8300' IS NOT ONLINE TO SYSTEM SYS1"
contains "$out" "ANTF0310E FCESTABL DEVICE X'9999' IS NOT ONLINE TO SYSTEM SYS1"
contains "$(spool JESYSMSG)" "IEF142I BADDEV STEP1 - STEP WAS EXECUTED - COND CODE 0008"
contains "$(spool JESMSGLG)" '$HASP395 BADDEV   ENDED - RC=0008'
expect_dscli 0 lsflash 0100
[ "$out" = "CMUC00234I lsflash: No Flash Copy found." ] || fail "a failed job made: $out"

# The storage system refuses (a busy target): its CMUN message in the spool.
# A freeze set with one bad pair makes none of them.
tsojob BUSY "FCESTABL SDEVN(X'8100') TDEVN(X'8200') MODE(NOCOPY)" \
    "FCESTABL SDEVN(X'8101') TDEVN(X'8200') MODE(NOCOPY)" \
    "FCWITHDR SDEVN(X'8100') TDEVN(X'8200')" \
    "FCESTABL SDEVN(X'8100') TDEVN(X'8200') MODE(NOCOPY) ACTION(FREEZE)" \
    "FCESTABL SDEVN(X'8101') TDEVN(X'8100') MODE(NOCOPY) ACTION(FREEZE)" \
    "FCWITHDR DEVN(X'8100') ACTION(THAW)"
submit "$tmp/BUSY.jcl"
wait_job
[ "$retcode" = "CC 0008" ] || fail "a refused FCESTABL: $retcode"
out=$(spool SYSTSPRT)
contains "$out" "ANTF0350E FCESTABL FAILED: STORAGE SYSTEM IBM.2107-75FA120 REJECTED THE REQUEST: CMUN03006E 0101:0200: volume 0200 is already the target of FlashCopy relationship 0100:0200."
contains "$out" "ANTF0350E FCESTABL FAILED: STORAGE SYSTEM IBM.2107-75FA120 REJECTED THE REQUEST: CMUN03011E 0100:0200: volume 0100 is the target of a relationship in the same request."
expect_dscli 0 lsflash 0100
[ "$out" = "CMUC00234I lsflash: No Flash Copy found." ] || fail "a refused freeze set made: $out"

# APAR OA59561 missing: CC 0012, and nothing made; FCQUERY still answers.
zosmfemu_apar missing || fail "apar missing"
tsojob NOAPAR "FCESTABL SDEVN(X'8100') TDEVN(X'8200') MODE(NOCOPY)" "FCQUERY DEVN(X'8100')"
submit "$tmp/NOAPAR.jcl"
wait_job
[ "$retcode" = "CC 0012" ] || fail "without the APAR: $retcode"
out=$(spool SYSTSPRT)
contains "$out" "ANTF0400E FCESTABL NOT PROCESSED: IOS APAR OA59561 IS NOT APPLIED ON SYSTEM SYS1"
contains "$out" "ANTF0090I FCQUERY Formatted"
zosmfemu_apar applied || fail "apar applied"
submit "$tmp/NOAPAR.jcl"
wait_job
[ "$retcode" = "CC 0000" ] || fail "with the APAR: $retcode"

# JCL that JES would not run, a program that is not there, a TSO command that is not there.
printf '//BADJCL JOB CLASS=A\n//STEP1 EXEC PROC=FLASHIT\n' >"$tmp/badjcl.jcl"
submit "$tmp/badjcl.jcl"
wait_job
[ "$retcode" = "JCL ERROR" ] || fail "bad JCL: $retcode"
printf '//NOPGM JOB CLASS=A\n//STEP1 EXEC PGM=NOSUCHPG\n' >"$tmp/nopgm.jcl"
submit "$tmp/nopgm.jcl"
wait_job
[ "$retcode" = "ABEND S806" ] || fail "no program: $retcode"
tsojob NOCMD "FCFLASH SDEVN(X'8100')"
submit "$tmp/NOCMD.jcl"
wait_job
[ "$retcode" = "CC 0012" ] || fail "an unknown TSO command: $retcode"
contains "$(spool SYSTSPRT)" "IKJ56500I COMMAND FCFLASH NOT FOUND"

# Unreachable: nothing listens (curl: connection refused), then it is back.
zosmfemu_unreachable
rc=0; curl -s -o /dev/null --cacert "$ZOSMF_CACERT" "$ZOSMF_URL/zosmf/info" || rc=$?
[ $rc = 7 ] || fail "an unreachable z/OSMF: curl exit $rc, not 7 (connection refused)"
zosmfemu_reachable || fail "z/OSMF did not come back"
zosmf GET /zosmf/info
[ "$code" = 200 ] || fail "z/OSMF back: HTTP $code"
# Unreachable from the start: a URL, its CA and credentials, nothing listening.
( zosmfemu_start "$tmp/zosmf2" --unreachable || exit 1
  rc=0; curl -s -o /dev/null --cacert "$ZOSMF_CACERT" "$ZOSMF_URL/zosmf/info" || rc=$?
  [ $rc = 7 ] ) || fail "zosmfemu_start --unreachable: something answered at its URL"
echo PASS
