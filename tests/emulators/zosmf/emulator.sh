# SPDX-License-Identifier: MIT
# tests/emulators/zosmf/emulator.sh — bring up an emulated z/OSMF whose
# batch jobs flash the emulated DS8000 (sourced; start-emulator.sh is the
# command-line wrapper).  Start the DS8000 emulator first: the jobs act on
# its state (DS8KEMU_DIR).
#
#   zosmfemu_start DIR [--port N] [--unreachable]
#                               start it in DIR and export ZOSMF_*; with
#                               --unreachable nothing listens on the port
#                               (a z/OS system that cannot be reached)
#   zosmfemu_devices DEVN=VOL[@IMAGE]... [--offline DEVN]...
#                               the device table: device numbers → volumes
#   zosmfemu_apar applied|missing   IOS APAR OA59561 on this system
#   zosmfemu_unreachable        stop listening (the URL stays, connections
#                               are refused)
#   zosmfemu_reachable          listen again on the same port
#   zosmfemu_stop DIR
#
# Exported (also in DIR/env): ZOSMF_DIR, ZOSMF_URL (https://127.0.0.1:PORT),
# ZOSMF_CACERT (its own CA), ZOSMF_USER (IBMUSER), ZOSMF_PASSWORD_FILE,
# ZOSMF_SYSNAME (SYS1).  Logs: DIR/rest.log, DIR/emu/commands.log (jobs,
# TSO commands and their return codes).

_zosmfemu_src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$_zosmfemu_src/../ds8000/emulator.sh"

_zosmfemu_listen()
{
    local dir=$1 port=$2
    rm -f "$dir/rest.port"
    python3 -B "$_zosmfemu_src/zosmfemu.py" rest --emu-dir "$dir/emu" --port "$port" \
        --port-file "$dir/rest.port" --cert "$dir/tls/server.pem" --key "$dir/tls/server.key" \
        >>"$dir/rest.log" 2>&1 &
    echo $! >"$dir/rest.pid"
    _ds8kemu_wait "$(cat "$dir/rest.pid")" "z/OSMF (zosmfemu.py rest)" test -s "$dir/rest.port"
}

zosmfemu_start()
{
    local dir=$1 port=0 unreachable=0
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
            --port) port=$2; shift ;;
            --unreachable) unreachable=1 ;;
            *) _ds8kemu_err "zosmfemu_start: unknown argument $1"; return 1 ;;
        esac
        shift
    done
    [ -n "${DS8KEMU_DIR:-}" ] || { _ds8kemu_err "zosmfemu_start: start the DS8000 emulator first"; return 1; }
    mkdir -p "$dir/emu" && dir=$(cd "$dir" && pwd -P) || return 1
    python3 -B "$_zosmfemu_src/zosmfemu.py" init --emu-dir "$dir/emu" --ds8k-emu-dir "$DS8KEMU_DIR/emu" \
        --password "Z$RANDOM$RANDOM" || return 1
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"]["IBMUSER"])' \
        "$dir/emu/config.json" >"$dir/password" && chmod 600 "$dir/password" || return 1
    ds8kemu_certs "$dir" || return 1
    if [ $unreachable = 1 ]; then
        [ "$port" != 0 ] || port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        echo "$port" >"$dir/port"
    else
        _zosmfemu_listen "$dir" "$port" || return 1
        cp "$dir/rest.port" "$dir/port"
    fi
    cat >"$dir/env" <<ENV
export ZOSMF_DIR='$dir'
export ZOSMF_URL='https://127.0.0.1:$(cat "$dir/port")'
export ZOSMF_CACERT='$dir/tls/ca.pem'
export ZOSMF_USER=IBMUSER
export ZOSMF_PASSWORD_FILE='$dir/password'
export ZOSMF_SYSNAME=SYS1
ENV
    . "$dir/env"
}

zosmfemu_devices()
{
    python3 -B "$_zosmfemu_src/zosmfemu.py" devices --emu-dir "$ZOSMF_DIR/emu" "$@"
}

zosmfemu_apar()
{
    python3 -B "$_zosmfemu_src/zosmfemu.py" apar --emu-dir "$ZOSMF_DIR/emu" "--$1"
}

zosmfemu_unreachable()
{
    local pid
    [ -f "$ZOSMF_DIR/rest.pid" ] || return 0
    pid=$(cat "$ZOSMF_DIR/rest.pid")
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$ZOSMF_DIR/rest.pid"
}

zosmfemu_reachable()
{
    [ -f "$ZOSMF_DIR/rest.pid" ] && return 0
    _zosmfemu_listen "$ZOSMF_DIR" "$(cat "$ZOSMF_DIR/port")"
}

zosmfemu_stop()
{
    local dir=$1 pid
    [ -f "$dir/rest.pid" ] || return 0
    pid=$(cat "$dir/rest.pid")
    kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -f "$dir/rest.pid"
}
