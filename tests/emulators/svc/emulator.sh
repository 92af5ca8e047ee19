# SPDX-License-Identifier: MIT
# tests/emulators/svc/emulator.sh — bring up an emulated Spectrum Virtualize
# array (sourced; start-emulator.sh is the command-line wrapper).
#
#   svcemu_start DIR [REST_PORT]   start it in DIR (created; REST_PORT 0 or
#                                  absent = a free port) and export SVCEMU_*
#   svcemu_stop DIR                stop everything svcemu_start started there
#   svcemu_fault ARGS...           arm a fault in the running emulator:
#       --command CMD (--error CMMVCnnnnE | --drop) [--before] [--times N]
#       the next N CMD fail with that error, or lose their connection after
#       taking effect (--before: instead of taking effect)
#
# What runs, all on 127.0.0.1 and under DIR:
#   pitcopy serve   --state-dir DIR/state: the volumes and mappings
#   sshd            a real OpenSSH sshd (generated host key, one user key)
#                   whose ForceCommand is `svcemu.py ssh`: the array's CLI
#   svcemu.py rest  the array's REST API on HTTPS, certificate from a
#                   generated CA
# Exported (also written to DIR/env as `export` lines):
#   SVCEMU_DIR, SVCEMU_HOST (127.0.0.1), SVCEMU_SSH_PORT, SVCEMU_SSH_USER,
#   SVCEMU_SSH_KEY, SVCEMU_KNOWN_HOSTS, SVCEMU_SSH_OPTS (the ssh options that
#   use them), SVCEMU_REST_URL (https://127.0.0.1:PORT), SVCEMU_CACERT,
#   SVCEMU_REST_USER, SVCEMU_PASSWORD_FILE, PITCOPY_STATE_DIR, SVCEMU_NBD_SOCK
# Logs: DIR/pitcopy.log, DIR/sshd.log, DIR/rest.log, DIR/emu/commands.log
# (every command the array ran, and its outcome).
# Needs: sshd and ssh-keygen (openssh-server, openssh-client), openssl,
# python3; a built pitcopy ($PITCOPY, else $PITCOPY_BUILD/pitcopy, else
# build/pitcopy).  Returns 1 with a message on stderr if something fails.

_svcemu_src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

