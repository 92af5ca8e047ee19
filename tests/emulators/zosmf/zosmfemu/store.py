# SPDX-License-Identifier: MIT
"""The z/OSMF emulator's state: ds8kemu's store functions over its own dir.

Role
  EMU_DIR/config.json (written once by `zosmfemu.py init`): users, system
  and sysplex names, the DS8000 emulator's dir, the job pacing.
  EMU_DIR/state.json (under the lock, see ds8kemu.store): the device table
  {DEVN: {"image", "volume", "online"}}, whether APAR OA59561 is applied,
  the jobs and the next job number.

Invariants
  Z1  Lock order: the zosmf state lock, then the DS8000 one — never the
      other way round (a job thread holds neither while it sleeps).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "ds8000"))

from ds8kemu import store as _ds8k_store   # noqa: E402

EMPTY = {"devices": {}, "apar_oa59561": True, "jobs": {}, "next_job": 1}
load_config = _ds8k_store.load_config
write_json = _ds8k_store.write_json
make_log = _ds8k_store.make_log


def locked(emu_dir):
    return _ds8k_store.locked(emu_dir, empty=EMPTY)
