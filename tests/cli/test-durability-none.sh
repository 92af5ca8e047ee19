#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: serve --durability none: an orderly stop still saves every mapping with its progress; after kill -9 a mapping whose bits were never persisted comes back stopped and says why, and one that needs no bits comes back as it was.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires qemu-io --version

uri() { echo "nbd+unix:///$1?socket=$STATE/nbd.sock"; }
io() { qemu-io -f raw "$@" >>"$tmp/io.log" 2>&1; }

start_serve --durability none
for v in s t u; do expect 0 pc volume create $v --size 4M; done
io -c "write -P 0x61 0 4M" "$(uri s)" || fail "cannot fill s"
expect 0 pc map create s t --name live --copy-rate 0
expect 0 pc map create s u --name idle --copy-rate 0
expect 0 pc map start live
io -c "write -P 0x62 0 1M" "$(uri s)" || fail "source write failed"
expect 0 pc map show live --json
check_json '.durability == "none" and .grains_split == 16'
stop_serve

# Orderly: the bits were written at shutdown, so the mapping is trusted.
start_serve --durability none
expect 0 pc map show live --json
check_json '.state == "copying" and .grains_split == 16 and .invalid == null'
io -c "read -P 0x61 0 4M" "$(uri t)" || fail "the target lost its point in time over an orderly restart"

# kill -9: nothing was synced since the restart, so it cannot be vouched for.
io -c "write -P 0x63 2M 1M" "$(uri s)" || fail "source write failed"
kill -KILL "$serve_pid"
wait "$serve_pid" 2>/dev/null
serve_pid=""
start_serve --durability none
expect 0 pc map show live --json
check_json '.state == "stopped" and .target_online == false'
check_json '.invalid | test("durability was none and the daemon did not shut down cleanly")'
[ -e "$STATE/meta/live.pcmeta.corrupt" ] || fail "the untrusted metadata was not kept aside"
expect 0 pc map show idle --json
check_json '.state == "idle_or_copied" and .invalid == null'
io -c "read -P 0x62 0 1M" -c "read -P 0x61 1M 1M" -c "read -P 0x63 2M 1M" "$(uri s)" ||
    fail "the source lost writes"
stop_serve
exit 0
