# SPDX-License-Identifier: MIT
"""The HMC over HTTPS: the DS8000 REST API and the DSCLI endpoint.

Role
  /api/v1 as the reference describes it:
    POST   /api/v1/tokens            {"request":{"params":{"username","password"}}}
                                     → token in X-Auth-Token and in the body
    GET    /api/v1/systems, /api/v1/volumes[/ID], /api/v1/lss
    POST   /api/v1/cs/flashcopies    {"request":{"params":{"volume_pairs":[...],
                                     "options":[...]}}} — establish; with
                                     "reverse_restore"/"fast_reverse_restore"
                                     a reverse; with "record_changes" a pair
                                     that exists is refreshed (incremental),
                                     at the same point in time as the new ones
    GET    /api/v1/cs/flashcopies[?volume_id_from=&volume_id_to=], …/SRC:TGT
    DELETE /api/v1/cs/flashcopies/SRC:TGT
    POST   /api/v1/cs/flashcopies/unfreeze  {"request":{"params":{"lss_ids":[..]}}}
  Every answer is {"server":{"status":"ok|failed","code","message"}, "data":…}.
  POST /dscli (the emulator's own, for the dscli executable): user,
  password and script lines in, each line's stdout/stderr/exit code out.

  UNVERIFIED (errors.py has the statuses): the refresh and reverse through
  the establish call's options; the flashcopy object's field names beyond
  id/source_volume/target_volume/state/out_of_sync_tracks (pyds8k's test
  data); lowercase "enabled"/"disabled".

Invariants
  R1  Tokens live in the store with their expiry (checked under the lock).
  R2  Nothing but a valid token reaches /api/v1 (besides /tokens); /dscli
      checks the user and password on every call, as a DSCLI login does.
"""
import contextlib
import hmac
import http.server
import json
import os
import secrets
import ssl
import sys
import time
import urllib.parse

from . import dscli, store
from .array import Array
from .errors import OK, DsError
from .pitcopy import Pitcopy

OPTIONS = {"record_changes": "record", "persistent": "persist", "no_background_copy": "nocp",
           "freeze_consistency": "freeze", "inhibit_target_writes": "tgtinhibit",
           "reverse_restore": "reverse", "fast_reverse_restore": "fast",
           "allow_pprc_target_primary": None, "permit_space_efficient_target": None}


def check_password(cfg, user, password):
    want = cfg["users"].get(user)
    return want is not None and hmac.compare_digest(want.encode(), password.encode())


def array_factory(emu_dir, cfg, log):
    @contextlib.contextmanager
    def factory():
        with store.locked(emu_dir) as state:
            yield Array(cfg, state, Pitcopy(cfg["pitcopy"], cfg["state_dir"]), log)
    return factory


def flash_json(base, r):
    def en(b):
        return "enabled" if b else "disabled"
    return {"id": r["id"], "link": {"rel": "self", "href": f"{base}/api/v1/cs/flashcopies/{r['id']}"},
            "source_volume": {"id": r["src"], "link": {"rel": "self", "href": f"{base}/api/v1/volumes/{r['src']}"}},
            "target_volume": {"id": r["tgt"], "link": {"rel": "self", "href": f"{base}/api/v1/volumes/{r['tgt']}"}},
            "state": "valid" if r["valid"] else "invalid",
            "out_of_sync_tracks": str(r["out_of_sync_tracks"]),
            "persistent": en(r["persistent"]), "recording": en(r["recording"]),
            "backgroundcopy": en(r["background_copy"]), "active_copy": en(r["active_copy"]),
            "revertible": en(r["revertible"]), "sequence_number": r["seqnum"],
            "source_write_enabled": en(r["source_write_enabled"]),
            "target_write_enabled": en(r["target_write_enabled"]),
            "timeout": str(r["timeout"]), "date_created": r["date_created"],
            "date_synced": r["date_synced"]}


