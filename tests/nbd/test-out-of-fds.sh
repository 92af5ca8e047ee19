#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: a daemon out of file descriptors refuses a client it accepted but cannot serve, leaves new ones waiting (one log line, not one per retry), and serves them once descriptors are free again.
. "$(dirname "$0")/functions.sh"
requires python3 --version
requires prlimit --version
requires nbdinfo --version

start_pitcopy
must pc volume create v1 --size 16M

# RLIMIT_NOFILE bounds descriptor numbers, and the daemon's are not
# contiguous: the limit that leaves N numbers free is the (N+1)th free one.
limit_leaving() {
    ls "/proc/$pitcopy_pid/fd" | sort -n |
        awk -v n="$1" '{ used[$1] = 1 }
                       END { for (i = 0; ; i++) if (!(i in used) && ++free == n + 1) { print i; exit } }'
}
seven=$(limit_leaving 7)
six=$(limit_leaving 6)
# Soft limits only: raising it back needs no privilege.
old=$(prlimit --pid "$pitcopy_pid" --nofile --output SOFT --noheadings)
must prlimit --pid "$pitcopy_pid" --nofile="$seven:"

# A connection costs the daemon two descriptors (its socket and a dup for
# writing).  With seven free, three clients are served and the fourth is
# accepted into the seventh, then refused when its dup finds none left.
# With one number fewer, the next cannot even be accepted: it must wait,
# and be greeted once three others leave.
must python3 - "$sock" "$pitcopy_pid" "$six" <<'EOF'
import socket, subprocess, sys, time

path, pid, six = sys.argv[1:4]

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

def client():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    return s

served = []
for i in range(8):
    s = client()
    st = greeting(s, 2.0)
    if st != "greeted":
        break
    served.append(s)
if len(served) != 3 or st != "closed":
    sys.exit("expected three clients served and the fourth refused, got %d served, then %s"
             % (len(served), st))
subprocess.run(["prlimit", "--pid", pid, "--nofile=%s:" % six], check=True)
waiting = client()
for _ in range(2):
    st = greeting(waiting, 1.0)
    if st != "nothing":
        sys.exit("a client the daemon had no descriptor for was %s, not left waiting" % st)
for s in served:
    s.close()
t = time.time()
st = greeting(waiting, 5.0)
if st != "greeted":
    sys.exit("the waiting client was %s after descriptors were freed" % st)
print("the waiting client was greeted %.1f s after three others left" % (time.time() - t))
EOF

must prlimit --pid "$pitcopy_pid" --nofile="$old:"
n=$(grep -c "refusing a connection from unix socket (pid [0-9]*): dup: Too many open files" "$_pitcopy_log")
[ "$n" = 1 ] || fail "the refusal was logged $n times, not once"
# Some ten retries a second went by while the last client waited: the
# failure is logged once, and the recovery once.
n=$(grep -c "cannot accept a connection: Too many open files" "$_pitcopy_log")
[ "$n" = 1 ] || fail "the accept failure was logged $n times, not once"
grep -q "accepting connections again" "$_pitcopy_log" || fail "the recovery was not logged"
[ "$(nbdinfo --size "$(uri v1)")" = $((16 << 20)) ] || fail "nbdinfo after the shortage"
exit 0
