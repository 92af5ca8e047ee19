# SPDX-License-Identifier: MIT
"""The pitcopy daemon behind the emulated storage image, through
`pitcopy ... --json`.

Role
  Runs the pitcopy CLI against the configured state dir and returns its
  JSON; a refusal raises PitcopyError with pitcopy's message.

Context
  Called only with the store lock held (store.S2); the daemon itself may
  change a mapping meanwhile (a background copy ends, an autodelete
  mapping goes away).
"""
import json
import subprocess


class PitcopyError(Exception):
    def __init__(self, args, message):
        super().__init__(f"pitcopy {' '.join(args)}: {message}")
        self.message = message


class Pitcopy:
    def __init__(self, binary, state_dir):
        self.binary, self.state_dir = binary, state_dir

    def run(self, *args):
        argv = [self.binary, "--state-dir", self.state_dir, *args, "--json"]
        p = subprocess.run(argv, capture_output=True, text=True)
        try:
            out = json.loads(p.stdout) if p.stdout.strip() else {}
        except ValueError:
            out = {}
        if p.returncode != 0:
            err = out.get("error", {}) if isinstance(out, dict) else {}
            raise PitcopyError(list(args), err.get("message") or p.stderr.strip()
                               or f"exit {p.returncode}")
        return out

    def volume_create(self, name, size):
        return self.run("volume", "create", name, "--size", str(size))

    def maps(self):
        return {m["name"]: m for m in self.run("map", "list")["mappings"]}

    def map_create(self, source, target, name, copy_rate, incremental=False, autodelete=False):
        args = ["map", "create", source, target, "--name", name, "--grain", "64K",
                "--copy-rate", str(copy_rate)]
        if incremental:
            args.append("--incremental")
        if autodelete:
            args.append("--autodelete")
        return self.run(*args)

    def map_start(self, name, restore=False):
        return self.run("map", "start", name, *(["--restore"] if restore else []))

    def map_stop(self, name):
        return self.run("map", "stop", name)

    def map_wait(self, name, state, timeout=30):
        return self.run("map", "wait", name, "--state", state, "--timeout", str(timeout))

    def map_delete(self, name, force=False):
        return self.run("map", "delete", name, *(["--force"] if force else []))

    def map_set(self, name, copy_rate=None, autodelete=None, group=None):
        args = ["map", "set", name]
        if copy_rate is not None:
            args += ["--copy-rate", str(copy_rate)]
        if autodelete is not None:
            args += ["--autodelete", "on" if autodelete else "off"]
        if group is not None:
            args += ["--group", group]
        return self.run(*args)

    def group_create(self, name):
        return self.run("group", "create", name)

    def group_start(self, name):
        return self.run("group", "start", name)

    def group_delete(self, name, force=False):
        return self.run("group", "delete", name, *(["--force"] if force else []))
