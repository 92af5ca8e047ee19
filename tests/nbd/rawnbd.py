#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/nbd/rawnbd.py — a tiny NBD client (python3 stdlib only) for what no
real client sends: malformed requests, disconnects mid-request, storms
of connections, a server stopping under its clients.  Used by
test-bad-input.sh, test-storm.sh, test-shutdown.sh and test-vanish.sh.

    rawnbd.py bad-input SOCKET EXPORT
    rawnbd.py storm SOCKET EXPORT CONNECTIONS
    rawnbd.py shutdown SOCKET EXPORT PID PAYLOAD_FILE
    rawnbd.py vanish SOCKET TCP_PORT EXPORT CLIENTS ROUNDS SEED
    rawnbd.py free-port

Exit status 0 when every expectation held, 1 otherwise (with a message).
"""
import os
import random
import socket
import struct
import sys
import threading
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_GO, OPT_STRUCTURED_REPLY = 1, 2, 3, 7, 8
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_SHUTDOWN = (1 << 31) + 7
REP_ERR_TOO_BIG = (1 << 31) + 9
INFO_EXPORT = 0
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
REPLY_FLAG_DONE = 1
TYPE_OFFSET_DATA, TYPE_ERROR = 1, (1 << 15) + 1
EINVAL, ENOSPC, ESHUTDOWN = 22, 28, 108


class Fail(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise Fail(what)


class Conn:
    def __init__(self, path, timeout=20.0, tcp_port=None):
        if tcp_port is None:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(timeout)
            self.s.connect(path)
        else:
            self.s = socket.create_connection(("127.0.0.1", tcp_port), timeout)
            self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.structured = False

    def vanish(self, reset=False):
        """Go away without a word; over TCP, reset=True sends an RST."""
        if reset:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.s.close()

    def close(self):
        self.s.close()

    def send(self, b):
        self.s.sendall(b)

    def recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise Fail("server closed the connection unexpectedly")
            buf += chunk
        return bytes(buf)

    def closed_by_server(self):
        """True once the server hangs up (reading past anything it sent)."""
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def hung_up_silently(self):
        """True when the server closes without sending another byte."""
        try:
            return self.s.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def hello(self, flags=3):
        magic, opt, gflags = struct.unpack(">QQH", self.recv(18))
        expect(magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting")
        self.send(struct.pack(">I", flags))

    def opt(self, opt, data=b""):
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def opt_reply(self):
        magic, opt, rtype, length = struct.unpack(">QIII", self.recv(20))
        expect(magic == REP_MAGIC, "bad option reply magic")
        return opt, rtype, self.recv(length)

    def go(self, export, structured=True):
        if structured:
            self.opt(OPT_STRUCTURED_REPLY)
            _, rtype, _ = self.opt_reply()
            expect(rtype == REP_ACK, "structured replies refused")
            self.structured = True
        name = export.encode()
        self.opt(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
        size = None
        while True:
            _, rtype, data = self.opt_reply()
            if rtype == REP_INFO:
                if struct.unpack(">H", data[:2])[0] == INFO_EXPORT:
                    size = struct.unpack(">Q", data[2:10])[0]
                continue
            expect(rtype == REP_ACK, "GO %s refused (%#x): %r" % (export, rtype, data))
            return size

    def req(self, typ, off, count, cookie, flags=0, magic=REQ_MAGIC, payload=b""):
        self.send(struct.pack(">IHHQQI", magic, flags, typ, cookie, off, count) + payload)

    def reply(self, read_count=0):
        """(cookie, error, data) of one whole reply."""
        magic = struct.unpack(">I", self.recv(4))[0]
        if magic == SIMPLE_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv(12))
            data = self.recv(read_count) if (read_count and err == 0) else b""
            return cookie, err, data
        expect(magic == STRUCT_MAGIC, "bad reply magic %#x" % magic)
        err, data = 0, b""
        while True:
            flags, typ, cookie, length = struct.unpack(">HHQI", self.recv(16))
            payload = self.recv(length)
            if typ == TYPE_OFFSET_DATA:
                data += payload[8:]
            elif typ & (1 << 15):
                err = struct.unpack(">I", payload[:4])[0]
            if flags & REPLY_FLAG_DONE:
                return cookie, err, data
            expect(struct.unpack(">I", self.recv(4))[0] == STRUCT_MAGIC, "bad chunk magic")


def open_export(path, export, structured=True):
    c = Conn(path)
    c.hello()
    size = c.go(export, structured)
    return c, size


def check_serving(path, export):
    """A new connection reads and writes as it should."""
    c, size = open_export(path, export)
    pattern = os.urandom(8192)
    c.req(CMD_WRITE, 8192, 8192, 1, payload=pattern)
    cookie, err, _ = c.reply()
    expect(cookie == 1 and err == 0, "write after bad input failed (%d)" % err)
    c.req(CMD_READ, 8192, 8192, 2)
    cookie, err, data = c.reply(8192)
    expect(cookie == 2 and err == 0 and data == pattern, "read after bad input is wrong")
    c.req(CMD_DISC, 0, 0, 3)
    expect(c.closed_by_server(), "DISC did not close")
    c.close()


def bad_input(path, export):
    # Garbage instead of the client's flags: hung up.
    c = Conn(path)
    c.recv(18)
    c.send(b"\xff" * 64)
    expect(c.closed_by_server(), "garbage flags: not closed")
    c.close()

    # An option claiming 2 GiB of data: refused (TOO_BIG) without the server
    # waiting to buffer it; then the client gives up.
    c = Conn(path)
    c.hello()
    c.opt(99, b"")
    c.opt_reply()
    c.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 1 << 31))
    _, rtype, _ = c.opt_reply()
    expect(rtype == REP_ERR_TOO_BIG, "2 GiB option: %#x, not TOO_BIG" % rtype)
    c.close()

    # Malformed requests get error replies and the stream stays in step.
    c, size = open_export(path, export)
    cases = [
        ("unaligned read", CMD_READ, 100, 4096, 0, b"", EINVAL),
        ("read past the end", CMD_READ, size - 4096, 8192, 0, b"", EINVAL),
        ("write past the end", CMD_WRITE, size, 4096, 0, b"x" * 4096, ENOSPC),
        ("unaligned write", CMD_WRITE, 4096, 1000, 0, b"y" * 1000, EINVAL),
        ("write over 32 MiB", CMD_WRITE, 0, (32 << 20) + 4096, 0,
         b"z" * ((32 << 20) + 4096), EINVAL),
        ("unknown command", 77, 0, 4096, 0, b"", EINVAL),
        ("unknown flag", CMD_FLUSH, 0, 0, 1 << 12, b"", EINVAL),
        ("zero-length read", CMD_READ, 0, 0, 0, b"", EINVAL),
    ]
    cookie = 100
    for what, typ, off, count, flags, payload, want in cases:
        c.req(typ, off, count, cookie, flags=flags, payload=payload)
        got_cookie, err, _ = c.reply()
        expect(got_cookie == cookie, "%s: cookie %d, not %d" % (what, got_cookie, cookie))
        expect(err == want, "%s: error %d, not %d" % (what, err, want))
        c.req(CMD_READ, 0, 4096, cookie + 1)
        got_cookie, err, data = c.reply(4096)
        expect(got_cookie == cookie + 1 and err == 0 and len(data) == 4096,
               "%s: the stream is out of step" % what)
        cookie += 2
    # A bad magic ends the connection (and only it).
    c.req(CMD_READ, 0, 4096, 1, magic=0xDEADBEEF)
    expect(c.closed_by_server(), "bad magic: not closed")
    c.close()

    # Clients that vanish mid-request, in every way we can think of.
    for i in range(10):
        c, _ = open_export(path, export)
        c.req(CMD_WRITE, 0, 1 << 20, 1, payload=b"w" * 300000)   # half a payload
        c.close()
        c, _ = open_export(path, export)
        c.send(b"\x25\x60\x95\x13\x00")                          # half a header
        c.close()
        c, _ = open_export(path, export, structured=False)
        for k in range(8):                                         # reads nobody takes
            c.req(CMD_READ, 0, 8 << 20, k)
        c.close()
        c = Conn(path)
        c.hello()
        c.send(struct.pack(">Q", IHAVEOPT))                        # half an option
        c.close()
    check_serving(path, export)


def storm(path, export, n):
    """n connections at once, each doing a little, then all gone."""
    errors = []
    conns = []
    start = time.time()
    for i in range(n):
        conns.append(Conn(path))
    for c in conns:
        c.hello()
    for i, c in enumerate(conns):
        c.go(export, structured=(i % 2 == 0))
    for i, c in enumerate(conns):
        c.req(CMD_WRITE, i * 4096, 4096, i, payload=struct.pack(">I", i) * 1024)
    for i, c in enumerate(conns):
        cookie, err, _ = c.reply()
        if cookie != i or err != 0:
            errors.append("connection %d: write reply %d/%d" % (i, cookie, err))
    for i, c in enumerate(conns):
        c.req(CMD_READ, i * 4096, 4096, i + n)
    for i, c in enumerate(conns):
        cookie, err, data = c.reply(4096)
        if cookie != i + n or err != 0 or data != struct.pack(">I", i) * 1024:
            errors.append("connection %d: read back wrong" % i)
    # Half leave politely, half just vanish.
    for i, c in enumerate(conns):
        if i % 2:
            c.req(CMD_DISC, 0, 0, 0)
        c.close()

    # Then threads hammering at once: connect, GO, a few reads, leave.
    def worker(k):
        try:
            for _ in range(5):
                c, _ = open_export(path, export, structured=bool(k % 2))
                for j in range(4):
                    c.req(CMD_READ, (k * 4 + j) % n * 4096, 4096, j)
                for j in range(4):
                    c.reply(4096)
                c.close()
        except Exception as e:  # noqa: BLE001 - report anything
            errors.append("thread %d: %s" % (k, e))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("storm: %d connections, then 32 threads x 5, in %.1f s"
          % (n, time.time() - start))
    if errors:
        raise Fail("; ".join(errors[:5]))


def shutdown(path, export, pid, payload_file):
    """SIGTERM with clients in each phase (the daemon runs --workers 1, so
    all of them share the worker that gets the stop)."""
    hs = Conn(path)
    hs.hello()                              # in the handshake at the stop
    mute = Conn(path)
    mute.hello()                            # ... and never speaks again
    idle, _ = open_export(path, export)     # transmission, nothing in flight
    # Two WRITEs in flight across the stop, one per reply kind: the header
    # and all but the last 4 KiB of the payload go before it.
    busy = []
    for k, structured in enumerate((True, False)):
        c, _ = open_export(path, export, structured)
        payload = os.urandom(1 << 20)
        c.req(CMD_WRITE, k << 20, len(payload), 1)
        c.send(payload[:-4096])
        busy.append((c, payload))
    with open(payload_file, "wb") as f:
        for _, payload in busy:
            f.write(payload)
    time.sleep(0.5)                         # the server has taken all that in
    os.kill(pid, 15)

    # Options get NBD_REP_ERR_SHUTDOWN from the moment the worker stops:
    # ask until they do, then once more, then leave politely.
    deadline = time.time() + 20
    while True:
        expect(time.time() < deadline, "no NBD_REP_ERR_SHUTDOWN within 20 s of SIGTERM")
        hs.opt(OPT_LIST)
        while True:
            _, rtype, data = hs.opt_reply()
            if rtype != REP_SERVER:
                break
        if rtype == REP_ERR_SHUTDOWN:
            break
        expect(rtype == REP_ACK, "NBD_OPT_LIST: reply %#x %r" % (rtype, data))
        time.sleep(0.05)
    name = export.encode()
    hs.opt(OPT_GO, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    _, rtype, _ = hs.opt_reply()
    expect(rtype == REP_ERR_SHUTDOWN, "NBD_OPT_GO while stopping: %#x, not ERR_SHUTDOWN" % rtype)
    hs.opt(OPT_ABORT)
    _, rtype, _ = hs.opt_reply()
    expect(rtype == REP_ACK, "NBD_OPT_ABORT while stopping: %#x, not ACK" % rtype)
    expect(hs.closed_by_server(), "not closed after NBD_OPT_ABORT")

    # Nothing in flight: closed at once, without a word.
    expect(idle.hung_up_silently(), "an idle connection was not closed")

    # The rest of each payload, then requests that arrive after the stop,
    # all in one send: the WRITE completes, the others get ESHUTDOWN, a
    # refused WRITE's payload is skipped (the READ after it is still read
    # as a header), then the server hangs up.
    for c, payload in busy:
        late = struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 2, 0, 4096) + b"L" * 4096
        late += struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 3, 0, 4096)
        late += struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_FLUSH, 4, 0, 0)
        c.send(payload[-4096:] + late)
        got = {}
        for _ in range(4):
            cookie, err, _ = c.reply()
            got[cookie] = err
        kind = "structured" if c.structured else "simple"
        expect(got == {1: 0, 2: ESHUTDOWN, 3: ESHUTDOWN, 4: ESHUTDOWN},
               "%s replies after the stop: %r" % (kind, got))
        # ESHUTDOWN obliges the client to disconnect softly.
        try:
            c.req(CMD_DISC, 0, 0, 5)
        except OSError:
            pass                            # the server was quicker
        expect(c.closed_by_server(), "%s: not closed after the stop" % kind)
        c.close()

    # The mute one is closed when the stop's grace period ends.
    expect(mute.closed_by_server(), "a mute handshake was never closed")
    for c in (hs, mute, idle):
        c.close()
    print("shutdown: ERR_SHUTDOWN, ESHUTDOWN, in-flight WRITEs completed")


# Where a vanishing client stops (vanish()).  Each leaves the server holding
# something different: nothing yet, a half message in its receive buffer,
# option data, a WRITE slot and buffer waiting for payload, READ buffers and
# replies nobody reads.
VANISH_POINTS = [
    "before-greeting", "mid-greeting", "half-flags", "after-flags", "half-option",
    "option-without-data", "unread-option-reply", "after-go", "half-request",
    "write-partial-payload", "write-header-only", "reads-unread", "read-half-reply",
    "write-unread-reply",
]


def vanish_one(path, tcp_port, export, rng):
    point = rng.choice(VANISH_POINTS)
    tcp = tcp_port is not None and rng.random() < 0.5
    c = Conn(path, tcp_port=tcp_port if tcp else None)
    try:
        if point == "before-greeting":
            pass
        elif point == "mid-greeting":
            c.recv(rng.randrange(1, 18))
        else:
            if point == "half-flags":
                c.recv(18)
                c.send(b"\x00\x00")
            elif point in ("after-flags", "half-option", "option-without-data",
                           "unread-option-reply"):
                c.hello()
                if point == "half-option":
                    c.send(struct.pack(">QI", IHAVEOPT, OPT_GO)[:rng.randrange(1, 12)])
                elif point == "option-without-data":
                    c.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 100) + b"\x00" * rng.randrange(50))
                elif point == "unread-option-reply":
                    c.opt(OPT_LIST)
            else:
                c.hello()
                c.go(export, structured=rng.random() < 0.5)
                off = rng.randrange(256) * 4096
                if point == "half-request":
                    c.send(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 1, off, 4096)[:rng.randrange(1, 28)])
                elif point == "write-partial-payload":
                    c.req(CMD_WRITE, off, 1 << 20, 1)
                    c.send(os.urandom(rng.randrange(1, 1 << 20)))
                elif point == "write-header-only":
                    c.req(CMD_WRITE, off, 1 << 20, 1)
                elif point == "reads-unread":
                    for k in range(rng.randrange(1, 80)):
                        c.req(CMD_READ, off, 1 << 20, k)
                elif point == "read-half-reply":
                    c.req(CMD_READ, off, 1 << 20, 1)
                    c.recv(rng.randrange(1, 1 << 19))
                elif point == "write-unread-reply":
                    c.req(CMD_WRITE, off, 4096, 1, payload=b"v" * 4096)
        time.sleep(rng.random() * 0.02)
    except (OSError, Fail):
        pass            # the server may be quicker to give up on us: fine
    c.vanish(reset=tcp and rng.random() < 0.5)
    return point


def vanish(path, tcp_port, export, clients, rounds, seed):
    """rounds x clients connections at once, each dropping at a random
    point; then one that must still be served."""
    seen = {}
    errors = []
    lock = threading.Lock()
    for r in range(rounds):
        def worker(k):
            rng = random.Random("%d-%d-%d" % (seed, r, k))
            try:
                point = vanish_one(path, tcp_port, export, rng)
                with lock:
                    seen[point] = seen.get(point, 0) + 1
            except Exception as e:  # noqa: BLE001 - report anything
                with lock:
                    errors.append("round %d client %d: %r" % (r, k, e))
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if errors:
        raise Fail("; ".join(errors[:5]))
    check_serving(path, export)
    print("vanish: %d x %d clients (seed %d): %s" % (rounds, clients, seed,
          ", ".join("%s %d" % kv for kv in sorted(seen.items()))))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    print(port)


def main():
    try:
        if sys.argv[1] == "bad-input":
            bad_input(sys.argv[2], sys.argv[3])
        elif sys.argv[1] == "shutdown":
            shutdown(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
        elif sys.argv[1] == "vanish":
            vanish(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]),
                   int(sys.argv[6]), int(sys.argv[7]))
        elif sys.argv[1] == "free-port":
            free_port()
        elif sys.argv[1] == "storm":
            storm(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        else:
            print(__doc__)
            return 2
    except Fail as e:
        print("FAIL: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
