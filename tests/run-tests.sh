#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Run every test program in the given build trees (and the script tests
# once, against the first tree), one line per test, and close
# with "N passed, N failed, N skipped".  Exit codes follow liburing and automake:
# 0 pass, 77 skip, anything else fail; a test past its timeout is killed and
# reported as TIMEOUT (a failure).  Skips and timeouts are counted apart from
# failures so a missing environment never hides as a pass or a fail.
#
#   tests/run-tests.sh BUILD... [-- FILTER]
#
# PITCOPY_TEST_TIMEOUT (seconds, default 300; 0 = none) bounds each test.
set -u
builds=()
filter=""
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; filter="${1:-}"; break ;;
        *) builds+=("$1") ;;
    esac
    shift
done
timeout_s=${PITCOPY_TEST_TIMEOUT:-300}
pass=0 fail=0 skip=0
failed=()
# Script tests (tests/nbd/, tests/cli/, tests/crash/ and tests/emulators/*/test-*.sh) drive real
# clients against the first build's binaries; they find them through $PITCOPY_BUILD.  tests/fuzz/test-*.sh run the
# libFuzzer harnesses from their own build-fuzz/.
first=1
for b in "${builds[@]}"; do
    scripts=()
    [ $first = 1 ] && scripts=(tests/nbd/test-*.sh tests/cli/test-*.sh tests/crash/test-*.sh tests/fuzz/test-*.sh
                                tests/emulators/*/test-*.sh)
    first=0
    export PITCOPY_BUILD="$b"
    for t in "$b"/tests/unit/test-* "$b"/tests/model/test-* "${scripts[@]}"; do
        [ -x "$t" ] || continue
        case "$t" in *"$filter"*) ;; *) continue ;; esac
        log=$(mktemp)
        start=$(date +%s.%N)
        if [ "$timeout_s" = 0 ]; then
            "$t" >"$log" 2>&1; rc=$?
        else
            timeout -k 10 "$timeout_s" "$t" >"$log" 2>&1; rc=$?
        fi
        secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
        case $rc in
            0)   echo "PASS    $t (${secs}s)"; pass=$((pass+1)) ;;
            77)  echo "SKIP    $t: $(tail -n1 "$log")"; skip=$((skip+1)) ;;
            124|137) echo "TIMEOUT $t (${timeout_s}s)"; tail -n 30 "$log"
                 fail=$((fail+1)); failed+=("$t") ;;
            *)   echo "FAIL    $t (exit $rc)"; tail -n 60 "$log"
                 fail=$((fail+1)); failed+=("$t") ;;
        esac
        rm -f "$log"
    done
done
[ ${#failed[@]} -gt 0 ] && printf 'failed: %s\n' "${failed[@]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ $((pass+skip)) -gt 0 ]
