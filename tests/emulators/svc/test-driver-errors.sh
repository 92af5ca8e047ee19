#!/bin/bash
# Description: the svc driver when things go wrong — unknown host key, unknown volume, target already in a mapping, an array that refuses, a connection cut between prepare and start (then a re-run): a clear message, Severe, history, and no orphaned mappings.
# SPDX-License-Identifier: MIT
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/driver-lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator
start_mgmt

M=$((4 * 1024 * 1024))
make_vdisks 4 a a_copy b b_copy x small
expect_svc 0 'svctask mkvdisk -name tiny -mdiskgrp Pool0 -size 1 -unit mb'
cp "$SVCEMU_KNOWN_HOSTS" "$tmp/known_hosts"
add_ssh_system array
expect_pcm 0 system add shifty --type svc --host "$SVCEMU_HOST" --port "$SVCEMU_SSH_PORT" \
    --user "$SVCEMU_SSH_USER" --key "$SVCEMU_SSH_KEY" --known-hosts "$tmp/known_hosts"

# Severe, with the message in the session and in the history; nothing left.
severe()
{
    local session=$1 want=$2
    expect_pcm 0 session show "$session" --json
    check_json '.state == "Suspended" and .status == "Severe"'
    contains "$(echo "$out" | jq -r .message)" "$want"
    expect_pcm 0 session history "$session" --json
    echo "$out" | jq -e --arg w "$want" '[.entries[] | select(.kind == "action")] | last |
        .outcome == "failed" and (.message | contains($w))' >/dev/null ||
        { echo "$out"; fail "the history does not record '$want'"; }
}

# --- Copy sets the array cannot have are refused when added.
expect_pcm 0 session create s1 --system array
expect_pcm 1 session add-copyset s1 --h1 a --t1 nosuch
contains "$err" "volume nosuch does not exist on system array"
expect_pcm 1 session add-copyset s1 --h1 a --t1 tiny
contains "$err" "differ in size"
expect_pcm 1 session add-copyset s1 --h1 9lives --t1 a_copy
contains "$err" "is not a volume name system array can have"

# --- An unknown host key: nothing is sent, Severe.
expect_pcm 0 session create hk --system shifty
expect_pcm 0 session add-copyset hk --h1 a --t1 a_copy
: >"$tmp/known_hosts"                      # the array's key is no longer known
expect_pcm 1 session flash hk
contains "$err" "host key is unknown or changed"
severe hk "host key is unknown or changed"
[ -z "$(fcmaps)$(fcgroups)" ] || fail "unknown host key: the array has $(fcmaps) $(fcgroups)"
expect_pcm 0 session delete hk

# --- A volume removed from the array after it was added: Severe, undone.
expect_pcm 0 session add-copyset s1 --h1 a --t1 a_copy
expect_pcm 0 session add-copyset s1 --h1 b --t1 b_copy
expect_pcm 0 session show s1 --json
rel_a=$(echo "$out" | jq -r '.copysets[0].relationship')
rel_b=$(echo "$out" | jq -r '.copysets[1].relationship')
expect_svc 0 'svctask rmvdisk b'
expect_pcm 1 session flash s1
contains "$err" "volume b does not exist on system array (CMMVC5754E)"
severe s1 "volume b does not exist"
[ -z "$(fcmaps)$(fcgroups)" ] || fail "unknown volume: orphans on the array: $(fcmaps) $(fcgroups)"
expect_svc 0 'svctask mkvdisk -name b -mdiskgrp Pool0 -size 4 -unit mb'

# --- A target someone else mapped meanwhile: Severe, names it, undone.
expect_svc 0 'svctask mkfcmap -source x -target b_copy -name theirs'
expect_pcm 1 session flash s1
contains "$err" "volume b_copy is already the target of FlashCopy mapping theirs (from x)"
severe s1 "already the target of FlashCopy mapping theirs"
[ "$(fcmaps)" = theirs ] && [ -z "$(fcgroups)" ] || fail "target in use: the array has $(fcmaps) $(fcgroups)"
expect_svc 0 'svctask rmfcmap theirs'

# --- The array refuses the start: Severe, the prepared group stopped and removed.
svcemu_fault --command startfcconsistgrp --error CMMVC5903E || fail "cannot arm the fault"
expect_pcm 1 session flash s1
contains "$err" "system array refused startfcconsistgrp csm-s1: the mapping or group is in another state (CMMVC5903E)"
severe s1 "CMMVC5903E"
[ -z "$(fcmaps)$(fcgroups)" ] || fail "refused start: orphans on the array: $(fcmaps) $(fcgroups)"

# --- mkfcmap's answer is lost: a re-run finds the mapping, makes no second one.
svcemu_fault --command mkfcmap --drop || fail "cannot arm the fault"
expect_pcm 1 session flash s1
contains "$err" "connection was lost"
severe s1 "may or may not have run it"
[ "$(fcmaps)" = "$rel_a" ] || fail "after the cut mkfcmap: $(fcmaps)"

# --- Cut between prepare and start: Severe; the re-run continues from prepared.
write_pattern a 0x61 0 $M
write_pattern b 0x62 0 $M
svcemu_fault --command prestartfcconsistgrp --drop || fail "cannot arm the fault"
expect_pcm 1 session flash s1
contains "$err" "connection was lost during \`prestartfcconsistgrp\`"
contains "$err" "run it again: pitcopy reads the array's state first"
severe s1 "prestartfcconsistgrp"
expect_svc 0 'svcinfo lsfcconsistgrp -delim ! csm-s1'
[ "$(detail status)" = prepared ] || fail "the cut prestart did not take effect: $out"
expect_pcm 0 session flash s1 --json
check_json '.outcome == "ok" and .session_state.status == "Normal"'
check_json '.commands == ["svctask startfcconsistgrp csm-s1"]'
[ "$(fcmaps | sort | tr '\n' ' ')" = "$rel_a $rel_b " ] || fail "duplicates: $(fcmaps)"
write_pattern a 0x71 0 $M
write_pattern b 0x72 0 $M
pattern_file "$tmp/want" 0x61 $M
read_vdisk a_copy "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "a_copy is not a at the re-run's flash"
pattern_file "$tmp/want" 0x62 $M
read_vdisk b_copy "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "b_copy is not b at the re-run's flash"

# --- A mapping of the session's name that maps something else is never used.
expect_pcm 0 session terminate s1
expect_svc 0 "svctask mkfcmap -source x -target a_copy -name $rel_a"
expect_pcm 1 session flash s1
contains "$err" "mapping $rel_a exists on system array but maps x -> a_copy, not a -> a_copy"
[ "$(fcmaps)" = "$rel_a" ] && [ -z "$(fcgroups)" ] || fail "D2: the array has $(fcmaps) $(fcgroups)"
echo PASS
