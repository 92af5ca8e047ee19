# SPDX-License-Identifier: MIT
"""DSCLI command lines, as the HMC runs them for the `dscli` executable.

Role
  run(array_factory, lines, log) runs a script's lines in order with one
  session environment (setenv), and stops at the first that fails, as
  DSCLI script mode does; each line gives stdout, stderr and an exit code
  (errors.EXIT).  Output formats: default (aligned columns under a rule of
  '='), delim (the delimiter, ',' unless -delim, header then a rule of
  '='; what scripts parse), stanza (one "key value" line per field);
  -hdr on|off, -bnr on|off per command or through setenv.

  Commands: setenv, mkflash, resyncflash, reverseflash, rmflash,
  unfreezeflash, lsflash, lsfbvol, lsckdvol, lssi, quit/exit.
  mkremoteflash and the other remote (-conduit) variants are refused as
  unknown: there is no PPRC here.

UNVERIFIED
  The banner's wording; which columns lsflash shows without -l (the
  reference's twelve) and with it (plus DateCreated, DateSynced, State,
  isTgtSE, names from opensvc's parser); rmflash without -quiet asks
  nothing in script mode here; lsflash without an argument lists all.
"""
import shlex

from .errors import OK, DsError

FLASH_COLS = [("ID", "id"), ("SrcLSS", "lss"), ("SequenceNum", "seqnum"), ("Timeout", "timeout"),
              ("ActiveCopy", "active_copy"), ("Recording", "recording"),
              ("Persistent", "persistent"), ("Revertible", "revertible"),
              ("SourceWriteEnabled", "source_write_enabled"),
              ("TargetWriteEnabled", "target_write_enabled"),
              ("BackgroundCopy", "background_copy"), ("OutOfSyncTracks", "out_of_sync_tracks")]
FLASH_LONG = [("DateCreated", "date_created"), ("DateSynced", "date_synced"), ("State", "valid"),
              ("isTgtSE", None)]

# Flags that take a value; all others are switches.
VALUED = {"-dev", "-seqnum", "-fmt", "-delim", "-hdr", "-bnr", "-lss", "-banner", "-header",
          "-format", "-devid", "-extpool", "-conduit"}
SWITCHES = {
    "mkflash": {"-tgtpprc", "-tgtoffline", "-tgtinhibit", "-freeze", "-record", "-persist",
                "-nocp", "-cp", "-wait", "-tgtse"},
    "resyncflash": {"-record", "-persist", "-nocp", "-cp", "-freeze", "-tgtpprc", "-tgtoffline",
                    "-tgtinhibit", "-tgtse"},
    "reverseflash": {"-fast", "-record", "-persist", "-tgtpprc", "-tgtoffline", "-tgtinhibit"},
    "rmflash": {"-quiet", "-tgtonly", "-cp", "-resettgtinhibit", "-wait"},
    "unfreezeflash": set(),
    "lsflash": {"-l", "-s", "-activecp", "-record", "-persist", "-revertible"},
    "lsfbvol": {"-l", "-s"},
    "lsckdvol": {"-l", "-s"},
    "lssi": {"-l", "-s"},
    "setenv": set(),
    "quit": set(), "exit": set(),
}


def yn(v):
    if isinstance(v, bool):
        return "Enabled" if v else "Disabled"
    return str(v)


class Session:
    def __init__(self, cfg):
        self.env = {"banner": True, "header": True, "format": "default", "delim": ",",
                    "devid": cfg.get("devid") or ""}


def parse(words):
    cmd = words[0]
    if cmd not in SWITCHES:
        raise DsError("unknown_cmd", word=cmd)
    flags, args, i = {}, [], 1
    while i < len(words):
        w = words[i]
        if w.startswith("-") and len(w) > 1:
            if w in VALUED:
                if i + 1 >= len(words):
                    raise DsError("missing", what=f"the value of {w}")
                flags[w] = words[i + 1]
                i += 2
                continue
            if w not in SWITCHES[cmd]:
                raise DsError("bad_flag", flag=w)
            flags[w] = True
        else:
            args.append(w)
        i += 1
    return cmd, flags, args


