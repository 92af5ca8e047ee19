# SPDX-License-Identifier: MIT
"""svcemu — an IBM Spectrum Virtualize (SVC) FlashCopy emulator for tests.

Role
  Speaks the array's CLI (over a real sshd, as its forced command) and its
  REST API (HTTPS), as described in shared/reference/spectrum-virtualize.md,
  and keeps the data in a real `pitcopy serve`: an emulated vdisk is a
  pitcopy volume, an FC mapping a pitcopy mapping, so a test can read a
  target's bytes after a flash.

Modules (one concern each)
  errors    the CMMVC codes and texts the emulator answers with
  cmdline   the command table and the parser of `svctask X -flag v obj`
  store     the emulator's own state (ids, names, groups, tokens), locked
  pitcopy   the pitcopy daemon, through `pitcopy ... --json`
  array     the commands: validation, the state machine, the effects
  views     concise/detailed views → CLI text (-delim, -nohdr) or JSON
  sshcmd    the forced command of sshd (SSH_ORIGINAL_COMMAND)
  rest      the HTTPS REST server (token auth, POST per command)
  faults    errors and cut connections a test arms
"""
