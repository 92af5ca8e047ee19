#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: consistency groups through the CLI and qemu-io: one point in time for log and table, the rules, restart, split and autodelete.
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

for v in log table logc tablec; do expect 0 pc volume create $v --size 8M; done
qio log -c "write -P 0x11 0 8M"
qio table -c "write -P 0x22 0 8M"

expect 0 pc group create bank
expect 1 pc group create bank
case "$err" in *"already exists"*) ;; *) fail "duplicate group: $err" ;; esac
expect 0 pc group show bank --json
check_json '.state == "empty" and (.mappings | length) == 0'
expect 1 pc group start bank
case "$err" in *"empty"*) ;; *) fail "starting an empty group: $err" ;; esac
expect 1 pc map create log logc --group nosuch
case "$err" in *"no consistency group named nosuch"*) ;; *) fail "unknown group: $err" ;; esac

expect 0 pc map create log logc --name mlog --group bank --copy-rate 0
expect 0 pc map create table tablec --name mtable --copy-rate 0
expect 0 pc map set mtable --group bank
expect 0 pc group show bank --json
check_json '.mappings == ["mlog", "mtable"] and .state == "idle_or_copied"'
# Members go with their group.
expect 1 pc map start mlog
case "$err" in *"consistency group bank"*) ;; *) fail "member started alone: $err" ;; esac

expect 0 pc group start bank --json
check_json '.state == "copying" and .start_hold_ns > 0 and .started_at != null'
expect 1 pc group start bank          # copying already: a new start needs a stop first
case "$err" in *"mlog is copying"*) ;; *) fail "restarting a copying group: $err" ;; esac
qio log -c "write -P 0x33 0 4M"
qio table -c "write -P 0x44 4M 4M"
qio logc -c "read -P 0x11 0 8M"
qio tablec -c "read -P 0x22 0 8M"
expect 0 pc map list
case "$out" in *GROUP*bank*) ;; *) fail "map list lacks the group column: $out" ;; esac
expect 1 pc map set mlog --no-group
case "$err" in *"copying"*) ;; *) fail "left a group while copying: $err" ;; esac

# The group and its membership survive a restart.
stop_serve
start_serve
expect 0 pc group show bank --json
check_json '.mappings == ["mlog", "mtable"] and .state == "copying"'
qio logc -c "read -P 0x11 0 8M"
jq -e '.groups == [{"name": "bank"}]' "$STATE/pitcopy.json" >/dev/null ||
    fail "pitcopy.json lacks the group: $(cat "$STATE/pitcopy.json")"

# Split needs progress 100; after a full copy it leaves independent targets.
expect 1 pc group stop bank --split
case "$err" in *"progress 100"*) ;; *) fail "split short of 100: $err" ;; esac
expect 0 pc map set mlog --copy-rate unlimited
expect 0 pc map set mtable --copy-rate unlimited
expect 0 pc map wait mlog --timeout 60
expect 0 pc map wait mtable --timeout 60
expect 0 pc group show bank --json
check_json '.state == "idle_or_copied"'

expect 1 pc group delete bank
case "$err" in *"2 mappings"*) ;; *) fail "deleting a group with members: $err" ;; esac
expect 0 pc group delete bank --force
expect 0 pc map show mlog --json
check_json '.group == null'
expect 0 pc group list --json
check_json '.groups == []'

# Autodelete: the mapping goes once its copy completes.
expect 0 pc volume create clone --size 8M
expect 0 pc map create log clone --name mclone --copy-rate unlimited --autodelete
expect 0 pc map show mclone --json
check_json '.autodelete == true'
expect 0 pc map start mclone
gone=0
for _ in $(seq 100); do
    if ! pc map show mclone >/dev/null 2>&1; then gone=1; break; fi
    sleep 0.1
done
[ $gone = 1 ] || fail "autodelete mapping still there after its copy completed"
grep -q "mapping mclone: copy complete; deleting it (autodelete)" "$tmp/serve.log" ||
    fail "no autodelete event in the log"
qio clone -c "read -P 0x33 0 4M" -c "read -P 0x11 4M 4M"

# map stop --split on a stand-alone mapping: the older target keeps its point in time.
expect 0 pc map delete mlog
expect 0 pc map create log logc --name old --copy-rate 0 --clean-rate 0
expect 0 pc map start old
expect 0 pc volume create newc --size 8M
expect 0 pc map create log newc --name new --copy-rate 0
expect 0 pc map start new
qio log -c "write -P 0x55 0 8M"       # every grain moves to newc; old reads through it
expect 0 pc map stop new --split
expect 0 pc map wait new --state idle_or_copied --timeout 30
qio newc -c "read -P 0x33 0 4M" -c "read -P 0x11 4M 4M"
qio logc -c "read -P 0x33 0 4M" -c "read -P 0x11 4M 4M"
stop_serve
exit 0
