#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: serve --nbd listeners: TCP and a Unix socket at once, and every start-up error (port in use, host that does not resolve, socket path too long or in no directory) refused with its reason, leaving no socket behind.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires nbdinfo --version
requires python3 --version

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
long="$tmp/$(printf 'x%.0s' $(seq 120))"     # past sun_path's 107 bytes

# A daemon on a fresh state directory must refuse to start (exit 1, within
# the timeout) and leave neither socket; the reason is then in $err.
n=0
refused() {
    local dir="$tmp/refused$((n += 1))"
    expect 1 timeout 20 "$PITCOPY" serve --state-dir "$dir" "$@"
    [ ! -e "$dir/control.sock" ] || fail "a refused daemon left $dir/control.sock"
    [ ! -e "$dir/nbd.sock" ] || fail "a refused daemon left $dir/nbd.sock"
}

# Both at once; TCP without a host is 127.0.0.1.
start_serve --nbd "unix:$tmp/n.sock" --nbd "tcp::$port"
expect 0 pc volume create v --size 4M
expect 0 pc status --json
check_json ".nbd_unix == \"$tmp/n.sock\" and .nbd_tcp == \"127.0.0.1:$port\""
expect 0 nbdinfo --size "nbd://127.0.0.1:$port/v"
[ "$out" = 4194304 ] || fail "nbdinfo over TCP: size '$out'"
expect 0 nbdinfo --size "nbd+unix:///v?socket=$tmp/n.sock"
[ "$out" = 4194304 ] || fail "nbdinfo over the Unix socket: size '$out'"
grep -q "opened from 127.0.0.1:" "$tmp/serve.log" || fail "no TCP peer in the log"

# The port is taken: refused, alone or beside a Unix socket, which is then
# removed again; the first daemon goes on serving.
refused --nbd "tcp:127.0.0.1:$port"
contains "$err" "pitcopy: cannot start the NBD server: cannot listen on 127.0.0.1 port $port: Address already in use"
refused --nbd "unix:$tmp/m.sock" --nbd "tcp::$port"
contains "$err" "cannot listen on 127.0.0.1 port $port: Address already in use"
[ ! -e "$tmp/m.sock" ] || fail "the refused daemon left its NBD socket $tmp/m.sock"
expect 0 nbdinfo --size "nbd://127.0.0.1:$port/v"
stop_serve

# A host name that cannot resolve (.invalid never does, RFC 6761).
refused --nbd "tcp:nonexistent.invalid:$port"
contains "$err" "pitcopy: cannot start the NBD server: cannot resolve NBD listen address nonexistent.invalid port $port: "

# Unix socket paths the kernel cannot take.
refused --nbd "unix:$long"
contains "$err" "pitcopy: cannot start the NBD server: NBD socket path $long is longer than 107 bytes"
refused --nbd "unix:$tmp/no/such/dir/n.sock"
contains "$err" "pitcopy: cannot start the NBD server: cannot bind the NBD socket $tmp/no/such/dir/n.sock: No such file or directory"
refused --control "$long"
contains "$err" "pitcopy: control socket path $long is longer than 107 bytes; use a shorter state directory"

# Nothing above stopped a later daemon from taking the port.
start_serve --nbd "tcp:127.0.0.1:$port"
expect 0 pc volume create w --size 8M
expect 0 nbdinfo --size "nbd://127.0.0.1:$port/w"
[ "$out" = 8388608 ] || fail "nbdinfo over TCP after the refusals: size '$out'"
stop_serve
exit 0
