#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: restore over SSH — a reverse mapping started with -restore puts the source back as it was at the flash; without -restore it is refused.
. "$(dirname "$0")/lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator

M=$((4 * 1024 * 1024))
expect_svc 0 'mkvdisk -name ledger -mdiskgrp Pool0 -size 4 -unit mb'
expect_svc 0 'mkvdisk -name checkpoint -mdiskgrp Pool0 -size 4 -unit mb'
write_pattern ledger 0x11 0 $M
expect_svc 0 'mkfcmap -source ledger -target checkpoint -name fwd -copyrate 0'
expect_svc 0 'startfcmap -prep fwd'
write_pattern ledger 0x22 0 $((M / 2))            # the batch that failed

expect_svc 0 'mkfcmap -source checkpoint -target ledger -name undo -copyrate 0'
expect_svc 0 'lsfcmap -delim ! undo'
[ "$(detail partner_FC_name)" = fwd ] || fail "undo's partner: $out"
expect_svc 1 'startfcmap -prep undo'               # ledger is the source of a copying map
contains "$err" CMMVC5903E
expect_svc 0 'prestartfcmap -restore undo'
expect_svc 0 'lsfcmap -delim ! undo'
[ "$(detail status)" = prepared ] || fail "after prestartfcmap -restore: $out"
expect_svc 0 'startfcmap -restore undo'
expect_svc 0 'lsfcmap -delim ! undo'
[ "$(detail status)" = copying ] && [ "$(detail restoring)" = yes ] || fail "restoring: $out"

pattern_file "$tmp/want" 0x11 $M
read_vdisk ledger "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "ledger is not back as it was at the flash"
read_vdisk checkpoint "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "the checkpoint changed"
echo PASS
