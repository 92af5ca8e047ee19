#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: serve --nbd tcp:[::1]:PORT serves a client there, names the peer in brackets, and refuses the port while it holds it.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires nbdinfo --version
# ::1 must exist here (a container may have no IPv6 at all).
requires python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))'

port=$(python3 -c 'import socket; s = socket.socket(socket.AF_INET6); s.bind(("::1", 0)); print(s.getsockname()[1])')
start_serve --nbd "tcp:[::1]:$port"
expect 0 pc volume create v --size 4M
expect 0 pc status --json
check_json ".nbd_tcp == \"[::1]:$port\" and .nbd_unix == null"
expect 0 nbdinfo --size "nbd://[::1]:$port/v"
[ "$out" = 4194304 ] || fail "nbdinfo over IPv6: size '$out'"
grep -q "opened from \[::1\]:[0-9]" "$tmp/serve.log" || fail "the IPv6 peer is not named [::1]:PORT in the log"
expect 1 timeout 20 "$PITCOPY" serve --state-dir "$tmp/state2" --nbd "tcp:[::1]:$port"
contains "$err" "pitcopy: cannot start the NBD server: cannot listen on ::1 port $port: Address already in use"
expect 0 nbdinfo --size "nbd://[::1]:$port/v"
stop_serve
exit 0
