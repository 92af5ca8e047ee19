# SPDX-License-Identifier: MIT
"""The array's REST API over HTTPS.

Role
  POST /rest/auth (or /rest/v1/auth) with X-Auth-Username and
  X-Auth-Password → {"token": "<64 hex>"}; then POST /rest/<cmd>[/<obj>]
  with X-Auth-Token and a JSON object of the command's flags → 200 and the
  JSON result (or an empty body), as the reference's §3 describes.

  Errors (reference §3.3; the HTTP codes for auth are UNVERIFIED, its
  suggestion is taken):
    403  bad user or password at /auth; a missing, unknown or expired token
    404  an unknown command
    405  any method but POST
    500  the command refused: body `error code: 1, error text: CMMVCnnnnE ...`

Invariants
  R1  Tokens live in the store (state.json) with their expiry, so they
      survive a restart of the REST server and are checked under the lock.
  R2  Nothing but a valid token reaches a command.

Context
  ThreadingHTTPServer: one thread per connection; commands serialize on
  the store lock like ssh sessions do.
"""
import hmac
import http.server
import json
import os
import secrets
import ssl
import sys
import time
import urllib.parse

from . import faults, store
from .cmdline import parse_rest
from .errors import SvcError
from .sshcmd import make_log, run_request
from .views import rest_bytes


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "svcemu"
    sys_version = ""                      # no "Python/3.x" in the Server header
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        self.server.log(fmt % args)

    def reply(self, code, body=b"", ctype="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if code == 405:
            self.send_header("Allow", "POST")
        self.end_headers()
        self.wfile.write(body)

    def text(self, code, msg):
        self.reply(code, (msg + "\n").encode(), "text/plain")

    def not_post(self):
        self.text(405, "Only POST is supported")

    do_GET = do_PUT = do_DELETE = do_PATCH = not_post

    def do_POST(self):
        emu, cfg = self.server.emu_dir, self.server.cfg
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urllib.parse.urlsplit(self.path).path
        for prefix in ("/rest/v1/", "/rest/"):
            if path.startswith(prefix):
                segments = [urllib.parse.unquote(s) for s in path[len(prefix):].split("/") if s]
                break
        else:
            return self.text(404, f"Not found: {path}")
        if segments == ["auth"]:
            return self.auth()
        token = self.headers.get("X-Auth-Token", "")
        with store.locked(emu) as state:
            now = time.time()
            for t in [t for t, v in state["tokens"].items() if v["expires"] < now]:
                del state["tokens"][t]
            valid = token in state["tokens"]
        if not valid:                                  # R2
            return self.text(403, "Authentication failed: the token is missing, unknown or expired")
        try:
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            return self.cli_error(SvcError("CMMVC5707E", detail="body is not JSON"), segments)
        try:
            req = parse_rest(segments, body)
            result = run_request(emu, cfg, req, self.server.log)
        except faults.Drop:
            self.server.log(f"{'/'.join(segments)} → connection cut (injected fault)")
            self.close_connection = True
            return
        except SvcError as e:
            if e.code == "CMMVC7205E":
                return self.text(404, f"Command not found: {segments[0] if segments else ''}")
            return self.cli_error(e, segments)
        self.server.log(f"{'/'.join(segments)} {json.dumps(body)} → ok")
        self.reply(200, rest_bytes(result))

    def cli_error(self, e, segments):
        self.server.log(f"{'/'.join(segments)} → {e.code}"
                        f"{' (' + e.detail + ')' if e.detail else ''}")
        self.text(500, f"error code: 1, error text: {e}")

    def auth(self):
        user = self.headers.get("X-Auth-Username", "")
        password = self.headers.get("X-Auth-Password", "")
        want = self.server.cfg["users"].get(user)
        if want is None or not hmac.compare_digest(want.encode(), password.encode()):
            self.server.log(f"auth {user!r} → refused")
            return self.text(403, "Authentication failed: the user name or password is wrong")
        token = secrets.token_hex(32)
        with store.locked(self.server.emu_dir) as state:     # R1
            state["tokens"][token] = {"user": user,
                                      "expires": time.time() + self.server.cfg["token_ttl"]}
        self.server.log(f"auth {user!r} → token")
        self.reply(200, json.dumps({"token": token}).encode())


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # One line, not a traceback: a client that rejects our certificate
        # (a test that checks it does) is no server error.
        self.log(f"connection from {client_address[0]}: {sys.exc_info()[1]}")


def serve(emu_dir, bind, port, cert, key, port_file=None):
    cfg = store.load_config(emu_dir)
    httpd = Server((bind, port), Handler)
    httpd.emu_dir, httpd.cfg, httpd.log = emu_dir, cfg, make_log(emu_dir, "rest")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    # The TLS handshake happens in the connection's thread, not in accept():
    # a client that never completes one cannot stall the server.
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                   do_handshake_on_connect=False)
    if port_file:                         # written once it listens: the ready signal
        with open(port_file + ".tmp", "w") as f:
            f.write(f"{httpd.server_address[1]}\n")
        os.rename(port_file + ".tmp", port_file)
    httpd.serve_forever()