def volume_json(base, v):
    return {"id": v["id"], "link": {"rel": "self", "href": f"{base}/api/v1/volumes/{v['id']}"},
            "name": v["name"], "state": "normal", "cap": str(v["size"]),
            "stgtype": v["type"].upper(), "lss": {"id": v["id"][:2]},
            "MTM": "2107-900", "datatype": "FB 512" if v["type"] == "fb" else "3390",
            "pool": {"id": "P0" if v["type"] == "fb" else "P1"}}


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "ds8kemu"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        self.server.log(fmt % args)

    def reply(self, code, obj, headers=()):
        body = json.dumps(obj, indent=1).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def ok(self, data=None, code="", message="Operation done successfully.", extra=None,
           status=200, headers=()):
        obj = {"server": {"status": "ok", "code": code, "message": message}}
        if data is not None:
            key, rows = data
            obj["counts"] = {"data_counts": len(rows), "total_counts": len(rows)}
            obj["data"] = {key: rows}
        obj.update(extra or {})
        self.reply(status, obj, headers)

    def failed(self, e, notfound=False):
        self.server.log(f"{self.command} {self.path} → {e.code} {e.text}")
        self.reply(e.http_status(notfound), {"server": {"status": "failed", "code": e.code,
                                                        "message": e.text}})

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise DsError("bad_id", id="request body", what="JSON document") from None

    def params(self):
        b = self.body()
        p = (b.get("request") or {}).get("params") if isinstance(b, dict) else None
        if not isinstance(p, dict):
            raise DsError("missing", what='{"request": {"params": {...}}}')
        return p

    def route(self):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(s) for s in url.path.split("/") if s]
        query = dict(urllib.parse.parse_qsl(url.query))
        return parts, query

    def authorized(self):
        token = self.headers.get("X-Auth-Token", "")
        with store.locked(self.server.emu_dir) as state:
            now = time.time()
            for t in [t for t, v in state["tokens"].items() if v["expires"] < now]:
                del state["tokens"][t]
            if token in state["tokens"]:
                state["tokens"][token]["expires"] = now + self.server.cfg["token_ttl"]
                return True
        return False

    def dispatch(self, method):
        parts, query = self.route()
        try:
            if parts == ["dscli"] and method == "POST":
                return self.dscli()
            if parts[:2] != ["api", "v1"]:
                return self.reply(404, {"server": {"status": "failed", "code": "404",
                                                   "message": f"no such resource {self.path}"}})
            res = parts[2:]
            if res == ["tokens"] and method == "POST":
                return self.login()
            if not self.authorized():                              # R2
                raise DsError("token")
            base = f"https://{self.headers.get('Host', 'localhost')}"
            with array_factory(self.server.emu_dir, self.server.cfg, self.server.log)() as a:
                return self.api(method, res, query, a, base)
        except DsError as e:
            return self.failed(e, notfound=method in ("GET", "DELETE"))

    def api(self, method, res, query, a, base):
        if method == "GET" and res == ["systems"]:
            return self.ok(("systems", [{"id": a.image, "name": "ds8kemu", "state": "online",
                                         "release": "9.3.0", "MTM": "2107-996"}]))
        if method == "GET" and res[:1] == ["volumes"]:
            if len(res) == 2:
                return self.ok(("volumes", [volume_json(base, a.volume(a.vol_id(res[1])))]))
            return self.ok(("volumes", [volume_json(base, v) for v in a.volumes()]))
        if method == "GET" and res == ["lss"]:
            lsss = sorted({v["id"][:2] for v in a.volumes()})
            return self.ok(("lss", [{"id": x, "type": "fb", "frozen": x in a.st["frozen"]}
                                    for x in lsss]))
        if res[:2] != ["cs", "flashcopies"]:
            raise DsError("unknown_cmd", word=f"{method} /api/v1/{'/'.join(res)}")
        rest = res[2:]
        if method == "GET":
            if rest:
                ids = a.select([rest[0]]) if ":" in rest[0] else []
                if not ids:
                    raise DsError("no_relationship", id=rest[0])
            else:
                lo, hi = query.get("volume_id_from"), query.get("volume_id_to")
                ids = a.select([f"{lo}-{hi or lo}"] if lo else [])
            return self.ok(("flashcopy", [flash_json(base, a.row(i)) for i in ids]),
                           code=OK["query"])
        if method == "DELETE" and len(rest) == 1:
            ids = a.rmflash([a.pair(rest[0])])
            return self.ok(code="CMUC00140I", message=OK["rmflash"].format(id=ids[0]).split(" ", 1)[1])
        if method == "POST" and rest == ["unfreeze"]:
            lsss = self.params().get("lss_ids")
            if not isinstance(lsss, list) or not lsss:
                raise DsError("missing", what="lss_ids")
            done = a.unfreeze([str(x) for x in lsss])
            return self.ok(code="CMUC00172I", message=" ".join(
                OK["unfreezeflash"].format(id=x).split(" ", 1)[1] for x in done))
        if method == "POST" and not rest:
            return self.establish(a, base)
        raise DsError("unknown_cmd", word=f"{method} /api/v1/{'/'.join(res)}")

    def establish(self, a, base):
        p = self.params()
        raw_pairs = p.get("volume_pairs")
        if not isinstance(raw_pairs, list) or not raw_pairs:
            raise DsError("missing", what="volume_pairs")
        pairs = []
        for vp in raw_pairs:
            if not isinstance(vp, dict) or "source_volume" not in vp or "target_volume" not in vp:
                raise DsError("missing", what="source_volume and target_volume in every volume pair")
            pairs.append((a.vol_id(str(vp["source_volume"])), a.vol_id(str(vp["target_volume"]))))
        opts = {}
        for o in p.get("options") or []:
            if o not in OPTIONS:
                raise DsError("bad_flag", flag=f"option {o!r}")
            if OPTIONS[o]:
                opts[OPTIONS[o]] = True
        if opts.get("fast"):
            opts["reverse"] = True
        if opts.get("reverse"):
            ids, code, verb = a.reverseflash(pairs, opts), "CMUC00169I", "reverseflash"
        else:
            refresh = opts.get("record") and all(f"{s}:{t}" in a.st["flash"] for s, t in pairs)
            ids = a.flash(pairs, opts)
            code, verb = ("CMUC00168I", "resyncflash") if refresh else ("CMUC00137I", "mkflash")
        a.sync()
        rows = [flash_json(base, a.row(i)) for i in ids if i in a.st["flash"]]
        msg = " ".join(OK[verb].format(id=i).split(" ", 1)[1] for i in ids)
        return self.ok(("flashcopy", rows), code=code, message=msg, status=201)

    def login(self):
        p = self.params()
        user, password = str(p.get("username", "")), str(p.get("password", ""))
        if not check_password(self.server.cfg, user, password):
            raise DsError("auth")
        token = secrets.token_hex(16)
        ttl = self.server.cfg["token_ttl"]
        with store.locked(self.server.emu_dir) as state:        # R1
            state["tokens"][token] = {"user": user, "expires": time.time() + ttl}
        self.server.log(f"login {user!r} → token")
        expires = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() + ttl))
        self.ok(extra={"token": {"token": token, "expired_time": expires,
                                 "max_idle_interval": str(int(ttl * 1000))}},
                headers=[("X-Auth-Token", token)])

    def dscli(self):
        b = self.body()
        self.server.log(f"dscli argv {json.dumps(b.get('argv', []))}")
        if not check_password(self.server.cfg, str(b.get("user", "")), str(b.get("password", ""))):
            raise DsError("auth")
        results = dscli.run(array_factory(self.server.emu_dir, self.server.cfg, self.server.log),
                            b.get("lines") or [], self.server.log, self.server.cfg)
        self.reply(200, {"results": [{"stdout": o, "stderr": e, "rc": rc} for o, e, rc in results]})

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        self.log(f"connection from {client_address[0]}: {sys.exc_info()[1]}")


def serve(emu_dir, bind, port, cert, key, port_file=None):
    cfg = store.load_config(emu_dir)
    httpd = Server((bind, port), Handler)
    httpd.emu_dir, httpd.cfg, httpd.log = emu_dir, cfg, store.make_log(emu_dir, "hmc")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(f"{httpd.server_address[1]}\n")
        os.rename(port_file + ".tmp", port_file)
    httpd.serve_forever()
