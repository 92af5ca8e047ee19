#!/bin/bash
# Description: the ds8000 driver over REST (libcurl, verified TLS) — the exact requests of a dry run; flash, refresh, restore and terminate with the bytes checked over NBD; a 0644 password file refused; an untrusted certificate, a wrong password, an unknown volume and a source over its incremental limit each a clear error, the session Severe, nothing left on the array; the password never in ps, the log or the history.
# SPDX-License-Identifier: MIT
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/driver-lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator
start_mgmt
PASSWORD=$(cat "$DS8KEMU_PASSWORD_FILE")
[ ${#PASSWORD} -ge 8 ] || fail "the emulator's password is too short to search for"

M=$((4 * 1024 * 1024))
mkvol 0100 0200 1100 1200 0300 2100 2200 2300 $M
write_pattern 0100 0x41 0 $M
write_pattern 1100 0x51 0 $M

# --- Password files others can read are refused, naming the file.
cp "$DS8KEMU_PASSWORD_FILE" "$tmp/pw-0644"
chmod 644 "$tmp/pw-0644"
expect_pcm 1 system add loose --type ds8000 --hmc "$DS8KEMU_HOST:$DS8KEMU_PORT" --user admin \
    --password-file "$tmp/pw-0644"
contains "$err" "password file $tmp/pw-0644 has mode 0644"
expect_pcm 1 system add novia --type ds8000 --hmc h --user admin \
    --password-file "$DS8KEMU_PASSWORD_FILE" --via telnet
contains "$err" "--via telnet: use rest or dscli"

# The last command failed: the session is Severe with the error's text.
severe()
{
    local sess=${1:-nightly} why=$out
    expect_pcm 0 session show "$sess" --json
    check_json '.state == "Suspended" and .status == "Severe"'
    out=$why
}

add_system ds8k rest --json
check_json '.connection.via == "rest" and (.connection | has("password") | not)'
contains "$(pcm system show ds8k)" "REST https://$DS8KEMU_HOST:$DS8KEMU_PORT/api/v1"
expect_pcm 0 session create nightly --system ds8k
expect_pcm 0 session add-copyset nightly --h1 0100 --t1 0200
expect_pcm 0 session add-copyset nightly --h1 1100 --t1 1200

expect_pcm 0 session flash nightly --dry-run --json
echo "$out" | jq -e --arg u "$DS8KEMU_URL" '.commands == [
  "POST \($u)/cs/flashcopies {\"request\":{\"params\":{\"volume_pairs\":[{\"source_volume\":\"0100\",\"target_volume\":\"0200\"},{\"source_volume\":\"1100\",\"target_volume\":\"1200\"}],\"options\":[\"record_changes\",\"persistent\",\"no_background_copy\",\"freeze_consistency\"]}}}",
  "POST \($u)/cs/flashcopies/unfreeze {\"request\":{\"params\":{\"lss_ids\":[\"01\",\"11\"]}}}"]' \
    >/dev/null || { echo "$out"; fail "the dry run's requests"; }
[ -z "$(relationships)" ] || fail "a dry run made relationships"

( while :; do ps -eo args; sleep 0.01; done ) >"$tmp/ps.txt" 2>/dev/null &
ps_pid=$!
expect_pcm 0 session flash nightly --json
kill "$ps_pid"; wait "$ps_pid" 2>/dev/null
check_json '.outcome == "ok" and .session_state.state == "Target Available" and .session_state.status == "Normal"'
grep -q "session flash nightly" "$tmp/ps.txt" || fail "ps never saw the flash: the sampling proves nothing"
grep -qF -- "$PASSWORD" "$tmp/ps.txt" && fail "the password was on a command line"
[ "$(relationships | sort | tr '\n' ' ')" = "0100:0200 1100:1200 " ] || fail "after the flash: $(relationships)"
expect_dscli 0 lsflash -fmt delim -bnr off 0100:0200
[ "$(field SourceWriteEnabled)" = Enabled ] || fail "the LSSs stayed frozen: $out"
write_pattern 0100 0x42 0 $M
pattern_file "$tmp/want" 0x41 $M
read_vol 0200 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "0200 is not 0100 at the flash"
pattern_file "$tmp/want" 0x51 $M
read_vol 1200 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "1200 is not 1100 at the flash"

# --- Refresh, then restore 0100 from 0200.
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok"'
write_pattern 0100 0x43 0 $M
expect_pcm 0 session restore nightly --json
check_json '.outcome == "ok" and (.commands[0] | contains("fast_reverse_restore"))'
pattern_file "$tmp/want" 0x42 $M
read_vol 0100 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "0100 was not restored to the second flash"
expect_pcm 0 session terminate nightly --json
check_json '.outcome == "ok" and .session_state.state == "Defined"'
[ -z "$(relationships)" ] || fail "terminate left $(relationships)"

# --- An unknown volume: refused by the array, named, Severe, nothing made.
expect_pcm 0 session add-copyset nightly --h1 0300 --t1 0999
expect_pcm 1 session flash nightly --json
severe
contains "$out" "CMUN03001E"
contains "$out" "0999"
[ -z "$(relationships)" ] || fail "a refused flash left $(relationships)"
expect_pcm 0 session history nightly --json
contains "$out" "CMUN03001E"
expect_pcm 0 session remove-copyset nightly --h1 0300

# --- Another incremental relationship on 0100: refused before sending.
expect_dscli 0 mkflash -record -persist -nocp 0100:0300
expect_pcm 1 session flash nightly --json
severe
contains "$out" "source volume 0100 already has the incremental relationship 0100:0300"
[ "$(relationships)" = "0100:0300" ] || fail "a refused flash left $(relationships)"
expect_dscli 0 rmflash -quiet 0100:0300

# --- A wrong password: the login refused, named.
printf 'not-the-password\n' >"$tmp/pw-wrong"
chmod 600 "$tmp/pw-wrong"
expect_pcm 0 system add wrongpw --type ds8000 --via rest --hmc "$DS8KEMU_HOST:$DS8KEMU_PORT" \
    --user admin --password-file "$tmp/pw-wrong" --cacert "$DS8KEMU_CACERT"
expect_pcm 0 session create s2 --system wrongpw
expect_pcm 0 session add-copyset s2 --h1 2100 --t1 2200
expect_pcm 1 session flash s2 --json
severe s2
contains "$out" "login as admin at the HMC refused: CMUN00018E"

# --- An HMC whose certificate is not trusted (no --cacert): TLS fails.
expect_pcm 0 system add untrusted --type ds8000 --via rest --hmc "$DS8KEMU_HOST:$DS8KEMU_PORT" \
    --user admin --password-file "$DS8KEMU_PASSWORD_FILE"
expect_pcm 0 session create s3 --system untrusted
expect_pcm 0 session add-copyset s3 --h1 2100 --t1 2300
expect_pcm 1 session flash s3 --json
severe s3
contains "$out" "cannot reach the HMC"
[ -z "$(relationships)" ] || fail "failed logins left $(relationships)"

expect_pcm 0 session history nightly --json
echo "$out" | grep -qF -- "$PASSWORD" && fail "the password is in the history"
grep -qF -- "$PASSWORD" "$tmp/mgmt.log" && fail "the password is in the daemon log"
grep -qF -- "$PASSWORD" "$MGMT/catalog.db" && fail "the password is in the catalog"
echo "ok"
