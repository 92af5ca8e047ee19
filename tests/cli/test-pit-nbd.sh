#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: a point-in-time copy end to end: volumes made by the CLI, data written and read over NBD with qemu-io, source and target alike exports.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires qemu-io --version

start_serve
sock="$STATE/nbd.sock"
[ "$(stat -c %a "$sock")" = 600 ] || fail "NBD socket is not 0600"

# qemu-io -c CMD on export NAME; fail on any error or pattern mismatch.
qio() {
    local name=$1 output
    shift
    output=$(qemu-io -f raw "$@" "nbd+unix:///$name?socket=$sock" 2>&1) ||
        fail "qemu-io $* on $name: $output"
    case "$output" in *"verification failed"*|*"failed:"*|*rror*)
        fail "qemu-io $* on $name: $output" ;; esac
}

expect 0 pc volume create src --size 16M
expect 0 pc volume create tgt --size 16M
qio src -c "write -P 0xaa 0 16M"

expect 0 pc map create src tgt --name snap --copy-rate 0
expect 0 pc map start snap
# After the point in time: the source changes, the target does not.
qio src -c "write -P 0xbb 0 8M"
qio src -c "read -P 0xbb 0 8M" -c "read -P 0xaa 8M 8M"
qio tgt -c "read -P 0xaa 0 16M"
# The target is writable on its own.
qio tgt -c "write -P 0xcc 12M 1M"
qio tgt -c "read -P 0xaa 0 12M" -c "read -P 0xcc 12M 1M" -c "read -P 0xaa 13M 3M"
expect 0 pc map show snap --json
check_json '.state == "copying" and .grains_split > 0 and .complete == false'

# Let the background copy finish: the target is then a whole image of its own.
expect 0 pc map set snap --copy-rate unlimited
expect 0 pc map wait snap --timeout 60 --json
check_json '.state == "idle_or_copied" and .complete == true'
expect 0 pc map delete snap
qio src -c "write -P 0xdd 0 16M"
qio tgt -c "read -P 0xaa 0 12M" -c "read -P 0xcc 12M 1M" -c "read -P 0xaa 13M 3M"

# A target of a prepared mapping is offline over NBD too.
expect 0 pc map create src tgt --name again
expect 0 pc map prepare again
if qemu-io -f raw -c "read 0 4k" "nbd+unix:///tgt?socket=$sock" 2>&1 | grep -q "read 4096/4096"; then
    fail "the target of a prepared mapping was readable"
fi
expect 0 pc map start again
qio tgt -c "read -P 0xdd 0 16M"
stop_serve
exit 0
