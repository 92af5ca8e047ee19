#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: injected I/O faults (io/fault.h): a target that fails its writes suspends its mapping while the source keeps every write; a source that fails gives its client the error and nothing else; a metadata file that cannot be written does the same as a failing target; each state survives a restart.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires qemu-io --version
requires qemu-img --version

uri() { echo "nbd+unix:///$1?socket=$STATE/nbd.sock"; }
io() { qemu-io -f raw "$@" >>"$tmp/io.log" 2>&1; }

# --- 1. EIO on every write to target t1 -------------------------------------
PITCOPY_FAULTS="volumes/t1.img:write:EIO" start_serve
for v in s1 t1 t2; do expect 0 pc volume create $v --size 8M; done
io -c "write -P 0x11 0 8M" "$(uri s1)" || fail "cannot fill s1"
expect 0 pc map create s1 t2 --name older --copy-rate 0
expect 0 pc map start older
expect 0 pc map create s1 t1 --name newer --copy-rate 0
expect 0 pc map start newer
# The copy-on-write for newer fails: newer is suspended, the source write
# goes through, and the old contents go to the older target instead.
io -c "write -P 0x22 0 1M" "$(uri s1)" || fail "a source write failed because its target did"
io -c "read -P 0x22 0 1M" -c "read -P 0x11 1M 7M" "$(uri s1)" || fail "the source lost a write"
expect 0 pc map show newer --json
check_json '.state == "suspended" and .target_online == false'
check_json '.invalid | test("target t1.*Input/output error")'
expect 0 pc map show older --json
check_json '.state == "copying" and .target_online == true'
io -c "read -P 0x11 0 8M" "$(uri t2)" || fail "the older target lost its point in time"
if io -c "read 0 4k" "$(uri t1)"; then fail "a suspended mapping's target is readable"; fi
grep -q "mapping newer: suspended: a write to target t1" "$tmp/serve.log" ||
    fail "no event for the suspension"
stop_serve

# It stays suspended over a restart (the failure was made durable first).
start_serve
expect 0 pc map show newer --json
check_json '.state == "suspended" and .target_online == false and (.invalid | test("t1"))'
io -c "read -P 0x11 0 8M" "$(uri t2)" || fail "older target changed over the restart"
# Stop takes it out of the chain; start gives it a new point in time.
expect 0 pc map stop newer
expect 0 pc map wait newer --state stopped --timeout 30
expect 0 pc map start newer --json
check_json '.state == "copying" and .invalid == null and .target_online == true'
io -c "read -P 0x22 0 1M" "$(uri t1)" || fail "the restarted target does not read as the source"
stop_serve

# --- 2. EIO on one source write: its client gets it, nothing else breaks ---
PITCOPY_FAULTS="volumes/s1.img:write:EIO:0:1" start_serve
if io -c "write -P 0x33 2M 64k" "$(uri s1)"; then fail "the failed source write was acknowledged"; fi
io -c "write -P 0x44 2M 64k" "$(uri s1)" || fail "the next source write failed"
io -c "read -P 0x44 2M 64k" "$(uri s1)" || fail "the source does not hold the retried write"
expect 0 pc map show newer --json
check_json '.state == "copying" and .target_online == true'
expect 0 pc map show older --json
check_json '.state == "copying" and .target_online == true'
stop_serve

# --- 3. ENOSPC on the metadata of mapping newer: same as a failing target ---
# (after 1: its recovery's superblock write at start still succeeds)
PITCOPY_FAULTS="meta/newer.pcmeta:write:ENOSPC:1" start_serve
io -c "write -P 0x55 4M 1M" "$(uri s1)" || fail "a source write failed because metadata could not be written"
expect 0 pc map show newer --json
check_json '.state == "suspended" and .target_online == false'
check_json '.invalid | test("No space left")'
# The superblock could not say so either: a marker beside it does, and a
# restart brings the mapping back suspended, still in its chain, so the
# older target that resolves through its target keeps its point in time.
[ -e "$STATE/meta/newer.pcmeta.failed" ] || fail "no marker for the unrecordable suspension"
grep -q "a marker beside it says so" "$tmp/serve.log" || fail "no log line for the marker"
stop_serve
start_serve
expect 0 pc map show newer --json
check_json '.state == "suspended" and .target_online == false and (.invalid | test("marker"))'
io -c "read -P 0x55 4M 1M" "$(uri s1)" || fail "the source lost the write"
io -c "read -P 0x11 0 8M" "$(uri t2)" || fail "the older target lost its point in time"
stop_serve

# --- 4. A state directory that cannot take metadata at start: a clear error
# naming the mapping, which is kept for the next start; the rest is served.
PITCOPY_FAULTS="meta/older.pcmeta:write:ENOSPC" start_serve
expect 0 pc status --json
check_json '[.skipped_mappings[].name] == ["older"]'
check_json '.skipped_mappings[0].reason | test("older.pcmeta: No space left on device")'
io -c "read -P 0x55 4M 1M" "$(uri s1)" || fail "the source is not served"
stop_serve
start_serve
expect 0 pc map show older --json
check_json '.state == "copying" and .target_online == true'
io -c "read -P 0x11 0 8M" "$(uri t2)" || fail "older's target lost its point in time"
stop_serve
exit 0
