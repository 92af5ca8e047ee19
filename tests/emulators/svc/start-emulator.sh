#!/bin/bash
# SPDX-License-Identifier: MIT
#
# start-emulator.sh — an emulated Spectrum Virtualize array (sshd + REST)
# backed by a real `pitcopy serve`, for tests and for trying a driver by hand.
#
#   start-emulator.sh [--dir DIR] [--rest-port N] -- CMD [ARGS...]
#       start it, run CMD with SVCEMU_* exported (see emulator.sh), stop it,
#       exit with CMD's status; without --dir a temporary directory is used
#       and removed afterwards
#   start-emulator.sh [--dir DIR] [--rest-port N]
#       start it and leave it running; print the `export` lines (also in
#       DIR/env); stop it later with:  start-emulator.sh --stop DIR
#   start-emulator.sh --stop DIR
#
# --rest-port 7443 puts the REST API where IBM's ansible modules look for it.
set -u
. "$(dirname "$0")/emulator.sh"

dir="" rest_port=0 stop="" cmd=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift ;;
        --rest-port) rest_port=$2; shift ;;
        --stop) stop=$2; shift ;;
        --) shift; cmd=("$@"); break ;;
        -h|--help) sed -n '3,18p' "$0"; exit 0 ;;
        *) echo "start-emulator.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$stop" ]; then
    svcemu_stop "$stop"
    exit 0
fi

own=0
if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/svcemu.XXXXXX") || exit 1
    own=1
fi
if [ ${#cmd[@]} = 0 ]; then
    svcemu_start "$dir" "$rest_port" || { svcemu_stop "$dir"; exit 1; }
    cat "$dir/env"
    echo "# stop with: $0 --stop $dir"
    exit 0
fi
trap 'svcemu_stop "$dir"; [ $own = 1 ] && rm -rf "$dir"' EXIT
svcemu_start "$dir" "$rest_port" || exit 1
"${cmd[@]}"
