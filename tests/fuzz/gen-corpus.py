#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/fuzz/gen-corpus.py — write the seed inputs of the libFuzzer harnesses.

    tests/fuzz/gen-corpus.py            # rewrites corpus-nbd/ and corpus-ctl/

A seed for fuzz-nbd is the byte that says when the server stops (0: after
the client; see fuzz-nbd.c), then what a client sends on one connection,
named by its message sequence (newstyle-go-read: fixed-newstyle flags,
NBD_OPT_GO, a READ; stopN-: the server stops after N bytes); the exports
are fuzz-nbd.c's "v1" and "v2" (1 MiB each).  A seed for fuzz-ctl
is the JSON lines a client sends on one control connection.  Each is small
and valid, or invalid in one named way, so the fuzzer starts at every
branch a real client reaches.  Reproducers of fixed bugs are not written
here: they are committed as found, named by the bug.
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

IHAVEOPT = 0x49484156454F5054
REQ_MAGIC = 0x25609513
(OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO,
 OPT_STRUCTURED_REPLY, OPT_LIST_META, OPT_SET_META) = 1, 2, 3, 5, 6, 7, 8, 9, 10
INFO_NAME, INFO_BLOCK_SIZE = 1, 3
(CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES,
 CMD_BLOCK_STATUS) = range(8)
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_REQ_ONE = 1, 2, 4, 8


def flags(f=3):
    return struct.pack(">I", f)


def opt(o, data=b"", length=None):
    return struct.pack(">QII", IHAVEOPT, o, len(data) if length is None else length) + data


