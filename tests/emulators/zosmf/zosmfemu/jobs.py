# SPDX-License-Identifier: MIT
"""Batch jobs: submit, run, status, spool — JES as far as a FlashCopy job
needs it.

Role
  submit() reads the JCL (jcl.parse), records the job as INPUT with the
  next JOBnnnnn id and starts a thread that runs it: after the pacing
  delay it is ACTIVE, its steps run in order (IKJEFT01/1A/1B: the TSO
  commands of SYSTSIN, tso.run; IEFBR14: nothing; any other program:
  ABEND S806), and after the delay again it is OUTPUT with its retcode —
  "CC nnnn" (the highest step code), "JCL ERROR" or "ABEND S806".
  Spool: JESMSGLG (id 2), JESJCL (3), JESYSMSG (4), then one SYSTSPRT per
  TSO step (101, 102, …).

Invariants
  J1  A job's record changes only under the zosmf state lock; its thread
      holds no lock while it waits, and takes the DS8000 lock only through
      the TSO commands (store.Z1).
  J2  A job is OUTPUT only after all its steps ran: a client that sees
      OUTPUT reads the complete spool.

UNVERIFIED
  Phase numbers and names; the $HASP/IEF message layout in the spool.
"""
import contextlib
import threading
import time

from . import jcl, store, tso

PHASES = {"INPUT": (130, "Job is queued for execution"),
          "ACTIVE": (14, "Job is actively executing"),
          "OUTPUT": (20, "Job is on the hard copy queue")}
TSO_PROGRAMS = ("IKJEFT01", "IKJEFT1A", "IKJEFT1B")


def ts():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def hms():
    return time.strftime("%H.%M.%S")


def public(job, base):
    """The job object z/OSMF returns."""
    phase, name = PHASES[job["status"]]
    url = f"{base}/zosmf/restjobs/jobs/{job['jobname']}/{job['jobid']}"
    return {"jobid": job["jobid"], "jobname": job["jobname"], "subsystem": "JES2",
            "owner": job["owner"], "status": job["status"], "type": "JOB", "class": job["class"],
            "retcode": job["retcode"], "url": url, "files-url": url + "/files",
            "job-correlator": job["correlator"], "phase": phase, "phase-name": name,
            "exec-system": job["system"] if job["status"] != "INPUT" else None,
            "exec-member": job["system"] if job["status"] != "INPUT" else None,
            "exec-submitted": job["submitted"], "exec-started": job.get("started"),
            "exec-ended": job.get("ended")}


def file_list(job, base):
    url = f"{base}/zosmf/restjobs/jobs/{job['jobname']}/{job['jobid']}/files"
    return [{"jobname": job["jobname"], "jobid": job["jobid"], "ddname": f["ddname"],
             "stepname": f["stepname"], "procstep": None, "id": f["id"], "recfm": "UA",
             "lrecl": 133, "byte-count": sum(len(x) + 1 for x in f["records"]),
             "record-count": len(f["records"]), "class": job["class"], "subsystem": "JES2",
             "records-url": f"{url}/{f['id']}/records"} for f in job["files"]]


