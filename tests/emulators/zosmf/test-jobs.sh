#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the nightly flash through z/OSMF — a batch job's FCESTABL ACTION(FREEZE) pair over two LSSs is one point in time under a running writer, thawed by FCWITHDR ACTION(THAW); the targets hold the sources as they were; the next night's job refreshes; FCQUERY and dscli see the same relationships; FCWITHDR withdraws.
. "$(dirname "$0")/lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulators

M=$((4 * 1024 * 1024))
mkvol 0100 1100 0200 0201 $M
zosmfemu_devices 8100=0100 8110=1100 8200=0200 8201=0201 || fail "device table"

zosmf GET /zosmf/info
[ "$code" = 200 ] && [ "$(echo "$body" | jq -r .zosmf_version)" = 27 ] || fail "info: $code $body"

write_pattern 0100 0x71 0 $M
write_pattern 1100 0x72 0 $M
cat >"$tmp/flash.jcl" <<'JCL'
//FLASH    JOB (ACCT),'NIGHTLY FLASH',CLASS=A,MSGCLASS=X,
//             NOTIFY=&SYSUID
//* Establish both pairs while their LSSs are frozen, then thaw.
//STEP1    EXEC PGM=IKJEFT01
//SYSTSPRT DD SYSOUT=*
//SYSTSIN  DD *
 FCESTABL SDEVN(X'8100') TDEVN(X'8200') MODE(NOCOPY) -
          INCREMENTAL(YES) ONLINTGT(YES) ACTION(FREEZE)
 FCESTABL SDEVN(X'8110') TDEVN(X'8201') MODE(NOCOPY) -
          INCREMENTAL(YES) ONLINTGT(YES) ACTION(FREEZE)
 FCWITHDR DEVN(X'8100') ACTION(THAW)
 FCWITHDR DEVN(X'8110') ACTION(THAW)
 FCQUERY DEVN(X'8100')
/*
JCL

# A writer bumps a counter on 0100 then 1100 while the job runs.
"$_ds8k_dir/counters.py" write "$DS8KEMU_NBD_SOCK" 75FA120-0100 75FA120-1100 \
    --stop "$tmp/stop" >"$tmp/writer.out" 2>&1 &
writer=$!
test_cleanup() { touch "$tmp/stop"; wait "$writer" 2>/dev/null; }
sleep 0.2
submit "$tmp/flash.jcl"
[ "$jobname" = FLASH ] && [[ "$jobid" =~ ^JOB[0-9]{5}$ ]] || fail "submit: $body"
[ "$(echo "$body" | jq -r .status)" = INPUT ] || fail "a new job is not INPUT: $body"
wait_job
touch "$tmp/stop"
wait "$writer" || fail "the writer failed: $(cat "$tmp/writer.out")"
[ "$retcode" = "CC 0000" ] || { spool SYSTSPRT; fail "the flash job ended $retcode"; }
a=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0200)
b=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0201)
echo "writer: $(cat "$tmp/writer.out") rounds; at the flash 0100=$a 1100=$b"
[ "$a" -gt 0 ] && [ "$a" -lt "$(cat "$tmp/writer.out")" ] || fail "the flash was not taken while the writer ran"
[ "$a" = "$b" ] || [ "$a" = $((b + 1)) ] || fail "not one point in time: 0100=$a 1100=$b"

out=$(spool SYSTSPRT)
[ "$(echo "$out" | grep -c '^ANTF0030I FCESTABL COMMAND COMPLETED')" = 2 ] || fail "SYSTSPRT: $out"
[ "$(echo "$out" | grep -c '^ANTF0031I FCWITHDR COMMAND COMPLETED: LSS .* THAWED')" = 2 ] || fail "SYSTSPRT: $out"
contains "$out" "ANTF0090I FCQUERY Formatted"
contains "$out" "SOURCE OF X'8200' VOL 0100:0200 FC...... INCREMENTAL(YES)"
[ "$(echo "$out" | tail -n 2 | tr '\n' ' ')" = "READY END " ] || fail "SYSTSPRT end: $out"
contains "$(spool JESMSGLG)" '$HASP395 FLASH    ENDED - RC=0000'
contains "$(spool JESYSMSG)" "IEF142I FLASH STEP1 - STEP WAS EXECUTED - COND CODE 0000"

# The same relationships through dscli (one storage image), thawed.
expect_dscli 0 lsflash -fmt delim -bnr off 0100-11FF
[ "$(field ID 1)" = 0100:0200 ] && [ "$(field ID 2)" = 1100:0201 ] &&
    [ "$(field Recording 2)" = Enabled ] && [ "$(field SourceWriteEnabled 1)" = Enabled ] ||
    fail "lsflash after the z/OS flash: $out"

# Past the counter block the targets are the sources as they were.
write_pattern 0100 0x73 0 $M
pattern_file "$tmp/want" 0x71 $M
read_vol 0200 "$tmp/got"
cmp -i 4096 "$tmp/want" "$tmp/got" || fail "0200 is not 0100 as it was"
pattern_file "$tmp/want" 0x72 $M
read_vol 0201 "$tmp/got"
cmp -i 4096 "$tmp/want" "$tmp/got" || fail "0201 is not 1100 as it was"

# The next night: the same job refreshes (INCREMENTAL(YES) on an incremental relationship).
submit "$tmp/flash.jcl"
wait_job
[ "$retcode" = "CC 0000" ] || { spool SYSTSPRT; fail "the refresh job ended $retcode"; }
write_pattern 0100 0x74 0 $M
read_vol 0200 "$tmp/got"
pattern_file "$tmp/want" 0x73 $M
cmp "$tmp/want" "$tmp/got" || fail "0200 is not 0100 as it was at the refresh"

# Withdraw through z/OS; nothing is left, in dscli's view or pitcopy's.
cat >"$tmp/withdraw.jcl" <<'JCL'
//WITHDRAW JOB CLASS=A
//STEP1    EXEC PGM=IKJEFT1B
//SYSTSPRT DD SYSOUT=*
//SYSTSIN  DD *
 FCWITHDR SDEVN(X'8100') TDEVN(X'8200')
 FCWITHDR SDEVN(X'8110') TDEVN(X'8201') DDSW(YES)
/*
JCL
submit "$tmp/withdraw.jcl"
wait_job
[ "$retcode" = "CC 0000" ] || { spool SYSTSPRT; fail "the withdraw job ended $retcode"; }
expect_dscli 0 lsflash 0100-11FF
[ "$out" = "CMUC00234I lsflash: No Flash Copy found." ] || fail "after FCWITHDR: $out"
"$PITCOPY_BUILD/pitcopy" map list --json | jq -e '.mappings == []' >/dev/null || fail "mappings left"

# Purge.
zosmf DELETE "/zosmf/restjobs/jobs/$jobname/$jobid"
[ "$code" = 200 ] || fail "purge: $code $body"
zosmf GET "/zosmf/restjobs/jobs/$jobname/$jobid"
[ "$code" = 400 ] || fail "a purged job: $code $body"
echo PASS