_svcemu_free_port()
{
    "$_svcemu_python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_svcemu_err()
{
    echo "svcemu_start: $*" >&2
    return 1
}

# Wait up to 10 s for "$@" to succeed, while the process $1... is alive.
_svcemu_wait()
{
    local pid=$1 what=$2 i
    shift 2
    for ((i = 0; i < 200; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        kill -0 "$pid" 2>/dev/null || { _svcemu_err "$what exited at start"; return 1; }
        sleep 0.05
    done
    _svcemu_err "$what did not come up within 10 s"
}

_svcemu_port_open()
{
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

svcemu_start()
{
    local dir=$1 rest_port=${2:-0} pitcopy ssh_port user
    # sshd's ForceCommand runs with sshd's PATH: name the interpreter in full.
    _svcemu_python=/usr/bin/python3
    [ -x "$_svcemu_python" ] || _svcemu_python=$(command -v python3) || _svcemu_err "no python3" || return 1
    pitcopy=${PITCOPY:-${PITCOPY_BUILD:-$_svcemu_src/../../../build}/pitcopy}
    [ -x "$pitcopy" ] || { _svcemu_err "no pitcopy at $pitcopy: run make"; return 1; }
    pitcopy=$(cd "$(dirname "$pitcopy")" && pwd)/pitcopy
    mkdir -p "$dir" && dir=$(cd "$dir" && pwd -P) || return 1
    mkdir -p "$dir/ssh" "$dir/tls" "$dir/emu" || return 1
    user=$(id -un)

    # 1. pitcopy serve
    "$pitcopy" serve --state-dir "$dir/state" >"$dir/pitcopy.log" 2>&1 &
    echo $! >"$dir/pitcopy.pid"
    _svcemu_wait "$(cat "$dir/pitcopy.pid")" "pitcopy serve" \
        "$pitcopy" --state-dir "$dir/state" status || return 1
    "$_svcemu_python" -B "$_svcemu_src/svcemu.py" init --emu-dir "$dir/emu" --pitcopy "$pitcopy" \
        --state-dir "$dir/state" --user superuser --password "svcemu-$RANDOM$RANDOM" || return 1
    "$_svcemu_python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["users"]["superuser"])' \
        "$dir/emu/config.json" >"$dir/password" && chmod 600 "$dir/password" || return 1

    # 2. sshd with a forced command
    ssh-keygen -q -t ed25519 -N '' -C svcemu-host -f "$dir/ssh/host_key" || return 1
    ssh-keygen -q -t ed25519 -N '' -C svcemu-user -f "$dir/ssh/id_ed25519" || return 1
    echo "restrict $(cat "$dir/ssh/id_ed25519.pub")" >"$dir/ssh/authorized_keys"
    ssh_port=$(_svcemu_free_port)
    echo "[127.0.0.1]:$ssh_port $(cut -d' ' -f1,2 "$dir/ssh/host_key.pub")" >"$dir/ssh/known_hosts"
    # sshd runs the forced command through the user's shell; Debian's bash
    # then reads ~/.bashrc (slow on a developer's machine) unless it thinks
    # it is nested: SHLVL=1 says so.
    cat >"$dir/ssh/sshd_config" <<CONF
Port $ssh_port
ListenAddress 127.0.0.1
HostKey $dir/ssh/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/ssh/authorized_keys
AllowUsers $user
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitTTY no
AllowTcpForwarding no
X11Forwarding no
PrintMotd no
MaxStartups 50:30:100
LogLevel ERROR
SetEnv SHLVL=1
ForceCommand $_svcemu_python -B $_svcemu_src/svcemu.py ssh --emu-dir $dir/emu
CONF
    # As root sshd separates privileges into /run/sshd, which must exist.
    [ "$(id -u)" != 0 ] || mkdir -p /run/sshd
    /usr/sbin/sshd -D -f "$dir/ssh/sshd_config" -E "$dir/sshd.log" &
    echo $! >"$dir/sshd.pid.bg"
    _svcemu_wait "$(cat "$dir/sshd.pid.bg")" sshd _svcemu_port_open "$ssh_port" || return 1

    # 3. REST on HTTPS, with a CA of its own
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=svcemu test CA" -keyout "$dir/tls/ca.key" -out "$dir/tls/ca.pem" 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=127.0.0.1" \
        -keyout "$dir/tls/server.key" -out "$dir/tls/server.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/tls/server.csr" -CA "$dir/tls/ca.pem" -CAkey "$dir/tls/ca.key" \
        -CAcreateserial -days 2 -out "$dir/tls/server.pem" \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') \
        2>/dev/null || { _svcemu_err "openssl could not make the test certificates"; return 1; }
    "$_svcemu_python" -B "$_svcemu_src/svcemu.py" rest --emu-dir "$dir/emu" --port "$rest_port" \
        --port-file "$dir/rest.port" --cert "$dir/tls/server.pem" --key "$dir/tls/server.key" \
        >"$dir/rest.log" 2>&1 &
    echo $! >"$dir/rest.pid"
    _svcemu_wait "$(cat "$dir/rest.pid")" "svcemu REST server" test -s "$dir/rest.port" || return 1

    cat >"$dir/env" <<ENV
export SVCEMU_DIR='$dir'
export SVCEMU_HOST=127.0.0.1
export SVCEMU_SSH_PORT=$ssh_port
export SVCEMU_SSH_USER='$user'
export SVCEMU_SSH_KEY='$dir/ssh/id_ed25519'
export SVCEMU_KNOWN_HOSTS='$dir/ssh/known_hosts'
export SVCEMU_SSH_OPTS='-F /dev/null -p $ssh_port -i $dir/ssh/id_ed25519 -o IdentitiesOnly=yes -o UserKnownHostsFile=$dir/ssh/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes'
export SVCEMU_REST_URL='https://127.0.0.1:$(cat "$dir/rest.port")'
export SVCEMU_CACERT='$dir/tls/ca.pem'
export SVCEMU_REST_USER=superuser
export SVCEMU_PASSWORD_FILE='$dir/password'
export PITCOPY_STATE_DIR='$dir/state'
export SVCEMU_NBD_SOCK='$dir/state/nbd.sock'
ENV
    . "$dir/env"
}

svcemu_fault()
{
    /usr/bin/env python3 -B "$_svcemu_src/svcemu.py" fault --emu-dir "$SVCEMU_DIR/emu" "$@"
}

svcemu_stop()
{
    local dir=$1 f pid
    for f in rest.pid sshd.pid.bg pitcopy.pid; do
        [ -f "$dir/$f" ] || continue
        pid=$(cat "$dir/$f")
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
        # Not our child (stopped from another shell): wait for it to go.
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        rm -f "$dir/$f"
    done
}
