# SPDX-License-Identifier: MIT
"""The pitcopy daemon behind the emulated array, through `pitcopy ... --json`.

Role
  Runs the pitcopy CLI against the configured state dir and returns its
  JSON; a refusal raises PitcopyError with pitcopy's message.  An FC
  consistency group is a pitcopy group (one point in time for all its
  members); autodelete, incremental, restore and split are pitcopy's own.

Context
  Called only with the store lock held (store.S2), so calls never race
  with another emulator command; the daemon itself may change a mapping's
  state meanwhile (background copy ends, cleaning ends).
"""
import json
import subprocess


class PitcopyError(Exception):
    def __init__(self, args, message, code=None):
        self.code = code
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
                               or f"exit {p.returncode}", err.get("code"))
        return out

    # volumes
    def volume_create(self, name, size):
        return self.run("volume", "create", name, "--size", str(size))

    def volume_delete(self, name):
        return self.run("volume", "delete", name)

    def volumes(self):
        return {v["name"]: v for v in self.run("volume", "list")["volumes"]}

    # mappings
    def map_create(self, source, target, name, grain, copy_rate, clean_rate, group=None,
                   autodelete=False, incremental=False):
        args = ["map", "create", source, target, "--name", name, "--grain", grain,
                "--copy-rate", str(copy_rate), "--clean-rate", str(clean_rate)]
        if group:
            args += ["--group", group]
        if autodelete:
            args.append("--autodelete")
        if incremental:
            args.append("--incremental")
        return self.run(*args)

    def maps(self):
        return {m["name"]: m for m in self.run("map", "list")["mappings"]}

    def map_prepare(self, name):
        return self.run("map", "prepare", name)

    def map_start(self, name, restore=False):
        return self.run("map", "start", name, *(["--restore"] if restore else []))

    def map_stop(self, name, split=False):
        return self.run("map", "stop", name, *(["--split"] if split else []))

    def map_delete(self, name, force=False):
        return self.run("map", "delete", name, *(["--force"] if force else []))

    def map_set(self, name, copy_rate=None, clean_rate=None, autodelete=None):
        args = ["map", "set", name]
        if autodelete is not None:
            args += ["--autodelete", "on" if autodelete else "off"]
        if copy_rate is not None:
            args += ["--copy-rate", str(copy_rate)]
        if clean_rate is not None:
            args += ["--clean-rate", str(clean_rate)]
        return self.run(*args)

    def map_set_group(self, name, group):
        return self.run("map", "set", name, *(["--group", group] if group else ["--no-group"]))

    # groups
    def group_create(self, name):
        return self.run("group", "create", name)

    def group_delete(self, name, force=False):
        return self.run("group", "delete", name, *(["--force"] if force else []))

    def group_prepare(self, name):
        return self.run("group", "prepare", name)

    def group_start(self, name):
        return self.run("group", "start", name)

    def group_stop(self, name, split=False):
        return self.run("group", "stop", name, *(["--split"] if split else []))

