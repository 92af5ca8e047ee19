#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the nightly flash over SSH — two vdisks in one FC consistency group, prepare, start, write on; the targets hold the sources as they were, byte for byte.
. "$(dirname "$0")/lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator

M=$((8 * 1024 * 1024))
for v in db log db_copy log_copy; do
    expect_svc 0 "svctask mkvdisk -name \"$v\" -mdiskgrp Pool0 -iogrp 0 -size 8 -unit mb"
done
contains "$out" "successfully created"
expect_svc 0 'svcinfo lsvdisk -bytes -delim ! -filtervalue name=db'
[ "$(field capacity)" = $M ] || fail "db capacity $(field capacity), not $M"
[ "$(field id)" = 0 ] || fail "db has id $(field id), not 0"

write_pattern db 0x11 0 $M
write_pattern log 0x22 0 $M

expect_svc 0 'svctask mkfcconsistgrp -name nightly'
[ "$out" = "FlashCopy Consistency Group, id [1], successfully created" ] || fail "mkfcconsistgrp said: $out"
# A nocopy mapping (the target depends on copy-on-write) and a background copy one.
expect_svc 0 'svctask mkfcmap -source "db" -target "db_copy" -consistgrp nightly -copyrate 0'
[ "$out" = "FlashCopy Mapping, id [0], successfully created" ] || fail "mkfcmap said: $out"
expect_svc 0 'svctask mkfcmap -source 1 -target log_copy -name logmap -consistgrp 1 -copyrate 50 -grainsize 64'
expect_svc 0 'svcinfo lsfcmap -delim !'
[ "$(echo "$out" | wc -l)" = 3 ] || fail "lsfcmap: $out"
[ "$(field status)" = idle_or_copied ] && [ "$(field group_name)" = nightly ] &&
    [ "$(field copy_rate)" = 0 ] && [ "$(field start_time)" = "" ] || fail "lsfcmap: $out"
expect_svc 0 'svcinfo lsfcconsistgrp -delim ! nightly'
[ "$(detail status)" = idle_or_copied ] || fail "group: $out"
[ "$(echo "$out" | grep -c '^FC_mapping_name!')" = 2 ] || fail "group members: $out"

expect_svc 0 'svctask prestartfcconsistgrp nightly'
[ -z "$out" ] || fail "prestartfcconsistgrp printed: $out"
expect_svc 0 'svcinfo lsfcconsistgrp -delim ! -filtervalue name=nightly'
[ "$(field status)" = prepared ] || fail "after prestart: $out"
expect_svc 0 'svctask startfcconsistgrp nightly'
[ -z "$out" ] || fail "startfcconsistgrp printed: $out"
expect_svc 0 'svcinfo lsfcmap -delim ! 0'
[ "$(detail status)" = copying ] || fail "after start: $out"
[[ "$(detail start_time)" =~ ^[0-9]{12}$ ]] || fail "start_time: $(detail start_time)"
[ "$(detail grain_size)" = 256 ] && [ "$(detail autodelete)" = off ] || fail "defaults: $out"

# After the flash: new data on both sources.
write_pattern db 0x33 0 $((M / 2))
write_pattern log 0x44 $((M / 4)) $((M / 2))

pattern_file "$tmp/want-db" 0x11 $M
pattern_file "$tmp/want-log" 0x22 $M
read_vdisk db_copy "$tmp/got"
cmp "$tmp/want-db" "$tmp/got" || fail "db_copy is not db as it was at the flash"
read_vdisk log_copy "$tmp/got"
cmp "$tmp/want-log" "$tmp/got" || fail "log_copy is not log as it was at the flash"
read_vdisk db "$tmp/got"
cmp -s "$tmp/want-db" "$tmp/got" && fail "db did not take the new writes"

# A stand-alone mapping flashed with one command (startfcmap -prep); its
# grain size defaults to that of the source's other mapping (64 KiB).
expect_svc 0 'svctask mkvdisk -name extra -mdiskgrp Pool0 -size 8 -unit mb'
expect_svc 0 'svctask mkfcmap -source log -target extra -copyrate 100 -autodelete'
id=${out//[^0-9]/}
expect_svc 0 "svcinfo lsfcmap -delim ! $id"
[ "$(detail grain_size)" = 64 ] && [ "$(detail autodelete)" = on ] || fail "extra's map: $out"
read_vdisk log "$tmp/want"
expect_svc 0 "svctask startfcmap -prep $id"
write_pattern log 0x55 0 $M
read_vdisk extra "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "extra is not log as it was at the second flash"
# Copy rate 100 copies 8 MiB in well under 5 s; then the mapping deletes itself.
for _ in $(seq 100); do
    expect_svc 0 "svcinfo lsfcmap -delim ! -filtervalue id=$id"
    [ -z "$(field status)" ] && break
    sleep 0.1
done
[ -z "$(field status)" ] || fail "the autodelete mapping is still there: $out"

# Stop with -force: the nocopy target is incomplete, so stopped; delete.
expect_svc 0 'svctask stopfcconsistgrp -force nightly'
expect_svc 0 'svcinfo lsfcmap -delim ! 0'
[ "$(detail status)" = stopped ] || fail "after stop -force: $out"
expect_svc 0 'svcinfo lsvdisk -delim ! db_copy'
[ "$(detail status)" = offline ] || fail "the target of a stopped mapping is $(detail status)"
expect_svc 0 'svctask rmfcconsistgrp -force nightly'
expect_svc 0 'svctask rmfcmap -force 0'
expect_svc 0 'svcinfo lsfcconsistgrp -delim !'
[ -z "$out" ] || fail "groups left: $out"
"$PITCOPY_BUILD/pitcopy" map list --json | jq -e '[.mappings[].name] | index("fcmap0") == null' \
    >/dev/null || fail "fcmap0 is still a pitcopy mapping"
echo PASS
