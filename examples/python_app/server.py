"""python_app's HTTP service: a greeting API made from a protobuf message, and hashed assets.

  GET /                      HTML page referencing the content-hashed CSS, JS and logo
  GET /api/greeting?name=X   {"name": ..., "message": "Hello, X!", ...}: a Greeting, as JSON
  GET /static/<hashed path>  an asset; precompressed br/gzip variant when Accept-Encoding allows
  GET /healthz               "ok"

Assets come from the directory the build wrote (hashed_assets: `manifest.json` plus hashed
files and their .gz/.br variants); nothing is compressed at request time.
"""

import datetime
import gzip
import hashlib
import html
import http.client
import http.server
import json
import os
import re
import signal
import sys
import threading
import urllib.parse

from google.protobuf import json_format

from examples.python_app import greeting_pb2

SERVICE = "python_app"
MAX_NAME = 100
STATIC_PREFIX = "/static/"
# Preference when the client accepts several encodings equally.
ENCODING_ORDER = ("br", "gzip")


class Assets(object):
    """The build's asset manifest: logical name -> hashed file, integrity, encodings."""

    def __init__(self, directory):
        self.directory = directory
        with open(os.path.join(directory, "manifest.json"), "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
        self.by_logical = manifest["assets"]
        self.by_path = {e["path"]: e for e in self.by_logical.values()}

    def entry(self, logical):
        return self.by_logical[logical]

    def url(self, logical):
        return STATIC_PREFIX + self.by_logical[logical]["path"]

    def file(self, rel):
        return os.path.join(self.directory, *rel.split("/"))


def accepted_encodings(header):
    """{encoding: q} from an Accept-Encoding header (q=0 means refused)."""
    accepted = {}
    for part in (header or "").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, params = part.partition(";")
        q = 1.0
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                q = 0.0
        accepted[name.strip().lower()] = q
    return accepted


def choose_encoding(header, available):
    """The best of `available` (e.g. {"br", "gzip"}) the client accepts, or None (identity)."""
    accepted = accepted_encodings(header)
    best, best_q = None, 0.0
    for enc in ENCODING_ORDER:
        if enc not in available:
            continue
        q = accepted.get(enc, accepted.get("*", 0.0))
        if q > best_q:
            best, best_q = enc, q
    return best


def make_greeting(name, now=None):
    msg = greeting_pb2.Greeting(
        name=name,
        message="Hello, %s!" % name,
        name_length=len(name),
        service=SERVICE,
    )
    msg.served_at.FromDatetime(now or datetime.datetime.now(datetime.timezone.utc))
    return msg


def page(assets):
    css = assets.entry("css/app.css")
    js = assets.entry("js/app.js")
    return """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>python_app</title>
<link rel="stylesheet" href="{css}" integrity="{css_sri}">
<script src="{js}" integrity="{js_sri}" defer></script>
</head>
<body>
<header><img class="logo" src="{logo}" alt="" width="48" height="48"><h1>python_app</h1></header>
<p>A web service built, with its dependencies, generated code and assets, by one
<code>bazel build</code> into a distroless image.</p>
<form id="greet"><input type="text" name="name" placeholder="Your name" maxlength="{max}">
<button type="submit">Greet</button></form>
<p class="greeting" id="greeting">{hello}</p>
</body>
</html>
""".format(
        css=html.escape(STATIC_PREFIX + css["path"]),
        css_sri=html.escape(css["integrity"]),
        js=html.escape(STATIC_PREFIX + js["path"]),
        js_sri=html.escape(js["integrity"]),
        logo=html.escape(assets.url("img/logo.png")),
        max=MAX_NAME,
        hello=html.escape(make_greeting("world").message),
    ).encode("utf-8")


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "python_app/1"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    assets = None  # set by make_server
    quiet = False

    def log_message(self, fmt, *args):
        if not self.quiet:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _send(self, status, body, content_type, headers=None, head=False):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status, message, head=False):
        body = json.dumps({"error": message}).encode("utf-8")
        self._send(status, body, "application/json", {"Cache-Control": "no-store"}, head)

    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)

    def _route(self, head):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/":
            self._send(200, page(self.assets), "text/html; charset=utf-8",
                       {"Cache-Control": "no-cache"}, head)
        elif url.path == "/api/greeting":
            self._greeting(url.query, head)
        elif url.path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8", {"Cache-Control": "no-store"}, head)
        elif url.path.startswith(STATIC_PREFIX):
            self._static(url.path[len(STATIC_PREFIX):], head)
        else:
            self._error(404, "not found", head)

    def _greeting(self, query, head):
        names = urllib.parse.parse_qs(query).get("name", [])
        name = (names[0] if names else "").strip() or "world"
        if len(name) > MAX_NAME or any(ord(c) < 32 for c in name):
            self._error(400, "name: at most %d printable characters" % MAX_NAME, head)
            return
        body = json_format.MessageToJson(make_greeting(name), indent=None, sort_keys=True)
        self._send(200, body.encode("utf-8"), "application/json", {"Cache-Control": "no-store"},
                   head)

    def _static(self, rel, head):
        entry = self.assets.by_path.get(rel)
        if entry is None:
            self._error(404, "no such asset", head)
            return
        etag = '"%s"' % entry["sha256"]
        headers = {
            "Cache-Control": "public, max-age=31536000, immutable",
            "ETag": etag,
            "Vary": "Accept-Encoding",
        }
        if etag in (self.headers.get("If-None-Match") or ""):
            self.send_response(304)
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            return
        enc = choose_encoding(self.headers.get("Accept-Encoding"), set(entry["encodings"]))
        path = entry["encodings"][enc]["path"] if enc else entry["path"]
        with open(self.assets.file(path), "rb") as f:
            body = f.read()
        if enc:
            headers["Content-Encoding"] = enc
        self._send(200, body, entry["content_type"], headers, head)


