#!/bin/bash
# SPDX-License-Identifier: MIT
#
# The bank's night, end to end, on pitcopy: `make demo` runs this.
#
#   demo/nightly.sh [BUILD]        BUILD defaults to build/
#
# Everything lives in a temporary directory (no root, nothing left behind):
# a `pitcopy serve` daemon, a `ledger` volume full of account records, a
# `checkpoint` volume that becomes its point-in-time copy at "23:59", and a
# `tape` file the checkpoint is backed up to.  Every byte of the ledger moves
# over NBD, through real clients: pitcopy-ledger (libnbd) for the batch
# steps, nbdcopy for the tape.
#
#   PITCOPY_DEMO_SIZE   ledger size (default 256M)
set -euo pipefail

build=${1:-build}
size=${PITCOPY_DEMO_SIZE:-256M}
here=$(cd "$(dirname "$0")/.." && pwd)
pitcopy="$here/$build/pitcopy"
ledger="$here/$build/pitcopy-ledger"
for tool in "$pitcopy" "$ledger"; do
    [ -x "$tool" ] || { echo "demo: $tool is missing; run 'make' first" >&2; exit 1; }
done
for tool in nbdcopy nbdinfo; do
    command -v $tool >/dev/null || { echo "demo: $tool is missing; run 'scripts/install-deps'" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/pitcopy-demo-XXXXXX")
state="$work/state"
daemon=""
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pc() { "$pitcopy" --state-dir "$state" "$@"; }
uri() { echo "nbd+unix:///$1?socket=$state/nbd.sock"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
clock() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(clock)" 'BEGIN { printf "%.2f", b - a }'; }

say "22:00  pitcopy serve starts (state in $state)"
"$pitcopy" serve --state-dir "$state" 2>"$work/serve.log" &
daemon=$!
for _ in $(seq 100); do
    [ -S "$state/control.sock" ] && [ -S "$state/nbd.sock" ] && break
    kill -0 "$daemon" 2>/dev/null || { cat "$work/serve.log"; exit 1; }
    sleep 0.05
done
pc volume create ledger --size "$size"
pc volume create checkpoint --size "$size"
nbdinfo --list "nbd+unix://?socket=$state/nbd.sock" | grep -E '^export=' || true

say "22:05  the ledger is opened: account records written over NBD"
"$ledger" fill "$(uri ledger)"

say "23:00  batch step 1, 'balance': a day's interest on every account"
"$ledger" apply "$(uri ledger)" --step 1

say "23:59  quiesce the database (step 1 is done, no writer is running) and flash"
pc map create ledger checkpoint --name nightly --copy-rate 0
flash_sum=$("$ledger" checksum "$(uri ledger)")
t0=$(clock)
pc map start nightly
echo "the database is released $(elapsed "$t0") s after the quiesce began; ledger checksum at the flash: $flash_sum"

say "00:00  step 2, 'disbursements', runs at once on the live ledger ... and fails half way"
if "$ledger" apply "$(uri ledger)" --step 2 --fail-at 50; then
    echo "demo: step 2 was meant to fail" >&2; exit 1
fi

say "00:01  meanwhile: the checkpoint goes to tape with nbdcopy, while the ledger keeps changing"
t0=$(clock)
nbdcopy --progress "$(uri checkpoint)" "$work/tape.img" &
tape=$!

say "00:02  restart: the ledger is restored from the checkpoint — at once, the tape still reading it"
pc map create checkpoint ledger --name undo --copy-rate 100
pc map start undo --restore
"$ledger" verify "$(uri ledger)" --step 1

say "00:03  step 2 again, from the restored ledger: to success"
"$ledger" apply "$(uri ledger)" --step 2
"$ledger" verify "$(uri ledger)" --step 2
wait "$tape"
tape_s=$(elapsed "$t0")

say "00:10  background copy: the restore finishes on disk; the checkpoint becomes a full, independent copy"
pc map wait undo --state idle_or_copied --timeout 600
pc map delete undo
pc map set nightly --copy-rate 100
pc map wait nightly --state idle_or_copied --timeout 600
pc map show nightly

say "06:00  verify: the tape and the checkpoint are exactly the ledger at 23:59"
ckpt_sum=$("$ledger" checksum "$(uri checkpoint)")
tape_sum=$("$ledger" checksum "$work/tape.img")
echo "checksum at the flash:  $flash_sum"
echo "checkpoint now:         $ckpt_sum"
echo "tape:                   $tape_sum"
"$ledger" verify "$(uri checkpoint)" --step 1

bytes=$(stat -c %s "$work/tape.img")
hold=$(pc map show nightly --json | sed -n 's/.*"start_hold_ns": *\([0-9]*\).*/\1/p')
echo
echo "ledger:       $size, $(("$bytes" / 256)) accounts"
echo "flash:        writes held for $(awk -v n="$hold" 'BEGIN { printf "%.1f", n / 1000 }') us"
echo "tape backup:  $((bytes >> 20)) MiB in ${tape_s} s ($(awk -v b="$bytes" -v s="$tape_s" 'BEGIN { printf "%.0f", b / 1048576 / s }') MiB/s) while the batch ran"
if [ "$ckpt_sum" = "$flash_sum" ] && [ "$tape_sum" = "$flash_sum" ]; then
    echo "RESULT: the copy is exactly right."
else
    echo "RESULT: MISMATCH — the copy is not the ledger at the flash." >&2
    exit 1
fi
