#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: 60 simulated power cuts (writes not yet durable lost or torn at random, io/fault.h) of a real daemon under random NBD load with mappings starting and stopping; after each restart every sector is checked (tests/crash/crashtest.c).
set -u
: "${PITCOPY_BUILD:=build}"
exec "$PITCOPY_BUILD/pitcopy-crashtest" --pitcopy "$PITCOPY_BUILD/pitcopy" --mode power \
    --points "${PITCOPY_CRASH_POINTS:-60}" --seed "${PITCOPY_SEED:-$(date +%s)}"
