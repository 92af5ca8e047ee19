#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: a point-in-time copy through NBD: pattern in, mapping started, source overwritten by another client, target read by a third equals the image at the start.
. "$(dirname "$0")/functions.sh"
requires nbdcopy --version
requires qemu-io --version
requires qemu-img --version

start_pitcopy
must pc volume create src --size 32M
must pc volume create tgt --size 32M
must pc volume create tgt2 --size 32M
new_tmpdir
d=$tmpdir
random_file "$d/before.img" 32M

# 1. The pattern, written by one client.
must nbdcopy "$d/before.img" "$(uri src)"

# 2. The point in time (no background copy: every grain the target reads
#    is either copied on write or still on the source).
must pc map create src tgt --name m1 --copy-rate 0
must pc map start m1

# 3. Another client overwrites the source: partial grains, whole grains,
#    FUA, zeroes.  The same writes on a copy of the image give the source
#    we expect.
writes=(-c "write -P 0x77 4096 8192" -c "write -P 0x78 1M 2M" -c "write -f -P 0x79 5M 4k"
        -c "write -z 9M 3M" -c "write -P 0x7a 31M 1M")
must qemu-io -f raw "${writes[@]}" "$(uri src)"
cp "$d/before.img" "$d/after.img"
must qemu-io -f raw "${writes[@]}" "$d/after.img"

# 4. A third client reads the target: the source as it was at the start.
must nbdcopy "$(uri tgt)" "$d/tgt.img"
must cmp "$d/before.img" "$d/tgt.img"
must qemu-img compare -f raw -F raw "$d/after.img" "$(uri src)"

# 5. Writing the target leaves the source alone.
must qemu-io -f raw -c "write -P 0x33 64k 64k" "$(uri tgt)"
must qemu-io -f raw -c "write -P 0x33 64k 64k" "$d/tgt.img"
must qemu-img compare -f raw -F raw "$d/tgt.img" "$(uri tgt)"
must qemu-img compare -f raw -F raw "$d/after.img" "$(uri src)"

# 6. A second target of the same source, with background copy; more source
#    writes after its start; once copied it holds the source at its start.
must pc map create src tgt2 --name m2 --copy-rate 100
must pc map start m2
must qemu-io -f raw -c "write -P 0x55 0 8M" "$(uri src)"
must pc map wait m2 --state idle_or_copied --timeout 60
must qemu-img compare -f raw -F raw "$d/after.img" "$(uri tgt2)"
# ... and m1's target still reads as at its own start.
must qemu-img compare -f raw -F raw "$d/tgt.img" "$(uri tgt)"
exit 0
