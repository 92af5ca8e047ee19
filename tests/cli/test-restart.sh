#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: restart persistence: volumes and mappings come back after SIGTERM in the documented states; a missing file is skipped, the rest served.
. "$(dirname "$0")/lib.sh"
requires jq --version

start_serve
for v in a1 a2 b1 b2 c1 c2 d1 d2; do
    expect 0 pc volume create $v --size 8M
done
# copied: a complete copy, comes back idle_or_copied and complete.
expect 0 pc map create a1 a2 --name copied --copy-rate unlimited --clean-rate 7
expect 0 pc map start copied
expect 0 pc map wait copied --timeout 30
# copying: no background copy, comes back copying with its split grains
# (engine/meta.c); its target still reads as the source did at the start.
expect 0 pc map create b1 b2 --name copying --copy-rate 0 --grain 128K
expect 0 pc map start copying
# fresh: never started, comes back as it was.
expect 0 pc map create c1 c2 --name fresh --copy-rate 12
# prepared: comes back stopped.
expect 0 pc map create d1 d2 --name prepared
expect 0 pc map prepare prepared
stop_serve

jq -e '.version == 1 and (.volumes | length) == 8 and (.mappings | length) == 4' \
    "$STATE/pitcopy.json" >/dev/null || fail "pitcopy.json does not list everything"
[ "$(stat -c %a "$STATE/pitcopy.json")" = 600 ] || fail "pitcopy.json is not 0600"
[ ! -e "$STATE/pitcopy.json.tmp" ] || fail "temp file left behind"

start_serve
expect 0 pc volume list --json
check_json '[.volumes[].name] == ["a1","a2","b1","b2","c1","c2","d1","d2"]'
check_json '[.volumes[].size] | all(. == 8388608)'
expect 0 pc map show copied --json
check_json '.state == "idle_or_copied" and .complete == true and .progress == 100'
check_json '.copy_rate == "unlimited" and .clean_rate == 7 and .target_online == true'
expect 0 pc map show copying --json
check_json '.state == "copying" and .complete == false and .target_online == true'
check_json '.grain_size == 131072 and .copy_rate == 0 and .durability == "strict" and .invalid == null'
expect 0 pc map show fresh --json
check_json '.state == "idle_or_copied" and .complete == false and .copy_rate == 12'
expect 0 pc map show prepared --json
check_json '.state == "stopped"'
grep -q "mapping copying: recovered copying" "$tmp/serve.log" ||
    fail "no log line for the recovered mapping"
# A mapping that came back stopped can be started again.
expect 0 pc map start prepared --json
check_json '.state == "copying"'
# Changes after the restart persist too.
expect 0 pc map delete fresh
expect 0 pc volume delete c1
stop_serve

# A backing file gone missing: that volume and its mappings are skipped and
# kept for the next start; everything else is served.
mv "$STATE/volumes/a2.img" "$tmp/a2.img"
truncate -s 4M "$STATE/volumes/d1.img"
start_serve
expect 0 pc volume list --json
check_json '[.volumes[].name] == ["a1","b1","b2","c2","d2"]'
expect 0 pc map list --json
check_json '[.mappings[].name] == ["copying"] and .mappings[0].state == "copying"'
expect 0 pc status --json
check_json '[.skipped_volumes[].name] == ["a2","d1"] and ([.skipped_mappings[].name] | sort) == ["copied","prepared"]'
check_json '.skipped_volumes[0].reason | test("No such file")'
check_json '.skipped_volumes[1].reason | test("4194304 bytes")'
grep -q "skipping volume a2" "$tmp/serve.log" || fail "no log line for the skipped volume"
# The live ones still work, and saving keeps the skipped ones.
expect 0 pc volume create e1 --size 8M
stop_serve
jq -e '[.volumes[].name] | sort == ["a1","a2","b1","b2","c2","d1","d2","e1"]' \
    "$STATE/pitcopy.json" >/dev/null || fail "skipped volumes were dropped from pitcopy.json"

# Back in place: everything returns.
mv "$tmp/a2.img" "$STATE/volumes/a2.img"
truncate -s 8M "$STATE/volumes/d1.img"
start_serve
expect 0 pc map show copied --json
check_json '.state == "idle_or_copied" and .complete == true'
expect 0 pc status --json
check_json '.skipped_volumes == [] and .volumes == 8'
expect 0 pc map show prepared --json
check_json '.state == "copying"'
stop_serve

# A metadata file that cannot vouch for its target: the mapping comes back
# stopped with its target offline, and says why; the file is kept aside.
printf 'garbage' | dd of="$STATE/meta/copying.pcmeta" bs=1 seek=100 conv=notrunc status=none
printf 'garbage' | dd of="$STATE/meta/copying.pcmeta" bs=1 seek=4196 conv=notrunc status=none
start_serve
expect 0 pc map show copying --json
check_json '.state == "stopped" and .target_online == false'
check_json '.invalid | test("neither superblock slot is valid")'
[ -e "$STATE/meta/copying.pcmeta.corrupt" ] || fail "the damaged metadata was not kept aside"
grep -q "mapping copying: cannot vouch for target b2" "$tmp/serve.log" ||
    fail "no log line for the mapping that cannot be vouched for"
expect 0 pc map start copying --json
check_json '.state == "copying" and .invalid == null'
stop_serve

# A state file that is not JSON: refuse to start rather than forget it.
echo '{"version": 1, "volumes": [' >"$STATE/pitcopy.json"
expect 1 "$PITCOPY" serve --state-dir "$STATE"
contains "$err" "is not valid JSON"
exit 0
