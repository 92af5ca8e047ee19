#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: incremental mappings over real clients: map show counts changed grains, nbdinfo reads them as the meta context pitcopy:changed[:MAP], a restart copies only those and survives a daemon restart.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires qemu-io --version
requires nbdinfo --version

start_serve
sock="$STATE/nbd.sock"
uri() { echo "nbd+unix:///$1?socket=$sock"; }
qio() {
    local name=$1 output
    shift
    output=$(qemu-io -f raw "$@" "$(uri "$name")" 2>&1) || fail "qemu-io $* on $name: $output"
    case "$output" in *"verification failed"*|*"failed:"*|*rror*)
        fail "qemu-io $* on $name: $output" ;; esac
}
# The changed extents nbdinfo reports for CONTEXT on VOLUME, as "offset+length ...".
changed() {
    nbdinfo --json --map="$2" "$(uri "$1")" >"$tmp/map" 2>"$tmp/maperr" ||
        fail "nbdinfo --map=$2 on $1: $(cat "$tmp/maperr")"
    jq -r '[.[] | select(.type == 1) | "\(.offset)+\(.length)"] | join(" ")' "$tmp/map"
}

expect 0 pc volume create src --size 16M
expect 0 pc volume create tgt --size 16M
qio src -c "write -P 0xaa 0 16M"
expect 0 pc map create src tgt --name inc --incremental --copy-rate unlimited
expect 0 pc map show inc --json
check_json '.incremental == true and .grains_changed == null'
# Never started: nothing can vouch for any grain, so all of it reads changed.
[ "$(changed src pitcopy:changed:inc)" = "0+16777216" ] || fail "before a start: $(changed src pitcopy:changed:inc)"

expect 0 pc map start inc
expect 0 pc map wait inc --timeout 60 --json
check_json '.state == "idle_or_copied" and .complete == true and .grains_changed == 0'
[ "$(changed src pitcopy:changed)" = "" ] || fail "changes right after the copy"

qio src -c "write -P 0xbb 1M 4k"           # grain 16
qio tgt -c "write -P 0xcc 8M 64k"          # grain 128
expect 0 pc map show inc --json
check_json '.grains_changed == 2'
expect 0 pc map show inc
contains "$out" "grains changed"
[ "$(changed src pitcopy:changed:inc)" = "1048576+65536 8388608+65536" ] ||
    fail "source: $(changed src pitcopy:changed:inc)"
[ "$(changed tgt pitcopy:changed)" = "1048576+65536 8388608+65536" ] ||
    fail "target: $(changed tgt pitcopy:changed)"
nbdinfo "$(uri src)" >"$tmp/info" 2>&1 || fail "nbdinfo: $(cat "$tmp/info")"
grep -q "pitcopy:changed:inc" "$tmp/info" || fail "contexts not listed: $(cat "$tmp/info")"

# The changes survive an orderly restart of the daemon.
stop_serve
start_serve
expect 0 pc map show inc --json
check_json '.grains_changed == 2 and .complete == true'

# The restart copies the two changed grains only.
expect 0 pc map set inc --copy-rate 0
expect 0 pc map start inc
expect 0 pc map show inc --json
check_json '.state == "copying" and .grains_split == 254 and .grains_changed == 0'
qio tgt -c "read -P 0xaa 0 1M" -c "read -P 0xbb 1M 4k" -c "read -P 0xaa 8M 64k"
expect 0 pc map set inc --copy-rate unlimited
expect 0 pc map wait inc --timeout 60 --json
check_json '.state == "idle_or_copied" and .complete == true'

# A second incremental mapping of src: each has its own qualified context,
# and the plain name, now ambiguous on src, is not offered there.
expect 0 pc volume create tgt2 --size 16M
expect 0 pc map create src tgt2 --name inc2 --incremental
if nbdinfo --map=pitcopy:changed "$(uri src)" >/dev/null 2>&1; then
    fail "pitcopy:changed offered on a volume in two incremental mappings"
fi
[ "$(changed src pitcopy:changed:inc)" = "" ] || fail "inc after restart: $(changed src pitcopy:changed:inc)"
[ "$(changed src pitcopy:changed:inc2)" = "0+16777216" ] || fail "inc2 never started"
stop_serve
exit 0
