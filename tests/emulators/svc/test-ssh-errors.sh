#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the array's refusals over SSH — CMMVC code and text on stderr, exit 1, nothing changed — and the SSH edge: unknown host key, login shell, parallel sessions.
. "$(dirname "$0")/lib.sh"
start_emulator

# expect_cmmvc 'LINE' CODE: refused with exactly CODE's line and no stdout.
expect_cmmvc()
{
    expect_svc 1 "$1"
    [ -z "$out" ] || fail "$1: a refusal printed on stdout: $out"
    case "$err" in "$2 "*) ;; *) fail "$1: expected $2, got: $err" ;; esac
}

for v in a b c d; do expect_svc 0 "mkvdisk -name $v -mdiskgrp Pool0 -size 4 -unit mb"; done
expect_svc 0 'mkvdisk -name small -mdiskgrp Pool0 -size 1 -unit mb'

# Unknown objects.
expect_cmmvc 'svcinfo lsvdisk nosuch' CMMVC5754E
[ "$err" = "CMMVC5754E The specified object does not exist, or the name supplied does not meet the naming rules." ] ||
    fail "CMMVC5754E text: $err"
expect_cmmvc 'svctask mkfcmap -source nosuch -target b' CMMVC5754E
expect_cmmvc 'svctask mkfcmap -source a -target 99' CMMVC5754E
expect_cmmvc 'svctask startfcmap nosuch' CMMVC5753E
expect_cmmvc 'svctask rmfcconsistgrp 7' CMMVC5753E
expect_cmmvc 'svctask mkvdisk -name e -mdiskgrp nopool -size 4 -unit mb' CMMVC5754E

# Bad command lines.
expect_cmmvc 'svctask mkfcmap -source a' CMMVC5707E
expect_cmmvc 'svctask mkfcmap -source a -target b -bogus' CMMVC5709E
[ "$err" = "CMMVC5709E [-bogus] is not a supported parameter." ] || fail "CMMVC5709E text: $err"
expect_cmmvc 'svctask startfcmap' CMMVC5701E
expect_cmmvc 'svctask mkfcmap -source a -target b -copyrate 151' CMMVC5767E
expect_cmmvc 'svctask mkfcconsistgrp -name 1bad' CMMVC6527E

