#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: each libFuzzer harness (fuzz-nbd, fuzz-ctl) runs 20 s from its seeds without a crash, leak, UB or hang.
#
# Builds build-fuzz/ first (make fuzz-build; nothing to do when it is up to
# date).  Skips only when clang cannot link a libFuzzer program, i.e. its
# fuzzer runtime is missing (Debian: clang, libclang-rt-14-dev).  The corpus
# grown here is thrown away: each run starts from the committed seeds.  What
# a failing run found is kept in build-fuzz/findings-DATE/.
# FUZZ_SHORT_TIME sets the seconds per harness.
set -u
srcdir=$(cd "$(dirname "$0")/../.." && pwd)
cd "$srcdir" || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pitcopy-fuzz-short-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

if ! command -v clang > /dev/null; then
    echo "test-fuzz-short: no clang (Debian: apt-get install clang libclang-rt-14-dev), skipping"
    exit 77
fi
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' \
    > "$tmp/probe.c"
if ! clang -fsanitize=fuzzer,address,undefined -o "$tmp/probe" "$tmp/probe.c" > "$tmp/probe.log" 2>&1; then
    cat "$tmp/probe.log"
    echo "test-fuzz-short: clang cannot link a libFuzzer program: its fuzzer runtime is missing" \
         "(Debian: libclang-rt-14-dev), skipping"
    exit 77
fi

make -s fuzz-build > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; echo "FAIL: make fuzz-build"; exit 1; }
if ! tests/fuzz/run-fuzz.sh build-fuzz "${FUZZ_SHORT_TIME:-20}" "$tmp"; then
    # Keep what was found: the reproduce lines above name $tmp, gone at exit.
    keep=build-fuzz/findings-$(date +%Y%m%d-%H%M%S)
    mkdir -p "$keep"
    cp -r "$tmp"/artifacts-* "$tmp"/*.log "$keep"/ 2>/dev/null
    echo "FAIL: a fuzzer found something; inputs and logs kept in $keep"
    exit 1
fi
exit 0
