# SPDX-License-Identifier: MIT
# tests/emulators/zosmf/lib.sh — what the z/OSMF emulator tests share
# (sourced): everything of ../ds8000/lib.sh, plus
#
#   start_emulators [ZOSMF_START_ARGS]  the DS8000 emulator, then z/OSMF
#   zosmf METHOD PATH [CURL_ARGS]       a request with basic auth and the
#                                       CSRF header; $code, $body
#   submit JCL_FILE                     PUT the JCL; $jobname, $jobid
#   wait_job                            poll until OUTPUT (10 s); $retcode
#   spool DDNAME                        the text of the job's first DDNAME
set -u
. "$(dirname "${BASH_SOURCE[0]}")/../ds8000/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/emulator.sh"
jobname="" jobid="" retcode=""

_zosmf_cleanup()
{
    zosmfemu_stop "$tmp/zosmf"
    _ds8k_cleanup
}
trap _zosmf_cleanup EXIT

start_emulators()
{
    start_emulator
    zosmfemu_start "$tmp/zosmf" "$@" || fail "the z/OSMF emulator did not start"
}

zosmf()
{
    local method=$1 path=$2
    shift 2
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$ZOSMF_CACERT" -X "$method" \
        -u "$ZOSMF_USER:$(cat "$ZOSMF_PASSWORD_FILE")" -H 'X-CSRF-ZOSMF-HEADER: true' \
        "$@" "$ZOSMF_URL$path") || code=000
    body=$(cat "$tmp/body" 2>/dev/null)
}

submit()
{
    zosmf PUT /zosmf/restjobs/jobs -H 'Content-Type: text/plain' --data-binary "@$1"
    [ "$code" = 201 ] || fail "submit: HTTP $code: $body"
    jobname=$(echo "$body" | jq -r .jobname)
    jobid=$(echo "$body" | jq -r .jobid)
}

wait_job()
{
    local status=""
    for _ in $(seq 200); do
        zosmf GET "/zosmf/restjobs/jobs/$jobname/$jobid"
        status=$(echo "$body" | jq -r .status)
        [ "$status" = OUTPUT ] && break
        sleep 0.05
    done
    [ "$status" = OUTPUT ] || fail "job $jobname($jobid) still $status after 10 s"
    retcode=$(echo "$body" | jq -r .retcode)
}

spool()
{
    local id
    zosmf GET "/zosmf/restjobs/jobs/$jobname/$jobid/files"
    id=$(echo "$body" | jq -r --arg dd "$1" '[.[] | select(.ddname == $dd)][0].id')
    [ "$id" != null ] || fail "job $jobname($jobid) has no $1: $body"
    zosmf GET "/zosmf/restjobs/jobs/$jobname/$jobid/files/$id/records"
    [ "$code" = 200 ] || fail "spool $1: HTTP $code"
    echo "$body"
}
