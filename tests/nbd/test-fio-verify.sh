#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: fio's nbd engine writes with crc32c verification, several jobs = several connections.
. "$(dirname "$0")/functions.sh"
requires fio --version
requires fio --enghelp=nbd

start_pitcopy
must pc volume create v1 --size 64M
new_tmpdir
d=$tmpdir

for rw in randwrite write; do
    fio --name=verify --ioengine=nbd --uri="$(uri v1)" --rw=$rw --bs=4k,64k \
        --bssplit=4k/50:16k/25:64k/25 --iodepth=32 --numjobs=4 --size=16M \
        --offset_increment=16M --verify=crc32c --verify_fatal=1 --do_verify=1 \
        --verify_state_save=0 \
        --group_reporting --output="$d/fio-$rw.txt" ||
        { cat "$d/fio-$rw.txt"; fail "fio $rw"; }
    grep -E "err=|IOPS" "$d/fio-$rw.txt"
    grep -q "err= 0" "$d/fio-$rw.txt" || fail "fio $rw reported an error"
done
exit 0
