# SPDX-License-Identifier: MIT
# tests/emulators/ds8000/driver-lib.sh — what the `ds8000` driver tests share
# (sourced after lib.sh; the emulator's `pitcopy serve` is the array's, so the
# driver runs in a second one, the management host).
#
#   start_mgmt              a `pitcopy serve` with its state in $MGMT
#   pcm ARGS                the CLI against it
#   expect_pcm RC ARGS      run pcm ARGS, fail unless it exits RC; $out, $err
#   check_json FILTER       jq -e FILTER on $out
#   add_system NAME VIA [ARGS]   `system add NAME --type ds8000 --via VIA`
#   relationships           the array's FlashCopy pairs (lsflash), one a line
MGMT="$tmp/mgmt"
mgmt_pid=""

test_cleanup()
{
    if [ -n "$mgmt_pid" ]; then
        kill -KILL "$mgmt_pid" 2>/dev/null
        wait "$mgmt_pid" 2>/dev/null
    fi
    declare -F test_cleanup_more >/dev/null && test_cleanup_more
    return 0
}

start_mgmt()
{
    "$PITCOPY_BUILD/pitcopy" serve --state-dir "$MGMT" >>"$tmp/mgmt.log" 2>&1 &
    mgmt_pid=$!
    for _ in $(seq 100); do
        [ -S "$MGMT/control.sock" ] && pcm status >/dev/null 2>&1 && return 0
        kill -0 "$mgmt_pid" 2>/dev/null || fail "the management pitcopy serve exited at start"
        sleep 0.1
    done
    fail "the management pitcopy serve did not answer within 10 s"
}

pcm()
{
    "$PITCOPY_BUILD/pitcopy" --state-dir "$MGMT" "$@"
}

expect_pcm()
{
    local want=$1 rc=0
    shift
    pcm "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    out=$(cat "$tmp/out")
    err=$(cat "$tmp/err")
    if [ "$rc" != "$want" ]; then
        echo "command: pitcopy $*"; echo "stdout: $out"; echo "stderr: $err"
        echo "--- management daemon log:"; tail -n 30 "$tmp/mgmt.log"
        fail "exit $rc, expected $want"
    fi
}

check_json()
{
    echo "$out" | jq -e "$1" >/dev/null || { echo "$out"; fail "JSON check failed: $1"; }
}

add_system()
{
    local name=$1 via=$2
    shift 2
    expect_pcm 0 system add "$name" --type ds8000 --via "$via" \
        --hmc "$DS8KEMU_HOST:$DS8KEMU_PORT" --user "$DS8KEMU_USER" \
        --password-file "$DS8KEMU_PASSWORD_FILE" --cacert "$DS8KEMU_CACERT" \
        --dscli "$DS8KEMU_DSCLI" "$@"
}

relationships()
{
    expect_dscli 0 lsflash -fmt delim -hdr off -bnr off 0000-FFFF
    echo "$out" | grep -v '^CMUC00234I' | cut -d, -f1
}
