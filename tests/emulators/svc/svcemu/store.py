# SPDX-License-Identifier: MIT
"""The emulator's own state, next to pitcopy's: what the array knows and
pitcopy does not (object ids, SVC names, group attributes, REST tokens).

Role
  EMU_DIR/config.json is written once by `svcemu init` and only read
  afterwards (pitcopy binary and state dir, users, pools, cluster facts).
  EMU_DIR/state.json is the mutable state; every command reads, changes
  and rewrites it under one exclusive lock (EMU_DIR/state.lock, flock), so
  concurrent ssh sessions and REST requests run one after the other.

Invariants
  S1  state.json is replaced atomically (write a temporary file, fsync,
      rename): a reader never sees half a file.
  S2  Everything that changes state.json, including the pitcopy calls that
      back it, happens while the lock is held.
  S3  Ids are the lowest unused non-negative integer of their kind (as the
      array and the cinder simulator allocate them), kept as strings.
"""
import contextlib
import fcntl
import json
import os

EMPTY = {"vdisks": {}, "fcmaps": {}, "groups": {}, "tokens": {}, "faults": []}


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
def locked(emu_dir):
    """Yield the state dict with the lock held; write it back if changed (S2)."""
    path = os.path.join(emu_dir, "state.json")
    with open(os.path.join(emu_dir, "state.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                text = f.read()
            state = json.loads(text)
        except FileNotFoundError:
            text, state = "", json.loads(json.dumps(EMPTY))
        for k, v in EMPTY.items():
            state.setdefault(k, type(v)())
        try:
            yield state
        finally:
            # Written even when the command failed part way: what was done
            # (a pitcopy object created) must stay recorded.
            if json.dumps(state, indent=1, sort_keys=True) != text:
                write_json(path, state)


def new_id(table):
    """S3."""
    used = {int(k) for k in table}
    i = 0
    while i in used:
        i += 1
    return str(i)
