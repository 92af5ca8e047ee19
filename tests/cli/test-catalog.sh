#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the mgmt catalog under concurrent CLI calls (WAL, busy timeout, one action per session) and when corrupt (a clear error, volumes still served, never a crash).
. "$(dirname "$0")/lib.sh"
requires jq --version

# A corrupt catalog: the daemon starts, says so, and serves volumes as usual.
mkdir -m 0700 "$STATE"
head -c 20000 /dev/urandom >"$STATE/catalog.db"
start_serve
expect 0 pc status --json
check_json '(.mgmt.error | test("corrupt or not a pitcopy catalog")) and .mgmt.sessions == null'
expect 1 pc session list
contains "$err" "catalog $STATE/catalog.db is corrupt"
contains "$err" "move it aside"
expect 1 pc system add here --type local
expect 1 pc schedule list --json
check_json '.error.code == -117'
expect 0 pc volume create v0 --size 1M
grep -q "catalog $STATE/catalog.db is corrupt" "$tmp/serve.log" || fail "the daemon did not log the corrupt catalog"
stop_serve
mv "$STATE/catalog.db" "$STATE/catalog.db.bad"

start_serve
expect 0 pc status --json
check_json '.mgmt.error == null and .mgmt.schema_version == 3'
expect 0 pc system add here --type local

# Concurrent CLI calls: every one answered, none lost.
n=12
pids=()
for i in $(seq $n); do
    ( pc volume create "h$i" --size 1M >/dev/null &&
      pc volume create "t$i" --size 1M >/dev/null &&
      pc session create "s$i" --system here >/dev/null &&
      pc session add-copyset "s$i" --h1 "h$i" --t1 "t$i" >/dev/null ) >"$tmp/c$i.out" 2>&1 &
    pids[$i]=$!
done
for i in $(seq $n); do
    wait "${pids[$i]}" || fail "concurrent call $i failed: $(cat "$tmp/c$i.out")"
done
expect 0 pc session list --json
check_json "(.sessions | length) == $n and ([.sessions[].copysets | length] | add) == $n"
# Racing for one name: exactly one wins.
for i in $(seq 8); do pc system add dup --type local >/dev/null 2>&1 & pids[$i]=$!; done
wins=0
for i in $(seq 8); do wait "${pids[$i]}" && wins=$((wins + 1)); done
[ "$wins" = 1 ] || fail "$wins of 8 concurrent 'system add dup' succeeded"
# Flashes of different sessions at once all work; the same session twice is refused.
for i in $(seq 6); do pc session flash "s$i" >"$tmp/f$i.out" 2>&1 & pids[$i]=$!; done
for i in $(seq 6); do wait "${pids[$i]}" || fail "flash s$i: $(cat "$tmp/f$i.out")"; done
expect 0 pc session set s1 --pre-flash "sleep 1"
pc session flash s1 >"$tmp/slow.out" 2>&1 &
slow=$!
sleep 0.3
expect 1 pc session flash s1
contains "$err" "session s1 is busy: a flash is in progress"
expect 1 pc session terminate s1
wait "$slow" || fail "the first flash failed: $(cat "$tmp/slow.out")"
expect 0 pc session history s1 --json
check_json '[.entries[] | select(.kind == "action") | .outcome] == ["ok", "ok"]'

# Damage inside a good catalog found while running: errors, never a crash.
stop_serve
size=$(stat -c %s "$STATE/catalog.db")
[ "$size" -gt 16384 ] || fail "catalog unexpectedly small: $size"
dd if=/dev/urandom of="$STATE/catalog.db" bs=4096 seek=1 count=$(( size / 4096 - 1 )) conv=notrunc 2>/dev/null
start_serve
expect 1 pc session list
contains "$err" "corrupt"
expect 0 pc volume list
stop_serve
echo ok
