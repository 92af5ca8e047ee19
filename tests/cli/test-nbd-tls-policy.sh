#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: serve's TLS options: contradictions are usage errors (exit 2); plain NBD on a TCP address other hosts can reach (0.0.0.0, ::) is refused at start unless TLS is required or --insecure-tcp says so; loopback needs neither; status shows the TLS mode.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires nbdinfo --version
requires python3 --version

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
umask 077
printf 'alice:%s\n' 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f > "$tmp/keys.psk"

# Usage errors: nothing starts.
expect 2 pc serve --tls maybe
contains "$err" "--tls: 'maybe' is not off, on or require"
expect 2 pc serve --tls require
contains "$err" "--tls require needs --tls-creds DIR or --tls-psk FILE"
expect 2 pc serve --tls on
contains "$err" "--tls on needs --tls-creds DIR or --tls-psk FILE"
expect 2 pc serve --tls-creds "$tmp" --tls-psk "$tmp/keys.psk"
contains "$err" "--tls-creds and --tls-psk: give one or the other"
expect 2 pc serve --tls off --tls-psk "$tmp/keys.psk"
contains "$err" "--tls off with --tls-psk: drop one of them"
expect 2 pc serve --tls-verify-peer
contains "$err" "--tls-verify-peer checks X.509 client certificates: it needs --tls-creds DIR"
expect 2 pc serve --tls-verify-peer --tls-psk "$tmp/keys.psk"
contains "$err" "it needs --tls-creds DIR"
[ ! -e "$STATE" ] || fail "a usage error created the state directory"

# Beyond loopback without TLS: refused at start, saying what to do.
n=0
refused() {
    local dir="$tmp/refused$((n += 1))"
    expect 1 timeout 20 "$PITCOPY" serve --state-dir "$dir" "$@"
    [ ! -e "$dir/control.sock" ] || fail "a refused daemon left $dir/control.sock"
    [ ! -e "$dir/nbd.sock" ] || fail "a refused daemon left $dir/nbd.sock"
}
refused --nbd "tcp:0.0.0.0:$port"
contains "$err" "pitcopy: cannot start the NBD server: refusing to serve NBD without TLS on 0.0.0.0 port $port, which other hosts can reach: give --tls-creds DIR or --tls-psk FILE, or --insecure-tcp to allow plain NBD on a trusted network"
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::", 0))' 2>/dev/null; then
    refused --nbd "tcp:[::]:$port"
    contains "$err" "refusing to serve NBD without TLS on :: port $port"
fi
# TLS optional is not enough there: a client could skip it.
refused --nbd "tcp:0.0.0.0:$port" --tls-psk "$tmp/keys.psk" --tls on
contains "$err" "with TLS optional (--tls on): use --tls require, or --insecure-tcp"

# Required TLS, or the explicit escape, may listen there.
start_serve --nbd "tcp:0.0.0.0:$port" --tls-psk "$tmp/keys.psk"
expect 0 pc status --json
check_json '.nbd_tls == "required"'
expect 0 pc status
contains "$out" "TLS required"
expect 0 pc volume create v --size 4M
expect 0 nbdinfo --size "nbds://alice@127.0.0.1:$port/v?tls-psk-file=$tmp/keys.psk"
[ "$out" = 4194304 ] || fail "nbdinfo over TLS on 0.0.0.0: '$out'"
stop_serve
start_serve --nbd "tcp:0.0.0.0:$port" --insecure-tcp
expect 0 pc status --json
check_json '.nbd_tls == "off"'
expect 0 nbdinfo --size "nbd://127.0.0.1:$port/v"
[ "$out" = 4194304 ] || fail "nbdinfo with --insecure-tcp: '$out'"
stop_serve
# Loopback needs neither, by address or by name.
start_serve --nbd "tcp:localhost:$port"
expect 0 nbdinfo --size "nbd://127.0.0.1:$port/v"
stop_serve
exit 0
