# SPDX-License-Identifier: MIT
# tests/cli/lib.sh — helpers for the CLI and daemon script tests (sourced).
#
#   requires CMD...      exit 77 (skip) unless CMD runs
#   start_serve [ARGS]   start `pitcopy serve --state-dir $STATE` in the
#                        background, wait until it answers; log in $STATE.log
#   stop_serve           SIGTERM it and wait; fails if it did not exit 0
#   pc ARGS              the CLI against $STATE
#   expect RC CMD...     run CMD, fail unless it exits RC; output in $out/$err
#   fail MSG             print MSG and the daemon's log, exit 1
#
# Every test gets a private $tmp (removed at exit) and $STATE=$tmp/state;
# the daemon is killed at exit whatever happens.
set -u
: "${PITCOPY_BUILD:=build}"
case "$PITCOPY_BUILD" in /*) ;; *) PITCOPY_BUILD="$(pwd)/$PITCOPY_BUILD" ;; esac
PITCOPY="$PITCOPY_BUILD/pitcopy"
tmp=$(cd "$(mktemp -d "${TMPDIR:-/tmp}/pitcopy-cli.XXXXXX")" && pwd -P)
STATE="$tmp/state"
serve_pid=""
out="" err=""

cleanup() {
    if [ -n "$serve_pid" ]; then
        kill -KILL "$serve_pid" 2>/dev/null
        wait "$serve_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

requires() {
    if ! "$@" >/dev/null 2>&1; then
        echo "requires: $* failed: skipping"
        exit 77
    fi
}

fail() {
    echo "FAIL: $*"
    if [ -f "$tmp/serve.log" ]; then
        echo "--- daemon log:"
        cat "$tmp/serve.log"
    fi
    exit 1
}

[ -x "$PITCOPY" ] || { echo "no $PITCOPY: build it first"; exit 1; }

start_serve() {
    "$PITCOPY" serve --state-dir "$STATE" "$@" >>"$tmp/serve.log" 2>&1 &
    serve_pid=$!
    for _ in $(seq 100); do
        if [ -S "$STATE/control.sock" ] && "$PITCOPY" status --state-dir "$STATE" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$serve_pid" 2>/dev/null || fail "pitcopy serve exited at start"
        sleep 0.1
    done
    fail "pitcopy serve did not answer within 10 s"
}

stop_serve() {
    [ -n "$serve_pid" ] || return 0
    kill -TERM "$serve_pid"
    local rc=0
    wait "$serve_pid" || rc=$?
    serve_pid=""
    [ "$rc" = 0 ] || fail "pitcopy serve exited $rc after SIGTERM"
}

pc() {
    "$PITCOPY" --state-dir "$STATE" "$@"
}

expect() {
    local want=$1 rc=0
    shift
    "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    if [ "$rc" != "$want" ]; then
        echo "command: $*"
        echo "stdout: $out"
        echo "stderr: $err"
        fail "exit $rc, expected $want"
    fi
}

# jq -e on $out: fail unless FILTER is true.
check_json() {
    echo "$out" | jq -e "$1" >/dev/null || { echo "$out"; fail "JSON check failed: $1"; }
}

contains() {
    case "$1" in *"$2"*) return 0 ;; esac
    fail "expected to find '$2' in: $1"
}