def make_server(host, port, assets, quiet=False):
    handler = type("BoundHandler", (Handler,), {"assets": assets, "quiet": quiet})
    httpd = http.server.ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    return httpd


def serve(host, port, assets):
    httpd = make_server(host, port, assets)

    def stop(signum, frame):
        # As PID 1 in a container, SIGTERM is ignored unless handled: stop cleanly.
        threading.Thread(target=httpd.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write("python_app listening on http://%s:%d/\n" % httpd.server_address[:2])
    sys.stderr.flush()
    try:
        httpd.serve_forever()
    finally:
        httpd.server_close()


def selftest(assets):
    """Exercises the compiled proto, the asset manifest and the HTTP handlers; raises on failure."""
    # The generated message: binary and JSON round trips.
    msg = make_greeting("selftest", datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))
    again = greeting_pb2.Greeting.FromString(msg.SerializeToString())
    assert again == msg, (again, msg)
    as_json = json_format.MessageToJson(msg)
    assert json.loads(as_json)["servedAt"] == "2024-01-02T03:04:05Z", as_json
    assert json_format.Parse(as_json, greeting_pb2.Greeting()) == msg

    # The asset manifest points at hashed files whose bytes match.
    css = assets.entry("css/app.css")
    with open(assets.file(css["path"]), "rb") as f:
        data = f.read()
    assert hashlib.sha256(data).hexdigest() == css["sha256"], css
    assert css["sha256"][:12] in css["path"], css

    # The service itself, on a loopback port.
    httpd = make_server("127.0.0.1", 0, assets, quiet=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]

        def get(path, headers=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path, headers=headers or {})
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            return resp, body

        resp, body = get("/api/greeting?name=" + urllib.parse.quote("Zoë"))
        assert resp.status == 200, (resp.status, body)
        got = json_format.Parse(body, greeting_pb2.Greeting())
        assert got.message == "Hello, Zoë!" and got.name_length == 3 and got.service == SERVICE, got

        resp, body = get("/")
        assert resp.status == 200 and (STATIC_PREFIX + css["path"]).encode() in body, body[:200]

        resp, body = get(STATIC_PREFIX + css["path"], {"Accept-Encoding": "gzip"})
        assert resp.status == 200 and resp.getheader("Content-Encoding") == "gzip", resp.headers
        assert gzip.decompress(body) == data

        resp, body = get(STATIC_PREFIX + css["path"], {"Accept-Encoding": "identity"})
        assert resp.getheader("Content-Encoding") is None and body == data
    finally:
        httpd.shutdown()
        httpd.server_close()
