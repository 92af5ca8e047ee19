#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the zos driver — a ds8000 session set --zos flashes through a z/OSMF job (FCESTABL ACTION(FREEZE) for every copy set, THAW per LSS), targets' bytes checked, restore, terminate by FCWITHDR job; show queries by an FCQUERY job (and fails clearly, or with --fallback direct goes direct, when z/OSMF is unreachable); the preconditions (APAR, device numbers, the storage system's z/OS connection) each named; a job ending CC 0008 (an offline device) and an unreachable z/OSMF with and without --fallback direct: a clear message, the session Severe, nothing left on the array; the password in no ps, log or history.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../ds8000/driver-lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulators
start_mgmt
ZPW=$(cat "$ZOSMF_PASSWORD_FILE")
[ ${#ZPW} -ge 8 ] || fail "the z/OSMF password is too short to search for"

M=$((4 * 1024 * 1024))
mkvol 0100 1100 0200 1200 $M
zosmfemu_devices 8100=0100 8110=1100 8200=0200 8210=1200 || fail "device table"
zosmfemu_apar applied || fail "apar"
write_pattern 0100 0x61 0 $M
write_pattern 1100 0x62 0 $M

add_system ds8k rest
zos_add()
{
    local name=$1
    shift
    expect_pcm 0 zos add "$name" --zosmf "$ZOSMF_URL" --user "$ZOSMF_USER" \
        --password-file "$ZOSMF_PASSWORD_FILE" --cacert "$ZOSMF_CACERT" "$@"
}
zos_add sys1 --apar-applied --systems ds8k --device 8100=0100 --device 8110=1100 \
    --device 8200=0200 --device 8210=1200
contains "$out" "APAR OA59561 declared applied"
expect_pcm 0 session create nightly --system ds8k
expect_pcm 0 session add-copyset nightly --h1 0100 --t1 0200
expect_pcm 0 session add-copyset nightly --h1 1100 --t1 1200
expect_pcm 1 session set nightly --zos nosuch
contains "$err" "no z/OS connection named nosuch"
expect_pcm 0 session set nightly --zos sys1 --json
check_json '.zos == "sys1"'

# --- Preconditions, each by name, nothing sent.
zos_add noapar --systems ds8k --device 8100=0100 --device 8110=1100 --device 8200=0200 --device 8210=1200
zos_add nodev --apar-applied --systems ds8k --device 8100=0100 --device 8200=0200
zos_add nosys --apar-applied --device 8100=0100 --device 8110=1100 --device 8200=0200 --device 8210=1200
for z in noapar:"APAR OA59561 is not declared applied on z/OS connection noapar" \
         nodev:"volume 1100 (copy set 1100 -> 1200) has no device number on z/OS connection nodev" \
         nosys:"storage system ds8k has no z/OS connection through nosys"; do
    expect_pcm 0 session set nightly --zos "${z%%:*}"
    expect_pcm 1 session flash nightly --json
    contains "$out" "${z#*:}"
done
[ -z "$(relationships)" ] || fail "a failed precondition left $(relationships)"
expect_pcm 0 session set nightly --zos sys1

# --- The flash through z/OS.
expect_pcm 0 session flash nightly --dry-run --json
contains "$out" "FCESTABL SDEVN(X'8100') TDEVN(X'8200') -\\n          MODE(NOCOPY) INCREMENTAL(YES) ACTION(FREEZE)"
contains "$out" "FCWITHDR DEVN(X'8110') ACTION(THAW)"
[ -z "$(relationships)" ] || fail "a dry run made relationships"
( while :; do ps -eo args; sleep 0.01; done ) >"$tmp/ps.txt" 2>/dev/null &
ps_pid=$!
expect_pcm 0 session flash nightly --json
kill "$ps_pid"; wait "$ps_pid" 2>/dev/null
check_json '.outcome == "ok" and .session_state.state == "Target Available" and .session_state.status == "Normal"'
check_json '.commands[-1] | test("^job PITCOPY\\(JOB[0-9]+\\) ended CC 0000$")'
grep -q "session flash nightly" "$tmp/ps.txt" || fail "ps never saw the flash"
grep -qF -- "$ZPW" "$tmp/ps.txt" && fail "the z/OSMF password was on a command line"
grep -q "TSO freeze set of 2 → RC 0" "$ZOSMF_DIR/emu/commands.log" || fail "z/OS ran no FCESTABL: $(tail -5 "$ZOSMF_DIR/emu/commands.log")"
[ "$(relationships | sort | tr '\n' ' ')" = "0100:0200 1100:1200 " ] || fail "after the flash: $(relationships)"
write_pattern 0100 0x71 0 $M
pattern_file "$tmp/want" 0x61 $M
read_vol 0200 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "0200 is not 0100 at the flash"
pattern_file "$tmp/want" 0x62 $M
read_vol 1200 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "1200 is not 1100 at the flash"

# --- The query through z/OS: one job of an FCQUERY per copy set.
expect_pcm 0 session show nightly --json
check_json '.query_error == null and (.copysets | length == 2)'
check_json '.copysets | all(.source == "FCQUERY" and .exists and .state == "idle_or_copied" and .restore_state == null)'
grep -q "TSO FCQUERY DEVN(X'8100') → RC 0" "$ZOSMF_DIR/emu/commands.log" || fail "show ran no FCQUERY: $(tail -5 "$ZOSMF_DIR/emu/commands.log")"
grep -q "TSO FCQUERY DEVN(X'8110') → RC 0" "$ZOSMF_DIR/emu/commands.log" || fail "show ran no FCQUERY of 8110"

# --- Restore (the storage path), then the next flash through z/OS again.
expect_pcm 0 session restore nightly --json
check_json '.outcome == "ok"'
pattern_file "$tmp/want" 0x61 $M
read_vol 0100 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "0100 was not restored"
expect_pcm 0 session show nightly --json
check_json '.copysets | all(.source == "FCQUERY" and .exists and .state == "reversed" and .restore_state != null)'
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok"'
[ "$(relationships | sort | tr '\n' ' ')" = "0100:0200 1100:1200 " ] || fail "after the re-flash: $(relationships)"

# --- Terminate: one FCWITHDR job.
expect_pcm 0 session terminate nightly --json
check_json '.outcome == "ok" and .session_state.state == "Defined"'
contains "$out" "FCWITHDR SDEVN(X'8100') TDEVN(X'8200')"
[ -z "$(relationships)" ] || fail "terminate left $(relationships)"

# --- A device offline: the job ends CC 0008; its message in the history.
zosmfemu_devices 8100=0100 8110=1100 8200=0200 8210=1200 --offline 8210 || fail "offline"
expect_pcm 1 session flash nightly --json
contains "$out" "ended CC 0008: ANTF0310E"
contains "$out" "8210"
expect_pcm 0 session show nightly --json
check_json '.state == "Suspended" and .status == "Severe"'
expect_pcm 0 session history nightly --json
contains "$out" "ANTF0310E"
[ -z "$(relationships)" ] || fail "a failed job left $(relationships)"
zosmfemu_devices 8100=0100 8110=1100 8200=0200 8210=1200 || fail "online"

# --- z/OSMF unreachable: a clear failure; with --fallback direct the flash goes direct.
zosmfemu_unreachable
expect_pcm 1 session flash nightly --json
contains "$out" "z/OS connection sys1: z/OSMF at $ZOSMF_URL is unreachable"
contains "$out" "nothing was flashed"
expect_pcm 0 session show nightly --json
check_json '.status == "Severe"'
check_json '.query_error | test("z/OSMF at .* is unreachable.*the query \\(FCQUERY\\) was not run")'
check_json '.copysets | all(.source == null)'
expect_pcm 0 session show nightly
contains "$out" "failed: z/OS connection sys1: z/OSMF at $ZOSMF_URL is unreachable"
[ -z "$(relationships)" ] || fail "an unreachable z/OSMF left $(relationships)"
expect_pcm 0 session set nightly --fallback direct
expect_pcm 0 session show nightly
contains "$out" "sys1 (fallback: direct)"
expect_pcm 0 session show nightly --json
check_json '.query_error == null and (.copysets | all(.source == null))'
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok" and .session_state.status == "Normal"'
check_json '[.commands[] | select(startswith("fallback: "))] | length == 1'
check_json '[.commands[] | select(startswith("POST ") and contains("/cs/flashcopies {"))] | length == 1'
[ "$(relationships | sort | tr '\n' ' ')" = "0100:0200 1100:1200 " ] || fail "after the fallback: $(relationships)"
expect_pcm 0 session terminate nightly --json
check_json '.outcome == "ok"'
[ -z "$(relationships)" ] || fail "left $(relationships)"

expect_pcm 0 session history nightly --json
echo "$out" | grep -qF -- "$ZPW" && fail "the password is in the history"
grep -qF -- "$ZPW" "$tmp/mgmt.log" && fail "the password is in the daemon log"
grep -qF -- "$ZPW" "$MGMT/catalog.db" && fail "the password is in the catalog"
echo "ok"
