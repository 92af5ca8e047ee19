# SPDX-License-Identifier: MIT
"""The emulated storage image's copy services: volumes, FlashCopy
relationships, freezes — validated, then done on pitcopy.

Role
  One Array per request, over the locked state (store.locked) and the
  pitcopy daemon.  Every operation checks all its pairs first (syntax →
  volumes exist → relations → limits) and only then acts, so a refused
  request changes nothing; if pitcopy fails part way, what was made is
  taken back (no half-made relationships).  DSCLI, REST and the z/OSMF
  emulator's TSO commands all come here.

  DS8000 → pitcopy:
    volume XYZZ (LSS XY)          pitcopy volume "<serial>-XYZZ"
    relationship SRC:TGT          mapping "fc-<serial>-SRC-TGT", grain 64 KiB
                                  (an FB track); background copy at the
                                  configured copy rate, -nocp = rate 0
    not -persist                  autodelete: gone when the copy completes
    -record (implies -persist)    an incremental mapping
    several pairs with -freeze    one pitcopy group start = one point in
                                  time, then the group is dropped (the
                                  members stay, each its own relationship)
    -freeze                       the source LSSs are "frozen" until
                                  unfreezeflash or the timeout: shown as
                                  SourceWriteEnabled Disabled.  pitcopy has
                                  no long write hold, so host writes are
                                  NOT held meanwhile (UNVERIFIED how a
                                  driver could tell; the point in time is
                                  the group start's, which is what the
                                  freeze exists to give)
    resyncflash                   stop if still copying, then start again:
                                  pitcopy copies only the changed grains
    reverseflash SRC:TGT          mapping TGT→SRC started with --restore;
                                  the relationship is TGT:SRC from then on
                                  (the forward mapping is kept as its partner)
    rmflash                       delete --force (both mappings if reversed)
    -tgtinhibit                   recorded and shown (TargetWriteEnabled
                                  Disabled); target writes are not refused

Invariants
  A1  Every relationship record names a pitcopy mapping rec["pc"]; sync()
      drops records whose mapping is gone (autodelete after the copy).
  A2  A volume is the target of at most one relationship.
  A3  A source has at most MAX_TARGETS relationships, at most one of them
      with change recording (the reference's limits).
"""
import math
import re
import time

from .errors import DsError
from .pitcopy import PitcopyError

MAX_TARGETS = 12
TRACK = {"fb": 65536, "ckd": 56664}       # bytes per track (reference)
CYLINDER_TRACKS = 15
VOL_RE = re.compile(r"^[0-9A-Fa-f]{4}$")
LSS_RE = re.compile(r"^[0-9A-Fa-f]{2}$")


def now_text():
    """As DSCLI prints dates (opensvc parses "%a %b %d %H:%M:%S %Z %Y")."""
    return time.strftime("%a %b %d %H:%M:%S %Z %Y")