class Runner:
    def __init__(self, emu_dir, cfg, log):
        self.emu_dir, self.cfg, self.log = emu_dir, cfg, log
        ds8k_dir = cfg["ds8k_emu_dir"]
        from ds8kemu import store as ds8k_store
        from ds8kemu.array import Array
        from ds8kemu.pitcopy import Pitcopy
        self.ds8k_cfg = ds8k_store.load_config(ds8k_dir)
        ds8k_log = ds8k_store.make_log(ds8k_dir, "zos")

        @contextlib.contextmanager
        def array():
            with ds8k_store.locked(ds8k_dir) as state:
                yield Array(self.ds8k_cfg, state,
                            Pitcopy(self.ds8k_cfg["pitcopy"], self.ds8k_cfg["state_dir"]), ds8k_log)
        self.array = array

    def submit(self, text, user):
        """→ the job record; raises jcl.NotAJob."""
        try:
            parsed, jcl_error = jcl.parse(text), None
        except jcl.JclError as e:
            parsed, jcl_error = None, str(e)
        name = parsed.name if parsed else (text.split()[0].lstrip("/")[:8].upper() or "UNKNOWN")
        with store.locked(self.emu_dir) as st:
            n = st["next_job"]
            st["next_job"] = n + 1
            jobid = f"JOB{n:05d}"
            job = {"jobid": jobid, "jobname": name, "owner": user.upper(),
                   "class": parsed.cls if parsed else "A", "status": "INPUT", "retcode": None,
                   "correlator": f"J{n:07d}{self.cfg['sysname']}.......EMULATED.:",
                   "system": self.cfg["sysname"], "submitted": ts(), "files": []}
            st["jobs"][jobid] = job
        self.log(f"job {name}({jobid}) submitted by {user}")
        threading.Thread(target=self.run, args=(jobid, text, parsed, jcl_error),
                         daemon=True).start()
        return job

    def update(self, jobid, **fields):
        with store.locked(self.emu_dir) as st:
            st["jobs"][jobid].update(fields)
            return dict(st["jobs"][jobid])

    def run(self, jobid, text, parsed, jcl_error):
        delay = self.cfg["job_delay"]
        time.sleep(delay)
        job = self.update(jobid, status="ACTIVE", started=ts())
        name, sysname = job["jobname"], self.cfg["sysname"]
        with store.locked(self.emu_dir) as st:        # a snapshot: the table as the job starts
            devices, apar = dict(st["devices"]), st["apar_oa59561"]
        msglg = [f"{hms()} {jobid} ---- {time.strftime('%A, %d %b %Y').upper()} ----",
                 f"{hms()} {jobid}  $HASP373 {name:<8} STARTED - INIT 1    - CLASS {job['class']}"
                 f" - SYS {sysname}"]
        sysmsg, files, worst, retcode = [], [], 0, None
        if jcl_error:
            sysmsg.append(f"IEFC605I {jcl_error}")
            retcode = "JCL ERROR"
        else:
            ctx = tso.Context(devices, apar, sysname, self.ds8k_cfg["image"], self.array)
            for step in parsed.steps:
                if step.pgm in TSO_PROGRAMS:
                    lines, cc = tso.run(step.systsin, ctx, self.log)
                    files.append({"ddname": "SYSTSPRT", "stepname": step.name, "records": lines})
                elif step.pgm == "IEFBR14":
                    cc = 0
                else:
                    sysmsg.append(f"CSV003I REQUESTED MODULE {step.pgm} NOT FOUND")
                    sysmsg.append(f"IEF450I {name} {step.name} - ABEND=S806 U0000 REASON=00000004")
                    retcode = "ABEND S806"
                    break
                sysmsg.append(f"IEF142I {name} {step.name} - STEP WAS EXECUTED - COND CODE {cc:04d}")
                worst = max(worst, cc)
            retcode = retcode or f"CC {worst:04d}"
        rc_text = retcode.replace("CC ", "RC=")
        msglg.append(f"{hms()} {jobid}  $HASP395 {name:<8} ENDED - {rc_text}")
        spool = [{"id": 2, "ddname": "JESMSGLG", "stepname": "JES2", "records": msglg},
                 {"id": 3, "ddname": "JESJCL", "stepname": "JES2",
                  "records": [f"{i:>10} {line}" for i, line in enumerate(text.splitlines(), 1)]},
                 {"id": 4, "ddname": "JESYSMSG", "stepname": "JES2", "records": sysmsg}]
        spool += [dict(f, id=101 + i) for i, f in enumerate(files)]
        time.sleep(delay)
        self.update(jobid, files=spool, retcode=retcode)        # J2: files first,
        self.update(jobid, status="OUTPUT", ended=ts())         # then OUTPUT
        self.log(f"job {name}({jobid}) ended {retcode}")
