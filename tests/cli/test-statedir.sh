#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the state directory: created 0700, sockets 0600, one daemon per directory, stale sockets replaced, clean stop.
. "$(dirname "$0")/lib.sh"
requires jq --version

STATE="$tmp/deep/er/state"
start_serve
[ "$(stat -c %a "$STATE")" = 700 ] || fail "state directory is $(stat -c %a "$STATE"), not 700"
[ "$(stat -c %a "$STATE/control.sock")" = 600 ] || fail "control socket is not 0600"
[ -S "$STATE/control.sock" ] || fail "no control socket"
pid=$(cat "$STATE/lock")
[ "$pid" = "$serve_pid" ] || fail "lock file holds '$pid', not the daemon's pid $serve_pid"

# A second daemon on the same directory is refused and harms nothing.
expect 1 "$PITCOPY" serve --state-dir "$STATE"
contains "$err" "another pitcopy serve (pid $serve_pid) is using state directory $STATE"
expect 0 pc status --json
check_json ".pid == $serve_pid"

# SIGINT stops it cleanly too.
kill -INT "$serve_pid"
rc=0; wait "$serve_pid" || rc=$?; serve_pid=""
[ "$rc" = 0 ] || fail "exit $rc after SIGINT"
grep -q "SIGINT: stopping" "$tmp/serve.log" || fail "no log line for SIGINT"
[ ! -e "$STATE/control.sock" ] || fail "control socket left after a clean stop"

# A daemon killed outright leaves its socket; the next one replaces it.
start_serve
kill -KILL "$serve_pid"; wait "$serve_pid" 2>/dev/null; serve_pid=""
[ -S "$STATE/control.sock" ] || fail "expected a stale socket after SIGKILL"
expect 3 pc status
contains "$err" "Connection refused"
start_serve
expect 0 pc status

# --control puts the socket elsewhere.
stop_serve
"$PITCOPY" serve --state-dir "$STATE" --control "$tmp/ctl.sock" >>"$tmp/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do [ -S "$tmp/ctl.sock" ] && break; sleep 0.1; done
[ -S "$tmp/ctl.sock" ] || fail "no socket at --control"
[ "$(stat -c %a "$tmp/ctl.sock")" = 600 ] || fail "--control socket is not 0600"
stop_serve

# A relative --state-dir still records absolute volume paths.
cd "$tmp"
STATE=rel-state
start_serve
expect 0 pc volume create v --size 4M --json
check_json ".path == \"$tmp/rel-state/volumes/v.img\""
expect 0 pc status --json
check_json ".state_dir == \"$tmp/rel-state\""
stop_serve
exit 0
