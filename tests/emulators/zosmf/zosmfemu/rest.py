# SPDX-License-Identifier: MIT
"""z/OSMF over HTTPS: /zosmf/info and the REST jobs interface.

Role
    GET    /zosmf/info                                  (no auth) version facts
    PUT    /zosmf/restjobs/jobs                         JCL (text/plain) → 201 job
    GET    /zosmf/restjobs/jobs[?owner=&prefix=]        the jobs
    GET    /zosmf/restjobs/jobs/NAME/ID                 a job: status, retcode
    GET    /zosmf/restjobs/jobs/NAME/ID/files           its spool files
    GET    /zosmf/restjobs/jobs/NAME/ID/files/N/records a spool file's text
    DELETE /zosmf/restjobs/jobs/NAME/ID                 purge
  Basic auth on all but /zosmf/info (401 and WWW-Authenticate otherwise);
  PUT and DELETE need the X-CSRF-ZOSMF-HEADER header (403 without).
  Errors are {"rc", "reason", "category", "message"} (HTTP 400 for an
  unknown job or input that is not a job).

UNVERIFIED
  The error objects' rc/reason/category numbers and messages; the
  /zosmf/info fields beyond zosmf_version and zos_version.
"""
import base64
import hmac
import http.server
import json
import os
import ssl
import sys
import urllib.parse

from . import jcl, jobs, store


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "zosmfemu"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        self.server.log(fmt % args)

    def send(self, code, body, ctype="application/json", headers=()):
        if not isinstance(body, bytes):
            body = json.dumps(body, indent=1).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, code, message, rc=4, reason=0, category=6, headers=()):
        self.server.log(f"{self.command} {self.path} → {code}: {message}")
        self.send(code, {"rc": rc, "reason": reason, "category": category, "message": message},
                  headers=headers)

    def user(self):
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return None
            want = self.server.cfg["users"].get(user.upper())
            if want is not None and hmac.compare_digest(want.encode(), pw.encode()):
                return user.upper()
        return None

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_any(self, method):
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        query = dict(urllib.parse.parse_qsl(url.query))
        base = f"https://{self.headers.get('Host', 'localhost')}"
        raw = self.body()
        if parts == ["zosmf", "info"] and method == "GET":
            return self.send(200, {"api_version": "1", "zos_version": "04.27.00",
                                   "zosmf_version": "27", "zosmf_full_version": "27.0",
                                   "zosmf_hostname": self.server.cfg["sysname"],
                                   "zosmf_saf_realm": "SAFRealm", "plugins": [
                                       {"pluginVersion": "HSMA250", "pluginStatus": "ACTIVE",
                                        "pluginDefaultName": "z/OS Jobs REST interface"}]})
        user = self.user()
        if user is None:
            return self.error(401, "Authentication failed: the user ID or password is not valid",
                              rc=8, category=1,
                              headers=[("WWW-Authenticate", 'Basic realm="SAFRealm"')])
        if method in ("PUT", "POST", "DELETE") and "X-CSRF-ZOSMF-HEADER" not in self.headers:
            return self.error(403, "The request has no X-CSRF-ZOSMF-HEADER header", rc=8)
        if parts[:3] != ["zosmf", "restjobs", "jobs"]:
            return self.error(404, f"No such resource: {url.path}")
        rest = parts[3:]
        runner = self.server.runner
        if method == "PUT" and not rest:
            try:
                job = runner.submit(raw.decode("utf-8", "replace"), user)
            except jcl.NotAJob as e:
                return self.error(400, f"Job input was not recognized by system as a job ({e})",
                                  reason=7)
            return self.send(201, jobs.public(job, base))
        with store.locked(self.server.emu_dir) as st:
            all_jobs = {k: dict(v) for k, v in st["jobs"].items()}
        if method == "GET" and not rest:
            owner = query.get("owner", user).upper()
            prefix = query.get("prefix", "*").upper().rstrip("*")
            sel = [j for j in all_jobs.values() if (owner == "*" or j["owner"] == owner)
                   and j["jobname"].startswith(prefix)]
            return self.send(200, [jobs.public(j, base) for j in sel])
        if len(rest) < 2:
            return self.error(404, f"No such resource: {url.path}")
        job = all_jobs.get(rest[1].upper())
        if job is None or job["jobname"] != rest[0].upper():
            return self.error(400, f"No job found for reference: '{rest[0]}({rest[1]})'", reason=10)
        if method == "DELETE" and len(rest) == 2:
            with store.locked(self.server.emu_dir) as st:
                st["jobs"].pop(job["jobid"], None)
            return self.send(200, {"jobid": job["jobid"], "jobname": job["jobname"],
                                   "original-jobid": job["jobid"], "owner": job["owner"],
                                   "member": "JES2", "sysname": job["system"],
                                   "job-correlator": job["correlator"], "status": "0"})
        if method == "GET" and len(rest) == 2:
            return self.send(200, jobs.public(job, base))
        if method == "GET" and rest[2:] == ["files"]:
            return self.send(200, jobs.file_list(job, base))
        if method == "GET" and len(rest) == 5 and rest[2] == "files" and rest[4] == "records":
            f = next((f for f in job["files"] if str(f["id"]) == rest[3]), None)
            if f is None:
                return self.error(400, f"No spool file {rest[3]} in job {job['jobname']}({job['jobid']})",
                                  reason=11)
            return self.send(200, "".join(r + "\n" for r in f["records"]).encode(), "text/plain")
        return self.error(405 if len(rest) == 2 else 404, f"{method} {url.path} is not supported")

    def do_GET(self):
        self.handle_any("GET")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        self.log(f"connection from {client_address[0]}: {sys.exc_info()[1]}")


def serve(emu_dir, bind, port, cert, key, port_file=None):
    cfg = store.load_config(emu_dir)
    httpd = Server((bind, port), Handler)
    httpd.emu_dir, httpd.cfg, httpd.log = emu_dir, cfg, store.make_log(emu_dir, "zosmf")
    httpd.runner = jobs.Runner(emu_dir, cfg, httpd.log)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(f"{httpd.server_address[1]}\n")
        os.rename(port_file + ".tmp", port_file)
    httpd.serve_forever()
