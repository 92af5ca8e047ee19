#!/bin/bash
# SPDX-License-Identifier: MIT
#
# tests/fuzz/run-fuzz.sh — run each libFuzzer harness for a while and say
# what happened: executions, executions per second, crashes.
#
#   tests/fuzz/run-fuzz.sh BUILD SECONDS [WORKDIR [HARNESS...]]
#
# BUILD holds fuzz-nbd, fuzz-ctl (make fuzz-build).  Each harness starts from
# its seeds (tests/fuzz/corpus-NAME/, read only) and grows its own corpus in
# WORKDIR/corpus-NAME (default WORKDIR: BUILD), kept for the next run; a
# crash, leak, UB or timeout leaves its input in WORKDIR/artifacts-NAME/ and
# the libFuzzer log in WORKDIR/NAME.log.  One summary line per harness;
# exit 1 if any harness found something.
#
# Reproduce a finding:   BUILD/fuzz-NAME WORKDIR/artifacts-NAME/crash-...
# Minimize it:           BUILD/fuzz-NAME -minimize_crash=1 -runs=10000 FILE
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: run-fuzz.sh BUILD SECONDS [WORKDIR [HARNESS...]]}
secs=${2:?usage: run-fuzz.sh BUILD SECONDS [WORKDIR [HARNESS...]]}
work=${3:-$build}
shift $(($# < 3 ? $# : 3))
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(nbd ctl)

found=0
for h in "${harnesses[@]}"; do
    bin=$build/fuzz-$h
    [ -x "$bin" ] || { echo "run-fuzz: $bin is missing (make fuzz-build)"; exit 1; }
    corpus=$work/corpus-$h
    art=$work/artifacts-$h
    log=$work/$h.log
    mkdir -p "$corpus" "$art"
    # -close_fd_mask=2: the daemon code logs every connection to stderr;
    # libFuzzer and the sanitizers keep their own copy of it.
    # -max_len: room for a whole NBD option (64 KiB) or control line
    # (CTL_LINE_MAX) and what follows it.
    # -timeout: the slowest legitimate input (a cleaning at the lowest rate)
    # takes about a second.
    dict=()
    [ -f "$here/$h.dict" ] && dict=(-dict="$here/$h.dict")
    # Leaks: libFuzzer runs LeakSanitizer after any input that allocated
    # more than it freed.  Every input of fuzz-ctl that deletes a mapping
    # does (the engine keeps deleted mappings until it is destroyed), and
    # those scans would take three quarters of its time; so it fuzzes
    # without, and the whole corpus is then run once more with them.
    leaks=1
    [ "$h" = ctl ] && leaks=0
    opts=(-print_final_stats=1 -close_fd_mask=2 -max_len=140000 -timeout=30
          -rss_limit_mb=4096 "${dict[@]}" -artifact_prefix="$art/")
    : > "$work/.start-$h"                   # artifacts newer than this are this run's
    "$bin" -max_total_time="$secs" -detect_leaks=$leaks "${opts[@]}" \
        "$corpus" "$here/corpus-$h" > "$log" 2>&1
    rc=$?
    if [ "$rc" = 0 ] && [ "$leaks" = 0 ]; then
        "$bin" -runs=0 -detect_leaks=1 "${opts[@]}" "$corpus" "$here/corpus-$h" \
            > "$log.leaks" 2>&1
        rc=$?
        if [ "$rc" != 0 ]; then
            cat "$log.leaks" >> "$log"
        fi
        leakcheck=", corpus re-run for leaks"
    else
        leakcheck=""
    fi
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n1)
    ncorpus=$(find "$corpus" -type f | wc -l)
    new=$(find "$art" -type f -newer "$work/.start-$h")
    crashes=$(printf '%s' "$new" | grep -c .)
    echo "fuzz-$h: ${execs:-?} executions in ${secs} s (${rate:-?}/s), exit $rc," \
         "$crashes crash$( [ "$crashes" = 1 ] || echo es), corpus $ncorpus$leakcheck," \
         "peak RSS ${rss:-?} MB"
    if [ "$rc" != 0 ] || [ "$crashes" != 0 ]; then
        found=1
        grep -E "^(==[0-9]+==ERROR|SUMMARY|.*runtime error)|Test unit written|^artifact_prefix" "$log" | head -n 20
        echo "  log: $log"
        for a in $new; do
            echo "  reproduce: $bin $a"
        done
    fi
done
exit $found
