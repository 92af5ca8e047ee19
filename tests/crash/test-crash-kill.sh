#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: 200 kill -9 crash points of a real daemon under random NBD load with mappings starting and stopping; after each restart every sector of the source and of every started target is checked (tests/crash/crashtest.c).
set -u
: "${PITCOPY_BUILD:=build}"
exec "$PITCOPY_BUILD/pitcopy-crashtest" --pitcopy "$PITCOPY_BUILD/pitcopy" --mode kill \
    --points "${PITCOPY_CRASH_POINTS:-200}" --seed "${PITCOPY_SEED:-$(date +%s)}"
