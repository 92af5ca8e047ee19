# SPDX-License-Identifier: MIT
"""The emulator's own state, next to pitcopy's: what the storage image
knows and pitcopy does not (volume IDs and types, relationship options,
frozen LSSs, REST tokens).

Role
  EMU_DIR/config.json is written once by `ds8kemu.py init` and only read
  afterwards (pitcopy binary and state dir, users, storage image ID).
  EMU_DIR/state.json is the mutable state; every request reads, changes
  and rewrites it under one exclusive lock (EMU_DIR/state.lock, flock), so
  dscli sessions, REST requests and z/OSMF jobs run one after the other.
  The z/OSMF emulator keeps its own state with the same functions
  (locked(dir, empty=...)).

Invariants
  S1  state.json is replaced atomically (write a temporary file, fsync,
      rename): a reader never sees half a file.
  S2  Everything that changes state.json, including the pitcopy calls that
      back it, happens while the lock is held.
"""
import contextlib
import fcntl
import json
import os

EMPTY = {"volumes": {}, "flash": {}, "frozen": {}, "tokens": {}, "seq": 0}


def load_config(emu_dir):
    with open(os.path.join(emu_dir, "config.json")) as f:
        return json.load(f)


def write_json(path, obj):
    """S1."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


@contextlib.contextmanager
def locked(emu_dir, empty=None):
    """Yield the state dict with the lock held; write it back if changed (S2)."""
    empty = EMPTY if empty is None else empty
    path = os.path.join(emu_dir, "state.json")
    with open(os.path.join(emu_dir, "state.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                text = f.read()
            state = json.loads(text)
        except FileNotFoundError:
            text, state = "", json.loads(json.dumps(empty))
        for k, v in empty.items():
            state.setdefault(k, json.loads(json.dumps(v)))
        try:
            yield state
        finally:
            # Written even when the request failed part way: what was done
            # (a pitcopy mapping created) must stay recorded.
            if json.dumps(state, indent=1, sort_keys=True) != text:
                write_json(path, state)


def make_log(emu_dir, origin):
    """Append lines to EMU_DIR/commands.log: what a client sent, and the outcome."""
    path = os.path.join(emu_dir, "commands.log")

    def log(msg):
        import time
        with open(path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {origin} {msg}\n")
    return log
