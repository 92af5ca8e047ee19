#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: refusals as the reference says — auth failure (dscli exit 5, REST 401), unknown volume, a 13th target, a second incremental, a busy target, bad syntax (exit 2), no HMC (exit 3); a refused request leaves nothing half made.
. "$(dirname "$0")/lib.sh"
start_emulator
password=$(cat "$DS8KEMU_PASSWORD_FILE")

M=$((1024 * 1024))
mkvol 0100 $(for i in $(seq 0 12); do printf '02%02X ' "$i"; done) $M
mkvol 0300 $((M / 2))
mkvol 0400 --cyl 1

# Authentication: dscli exit 5, REST 401 with no token.
echo "not-$password" >"$tmp/badpw"
rc=0; "$DS8KEMU_DSCLI" -hmc1 127.0.0.1 -user admin -pwfile "$tmp/badpw" lsflash 0100 \
    >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc = 5 ] || fail "bad password: dscli exit $rc"
contains "$(cat "$tmp/err")" "CMUN00018E"
rest_login admin "not-$password"
[ "$code" = 401 ] && [ -z "$token" ] || fail "bad password: HTTP $code: $body"
check_body '.server.status == "failed" and .server.code == "CMUN00018E"'
rest_login nobody "$password"
[ "$code" = 401 ] || fail "unknown user: HTTP $code"
token=0123abcd
expect_rest 401 GET /volumes
check_body '.server.code == "CMUN00019E"'
rest_login admin "$password"
[ "$code" = 200 ] || fail "login: HTTP $code"

# Unknown volume: nothing is made, not even the good pair before it.
expect_dscli 6 mkflash 0100:0200 0100:0999
[ "$err" = "CMUN03001E mkflash: 0999: the volume does not exist." ] || fail "unknown volume: $err"
expect_rest 400 POST /cs/flashcopies '{"request": {"params": {"volume_pairs": [
    {"source_volume": "0100", "target_volume": "0200"}, {"source_volume": "0999", "target_volume": "0201"}]}}}'
check_body '.server.status == "failed" and .server.code == "CMUN03001E"'
expect_rest 404 GET /volumes/0999
expect_dscli 0 lsflash 0100
[ "$out" = "CMUC00234I lsflash: No Flash Copy found." ] || fail "a refused mkflash left: $out"

# Twelve targets per source; the thirteenth is refused, and the twelve stay.
pairs=""
for i in $(seq 0 11); do pairs="$pairs 0100:$(printf '02%02X' "$i")"; done
# shellcheck disable=SC2086
expect_dscli 0 mkflash -nocp $pairs
expect_dscli 6 mkflash -nocp 0100:020C
[ "$err" = "CMUN03002E mkflash: 0100:020C: source volume 0100 would have 13 FlashCopy targets; the maximum is 12." ] ||
    fail "13th target: $err"
expect_rest 400 POST /cs/flashcopies '{"request": {"params": {"volume_pairs": [
    {"source_volume": "0100", "target_volume": "020C"}], "options": ["no_background_copy"]}}}'
check_body '.server.code == "CMUN03002E"'
expect_dscli 0 lsflash -s -bnr off -hdr off 0100
[ "$(echo "$out" | wc -l)" = 12 ] || fail "lsflash after the refusals: $out"
[ "$("$PITCOPY_BUILD/pitcopy" map list --json | jq '.mappings | length')" = 12 ] || fail "pitcopy mappings"

# One incremental relationship per source.
expect_dscli 0 rmflash -quiet 0100:0200 0100:0201
expect_dscli 0 mkflash -record -persist -nocp 0100:0200
expect_dscli 6 mkflash -record -persist -nocp 0100:0201
contains "$err" "CMUN03003E mkflash: 0100:0201: source volume 0100 already has an incremental (-record) relationship 0100:0200"
# A volume is the target of one relationship; sizes and types must fit.
expect_dscli 6 mkflash 0300:0202
contains "$err" "CMUN03006E mkflash: 0300:0202: volume 0202 is already the target"
expect_dscli 6 mkflash 0100:0300
contains "$err" "CMUN03007E mkflash: 0100:0300: target 0300 (524288 bytes) is smaller than source 0100"
expect_dscli 6 mkflash 0400:020C
contains "$err" "CMUN03007E mkflash: 0400:020C: 0400 is CKD and 020C is FB"
expect_dscli 6 mkflash 0100:0100
contains "$err" "CMUN03008E"

# Syntax: exit 2, nothing sent to the array.
expect_dscli 2 mkflash -bogus 0100:020C
[ "$err" = "CMUN00011E mkflash: -bogus: unknown or misplaced parameter." ] || fail "bad flag: $err"
expect_dscli 2 mkflash 100:20C
contains "$err" "CMUN00013E mkflash: 100: not a valid volume ID"
expect_dscli 2 mkflash -dev IBM.2107-75ZZZZZ 0100:020C
contains "$err" "CMUN00014E"
expect_dscli 2 mkremoteflash -conduit IBM.2107-75FA120/01 0100:020C
[ "$err" = "CMUN00010E mkremoteflash: unknown command." ] || fail "mkremoteflash: $err"
rc=0; "$DS8KEMU_DSCLI" -hmc1 2>"$tmp/err" || rc=$?
[ $rc = 2 ] || fail "-hmc1 without a value: exit $rc"
# No password file given: refused before connecting, the password is never asked on argv.
rc=0; "$DS8KEMU_DSCLI" -hmc1 127.0.0.1 -user admin lsflash 0100 2>"$tmp/err" || rc=$?
[ $rc = 2 ] || fail "no -pwfile: exit $rc"

# No HMC listening: a connection error, exit 3.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
rc=0; "$DS8KEMU_DSCLI" -hmc1 "127.0.0.1:$port" -user admin -pwfile "$DS8KEMU_PASSWORD_FILE" lsflash 0100 \
    2>"$tmp/err" || rc=$?
[ $rc = 3 ] || fail "no HMC: exit $rc"
contains "$(cat "$tmp/err")" "CMUN00020E dscli: Unable to connect to the management console server 127.0.0.1:$port"
echo PASS
