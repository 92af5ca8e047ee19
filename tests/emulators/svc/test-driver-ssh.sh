#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the svc driver over SSH — a session's nightly flash through an FC consistency group on the emulated array, twice; targets byte for byte; dry run; background copy; restore; terminate leaves nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/driver-lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator
start_mgmt

M=$((8 * 1024 * 1024))
make_vdisks 8 db log db_copy log_copy
write_pattern db 0x11 0 $M
write_pattern log 0x22 0 $M

add_ssh_system fs9500 --json
check_json '.type == "svc" and .connection.transport == "ssh" and (.address | startswith("SSH "))'
expect_pcm 0 system show fs9500
contains "$out" "SSH $SVCEMU_SSH_USER@127.0.0.1 port $SVCEMU_SSH_PORT"
expect_pcm 0 session create nightly --system fs9500
expect_pcm 0 session add-copyset nightly --h1 db --t1 db_copy
expect_pcm 0 session add-copyset nightly --h1 log --t1 log_copy

# A dry run reads the array but sends nothing; it prints exactly what it would.
expect_pcm 0 session flash nightly --dry-run --json
check_json '.commands == [
  "svctask mkfcconsistgrp -name csm-nightly",
  "svctask mkfcmap -source db -target db_copy -name csm-nightly-1 -consistgrp csm-nightly -copyrate 0 -incremental",
  "svctask mkfcmap -source log -target log_copy -name csm-nightly-2 -consistgrp csm-nightly -copyrate 0 -incremental",
  "svctask prestartfcconsistgrp csm-nightly",
  "svctask startfcconsistgrp csm-nightly"]'
[ -z "$(fcmaps)$(fcgroups)" ] || fail "a dry run changed the array: $(fcmaps) $(fcgroups)"

# Night 1.
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok" and .session_state.state == "Target Available" and .session_state.status == "Normal"'
check_json '[.session_state.copysets[].state] == ["copying", "copying"]'
[ "$(fcmaps | sort | tr '\n' ' ')" = "csm-nightly-1 csm-nightly-2 " ] || fail "mappings: $(fcmaps)"
expect_svc 0 'svcinfo lsfcconsistgrp -delim ! csm-nightly'
[ "$(detail status)" = copying ] || fail "group: $out"
grep -q 'svcinfo lsfcconsistgrp -delim : -filtervalue name=csm-nightly → ok' \
    "$SVCEMU_DIR/emu/commands.log" || fail "the driver did not poll the group"

write_pattern db 0x33 0 $((M / 2))
write_pattern log 0x44 $((M / 4)) $((M / 2))
pattern_file "$tmp/want-db" 0x11 $M
pattern_file "$tmp/want-log" 0x22 $M
read_vdisk db_copy "$tmp/got"
cmp "$tmp/want-db" "$tmp/got" || fail "db_copy is not db as it was at the flash"
read_vdisk log_copy "$tmp/got"
cmp "$tmp/want-log" "$tmp/got" || fail "log_copy is not log as it was at the flash"

# Night 2: the copying group is stopped and flashed again; same mappings.
read_vdisk db "$tmp/want-db2"
read_vdisk log "$tmp/want-log2"
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok" and (.commands | index("svctask stopfcconsistgrp csm-nightly")) != null'
check_json '[.commands[] | select(startswith("svctask mkfcmap"))] == []'
write_pattern db 0x55 0 $M
read_vdisk db_copy "$tmp/got"
cmp "$tmp/want-db2" "$tmp/got" || fail "night 2: db_copy is not db at the second flash"
read_vdisk log_copy "$tmp/got"
cmp "$tmp/want-log2" "$tmp/got" || fail "night 2: log_copy is not log at the second flash"
[ "$(fcmaps | wc -l)" = 2 ] || fail "night 2 made mappings: $(fcmaps)"

# Background copy: the copy rate, on the array.
expect_pcm 0 session initiate-background-copy nightly --copy-rate 100 --json
check_json '.commands == ["svctask chfcmap -copyrate 100 csm-nightly-1", "svctask chfcmap -copyrate 100 csm-nightly-2"]'
expect_svc 0 'svcinfo lsfcmap -delim ! csm-nightly-1'
[ "$(detail copy_rate)" = 100 ] || fail "copy rate: $out"
expect_pcm 0 session show nightly --json
check_json '[.copysets[].copy_rate] == [100, 100] and (.copysets[0].started_at | test("^20[0-9]{2}-"))'

# Restore: db reads as db_copy (night 2's image) again.
expect_pcm 0 session restore nightly --json
check_json '.outcome == "ok" and (.commands | index("svctask startfcmap -prep -restore csm-nightly-1-r")) != null'
check_json '(.commands | index("svctask mkfcmap -source db_copy -target db -name csm-nightly-1-r -copyrate 100")) != null'
read_vdisk db "$tmp/got"
cmp "$tmp/want-db2" "$tmp/got" || fail "db is not restored"

# Terminate: nothing of the session is left on the array.
for _ in $(seq 100); do
    expect_pcm 0 session show nightly --json
    echo "$out" | jq -e '[.copysets[].restore_state] | all(. == "idle_or_copied")' >/dev/null && break
    sleep 0.1
done
expect_pcm 0 session terminate nightly --json
check_json '.outcome == "ok" and .session_state.state == "Defined"'
[ -z "$(fcmaps)$(fcgroups)" ] || fail "terminate left: $(fcmaps) $(fcgroups)"
expect_pcm 0 session terminate nightly       # V2: again, with nothing there
expect_pcm 0 session history nightly --json
check_json '([.entries[] | select(.kind == "action") | .outcome] | all(. == "ok")) and ([.entries[] | select(.kind == "action")] | length) == 6'
echo PASS
