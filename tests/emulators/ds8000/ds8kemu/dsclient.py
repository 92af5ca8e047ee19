# SPDX-License-Identifier: MIT
"""The `dscli` executable: DSCLI's command line, talking to the emulated HMC.

Role
  dscli [-cfg PROFILE] -hmc1 HMC[:PORT] -user USER (-pwfile FILE | -passwd PW)
        [-script FILE | COMMAND ARGS... ]
  With neither -script nor a command, the commands are read from stdin.
  The lines go to the HMC in one request (POST /dscli over HTTPS, trusting
  the profile's CA); each line's output is printed as it ran, and the exit
  code is the failing line's (errors.EXIT), else 0.  The profile (key:
  value lines, as DSCLI's dscli.profile) gives the port, CA and devid.
  argv goes to the HMC's log, so a test can see that no password was on
  the command line.

UNVERIFIED
  A real -pwfile is made by `managepwfile` and encrypted; here its first
  line is the password.  A real DSCLI reaches the HMC on its own port and
  protocol (ESSNI); here it is HTTPS on the REST port.
"""
import http.client
import json
import os
import ssl
import sys

from .errors import EXIT, DsError

VALUED = {"-hmc1", "-hmc2", "-user", "-passwd", "-pwfile", "-cfg", "-script", "-port"}


def read_profile(path):
    prof = {}
    if path and os.path.exists(path):
        with open(path) as f:
            for line in f:
                k, sep, v = line.partition(":")
                if sep and not line.lstrip().startswith("#"):
                    prof[k.strip()] = v.strip()
    return prof


def fail(key, **values):
    e = DsError(key, **values)
    sys.stderr.write(f"{e.code} dscli: {e.text}\n")
    return e.exit_code


def main(argv, default_profile=None):
    opts, command, i = {}, [], 0
    while i < len(argv):
        a = argv[i]
        if a in VALUED and not command:
            if i + 1 >= len(argv):
                return fail("missing", what=f"the value of {a}")
            opts[a] = argv[i + 1]
            i += 2
            continue
        command = argv[i:]
        break
    prof = read_profile(opts.get("-cfg") or os.environ.get("DSCLI_PROFILE") or default_profile)
    hmc = opts.get("-hmc1") or prof.get("hmc1")
    user = opts.get("-user") or prof.get("username")
    if not hmc:
        return fail("missing", what="-hmc1")
    if not user:
        return fail("missing", what="-user")
    if "-pwfile" in opts:
        try:
            with open(opts["-pwfile"]) as f:
                password = f.readline().rstrip("\n")
        except OSError as e:
            return fail("missing", what=f"a readable -pwfile ({e.strerror})")
    elif "-passwd" in opts:
        password = opts["-passwd"]
    else:
        return fail("missing", what="-pwfile (or -passwd)")
    if "-script" in opts:
        try:
            with open(opts["-script"]) as f:
                lines = f.read().splitlines()
        except OSError as e:
            return fail("missing", what=f"a readable -script ({e.strerror})")
    elif command:
        lines = [" ".join(_quote(w) for w in command)]
    else:
        lines = sys.stdin.read().splitlines()

    host, _, port = hmc.partition(":")
    port = port or opts.get("-port") or prof.get("port") or "8452"
    ctx = ssl.create_default_context(cafile=prof.get("cacert") or None)
    body = json.dumps({"user": user, "password": password, "lines": lines,
                       "argv": ["dscli", *argv]}).encode()
    try:
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=120)
        conn.request("POST", "/dscli", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException, ValueError) as e:
        return fail("connect", hmc=hmc, why=str(e))
    try:
        answer = json.loads(data)
    except ValueError:
        return fail("connect", hmc=hmc, why=f"HTTP {resp.status}, not a DSCLI answer")
    if resp.status != 200:
        server = answer.get("server", {})
        sys.stderr.write(f"{server.get('code')} dscli: {server.get('message')}\n")
        return EXIT["auth"] if resp.status == 401 else EXIT["server"]
    rc = 0
    for r in answer["results"]:
        sys.stdout.write(r["stdout"])
        sys.stderr.write(r["stderr"])
        rc = r["rc"]
    sys.stdout.flush()
    return rc


def _quote(w):
    import shlex
    return shlex.quote(w)
