#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""svcemu — an emulated IBM Spectrum Virtualize array backed by pitcopy.

  svcemu.py init --emu-dir D --pitcopy BIN --state-dir S [--user U --password P]
                 [--pool NAME:BYTES]... [--cluster-name N]
      write D/config.json (once, before anything else runs)
  svcemu.py ssh --emu-dir D [COMMAND...]
      the CLI: sshd's forced command (reads SSH_ORIGINAL_COMMAND), or a
      command given as arguments
  svcemu.py fault --emu-dir D --command CMD (--error CMMVCnnnnE | --drop) [--before] [--times N]
      the next N CMD commands fail with that error, or lose their connection
      (after taking effect; with --before, instead)
  svcemu.py rest --emu-dir D --cert C --key K [--bind ADDR] [--port N] [--port-file F]
      the REST API on HTTPS (port 0: any free one, written to --port-file)

See tests/emulators/svc/README.md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from svcemu import faults, rest, sshcmd, store   # noqa: E402


def init(a):
    os.makedirs(a.emu_dir, exist_ok=True)
    pools = []
    for i, spec in enumerate(a.pool or ["Pool0:" + str(2**40)]):
        name, _, size = spec.partition(":")
        pools.append({"id": str(i), "name": name, "capacity": int(size or 2**40)})
    cfg = {
        "pitcopy": os.path.abspath(a.pitcopy), "state_dir": os.path.abspath(a.state_dir),
        "users": {a.user: a.password}, "token_ttl": a.token_ttl, "pools": pools,
        "cluster": {"id": "0000020321A0C8F6", "name": a.cluster_name,
                    "code_level": "8.4.0.0 (build 152.16.2009091545000)",
                    "product_name": "IBM SAN Volume Controller (svcemu)"},
    }
    store.write_json(os.path.join(a.emu_dir, "config.json"), cfg)
    return 0


def main():
    p = argparse.ArgumentParser(prog="svcemu.py")
    sub = p.add_subparsers(dest="what", required=True)
    i = sub.add_parser("init")
    i.add_argument("--emu-dir", required=True)
    i.add_argument("--pitcopy", required=True)
    i.add_argument("--state-dir", required=True)
    i.add_argument("--user", default="superuser")
    i.add_argument("--password", default="passw0rd")
    i.add_argument("--pool", action="append")
    i.add_argument("--cluster-name", default="svcemu")
    i.add_argument("--token-ttl", type=float, default=3600)
    s = sub.add_parser("ssh")
    s.add_argument("--emu-dir", required=True)
    s.add_argument("command", nargs=argparse.REMAINDER)
    f = sub.add_parser("fault")
    f.add_argument("--emu-dir", required=True)
    f.add_argument("--command", required=True)
    how = f.add_mutually_exclusive_group(required=True)
    how.add_argument("--error")
    how.add_argument("--drop", action="store_true")
    f.add_argument("--before", action="store_true")
    f.add_argument("--times", type=int, default=1)
    r = sub.add_parser("rest")
    r.add_argument("--emu-dir", required=True)
    r.add_argument("--bind", default="127.0.0.1")
    r.add_argument("--port", type=int, default=0)
    r.add_argument("--port-file")
    r.add_argument("--cert", required=True)
    r.add_argument("--key", required=True)
    a = p.parse_args()
    if a.what == "init":
        return init(a)
    if a.what == "fault":
        with store.locked(a.emu_dir) as state:
            faults.arm(state, a.command, a.error, a.drop, a.before, a.times)
        return 0
    if a.what == "ssh":
        return sshcmd.main(a.emu_dir, a.command)
    rest.serve(a.emu_dir, a.bind, a.port, a.cert, a.key, a.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
