# SPDX-License-Identifier: MIT
"""The command table and the parser of SVC command lines.

Role
  Turns `svctask mkfcmap -source "a" -target b -copyrate 0` (SSH) or a REST
  request (path segments + JSON body) into one Request: the command, its
  flags without the dash, and its object (the positional argument, which
  the CLI takes last).  Knows which flags each command takes and whether
  they carry a value; knows nothing of what the commands do.

Invariants
  C1  A Request's flags are all in its command's table; a boolean flag maps
      to True, a valued one to a str.
  C2  Errors are the array's: an unknown flag CMMVC5709E, a missing value,
      a repeated flag or a stray argument CMMVC5707E, an unknown command
      CMMVC7205E (UNVERIFIED: the real restricted shell may word it otherwise).
"""
import shlex

from .errors import SvcError

B, V = "bool", "value"
LS = {"delim": V, "nohdr": B, "bytes": B, "filtervalue": V, "filtervalue?": B, "showhidden": B}

# command → (flags, object: "required" | "optional" | "none")
COMMANDS = {
    # volumes and pools
    "lsvdisk": (LS, "optional"),
    "mkvdisk": ({"name": V, "mdiskgrp": V, "iogrp": V, "size": V, "unit": V, "rsize": V,
                 "autoexpand": B, "warning": V, "grainsize": V, "compressed": B, "easytier": V,
                 "nofmtdisk": B, "cache": V, "udid": V, "vtype": V, "thin": B}, "none"),
    "rmvdisk": ({"force": B, "removehostmappings": B, "removefcmaps": B}, "required"),
    "chvdisk": ({"name": V}, "required"),
    "lsmdiskgrp": (LS, "optional"),
    "lssystem": ({"delim": V, "nohdr": B, "bytes": B}, "none"),
    "lsvdiskfcmappings": ({"delim": V, "nohdr": B}, "required"),
    # FlashCopy mappings
    "lsfcmap": (LS, "optional"),
    "lsfcmapprogress": ({"delim": V, "nohdr": B}, "required"),
    "lsfcmapdependentmaps": ({"delim": V, "nohdr": B}, "required"),
    "mkfcmap": ({"source": V, "target": V, "name": V, "consistgrp": V, "copyrate": V,
                 "autodelete": B, "grainsize": V, "incremental": B, "cleanrate": V, "iogrp": V,
                 "keeptarget": B}, "none"),
    "chfcmap": ({"name": V, "consistgrp": V, "copyrate": V, "autodelete": V, "cleanrate": V,
                 "force": B}, "required"),
    "rmfcmap": ({"force": B}, "required"),
    "prestartfcmap": ({"restore": B}, "required"),
    "startfcmap": ({"prep": B, "restore": B}, "required"),
    "stopfcmap": ({"force": B, "split": B}, "required"),
    # FlashCopy consistency groups
    "lsfcconsistgrp": (LS, "optional"),
    "mkfcconsistgrp": ({"name": V, "autodelete": B, "ownershipgroup": V}, "none"),
    "chfcconsistgrp": ({"name": V, "autodelete": V, "ownershipgroup": V,
                        "noownershipgroup": B}, "required"),
    "rmfcconsistgrp": ({"force": B}, "required"),
    "prestartfcconsistgrp": ({"restore": B}, "required"),
    "startfcconsistgrp": ({"prep": B, "restore": B}, "required"),
    "stopfcconsistgrp": ({"force": B, "split": B}, "required"),
}


class Request:
    """One parsed command (C1)."""

    def __init__(self, cmd, flags, obj, rest=False):
        self.cmd, self.flags, self.obj, self.rest = cmd, flags, obj, rest

    def __repr__(self):
        return f"Request({self.cmd!r}, {self.flags!r}, {self.obj!r})"


def _check_obj(cmd, obj):
    want = COMMANDS[cmd][1]
    if want == "required" and obj is None:
        raise SvcError("CMMVC5701E")
    if want == "none" and obj is not None:
        raise SvcError("CMMVC5707E")


def _lookup(cmd):
    if cmd not in COMMANDS:
        raise SvcError("CMMVC7205E", detail=f"unknown command {cmd!r}")
    return COMMANDS[cmd][0]


def split_commands(line):
    """The command line as sshd hands it over → lists of words, one per
    `;`-separated command (the array's shell runs `lshost 1;lshost 2`).
    Quotes are the shell's: `-source "vol 1"` is one word without them."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";")
    lex.whitespace_split = True
    commands, words = [], []
    for w in lex:
        if w and set(w) == {";"}:
            if words:
                commands.append(words)
            words = []
        else:
            words.append(w)
    if words:
        commands.append(words)
    return commands


def parse_words(words):
    """['svctask', 'mkfcmap', '-source', 'a', ...] → Request (C1, C2)."""
    if words and words[0] in ("svctask", "svcinfo"):
        words = words[1:]
    if not words:
        raise SvcError("CMMVC5707E")
    cmd, args = words[0], words[1:]
    table = _lookup(cmd)
    flags, obj, i = {}, None, 0
    while i < len(args):
        a = args[i]
        if len(a) > 1 and a[0] == "-":
            name = a[1:]
            if name not in table:
                raise SvcError("CMMVC5709E", arg=name)
            if name in flags or obj is not None:    # the object comes last
                raise SvcError("CMMVC5707E")
            if table[name] == B:
                flags[name] = True
            else:
                if i + 1 >= len(args):
                    raise SvcError("CMMVC5707E")
                i += 1
                flags[name] = args[i]
        elif obj is None:
            obj = a
        else:
            raise SvcError("CMMVC5707E")
        i += 1
    _check_obj(cmd, obj)
    return Request(cmd, flags, obj)


def parse_rest(segments, body):
    """A REST call: /rest/<cmd>/<arg> with a JSON object of flags → Request.
    Boolean flags come as true (false means absent); values as strings or
    numbers.  -delim and -nohdr make no sense over REST and are refused."""
    if not segments:
        raise SvcError("CMMVC5707E")
    cmd, args = segments[0], segments[1:]
    table = _lookup(cmd)
    if len(args) > 1:
        raise SvcError("CMMVC5707E")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise SvcError("CMMVC5707E")
    flags = {}
    for name, value in body.items():
        if name not in table or name in ("delim", "nohdr"):
            raise SvcError("CMMVC5709E", arg=name)
        if table[name] == B:
            if value is True or value in ("true", "yes", ""):
                flags[name] = True
            elif value is not False:
                raise SvcError("CMMVC5707E")
        else:
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise SvcError("CMMVC5707E")
            flags[name] = str(value)
    obj = args[0] if args else None
    _check_obj(cmd, obj)
    return Request(cmd, flags, obj, rest=True)