def name(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def go(export, infos=(), o=OPT_GO):
    return opt(o, name(export) + struct.pack(">H", len(infos)) +
               b"".join(struct.pack(">H", i) for i in infos))


def meta(o, export, queries):
    return opt(o, name(export) + struct.pack(">I", len(queries)) +
               b"".join(name(q) for q in queries))


def req(cmd, off=0, count=0, cookie=1, fl=0, payload=b"", magic=REQ_MAGIC):
    return struct.pack(">IHHQQI", magic, fl, cmd, cookie, off, count) + payload


NBD = {
    "newstyle-go-read": flags() + opt(OPT_STRUCTURED_REPLY) + go("v1") +
        req(CMD_READ, 0, 4096) + req(CMD_DISC),
    "newstyle-go-simple-write-flush-read": flags() + go("v1") +
        req(CMD_WRITE, 8192, 4096, 2, payload=b"\xa5" * 4096) + req(CMD_FLUSH, cookie=3) +
        req(CMD_READ, 8192, 4096, 4) + req(CMD_DISC),
    "newstyle-go-fua-write-zeroes-trim": flags() + opt(OPT_STRUCTURED_REPLY) + go("v2") +
        req(CMD_WRITE, 0, 4096, 1, FLAG_FUA, b"\x5a" * 4096) +
        req(CMD_WRITE_ZEROES, 4096, 65536, 2, FLAG_NO_HOLE | FLAG_FUA) +
        req(CMD_TRIM, 0, 8192, 3) + req(CMD_READ, 0, 8192, 4, FLAG_DF) + req(CMD_DISC),
    "newstyle-list-info-abort": flags() + opt(OPT_LIST) +
        go("v2", (INFO_NAME, INFO_BLOCK_SIZE), OPT_INFO) + opt(OPT_ABORT),
    "newstyle-meta-go-block-status": flags() + opt(OPT_STRUCTURED_REPLY) +
        meta(OPT_LIST_META, "v1", []) + meta(OPT_LIST_META, "v1", ["base:"]) +
        meta(OPT_SET_META, "v1", ["base:allocation"]) + go("v1") +
        req(CMD_BLOCK_STATUS, 0, 1 << 20, 1, FLAG_REQ_ONE) + req(CMD_DISC),
    "newstyle-meta-other-export": flags() + opt(OPT_STRUCTURED_REPLY) +
        meta(OPT_SET_META, "v2", ["base:allocation", "qemu:dirty-bitmap:x"]) + go("v1") +
        req(CMD_BLOCK_STATUS, 0, 4096) + req(CMD_DISC),
    "newstyle-export-name-zeroes": flags(1) + opt(OPT_EXPORT_NAME, b"v2") +
        req(CMD_READ, 4096, 4096) + req(CMD_DISC),
    "newstyle-export-name-unknown": flags() + opt(OPT_EXPORT_NAME, b"nope"),
    "newstyle-go-default-export": flags() + go("") + go("nope") + go("v1"),
    "newstyle-go-pipeline-eof": flags() + opt(OPT_STRUCTURED_REPLY) + go("v1") +
        b"".join(req(CMD_READ, (k % 16) * 4096, 4096, k) for k in range(70)) +
        req(CMD_WRITE, 0, 1 << 16, 99) + b"\x11" * 3000,
    "newstyle-go-bad-requests": flags() + opt(OPT_STRUCTURED_REPLY) + go("v1") +
        req(CMD_READ, 100, 4096, 1) + req(CMD_READ, (1 << 20) - 4096, 8192, 2) +
        req(CMD_WRITE, 1 << 20, 4096, 3, payload=b"x" * 4096) +
        req(CMD_WRITE, 4096, 1000, 4, payload=b"y" * 1000) + req(77, 0, 4096, 5) +
        req(CMD_FLUSH, 0, 0, 6, 1 << 12) + req(CMD_READ, 0, 0, 7) + req(CMD_CACHE, 0, 4096, 8) +
        req(CMD_BLOCK_STATUS, 0, 4096, 9) + req(CMD_READ, 0, 4096, 10, magic=0xDEADBEEF),
    "newstyle-options-refused": flags() + opt(OPT_STARTTLS) + opt(99, b"abc") +
        opt(OPT_LIST, b"x") + opt(OPT_STRUCTURED_REPLY, b"x") + opt(OPT_STRUCTURED_REPLY) +
        opt(OPT_STRUCTURED_REPLY) + opt(OPT_GO, b"\x00\x00\x00\x09v1") + opt(OPT_ABORT),
    "newstyle-option-too-big": flags() + opt(OPT_GO, length=1 << 31) + b"\x00" * 64,
    "newstyle-unknown-flags": flags(0xFF),
    "newstyle-not-fixed": flags(0) + opt(OPT_LIST),
}

# The server stops once the client has sent N bytes (N a multiple of 16).
def stop_at(n, stream):
    assert n % 16 == 0 and n // 16 + 1 < 256
    return bytes([n // 16 + 1]) + stream


NBD_STOPPING = {
    "stop0-newstyle-go-read": stop_at(0, NBD["newstyle-go-read"]),
    "stop16-newstyle-list-info-abort": stop_at(16, NBD["newstyle-list-info-abort"]),
    "stop32-newstyle-export-name-zeroes": stop_at(32, NBD["newstyle-export-name-zeroes"]),
    # In the middle of the WRITE's payload (it starts at byte 72): the
    # WRITE completes, what follows gets ESHUTDOWN.
    "stop1024-newstyle-go-write-read-flush": stop_at(1024, flags() + opt(OPT_STRUCTURED_REPLY) +
        go("v1") + req(CMD_WRITE, 0, 4096, 1, payload=b"\x77" * 4096) +
        req(CMD_READ, 0, 4096, 2) + req(CMD_WRITE, 4096, 4096, 3, payload=b"\x78" * 4096) +
        req(CMD_FLUSH, cookie=4) + req(CMD_DISC)),
}

CTL_BAD = [
    'this is not json',
    '[1,2,3]',
    '{"id":"x","method":"status"}',
    '{"id":2,"method":"no.such"}',
    '{"id":3,"method":"volume.create","params":{"name":"w","size":"4M"}}',
    '{"id":4,"method":"volume.create","params":{"name":"w","size":-4096}}',
    '{"id":5,"method":"volume.create","params":{"name":"../etc","size":4096}}',
    '{"id":6,"method":"volume.create","params":{"name":"w","size":4096,"file":"relative.img"}}',
    '{"id":7,"method":"map.create","params":{"source":"v","target":"v","copy_rate":151}}',
    '{"id":8,"method":"volume.show","params":[]}',
    '{"id":9,"method":"status","bogus":true}',
    '{"id":10,"method":"status","id":11}',
    '{"id":12,"method":"volume.show","params":{"name":"v\\u0000x"}}',
    '   ',
    '{"id":13,"method":"map.wait","params":{"name":"m","state":"done"}}',
]


def call(i, method, **params):
    r = {"id": i, "method": method}
    if params:
        r["params"] = params
    return json.dumps(r)


CTL = {
    "status": [call(1, "status"), '{"jsonrpc":"2.0","id":2,"method":"status"}'],
    "volume-lifecycle": [
        call(1, "volume.create", name="a", size=65536),
        call(2, "volume.create", name="a", size=65536),
        call(3, "volume.list"), call(4, "volume.show", name="a"),
        call(5, "volume.delete", name="a", keep_file=False),
        call(6, "volume.show", name="a"),
    ],
    "volume-file-and-limits": [
        call(1, "volume.create", name="f", size=4096, file="/nonexistent/pitcopy/f.img"),
        call(2, "volume.create", name="g", size=4095),
        call(3, "volume.create", name="h", size=9223372036854775807),
    ],
    "map-lifecycle": [
        call(1, "volume.create", name="s", size=65536),
        call(2, "volume.create", name="t", size=65536),
        call(3, "map.create", source="s", target="t", name="m", grain=4096, copy_rate=0,
             clean_rate="unlimited"),
        call(4, "map.prepare", name="m"), call(5, "map.start", name="m"),
        call(6, "map.show", name="m"), call(7, "map.list"),
        call(8, "map.wait", name="m", state="copying", timeout_ms=0),
        call(9, "map.set", name="m", copy_rate=150, clean_rate="50"),
        call(10, "map.set", name="m"),
        call(11, "map.wait", name="m", state="idle_or_copied", timeout_ms=2147483647),
        call(12, "map.stop", name="m"), call(13, "map.wait", name="m", state="stopped"),
        call(14, "map.delete", name="m"), call(15, "volume.delete", name="s"),
        call(16, "volume.delete", name="t"), call(17, "status"),
    ],
    "map-cascade-force-delete": [
        call(1, "volume.create", name="s", size=131072),
        call(2, "volume.create", name="t1", size=131072),
        call(3, "volume.create", name="t2", size=131072),
        call(4, "map.create", source="s", target="t1", name="old", copy_rate=0, clean_rate=1),
        call(5, "map.create", source="s", target="t2", name="new", copy_rate=0),
        call(6, "map.start", name="old"), call(7, "map.start", name="new"),
        call(8, "volume.delete", name="t1"),
        call(9, "map.delete", name="old"),
        call(10, "map.stop", name="new"), call(11, "map.delete", name="new", force=True),
        call(12, "map.create", source="t2", target="t1", name="back", grain=1048576),
        call(13, "map.delete", name="old", force=True), call(14, "volume.list"),
    ],
    "bad-requests": CTL_BAD,
}


def main():
    nbd = {n: b"\x00" + stream for n, stream in NBD.items()}
    nbd.update(NBD_STOPPING)
    for sub, seeds, enc in (("corpus-nbd", nbd, lambda b: b),
                            ("corpus-ctl", CTL, lambda ls: ("\n".join(ls) + "\n").encode())):
        d = os.path.join(HERE, sub)
        os.makedirs(d, exist_ok=True)
        for n, content in seeds.items():
            with open(os.path.join(d, n), "wb") as f:
                f.write(enc(content))
    # Over CTL_LINE_MAX (64 KiB): an error, the rest of the line dropped, the
    # next line served; and a last line with no newline.
    big = '{"id":1,"method":"status","params":{"x":"%s"}}' % ("a" * 70000)
    with open(os.path.join(HERE, "corpus-ctl", "line-too-long"), "w") as f:
        f.write(big + "\n" + call(2, "volume.list") + "\n" + call(3, "status"))
    # A buffer full of short lines: each used to cost a move of the rest of
    # the buffer (tests/cli/test-control-lines.sh).
    with open(os.path.join(HERE, "corpus-ctl", "short-lines-fill-the-buffer"), "w") as f:
        f.write("\n" * 60000 + "{}\n" * 3000 + call(1, "status") + "\n")


if __name__ == "__main__":
    main()
