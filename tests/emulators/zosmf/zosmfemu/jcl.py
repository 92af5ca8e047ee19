# SPDX-License-Identifier: MIT
"""Just enough of a JCL reader for FlashCopy jobs.

Role
  parse(text) → Job(name, cls, steps=[Step(name, pgm, sysin_lines)]) or a
  JclError naming the line.  Understood: the JOB card (name = its label,
  CLASS=), `//label EXEC PGM=X` steps, `//SYSTSIN DD *` (or DATA) in-stream
  data up to `/*` or the next `//`, other DD statements (kept as names),
  comments (`//*`), the null statement (`//`).  In-stream data not under a
  DD * (JES's SYSIN default) goes to the step's SYSIN.

UNVERIFIED
  What JES does with odd input is not modelled: no job card is the
  submit's error ("not recognized as a job"); a malformed statement ends
  the job as "JCL ERROR" with the line in JESYSMSG.
"""
import re

LABEL = re.compile(r"^//([A-Z@#$][A-Z0-9@#$]{0,7})?\s+(\S+)\s*(.*)$")


def operand_field(text):
    """The operands up to the first blank outside quotes (the rest is a comment)."""
    quoted = False
    for i, ch in enumerate(text):
        if ch == "'":
            quoted = not quoted
        elif ch == " " and not quoted:
            return text[:i]
    return text


class JclError(Exception):
    pass


class NotAJob(Exception):
    pass


class Step:
    def __init__(self, name, pgm):
        self.name, self.pgm, self.dds, self.systsin = name, pgm, [], []


class Job:
    def __init__(self, name, cls):
        self.name, self.cls, self.steps = name, cls, []


def parse(text):
    lines = text.replace("\r\n", "\n").split("\n")
    job, step, instream, cont = None, None, None, False
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip() if instream is not None else raw.rstrip()[:72].rstrip()
        if instream is not None:
            if line.startswith("/*") or line.startswith("//"):
                instream = None
                if line.startswith("/*"):
                    continue
            else:
                instream.append(line)
                continue
        if not line or line.startswith("//*") or line.startswith("/*"):
            continue
        if line == "//":
            break
        if not line.startswith("//"):
            if job is None:
                raise NotAJob(f"line {n} is data, not a JOB card")
            if step is None:
                raise JclError(f"line {n}: data outside a step: {line}")
            step.systsin.append(line)      # SYSIN DD * by default
            continue
        if cont and re.match(r"^//\s+\S", line):
            # The statement before ended with a comma: this goes on with it.
            cont = operand_field(line[2:].lstrip()).endswith(",")
            if job is not None and not job.steps:
                cls = re.search(r"CLASS=([A-Z0-9])", line.upper())
                job.cls = cls.group(1) if cls else job.cls
            continue
        m = LABEL.match(line.upper())
        if not m:
            raise JclError(f"line {n}: not a JCL statement: {line}")
        label, op, operands = m.group(1), m.group(2).upper(), m.group(3)
        cont = operand_field(operands).endswith(",")
        if job is None:
            if op != "JOB" or not label:
                raise NotAJob(f"line {n}: the first statement is not a JOB card")
            cls = re.search(r"CLASS=([A-Z0-9])", operands.upper())
            job = Job(label, cls.group(1) if cls else "A")
            continue
        if op == "EXEC":
            pgm = re.match(r"PGM=([A-Z@#$][A-Z0-9@#$]{0,7})", operands.upper())
            if not pgm:
                raise JclError(f"line {n}: EXEC without PGM= (procedures are not supported)")
            step = Step(label or f"STEP{len(job.steps) + 1:04d}", pgm.group(1))
            job.steps.append(step)
            continue
        if op == "DD":
            if step is None:
                raise JclError(f"line {n}: DD statement before any EXEC")
            step.dds.append(label or "")
            if re.match(r"^(\*|DATA)(,|\s|$)", operands.upper()):
                if (label or "").upper() == "SYSTSIN":
                    step.systsin = []
                    instream = step.systsin
                else:
                    instream = []        # another in-stream file: read, not used
            continue
        raise JclError(f"line {n}: {op}: statement not supported")
    if job is None:
        raise NotAJob("no JOB card")
    return job
