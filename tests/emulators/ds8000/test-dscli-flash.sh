#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the nightly flash through dscli — mkflash (nocopy, and -record -persist), the targets hold the sources as they were byte for byte; resyncflash refreshes, reverseflash restores, rmflash withdraws; the password never on the command line.
. "$(dirname "$0")/lib.sh"
requires qemu-io --version
requires nbdcopy --version
DS8KEMU_FREEZE_TIMEOUT=2 start_emulator

M=$((8 * 1024 * 1024))
mkvol 0100 0101 0200 0201 0300 $M
expect_dscli 0 lsfbvol -fmt delim -bnr off
[ "$(field ID 3)" = 0200 ] && [ "$(field "cap (blocks)" 3)" = $((M / 512)) ] || fail "lsfbvol: $out"

write_pattern 0100 0x11 0 $M
write_pattern 0101 0x22 0 $M
expect_dscli 0 mkflash -dev "$DS8KEMU_IMAGE" -nocp 0100:0200
[ "$out" = "CMUC00137I mkflash: FlashCopy pair 0100:0200 successfully created." ] || fail "mkflash said: $out"
expect_dscli 0 mkflash -record -persist 0101:0201
expect_dscli 0 lsflash -fmt delim -bnr off 0100-01FF
[ "$(field ID 1)" = 0100:0200 ] && [ "$(field BackgroundCopy 1)" = Disabled ] &&
    [ "$(field Recording 1)" = Disabled ] && [ "$(field SrcLSS 1)" = 01 ] || fail "lsflash nocp: $out"
[ "$(field ID 2)" = 0101:0201 ] && [ "$(field Recording 2)" = Enabled ] &&
    [ "$(field Persistent 2)" = Enabled ] && [ "$(field BackgroundCopy 2)" = Enabled ] ||
    fail "lsflash record: $out"
# A nocopy target is all out of sync until written: 128 FB tracks of 64 KiB.
[ "$(field OutOfSyncTracks 1)" = 128 ] || fail "OutOfSyncTracks of the nocp pair: $out"

# After the flash: new data on both sources.
write_pattern 0100 0x33 0 $((M / 2))
write_pattern 0101 0x44 $((M / 4)) $((M / 2))
pattern_file "$tmp/want-0100" 0x11 $M
pattern_file "$tmp/want-0101" 0x22 $M
read_vol 0200 "$tmp/got"
cmp "$tmp/want-0100" "$tmp/got" || fail "0200 is not 0100 as it was at the flash"
read_vol 0201 "$tmp/got"
cmp "$tmp/want-0101" "$tmp/got" || fail "0201 is not 0101 as it was at the flash"

# The background copy completes (copy rate 100: well under a second for 8 MiB).
for _ in $(seq 100); do
    expect_dscli 0 lsflash -l -fmt delim -bnr off 0101:0201
    [ "$(field OutOfSyncTracks)" = 0 ] && break
    sleep 0.1
done
[ "$(field OutOfSyncTracks)" = 0 ] && [ "$(field State)" = Valid ] || fail "copy did not complete: $out"

# Incremental refresh: the target takes the source as it is now.
read_vol 0101 "$tmp/want-0101"
expect_dscli 0 resyncflash -record -persist 0101:0201
[ "$out" = "CMUC00168I resyncflash: FlashCopy volume pair 0101:0201 successfully resynchronized." ] ||
    fail "resyncflash said: $out"
write_pattern 0101 0x55 0 $M
read_vol 0201 "$tmp/got"
cmp "$tmp/want-0101" "$tmp/got" || fail "0201 is not 0101 as it was at the resync"
# resyncflash needs a -record -persist relationship.
expect_dscli 6 resyncflash -record -persist 0100:0200
contains "$err" "CMUN03009E resyncflash: 0100:0200"

# Restore: 0101 back from 0201 (the resync's image); the pair is 0201:0101 afterwards.
for _ in $(seq 100); do
    expect_dscli 0 lsflash -fmt delim -bnr off 0101:0201
    [ "$(field OutOfSyncTracks)" = 0 ] && break
    sleep 0.1
done
expect_dscli 0 reverseflash 0101:0201
read_vol 0101 "$tmp/got"
cmp "$tmp/want-0101" "$tmp/got" || fail "0101 is not restored from 0201"
expect_dscli 0 lsflash -s -fmt delim -bnr off -hdr off 0101
[ "$out" = 0201:0101 ] || fail "after reverseflash: $out"

# 0201 is still the target of the forward mapping under 0201:0101.
expect_dscli 6 mkflash -nocp 0100:0201
contains "$err" "CMUN03006E mkflash: 0100:0201: volume 0201 is already the target of FlashCopy relationship 0201:0101."

# A freeze with no unfreezeflash thaws at the timeout (2 s here).
expect_dscli 0 mkflash -nocp -freeze 0100:0300
expect_dscli 0 lsflash -fmt delim -bnr off 0100:0300
[ "$(field SourceWriteEnabled)" = Disabled ] || fail "not frozen: $out"
for _ in $(seq 60); do
    expect_dscli 0 lsflash -fmt delim -bnr off 0100:0300
    [ "$(field SourceWriteEnabled)" = Enabled ] && break
    sleep 0.1
done
[ "$(field SourceWriteEnabled)" = Enabled ] || fail "still frozen after the timeout: $out"

# A script: setenv, then commands; it stops at the first failure with its exit code.
cat >"$tmp/script" <<SCRIPT
setenv -banner off -header on -format delim
rmflash -quiet 0201:0101 0100:0300
rmflash -quiet 0100:0200
lsflash 0100
rmflash -quiet 0100:0200
lsfbvol
SCRIPT
expect_dscli 6 -script "$tmp/script"
contains "$out" "CMUC00140I rmflash: FlashCopy pair 0201:0101 successfully removed."
contains "$out" "CMUC00140I rmflash: FlashCopy pair 0100:0300 successfully removed."
contains "$out" "CMUC00234I lsflash: No Flash Copy found."
contains "$err" "CMUN03005E rmflash: 0100:0200: no such FlashCopy relationship."
case "$out" in *vol0100*) fail "the script went on after a failure: $out" ;; esac
"$PITCOPY_BUILD/pitcopy" map list --json | jq -e '.mappings == []' >/dev/null ||
    fail "pitcopy mappings left after rmflash: $("$PITCOPY_BUILD/pitcopy" map list)"

# Commands on stdin.
echo "lsflash -fmt delim 0100" | dscli >"$tmp/out" 2>&1 || fail "dscli from stdin"
contains "$(cat "$tmp/out")" "CMUC00234I"

# The password was never in any dscli's argv (the HMC logs each argv).
grep -c 'dscli argv' "$DS8KEMU_DIR/emu/commands.log" >/dev/null || fail "no argv logged"
if grep 'dscli argv' "$DS8KEMU_DIR/emu/commands.log" | grep -qF -- "$(cat "$DS8KEMU_PASSWORD_FILE")"; then
    fail "a password appeared in a dscli command line"
fi
echo PASS
