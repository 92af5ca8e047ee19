# SPDX-License-Identifier: MIT
"""Faults a test arms so a client meets a failing array.

Role
  `svcemu.py fault --emu-dir D --command CMD (--error CMMVCnnnnE | --drop)
  [--before] [--times N]` adds one to state.json; the next N commands named
  CMD (over SSH or REST) then fail with that CMMVC error, or have their
  connection cut — by default after the command took effect and before the
  answer (a flash half done: prepared, then the line dropped), with
  --before without running it.

Invariants
  F1  A fault is taken under the store lock, so N commands meet it, no
      more, whatever the concurrency.
"""
from .errors import MESSAGES, SvcError


class Drop(Exception):
    """The connection is to be cut (the caller knows how, per transport)."""


def arm(state, command, error=None, drop=False, before=False, times=1):
    if error is not None and error not in MESSAGES:
        raise ValueError(f"unknown CMMVC code {error}; known: {' '.join(sorted(MESSAGES))}")
    state.setdefault("faults", []).append(
        {"command": command, "error": error, "drop": drop, "before": before, "times": times})


def take(state, command):
    """The fault armed for this command, consumed once (F1), or None."""
    for f in state.get("faults", []):
        if f["command"] == command and f["times"] > 0:
            f["times"] -= 1
            return f
    return None


def apply_before(fault):
    if fault and fault["error"]:
        raise SvcError(fault["error"], detail="injected fault")
    if fault and fault["drop"] and fault["before"]:
        raise Drop()


def apply_after(fault):
    if fault and fault["drop"] and not fault["before"]:
        raise Drop()
