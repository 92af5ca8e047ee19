#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""counters.py — a writer that makes a torn point in time visible.

    counters.py write SOCKET EXPORT... --stop FILE
        n = 1, 2, …: write n (a 4 KiB block, n in its first 8 bytes, little
        endian) to offset 0 of each EXPORT in the order given, each write
        acknowledged before the next; until FILE exists; print the last n
    counters.py read SOCKET EXPORT
        print the n at offset 0 of EXPORT

A point in time taken over all the volumes at once sees the first export's
n equal to, or one more than, every later export's; separate points in time
taken while this runs see them apart.  Uses tests/nbd/rawnbd.py (stdlib
only) against the pitcopy NBD socket.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "nbd"))
import rawnbd   # noqa: E402

BLOCK = 4096


def write(sock, exports, stop):
    conns = [rawnbd.open_export(sock, e)[0] for e in exports]
    n = 0
    while not os.path.exists(stop):
        n += 1
        block = struct.pack("<Q", n) + bytes(BLOCK - 8)
        for c in conns:
            c.req(rawnbd.CMD_WRITE, 0, BLOCK, n, payload=block)
            cookie, err, _ = c.reply()
            if err:
                sys.exit(f"counters.py: write {n} failed: error {err}")
    for c in conns:
        c.close()
    print(n)


def read(sock, export):
    c, _ = rawnbd.open_export(sock, export)
    c.req(rawnbd.CMD_READ, 0, BLOCK, 1)
    _, err, data = c.reply(BLOCK)
    if err:
        sys.exit(f"counters.py: read failed: error {err}")
    print(struct.unpack("<Q", data[:8])[0])
    c.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["write"] and "--stop" in sys.argv:
        i = sys.argv.index("--stop")
        write(sys.argv[2], sys.argv[3:i], sys.argv[i + 1])
    elif sys.argv[1:2] == ["read"] and len(sys.argv) == 4:
        read(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
