#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: armed faults — a connection cut after prestart took effect, an array that answers with an error, a REST request dropped — as a driver will meet them.
. "$(dirname "$0")/lib.sh"
start_emulator

for v in s t; do expect_svc 0 "mkvdisk -name $v -mdiskgrp Pool0 -size 4 -unit mb"; done
expect_svc 0 'mkfcconsistgrp -name cg'
expect_svc 0 'mkfcmap -source s -target t -consistgrp cg -copyrate 0'

# The line drops after the prepare took effect: ssh fails, the group is prepared.
svcemu_fault --command prestartfcconsistgrp --drop || fail "could not arm the fault"
expect_svc 255 'prestartfcconsistgrp cg'
expect_svc 0 'lsfcconsistgrp -delim ! cg'
[ "$(detail status)" = prepared ] || fail "the cut prestart did not take effect: $out"

# The array refuses once with the armed error; nothing changes; then it starts.
svcemu_fault --command startfcconsistgrp --error CMMVC5907E || fail "could not arm the fault"
expect_svc 1 'startfcconsistgrp cg'
[ "$err" = "CMMVC5907E The FlashCopy mapping or consistency group was not started because the mapping or consistency group is already in the copying state." ] ||
    fail "the armed error: $err"
expect_svc 0 'lsfcconsistgrp -delim ! cg'
[ "$(detail status)" = prepared ] || fail "a refused start changed the group: $out"
expect_svc 0 'startfcconsistgrp cg'
expect_svc 0 'lsfcconsistgrp -delim ! cg'
[ "$(detail status)" = copying ] || fail "the start after the fault: $out"

# Over REST a dropped request gets no reply at all; --before: not run.
rest_auth superuser "$(cat "$SVCEMU_PASSWORD_FILE")"
token=$(echo "$body" | jq -r .token)
svcemu_fault --command stopfcconsistgrp --drop --before || fail "could not arm the fault"
rc=0
curl -s --cacert "$SVCEMU_CACERT" -X POST -H "X-Auth-Token: $token" \
    "$SVCEMU_REST_URL/rest/stopfcconsistgrp/cg" || rc=$?
[ $rc = 52 ] || fail "curl exited $rc, not 52 (empty reply)"
expect_rest 200 lsfcconsistgrp/cg
check_body '.status == "copying"'
expect_rest 200 stopfcconsistgrp/cg '{"force": true}'
expect_rest 200 lsfcconsistgrp/cg
check_body '.status == "stopped"'
grep -q "connection cut (injected fault)" "$SVCEMU_DIR/emu/commands.log" || fail "the log does not say so"
echo PASS
