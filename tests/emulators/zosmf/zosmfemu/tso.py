# SPDX-License-Identifier: MIT
"""The TSO FlashCopy commands of a batch TSO step (IKJEFT01), run against
the emulated DS8000.

Role
  run(lines, ctx) → (spool lines, step condition code).  Each command is
  echoed after READY, as batch TSO prints it, then its messages; the step
  ends with READY / END and its code is the highest return code of its
  commands (every command runs).  Continuation: a line ending in '-' or
  '+' goes on on the next line.
    FCESTABL SDEVN(X'dddd') TDEVN(X'dddd') [MODE(COPY|NOCOPY|NOCOPY2COPY|ASYNC)]
             [INCREMENTAL(NO|YES|YTW)] [ONLINTGT(YES|NO)] [TGTPPRIM(YES|NO)]
             [ACTION(FREEZE|FRR)]
    FCWITHDR SDEVN(..) TDEVN(..) [DDSW(YES)]     withdraw (rmflash)
    FCWITHDR DEVN(..)|SDEVN(..) ACTION(THAW)     thaw the device's LSS
    FCQUERY DEVN(..)                              a formatted report
  Device numbers go through the test's table to DS8000 volumes (and must
  be online).  FCESTABL: MODE(COPY) without INCREMENTAL ends when the copy
  completes (not persistent), MODE(NOCOPY) lasts until withdrawn,
  INCREMENTAL(YES) is -record -persist and refreshes an incremental
  relationship that exists, ACTION(FRR) with SDEVN/TDEVN the other way
  round is a fast reverse restore.  Consecutive FCESTABL ACTION(FREEZE)
  commands are established together when the run of them ends: one point
  in time for the set, as the freeze (I/O held on the LSSs until the
  thaw) gives on the real system — this emulator cannot hold host I/O.

  With APAR OA59561 declared missing (zosmfemu.py apar), FCESTABL and
  FCWITHDR end with RC 12 and say so; FCQUERY still answers.

UNVERIFIED
  Every ANTF message ID but ANTF0090I, their texts and return codes (8 for
  a refused request, 12 for the missing APAR), the FCQUERY report's
  relationship lines, and that every SYSTSIN command runs after a failure.
  IKJ56500I (command not found, RC 12) is TSO's.
"""
import re

from ds8kemu.errors import DsError

KEYWORD = re.compile(r"([A-Z]+)(?:\(([^)]*)\))?")
DEVN = re.compile(r"^(?:X'([0-9A-F]{1,4})'|([0-9A-F]{1,4}))$")

KNOWN = {
    "FCESTABL": {"SDEVN", "TDEVN", "MODE", "INCREMENTAL", "ONLINTGT", "TGTPPRIM", "ACTION",
                 "SETGTOK", "TGTUCB", "SRCEXTENTS", "TGTEXTENTS", "XTNTLST", "OPENDVCS"},
    "FCWITHDR": {"SDEVN", "TDEVN", "DEVN", "DDSW", "ACTION", "XTNTLST", "TGTUCB"},
    "FCQUERY": {"DEVN", "FORMAT", "UNFORMAT", "COUNT", "REPORT", "SHOWRELS"},
}


class TsoError(Exception):
    def __init__(self, msg, rc=8):
        super().__init__(msg)
        self.msg, self.rc = msg, rc


def commands(lines):
    """SYSTSIN lines → commands, continuations joined."""
    out, cur = [], ""
    for line in lines:
        text = line[:72].rstrip() if len(line) > 72 and line[72:].strip().isdigit() else line.rstrip()
        if text.endswith("-"):
            cur += text[:-1]
            continue
        if text.endswith("+"):
            cur += text[:-1]
            cur = cur.rstrip() + " "
            continue
        cur += text.lstrip() if cur.endswith(" ") else text
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def keywords(cmd, rest):
    kw = {}
    for m in KEYWORD.finditer(rest.upper()):
        name, value = m.group(1), (m.group(2) or "").strip()
        if name not in KNOWN[cmd]:
            raise TsoError(f"ANTF0001E {cmd} KEYWORD {name} IS NOT VALID")
        kw[name] = value
    return kw


class Context:
    """What a step's commands need: the device table, the APAR flag, the
    system name and the DS8000 emulator (array() yields a locked Array)."""

    def __init__(self, devices, apar, sysname, image, array):
        self.devices, self.apar, self.sysname = devices, apar, sysname
        self.image, self.array = image, array


