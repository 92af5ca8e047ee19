#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: many NBD connections at once (a few hundred, bounded in time), all served, none left behind.
. "$(dirname "$0")/functions.sh"
requires python3 --version

start_pitcopy
must pc volume create v1 --size 64M
must timeout 120 python3 "$(dirname "$0")/rawnbd.py" storm "$sock" v1 300
if command -v nbdinfo > /dev/null; then
    # Real clients in parallel too.
    pids=()
    for ((i = 0; i < 50; i++)); do
        nbdinfo --size "$(uri v1)" > /dev/null & pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || fail "a parallel nbdinfo failed"; done
fi
for ((i = 0; i < 100; i++)); do
    pc status --json | grep -Eq '"nbd_connections": *0' && break
    sleep 0.1
done
pc status --json | grep -Eq '"nbd_connections": *0' || { pc status; fail "connections left open"; }
stop_pitcopy || fail "pitcopy serve exited with $?"
exit 0
