# SPDX-License-Identifier: MIT
"""The emulated array: validation, the FlashCopy state machine, the effects.

Role
  One Array per command, built over the locked state (store.locked) and
  the pitcopy daemon.  cmd_<name>(req) validates in the order the reference
  suggests (§5: required flags → objects exist → relations → values), then
  acts on pitcopy, then records; it returns a views result or raises
  SvcError.  A mapping's status, progress and target availability are
  always pitcopy's, read at the start of the command (sync()).

  State machine (reference §2.2; "err" = CMMVC5903E unless noted):

      idle_or_copied --prestart--> preparing --flush--> prepared --start--> copying
      stopped        --prestart--> ...                  prepared --stop---> stopped
      copying --stop--> stopping --cleaned--> stopped (idle_or_copied if progress was 100)
      copying --background copy done--> idle_or_copied (deleted if autodelete)
      start -prep from idle_or_copied/stopped = prestart + start
      restore (the target is the source of an active map): only with -restore;
        pitcopy starts a restore without a prepare, so a `prestartfcmap
        -restore` is recorded here and shows as prepared until the start
      start on copying: CMMVC5907E; stop on stopped: CMMVC5912E; stop on idle_or_copied: no-op
      rmfcmap: idle_or_copied, or stopped with -force; otherwise err
      maps in a consistency group move only with the *fcconsistgrp commands

Invariants
  A1  Every fcmap record has a pitcopy mapping named rec["pc"]; sync()
      drops records whose mapping is gone (pitcopy's autodelete, or deleted
      by hand).  Every group record has a pitcopy group named rec["pc"].
  A2  A vdisk is the target of at most one fcmap (the array's rule; pitcopy
      enforces it too).
  A3  Group ids start at 1: group_id 0 means "stand-alone" (chfcmap -consistgrp 0).
  A4  A mapping that pitcopy refuses to move is reported as CMMVC5903E with
      pitcopy's message logged, never printed (output stays the array's).
"""
import re
import time

