#!/bin/bash
# SPDX-License-Identifier: MIT
#
# start-emulator.sh — an emulated z/OSMF whose batch jobs flash an emulated
# DS8000 (both started here), backed by a real `pitcopy serve`.
#
#   start-emulator.sh [--dir DIR] [--vol ID:SIZE]... [--dev DEVN=VOL]...
#                     [--apar-missing] [--unreachable] -- CMD [ARGS...]
#       start both, run CMD with DS8KEMU_* and ZOSMF_* exported, stop them,
#       exit with CMD's status (a temporary DIR unless --dir)
#   start-emulator.sh [--dir DIR] [...]
#       start both and leave them running; print the exports (also in
#       DIR/env); stop later with:  start-emulator.sh --stop DIR
#   start-emulator.sh --stop DIR
#
# --vol 0100:64M makes DS8000 FB volume 0100 (cyl10: CKD, 10 cylinders);
# --dev 8100=0100 puts it online to the z/OS system as device 8100.
set -u
src=$(cd "$(dirname "$0")" && pwd)
. "$src/emulator.sh"

dir="" stop="" cmd=() vols=() devs=() apar=applied zargs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --dir) dir=$2; shift ;;
        --vol) vols+=("$2"); shift ;;
        --dev) devs+=("$2"); shift ;;
        --apar-missing) apar=missing ;;
        --unreachable) zargs+=(--unreachable) ;;
        --stop) stop=$2; shift ;;
        --) shift; cmd=("$@"); break ;;
        -h|--help) sed -n '3,19p' "$0"; exit 0 ;;
        *) echo "start-emulator.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

stop_all()
{
    zosmfemu_stop "$1/zosmf"
    ds8kemu_stop "$1/ds8000"
}

if [ -n "$stop" ]; then
    stop_all "$stop"
    exit 0
fi

start_all()
{
    local v id size
    ds8kemu_start "$dir/ds8000" || return 1
    for v in "${vols[@]+"${vols[@]}"}"; do
        id=${v%%:*} size=${v#*:}
        case "$size" in
            cyl*) ds8kemu_mkvol "$id" --cyl "${size#cyl}" || return 1 ;;
            *) ds8kemu_mkvol "$id" "$(numfmt --from=iec "$size")" || return 1 ;;
        esac
    done
    zosmfemu_start "$dir/zosmf" "${zargs[@]+"${zargs[@]}"}" || return 1
    [ ${#devs[@]} = 0 ] || zosmfemu_devices "${devs[@]}" || return 1
    zosmfemu_apar "$apar" || return 1
    cat "$dir/ds8000/env" "$dir/zosmf/env" >"$dir/env"
}

own=0
if [ -z "$dir" ]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/zosmfemu.XXXXXX") || exit 1
    own=1
fi
mkdir -p "$dir" && dir=$(cd "$dir" && pwd -P) || exit 1
if [ ${#cmd[@]} = 0 ]; then
    start_all || { stop_all "$dir"; exit 1; }
    cat "$dir/env"
    echo "# stop with: $0 --stop $dir"
    exit 0
fi
trap 'stop_all "$dir"; [ $own = 1 ] && rm -rf "$dir"' EXIT
start_all || exit 1
"${cmd[@]}"
