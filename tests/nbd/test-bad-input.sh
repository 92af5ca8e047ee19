#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: malformed handshakes and requests get errors or a clean close, vanishing clients are survived, others keep being served.
. "$(dirname "$0")/functions.sh"
requires python3 --version

start_pitcopy
must pc volume create v1 --size 64M
must python3 "$(dirname "$0")/rawnbd.py" bad-input "$sock" v1
# The daemon is alive, answers, and sees no connection left behind.
kill -0 "$pitcopy_pid" || fail "pitcopy serve died"
for ((i = 0; i < 100; i++)); do
    pc status --json | grep -Eq '"nbd_connections": *0' && break
    sleep 0.1
done
pc status --json | grep -Eq '"nbd_connections": *0' || { pc status; fail "connections left open"; }
# A clean stop after all that.
stop_pitcopy || fail "pitcopy serve exited with $?"
exit 0
