#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: qemu-io pattern writes and reads, FUA, flush, write zeroes, discard and sub-block writes.
. "$(dirname "$0")/functions.sh"
requires qemu-io --version

start_pitcopy
must pc volume create v1 --size 64M
u=$(uri v1)

must qemu-io -f raw \
    -c "write -P 0xa5 0 4M" \
    -c "write -f -P 0x5a 4M 64k" \
    -c "flush" \
    -c "write -P 0x3c 8M 1M" \
    -c "write -z 8M 512k" \
    -c "write -z -u 9M 64k" \
    -c "write -P 0x11 4608 512" \
    -c "discard 32M 1M" \
    "$u"
# A fresh connection sees all of it (and qemu honoured the 4 KiB minimum
# block with read-modify-write for the 512-byte write).
must qemu-io -f raw \
    -c "read -P 0xa5 0 4608" \
    -c "read -P 0x11 4608 512" \
    -c "read -P 0xa5 5120 4189184" \
    -c "read -P 0x5a 4M 64k" \
    -c "read -P 0 8M 512k" \
    -c "read -P 0x3c 8704k 512k" \
    -c "read -P 0 9M 64k" \
    -c "read -P 0 60M 4M" \
    "$u"
# Several requests in flight at once, with FUA.
must qemu-io -f raw \
    -c "aio_write -f -P 0x61 16M 64k" -c "aio_write -P 0x62 17M 64k" \
    -c "aio_write -P 0x63 18M 64k" -c "aio_flush" \
    -c "read -P 0x61 16M 64k" -c "read -P 0x62 17M 64k" -c "read -P 0x63 18M 64k" \
    "$u"
exit 0