def table(session, flags, cols, rows, array):
    """rows: list of dicts; cols: [(header, key)]."""
    env = dict(session.env)
    if "-fmt" in flags:
        env["format"] = flags["-fmt"]
    if "-delim" in flags:
        env["delim"] = flags["-delim"]
    if "-hdr" in flags:
        env["header"] = flags["-hdr"] == "on"
    if "-bnr" in flags:
        env["banner"] = flags["-bnr"] == "on"
    if env["format"] not in ("default", "delim", "stanza"):
        raise DsError("bad_id", id=env["format"], what="format (default, delim, stanza)")
    cells = [[yn(r.get(k, "-")) if k else "-" for _, k in cols] for r in rows]
    heads = [h for h, _ in cols]
    out = []
    if env["banner"]:
        import time
        out.append(f"Date/Time: {time.strftime('%B %d, %Y %I:%M:%S %p %Z')} "
                   f"IBM DSCLI Version: 7.9.30 (ds8kemu) DS: {array.image}")
    if env["format"] == "stanza":
        for row in cells:
            out += [f"{h} {c}" for h, c in zip(heads, row)] + [""]
    elif env["format"] == "delim":
        d = env["delim"]
        if env["header"]:
            head = d.join(heads)
            out += [head, "=" * len(head)]
        out += [d.join(row) for row in cells]
    else:
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(heads)]
        if env["header"]:
            out.append(" ".join(h.ljust(w) for h, w in zip(heads, widths)).rstrip())
            out.append("=" * (sum(widths) + len(widths) - 1))
        out += [" ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(out) + "\n"


def opts_of(flags):
    return {"record": "-record" in flags, "persist": "-persist" in flags,
            "nocp": "-nocp" in flags, "freeze": "-freeze" in flags,
            "tgtinhibit": "-tgtinhibit" in flags, "fast": "-fast" in flags,
            "seqnum": flags.get("-seqnum")}


def run_one(session, array, words):
    cmd, flags, args = parse(words)
    if cmd in ("quit", "exit"):
        return ""
    if cmd == "setenv":
        for f, k in (("-banner", "banner"), ("-header", "header"), ("-hdr", "header"),
                     ("-bnr", "banner")):
            if f in flags:
                session.env[k] = flags[f] == "on"
        for f, k in (("-format", "format"), ("-fmt", "format"), ("-delim", "delim"),
                     ("-devid", "devid"), ("-dev", "devid")):
            if f in flags:
                session.env[k] = flags[f]
        return ""
    array.check_dev(flags.get("-dev") or session.env["devid"])
    if cmd in ("mkflash", "resyncflash", "reverseflash", "rmflash"):
        if not args:
            raise DsError("missing", what="SOURCE:TARGET")
        pairs = [array.pair(a) for a in args]
        opts = opts_of(flags)
        if cmd == "mkflash":
            ids = array.mkflash(pairs, opts)
        elif cmd == "resyncflash":
            ids = array.resyncflash(pairs, opts)
        elif cmd == "reverseflash":
            ids = array.reverseflash(pairs, opts)
            # DSCLI names the pair as given (it is reversed afterwards).
            ids = [f"{s}:{t}" for s, t in pairs]
        else:
            ids = array.rmflash(pairs)
        return "".join(OK[cmd].format(id=i) + "\n" for i in ids)
    if cmd == "unfreezeflash":
        if not args:
            raise DsError("missing", what="LSS_ID")
        return "".join(OK[cmd].format(id=lss) + "\n" for lss in array.unfreeze(args))
    if cmd == "lsflash":
        rows = [array.row(i) for i in array.select(args)]
        for f, k in (("-activecp", "active_copy"), ("-record", "recording"),
                     ("-persist", "persistent"), ("-revertible", "revertible")):
            if f in flags:
                rows = [r for r in rows if r[k]]
        if not rows:
            return OK["lsflash_none"] + "\n"
        for r in rows:
            r["valid"] = "Valid" if r["valid"] else "Invalid"
        if "-s" in flags:
            cols = [("ID", "id")]
        else:
            cols = FLASH_COLS + (FLASH_LONG if "-l" in flags else [])
        return table(session, flags, cols, rows, array)
    if cmd in ("lsfbvol", "lsckdvol"):
        kind = "fb" if cmd == "lsfbvol" else "ckd"
        sel = args[0] if args else None
        rows = [dict(v, accstate="Online", datastate="Normal", configstate="Normal",
                     mtm="2107-900", datatype="FB 512" if kind == "fb" else "3390",
                     extpool="P0" if kind == "fb" else "P1", gib=f"{v['size'] / 2**30:.1f}",
                     gb=f"{v['size'] / 1e9:.1f}", blocks=str(v["size"] // 512),
                     cyl=str(v.get("cyl") or 0), orgbvols="-")
                for v in array.volumes(kind, sel)]
        if "-lss" in flags:
            lss = array.lss_id(flags["-lss"])
            rows = [r for r in rows if r["id"][:2] == lss]
        if kind == "fb":
            cols = [("Name", "name"), ("ID", "id"), ("accstate", "accstate"),
                    ("datastate", "datastate"), ("configstate", "configstate"),
                    ("deviceMTM", "mtm"), ("datatype", "datatype"), ("extpool", "extpool"),
                    ("cap (2^30B)", "gib"), ("cap (10^9B)", "gb"), ("cap (blocks)", "blocks")]
        else:
            cols = [("Name", "name"), ("ID", "id"), ("accstate", "accstate"),
                    ("datastate", "datastate"), ("configstate", "configstate"),
                    ("deviceMTM", "mtm"), ("voltype", "datatype"), ("orgbvols", "orgbvols"),
                    ("extpool", "extpool"), ("cap (cyl)", "cyl")]
        if "-s" in flags:
            cols = [("ID", "id")]
        return table(session, flags, cols, rows, array)
    # lssi
    row = {"name": "ds8kemu", "id": array.image, "unit": array.image[:-1] + "0",
           "model": "996", "wwnn": "5005076303FFD13E", "state": "Online", "essnet": "Enabled"}
    return table(session, flags, [("Name", "name"), ("ID", "id"), ("Storage Unit", "unit"),
                                  ("Model", "model"), ("WWNN", "wwnn"), ("State", "state"),
                                  ("ESSNet", "essnet")], [row], array)


def run(array_factory, lines, log, cfg):
    """[(stdout, stderr, rc)] for each line run; stops after the first failure."""
    session = Session(cfg)
    results = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            words = None
        try:
            if words is None:
                raise DsError("bad_id", id=line, what="command line (unbalanced quotes)")
            with array_factory() as array:
                out = run_one(session, array, words)
            log(f"{line} → ok")
            results.append((out, "", 0))
        except DsError as e:
            name = words[0] if words else "dscli"
            log(f"{line} → {e.code} {e.text}")
            text = e.text if e.text.startswith(name + ":") else f"{name}: {e.text}"
            results.append(("", f"{e.code} {text}\n", e.exit_code))
            break
    return results