class Array:
    def __init__(self, cfg, state, pc, log=None):
        self.cfg, self.st, self.pc = cfg, state, pc
        self.log = log or (lambda msg: None)
        self.image = cfg["image"]
        self.serial = self.image.split("-")[-1]
        self.pcmaps = {}
        self.sync()

    # ---- ids ---------------------------------------------------------------

    def strip_image(self, ref):
        """'IBM.2107-75FA120/0100' → '0100' (this image only)."""
        if "/" in ref:
            dev, _, ref = ref.rpartition("/")
            self.check_dev(dev)
        return ref

    def check_dev(self, dev):
        if dev and dev.upper() != self.image.upper():
            raise DsError("bad_dev", dev=dev, image=self.image)

    def vol_id(self, ref):
        ref = self.strip_image(ref)
        if not VOL_RE.match(ref):
            raise DsError("bad_id", id=ref, what="volume ID (4 hex digits, XYZZ)")
        return ref.upper()

    def lss_id(self, ref):
        ref = self.strip_image(ref)
        if not LSS_RE.match(ref):
            raise DsError("bad_id", id=ref, what="LSS ID (2 hex digits)")
        return ref.upper()

    def pair(self, ref):
        src, sep, tgt = self.strip_image(ref).partition(":")
        if not sep:
            raise DsError("bad_id", id=ref, what="volume pair (SOURCE:TARGET)")
        return self.vol_id(src), self.vol_id(tgt)

    def volume(self, vid):
        v = self.st["volumes"].get(vid)
        if v is None:
            raise DsError("no_volume", id=vid)
        return v

    # ---- state from pitcopy --------------------------------------------------

    def sync(self):
        now = time.time()
        for lss in [k for k, f in self.st["frozen"].items() if f["until"] < now]:
            self.log(f"LSS {lss}: freeze timed out, thawed")
            del self.st["frozen"][lss]
        if not self.st["flash"]:
            return
        self.pcmaps = self.call("sync", self.pc.maps)
        for rid, rec in list(self.st["flash"].items()):
            if rec["pc"] not in self.pcmaps:                   # A1
                self.log(f"relationship {rid}: copy complete, not persistent: withdrawn")
                del self.st["flash"][rid]

    def call(self, what, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except PitcopyError as e:
            self.log(f"{what}: {e}")
            raise DsError("internal", id=what, why=e.message) from None

    # ---- volumes ---------------------------------------------------------------

    def mkvol(self, vid, size=None, cyl=None, kind="fb", name=None):
        vid = self.vol_id(vid)
        if vid in self.st["volumes"]:
            raise DsError("exists", id=vid)
        if kind == "ckd":
            size = (cyl or 1) * CYLINDER_TRACKS * TRACK["ckd"]
        pc_name = f"{self.serial}-{vid}"
        # pitcopy sizes are whole grains; the volume keeps its own capacity.
        self.call(vid, self.pc.volume_create, pc_name, -(-size // 65536) * 65536)
        self.st["volumes"][vid] = {"id": vid, "name": name or f"vol{vid}", "type": kind,
                                   "size": size, "cyl": cyl, "pc": pc_name}
        return self.st["volumes"][vid]

    def volumes(self, kind=None, selector=None):
        rows = [v for _, v in sorted(self.st["volumes"].items())
                if kind is None or v["type"] == kind]
        if selector:
            lo, _, hi = selector.partition("-")
            lo, hi = self.vol_id(lo), self.vol_id(hi or lo)
            rows = [v for v in rows if lo <= v["id"] <= hi]
        return rows

    # ---- relationships: checks -------------------------------------------------

    def targets_of(self, src):
        return [k for k, r in self.st["flash"].items() if r["src"] == src]

    def target_rel(self, vid):
        """The relationship vid is a target in; a reversed relationship's
        source too (its forward mapping still has it as target)."""
        return next((k for k, r in self.st["flash"].items()
                     if r["tgt"] == vid or (r["reversed"] and r["src"] == vid)), None)

    def rel(self, rid):
        rec = self.st["flash"].get(rid)
        if rec is None:
            raise DsError("no_relationship", id=rid)
        return rec

    def check_new(self, items):
        """Every check of an establish, before anything is done (A2, A3).
        items: [(src, tgt, opts)] of relationships to make."""
        targets, per_src, incr = {}, {}, {}
        for src, tgt, opts in items:
            pid = f"{src}:{tgt}"
            self.volume(src)
            self.volume(tgt)
            if src == tgt:
                raise DsError("same_volume", id=pid)
            if pid in self.st["flash"]:
                raise DsError("exists", id=pid)
            other = self.target_rel(tgt) or targets.get(tgt)
            if other:
                raise DsError("busy_target", id=pid, vol=tgt, other=other)
            targets[tgt] = pid
            s, t = self.st["volumes"][src], self.st["volumes"][tgt]
            if s["type"] != t["type"]:
                raise DsError("mismatch", id=pid, why=f"{src} is {s['type'].upper()} and "
                              f"{tgt} is {t['type'].upper()}")
            if t["size"] < s["size"]:
                raise DsError("mismatch", id=pid, why=f"target {tgt} ({t['size']} bytes) is "
                              f"smaller than source {src} ({s['size']} bytes)")
            per_src[src] = per_src.get(src, 0) + 1
            n = len(self.targets_of(src)) + per_src[src]
            if n > MAX_TARGETS:
                raise DsError("too_many", id=pid, src=src, n=n, max=MAX_TARGETS)
            if opts.get("record"):
                other = next((k for k in self.targets_of(src) if self.st["flash"][k]["record"]),
                             None) or incr.get(src)
                if other:
                    raise DsError("two_incremental", id=pid, src=src, other=other)
                incr[src] = pid
        for src, tgt, _ in items:
            if src in targets:
                raise DsError("target_of_self", id=f"{src}:{tgt}", vol=src)

    def check_refresh(self, rid):
        rec = self.rel(rid)
        if not (rec["record"] and rec["persist"]) or rec["reversed"]:
            raise DsError("not_incremental", id=rid)
        return rec

    def copy_rate(self, opts):
        return 0 if opts.get("nocp") else self.cfg["copy_rate"]

    def start_all(self, names, freeze):
        """One point in time for all (a group) with freeze; else one by one."""
        if not freeze:
            for n in names:
                self.pc.map_start(n)
            return
        self.st["seq"] += 1
        group = f"fz-{self.serial}-{self.st['seq']}"
        self.pc.group_create(group)
        try:
            for n in names:
                self.pc.map_set(n, group=group)
            self.pc.group_start(group)
        finally:
            # The members stay, stand-alone: each relationship is withdrawn
            # or resynchronized on its own later.
            self.pc.group_delete(group, force=True)

    def freeze(self, lsss):
        until = time.time() + self.cfg["freeze_timeout"]
        for lss in lsss:
            self.st["frozen"][lss] = {"until": until}

    @staticmethod
    def norm(opts):
        opts = dict(opts)
        if opts.get("record"):
            opts["persist"] = True                  # -record needs -persist
        return opts

    def establish(self, new, refresh, freeze):
        """Make the relationships `new` [(src, tgt, opts)] and refresh the
        incremental ones `refresh` [(src, tgt, opts)], all checked first;
        with freeze all of them at one point in time.  Returns their ids."""
        new = [(s, t, self.norm(o)) for s, t, o in new]
        refresh = [(s, t, self.norm(o)) for s, t, o in refresh]
        self.check_new(new)
        recs = [self.check_refresh(f"{s}:{t}") for s, t, _ in refresh]
        made, names = [], []
        try:
            for src, tgt, opts in new:
                name = f"fc-{self.serial}-{src}-{tgt}"
                self.pc.map_create(self.st["volumes"][src]["pc"], self.st["volumes"][tgt]["pc"],
                                   name, self.copy_rate(opts), incremental=bool(opts.get("record")),
                                   autodelete=not opts.get("persist"))
                made.append(name)
            for rec, (_, _, opts) in zip(recs, refresh):
                m = self.pcmaps[rec["pc"]]
                if m["state"] in ("copying", "prepared", "preparing"):
                    self.pc.map_stop(rec["pc"])
                    self.wait_settled(rec["pc"])
                if self.copy_rate(opts) != m["copy_rate"]:
                    self.pc.map_set(rec["pc"], copy_rate=self.copy_rate(opts))
            names = made + [rec["pc"] for rec in recs]
            self.start_all(names, freeze)
        except PitcopyError as e:
            self.undo(made)
            ids = " ".join(f"{s}:{t}" for s, t, _ in new + refresh)
            raise DsError("internal", id=ids, why=e.message) from None
        now = now_text()
        for (src, tgt, opts), name in zip(new, made):
            self.st["flash"][f"{src}:{tgt}"] = {
                "src": src, "tgt": tgt, "pc": name, "partner": None, "reversed": False,
                "record": bool(opts.get("record")), "persist": bool(opts.get("persist")),
                "nocp": bool(opts.get("nocp")), "tgtinhibit": bool(opts.get("tgtinhibit")),
                "seqnum": str(opts.get("seqnum") or "0"), "created": now, "synced": now}
        for rec, (_, _, opts) in zip(recs, refresh):
            # The parameters given replace the relationship's (DSCLI docs).
            rec.update(record=bool(opts.get("record")), persist=bool(opts.get("persist")),
                       nocp=bool(opts.get("nocp")), tgtinhibit=bool(opts.get("tgtinhibit")),
                       synced=now)
        if freeze:
            self.freeze(sorted({s[:2] for s, _, _ in new + refresh}))
        return [f"{s}:{t}" for s, t, _ in new + refresh]

    def mkflash(self, pairs, opts):
        """Establish SRC:TGT pairs; returns their ids.  opts: record, persist,
        nocp, freeze, tgtinhibit, seqnum."""
        return self.establish([(s, t, opts) for s, t in pairs], [], bool(opts.get("freeze")))

    def resyncflash(self, pairs, opts):
        return self.establish([], [(s, t, opts) for s, t in pairs], bool(opts.get("freeze")))

    def flash(self, pairs, opts):
        """Establish, or refresh where an incremental relationship exists
        and opts asks for recording (FCESTABL INCREMENTAL(YES), the REST
        establish with record_changes)."""
        new, refresh = [], []
        for s, t in pairs:
            (refresh if f"{s}:{t}" in self.st["flash"] and opts.get("record") else new).append((s, t, opts))
        return self.establish(new, refresh, bool(opts.get("freeze")))

    def undo(self, names):
        for n in reversed(names):
            try:
                self.pc.map_delete(n, force=True)
            except PitcopyError as e:
                self.log(f"undo: {e}")

    def wait_settled(self, name, timeout=30):
        """Until a stopping mapping has stopped (cleaning done)."""
        end = time.time() + timeout
        while time.time() < end:
            m = self.pc.maps().get(name)
            if m is None or m["state"] not in ("stopping",):
                return m
            time.sleep(0.05)
        raise PitcopyError(["map", "stop", name], "still stopping after 30 s")

    def reverseflash(self, pairs, opts):
        to_reverse = []
        for src, tgt in pairs:
            rid = f"{src}:{tgt}"
            rec = self.rel(rid)
            if rec["reversed"]:
                raise DsError("reverse", id=rid, why="it is already the reverse of "
                              f"{tgt}:{src}; withdraw it (rmflash) and establish anew")
            m = self.pcmaps[rec["pc"]]
            whole = m["state"] == "copying" or (m["state"] == "idle_or_copied" and m["complete"])
            if not whole:
                raise DsError("reverse", id=rid, why=f"the target {tgt} holds no point-in-time "
                              f"image (the relationship is {m['state']})")
            if not opts.get("fast") and not m["complete"]:
                raise DsError("reverse", id=rid, why="the background copy has not completed "
                              "(use -fast for a fast reverse restore)")
            to_reverse.append((rid, rec))
        made = []
        try:
            for rid, rec in to_reverse:
                name = f"fc-{self.serial}-{rec['tgt']}-{rec['src']}"
                self.pc.map_set(rec["pc"], autodelete=False)
                self.pc.map_create(self.st["volumes"][rec["tgt"]]["pc"],
                                   self.st["volumes"][rec["src"]]["pc"], name, self.cfg["copy_rate"])
                made.append(name)
                self.pc.map_start(name, restore=True)
        except PitcopyError as e:
            self.undo(made)
            raise DsError("reverse", id=" ".join(r for r, _ in to_reverse), why=e.message) from None
        now = now_text()
        ids = []
        for (rid, rec), name in zip(to_reverse, made):
            del self.st["flash"][rid]
            new = f"{rec['tgt']}:{rec['src']}"
            self.st["flash"][new] = dict(rec, src=rec["tgt"], tgt=rec["src"], pc=name,
                                         partner=rec["pc"], reversed=True, synced=now,
                                         tgtinhibit=bool(opts.get("tgtinhibit")))
            ids.append(new)
        return ids

    def rmflash(self, pairs):
        recs = [(f"{s}:{t}", self.rel(f"{s}:{t}")) for s, t in pairs]
        done = []
        for rid, rec in recs:
            for name in (rec["pc"], rec.get("partner")):
                if name and name in self.pcmaps:
                    self.call(rid, self.pc.map_delete, name, force=True)
            del self.st["flash"][rid]
            done.append(rid)
        return done

    def background_copy(self, pairs):
        """A nocopy relationship starts its background copy (FCESTABL
        MODE(NOCOPY2COPY))."""
        recs = [self.rel(f"{s}:{t}") for s, t in pairs]
        for rec in recs:
            self.call(f"{rec['src']}:{rec['tgt']}", self.pc.map_set, rec["pc"],
                      copy_rate=self.cfg["copy_rate"])
            rec["nocp"] = False
        return [f"{s}:{t}" for s, t in pairs]

    def unfreeze(self, lsss):
        lsss = [self.lss_id(x) for x in lsss]
        for lss in lsss:
            self.st["frozen"].pop(lss, None)
        return lsss

    # ---- queries -------------------------------------------------------------------

    def select(self, refs):
        """Relationship ids matching SRC:TGT, a volume (source or target) or a
        source range XXXX-YYYY; all without refs."""
        ids = sorted(self.st["flash"])
        if not refs:
            return ids
        out = []
        for ref in refs:
            ref = self.strip_image(ref)
            if ":" in ref:
                s, t = self.pair(ref)
                hit = [f"{s}:{t}"] if f"{s}:{t}" in self.st["flash"] else []
            elif "-" in ref:
                lo, _, hi = ref.partition("-")
                lo, hi = self.vol_id(lo), self.vol_id(hi)
                hit = [k for k in ids if lo <= self.st["flash"][k]["src"] <= hi]
            else:
                v = self.vol_id(ref)
                hit = [k for k in ids if v in (self.st["flash"][k]["src"], self.st["flash"][k]["tgt"])]
            out += [k for k in hit if k not in out]
        return out

    def row(self, rid):
        rec = self.st["flash"][rid]
        m = self.pcmaps[rec["pc"]]
        vol = self.st["volumes"][rec["src"]]
        tracks = math.ceil(vol["size"] / TRACK[vol["type"]])
        if m["complete"]:
            oos = 0
        else:
            oos = round(tracks * (m["grains"] - m["grains_split"]) / max(m["grains"], 1))
        lss = rec["src"][:2]
        return {
            "id": rid, "src": rec["src"], "tgt": rec["tgt"], "lss": lss,
            "seqnum": rec["seqnum"], "timeout": self.cfg["freeze_timeout"],
            "active_copy": m["state"] == "copying" and not m["complete"] and m["copy_rate"] > 0,
            "recording": rec["record"], "persistent": rec["persist"], "revertible": False,
            "source_write_enabled": lss not in self.st["frozen"],
            "target_write_enabled": not rec["tgtinhibit"],
            "background_copy": not rec["nocp"], "out_of_sync_tracks": oos, "tracks": tracks,
            "date_created": rec["created"], "date_synced": rec["synced"],
            "valid": m["target_online"] and m["state"] in ("copying", "idle_or_copied"),
            "pitcopy_state": m["state"], "reversed": rec["reversed"],
        }
