#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: qemu-img info, convert to and from a volume, and compare.
. "$(dirname "$0")/functions.sh"
requires qemu-img --version

start_pitcopy
must pc volume create v1 --size 32M
must pc volume create v2 --size 32M
new_tmpdir
d=$tmpdir
random_file "$d/in.img" 32M

qemu-img info --output=json "$(uri v1)" | grep -q "\"virtual-size\": $((32 << 20))" ||
    fail "qemu-img info: size"
must qemu-img convert -n -f raw -O raw "$d/in.img" "$(uri v1)"
must qemu-img compare -f raw -F raw "$d/in.img" "$(uri v1)"
if qemu-img compare -f raw -F raw "$d/in.img" "$(uri v2)" >/dev/null; then
    fail "qemu-img compare found an empty volume equal to random data"
fi
must qemu-img convert -n -f raw -O raw "$(uri v1)" "$(uri v2)"
must qemu-img compare -f raw -F raw "$(uri v1)" "$(uri v2)"
must qemu-img convert -f raw -O qcow2 "$(uri v2)" "$d/out.qcow2"
must qemu-img compare -f raw -F qcow2 "$d/in.img" "$d/out.qcow2"
exit 0
