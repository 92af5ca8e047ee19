#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the REST API over HTTPS — token auth and its refusals, the consistency-group flash verified byte for byte, CMMVC errors as HTTP 500.
. "$(dirname "$0")/lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator
password=$(cat "$SVCEMU_PASSWORD_FILE")

# Auth: wrong password, unknown user, then the real thing.
rest_auth superuser "not-$password"
[ "$code" = 403 ] || fail "wrong password: HTTP $code: $body"
case "$body" in *token*\"*) fail "a refusal carried a token: $body" ;; esac
rest_auth nobody "$password"
[ "$code" = 403 ] || fail "unknown user: HTTP $code"
rest_auth superuser "$password"
[ "$code" = 200 ] || fail "auth: HTTP $code: $body"
token=$(echo "$body" | jq -r .token)
[[ "$token" =~ ^[0-9a-f]{64}$ ]] || fail "token: $body"
good=$token

# Without a valid token nothing runs.
token=""
expect_rest 403 lsvdisk
token=0000$good
expect_rest 403 'mkvdisk' '{"name": "x", "mdiskgrp": "Pool0", "size": 4, "unit": "mb"}'
token=$good
expect_rest 200 lsvdisk
[ "$body" = "[]" ] || fail "lsvdisk after a refused mkvdisk: $body"
# The API takes POST only, and knows its commands.
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$SVCEMU_CACERT" \
    -H "X-Auth-Token: $token" "$SVCEMU_REST_URL/rest/lsvdisk")
[ "$code" = 405 ] || fail "GET: HTTP $code"
expect_rest 404 lsnosuchthing
# And it is HTTPS with the generated CA: a client without it refuses.
curl -s -o /dev/null -X POST "$SVCEMU_REST_URL/rest/auth" && fail "curl trusted the test CA by default"

# The flash.
M=$((4 * 1024 * 1024))
for v in src1 src2 tgt1 tgt2; do
    expect_rest 200 mkvdisk "{\"name\": \"$v\", \"mdiskgrp\": \"Pool0\", \"size\": $M, \"unit\": \"b\"}"
done
check_body '.id == "3" and .message == "Volume, id [3], successfully created"'
write_pattern src1 0x61 0 $M
write_pattern src2 0x62 0 $M
expect_rest 200 mkfcconsistgrp '{"name": "cg"}'
check_body '.id == "1" and .message == "FlashCopy Consistency Group, id [1], successfully created"'
expect_rest 200 mkfcmap '{"source": "src1", "target": "tgt1", "consistgrp": "cg", "copyrate": 0, "name": "m1"}'
check_body '.message == "FlashCopy Mapping, id [0], successfully created"'
expect_rest 200 mkfcmap '{"source": "src2", "target": "tgt2", "consistgrp": 1, "copyrate": "0", "grainsize": "64"}'
expect_rest 500 startfcconsistgrp/cg
[ "$body" = "error code: 1, error text: CMMVC5903E The FlashCopy mapping was not changed because the mapping or consistency group is in another state." ] ||
    fail "start of an unprepared group: $body"
expect_rest 200 prestartfcconsistgrp/cg
[ -z "$body" ] || fail "prestart answered: $body"
expect_rest 200 lsfcconsistgrp/cg
check_body '.status == "prepared" and .FC_mapping_name == ["m1", "fcmap1"]'
expect_rest 200 startfcconsistgrp/cg
expect_rest 200 lsfcmap '{"filtervalue": "group_name=cg"}'
check_body 'length == 2 and all(.[]; .status == "copying" and (.start_time | test("^[0-9]{12}$")))'
write_pattern src1 0x71 0 $((M / 2))
write_pattern src2 0x72 $((M / 2)) $((M / 2))
pattern_file "$tmp/want" 0x61 $M
read_vdisk tgt1 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "tgt1 is not src1 as it was at the flash"
pattern_file "$tmp/want" 0x62 $M
read_vdisk tgt2 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "tgt2 is not src2 as it was at the flash"

# Errors come back as HTTP 500 with the CLI's line.
expect_rest 500 lsvdisk/nosuch
contains "$body" "CMMVC5754E"
expect_rest 500 mkfcmap '{"source": "src2", "target": "tgt1"}'
contains "$body" "CMMVC5753E"
expect_rest 500 rmfcmap/m1
contains "$body" "CMMVC5903E"
expect_rest 500 mkfcmap '{"source": "src1", "target": "tgt1", "bogus": true}'
contains "$body" "CMMVC5709E [-bogus] is not a supported parameter."
expect_rest 200 lsfcmap/m1
check_body '.status == "copying" and .group_name == "cg" and .autodelete == "off"'

# Tear down as ansible does: stop -force, remove the group, remove the maps.
expect_rest 200 stopfcconsistgrp/cg '{"force": true}'
expect_rest 200 rmfcconsistgrp/cg '{"force": true}'
expect_rest 200 lsfcmap
check_body 'length == 2 and all(.[]; .status == "stopped" and .group_id == "")'
expect_rest 200 rmfcmap/m1 '{"force": true}'
expect_rest 200 rmfcmap/1 '{"force": true}'
expect_rest 200 lsfcmap
[ "$body" = "[]" ] || fail "mappings left: $body"
# The versioned prefix answers too.
code=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$SVCEMU_CACERT" -X POST \
    -H "X-Auth-Token: $token" "$SVCEMU_REST_URL/rest/v1/lsfcconsistgrp")
[ "$code" = 200 ] && [ "$(cat "$tmp/body")" = "[]" ] || fail "/rest/v1: $code $(cat "$tmp/body")"
echo PASS
