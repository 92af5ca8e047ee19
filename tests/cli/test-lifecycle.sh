#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: volume and mapping lifecycle through the CLI with --json: create, list, show, start, wait, stop, delete.
. "$(dirname "$0")/lib.sh"
requires jq --version

start_serve

expect 0 pc volume create src --size 16M --json
check_json '.name == "src" and .size == 16777216 and .target_of == null and .source_of == []'
check_json ".path == \"$STATE/volumes/src.img\""
[ -f "$STATE/volumes/src.img" ] || fail "no default backing file"
[ "$(stat -c %s "$STATE/volumes/src.img")" = 16777216 ] || fail "backing file has the wrong size"
# Created sparse.
[ "$(stat -c %b "$STATE/volumes/src.img")" -lt 64 ] || fail "backing file is not sparse"

# A relative --file is the caller's, made absolute.
mkdir "$tmp/files"
cd "$tmp/files"
expect 0 "$PITCOPY" --state-dir "$STATE" volume create tgt --size 16384K --file tgt.img --json
cd - >/dev/null
out=$(pc volume show tgt --json)
check_json ".path == \"$tmp/files/tgt.img\" and .size == 16777216"

expect 0 pc volume list --json
check_json '[.volumes[].name] == ["src", "tgt"]'
expect 0 pc volume list
contains "$out" "NAME"
contains "$out" "16 MiB"

expect 0 pc map create src tgt --name nightly --grain 256K --copy-rate 0 --clean-rate unlimited --json
check_json '.name == "nightly" and .state == "idle_or_copied" and .grain_size == 262144'
check_json '.copy_rate == 0 and .clean_rate == "unlimited" and .grains == 64 and .progress == 0'
expect 0 pc volume show src --json
check_json '.source_of == ["nightly"]'
expect 0 pc volume show tgt --json
check_json '.target_of == "nightly"'

# An unnamed mapping gets a name.
expect 0 pc volume create other --size 16M
expect 0 pc volume create other2 --size 16M
expect 0 pc map create other other2 --json
check_json '.name | test("^fcmap[0-9]+$")'
unnamed=$(echo "$out" | jq -r .name)

expect 0 pc map prepare nightly --json
check_json '.state == "prepared" and .target_online == false'
expect 0 pc map start nightly --json
check_json '.state == "copying" and .target_online == true and .started_at != null'
check_json '.start_hold_ns > 0 and .start_hold_ns < 1000000000'
expect 0 pc map show nightly
contains "$out" "copying"
contains "$out" "writes held"

# copy rate 0: the wait for the end of the copy times out, and says where it is.
expect 1 pc map wait nightly --timeout 0.5
contains "$err" "pitcopy: map wait nightly: mapping nightly is still copying"
expect 0 pc map set nightly --copy-rate unlimited --json
check_json '.copy_rate == "unlimited"'
expect 0 pc map wait nightly --timeout 30 --json
check_json '.state == "idle_or_copied" and .progress == 100 and .complete == true'
check_json '.grains_split == .grains'
# Not a terminal: progress as plain lines.
expect 0 pc map wait nightly
contains "$out" "mapping nightly is idle_or_copied (100%)"

expect 0 pc map list --json
check_json '(.mappings | length) == 2 and .mappings[0].name == "nightly"'
expect 0 pc map list
contains "$out" "nightly"
contains "$out" "100%"

# Start again with no background copy, stop: cleaning ends in stopped.
expect 0 pc map set nightly --copy-rate 0
expect 0 pc map start nightly
expect 0 pc map stop nightly --json
expect 0 pc map wait nightly --state stopped --timeout 30 --json
check_json '.state == "stopped" and .target_online == false'

expect 0 pc status --json
check_json '.volumes == 4 and .mappings == 2 and .states.stopped == 1 and .states.idle_or_copied == 1'
check_json '.version != null and .workers > 0 and (.io_backend | type) == "string"'
check_json ".state_dir == \"$STATE\" and .nbd_unix == \"$STATE/nbd.sock\" and .uptime_s >= 0"
expect 0 pc status
contains "$out" "mappings:"

# Volumes in a mapping cannot go; the mapping can.
expect 1 pc volume delete src
contains "$err" "in a mapping"
expect 0 pc map delete nightly --json
check_json '.deleted == true'
expect 0 pc map delete "$unnamed"
expect 1 pc map show nightly
contains "$err" "no mapping named nightly"

expect 0 pc volume delete src --json
check_json '.file_removed == true'
[ ! -e "$STATE/volumes/src.img" ] || fail "volume delete left the file"
expect 0 pc volume delete tgt --keep-file --json
check_json '.file_removed == false'
[ -f "$tmp/files/tgt.img" ] || fail "--keep-file removed the file"
expect 0 pc volume list --json
check_json '[.volumes[].name] == ["other", "other2"]'

stop_serve
[ ! -e "$STATE/control.sock" ] || fail "control socket left behind after a clean stop"
exit 0
