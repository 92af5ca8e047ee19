# SPDX-License-Identifier: MIT
"""The array's CLI as sshd's forced command.

Role
  Reads the command line from SSH_ORIGINAL_COMMAND (or argv, for local
  use), runs each `;`-separated command as the array's restricted shell
  does, and answers as the array: output on stdout, `CMMVCnnnnE text` on
  stderr with exit status 1 on a refusal.  Every command is appended to
  EMU_DIR/commands.log with its outcome, so a test can see what a client
  sent.

Context
  One process per ssh exec; concurrent sessions serialize on the store lock.
"""
import os
import signal
import sys
import time

from . import faults, store
from .array import Array
from .cmdline import parse_words, split_commands
from .errors import SvcError
from .pitcopy import Pitcopy
from .views import cli_text


def make_log(emu_dir, origin):
    path = os.path.join(emu_dir, "commands.log")

    def log(msg):
        with open(path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {origin} {msg}\n")
    return log


def run_request(emu_dir, cfg, req, log):
    """Run one parsed request under the lock; returns the views result."""
    pc = Pitcopy(cfg["pitcopy"], cfg["state_dir"])
    with store.locked(emu_dir) as state:
        fault = faults.take(state, req.cmd)
        faults.apply_before(fault)
        result = Array(cfg, state, pc, log).run(req)
        faults.apply_after(fault)
        return result


def main(emu_dir, argv):
    line = os.environ.get("SSH_ORIGINAL_COMMAND")
    if line is None:
        line = " ".join(argv)
    log = make_log(emu_dir, "ssh")
    if not line.strip():
        sys.stderr.write("svcemu: this emulated array takes commands only, not a login shell\n")
        return 1
    cfg = store.load_config(emu_dir)
    try:
        commands = split_commands(line)
    except ValueError:                         # unbalanced quotes
        commands = None
    if commands is None:
        sys.stderr.write(str(SvcError("CMMVC5707E")) + "\n")
        return 1
    rc = 0
    for words in commands:
        try:
            req = parse_words(words)
            out = cli_text(run_request(emu_dir, cfg, req, log),
                           req.flags.get("delim"), req.flags.get("nohdr", False))
            sys.stdout.write(out)
            sys.stdout.flush()
            log(f"{' '.join(words)} → ok")
            rc = 0
        except faults.Drop:
            # Cut the connection: the session process that carries it is
            # our parent (sshd execs the forced command through the shell,
            # which execs us).
            log(f"{' '.join(words)} → connection cut (injected fault)")
            os.kill(os.getppid(), signal.SIGKILL)
            os._exit(255)
        except SvcError as e:
            sys.stderr.write(str(e) + "\n")
            sys.stderr.flush()
            log(f"{' '.join(words)} → {e.code}{' (' + e.detail + ')' if e.detail else ''}")
            rc = 1
    return rc
