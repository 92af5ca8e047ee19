# SPDX-License-Identifier: MIT
# tests/emulators/svc/driver-lib.sh — what the `svc` driver tests share
# (sourced after lib.sh's start_emulator has run).
#
#   start_mgmt           a second `pitcopy serve` (the management host, state
#                        in $MGMT) whose sessions drive the emulated array
#   pcm ARGS             the CLI against it
#   expect_pcm RC ARGS   run pcm ARGS, fail unless it exits RC; $out, $err
#   check_json FILTER    jq -e FILTER on $out
#   add_ssh_system NAME [ARGS]   `system add NAME --type svc` over SSH
#   add_rest_system NAME [ARGS]  the same over REST
#   fcmaps               the array's mapping names, one a line (lsfcmap)
#   fcgroups             the array's group names
#   make_vdisks SIZE_MB NAME...
MGMT="$tmp/mgmt"
mgmt_pid=""

_mgmt_cleanup()
{
    if [ -n "$mgmt_pid" ]; then
        kill -KILL "$mgmt_pid" 2>/dev/null
        wait "$mgmt_pid" 2>/dev/null
    fi
    _svc_cleanup
}
trap _mgmt_cleanup EXIT

start_mgmt()
{
    "$PITCOPY_BUILD/pitcopy" serve --state-dir "$MGMT" >>"$tmp/mgmt.log" 2>&1 &
    mgmt_pid=$!
    for _ in $(seq 100); do
        [ -S "$MGMT/control.sock" ] && pcm status >/dev/null 2>&1 && return 0
        kill -0 "$mgmt_pid" 2>/dev/null || fail "the management pitcopy serve exited at start"
        sleep 0.1
    done
    fail "the management pitcopy serve did not answer within 10 s"
}

pcm()
{
    "$PITCOPY_BUILD/pitcopy" --state-dir "$MGMT" "$@"
}

expect_pcm()
{
    local want=$1 rc=0
    shift
    pcm "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    if [ "$rc" != "$want" ]; then
        echo "command: pitcopy $*"; echo "stdout: $out"; echo "stderr: $err"
        echo "--- management daemon log:"; tail -n 30 "$tmp/mgmt.log"
        fail "exit $rc, expected $want"
    fi
}

check_json()
{
    echo "$out" | jq -e "$1" >/dev/null || { echo "$out"; fail "JSON check failed: $1"; }
}

add_ssh_system()
{
    local name=$1
    shift
    expect_pcm 0 system add "$name" --type svc --host "$SVCEMU_HOST" --port "$SVCEMU_SSH_PORT" \
        --user "$SVCEMU_SSH_USER" --key "$SVCEMU_SSH_KEY" --known-hosts "$SVCEMU_KNOWN_HOSTS" "$@"
}

add_rest_system()
{
    local name=$1
    shift
    expect_pcm 0 system add "$name" --type svc --rest "$SVCEMU_REST_URL" \
        --user "$SVCEMU_REST_USER" --password-file "$SVCEMU_PASSWORD_FILE" \
        --cacert "$SVCEMU_CACERT" "$@"
}

fcmaps()
{
    expect_svc 0 'svcinfo lsfcmap -delim !'
    echo "$out" | awk -F'!' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "name") c = i; next }
                             { print $c }'
}

fcgroups()
{
    expect_svc 0 'svcinfo lsfcconsistgrp -delim !'
    echo "$out" | awk -F'!' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "name") c = i; next }
                             { print $c }'
}

make_vdisks()
{
    local size=$1 v
    shift
    for v in "$@"; do
        expect_svc 0 "svctask mkvdisk -name $v -mdiskgrp Pool0 -size $size -unit mb"
    done
}
