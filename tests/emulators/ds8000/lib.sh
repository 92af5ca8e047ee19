# SPDX-License-Identifier: MIT
# tests/emulators/ds8000/lib.sh — what the DS8000 emulator tests share (sourced).
#
#   requires CMD...             exit 77 (skip) unless CMD runs
#   start_emulator              ds8kemu_start in a private $tmp (stopped and
#                               removed at exit); DS8KEMU_* exported
#   mkvol ID... SIZE | ID... --cyl N   volumes (ds8kemu_mkvol)
#   dscli ARGS...               the dscli executable with -hmc1, -user, -pwfile
#   expect_dscli RC ARGS...     the same; fail unless it exits RC; $out, $err
#   field NAME [ROW]            NAME's value in row ROW (default 1) of the
#                               -fmt delim output in $out (parsed by header)
#   rest_login USER PASSWORD    POST /tokens; $code, $body, $token
#   expect_rest CODE METHOD PATH [JSON]   with $token; $body
#   check_body JQ               fail unless JQ holds on $body
#   write_pattern VOL BYTE OFFSET LEN / read_vol VOL FILE   over NBD
#   pattern_file FILE BYTE SIZE a file of SIZE bytes of BYTE
#   contains TEXT PART          fail unless TEXT contains PART
#   fail MSG                    print MSG and the emulator's logs, exit 1
set -u
_ds8k_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$_ds8k_dir/emulator.sh"
: "${PITCOPY_BUILD:=$_ds8k_dir/../../../build}"
case "$PITCOPY_BUILD" in /*) ;; *) PITCOPY_BUILD="$(pwd)/$PITCOPY_BUILD" ;; esac
export PITCOPY_BUILD
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ds8kemu-test.XXXXXX")
out="" err="" code="" body="" token=""

_ds8k_cleanup()
{
    declare -F test_cleanup >/dev/null && test_cleanup
    ds8kemu_stop "$tmp/emu"
    rm -rf "$tmp"
}
trap _ds8k_cleanup EXIT

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
    for f in "$tmp/emu/emu/commands.log" "$tmp/emu/pitcopy.log" "$tmp/emu/rest.log" \
             "$tmp/zosmf/emu/commands.log" "$tmp/zosmf/rest.log"; do
        [ -s "$f" ] || continue
        echo "--- ${f#"$tmp"/}:"
        tail -n 40 "$f"
    done
    exit 1
}

contains()
{
    case "$1" in *"$2"*) return 0 ;; esac
    fail "expected to find '$2' in: $1"
}

start_emulator()
{
    requires openssl version
    requires curl --version
    requires jq --version
    ds8kemu_start "$tmp/emu" || fail "the emulator did not start"
}

mkvol()
{
    ds8kemu_mkvol "$@" || fail "could not make volume $1"
}

dscli()
{
    "$DS8KEMU_DSCLI" -hmc1 "$DS8KEMU_HOST" -user "$DS8KEMU_USER" -pwfile "$DS8KEMU_PASSWORD_FILE" "$@"
}

expect_dscli()
{
    local want=$1 rc=0
    shift
    dscli "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    if [ "$rc" != "$want" ]; then
        echo "dscli $*"; echo "stdout: $out"; echo "stderr: $err"
        fail "dscli exit $rc, expected $want"
    fi
}

# NAME's value in data row ROW of delimited output (header, a rule of '=', rows).
field()
{
    echo "$out" | awk -F, -v want="$1" -v row="${2:-1}" '
        /^Date\/Time:/ { next }
        !hdr { for (i = 1; i <= NF; i++) if ($i == want) col = i; hdr = 1; next }
        /^=+$/ { next }
        { if (++n == row) { if (col) print $col; else exit 1; exit } }'
}

rest_login()
{
    code=$(curl -s -o "$tmp/body" -D "$tmp/headers" -w '%{http_code}' --cacert "$DS8KEMU_CACERT" \
        -X POST -H 'Content-Type: application/json' \
        --data "$(jq -cn --arg u "$1" --arg p "$2" '{request: {params: {username: $u, password: $p}}}')" \
        "$DS8KEMU_URL/tokens") || fail "curl could not reach $DS8KEMU_URL"
    body=$(cat "$tmp/body")
    token=$(echo "$body" | jq -r '.token.token // empty')
}

expect_rest()
{
    local want=$1 method=$2 path=$3 json=${4:-}
    code=$(curl -s -o "$tmp/body" -w '%{http_code}' --cacert "$DS8KEMU_CACERT" -X "$method" \
        -H "X-Auth-Token: $token" -H 'Content-Type: application/json' \
        ${json:+--data "$json"} "$DS8KEMU_URL$path") || fail "curl could not reach $DS8KEMU_URL"
    body=$(cat "$tmp/body")
    [ "$code" = "$want" ] || { echo "$method $path $json → $code: $body"; fail "HTTP $code, expected $want"; }
}

check_body()
{
    echo "$body" | jq -e "$1" >/dev/null || { echo "$body"; fail "JSON check failed: $1"; }
}

nbd_uri()
{
    echo "nbd+unix:///${DS8KEMU_IMAGE##*-}-$1?socket=$DS8KEMU_NBD_SOCK"
}

write_pattern()
{
    qemu-io -f raw -c "write -P $2 $3 $4" "$(nbd_uri "$1")" >/dev/null ||
        fail "qemu-io could not write to $1"
}

read_vol()
{
    rm -f "$2"
    nbdcopy "$(nbd_uri "$1")" "$2" || fail "nbdcopy could not read $1"
}

pattern_file()
{
    head -c "$3" /dev/zero | tr '\0' "\\$(printf '%03o' "$2")" >"$1"
}
