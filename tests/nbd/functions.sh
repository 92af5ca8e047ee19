# SPDX-License-Identifier: MIT
#
# tests/nbd/functions.sh — what the NBD script tests share (STYLE.md §9).
#
#   . "$(dirname "$0")/functions.sh"
#   requires qemu-io --version        # exit 77 (skip) when a client is missing
#   start_pitcopy                     # a daemon on a fresh state directory
#   pc volume create v1 --size 64M    # the CLI, against that daemon
#   qemu-io -f raw -c ... "$(uri v1)"
#
# Exit codes: 0 pass, 1 fail, 77 skip (only for a missing client or a
# missing environment: root, a kernel feature).  On a failure the daemon's
# log is printed.  Everything started is stopped and everything created is
# removed on exit, whatever the exit (cleanup_fn, cleanup_fn_before_stop).
# The daemon is stopped with SIGTERM at exit, and must exit with status 0
# (a crash or a sanitizer report fails the test).
#
# The daemon is $PITCOPY_BUILD/pitcopy (the runner sets PITCOPY_BUILD; by
# default build/ under the source tree).

set -u

_srcdir=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
: "${PITCOPY_BUILD:=$_srcdir/build}"
case "$PITCOPY_BUILD" in
    /*) ;;
    *) PITCOPY_BUILD="$_srcdir/$PITCOPY_BUILD" ;;
esac
PITCOPY="$PITCOPY_BUILD/pitcopy"

_cleanup_fns=()
_early_cleanup_fns=()
_pitcopy_log=""

# Run "$@" (eval'd) at exit, last registered first.
cleanup_fn()
{
    _cleanup_fns+=("$*")
}

# The same, but before the daemon is stopped: for clients that must leave
# while it still answers (a filesystem mounted over one of its exports
# writes its superblock on umount).  These run before every cleanup_fn.
cleanup_fn_before_stop()
{
    _early_cleanup_fns+=("$*")
}

_at_exit()
{
    local rc=$? i st
    trap '' EXIT INT TERM
    for ((i = ${#_early_cleanup_fns[@]} - 1; i >= 0; i--)); do
        eval "${_early_cleanup_fns[i]}" || :
    done
    # The daemon must stop cleanly: a crash, or a sanitizer's report at
    # exit, fails a test that otherwise passed.
    if [ -n "${pitcopy_pid:-}" ]; then
        stop_pitcopy
        st=$?
        if [ "$st" != 0 ] && [ "$rc" = 0 ]; then
            echo "FAIL: pitcopy serve exited with status $st"
            rc=1
        fi
    fi
    if [ "$rc" != 0 ] && [ "$rc" != 77 ] && [ -n "$_pitcopy_log" ] && [ -f "$_pitcopy_log" ]; then
        echo "---- pitcopy serve log ($_pitcopy_log) ----"
        cat "$_pitcopy_log"
        echo "---- end of log ----"
    fi
    for ((i = ${#_cleanup_fns[@]} - 1; i >= 0; i--)); do
        eval "${_cleanup_fns[i]}" || :
    done
    exit "$rc"
}
trap _at_exit EXIT
trap 'exit 1' INT TERM

# Skip (77) unless "$@" runs and succeeds: probe a client before using it.
requires()
{
    if ! "$@" >/dev/null 2>&1; then
        echo "$(basename "$0"): '$*' failed: a client this test needs is missing, skipping"
        exit 77
    fi
}

fail()
{
    echo "FAIL: $*" >&2
    exit 1
}

# Run a command, failing the test with its name when it fails.
must()
{
    "$@" || fail "$* (exit $?)"
}

# A fresh temporary directory, removed at exit, in $tmpdir.  (Not for
# $(...): a subshell could not register the cleanup.)
new_tmpdir()
{
    tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/pitcopy-nbdtest-XXXXXX") || fail "mktemp"
    cleanup_fn "rm -rf '$tmpdir'"
}

# Start `pitcopy serve` on a fresh state directory and wait until both its
# sockets answer.  Sets: state (the directory), sock (its NBD socket: the
# default one, or the path of an --nbd unix:PATH argument), pitcopy_pid.
# Extra arguments go to `pitcopy serve`.
start_pitcopy()
{
    local i a
    [ -x "$PITCOPY" ] || fail "$PITCOPY is missing: run make"
    new_tmpdir
    state=$tmpdir/state
    _pitcopy_log="$state.log"
    "$PITCOPY" serve --state-dir "$state" "$@" > "$_pitcopy_log" 2>&1 &
    pitcopy_pid=$!
    sock="$state/nbd.sock"
    for a in "$@"; do
        case "$a" in
            unix:*) sock=${a#unix:} ;;
            --nbd=unix:*) sock=${a#--nbd=unix:} ;;
        esac
    done
    for ((i = 0; i < 300; i++)); do
        if [ -S "$sock" ] && [ -S "$state/control.sock" ]; then
            # The control socket answers only once the daemon is up.
            pc status >/dev/null 2>&1 && return 0
        fi
        kill -0 "$pitcopy_pid" 2>/dev/null || fail "pitcopy serve exited during start"
        sleep 0.1
    done
    fail "pitcopy serve did not create $sock within 30 s"
}

# SIGTERM, then wait (30 s at most) for a clean exit; SIGKILL otherwise.
# Returns the daemon's exit status (137 after SIGKILL).
stop_pitcopy()
{
    local i rc=0
    [ -n "${pitcopy_pid:-}" ] || return 0
    kill -TERM "$pitcopy_pid" 2>/dev/null
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pitcopy_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pitcopy_pid" 2>/dev/null; then
        echo "pitcopy serve did not stop within 30 s: killing it" >&2
        kill -KILL "$pitcopy_pid" 2>/dev/null
    fi
    wait "$pitcopy_pid" 2>/dev/null || rc=$?
    pitcopy_pid=""
    return $rc
}

# The CLI against the running daemon.
pc()
{
    "$PITCOPY" --state-dir "$state" "$@"
}

# The NBD URI of export NAME.
uri()
{
    echo "nbd+unix:///$1?socket=$sock"
}

# A file of SIZE random bytes (dd units, e.g. 16M) at PATH.
random_file()
{
    head -c "$2" /dev/urandom > "$1" || fail "random_file $1"
}
