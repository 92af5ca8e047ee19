#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: a daemon out of file descriptors leaves new NBD clients waiting (one log line, not one per retry), and serves them once descriptors are free again.
. "$(dirname "$0")/functions.sh"
requires python3 --version
requires prlimit --version
requires nbdinfo --version

start_pitcopy
must pc volume create v1 --size 16M
new_tmpdir

# Leave the daemon 6 free descriptor numbers: three connections (two
# descriptors each) take them all.  RLIMIT_NOFILE bounds the numbers, and
# the daemon's are not contiguous, so count the free ones from 0.
limit=$(ls "/proc/$pitcopy_pid/fd" | sort -n |
        awk '{ used[$1] = 1 } END { for (i = 0; ; i++) if (!(i in used) && ++free == 7) { print i; exit } }')
# The soft limit only: raising it back needs no privilege.
old=$(prlimit --pid "$pitcopy_pid" --nofile --output SOFT --noheadings)
must prlimit --pid "$pitcopy_pid" --nofile="$limit:"

# Connect until one client is not greeted; it must still be waiting a
# second later (queued, not refused), and be greeted within 5 s of three
# of the others leaving.
must python3 - "$sock" <<'EOF'
import socket, sys, time

def greeting(s, timeout):
    s.settimeout(timeout)
    got = b""
    try:
        while len(got) < 18:
            chunk = s.recv(18 - len(got))
            if not chunk:
                return "closed"
            got += chunk
    except socket.timeout:
        return "nothing"
    return "greeted"

served, waiting = [], None
for i in range(64):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    st = greeting(s, 1.0)
    if st == "greeted":
        served.append(s)
        continue
    if st == "closed":          # accepted, then no descriptor for its dup()
        continue
    if not served:
        sys.exit("connection %d waits with none served" % i)
    waiting = s
    break
if waiting is None:
    sys.exit("64 connections all served: the descriptor limit did not bite")
st = greeting(waiting, 1.0)
if st != "nothing":
    sys.exit("the waiting client was %s while the daemon had no descriptors" % st)
for s in served[:3]:
    s.close()
t = time.time()
st = greeting(waiting, 5.0)
if st != "greeted":
    sys.exit("the waiting client was %s after descriptors were freed" % st)
print("%d served, one waited and was greeted %.1f s after three left"
      % (len(served), time.time() - t))
EOF

must prlimit --pid "$pitcopy_pid" --nofile="$old:"
# Some ten retries a second went by: logged once, and the recovery once.
n=$(grep -c "cannot accept a connection: Too many open files" "$_pitcopy_log")
[ "$n" = 1 ] || fail "the accept failure was logged $n times, not once"
grep -q "accepting connections again" "$_pitcopy_log" || fail "the recovery was not logged"
[ "$(nbdinfo --size "$(uri v1)")" = $((16 << 20)) ] || fail "nbdinfo after the shortage"
exit 0
