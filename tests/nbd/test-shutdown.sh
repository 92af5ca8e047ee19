#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: SIGTERM under clients: options get NBD_REP_ERR_SHUTDOWN, late requests ESHUTDOWN, in-flight WRITEs complete and land, the daemon exits 0.
. "$(dirname "$0")/functions.sh"
requires python3 --version

# One worker: every connection shares the worker that gets the stop, so the
# first NBD_REP_ERR_SHUTDOWN tells the test that the stop has begun for all.
start_pitcopy --workers 1
vol=$tmpdir/v1.img
must pc volume create v1 --size 64M --file "$vol"

t0=$(date +%s)
must timeout 60 python3 "$(dirname "$0")/rawnbd.py" shutdown "$sock" v1 "$pitcopy_pid" \
    "$tmpdir/payload"

# rawnbd.py sent the SIGTERM: wait for the exit rather than signal again (a
# second signal means "quit at once").
rc=0
wait "$pitcopy_pid" || rc=$?
pitcopy_pid=""
[ "$rc" = 0 ] || fail "pitcopy serve exited with status $rc after SIGTERM"
# A handshake that never ends is cut off by the 5 s grace period; with
# slack for a loaded machine the whole stop stays well under 30 s.
secs=$(($(date +%s) - t0))
[ "$secs" -lt 30 ] || fail "the stop took $secs s"

# The WRITEs in flight at the stop reached the volume (2 x 1 MiB at 0).
cmp -n $((2 << 20)) "$vol" "$tmpdir/payload" || fail "an in-flight WRITE did not land"
grep -q "server shutting down" "$_pitcopy_log" || fail "no close line says why"
exit 0
