#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""zosmfemu — an emulated z/OSMF whose jobs flash the emulated DS8000.

  zosmfemu.py init --emu-dir D --ds8k-emu-dir E [--user U --password P]
                   [--sysname SYS1] [--job-delay SECONDS]
      write D/config.json (once); E is the DS8000 emulator's emu dir
  zosmfemu.py devices --emu-dir D DEVN=VOLUME[@IMAGE]... [--offline DEVN]...
      map device numbers to DS8000 volumes (added to the table; IMAGE
      defaults to the DS8000 emulator's); --offline varies a device offline
  zosmfemu.py apar --emu-dir D (--applied | --missing)
      declare IOS APAR OA59561 applied or missing on this system
  zosmfemu.py rest --emu-dir D --cert C --key K [--bind A] [--port N] [--port-file F]
      z/OSMF on HTTPS

See tests/emulators/zosmf/README.md.
"""
import argparse
import os
import re
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "ds8000"))

from zosmfemu import store   # noqa: E402


def main():
    p = argparse.ArgumentParser(prog="zosmfemu.py")
    sub = p.add_subparsers(dest="what", required=True)
    i = sub.add_parser("init")
    i.add_argument("--emu-dir", required=True)
    i.add_argument("--ds8k-emu-dir", required=True)
    i.add_argument("--user", default="IBMUSER")
    i.add_argument("--password", default="SYS1PASS")
    i.add_argument("--sysname", default="SYS1")
    i.add_argument("--job-delay", type=float, default=0.2)
    d = sub.add_parser("devices")
    d.add_argument("--emu-dir", required=True)
    d.add_argument("map", nargs="*")
    d.add_argument("--offline", action="append", default=[])
    a = sub.add_parser("apar")
    a.add_argument("--emu-dir", required=True)
    g = a.add_mutually_exclusive_group(required=True)
    g.add_argument("--applied", action="store_true")
    g.add_argument("--missing", action="store_true")
    r = sub.add_parser("rest")
    r.add_argument("--emu-dir", required=True)
    r.add_argument("--bind", default="127.0.0.1")
    r.add_argument("--port", type=int, default=0)
    r.add_argument("--port-file")
    r.add_argument("--cert", required=True)
    r.add_argument("--key", required=True)
    a = p.parse_args()
    if a.what == "init":
        os.makedirs(a.emu_dir, exist_ok=True)
        store.write_json(os.path.join(a.emu_dir, "config.json"), {
            "users": {a.user.upper(): a.password}, "sysname": a.sysname.upper(),
            "ds8k_emu_dir": os.path.abspath(a.ds8k_emu_dir), "job_delay": a.job_delay})
        return 0
    if a.what == "devices":
        cfg = store.load_config(a.emu_dir)
        image = store.load_config(cfg["ds8k_emu_dir"])["image"]
        with store.locked(a.emu_dir) as st:
            for m in a.map:
                mm = re.match(r"^([0-9A-Fa-f]{1,4})=([0-9A-Fa-f]{4})(?:@(\S+))?$", m)
                if not mm:
                    p.error(f"devices: {m!r} is not DEVN=VOLUME[@IMAGE]")
                st["devices"][mm.group(1).upper().zfill(4)] = {
                    "volume": mm.group(2).upper(), "image": mm.group(3) or image, "online": True}
            for dev in a.offline:
                st["devices"].setdefault(dev.upper().zfill(4), {"volume": "0000", "image": image})
                st["devices"][dev.upper().zfill(4)]["online"] = False
        return 0
    if a.what == "apar":
        with store.locked(a.emu_dir) as st:
            st["apar_oa59561"] = bool(a.applied)
        return 0
    from zosmfemu import rest
    rest.serve(a.emu_dir, a.bind, a.port, a.cert, a.key, a.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
