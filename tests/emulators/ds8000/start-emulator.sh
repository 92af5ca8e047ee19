#!/bin/bash
# SPDX-License-Identifier: MIT
#
# start-emulator.sh — an emulated DS8000 (the HMC's REST API and a dscli
# executable) backed by a real `pitcopy serve`, for tests and for trying a
# driver by hand.
#
#   start-emulator.sh [--dir DIR] [--port N] [--vol ID:SIZE]... -- CMD [ARGS...]
#       start it, make the volumes, run CMD with DS8KEMU_* exported (see
#       emulator.sh), stop it, exit with CMD's status; without --dir a
#       temporary directory is used and removed afterwards
#   start-emulator.sh [--dir DIR] [--port N] [--vol ID:SIZE]...
#       start it and leave it running; print the `export` lines (also in
#       DIR/env); stop it later with:  start-emulator.sh --stop DIR
#   start-emulator.sh --stop DIR
#
# --vol 0100:64M makes FB volume 0100 (LSS 01) of 64 MiB; --vol 0200:cyl10 a
# CKD volume of 10 cylinders.
set -u
. "$(dirname "$0")/emulator.sh"

dir="" port=0 stop="" cmd=() vols=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift ;;
        --port) port=$2; shift ;;
        --vol) vols+=("$2"); shift ;;
        --stop) stop=$2; shift ;;
        --) shift; cmd=("$@"); break ;;
        -h|--help) sed -n '3,19p' "$0"; exit 0 ;;
        *) echo "start-emulator.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$stop" ]; then
    ds8kemu_stop "$stop"
    exit 0
fi

size_bytes()
{
    numfmt --from=iec "$1"
}

mkvols()
{
    local v id size
    for v in "${vols[@]+"${vols[@]}"}"; do
        id=${v%%:*} size=${v#*:}
        case "$size" in
            cyl*) ds8kemu_mkvol "$id" --cyl "${size#cyl}" || return 1 ;;
            *) ds8kemu_mkvol "$id" "$(size_bytes "$size")" || return 1 ;;
        esac
    done
}

own=0
if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/ds8kemu.XXXXXX") || exit 1
    own=1
fi
if [ ${#cmd[@]} = 0 ]; then
    { ds8kemu_start "$dir" "$port" && mkvols; } || { ds8kemu_stop "$dir"; exit 1; }
    cat "$dir/env"
    echo "# stop with: $0 --stop $dir"
    exit 0
fi
trap 'ds8kemu_stop "$dir"; [ $own = 1 ] && rm -rf "$dir"' EXIT
ds8kemu_start "$dir" "$port" && mkvols || exit 1
"${cmd[@]}"
