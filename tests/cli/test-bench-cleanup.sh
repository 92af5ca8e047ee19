#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: pitcopy-bench leaves nothing in its --dir or in /dev/shm, after a whole run of serve_rss (a pitcopy serve with 16 volumes and 8 mappings) and after one cut short by SIGINT while its daemon runs.
. "$(dirname "$0")/lib.sh"
requires qemu-io --version
BENCH="$PITCOPY_BUILD/pitcopy-bench"
[ -x "$BENCH" ] || { echo "no $BENCH: skipping"; exit 77; }

shm_before=$(ls /dev/shm | grep -c '^pitcopy-bench\.' || true)
leftovers() {
    local what=$1
    [ -z "$(ls -A "$tmp/work")" ] || fail "$what left in its --dir: $(find "$tmp/work" | head -20)"
    local shm
    shm=$(ls /dev/shm | grep -c '^pitcopy-bench\.' || true)
    [ "$shm" = "$shm_before" ] || fail "$what left a directory in /dev/shm: $(ls -d /dev/shm/pitcopy-bench.*)"
}

# A whole run: its daemon made a catalogue and kept eight mappings' metadata.
mkdir "$tmp/work"
expect 0 "$BENCH" --only serve_rss --dir "$tmp/work"
contains "$out" '"name":"serve_rss"'
leftovers "a whole serve_rss run"

# Cut short: SIGINT once its daemon has mappings (it logs each step).
"$BENCH" --only serve_rss --dir "$tmp/work" >"$tmp/cut.out" 2>"$tmp/cut.err" &
bench_pid=$!
for _ in $(seq 200); do
    grep -q 'mapping m0 started' "$tmp/cut.err" 2>/dev/null && break
    sleep 0.05
done
grep -q 'mapping m0 started' "$tmp/cut.err" || fail "the bench never started a mapping: $(tail -5 "$tmp/cut.err")"
kill -INT "$bench_pid"
wait "$bench_pid"
rc=$?
[ "$rc" = 130 ] || fail "the bench exited $rc on SIGINT, not 130"
sleep 0.5                       # its daemon dies with it (PR_SET_PDEATHSIG)
leftovers "a serve_rss run cut by SIGINT"
echo ok