from .errors import SvcError
from .pitcopy import PitcopyError
from .views import Created, Detail, Table, human_size

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,62}$")
UNITS = {"b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "tb": 2**40, "pb": 2**50}
ACTIVE = ("preparing", "prepared", "copying", "stopping", "suspended")
# A group's status is its members' common one; when they differ (one copy
# finished before another) the first of these that any member has.
GROUP_PRECEDENCE = ("suspended", "stopping", "preparing", "copying", "prepared", "stopped",
                    "idle_or_copied")

FCMAP_COLUMNS = ["id", "name", "source_vdisk_id", "source_vdisk_name", "target_vdisk_id",
                 "target_vdisk_name", "group_id", "group_name", "status", "progress", "copy_rate",
                 "clean_progress", "incremental", "partner_FC_id", "partner_FC_name", "restoring",
                 "start_time", "rc_controlled"]
FCMAP_DETAIL = ["id", "name", "source_vdisk_id", "source_vdisk_name", "target_vdisk_id",
                "target_vdisk_name", "group_id", "group_name", "status", "progress", "copy_rate",
                "start_time", "dependent_mappings", "autodelete", "clean_progress", "clean_rate",
                "incremental", "difference", "grain_size", "IO_group_id", "IO_group_name",
                "partner_FC_id", "partner_FC_name", "restoring", "rc_controlled", "keep_target",
                "type", "restore_progress", "fc_controlled", "owner_id", "owner_name"]
VDISK_COLUMNS = ["id", "name", "IO_group_id", "IO_group_name", "status", "mdisk_grp_id",
                 "mdisk_grp_name", "capacity", "type", "FC_id", "FC_name", "RC_id", "RC_name",
                 "vdisk_UID", "fc_map_count", "copy_count", "fast_write_state", "se_copy_count",
                 "RC_change", "compressed_copy_count", "parent_mdisk_grp_id",
                 "parent_mdisk_grp_name", "owner_id", "owner_name", "formatting", "encrypt",
                 "volume_id", "volume_name", "function", "protocol"]
GROUP_COLUMNS = ["id", "name", "status", "start_time", "owner_id", "owner_name"]
POOL_COLUMNS = ["id", "name", "status", "mdisk_count", "vdisk_count", "capacity", "extent_size",
                "free_capacity", "virtual_capacity", "used_capacity", "real_capacity",
                "overallocation", "warning", "easy_tier", "easy_tier_status"]


def now_svc():
    """start_time as the array writes it: YYMMDDHHMMSS."""
    return time.strftime("%y%m%d%H%M%S")


def rate(value, low=0):
    try:
        r = int(value)
    except ValueError:
        raise SvcError("CMMVC5767E") from None
    if not low <= r <= 150:
        raise SvcError("CMMVC5767E")
    return r


class Array:
    def __init__(self, config, state, pc, log=None):
        self.cfg, self.st, self.pc = config, state, pc
        self.log = log or (lambda msg: None)
        self.pcmaps = {}
        self._bytes = False                      # -bytes: capacities in bytes

    # ---- plumbing -------------------------------------------------------

    def run(self, req):
        self.sync()
        return getattr(self, "cmd_" + req.cmd)(req)

    def call(self, fn, *args, code="CMMVC5903E", **kw):
        """A pitcopy call; its refusal becomes the array's error (A4)."""
        try:
            return fn(*args, **kw)
        except PitcopyError as e:
            raise SvcError(code, detail=str(e)) from None

    def sync(self):
        """Read every mapping's state from pitcopy (A1)."""
        if not self.st["fcmaps"]:
            self.pcmaps = {}
            return
        self.pcmaps = self.call(self.pc.maps)
        for mid, m in list(self.st["fcmaps"].items()):
            pm = self.pcmaps.get(m["pc"])
            if pm is None:
                self.log(f"fcmap {m['name']}: pitcopy mapping {m['pc']} is gone; dropping it")
                self.forget_fcmap(mid)

    def forget_fcmap(self, mid):
        m = self.st["fcmaps"].pop(mid)
        self.pcmaps.pop(m["pc"], None)
        g = self.st["groups"].get(m["group"])
        if g and g["autodelete"] and not self.members(m["group"]):
            self.delete_group(m["group"])

    def find(self, kind, ref, code):
        table = self.st[kind]
        if ref in table:
            return ref, table[ref]
        for k, v in table.items():
            if v["name"] == ref:
                return k, v
        raise SvcError(code, detail=f"no {kind} {ref!r}")

    def check_name(self, kind, name):
        if not NAME_RE.match(name):
            raise SvcError("CMMVC6527E")
        if any(v["name"] == name for v in self.st[kind].values()):
            raise SvcError("CMMVC6035E")

    def new_id(self, kind, first=0):
        used = {int(k) for k in self.st[kind]}
        i = first
        while i in used:
            i += 1
        return str(i)

    def status(self, m):
        s = self.pcmaps[m["pc"]]["state"]
        if m.get("restore_prepared") and s in ("idle_or_copied", "stopped"):
            return "prepared"
        return s

    def members(self, gid):
        return sorted((k for k, m in self.st["fcmaps"].items() if m["group"] == gid), key=int)

    def group_status(self, gid):
        states = {self.status(self.st["fcmaps"][k]) for k in self.members(gid)}
        if not states:
            return "empty"
        return next(s for s in GROUP_PRECEDENCE if s in states)

    def maps_of(self, vid):
        return sorted((k for k, m in self.st["fcmaps"].items()
                       if vid in (m["source"], m["target"])), key=int)

    def listing(self, req, columns, rows, detail):
        """Concise view of rows, or the detailed view of req.obj."""
        if req.obj is not None:
            return detail(req.obj)
        t = Table(columns, rows)
        if "filtervalue" in req.flags:
            t.filter(req.flags["filtervalue"])
        return t

    # ---- system, pools, vdisks ------------------------------------------

    def cmd_lssystem(self, req):
        c = self.cfg["cluster"]
        return Detail([("id", c["id"]), ("name", c["name"]), ("location", "local"),
                       ("partnership", ""), ("code_level", c["code_level"]),
                       ("product_name", c["product_name"]), ("time_zone", "522 UTC")])

    def pool_row(self, p):
        used = sum(v["size"] for v in self.st["vdisks"].values() if v["pool"] == p["id"])
        cap = p["capacity"]
        fmt = (lambda n: str(n)) if self._bytes else human_size
        return {"id": p["id"], "name": p["name"], "status": "online", "mdisk_count": "1",
                "vdisk_count": sum(1 for v in self.st["vdisks"].values() if v["pool"] == p["id"]),
                "capacity": fmt(cap), "extent_size": "1024", "free_capacity": fmt(max(cap - used, 0)),
                "virtual_capacity": fmt(used), "used_capacity": fmt(used),
                "real_capacity": fmt(used), "overallocation": used * 100 // cap if cap else 0,
                "warning": "80", "easy_tier": "balanced", "easy_tier_status": "balanced"}

    def find_pool(self, ref, code="CMMVC5754E"):
        for p in self.cfg["pools"]:
            if ref in (p["id"], p["name"]):
                return p
        raise SvcError(code)

    def cmd_lsmdiskgrp(self, req):
        self._bytes = req.flags.get("bytes", False)
        def detail(ref):
            return Detail(self.pool_row(self.find_pool(ref)).items())
        return self.listing(req, POOL_COLUMNS, [self.pool_row(p) for p in self.cfg["pools"]], detail)

    def vdisk_row(self, vid, v):
        maps = self.maps_of(vid)
        fm = self.st["fcmaps"]
        online = all(self.pcmaps[fm[k]["pc"]]["target_online"] for k in maps
                     if fm[k]["target"] == vid)
        pool = self.find_pool(v["pool"])
        return {"id": vid, "name": v["name"], "IO_group_id": "0", "IO_group_name": "io_grp0",
                "status": "online" if online else "offline", "mdisk_grp_id": pool["id"],
                "mdisk_grp_name": pool["name"],
                "capacity": str(v["size"]) if self._bytes else human_size(v["size"]),
                "type": "striped",
                "FC_id": "" if not maps else maps[0] if len(maps) == 1 else "many",
                "FC_name": "" if not maps else fm[maps[0]]["name"] if len(maps) == 1 else "many",
                "vdisk_UID": "6005076801%06X%016X" % (int(self.cfg["cluster"]["id"], 16) & 0xFFFFFF,
                                                      int(vid)),
                "fc_map_count": len(maps), "copy_count": "1", "fast_write_state": "empty",
                "se_copy_count": "0", "RC_change": "no", "compressed_copy_count": "0",
                "parent_mdisk_grp_id": pool["id"], "parent_mdisk_grp_name": pool["name"],
                "formatting": "no", "encrypt": "no", "volume_id": vid, "volume_name": v["name"],
                "function": "", "protocol": ""}

    def cmd_lsvdisk(self, req):
        self._bytes = req.flags.get("bytes", False)
        def detail(ref):
            vid, v = self.find("vdisks", ref, "CMMVC5754E")
            row = self.vdisk_row(vid, v)
            items = [(k, row.get(k, "")) for k in VDISK_COLUMNS]
            items += [("sync_rate", "50"), ("mirror_write_priority", "latency"),
                      ("copy_id", "0"), ("mdisk_grp_id", row["mdisk_grp_id"]),
                      ("mdisk_grp_name", row["mdisk_grp_name"])]
            return Detail(items)
        rows = [self.vdisk_row(k, self.st["vdisks"][k]) for k in sorted(self.st["vdisks"], key=int)]
        return self.listing(req, VDISK_COLUMNS, rows, detail)

    def cmd_mkvdisk(self, req):
        f = req.flags
        if "mdiskgrp" not in f or "size" not in f:
            raise SvcError("CMMVC5707E")
        unit = f.get("unit", "mb").lower()
        if unit not in UNITS or not f["size"].isdigit() or int(f["size"]) == 0:
            raise SvcError("CMMVC5767E")
        size = int(f["size"]) * UNITS[unit]
        size = (size + 4095) // 4096 * 4096      # pitcopy volumes are 4 KiB multiples
        pool = self.find_pool(f["mdiskgrp"])
        if "iogrp" in f and f["iogrp"] not in ("0", "io_grp0"):
            raise SvcError("CMMVC5754E")
        vid = self.new_id("vdisks")
        name = f.get("name", f"vdisk{vid}")
        self.check_name("vdisks", name)
        self.call(self.pc.volume_create, name, size, code="CMMVC6035E")
        self.st["vdisks"][vid] = {"name": name, "pc": name, "size": size, "pool": pool["id"]}
        return Created("Volume", vid)

    def cmd_chvdisk(self, req):
        _, v = self.find("vdisks", req.obj, "CMMVC5753E")
        if "name" in req.flags:
            self.check_name("vdisks", req.flags["name"])
            v["name"] = req.flags["name"]        # the pitcopy volume keeps its name

    def cmd_rmvdisk(self, req):
        vid, v = self.find("vdisks", req.obj, "CMMVC5753E")
        maps = self.maps_of(vid)
        if maps and not (req.flags.get("force") or req.flags.get("removefcmaps")):
            raise SvcError("CMMVC5840E")
        for mid in maps:
            self.call(self.pc.map_delete, self.st["fcmaps"][mid]["pc"], force=True)
            self.forget_fcmap(mid)
        self.call(self.pc.volume_delete, v["pc"])
        del self.st["vdisks"][vid]

    def cmd_lsvdiskfcmappings(self, req):
        vid, _ = self.find("vdisks", req.obj, "CMMVC5754E")
        return Table(["id", "name"], [{"id": k, "name": self.st["fcmaps"][k]["name"]}
                                      for k in self.maps_of(vid)])

    # ---- FlashCopy mappings ---------------------------------------------

    def fcmap_fields(self, mid, m):
        pm = self.pcmaps[m["pc"]]
        vd, g = self.st["vdisks"], self.st["groups"].get(m["group"])
        partner = next((k for k, o in self.st["fcmaps"].items()
                        if o["pc"] == pm.get("partner")), "")
        cleaning = pm["state"] == "stopping" and pm.get("grains_to_clean")
        copying = pm["state"] == "copying"
        return {
            "id": mid, "name": m["name"],
            "source_vdisk_id": m["source"], "source_vdisk_name": vd[m["source"]]["name"],
            "target_vdisk_id": m["target"], "target_vdisk_name": vd[m["target"]]["name"],
            "group_id": m["group"], "group_name": g["name"] if g else "",
            "status": self.status(m), "progress": pm["progress"], "copy_rate": m["copyrate"],
            "clean_progress": 0 if cleaning else 100,
            "incremental": "on" if m["incremental"] else "off",
            "partner_FC_id": partner,
            "partner_FC_name": self.st["fcmaps"][partner]["name"] if partner else "",
            "restoring": "yes" if pm.get("restoring") and copying else "no",
            "start_time": m["start_time"], "rc_controlled": "no",
            "dependent_mappings": len(self.dependents(mid)),
            "autodelete": "on" if pm.get("autodelete") else "off", "clean_rate": m["cleanrate"],
            # % of grains that differ: approximated from the copy progress.
            "difference": 100 - pm["progress"] if m["start_time"] else 100,
            "grain_size": m["grainsize"], "IO_group_id": "0", "IO_group_name": "io_grp0",
            "keep_target": "yes" if m["keeptarget"] else "no", "type": "generic",
            "restore_progress": pm["progress"] if pm.get("restoring") else 0,
            "fc_controlled": "no", "owner_id": "", "owner_name": "",
        }

    def dependents(self, mid):
        """Maps that depend on mid: on the same source, started before it and
        still needing grains from newer targets (not complete)."""
        m = self.st["fcmaps"][mid]
        pm = self.pcmaps[m["pc"]]
        if pm["state"] not in ("copying", "stopping") or not pm.get("started_at"):
            return []
        out = []
        for k, o in self.st["fcmaps"].items():
            po = self.pcmaps[o["pc"]]
            if (k != mid and o["source"] == m["source"] and po["state"] in ("copying", "stopping")
                    and not po["complete"] and (po.get("started_at") or "") < pm["started_at"]):
                out.append(k)
        return sorted(out, key=int)

    def cmd_lsfcmap(self, req):
        def detail(ref):
            mid, m = self.find("fcmaps", ref, "CMMVC5754E")
            f = self.fcmap_fields(mid, m)
            return Detail((k, f[k]) for k in FCMAP_DETAIL)
        rows = [self.fcmap_fields(k, self.st["fcmaps"][k])
                for k in sorted(self.st["fcmaps"], key=int)]
        return self.listing(req, FCMAP_COLUMNS, rows, detail)

    def cmd_lsfcmapprogress(self, req):
        mid, m = self.find("fcmaps", req.obj, "CMMVC5754E")
        return Table(["id", "progress"], [{"id": mid, "progress": self.pcmaps[m["pc"]]["progress"]}])

    def cmd_lsfcmapdependentmaps(self, req):
        mid, _ = self.find("fcmaps", req.obj, "CMMVC5754E")
        return Table(["fc_id", "fc_name"], [{"fc_id": k, "fc_name": self.st["fcmaps"][k]["name"]}
                                            for k in self.dependents(mid)])

    def group_accepts_maps(self, gid):
        return self.group_status(gid) in ("empty", "idle_or_copied", "stopped")

    def cmd_mkfcmap(self, req):
        f = req.flags
        if "source" not in f or "target" not in f:
            raise SvcError("CMMVC5707E")
        sid, src = self.find("vdisks", f["source"], "CMMVC5754E")
        tid, tgt = self.find("vdisks", f["target"], "CMMVC5754E")
        if sid == tid:
            raise SvcError("CMMVC6303E")
        if src["size"] != tgt["size"]:
            raise SvcError("CMMVC5924E")
        fm = self.st["fcmaps"]
        if any(m["source"] == sid and m["target"] == tid for m in fm.values()):
            raise SvcError("CMMVC6466E")
        if any(m["target"] == tid for m in fm.values()):
            # A2.  The code is UNVERIFIED: a volume that is already a target
            # is "not a suitable candidate" (it is absent from lsfcmapcandidate).
            raise SvcError("CMMVC5753E", detail=f"vdisk {tgt['name']} is already a target")
        mid = self.new_id("fcmaps")
        name = f.get("name", f"fcmap{mid}")
        self.check_name("fcmaps", name)
        gid = ""
        if "consistgrp" in f and f["consistgrp"] != "0":
            gid, _ = self.find("groups", f["consistgrp"], "CMMVC5753E")
            if not self.group_accepts_maps(gid):
                raise SvcError("CMMVC5903E")
        copyrate = rate(f.get("copyrate", "50"))
        cleanrate = rate(f.get("cleanrate", "50"))
        grain = f.get("grainsize")
        if grain is None:
            # The grain of a map the source or target is already in, else 256.
            others = [fm[k]["grainsize"] for k in self.maps_of(sid) + self.maps_of(tid)]
            grain = others[0] if others else "256"
        if grain not in ("64", "256"):
            raise SvcError("CMMVC5767E")
        g = self.st["groups"].get(gid)
        self.call(self.pc.map_create, src["pc"], tgt["pc"], name, grain + "K", copyrate,
                  cleanrate, group=g["pc"] if g else None, autodelete=bool(f.get("autodelete")),
                  incremental=bool(f.get("incremental")), code="CMMVC5767E")
        fm[mid] = {"name": name, "pc": name, "source": sid, "target": tid, "group": gid,
                   "copyrate": copyrate, "cleanrate": cleanrate,
                   "incremental": bool(f.get("incremental")), "grainsize": grain,
                   "keeptarget": bool(f.get("keeptarget")), "start_time": ""}
        return Created("FlashCopy Mapping", mid)

    def cmd_chfcmap(self, req):
        mid, m = self.find("fcmaps", req.obj, "CMMVC5753E")
        f = req.flags
        if not f:
            raise SvcError("CMMVC5707E")
        if "name" in f:
            if len(f) > 1:                       # -name goes alone
                raise SvcError("CMMVC5707E")
            if f["name"] != m["name"]:
                self.check_name("fcmaps", f["name"])
            m["name"] = f["name"]                # the pitcopy mapping keeps its name
            return None
        copyrate = rate(f["copyrate"]) if "copyrate" in f else None
        cleanrate = rate(f["cleanrate"]) if "cleanrate" in f else None
        if f.get("autodelete", "on") not in ("on", "off"):
            raise SvcError("CMMVC5767E")
        gid = None
        if "consistgrp" in f:
            gid = "" if f["consistgrp"] == "0" else self.find("groups", f["consistgrp"],
                                                              "CMMVC5753E")[0]
            if (self.status(m) not in ("idle_or_copied", "stopped")
                    or any(x and not self.group_accepts_maps(x) for x in (gid, m["group"]))):
                raise SvcError("CMMVC5903E")
        if copyrate is not None or cleanrate is not None:
            self.call(self.pc.map_set, m["pc"], copy_rate=copyrate, clean_rate=cleanrate)
            m["copyrate"] = m["copyrate"] if copyrate is None else copyrate
            m["cleanrate"] = m["cleanrate"] if cleanrate is None else cleanrate
        if gid is not None and gid != m["group"]:
            g = self.st["groups"].get(gid)
            self.call(self.pc.map_set_group, m["pc"], g["pc"] if g else "")
            old, m["group"] = m["group"], gid
            og = self.st["groups"].get(old)
            if og and og["autodelete"] and not self.members(old):
                self.delete_group(old)
        if "autodelete" in f:
            # pitcopy deletes a copied mapping at once, as the array does.
            self.call(self.pc.map_set, m["pc"], autodelete=f["autodelete"] == "on")
            self.sync()

    def cmd_rmfcmap(self, req):
        mid, m = self.find("fcmaps", req.obj, "CMMVC5753E")
        s = self.status(m)
        if s == "stopped" and not req.flags.get("force"):
            raise SvcError("CMMVC5903E", detail="stopped: needs -force")
        if s not in ("idle_or_copied", "stopped"):
            raise SvcError("CMMVC5903E", detail=f"mapping is {s}")
        self.call(self.pc.map_delete, m["pc"], force=True)
        self.forget_fcmap(mid)

    def standalone(self, req):
        mid, m = self.find("fcmaps", req.obj, "CMMVC5753E")
        if m["group"]:
            # Grouped maps move with *fcconsistgrp (reference §2.2; code UNVERIFIED).
            raise SvcError("CMMVC5903E", detail="mapping is in a consistency group")
        return mid, m

    def is_restore(self, m, flags):
        """A map whose target is the source of an active map needs -restore
        (reference §2.7; the code of the refusal is UNVERIFIED).  Without
        such a map -restore is ignored."""
        busy = any(o["source"] == m["target"] and self.status(o) in ("copying", "suspended",
                                                                      "stopping")
                   for o in self.st["fcmaps"].values())
        if busy and not flags.get("restore"):
            raise SvcError("CMMVC5903E", detail="the target is the source of an active mapping")
        # The array starts a map back onto its partner's source like any other
        # once the partner is idle (-restore is then ignored); pitcopy starts
        # every such map as a restore, so the emulator does too.
        partner = any(o["source"] == m["target"] and o["target"] == m["source"]
                      for o in self.st["fcmaps"].values())
        return busy or partner

    def prepare(self, mid, m, flags):
        if self.is_restore(m, flags):
            m["restore_prepared"] = True         # pitcopy prepares at the start
        else:
            self.call(self.pc.map_prepare, m["pc"])

    def cmd_prestartfcmap(self, req):
        mid, m = self.standalone(req)
        if self.status(m) not in ("idle_or_copied", "stopped"):
            raise SvcError("CMMVC5903E")
        self.prepare(mid, m, req.flags)

    def cmd_startfcmap(self, req):
        mid, m = self.standalone(req)
        s = self.status(m)
        if s == "copying":
            raise SvcError("CMMVC5907E")
        if s in ("idle_or_copied", "stopped") and req.flags.get("prep"):
            self.prepare(mid, m, req.flags)
        elif s != "prepared":
            raise SvcError("CMMVC5903E", detail=f"mapping is {s}")
        restore = self.is_restore(m, req.flags)
        self.call(self.pc.map_start, m["pc"], restore=restore)
        m.pop("restore_prepared", None)
        m["start_time"] = now_svc()

    def stop(self, mids, status, flags, group=None):
        if status == "idle_or_copied" or status == "empty":
            return                               # no effect since SVC 4.2.0
        if status == "stopped":
            raise SvcError("CMMVC5912E")
        if flags.get("split") and any(self.pcmaps[self.st["fcmaps"][k]["pc"]]["progress"] != 100
                                      for k in mids):
            raise SvcError("CMMVC5903E", detail="-split needs progress 100")
        for mid in mids:
            self.st["fcmaps"][mid].pop("restore_prepared", None)
        if group:
            self.call(self.pc.group_stop, group, split=flags.get("split", False))
        for mid in mids if not group else []:
            m = self.st["fcmaps"][mid]
            if self.pcmaps[m["pc"]]["state"] in ("prepared", "copying", "suspended"):
                self.call(self.pc.map_stop, m["pc"], split=flags.get("split", False))
        if flags.get("force"):
            # -force stops at once: wait out pitcopy's cleaning, which has
            # nothing to clean without dependent maps.
            for mid in mids:
                self.wait_not(self.st["fcmaps"][mid]["pc"], "stopping")

    def wait_not(self, pc_name, state, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pm = self.call(self.pc.maps).get(pc_name)
            if pm is None or pm["state"] != state:
                return
            time.sleep(0.05)

    def cmd_stopfcmap(self, req):
        mid, m = self.standalone(req)
        self.stop([mid], self.status(m), req.flags)

    # ---- FlashCopy consistency groups -----------------------------------

    def group_detail(self, gid):
        g = self.st["groups"][gid]
        items = [("id", gid), ("name", g["name"]), ("status", self.group_status(gid)),
                 ("autodelete", "on" if g["autodelete"] else "off"),
                 ("start_time", g["start_time"]), ("owner_id", ""), ("owner_name", "")]
        for k in self.members(gid):
            items += [("FC_mapping_id", k), ("FC_mapping_name", self.st["fcmaps"][k]["name"])]
        return items

    def cmd_lsfcconsistgrp(self, req):
        def detail(ref):
            gid, _ = self.find("groups", ref, "CMMVC5754E")
            return Detail(self.group_detail(gid))
        rows = [dict(self.group_detail(k)) for k in sorted(self.st["groups"], key=int)]
        return self.listing(req, GROUP_COLUMNS, rows, detail)

    def cmd_mkfcconsistgrp(self, req):
        gid = self.new_id("groups", first=1)     # A3
        name = req.flags.get("name", f"fccstgrp{gid}")
        self.check_name("groups", name)
        pc_name = f"svcgrp{gid}"                 # SVC names may be renamed; this stays
        self.call(self.pc.group_create, pc_name, code="CMMVC6035E")
        self.st["groups"][gid] = {"name": name, "pc": pc_name, "start_time": "",
                                  "autodelete": bool(req.flags.get("autodelete"))}
        return Created("FlashCopy Consistency Group", gid)

    def cmd_chfcconsistgrp(self, req):
        _, g = self.find("groups", req.obj, "CMMVC5753E")
        f = req.flags
        if "name" in f and f["name"] != g["name"]:
            self.check_name("groups", f["name"])
        if f.get("autodelete", "on") not in ("on", "off"):
            raise SvcError("CMMVC5767E")
        if "name" in f:
            g["name"] = f["name"]
        if "autodelete" in f:
            g["autodelete"] = f["autodelete"] == "on"

    def delete_group(self, gid):
        g = self.st["groups"].pop(gid)
        for k in self.members(gid):
            self.st["fcmaps"][k]["group"] = ""
        self.call(self.pc.group_delete, g["pc"], force=True)   # members left stand-alone

    def cmd_rmfcconsistgrp(self, req):
        gid, _ = self.find("groups", req.obj, "CMMVC5753E")
        if self.members(gid) and not req.flags.get("force"):
            # UNVERIFIED code: a group with mappings needs -force.
            raise SvcError("CMMVC5903E", detail="group has mappings")
        self.delete_group(gid)                   # its maps become stand-alone

    def cmd_prestartfcconsistgrp(self, req):
        gid, g = self.find("groups", req.obj, "CMMVC5753E")
        if self.group_status(gid) not in ("idle_or_copied", "stopped"):
            raise SvcError("CMMVC5903E", detail=f"group is {self.group_status(gid)}")
        self.group_prepare(gid, g)

    def group_prepare(self, gid, g):
        self.call(self.pc.group_prepare, g["pc"])

    def cmd_startfcconsistgrp(self, req):
        gid, g = self.find("groups", req.obj, "CMMVC5753E")
        s = self.group_status(gid)
        if s == "copying":
            raise SvcError("CMMVC5907E")
        if s in ("idle_or_copied", "stopped") and req.flags.get("prep"):
            self.group_prepare(gid, g)
        elif s != "prepared":
            raise SvcError("CMMVC5903E", detail=f"group is {s}")
        self.call(self.pc.group_start, g["pc"])          # one point in time for all
        g["start_time"] = now_svc()
        for mid in self.members(gid):
            self.st["fcmaps"][mid]["start_time"] = g["start_time"]

    def cmd_stopfcconsistgrp(self, req):
        gid, g = self.find("groups", req.obj, "CMMVC5753E")
        self.stop(self.members(gid), self.group_status(gid), req.flags, g["pc"])
