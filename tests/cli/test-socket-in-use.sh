#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: a daemon refuses an NBD or control socket path another daemon serves on (different state directories), leaves that daemon serving, and replaces a dead one's socket.
. "$(dirname "$0")/lib.sh"
requires nbdinfo --version

nbd="$tmp/shared-nbd.sock"
start_serve --nbd "unix:$nbd"
expect 0 pc volume create v --size 4M
ino=$(stat -c %i "$nbd")

# The first daemon still serves: the same socket file, the export readable
# over it, the control socket answering.
still_serving() {
    [ "$(stat -c %i "$nbd" 2>/dev/null)" = "$ino" ] || fail "$nbd was replaced or removed"
    expect 0 nbdinfo --size "nbd+unix:///v?socket=$nbd"
    [ "$out" = 4194304 ] || fail "nbdinfo over $nbd: size '$out', not 4194304"
    expect 0 pc status
}

# A second daemon, its own state directory, the first one's NBD path.  The
# timeout turns a daemon that wrongly starts into a failure (exit 124).
expect 1 timeout 20 "$PITCOPY" serve --state-dir "$tmp/state2" --nbd "unix:$nbd"
[ "$err" = "pitcopy: NBD socket $nbd is in use by another server; stop it or choose another path" ] ||
    fail "unexpected message: $err"
still_serving
[ ! -e "$tmp/state2/control.sock" ] || fail "the refused daemon left a control socket"

# The same for the control socket (the default NBD path of state3 is free).
expect 1 timeout 20 "$PITCOPY" serve --state-dir "$tmp/state3" --control "$STATE/control.sock"
[ "$err" = "pitcopy: control socket $STATE/control.sock is in use by another server; stop it or choose another path" ] ||
    fail "unexpected message: $err"
still_serving
[ ! -e "$tmp/state3/nbd.sock" ] || fail "the refused daemon left an NBD socket"

# Not a socket at all: left alone, refused.
touch "$tmp/file"
expect 1 timeout 20 "$PITCOPY" serve --state-dir "$tmp/state4" --nbd "unix:$tmp/file"
[ "$err" = "pitcopy: NBD socket $tmp/file exists and is not a socket; move it aside" ] ||
    fail "unexpected message: $err"
[ -f "$tmp/file" ] || fail "$tmp/file was removed"

# A daemon killed outright leaves both sockets; nobody answers there, so the
# next daemon, from another state directory, takes them over.
kill -KILL "$serve_pid"; wait "$serve_pid" 2>/dev/null; serve_pid=""
[ -S "$nbd" ] || fail "expected a stale NBD socket after SIGKILL"
STATE="$tmp/state5"
start_serve --nbd "unix:$nbd"
# (Not by inode number: the new socket may reuse the old one's inode.)
timeout 10 nbdinfo --list "nbd+unix://?socket=$nbd" >/dev/null 2>&1 ||
    fail "the stale socket was not replaced by one that answers"
expect 0 pc volume create w --size 8M
expect 0 nbdinfo --size "nbd+unix:///w?socket=$nbd"
[ "$out" = 8388608 ] || fail "nbdinfo over the new socket: size '$out'"
stop_serve
[ ! -e "$nbd" ] || fail "NBD socket left after a clean stop"
exit 0
