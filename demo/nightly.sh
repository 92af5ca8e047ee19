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
# `tape` file the checkpoint is backed up to.  The night runs as the bank
# runs it: a FlashCopy session (ledger -> checkpoint) with a quiesce and a
# thaw hook, flashed by a 23:59 schedule inside the daemon.  The daemon's
# clock is a test clock (PITCOPY_TEST_CLOCK), moved to 23:59 instead of
# waiting for it.  Every byte of the ledger moves
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
for tool in nbdcopy nbdinfo jq; do
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

today=$(date +%F)
say "22:00  pitcopy serve starts (state in $state; its clock says $today 22:00)"
PITCOPY_TEST_CLOCK="${today}T22:00:00" "$pitcopy" serve --state-dir "$state" 2>"$work/serve.log" &
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

say "23:30  the operator sets up the nightly session: hooks and a 23:59 schedule"
pc system add bank --type local
pc session create nightly --system bank --description "the ledger at 23:59, for tape"
pc session add-copyset nightly --h1 ledger --t1 checkpoint
# The quiesce hook: the batch is between steps, so quiescing is making sure
# nobody writes; it records the ledger's checksum at that moment, what the
# copy must equal.  The thaw hook releases the database.
cat >"$work/quiesce.sh" <<QUIESCE
#!/bin/sh
echo "  [pre-flash]  \$PITCOPY_SESSION: quiesce the database; ledger checksum taken"
"$ledger" checksum "$(uri ledger)" >"$work/flash_sum"
QUIESCE
cat >"$work/thaw.sh" <<THAW
#!/bin/sh
echo "  [post-flash] \$PITCOPY_SESSION: flash ok: \$PITCOPY_FLASH_OK; release the database"
THAW
chmod +x "$work/quiesce.sh" "$work/thaw.sh"
pc session set nightly --pre-flash "$work/quiesce.sh >>$work/hooks.log" \
    --post-flash "$work/thaw.sh >>$work/hooks.log" --hook-timeout 120
pc schedule add nightly-flash --session nightly --action flash --cron "59 23 * * *"
pc schedule list

say "23:59  the schedule fires: quiesce, flash (one point in time), thaw"
pc system clock --set "${today}T23:59:00"
for _ in $(seq 600); do
    outcome=$(pc schedule show nightly-flash --json | jq -r '.last_outcome // empty')
    [ -n "$outcome" ] && break
    sleep 0.05
done
[ "$outcome" = ok ] || { echo "demo: the 23:59 flash did not work: $outcome" >&2; pc session history nightly; exit 1; }
cat "$work/hooks.log"
flash_sum=$(cat "$work/flash_sum")
pc session show nightly | sed -n '/^state/,/^status/p;/^last freeze/p;/^last write hold/p'
echo "ledger checksum at the flash: $flash_sum"

say "00:00  step 2, 'disbursements', runs at once on the live ledger ... and fails half way"
if "$ledger" apply "$(uri ledger)" --step 2 --fail-at 50; then
    echo "demo: step 2 was meant to fail" >&2; exit 1
fi

say "00:01  meanwhile: the checkpoint goes to tape with nbdcopy, while the ledger keeps changing"
t0=$(clock)
nbdcopy --progress "$(uri checkpoint)" "$work/tape.img" &
tape=$!

say "00:02  restart: the ledger is restored from the checkpoint — at once, the tape still reading it"
pc session restore nightly
"$ledger" verify "$(uri ledger)" --step 1

say "00:03  step 2 again, from the restored ledger: to success"
"$ledger" apply "$(uri ledger)" --step 2
"$ledger" verify "$(uri ledger)" --step 2
wait "$tape"
tape_s=$(elapsed "$t0")

say "00:10  background copy: the restore finishes on disk; the checkpoint becomes a full, independent copy"
pc map wait csm-nightly-1-r --state idle_or_copied --timeout 600
pc session initiate-background-copy nightly --copy-rate 100
pc map wait csm-nightly-1 --state idle_or_copied --timeout 600
pc session show nightly

say "06:00  verify: the tape and the checkpoint are exactly the ledger at 23:59"
ckpt_sum=$("$ledger" checksum "$(uri checkpoint)")
tape_sum=$("$ledger" checksum "$work/tape.img")
echo "checksum at the flash:  $flash_sum"
echo "checkpoint now:         $ckpt_sum"
echo "tape:                   $tape_sum"
"$ledger" verify "$(uri checkpoint)" --step 1

bytes=$(stat -c %s "$work/tape.img")
say "06:00  the night in the session's history"
pc session history nightly
hold=$(pc session show nightly --json | jq -r .last_hold_ns)
freeze=$(pc session show nightly --json | jq -r .last_freeze_ms)
echo
echo "ledger:       $size, $(("$bytes" / 256)) accounts"
echo "flash:        writes held for $(awk -v n="$hold" 'BEGIN { printf "%.1f", n / 1000 }') us; database frozen $(awk -v n="$freeze" 'BEGIN { printf "%.1f", n }') ms (quiesce end to thaw start)"
echo "tape backup:  $((bytes >> 20)) MiB in ${tape_s} s ($(awk -v b="$bytes" -v s="$tape_s" 'BEGIN { printf "%.0f", b / 1048576 / s }') MiB/s) while the batch ran"
if [ "$ckpt_sum" = "$flash_sum" ] && [ "$tape_sum" = "$flash_sum" ]; then
    echo "RESULT: the copy is exactly right."
else
    echo "RESULT: MISMATCH — the copy is not the ledger at the flash." >&2
    exit 1
fi
