#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: CLI failures: usage errors name the flag (exit 2), refusals quote the engine (exit 1), no daemon (exit 3), --help everywhere.
. "$(dirname "$0")/lib.sh"
requires jq --version

# No daemon yet.
expect 3 pc volume list
[ "$err" = "pitcopy: cannot reach pitcopy serve at $STATE/control.sock: No such file or directory (is it running?)" ] ||
    fail "unexpected message: $err"
expect 3 pc status --json
check_json '.error.code == -2'
# $PITCOPY_STATE_DIR is the fallback, --state-dir wins over it.
expect 3 env PITCOPY_STATE_DIR="$tmp/elsewhere" "$PITCOPY" status
contains "$err" "$tmp/elsewhere/control.sock"
expect 3 env PITCOPY_STATE_DIR="$tmp/elsewhere" "$PITCOPY" status --state-dir "$tmp/here"
contains "$err" "$tmp/here/control.sock"
cd "$tmp"
expect 3 env -u PITCOPY_STATE_DIR "$PITCOPY" status
contains "$err" "./pitcopy-state/control.sock"
cd - >/dev/null

# Usage errors need no daemon: exit 2, one line naming the problem, then usage.
expect 2 "$PITCOPY"
expect 2 pc frobnicate
contains "$err" "unknown command 'frobnicate'"
expect 2 pc volume
contains "$err" "missing subcommand"
expect 2 pc map lsit
contains "$err" "unknown subcommand 'lsit'"
expect 2 pc volume create db --sise 1G
contains "$err" "pitcopy: volume create: unknown option --sise"
contains "$err" "usage: pitcopy volume create NAME --size SIZE"
expect 2 pc volume create db
contains "$err" "--size is required"
expect 2 pc volume create db --size 10Q
contains "$err" "--size: '10Q' is not a size"
expect 2 pc volume create db --size
contains "$err" "option --size needs a value"
expect 2 pc volume create
contains "$err" "missing argument"
expect 2 pc volume show a b
contains "$err" "unexpected argument 'b'"
expect 2 pc map create a b --copy-rate 151
contains "$err" "--copy-rate: '151' is not a rate"
expect 2 pc map create a b --grain big
contains "$err" "--grain: 'big'"
expect 2 pc map set m
contains "$err" "give --copy-rate, --clean-rate, --group, --no-group or --autodelete"
expect 2 pc map wait m --state copied
contains "$err" "--state: 'copied' is not a state"
expect 2 pc map wait m --timeout soon
contains "$err" "--timeout: 'soon'"
expect 2 pc map delete m --force=yes
contains "$err" "option --force takes no value"
expect 2 pc serve --nbd ftp:x
contains "$err" "expected unix:PATH or tcp:[HOST]:PORT"
expect 2 pc serve --nbd tcp:localhost:99999
contains "$err" "the port must be a number"
# --workers: the engine's range, 1 to 256, checked before anything starts
# (a bad --durability, checked after it, shows that 1 and 256 got past).
for w in 0 257 1024 -1 4x ""; do
    expect 2 pc serve --workers "$w"
    contains "$err" "pitcopy: serve: --workers: '$w' is not a number from 1 to 256"
done
for w in 1 256; do
    expect 2 pc serve --workers "$w" --durability lax
    contains "$err" "--durability: 'lax' is not strict or none"
done
[ ! -e "$STATE" ] || fail "a refused serve created $STATE"

# --help on everything: usage, options, an example; exit 0, on stdout.
expect 0 pc --help
contains "$out" "usage: pitcopy COMMAND"
expect 0 pc help map wait
contains "$out" "usage: pitcopy map wait NAME"
for cmd in "serve" "status" "volume create" "volume list" "volume show" "volume delete" \
           "map create" "map prepare" "map start" "map stop" "map delete" "map set" \
           "map list" "map show" "map wait"; do
    # shellcheck disable=SC2086
    expect 0 pc $cmd --help
    contains "$out" "usage: pitcopy $cmd"
    contains "$out" "Example:"
    # shellcheck disable=SC2086
    expect 0 pc $cmd -h --bogus
done
expect 0 pc volume --help
contains "$out" "pitcopy volume create"
expect 0 pc --version
contains "$out" "pitcopy "

start_serve

# Refusals: exit 1, "pitcopy: <command> <object>: <the engine's sentence>".
expect 1 pc volume show nope
[ "$err" = "pitcopy: volume show nope: no volume named nope" ] || fail "unexpected message: $err"
expect 1 pc volume show nope --json
check_json '.error.code == -2 and .error.message == "no volume named nope"'
expect 0 pc volume create a --size 8M
expect 0 pc volume create b --size 8M
expect 0 pc volume create c --size 12M
expect 1 pc volume create a --size 8M
contains "$err" "volume a already exists"
expect 1 pc volume create bad/name --size 8M
contains "$err" "name"
expect 1 pc volume create odd --size 5000
contains "$err" "not a multiple of 4096"
expect 1 pc map create a c
contains "$err" "must match"
expect 1 pc map create a b --grain 3K
contains "$err" "grain"
expect 0 pc map create a b --name nightly --copy-rate 0
expect 1 pc map create a b --name nightly
contains "$err" "mapping nightly already exists"
expect 1 pc map stop nightly
contains "$err" "pitcopy: map stop nightly: mapping nightly is idle_or_copied"
expect 0 pc map start nightly
expect 1 pc map start nightly
contains "$err" "pitcopy: map start nightly: mapping nightly is copying;"
expect 1 pc map delete nightly
contains "$err" "stop it first, or force the delete"
expect 1 pc map wait nightly --state stopped --timeout 0.2
contains "$err" "did not reach stopped"
expect 1 pc map set nope --copy-rate 5
contains "$err" "no mapping named nope"
expect 0 pc map delete nightly --force
expect 1 pc map prepare nightly
contains "$err" "no mapping named nightly"
stop_serve
exit 0
