"""A Docker Engine API client (HTTP/1.1 over a unix socket or plain tcp://), standard library only.

    host = discovery.docker_host(env)
    docker = Docker(host.url, target, host.how, env)
    docker.check()                        # GET /_ping
    image_id = docker.find(archive)       # by config digest, else manifest digest; or None
    docker.tag(image_id, ref)             # POST /images/<id>/tag
    sent = docker.load(archive)           # the archive streamed as a chunked POST /images/load

Errors (unreachable daemon, API errors, a refused image) are EngineError: one line naming the
daemon and how to fix it. TLS (DOCKER_TLS_VERIFY) is not supported.
"""

import json
import os
import socket
import urllib.parse

from python_tools.shiko.engines.errors import EngineError, last_line
from python_tools.shiko.errors import UserError
from python_tools.shiko.registry import http1

CHUNK = 1 << 20
API_TIMEOUT = 60.0


class _ChunkedBody(object):
    """A file-like writer sending what it gets as HTTP/1.1 chunks of about 1 MiB."""

    def __init__(self, conn):
        self.conn = conn
        self.buf = bytearray()

    def write(self, b):
        if not self.buf and len(b) >= CHUNK:
            self._send(b)
        else:
            self.buf += b
            if len(self.buf) >= CHUNK:
                self._send(bytes(self.buf))
                del self.buf[:]
        return len(b)

    def _send(self, data):
        self.conn.send(b"%X\r\n" % len(data))
        self.conn.send(data)
        self.conn.send(b"\r\n")

    def finish(self):
        if self.buf:
            self._send(bytes(self.buf))
            del self.buf[:]
        self.conn.send(b"0\r\n\r\n")


