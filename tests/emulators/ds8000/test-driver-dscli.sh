#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the ds8000 driver over dscli — the nightly story (flash, refresh, restore, terminate) with the targets' and sources' bytes checked over NBD; a three-LSS flash under a running writer is one point in time (freeze, then unfreezeflash); the password never on a command line, in the daemon log or the history.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/driver-lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator
start_mgmt
PASSWORD=$(cat "$DS8KEMU_PASSWORD_FILE")
[ ${#PASSWORD} -ge 8 ] || fail "the emulator's password is too short to search for"

M=$((4 * 1024 * 1024))
mkvol 0100 1100 2100 0200 0201 0202 $M
add_system ds8k dscli --storage-image "$DS8KEMU_IMAGE" --json
check_json '.connection.via == "dscli" and (.connection | has("password") | not)'
expect_pcm 0 session create nightly --system ds8k
expect_pcm 1 session add-copyset nightly --h1 db --t1 0200
contains "$err" "'db' is not a DS8000 volume ID"
expect_pcm 0 session add-copyset nightly --h1 0100 --t1 0200
expect_pcm 0 session add-copyset nightly --h1 1100 --t1 0201
expect_pcm 0 session add-copyset nightly --h1 2100 --t1 0202

# --- What would be sent: one establish with freeze (three LSSs), one thaw.
expect_pcm 0 session flash nightly --dry-run --json
echo "$out" | jq -e --arg i "$DS8KEMU_IMAGE" '.commands == [
  "dscli mkflash -dev \($i) -record -persist -nocp -freeze 0100:0200 1100:0201 2100:0202",
  "dscli unfreezeflash 01 11 21"]' >/dev/null || { echo "$out"; fail "the dry run's commands"; }
[ -z "$(relationships)" ] || fail "a dry run made relationships"

# --- The flash under a writer bumping counters on 0100, 1100, 2100 in turn:
# one point in time sees each counter equal to or one past the next.
write_pattern 0100 0x31 0 $M
"$_ds8k_dir/counters.py" write "$DS8KEMU_NBD_SOCK" 75FA120-0100 75FA120-1100 75FA120-2100 \
    --stop "$tmp/stop" >"$tmp/writer.out" 2>&1 &
writer=$!
test_cleanup_more() { touch "$tmp/stop"; wait "$writer" 2>/dev/null; }
sleep 0.3
( while :; do ps -eo args; sleep 0.01; done ) >"$tmp/ps.txt" 2>/dev/null &
ps_pid=$!
expect_pcm 0 session flash nightly --json
kill "$ps_pid"; wait "$ps_pid" 2>/dev/null
check_json '.outcome == "ok" and .session_state.state == "Target Available" and .session_state.status == "Normal"'
touch "$tmp/stop"
wait "$writer" || fail "the writer failed: $(cat "$tmp/writer.out")"
writes=$(cat "$tmp/writer.out")
a=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0200)
b=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0201)
c=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0202)
echo "writer: $writes rounds; at the flash 0100=$a 1100=$b 2100=$c"
[ "$a" -gt 0 ] && [ "$a" -lt "$writes" ] || fail "the flash was not taken while the writer ran ($a of $writes)"
{ [ "$a" = "$b" ] || [ "$a" = $((b + 1)) ]; } && { [ "$b" = "$c" ] || [ "$b" = $((c + 1)) ]; } ||
    fail "not one point in time: 0100=$a 1100=$b 2100=$c"
grep -q "mkflash" "$tmp/ps.txt" || fail "ps never saw dscli run: the sampling proves nothing"
grep -F -- "$PASSWORD" "$tmp/ps.txt" && fail "the password was on a command line"
grep -q -- "-pwfile $DS8KEMU_PASSWORD_FILE" "$tmp/ps.txt" || fail "dscli did not get -pwfile"
expect_dscli 0 lssi
expect_dscli 0 lsflash -fmt delim -bnr off 0100:0200
[ "$(field SourceWriteEnabled)" = Enabled ] || fail "the LSSs stayed frozen: $out"
[ "$(field Recording)" = Enabled ] && [ "$(field Persistent)" = Enabled ] || fail "not -record -persist: $out"

# The target past the counter block is the source as it was.
pattern_file "$tmp/want" 0x31 $M
read_vol 0200 "$tmp/got"
cmp -i 4096 "$tmp/want" "$tmp/got" -n $((M - 4096)) || fail "0200 is not 0100 at the flash"

# --- The next night refreshes (resyncflash), then the source is restored.
write_pattern 0100 0x32 0 $M
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok" and (.commands[0] | startswith("dscli resyncflash"))'
write_pattern 0100 0x33 0 $M
pattern_file "$tmp/want" 0x32 $M
read_vol 0200 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "0200 is not 0100 at the second flash"
expect_pcm 0 session restore nightly --json
check_json '.outcome == "ok" and .commands == ["dscli reverseflash -dev '"$DS8KEMU_IMAGE"' -fast 0100:0200 1100:0201 2100:0202"]'
read_vol 0100 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "0100 was not restored from 0200"
[ "$(relationships | sort | tr '\n' ' ')" = "0200:0100 0201:1100 0202:2100 " ] ||
    fail "after the restore: $(relationships)"
expect_pcm 0 session show nightly --json
check_json '.status != "Severe"'

# --- Flash again after the restore: the reversed pairs go, H1:T1 anew.
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok" and (.commands[0] | startswith("dscli rmflash"))'
[ "$(relationships | sort | tr '\n' ' ')" = "0100:0200 1100:0201 2100:0202 " ] ||
    fail "after the flash: $(relationships)"
expect_pcm 0 session terminate nightly --json
check_json '.outcome == "ok" and .session_state.state == "Defined"'
[ -z "$(relationships)" ] || fail "terminate left $(relationships)"
expect_pcm 0 session terminate nightly        # V2: nothing left to withdraw

# --- The password is nowhere the driver writes.
expect_pcm 0 session history nightly --json
echo "$out" | grep -qF -- "$PASSWORD" && fail "the password is in the history"
grep -qF -- "$PASSWORD" "$tmp/mgmt.log" && fail "the password is in the daemon log"
grep -qF -- "$PASSWORD" "$MGMT/catalog.db" && fail "the password is in the catalog"
grep '"argv"\|dscli argv' "$tmp/emu/emu/commands.log" | grep -qF -- "$PASSWORD" &&
    fail "the password was in a dscli argv the HMC logged"
echo "ok"
