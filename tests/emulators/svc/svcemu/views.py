# SPDX-License-Identifier: MIT
"""What a command answers, and how it is written for the CLI and for REST.

Role
  Commands return one of: Table (the concise view: a header and rows),
  Detail (the detailed view: key/value lines, keys may repeat), Created
  (`mk*`: "<noun>, id [<id>], successfully created") or None (nothing).
  cli_text() renders them as the array's CLI does (-delim, -nohdr, columns
  padded with spaces without -delim); rest_body() as its REST API does
  (a JSON array of objects, an object, {"id", "message"}, or no body).

Invariants
  V1  Every value is a str: the array prints and serves strings only
      ("progress": "0").
  V2  A Table row has exactly the Table's columns, in order.
"""
import fnmatch
import json

from .errors import SvcError


class Table:
    def __init__(self, columns, rows):
        self.columns = columns
        self.rows = [{c: str(r.get(c, "")) for c in columns} for r in rows]   # V1, V2

    def filter(self, spec):
        """-filtervalue a=b[:c=d]: exact match, `*` a wildcard."""
        for term in spec.split(":"):
            if "=" not in term:
                raise SvcError("CMMVC5741E", arg=term)
            attr, want = term.split("=", 1)
            if attr not in self.columns:
                raise SvcError("CMMVC5741E", arg=attr)
            self.rows = [r for r in self.rows if fnmatch.fnmatchcase(r[attr], want)]
        return self


class Detail:
    def __init__(self, items):
        self.items = [(k, str(v)) for k, v in items]      # V1


class Created:
    def __init__(self, noun, obj_id):
        self.obj_id = str(obj_id)
        self.message = f"{noun}, id [{obj_id}], successfully created"


def cli_text(result, delim=None, nohdr=False):
    if result is None:
        return ""
    if isinstance(result, Created):
        return result.message + "\n"
    if isinstance(result, Detail):
        sep = delim if delim is not None else " "
        return "".join(f"{k}{sep}{v}\n" for k, v in result.items)
    if not result.rows:
        return ""                                # no header over no rows
    lines = [] if nohdr else [result.columns]
    lines += [[r[c] for c in result.columns] for r in result.rows]
    if delim is not None:
        return "".join(delim.join(l) + "\n" for l in lines)
    widths = [max(len(l[i]) for l in lines) for i in range(len(result.columns))]
    return "".join(" ".join(v.ljust(w) for v, w in zip(l, widths)).rstrip() + "\n"
                   for l in lines)


def rest_body(result):
    """The JSON the REST API answers with, or None for an empty body."""
    if result is None:
        return None
    if isinstance(result, Created):
        return {"id": result.obj_id, "message": result.message}
    if isinstance(result, Table):
        return result.rows
    obj = {}
    for k, v in result.items:
        # A repeated key (FC_mapping_id in lsfcconsistgrp) becomes a list:
        # the array's JSON shape for it is UNVERIFIED.
        if k in obj:
            obj[k] = (obj[k] if isinstance(obj[k], list) else [obj[k]]) + [v]
        else:
            obj[k] = v
    return obj


def rest_bytes(result):
    body = rest_body(result)
    return b"" if body is None else json.dumps(body).encode()


def human_size(n):
    for unit, size in (("PB", 2**50), ("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("KB", 2**10)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n}B"
