# SPDX-License-Identifier: MIT
"""zosmfemu — a z/OSMF emulator whose batch jobs flash an emulated DS8000.

Role
  Speaks z/OSMF's REST jobs interface (HTTPS, basic auth, the CSRF header)
  as shared/reference/ds8000-zos-csm.md describes it: JCL submitted as
  text, JES-like status (INPUT, ACTIVE, OUTPUT) and retcode ("CC 0000"),
  spool files.  A step running the TSO terminal monitor (IKJEFT01) runs
  FCESTABL, FCWITHDR and FCQUERY from SYSTSIN against the DS8000
  emulator's state (tests/emulators/ds8000: its store and Array), through a
  device-number table the test sets up; so a flash through z/OS changes the
  same pitcopy mappings a dscli or REST flash does.

Modules (one concern each)
  store     zosmf state (devices, the OA59561 flag, jobs), on ds8kemu's store
  jcl       the JCL reader: job card, steps, in-stream SYSTSIN
  tso       FCESTABL / FCWITHDR / FCQUERY: keywords, messages, return codes
  jobs      submit, run (a thread per job), status, spool
  rest      the HTTPS server: /zosmf/info, /zosmf/restjobs/jobs…
"""
