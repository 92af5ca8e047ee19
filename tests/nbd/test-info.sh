#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: nbdinfo sees every volume as an export: list, size, block size constraints, flags, map.
. "$(dirname "$0")/functions.sh"
requires nbdinfo --version
requires qemu-io --version

start_pitcopy
must pc volume create v1 --size 64M
must pc volume create v2 --size 16M

list=$(nbdinfo --list "$(uri "")") || fail "nbdinfo --list"
echo "$list"
grep -q 'export="v1"' <<<"$list" || fail "v1 not listed"
grep -q 'export="v2"' <<<"$list" || fail "v2 not listed"

[ "$(nbdinfo --size "$(uri v1)")" = $((64 << 20)) ] || fail "size of v1"
[ "$(nbdinfo --size "$(uri v2)")" = $((16 << 20)) ] || fail "size of v2"

info=$(nbdinfo "$(uri v1)") || fail "nbdinfo v1"
echo "$info"
for want in "block_size_minimum: 4096" "block_size_preferred: 65536" \
            "block_size_maximum: 33554432" "can_multi_conn: true" "can_flush: true" \
            "can_fua: true" "can_zero: true" "can_trim: true" "is_read_only: false" \
            "base:allocation"; do
    grep -q "$want" <<<"$info" || fail "nbdinfo v1 lacks '$want'"
done

# base:allocation: a new volume is sparse, one hole that reads as zeros;
# written, that range is data (tests/nbd/test-thin.sh covers targets).
map=$(nbdinfo --map "$(uri v1)") || fail "nbdinfo --map"
echo "$map"
[ "$(wc -l <<<"$map")" = 1 ] || fail "expected one extent"
grep -Eq "^ *0 +$((64 << 20)) +3 +hole,zero" <<<"$map" || fail "map of v1"
qemu-io -f raw -c "write -P 0x5a 1M 1M" "$(uri v1)" > /dev/null || fail "qemu-io write"
map=$(nbdinfo --map "$(uri v1)") || fail "nbdinfo --map"
echo "$map"
grep -Eq "^ *$((1 << 20)) +$((1 << 20)) +0 +data" <<<"$map" || fail "written range not data"

# No default export, and no such export: refused, the server goes on.
if nbdinfo "$(uri "")" > /dev/null 2>&1; then fail "the default export was accepted"; fi
if nbdinfo --size "$(uri nope)" > /dev/null 2>&1; then fail "export nope was accepted"; fi
[ "$(nbdinfo --size "$(uri v2)")" = $((16 << 20)) ] || fail "server unwell after refusals"
exit 0
