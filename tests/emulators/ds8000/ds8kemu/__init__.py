# SPDX-License-Identifier: MIT
"""ds8kemu — an IBM DS8000 FlashCopy emulator for tests.

Role
  Speaks the HMC's REST API (https://HMC:8452/api/v1, token auth) and the
  DSCLI (a `dscli` executable that talks to the same HMC), as described in
  shared/reference/ds8000-zos-csm.md, and keeps the data in a real
  `pitcopy serve`: an emulated volume (ID XYZZ, LSS XY) is a pitcopy
  volume, a FlashCopy relationship a pitcopy mapping, so a test reads a
  target's bytes after a flash.  The z/OSMF emulator (tests/emulators/zosmf)
  runs its TSO commands against the same Array and store.

Modules (one concern each)
  errors    CMUC/CMUN messages, DSCLI exit codes, REST HTTP statuses
  store     the emulator's own state (volumes, relationships, freezes, tokens), locked
  pitcopy   the pitcopy daemon, through `pitcopy ... --json`
  array     the copy services: validation, limits, effects on pitcopy
  dscli     DSCLI command lines on the HMC side: parsing, output formats
  dsclient  the `dscli` executable: argv, -pwfile, -script, exit codes
  rest      the HTTPS server: /api/v1 and the DSCLI endpoint
"""
