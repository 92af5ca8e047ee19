# SPDX-License-Identifier: MIT
# tests/emulators/ds8000/emulator.sh — bring up an emulated DS8000 (sourced;
# start-emulator.sh is the command-line wrapper).
#
#   ds8kemu_start DIR [PORT]     start it in DIR (created; PORT 0 or absent =
#                                a free one) and export DS8KEMU_*
#   ds8kemu_mkvol ID... SIZE     FB volumes of SIZE bytes (ID XYZZ: LSS XY)
#   ds8kemu_mkvol ID... --cyl N  CKD volumes of N cylinders
#   ds8kemu_stop DIR             stop everything ds8kemu_start started there
#   ds8kemu_certs DIR            a CA and a server certificate for 127.0.0.1
#                                in DIR/tls (the z/OSMF emulator uses it too)
#
# What runs, all on 127.0.0.1 and under DIR:
#   pitcopy serve    --state-dir DIR/state: the volumes and mappings
#   ds8kemu.py rest  the HMC on HTTPS: REST API (/api/v1) and the endpoint
#                    the dscli executable talks to; certificate from a CA
#                    of its own
# Exported (also written to DIR/env as `export` lines):
#   DS8KEMU_DIR, DS8KEMU_HOST (127.0.0.1), DS8KEMU_PORT, DS8KEMU_URL
#   (https://127.0.0.1:PORT/api/v1), DS8KEMU_CACERT, DS8KEMU_USER (admin),
#   DS8KEMU_PASSWORD_FILE, DS8KEMU_IMAGE (IBM.2107-75FA120), DS8KEMU_DSCLI
#   (DIR/bin/dscli: the dscli executable, its profile baked in; DIR/bin can
#   go first in PATH), PITCOPY_STATE_DIR, DS8KEMU_NBD_SOCK
# DS8KEMU_FREEZE_TIMEOUT (seconds, default 120): how long a -freeze holds
# an LSS frozen when no unfreezeflash comes.
# Logs: DIR/pitcopy.log, DIR/rest.log, DIR/emu/commands.log (every request
# and dscli line, its outcome, and each dscli's argv).
# Needs: openssl, python3, a built pitcopy ($PITCOPY, else
# $PITCOPY_BUILD/pitcopy, else build/pitcopy).  Returns 1 with a message on
# stderr if something fails.

_ds8kemu_src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_ds8kemu_err()
{
    echo "ds8kemu: $*" >&2
    return 1
}

# Wait up to 10 s for "$@" to succeed while process $1 is alive.
_ds8kemu_wait()
{
    local pid=$1 what=$2 i
    shift 2
    for ((i = 0; i < 200; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { _ds8kemu_err "$what exited at start"; return 1; }
        sleep 0.05
    done
    _ds8kemu_err "$what did not come up within 10 s"
}

ds8kemu_certs()
{
    local dir=$1
    [ -s "$dir/tls/server.pem" ] && return 0
    mkdir -p "$dir/tls" || return 1
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=pitcopy emulator test CA" -keyout "$dir/tls/ca.key" -out "$dir/tls/ca.pem" 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/tls/server.key" -out "$dir/tls/server.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/tls/server.csr" -CA "$dir/tls/ca.pem" -CAkey "$dir/tls/ca.key" \
        -CAcreateserial -days 2 -out "$dir/tls/server.pem" \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') \
        2>/dev/null || _ds8kemu_err "openssl could not make the test certificates"
}

ds8kemu_start()
{
    local dir=$1 port=${2:-0} pitcopy py
    py=$(command -v python3) || _ds8kemu_err "no python3" || return 1
    pitcopy=${PITCOPY:-${PITCOPY_BUILD:-$_ds8kemu_src/../../../build}/pitcopy}
    [ -x "$pitcopy" ] || { _ds8kemu_err "no pitcopy at $pitcopy: run make"; return 1; }
    pitcopy=$(cd "$(dirname "$pitcopy")" && pwd)/pitcopy
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd -P) || return 1
    mkdir -p "$dir/emu" "$dir/bin" || return 1

    "$pitcopy" serve --state-dir "$dir/state" >"$dir/pitcopy.log" 2>&1 &
    echo $! >"$dir/pitcopy.pid"
    _ds8kemu_wait "$(cat "$dir/pitcopy.pid")" "pitcopy serve" \
        "$pitcopy" --state-dir "$dir/state" status || return 1
    "$py" -B "$_ds8kemu_src/ds8kemu.py" init --emu-dir "$dir/emu" --pitcopy "$pitcopy" \
        --state-dir "$dir/state" --user admin --password "ds8k-$RANDOM$RANDOM" \
        --freeze-timeout "${DS8KEMU_FREEZE_TIMEOUT:-120}" || return 1
    "$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"]["admin"])' \
        "$dir/emu/config.json" >"$dir/password" && chmod 600 "$dir/password" || return 1

    ds8kemu_certs "$dir" || return 1
    "$py" -B "$_ds8kemu_src/ds8kemu.py" rest --emu-dir "$dir/emu" --port "$port" \
        --port-file "$dir/rest.port" --cert "$dir/tls/server.pem" --key "$dir/tls/server.key" \
        >"$dir/rest.log" 2>&1 &
    echo $! >"$dir/rest.pid"
    _ds8kemu_wait "$(cat "$dir/rest.pid")" "the HMC (ds8kemu.py rest)" test -s "$dir/rest.port" || return 1
    port=$(cat "$dir/rest.port")

    # The dscli executable: DSCLI's profile is where it finds the HMC's port and CA.
    printf 'hmc1: 127.0.0.1\nport: %s\ncacert: %s\ndevid: IBM.2107-75FA120\n' \
        "$port" "$dir/tls/ca.pem" >"$dir/dscli.profile"
    # -S: no site packages (stdlib only), half the start-up time.
    printf '#!/bin/sh\nexec %s -B -S %s dscli --profile %s "$@"\n' \
        "$py" "$_ds8kemu_src/ds8kemu.py" "$dir/dscli.profile" >"$dir/bin/dscli"
    chmod +x "$dir/bin/dscli"

    cat >"$dir/env" <<ENV
export DS8KEMU_DIR='$dir'
export DS8KEMU_HOST=127.0.0.1
export DS8KEMU_PORT=$port
export DS8KEMU_URL='https://127.0.0.1:$port/api/v1'
export DS8KEMU_CACERT='$dir/tls/ca.pem'
export DS8KEMU_USER=admin
export DS8KEMU_PASSWORD_FILE='$dir/password'
export DS8KEMU_IMAGE=IBM.2107-75FA120
export DS8KEMU_DSCLI='$dir/bin/dscli'
export PITCOPY_STATE_DIR='$dir/state'
export DS8KEMU_NBD_SOCK='$dir/state/nbd.sock'
ENV
    . "$dir/env"
}

ds8kemu_mkvol()
{
    local ids=() size
    while [ $# -gt 1 ] && [ "$1" != --cyl ]; do ids+=("$1"); shift; done
    if [ "$1" = --cyl ]; then size=(--cyl "$2"); else size=(--size "$1"); fi
    python3 -B "$_ds8kemu_src/ds8kemu.py" mkvol --emu-dir "$DS8KEMU_DIR/emu" "${ids[@]}" "${size[@]}"
}

ds8kemu_stop()
{
    local dir=$1 f pid
    for f in rest.pid pitcopy.pid; do
        [ -f "$dir/$f" ] || continue
        pid=$(cat "$dir/$f")
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        rm -f "$dir/$f"
    done
}
