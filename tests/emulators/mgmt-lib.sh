# SPDX-License-Identifier: MIT
# tests/emulators/mgmt-lib.sh — the management host the driver tests share
# (sourced by svc/driver-lib.sh and ds8000/driver-lib.sh, after their
# lib.sh).  An emulator's `pitcopy serve` is the array's; the driver under
# test runs in a second one, the management host.
#
#   start_mgmt           that second `pitcopy serve`, its state in $MGMT
#   mgmt_stop            kill it (the driver-lib's cleanup calls this)
#   pcm ARGS             the CLI against it
#   expect_pcm RC ARGS   run pcm ARGS, fail unless it exits RC; $out, $err
#   check_json FILTER    jq -e FILTER on $out
MGMT="$tmp/mgmt"
mgmt_pid=""

mgmt_stop()
{
    if [ -n "$mgmt_pid" ]; then
        kill -KILL "$mgmt_pid" 2>/dev/null
        wait "$mgmt_pid" 2>/dev/null
        mgmt_pid=""
    fi
    return 0
}

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
