#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: restore through the CLI and qemu-io: the source reads as its copy at once, through an orderly restart and a kill -9, and the copy keeps its point in time.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires qemu-io --version

start_serve
sock="$STATE/nbd.sock"

qio() {
    local name=$1 output
    shift
    output=$(qemu-io -f raw "$@" "nbd+unix:///$name?socket=$sock" 2>&1) ||
        fail "qemu-io $* on $name: $output"
    case "$output" in *"verification failed"*|*"failed:"*|*rror*)
        fail "qemu-io $* on $name: $output" ;; esac
}

expect 0 pc volume create ledger --size 16M
expect 0 pc volume create checkpoint --size 16M
qio ledger -c "write -P 0xa1 0 16M"
expect 0 pc map create ledger checkpoint --name flash --copy-rate 0
expect 0 pc map start flash
qio ledger -c "write -P 0xb2 2M 6M"           # the batch step that went wrong

# The restore mapping goes the other way; it starts only as a restore.
expect 0 pc map create checkpoint ledger --name undo --copy-rate 0
expect 1 pc map start undo
case "$err" in *"start it as a restore"*) ;; *) fail "plain start of a restore mapping: $err" ;; esac
expect 1 pc map delete flash
case "$err" in *"restore mapping, undo"*) ;; *) fail "deleting the partner: $err" ;; esac
expect 0 pc map start undo --restore --json
check_json '.restoring == true and .partner == "flash" and .state == "copying"'
qio ledger -c "read -P 0xa1 0 16M"            # the flash again, at once
qio checkpoint -c "read -P 0xa1 0 16M"
expect 1 pc map stop flash
case "$err" in *"being restored"*) ;; *) fail "stopping the partner mid-restore: $err" ;; esac

qio ledger -c "write -P 0xc3 4M 1M"           # step 2 reruns
qio checkpoint -c "write -P 0xd4 12M 64k"     # the copy is writable on its own
qio ledger -c "read -P 0xa1 0 4M" -c "read -P 0xc3 4M 1M" -c "read -P 0xa1 5M 11M"

# An orderly restart, then a kill -9: the restore resumes where it was.
stop_serve
start_serve
expect 0 pc map show undo --json
check_json '.restoring == true and .state == "copying"'
qio ledger -c "read -P 0xa1 0 4M" -c "read -P 0xc3 4M 1M" -c "read -P 0xa1 5M 11M"
qio ledger -c "write -P 0xe5 8M 4k"
kill -KILL "$serve_pid"; wait "$serve_pid" 2>/dev/null; serve_pid=""
start_serve
qio ledger -c "read -P 0xa1 0 4M" -c "read -P 0xc3 4M 1M" -c "read -P 0xa1 5M 3M" \
    -c "read -P 0xe5 8M 4k" -c "read -P 0xa1 8196k 8188k"
qio checkpoint -c "read -P 0xa1 0 12M" -c "read -P 0xd4 12M 64k" -c "read -P 0xa1 12352k 4032k"

expect 0 pc map set undo --copy-rate unlimited
expect 0 pc map wait undo --timeout 60 --json
check_json '.state == "idle_or_copied" and .restoring == false and .complete == true'
qio ledger -c "read -P 0xa1 0 4M" -c "read -P 0xc3 4M 1M" -c "read -P 0xa1 5M 3M" \
    -c "read -P 0xe5 8M 4k" -c "read -P 0xa1 8196k 8188k"
grep -q "restore of ledger complete" "$tmp/serve.log" || fail "no completion event"
expect 0 pc map delete undo
expect 0 pc map delete flash --force
stop_serve
exit 0
