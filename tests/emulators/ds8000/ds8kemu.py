#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ds8kemu — an emulated IBM DS8000 (copy services) backed by pitcopy.

  ds8kemu.py init --emu-dir D --pitcopy BIN --state-dir S [--user U --password P]
                  [--image IBM.2107-75FA120] [--copy-rate N] [--freeze-timeout S]
      write D/config.json (once, before anything else runs)
  ds8kemu.py mkvol --emu-dir D ID... (--size BYTES | --cyl N) [--type fb|ckd] [--name N]
      a volume XYZZ (LSS XY), backed by a pitcopy volume <serial>-XYZZ
  ds8kemu.py rest --emu-dir D --cert C --key K [--bind ADDR] [--port N] [--port-file F]
      the HMC: REST API and the DSCLI endpoint on HTTPS
  ds8kemu.py dscli [--profile F] DSCLI-ARGS...
      the dscli executable (see ds8kemu/dsclient.py)

See tests/emulators/ds8000/README.md.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# The dscli executable starts once per command: it imports only its client.


def init(a):
    from ds8kemu import store
    os.makedirs(a.emu_dir, exist_ok=True)
    store.write_json(os.path.join(a.emu_dir, "config.json"), {
        "pitcopy": os.path.abspath(a.pitcopy), "state_dir": os.path.abspath(a.state_dir),
        "users": {a.user: a.password}, "token_ttl": a.token_ttl, "image": a.image,
        "copy_rate": a.copy_rate, "freeze_timeout": a.freeze_timeout, "devid": ""})
    return 0


def mkvol(a):
    from ds8kemu import store
    from ds8kemu.errors import DsError
    from ds8kemu.array import Array
    from ds8kemu.pitcopy import Pitcopy
    cfg = store.load_config(a.emu_dir)
    try:
        with store.locked(a.emu_dir) as state:
            array = Array(cfg, state, Pitcopy(cfg["pitcopy"], cfg["state_dir"]))
            for vid in a.id:
                array.mkvol(vid, size=a.size, cyl=a.cyl, kind=a.type, name=a.name)
    except DsError as e:
        sys.stderr.write(f"ds8kemu mkvol: {e}\n")
        return 1
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "dscli":
        args = sys.argv[2:]
        profile = None
        if args[:1] == ["--profile"]:
            profile, args = args[1], args[2:]
        from ds8kemu import dsclient
        return dsclient.main(args, profile)
    p = argparse.ArgumentParser(prog="ds8kemu.py")
    sub = p.add_subparsers(dest="what", required=True)
    i = sub.add_parser("init")
    i.add_argument("--emu-dir", required=True)
    i.add_argument("--pitcopy", required=True)
    i.add_argument("--state-dir", required=True)
    i.add_argument("--user", default="admin")
    i.add_argument("--password", default="passw0rd")
    i.add_argument("--image", default="IBM.2107-75FA120")
    i.add_argument("--copy-rate", type=int, default=100)
    i.add_argument("--freeze-timeout", type=int, default=120)
    i.add_argument("--token-ttl", type=float, default=1800)
    m = sub.add_parser("mkvol")
    m.add_argument("--emu-dir", required=True)
    m.add_argument("id", nargs="+")
    m.add_argument("--size", type=int)
    m.add_argument("--cyl", type=int)
    m.add_argument("--type", choices=("fb", "ckd"), default="fb")
    m.add_argument("--name")
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
    if a.what == "mkvol":
        if (a.size is None) == (a.cyl is None):
            p.error("mkvol: give --size (FB) or --cyl (CKD)")
        if a.cyl is not None:
            a.type = "ckd"
        return mkvol(a)
    from ds8kemu import rest
    rest.serve(a.emu_dir, a.bind, a.port, a.cert, a.key, a.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