# mkfcmap's rules: same volume, sizes, one mapping per target.
expect_cmmvc 'svctask mkfcmap -source a -target a' CMMVC6303E
expect_cmmvc 'svctask mkfcmap -source a -target small' CMMVC5924E
expect_svc 0 'svctask mkfcmap -source a -target b -name m1 -copyrate 0'
expect_cmmvc 'svctask mkfcmap -source a -target b' CMMVC6466E
expect_cmmvc 'svctask mkfcmap -source c -target b' CMMVC5753E
expect_cmmvc 'svctask mkfcmap -source c -target d -name m1' CMMVC6035E
expect_svc 0 'svcinfo lsvdiskfcmappings -delim ! b'
[ "$out" = 'id!name
0!m1' ] || fail "b's mappings: $out"
expect_cmmvc 'svctask rmvdisk b' CMMVC5840E

# The state machine.
expect_svc 0 'svctask stopfcmap m1'              # idle_or_copied: no effect
[ -z "$out" ] || fail "stopfcmap printed $out"
expect_cmmvc 'svctask startfcmap m1' CMMVC5903E  # not prepared
expect_svc 0 'svctask prestartfcmap m1'
expect_cmmvc 'svctask prestartfcmap m1' CMMVC5903E
expect_svc 0 'svctask startfcmap m1'
expect_cmmvc 'svctask startfcmap -prep m1' CMMVC5907E
expect_cmmvc 'svctask rmfcmap m1' CMMVC5903E     # copying
expect_cmmvc 'svctask stopfcmap -split m1' CMMVC5903E   # progress is not 100
expect_svc 0 'svcinfo lsfcmap -delim ! m1'
[ "$(detail status)" = copying ] || fail "a refused command changed m1: $out"
expect_svc 0 'svctask chfcmap -copyrate 10 m1'   # any state
expect_svc 0 'svctask stopfcmap -force m1'
expect_cmmvc 'svctask stopfcmap m1' CMMVC5912E
expect_cmmvc 'svctask rmfcmap m1' CMMVC5903E     # stopped needs -force
expect_svc 0 'svctask rmfcmap -force m1'

# Groups: an unprepared group does not start; members move only with it.
expect_svc 0 'svctask mkfcconsistgrp'
[ "$out" = "FlashCopy Consistency Group, id [1], successfully created" ] || fail "$out"
expect_svc 0 'svctask mkfcmap -source c -target d -consistgrp fccstgrp1 -copyrate 0'
expect_cmmvc 'svctask startfcconsistgrp fccstgrp1' CMMVC5903E
expect_svc 0 'svcinfo lsfcconsistgrp -delim !'
[ "$(field status)" = idle_or_copied ] || fail "a refused start changed the group: $out"
expect_cmmvc 'svctask prestartfcmap 0' CMMVC5903E
expect_svc 0 'svctask startfcconsistgrp -prep 1'
expect_cmmvc 'svctask chfcmap -consistgrp 0 0' CMMVC5903E
expect_cmmvc 'svctask rmfcconsistgrp 1' CMMVC5903E
expect_svc 0 'svctask stopfcconsistgrp -force 1'
expect_svc 0 'svctask chfcmap -consistgrp 0 0'
expect_svc 0 'svctask rmfcconsistgrp 1'
expect_svc 0 'svcinfo lsfcmap -nohdr -delim :'
case "$out" in "0:fcmap0:2:c:3:d:::stopped:"*) ;; *) fail "stand-alone map: $out" ;; esac

# Output forms: padded columns without -delim, no header with -nohdr.
expect_svc 0 'lsfcmap'
case "$out" in "id name   "*) ;; *) fail "lsfcmap without -delim: $out" ;; esac
# Several commands in one exec, as the array's shell runs them.
expect_svc 0 'lsvdisk -nohdr -delim ! 0;lsvdisk -delim , -filtervalue name=d'
contains "$out" "name!a"
contains "$out" "3,d,"

# No command: the array has no login shell for this key.
expect_svc 1 ''
contains "$err" "takes commands only"
# A host key the client does not know: ssh refuses before any command runs.
: >"$tmp/empty_known_hosts"
rc=0
# shellcheck disable=SC2086
ssh -o UserKnownHostsFile="$tmp/empty_known_hosts" $SVCEMU_SSH_OPTS \
    "$SVCEMU_SSH_USER@$SVCEMU_HOST" 'svctask mkvdisk -name e -mdiskgrp Pool0 -size 4 -unit mb' \
    >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc = 255 ] || fail "ssh with an unknown host key exited $rc"
contains "$(cat "$tmp/err")" "Host key verification failed"
expect_cmmvc 'lsvdisk e' CMMVC5754E

# Parallel sessions: the store lock gives every vdisk its own id.
pids=()
for i in $(seq 8); do
    svc "mkvdisk -name p$i -mdiskgrp Pool0 -size 4 -unit mb" >"$tmp/par$i" 2>&1 &
    pids+=($!)
done
wait "${pids[@]}"
cat "$tmp"/par* | sort | uniq -c | awk '$1 != 1 { exit 1 }' || fail "duplicate ids: $(cat "$tmp"/par*)"
[ "$(cat "$tmp"/par* | grep -c 'successfully created')" = 8 ] || fail "parallel mkvdisk: $(cat "$tmp"/par*)"
expect_svc 0 'lsvdisk -nohdr -delim !'
[ "$(echo "$out" | wc -l)" = 13 ] || fail "vdisks after the parallel creates: $out"
echo PASS