class Docker(object):
    name = "docker"

    def __init__(self, host, target, how="DOCKER_HOST", env=None):
        env = os.environ if env is None else env
        self.host = host
        self.target = target
        self.how = how
        self.where = "docker at %s" % host
        parsed = urllib.parse.urlsplit(host)
        if parsed.scheme == "unix":
            self.unix_path = parsed.path or parsed.netloc
            if not self.unix_path:
                raise self._error("DOCKER_HOST=%s has no socket path; use unix:///path/to/docker.sock" % host)
            self.tcp = None
        elif parsed.scheme in ("tcp", "http"):
            if env.get("DOCKER_TLS_VERIFY"):
                raise self._error("DOCKER_HOST=%s with DOCKER_TLS_VERIFY: TLS is not supported by image_load; "
                                  "use a unix socket (unix:///var/run/docker.sock) or --engine=podman" % host)
            if not parsed.hostname:
                raise self._error("DOCKER_HOST=%s has no host; use tcp://HOST:PORT" % host)
            self.unix_path = None
            self.tcp = (parsed.hostname, parsed.port or 2375)
        else:
            raise self._error("DOCKER_HOST=%s: only unix:// and tcp:// daemons are supported by image_load; "
                              "use a unix socket or --engine=podman" % host)

    def _error(self, problem):
        return EngineError(problem, self.target)

    def _connection(self, timeout):
        # http1 rather than http.client: load starts faster without the email package.
        if self.unix_path is not None:
            return http1.UnixConnection(self.unix_path, timeout, "docker")
        host = "[%s]" % self.tcp[0] if ":" in self.tcp[0] else self.tcp[0]
        return http1.Connection("http", "%s:%d" % (host, self.tcp[1]), timeout)

    def _unreachable(self, e):
        if isinstance(e, FileNotFoundError):
            why = "no such socket"
        elif isinstance(e, ConnectionRefusedError):
            why = "connection refused"
        elif isinstance(e, PermissionError):
            why = "permission denied: run as a user in the docker group or point DOCKER_HOST at a socket you may use"
        elif isinstance(e, socket.timeout):
            why = "no answer within %ds" % API_TIMEOUT
        else:
            why = str(e) or type(e).__name__
        if self.how == "DOCKER_HOST":
            fix = "start dockerd there, or point DOCKER_HOST at a running daemon, or use --engine=podman"
        else:
            fix = "start dockerd, or set DOCKER_HOST to a running daemon (e.g. unix:///run/user/1000/docker.sock), or use --engine=podman"
        return self._error("cannot reach the Docker daemon at %s (%s, %s): %s" % (
            self.host, "from DOCKER_HOST" if self.how == "DOCKER_HOST" else "the default", why, fix))

    def request(self, method, path, timeout=API_TIMEOUT):
        conn = self._connection(timeout)
        try:
            conn.request(method, path, {"Content-Length": "0"} if method == "POST" else {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        except OSError as e:  # http1.ProtocolError too
            raise self._unreachable(e)
        finally:
            conn.close()

    def _api_error(self, what, status, body):
        try:
            message = json.loads(body.decode("utf-8")).get("message")
        except (ValueError, AttributeError, UnicodeDecodeError):
            message = None
        return self._error("%s: %s answered HTTP %d: %s" % (what, self.where, status, message or last_line(body.decode("utf-8", "replace"))))

    def check(self):
        status, body = self.request("GET", "/_ping")
        if status != 200:
            raise self._api_error("ping", status, body)

    def image_id(self, ref):
        """The image ID of a reference or ID, or None when the daemon has no such image."""
        status, body = self.request("GET", "/images/%s/json" % urllib.parse.quote(ref, safe=":/@"))
        if status == 404:
            return None
        if status != 200:
            raise self._api_error("inspecting %s" % ref, status, body)
        return json.loads(body.decode("utf-8"))["Id"]

    def find(self, archive):
        """The ID of an image the daemon holds with this config (or manifest) digest, or None."""
        # dockerd's own image store: ID = config digest; containerd image store: ID = manifest digest.
        for digest in (archive.config_digest, archive.manifest_digest):
            found = self.image_id(digest)
            if found:
                return found
        return None

    def tag(self, image_id, ref):
        repo = ref.familiar[:len(ref.familiar) - len(ref.tag) - 1]
        path = "/images/%s/tag?%s" % (urllib.parse.quote(image_id, safe=":"),
                                      urllib.parse.urlencode({"repo": repo, "tag": ref.tag}))
        status, body = self.request("POST", path)
        if status not in (200, 201):
            raise self._api_error("tagging %s as %s" % (image_id, ref.familiar), status, body)

    def load(self, archive):
        """Streams the archive as the body of POST /images/load; returns the bytes sent."""
        conn = self._connection(None)  # a large image may take the daemon a while
        try:
            conn.request("POST", "/images/load?quiet=1",
                         {"Content-Type": "application/x-tar", "Transfer-Encoding": "chunked"})
        except OSError as e:
            conn.close()
            raise self._unreachable(e)
        body = _ChunkedBody(conn)
        try:
            sent = archive.write(body)
            body.finish()
        except UserError:
            conn.close()  # no final chunk: the daemon discards the partial upload
            raise
        except OSError as e:
            # The daemon hung up: its answer may say why.
            try:
                resp = conn.getresponse()
                raise self._api_error("loading", resp.status, resp.read())
            except OSError:
                raise self._error("loading: %s closed the connection while the image was sent (%s)" % (self.where, e))
            finally:
                conn.close()
        try:
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            raise self._error("loading: no answer from %s after the image was sent (%s)" % (self.where, e))
        finally:
            conn.close()
        if resp.status != 200:
            raise self._api_error("loading", resp.status, data)
        for message in _json_stream(data):
            if message.get("error") or message.get("errorDetail"):
                detail = (message.get("errorDetail") or {}).get("message") or message.get("error")
                raise self._error("loading: %s refused the image: %s" % (self.where, detail))
        return sent


def _json_stream(data):
    """The JSON objects of a concatenated JSON stream (the Docker API's progress format)."""
    text = data.decode("utf-8", "replace")
    decoder = json.JSONDecoder()
    pos = 0
    out = []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            return out + [{"error": last_line(text[pos:])}]
        if isinstance(obj, dict):
            out.append(obj)
