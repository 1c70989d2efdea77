"""HTTP plumbing of the registry client: TLS, keep-alive connections, one exchange, retry policy.

- TLS: verified against the system CAs, plus `ca_file` and, as docker and podman do, the
  certs.d directories `/etc/docker/certs.d/<host[:port]>/` and `/etc/containers/certs.d/...`
  (`certs_dirs`): every `*.crt` is a CA to trust; a `<name>.cert` + `<name>.key` pair is a client
  certificate for mutual TLS (the first pair, directories in order and names sorted, is the one
  presented). A file that cannot be loaded, or half a pair, is a RegistryError naming the file.
  `insecure=True` skips server certificate checks (a client certificate is still presented) and,
  in session.py, allows plain HTTP to a non-loopback registry.
- Connections: one keep-alive connection per thread and (scheme, host); a kept-alive connection
  the server closed while idle is reopened once at once (never under a streamed blob body).
- Bodies: a response body that is not streamed is read up to `max_body` bytes (plus one, to
  tell), never more: a larger one is cut there (`Response.truncated`) and its connection closed.
- Origins: `same_origin` (scheme, host and port) decides where credentials may go (session.py).
- RetryPolicy: exponential backoff with jitter, honouring `Retry-After` (seconds or HTTP date).
"""

import json
import os
import socket
import sys
import threading
import time

from python_tools.shiko.files import CHUNK, new_sha256
from python_tools.shiko.oci.reference import DOCKER_HUB
from python_tools.shiko.registry import http1
from python_tools.shiko.registry.errors import RegistryError

USER_AGENT = "rules_shiko-registry/0.1"
DOCKER_HUB_API = "registry-1.docker.io"
CERTS_DIRS = ("/etc/docker/certs.d", "/etc/containers/certs.d")
# The most of a response body read into memory (manifests, errors, tokens); blobs stream to disk.
MAX_BODY_BYTES = 4 << 20
DEFAULT_PORTS = {"https": 443, "http": 80}
# TLS alerts (ssl.SSLError.reason suffixes) by which a server refuses our client certificate.
CLIENT_CERT_ALERTS = ("CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN_CA", "CERTIFICATE_UNKNOWN")

# I/O failures worth another attempt (connection resets, timeouts, truncated or malformed
# responses: http1.ProtocolError, TLS errors: ssl.SSLError, are OSErrors too).
RETRYABLE_EXC = (ConnectionError, TimeoutError, socket.timeout, OSError)


def _ssl():
    """The ssl module, imported only when TLS is used (it costs ~9 ms of a push's start-up)."""
    import ssl
    return ssl