def devn(cmd, kw, name, required=True):
    v = kw.get(name)
    if v is None:
        if required:
            raise TsoError(f"ANTF0002E {cmd} REQUIRED KEYWORD {name} IS MISSING")
        return None
    m = DEVN.match(v)
    if not m:
        raise TsoError(f"ANTF0003E {cmd} {name}({v}) IS NOT A DEVICE NUMBER")
    return (m.group(1) or m.group(2)).zfill(4)


def volume(ctx, cmd, dev):
    d = ctx.devices.get(dev)
    if d is None or not d.get("online", True):
        raise TsoError(f"ANTF0310E {cmd} DEVICE X'{dev}' IS NOT ONLINE TO SYSTEM {ctx.sysname}")
    if d["image"].upper() != ctx.image.upper():
        raise TsoError(f"ANTF0311E {cmd} DEVICE X'{dev}' IS IN STORAGE SYSTEM {d['image']}, "
                       f"WHICH THIS SYSTEM HAS NO CONNECTION TO")
    return d["volume"].upper()


def array_call(ctx, cmd, fn):
    try:
        with ctx.array() as a:
            return fn(a)
    except DsError as e:
        raise TsoError(f"ANTF0350E {cmd} FAILED: STORAGE SYSTEM {ctx.image} REJECTED THE "
                       f"REQUEST: {e.code} {e.text}") from None


def check_apar(ctx, cmd):
    if not ctx.apar:
        raise TsoError(f"ANTF0400E {cmd} NOT PROCESSED: IOS APAR OA59561 IS NOT APPLIED ON "
                       f"SYSTEM {ctx.sysname}", rc=12)


def estab_opts(kw):
    mode = kw.get("MODE", "COPY")
    incr = kw.get("INCREMENTAL", "NO")
    if mode not in ("COPY", "NOCOPY", "NOCOPY2COPY", "ASYNC"):
        raise TsoError(f"ANTF0003E FCESTABL MODE({mode}) IS NOT VALID")
    if incr not in ("NO", "YES", "YTW"):
        raise TsoError(f"ANTF0003E FCESTABL INCREMENTAL({incr}) IS NOT VALID")
    record = incr in ("YES", "YTW")
    return {"nocp": mode == "NOCOPY", "record": record, "persist": record or mode == "NOCOPY",
            "tgtinhibit": False}


def fcestabl_prepare(ctx, kw):
    """Checks that need no array: → (src vol, tgt vol, opts, devns)."""
    check_apar(ctx, "FCESTABL")
    s, t = devn("FCESTABL", kw, "SDEVN"), devn("FCESTABL", kw, "TDEVN")
    return volume(ctx, "FCESTABL", s), volume(ctx, "FCESTABL", t), estab_opts(kw), (s, t)


def ok_estab(s, t, what="ESTABLISHED"):
    return f"ANTF0030I FCESTABL COMMAND COMPLETED: RELATIONSHIP SDEVN X'{s}' TDEVN X'{t}' {what}"


def fcestabl(ctx, kw):
    sv, tv, opts, (s, t) = fcestabl_prepare(ctx, kw)
    action = kw.get("ACTION")
    if action == "FRR":
        # SDEVN/TDEVN name the restore's direction: the relationship is TDEVN:SDEVN.
        array_call(ctx, "FCESTABL", lambda a: a.reverseflash([(tv, sv)], {"fast": True}))
        return [ok_estab(s, t, "REVERSED (FAST REVERSE RESTORE)")]
    if action not in (None, "FREEZE"):
        raise TsoError(f"ANTF0003E FCESTABL ACTION({action}) IS NOT VALID")
    if kw.get("MODE") == "NOCOPY2COPY":
        array_call(ctx, "FCESTABL", lambda a: a.background_copy([(sv, tv)]))
        return [ok_estab(s, t, "CONVERTED TO COPY")]
    ids = array_call(ctx, "FCESTABL", lambda a: a.flash([(sv, tv)], dict(opts, freeze=False)))
    return [ok_estab(s, t)] if ids else []


def freeze_set(ctx, batch):
    """batch: [(echo, kw)] of FCESTABL ACTION(FREEZE): one establish."""
    prepared = []
    for _, kw in batch:
        prepared.append(fcestabl_prepare(ctx, kw))

    def act(a):
        new, refresh = [], []
        for sv, tv, opts, _ in prepared:
            exists = opts["record"] and f"{sv}:{tv}" in a.st["flash"]
            (refresh if exists else new).append((sv, tv, opts))
        return a.establish(new, refresh, freeze=True)
    array_call(ctx, "FCESTABL", act)
    return [ok_estab(s, t, "ESTABLISHED, LSS FROZEN") for _, _, _, (s, t) in prepared]


