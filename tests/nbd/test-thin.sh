#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: thin targets through NBD: a 10%-allocated source copies to a sparse target (du, nbdinfo --map); TRIM and WRITE_ZEROES on a source and a target keep every image right.
. "$(dirname "$0")/functions.sh"
requires nbdinfo --version
requires nbdcopy --version
requires qemu-io --version
requires qemu-img --version

start_pitcopy
d=$tmpdir
vols=$state/volumes
must pc volume create src --size 64M
must pc volume create tgt --size 64M
must pc volume create tgt2 --size 64M

# KiB allocated to a file.
alloc_kib() { du -k "$1" | cut -f1; }
# Bytes of a volume that nbdinfo --map reports as data (type 0).
map_data() { nbdinfo --map "$1" | awk '$3 == 0 { n += $2 } END { print n + 0 }'; }

# 1. A source with about 10 % of its bytes allocated: 6 MiB of data in
#    pieces (unaligned to grains at both ends: 4 KiB granules), plus 1 MiB
#    of allocated zeros, which must not be copied either.
ops=(-c "write -P 0x11 0 1M" -c "write -P 0x22 9M 1M" -c "write -P 0x33 20M 1M"
     -c "write -P 0x44 33M 1M" -c "write -P 0x55 47M 1M" -c "write -P 0x66 60M 1020k"
     -c "write -P 0x67 63M 4k" -c "write -P 0 40M 1M")
must qemu-io -f raw "${ops[@]}" "$(uri src)"
truncate -s 64M "$d/src.img"
must qemu-io -f raw "${ops[@]}" "$d/src.img"
must qemu-img compare -f raw -F raw "$d/src.img" "$(uri src)"
src_kib=$(alloc_kib "$vols/src.img")
echo "source: ${src_kib} KiB allocated of 65536"
[ "$src_kib" -le 9216 ] || fail "the source is not sparse: ${src_kib} KiB allocated"

# 2. Background copy at full speed to a fresh target.
must pc map create src tgt --name thin1 --copy-rate unlimited
must pc map start thin1
must pc map wait thin1 --state idle_or_copied --timeout 60
must qemu-img compare -f raw -F raw "$d/src.img" "$(uri tgt)"
nbdcopy "$(uri tgt)" "$d/tgt.img" || fail "nbdcopy of the target"
must cmp "$d/src.img" "$d/tgt.img"

# 3. The target is as sparse as the source's data: 6 MiB, not 64 (nor 7:
#    the allocated zeros became a hole).  Allow some filesystem slack.
tgt_kib=$(alloc_kib "$vols/tgt.img")
echo "target: ${tgt_kib} KiB allocated"
[ "$tgt_kib" -ge 6000 ] || fail "the target holds only ${tgt_kib} KiB: data is missing"
[ "$tgt_kib" -le 7168 ] || fail "the target is not sparse: ${tgt_kib} KiB allocated"

# 4. NBD base:allocation says where the holes are.
nbdinfo --map "$(uri tgt)" | grep -q "hole,zero" || fail "nbdinfo --map shows no hole on the target"
data=$(map_data "$(uri tgt)")
echo "target: $data bytes of data by nbdinfo --map"
[ "$data" -ge $((6 * 1024 * 1024 - 4096)) ] && [ "$data" -le $((7 * 1024 * 1024)) ] ||
    fail "nbdinfo --map reports $data bytes of data on the target, not about 6 MiB"

# 5. TRIM and WRITE_ZEROES on the source of a started nocopy mapping: the
#    target keeps the image at its start (they are writes: copy-on-write).
#    qemu-io: discard = TRIM; write -z -u = WRITE_ZEROES that may punch;
#    write -z = WRITE_ZEROES with NO_HOLE.  Partial and whole grains.
must pc map create src tgt2 --name thin2 --copy-rate 0
must pc map start thin2
cp --sparse=always "$d/src.img" "$d/pit.img"
nbdinfo --map "$(uri tgt2)" | grep -q "hole,zero" ||
    fail "nbdinfo --map shows no hole on a target that resolves to the source"
sops=(-c "discard 4k 8k" -c "discard 9M 512k" -c "write -z -u 20M 64k" -c "write -z -u 32M 2M"
      -c "write -z 47M 12k" -c "discard 60M 4M" -c "write -P 0x77 41M 8k")
must qemu-io -f raw "${sops[@]}" "$(uri src)"
must qemu-io -f raw "${sops[@]}" "$d/src.img"
must qemu-img compare -f raw -F raw "$d/src.img" "$(uri src)"
must qemu-img compare -f raw -F raw "$d/pit.img" "$(uri tgt2)"
must qemu-img compare -f raw -F raw "$d/tgt.img" "$(uri tgt)"

# 6. TRIM and WRITE_ZEROES on the target itself: a whole grain goes straight
#    in, a partial one merges with what the target read before.
tops=(-c "discard 9M 4k" -c "discard 33M 64k" -c "write -z -u 47M 8k" -c "write -z 59M 2M")
must qemu-io -f raw "${tops[@]}" "$(uri tgt2)"
must qemu-io -f raw "${tops[@]}" "$d/pit.img"
must qemu-img compare -f raw -F raw "$d/pit.img" "$(uri tgt2)"

# 7. Its background copy finishes the image and keeps it sparse too.
must pc map set thin2 --copy-rate unlimited
must pc map wait thin2 --state idle_or_copied --timeout 60
must qemu-img compare -f raw -F raw "$d/pit.img" "$(uri tgt2)"
must qemu-img compare -f raw -F raw "$d/src.img" "$(uri src)"
tgt2_kib=$(alloc_kib "$vols/tgt2.img")
echo "second target: ${tgt2_kib} KiB allocated"
[ "$tgt2_kib" -le 9216 ] || fail "the second target is not sparse: ${tgt2_kib} KiB allocated"
exit 0
