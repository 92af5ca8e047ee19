#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: 16 NBD clients of mixed I/O for 30 s while mappings start (quiesced and live), stop and change rates: no request fails, every read and at the end every byte is checked, the daemon's RSS stays within 8 MiB and its descriptors are the same (tests/nbd/loadtest.c).
#
# PITCOPY_LOAD_SECONDS lengthens the load (default 30), PITCOPY_LOAD_CLIENTS
# changes the number of clients (16), PITCOPY_SEED replays a run.
set -u
: "${PITCOPY_BUILD:=build}"
exec "$PITCOPY_BUILD/pitcopy-loadtest" --pitcopy "$PITCOPY_BUILD/pitcopy" \
    --clients "${PITCOPY_LOAD_CLIENTS:-16}" --seconds "${PITCOPY_LOAD_SECONDS:-30}" \
    --seed "${PITCOPY_SEED:-$(date +%s)}"
