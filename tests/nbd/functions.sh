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
# Extra arguments go to `pitcopy serve`; with --nbd among them there may be
# no $sock (only the control socket is waited for then).
start_pitcopy()
{
    local i a own_nbd=0
    [ -x "$PITCOPY" ] || fail "$PITCOPY is missing: run make"
    for a in "$@"; do
        case "$a" in --nbd|--nbd=*) own_nbd=1 ;; esac
    done
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
        if { [ -S "$sock" ] || [ $own_nbd = 1 ]; } && [ -S "$state/control.sock" ]; then
            # The control socket answers only once the daemon is up (the
            # NBD listeners start before it).
            pc status >/dev/null 2>&1 && return 0
        fi
        kill -0 "$pitcopy_pid" 2>/dev/null || fail "pitcopy serve exited during start"
        sleep 0.1
    done
    fail "pitcopy serve did not create $sock within 30 s"
}

# `pitcopy serve` on a fresh state directory with "$@" must refuse to
# start: exit 1 within 20 s, leaving no socket.  Its output is in $refusal.
expect_refused()
{
    local dir rc=0
    new_tmpdir
    dir=$tmpdir/state
    refusal=$(timeout 20 "$PITCOPY" serve --state-dir "$dir" "$@" 2>&1) || rc=$?
    echo "$refusal"
    [ "$rc" = 1 ] || fail "pitcopy serve $* exited $rc, not 1 (refused)"
    [ ! -e "$dir/nbd.sock" ] && [ ! -e "$dir/control.sock" ] ||
        fail "a refused pitcopy serve left a socket in $dir"
}

# A free TCP port on 127.0.0.1 (nothing listens on it at the moment).
free_port()
{
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# TLS credentials for tests, in the layout qemu, nbdkit and libnbd read:
#   x509_creds DIR    a CA, and DIR/server (ca-cert.pem, server-cert.pem,
#                     server-key.pem 0600) for localhost, 127.0.0.1 and ::1;
#                     DIR/client (ca-cert.pem only: checks the server) and
#                     DIR/client-cert (also client-cert.pem, client-key.pem:
#                     a certificate the CA signed, for --tls-verify-peer);
#                     DIR/rogue-cert (a client certificate of another CA).
#   psk_file FILE USER   a new random 256-bit key for USER in FILE (0600), by
#                        psktool when there is one, else in its format.
# certtool (gnutls-bin) makes the certificates, else openssl; with neither
# the test is skipped.
x509_creds()
{
    local d=$1 ca
    mkdir -p "$d/server" "$d/client" "$d/client-cert" "$d/rogue-cert" "$d/ca" "$d/rogue" ||
        fail "mkdir $d"
    if command -v certtool >/dev/null 2>&1; then
        _certtool_ca "$d/ca" "pitcopy test CA"
        _certtool_ca "$d/rogue" "rogue CA"
        _certtool_cert "$d/ca" "$d/server" server localhost \
            "dns_name = localhost
ip_address = 127.0.0.1
ip_address = ::1
tls_www_server"
        _certtool_cert "$d/ca" "$d/client-cert" client "pitcopy test client" tls_www_client
        _certtool_cert "$d/rogue" "$d/rogue-cert" client "rogue client" tls_www_client
    elif command -v openssl >/dev/null 2>&1; then
        _openssl_ca "$d/ca" "pitcopy test CA"
        _openssl_ca "$d/rogue" "rogue CA"
        _openssl_cert "$d/ca" "$d/server" server localhost \
            "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
extendedKeyUsage=serverAuth"
        _openssl_cert "$d/ca" "$d/client-cert" client "pitcopy test client" \
            "extendedKeyUsage=clientAuth"
        _openssl_cert "$d/rogue" "$d/rogue-cert" client "rogue client" \
            "extendedKeyUsage=clientAuth"
    else
        echo "$(basename "$0"): neither certtool (gnutls-bin) nor openssl: skipping"
        exit 77
    fi
    for ca in server client client-cert; do
        cp "$d/ca/ca-cert.pem" "$d/$ca/" || fail "cp ca-cert.pem"
    done
    cp "$d/rogue/ca-cert.pem" "$d/rogue-cert/" || fail "cp ca-cert.pem"
}

_certtool_ca()
{
    printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 2\n' "$2" > "$1/ca.info"
    certtool --generate-privkey --key-type=ecdsa --outfile "$1/ca-key.pem" 2>/dev/null &&
    certtool --generate-self-signed --load-privkey "$1/ca-key.pem" --template "$1/ca.info" \
        --outfile "$1/ca-cert.pem" >/dev/null 2>&1 || fail "certtool: CA $2"
}

# CA_DIR OUT_DIR server|client CN EXTRA_TEMPLATE_LINES
_certtool_cert()
{
    printf 'cn = %s\nsigning_key\nencryption_key\nexpiration_days = 2\n%s\n' "$4" "$5" \
        > "$2/$3.info"
    (umask 077 && certtool --generate-privkey --key-type=ecdsa --outfile "$2/$3-key.pem" \
        2>/dev/null) &&
    certtool --generate-certificate --load-ca-certificate "$1/ca-cert.pem" \
        --load-ca-privkey "$1/ca-key.pem" --load-privkey "$2/$3-key.pem" \
        --template "$2/$3.info" --outfile "$2/$3-cert.pem" >/dev/null 2>&1 ||
        fail "certtool: $3 certificate $4"
    rm -f "$2/$3.info"
}

_openssl_ca()
{
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=$2" -keyout "$1/ca-key.pem" -out "$1/ca-cert.pem" >/dev/null 2>&1 ||
        fail "openssl: CA $2"
}

_openssl_cert()
{
    printf '%s\n' "$5" > "$2/$3.ext"
    (umask 077 && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=$4" -keyout "$2/$3-key.pem" -out "$2/$3.csr" >/dev/null 2>&1) &&
    openssl x509 -req -in "$2/$3.csr" -CA "$1/ca-cert.pem" -CAkey "$1/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$2/$3.ext" -out "$2/$3-cert.pem" >/dev/null 2>&1 ||
        fail "openssl: $3 certificate $4"
    rm -f "$2/$3.ext" "$2/$3.csr"
}

psk_file()
{
    local key
    if command -v psktool >/dev/null 2>&1; then
        (umask 077 && psktool -u "$2" -p "$1" >/dev/null) || fail "psktool -u $2 -p $1"
        return
    fi
    key=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n') || fail "od"
    (umask 077 && echo "$2:$key" >> "$1") || fail "psk_file $1"
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
