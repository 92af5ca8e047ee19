#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: nbdcopy in and out of a volume, one and several connections, byte-for-byte.
. "$(dirname "$0")/functions.sh"
requires nbdcopy --version

start_pitcopy
must pc volume create v1 --size 64M
must pc volume create v2 --size 64M
new_tmpdir
d=$tmpdir
random_file "$d/in.img" 64M

must nbdcopy "$d/in.img" "$(uri v1)"
must nbdcopy "$(uri v1)" "$d/out1.img"
must cmp "$d/in.img" "$d/out1.img"

# Multi-conn: four connections, many requests each; volume to volume.
must nbdcopy --connections=4 --requests=32 "$(uri v1)" "$(uri v2)"
must nbdcopy --connections=4 "$(uri v2)" "$d/out2.img"
must cmp "$d/in.img" "$d/out2.img"

# Zeroes: a sparse image copied over data must read back as zeroes.
truncate -s 64M "$d/zero.img"
must nbdcopy "$d/zero.img" "$(uri v2)"
must nbdcopy "$(uri v2)" "$d/out3.img"
must cmp "$d/zero.img" "$d/out3.img"
exit 0