def fcwithdr(ctx, kw):
    check_apar(ctx, "FCWITHDR")
    action = kw.get("ACTION")
    if action == "THAW":
        dev = devn("FCWITHDR", kw, "DEVN", required=False) or devn("FCWITHDR", kw, "SDEVN")
        lss = volume(ctx, "FCWITHDR", dev)[:2]
        array_call(ctx, "FCWITHDR", lambda a: a.unfreeze([lss]))
        return [f"ANTF0031I FCWITHDR COMMAND COMPLETED: LSS {lss} OF DEVICE X'{dev}' THAWED"]
    if action is not None:
        raise TsoError(f"ANTF0003E FCWITHDR ACTION({action}) IS NOT SUPPORTED HERE")
    s, t = devn("FCWITHDR", kw, "SDEVN"), devn("FCWITHDR", kw, "TDEVN")
    sv, tv = volume(ctx, "FCWITHDR", s), volume(ctx, "FCWITHDR", t)
    array_call(ctx, "FCWITHDR", lambda a: a.rmflash([(sv, tv)]))
    return [f"ANTF0031I FCWITHDR COMMAND COMPLETED: RELATIONSHIP SDEVN X'{s}' TDEVN X'{t}' WITHDRAWN"]


def fcquery(ctx, kw):
    dev = devn("FCQUERY", kw, "DEVN")
    vol = volume(ctx, "FCQUERY", dev)
    rev = {d["volume"].upper(): n for n, d in ctx.devices.items()}

    def rows(a):
        return [a.row(i) for i in a.select([vol])]
    rels = array_call(ctx, "FCQUERY", rows)
    serial = ctx.image.split("-")[-1].rjust(12, "0")
    out = ["ANTF0090I FCQUERY Formatted -2",
           "DEVN SSID LSS CCA CU   SERIAL       ACT MAX  XC PC CC RV SE SEQNUM",
           f"{dev} {vol[:2]}00 {vol[:2]}  {vol[2:]}  2107 {serial} {len(rels):03d} 0012 N  N  N  N  N  00000000"]
    for r in rels:
        role = "SOURCE" if r["src"] == vol else "TARGET"
        other = r["tgt"] if role == "SOURCE" else r["src"]
        pct = 100 * (r["tracks"] - r["out_of_sync_tracks"]) // max(r["tracks"], 1)
        bg = f"FC..{pct:03d}%" if r["background_copy"] else "FC......"
        out.append(f"  {role} OF X'{rev.get(other, '----')}' VOL {r['id']} {bg} "
                   f"INCREMENTAL({'YES' if r['recording'] else 'NO'}) "
                   f"OUTOFSYNC({r['out_of_sync_tracks']}) "
                   f"STATE({'VALID' if r['valid'] else 'INVALID'})")
    return out


def run(lines, ctx, log=lambda m: None):
    out, rc = [], 0
    cmds = commands(lines)
    batch = []

    def flush():
        nonlocal rc
        if not batch:
            return
        try:
            msgs, code = freeze_set(ctx, batch), 0
        except TsoError as e:
            msgs, code = [e.msg], e.rc
        for echo, _ in batch:
            out.extend(["READY", f" {echo}"])
        out.extend(msgs)
        rc = max(rc, code)
        log(f"TSO freeze set of {len(batch)} → RC {code}{': ' + msgs[0] if code else ''}")
        batch.clear()

    for c in cmds:
        verb, _, rest = c.partition(" ")
        verb = verb.upper()
        try:
            kw = keywords(verb, rest) if verb in KNOWN else None
        except TsoError as e:
            flush()
            out.extend(["READY", f" {c}", e.msg])
            rc = max(rc, e.rc)
            continue
        if verb == "FCESTABL" and kw.get("ACTION") == "FREEZE":
            batch.append((c, kw))
            continue
        flush()
        out.extend(["READY", f" {c}"])
        try:
            if verb == "FCESTABL":
                msgs = fcestabl(ctx, kw)
            elif verb == "FCWITHDR":
                msgs = fcwithdr(ctx, kw)
            elif verb == "FCQUERY":
                msgs = fcquery(ctx, kw)
            else:
                raise TsoError(f"IKJ56500I COMMAND {verb} NOT FOUND", rc=12)
            out.extend(msgs)
            log(f"TSO {c} → RC 0")
        except TsoError as e:
            out.append(e.msg)
            rc = max(rc, e.rc)
            log(f"TSO {c} → RC {e.rc}: {e.msg}")
    flush()
    out.extend(["READY", "END"])
    return out, rc