def ssl_error(e, name="SSLError"):
    """Whether e is an ssl.<name> (SSLError, SSLCertVerificationError). Without importing ssl:
    when nothing imported it, nothing spoke TLS and no such error can have happened."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(e, getattr(ssl, name))


# --- Hosts --------------------------------------------------------------------------------------


def host_of(registry):
    """The host part (no port, no brackets) of `host[:port]`."""
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry):
    host = host_of(registry)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    # 127.0.0.0/8 and ::1 (what ipaddress calls loopback), without importing ipaddress.
    try:
        return socket.inet_pton(socket.AF_INET, host)[0] == 127
    except OSError:
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, host) == bytes(15) + b"\x01"
    except OSError:
        return False


def api_host(registry):
    """Where the API of `registry` lives (Docker Hub's is not at docker.io)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def _plain_url(url):
    """(scheme, netloc, path with query) of the plain `http(s)://host[:port]/path[?query]` URLs the
    client builds, exactly as urllib.parse.urlsplit splits them; None for any other URL
    (userinfo, a fragment, no path, characters urlsplit treats specially)."""
    for scheme in ("https", "http"):
        if url.startswith(scheme + "://"):
            rest = url[len(scheme) + 3:]
            slash = rest.find("/")
            if slash <= 0:
                return None
            netloc = rest[:slash]
            if ("?" in netloc or "@" in netloc or "#" in rest or "\\" in rest or " " in rest
                    or not rest.isprintable() or not rest.isascii()):
                return None
            return scheme, netloc, rest[slash:]
    return None


def split_url(url):
    """(scheme, netloc, path with query) of an absolute URL, as urllib.parse.urlsplit gives them
    (the fragment dropped). urllib.parse is imported only for URLs other than the plain ones the
    client builds: its import (with ipaddress) is ~3 ms of a push's start-up."""
    plain = _plain_url(url)
    if plain is not None:
        return plain
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.netloc, u.path + ("?" + u.query if u.query else "")


def origin(url):
    """(scheme, host lowercased, port) of an absolute URL; the scheme's default port if none."""
    plain = _plain_url(url)
    if plain is not None:
        scheme, netloc = plain[0], plain[1]
        if netloc.startswith("["):
            host, _, rest = netloc[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = netloc.partition(":")
        number = int(port) if port.isdigit() and int(port) < 65536 else 0
        return scheme, host.lower(), number or DEFAULT_PORTS[scheme]
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    scheme = u.scheme.lower()
    try:
        port = u.port
    except ValueError:
        port = None
    return scheme, (u.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme)


def same_origin(a, b):
    """Whether two absolute URLs have the same scheme, host and port (where credentials may go)."""
    return origin(a) == origin(b)


# --- Retry policy -------------------------------------------------------------------------------


class RetryPolicy(object):
    """How often and how long to retry. attempts counts the first try too."""

    def __init__(self, attempts=6, base_delay=0.5, max_delay=20.0, max_retry_after=60.0, jitter=0.25,
                 sleep=time.sleep):
        self.attempts = max(1, int(attempts))
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.max_retry_after = float(max_retry_after)
        self.jitter = float(jitter)
        self.sleep = sleep

    def delay(self, attempt, retry_after=None):
        """Seconds to wait after failed attempt number `attempt` (1-based).

        A `Retry-After` (seconds or an HTTP date) wins when given; more than max_retry_after
        raises ValueError (the caller gives up rather than hanging)."""
        if retry_after is not None:
            secs = parse_retry_after(retry_after)
            if secs is not None:
                if secs > self.max_retry_after:
                    raise ValueError("the registry asks to retry after %d s (more than %d s)"
                                     % (secs, self.max_retry_after))
                return secs
        d = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        import random  # lazily: only a retry needs it
        return d * (1 + random.uniform(0, self.jitter))


def parse_retry_after(value, now=None):
    """Retry-After: delta seconds or an HTTP date -> seconds (>= 0), or None if unparsable."""
    if value is None:
        return None
    v = str(value).strip()
    if v.isdigit():
        return float(int(v))
    import email.utils  # lazily: an HTTP date in Retry-After is rare, and email costs ~10 ms
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def client_hello():
    """One TLS ClientHello record (TLS 1.2 framing, ECDHE AES-GCM suites, X25519/P-256): enough
    for any TLS server to answer with a TLS record. Its random field holds a CRLF, so that a
    line-reading plain HTTP server answers it at once (with 400) instead of waiting for the
    end of a request line."""
    suites = b"\x13\x01\x13\x02\xc0\x2b\xc0\x2f\xc0\x2c\xc0\x30"
    ext = (b"\x00\x0a\x00\x06\x00\x04\x00\x1d\x00\x17"  # supported_groups: x25519, secp256r1
           b"\x00\x0b\x00\x02\x01\x00"  # ec_point_formats: uncompressed
           b"\x00\x0d\x00\x08\x00\x06\x04\x03\x08\x04\x04\x01")  # signature_algorithms
    body = (b"\x03\x03" + os.urandom(30) + b"\r\n" + b"\x00" + len(suites).to_bytes(2, "big") + suites
            + b"\x01\x00" + len(ext).to_bytes(2, "big") + ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def exc_text(e):
    """An exception as one line: `ConnectionResetError: [Errno 104] ...`."""
    name = type(e).__name__
    msg = str(e).strip()
    return "%s: %s" % (name, msg) if msg else name


# --- Requests and responses ---------------------------------------------------------------------


class FileBody(object):
    """A request body streamed from part of a file, hashed and counted as it goes."""

    def __init__(self, path, offset=0, length=None, progress=None):
        self.path = path
        self.offset = offset
        self.length = os.path.getsize(path) - offset if length is None else length
        self.progress = progress
        self.sha256 = None

    def send(self, conn):
        h = new_sha256()
        left = self.length
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while left > 0:
                buf = f.read(min(CHUNK, left))
                if not buf:
                    raise OSError("%s shrank while being sent" % self.path)
                conn.send(buf)
                h.update(buf)
                left -= len(buf)
                if self.progress:
                    self.progress(len(buf))
        self.sha256 = h.hexdigest()


class StreamBody(FileBody):
    """A request body streamed from a blob source that is not a local file (an object with
    `open()` returning a verified stream: shiko/registry/image_blobs.RemoteBlob), re-opened on
    each attempt: registry to registry with no copy on disk."""

    def __init__(self, source, length, progress=None):
        self.source = source
        self.path = getattr(source, "digest", "a remote blob")
        self.offset = 0
        self.length = length
        self.progress = progress
        self.sha256 = None

    def send(self, conn):
        h = new_sha256()
        stream = self.source.open()
        try:
            while True:
                buf = stream.read(CHUNK)
                if not buf:
                    break
                conn.send(buf)
                h.update(buf)
                if self.progress:
                    self.progress(len(buf))
        finally:
            stream.close()
        self.sha256 = h.hexdigest()


class Response(object):
    def __init__(self, status, reason, headers, body, raw=None, url=None, truncated=False):
        self.status = status
        self.reason = reason
        self.headers = headers  # {lowercase name: value}
        self.body = body
        self.raw = raw  # http1.Response, when streaming
        self.url = url
        self.truncated = truncated  # the body was larger than the limit: `body` is a prefix

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)


def registry_errors(body):
    """`{"errors": [{"code", "message"}]}` -> "CODE: message; ..." (or a short text)."""
    if not body:
        return ""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
        errs = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errs, list) and errs:
            parts = []
            for e in errs[:3]:
                if isinstance(e, dict):
                    parts.append(("%s: %s" % (e.get("code", ""), e.get("message", ""))).strip(": "))
            return "; ".join(p for p in parts if p)
        if isinstance(data, dict) and (data.get("details") or data.get("error")):
            return str(data.get("details") or data.get("error"))[:200]
    except ValueError:
        pass
    # The first line, printable characters only (a body may be anything, even binary).
    lines = body[:200].decode("utf-8", "replace").strip().splitlines()
    text = "".join(ch if ch.isprintable() else " " for ch in lines[0]) if lines else ""
    return " ".join(text.split())


def read_body(resp, limit):
    """(at most `limit` bytes of resp's body, whether it was larger). Reads at most limit + 1
    bytes, in small pieces; nothing when the declared Content-Length is already larger."""
    if resp.length is not None:  # Content-Length (0 for HEAD, 204, 304)
        if resp.length > limit:
            return b"", True
        return resp.read(), False
    parts, n = [], 0
    while n <= limit:  # chunked, or until the server closes the connection
        buf = resp.read(min(1 << 16, limit + 1 - n))
        if not buf:
            break
        parts.append(buf)
        n += len(buf)
    data = b"".join(parts)
    return (data[:limit], True) if n > limit else (data, False)


def _problem(e):
    """Why a certificate or key file did not load, in a few words."""
    if ssl_error(e) and e.reason:
        return e.reason
    if isinstance(e, OSError):
        return e.strerror or exc_text(e)
    return str(e) or exc_text(e)


def _raise_password_needed():
    raise ValueError("the key is encrypted (a passphrase is not supported)")


# --- Connections --------------------------------------------------------------------------------


class Connections(object):
    """TLS settings and one keep-alive connection per thread and (scheme, host) of a registry."""

    def __init__(self, registry, insecure=False, ca_file=None, timeout=120.0, certs_dirs=CERTS_DIRS):
        self.registry = registry
        self.insecure = bool(insecure)
        self.ca_file = ca_file
        self.timeout = timeout
        self.certs_dirs = certs_dirs
        self.client_cert = None  # (cert, key) paths presented for mutual TLS, once loaded
        self._local = threading.local()
        self._ssl = None
        self._ssl_lock = threading.Lock()

    def ssl_context(self):
        """The TLS settings (built once): see the module docstring. RegistryError names a file
        that cannot be loaded."""
        with self._ssl_lock:
            if self._ssl is None:
                ssl = _ssl()
                if self.insecure:
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                else:
                    ctx = ssl.create_default_context()
                    if self.ca_file:
                        try:
                            ctx.load_verify_locations(cafile=self.ca_file)
                        except (OSError, ssl.SSLError) as e:
                            raise RegistryError("cannot load the CA file %s: %s" % (self.ca_file, _problem(e)))
                self._load_certs_d(ctx)
                self._ssl = ctx
            return self._ssl

    def tls_refusal(self, e):
        """For a TLS alert by which the server refuses our client certificate (or its absence):
        what to say (one line, without the registry's name); None for any other error."""
        reason = str(getattr(e, "reason", "") or "") if ssl_error(e) else ""
        if not reason.endswith(CLIENT_CERT_ALERTS):
            return None
        if self.client_cert:
            return "the registry refused the client certificate %s (%s)" % (self.client_cert[0], reason)
        return ("the registry requires a client certificate (%s); put <name>.cert and <name>.key "
                "in /etc/docker/certs.d/%s/" % (reason, self.registry))

    def _load_certs_d(self, ctx):
        """CAs (`*.crt`) and the first client certificate pair (`*.cert` + `*.key`) of certs.d."""
        ssl = _ssl()
        pairs = []
        for d in self.certs_dirs or ():
            hd = os.path.join(d, self.registry)
            if not os.path.isdir(hd):
                continue
            for name in sorted(os.listdir(hd)):
                path = os.path.join(hd, name)
                if name.endswith(".crt"):
                    try:
                        ctx.load_verify_locations(cafile=path)
                    except (OSError, ssl.SSLError) as e:
                        raise RegistryError("registry %s: cannot load the CA certificate %s: %s"
                                            % (self.registry, path, _problem(e)))
                elif name.endswith(".cert"):
                    key = path[:-len(".cert")] + ".key"
                    if not os.path.isfile(key):
                        raise RegistryError("registry %s: the client certificate %s has no key %s (a CA "
                                            "certificate's name must end in .crt)" % (self.registry, path, key))
                    pairs.append((path, key))
                elif name.endswith(".key"):
                    cert = path[:-len(".key")] + ".cert"
                    if not os.path.isfile(cert):
                        raise RegistryError("registry %s: the client key %s has no certificate %s"
                                            % (self.registry, path, cert))
        if pairs:
            cert, key = pairs[0]
            try:
                ctx.load_cert_chain(cert, key, password=_raise_password_needed)
            except (OSError, ssl.SSLError, ValueError) as e:
                raise RegistryError("registry %s: cannot load the client certificate %s with key %s: %s"
                                    % (self.registry, cert, key, _problem(e)))
            self.client_cert = (cert, key)

    def speaks_tls(self, netloc):
        """Whether the server at netloc answers a TLS handshake: False when it answers it with
        something that is not TLS (a plain HTTP server's `400 Bad Request`), None when that
        cannot be told (refused, reset, timeout, closed without a word), True when it answers
        with a TLS record (a ServerHello, or an alert).

        A probe that sends one ClientHello and reads the first bytes of the answer, closed at
        once: no request is ever sent over it. It lets a session that may fall back to plain
        HTTP (loopback or insecure registries) skip TLS altogether when the registry only speaks
        HTTP: no `ssl` import (~9 ms) and no system CA store (50-100 ms on a loaded 2-core
        machine, more than the rest of a HEAD-only push)."""
        host, port = http1.split_netloc(netloc, "https")
        try:
            sock = socket.create_connection((host, port), min(self.timeout, 10.0))
        except (OSError, ValueError):
            return None
        try:
            sock.sendall(client_hello())
            data = b""
            while len(data) < 2:
                more = sock.recv(5 - len(data))
                if not more:
                    break
                data += more
        except OSError:
            return None
        finally:
            sock.close()
        if len(data) < 2:
            return None
        # A TLS record: content type handshake (22) or alert (21), then major version 3.
        return data[0] in (21, 22) and data[1] == 3

    def _new(self, scheme, netloc):
        ctx = self.ssl_context() if scheme == "https" else None
        return http1.Connection(scheme, netloc, self.timeout, ctx)

    def _get(self, scheme, netloc):
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (scheme, netloc)
        c = conns.get(key)
        fresh = c is None
        if fresh:
            c = conns[key] = self._new(scheme, netloc)
        return c, fresh

    def drop(self, scheme, netloc):
        conns = getattr(self._local, "conns", None) or {}
        c = conns.pop((scheme, netloc), None)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def drop_for(self, url):
        scheme, netloc, _ = split_url(url)
        self.drop(scheme, netloc)

    def close(self):
        for key in list((getattr(self._local, "conns", None) or {}).keys()):
            self.drop(*key)

    def exchange(self, method, url, headers, body=None, stream=False, max_body=MAX_BODY_BYTES):
        """One HTTP exchange (no retries, no auth). Raises OSError on I/O errors.

        With stream=True a 2xx response is returned unread (`raw`); the caller reads it, closes
        it and drops the connection (drop_for). Otherwise at most max_body bytes of the body are
        kept (read_body; `truncated` when it was larger, and the connection is closed)."""
        scheme, netloc, path = split_url(url)
        for attempt in (1, 2):
            conn, fresh = self._get(scheme, netloc)
            try:
                h = dict(headers)
                if isinstance(body, FileBody):
                    h["Content-Length"] = str(body.length)
                    conn.request(method, path, h)
                    body.send(conn)
                elif body is not None:
                    h["Content-Length"] = str(len(body))
                    conn.request(method, path, h, body)
                else:
                    if method in ("PUT", "POST", "PATCH"):
                        h["Content-Length"] = "0"
                    conn.request(method, path, h)
                resp = conn.getresponse()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if stream and 200 <= resp.status < 300:
                    return Response(resp.status, resp.reason, hdrs, None, raw=resp, url=url)
                # Also for HEAD: reading frees the connection for the next request.
                data, truncated = read_body(resp, max_body)
                if truncated or resp.will_close:
                    self.drop(scheme, netloc)
                return Response(resp.status, resp.reason, hdrs, data, url=url, truncated=truncated)
            except (BrokenPipeError, ConnectionResetError):  # http1.RemoteDisconnected too
                self.drop(scheme, netloc)
                # A kept-alive connection the server closed while idle: one immediate reconnect.
                # Never for streamed blob bodies: the registry may have taken part of it, and
                # the upload session must be restarted by the caller instead.
                if not fresh and attempt == 1 and not isinstance(body, FileBody):
                    continue
                raise
            except BaseException:
                self.drop(scheme, netloc)
                raise
        raise AssertionError("unreachable")
