#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: as test-load.sh for 20 s, but the clients go on reading and writing the targets while their mappings start, stop and prepare: requests may fail only on a target that is changing or offline, must fail on an offline one, and every other check holds (tests/nbd/loadtest.c --rough).
#
# PITCOPY_LOAD_SECONDS lengthens the load (default 20), PITCOPY_LOAD_CLIENTS
# changes the number of clients (16), PITCOPY_SEED replays a run.
set -u
: "${PITCOPY_BUILD:=build}"
exec "$PITCOPY_BUILD/pitcopy-loadtest" --pitcopy "$PITCOPY_BUILD/pitcopy" --rough \
    --clients "${PITCOPY_LOAD_CLIENTS:-16}" --seconds "${PITCOPY_LOAD_SECONDS:-20}" \
    --seed "${PITCOPY_SEED:-$(date +%s)}"
