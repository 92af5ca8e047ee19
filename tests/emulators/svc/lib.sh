# SPDX-License-Identifier: MIT
# tests/emulators/svc/lib.sh — what the svc emulator tests share (sourced).
#
#   requires CMD...          exit 77 (skip) unless CMD runs
#   start_emulator [PORT]    svcemu_start in a private $tmp (stopped and
#                            removed at exit), REST on PORT (default: a free
#                            one); SVCEMU_* exported
#   svc 'LINE'               LINE over ssh, as a driver sends it (one
#                            multiplexed connection per test)
#   expect_svc RC 'LINE'     the same; fail unless it exits RC; $out, $err
#   rest_auth USER PASSWORD  POST /rest/auth; $code, $body
#   expect_rest CODE PATH [JSON]   POST /rest/PATH with $token; $body
#   field NAME               NAME's value in the first row of the -delim !
#                            concise view in $out (parsed by header)
#   detail NAME              NAME's value in the -delim ! detailed view in $out
#   write_pattern VDISK BYTE OFFSET LEN / read_vdisk VDISK FILE   over NBD
#   fail MSG                 print MSG and the emulator's logs, exit 1
set -u
_svc_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$_svc_dir/emulator.sh"
: "${PITCOPY_BUILD:=$_svc_dir/../../../build}"
case "$PITCOPY_BUILD" in /*) ;; *) PITCOPY_BUILD="$(pwd)/$PITCOPY_BUILD" ;; esac
export PITCOPY_BUILD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/svcemu-test.XXXXXX")
out="" err="" code="" body="" token=""

_svc_cleanup()
{
    [ -S "$tmp/ssh-mux" ] && ssh -o ControlPath="$tmp/ssh-mux" -O exit x >/dev/null 2>&1
    svcemu_stop "$tmp/emu"
    rm -rf "$tmp"
}
trap _svc_cleanup EXIT

requires()
{
    if ! "$@" >/dev/null 2>&1; then
        echo "$(basename "$0"): '$*' failed: a tool this test needs is missing, skipping"
        exit 77
    fi
}

fail()
{
    echo "FAIL: $*"
    local f
    for f in "$tmp/emu/emu/commands.log" "$tmp/emu/pitcopy.log" "$tmp/emu/sshd.log" "$tmp/emu/rest.log"; do
        [ -s "$f" ] || continue
        echo "--- ${f#$tmp/emu/}:"
        tail -n 40 "$f"
    done
    exit 1
}

start_emulator()
{
    requires /usr/sbin/sshd -V
    requires command -v ssh
    requires command -v ssh-keygen
    requires openssl version
    requires curl --version
    requires jq --version
    svcemu_start "$tmp/emu" "${1:-0}" || fail "the emulator did not start"
}

# One ssh connection carries every command of a test (a new session, so a
# new forced command, each): a handshake costs ~0.4 s on a busy machine.
svc()
{
    # shellcheck disable=SC2086 — the options are words by design
    ssh -o ControlMaster=auto -o ControlPath="$tmp/ssh-mux" -o ControlPersist=60 \
        $SVCEMU_SSH_OPTS "$SVCEMU_SSH_USER@$SVCEMU_HOST" "$@"
}

expect_svc()
{
    local want=$1 rc=0
    shift
    svc "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    if [ "$rc" != "$want" ]; then
        echo "command: $*"; echo "stdout: $out"; echo "stderr: $err"
        fail "exit $rc, expected $want"
    fi
}

contains()
{
    case "$1" in *"$2"*) return 0 ;; esac
    fail "expected to find '$2' in: $1"
}

field()
{
    echo "$out" | awk -F'!' -v want="$1" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == want) col = i; next }
        NR == 2 { if (col) print $col; else exit 1 }'
}

detail()
{
    echo "$out" | awk -v want="$1" 'index($0, want "!") == 1 { print substr($0, length(want) + 2); exit }'
}

rest_auth()
{
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$SVCEMU_CACERT" -X POST \
        -H "X-Auth-Username: $1" -H "X-Auth-Password: $2" "$SVCEMU_REST_URL/rest/auth") ||
        fail "curl could not reach $SVCEMU_REST_URL"
    body=$(cat "$tmp/body")
}

expect_rest()
{
    local want=$1 path=$2 json=${3:-}
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$SVCEMU_CACERT" -X POST \
        -H "X-Auth-Token: $token" -H 'Content-Type: application/json' \
        ${json:+--data "$json"} "$SVCEMU_REST_URL/rest/$path") ||
        fail "curl could not reach $SVCEMU_REST_URL"
    body=$(cat "$tmp/body")
    [ "$code" = "$want" ] || { echo "POST /rest/$path $json → $code: $body"; fail "HTTP $code, expected $want"; }
}

check_body()
{
    echo "$body" | jq -e "$1" >/dev/null || { echo "$body"; fail "JSON check failed: $1"; }
}

# The NBD URI of a vdisk (by its SVC name: renamed vdisks keep their pitcopy name).
nbd_uri()
{
    local pc
    pc=$(jq -r --arg n "$1" '[.vdisks[] | select(.name == $n) | .pc][0] // $n' \
        "$SVCEMU_DIR/emu/state.json" 2>/dev/null) || pc=$1
    echo "nbd+unix:///$pc?socket=$SVCEMU_NBD_SOCK"
}

write_pattern()
{
    qemu-io -f raw -c "write -P $2 $3 $4" "$(nbd_uri "$1")" >/dev/null ||
        fail "qemu-io could not write to $1"
}

read_vdisk()
{
    rm -f "$2"
    nbdcopy "$(nbd_uri "$1")" "$2" || fail "nbdcopy could not read $1"
}

# A file of SIZE bytes of BYTE (a pattern image to compare against).
pattern_file()
{
    head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$2")" >"$1"
}
