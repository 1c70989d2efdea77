"""A small HTTP/1.1 client connection: the part of http.client the registry client uses.

Why not http.client: importing it loads the email package (header parsing), about 15 ms of
the 50 ms a `bazel run` push spent importing before it sent a byte (docs/performance.md, "Tool
import time"). This module needs only `socket`; `ssl` is imported by the caller, and only for
HTTPS. It speaks what registries, blob stores and token servers answer:

- Requests: the request line, `Host` (the URL's host[:port]) and the caller's headers in one
  write, then the body (small bodies in the same write). TCP_NODELAY is set: a header block
  followed by a body never waits for a delayed ACK.
- Responses (RFC 9112): interim 1xx responses are skipped; a response to HEAD, a 204 and a 304
  have no body; `Transfer-Encoding: chunked` is decoded (trailers dropped); else
  `Content-Length`; else the body runs until the server closes the connection.
  `will_close` tells whether the connection can carry another request (HTTP/1.0 without
  keep-alive, `Connection: close`, a body read until close). A status line, a header line or a
  chunk-size line longer than 64 KiB, more than 200 header lines, or a body shorter than its
  declared length are ProtocolError (an OSError); a server that closes the connection before
  the status line is RemoteDisconnected (a ConnectionResetError), as in http.client.
- Header names keep their case in `getheaders()`; values are decoded as ISO-8859-1.
"""

import socket

MAX_LINE = 1 << 16
MAX_HEADERS = 200
DEFAULT_PORTS = {"https": 443, "http": 80}
# Bodies up to this size go out in the same write as the header block.
SMALL_BODY = 1 << 16


class ProtocolError(OSError):
    """A response that is not valid HTTP/1.x (or is cut short)."""


class RemoteDisconnected(ConnectionResetError):
    """The server closed the connection without sending a status line."""


def split_netloc(netloc, scheme):
    """(host, port) of `host[:port]` or `[v6][:port]`; the scheme's default port when none."""
    if netloc.startswith("["):
        end = netloc.index("]")
        host, rest = netloc[1:end], netloc[end + 1:]
        port = rest[1:] if rest.startswith(":") else ""
    elif netloc.count(":") == 1:
        host, port = netloc.split(":")
    else:
        host, port = netloc, ""
    if port and not port.isdigit():
        raise ProtocolError("bad port in %r" % netloc)
    return host, int(port) if port else DEFAULT_PORTS[scheme]


class Connection(object):
    """One keep-alive connection to scheme://netloc, opened on the first request.

    ssl_context: an ssl.SSLContext for https (its wrap_socket checks the server's name)."""

    def __init__(self, scheme, netloc, timeout, ssl_context=None):
        if scheme not in DEFAULT_PORTS:
            raise ProtocolError("unsupported URL scheme %r" % scheme)
        self.scheme = scheme
        self.netloc = netloc
        self.host, self.port = split_netloc(netloc, scheme)
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.sock = None
        self.rfile = None

    def connect(self):
        self.sock = self._socket()
        self.rfile = self.sock.makefile("rb")

    def _socket(self):
        sock = socket.create_connection((self.host, self.port), self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.scheme == "https":
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def request(self, method, path, headers, body=None):
        """Sends the request line and headers, and `body` (bytes) when given; a streamed body
        follows with send(). The caller sets Content-Length."""
        if self.sock is None:
            self.connect()
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % self.netloc]
        for k, v in headers.items():
            v = str(v)
            if "\r" in v or "\n" in v or "\r" in k or "\n" in k or ":" in k:
                raise ValueError("invalid HTTP header %r" % k)
            lines.append("%s: %s" % (k, v))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.method = method
        if body and len(body) <= SMALL_BODY:
            self.sock.sendall(head + body)
        else:
            self.sock.sendall(head)
            if body:
                self.sock.sendall(body)

    def send(self, data):
        self.sock.sendall(data)

    def getresponse(self):
        """The response to the last request, its headers read, its body not."""
        while True:
            version, status, reason = self._status_line()
            headers = self._headers()
            if 100 <= status < 200 and status != 101:
                continue  # interim (100 Continue, 103 Early Hints): the final one follows
            return Response(self.rfile, self.method, version, status, reason, headers)

    def close(self):
        rfile, sock, self.rfile, self.sock = self.rfile, self.sock, None, None
        if rfile is not None:
            rfile.close()
        if sock is not None:
            sock.close()

    def _line(self, what):
        line = self.rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise ProtocolError("%s longer than %d bytes" % (what, MAX_LINE))
        return line

    def _status_line(self):
        line = self._line("status line")
        if not line:
            raise RemoteDisconnected("Remote end closed connection without response")
        text = line.decode("latin-1").rstrip("\r\n")
        parts = text.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
            raise ProtocolError("not an HTTP/1.x status line: %r" % text[:80])
        return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""

    def _headers(self):
        headers = []
        while True:
            line = self._line("header line")
            if line in (b"\r\n", b"\n", b""):
                return headers
            if len(headers) >= MAX_HEADERS:
                raise ProtocolError("more than %d header lines" % MAX_HEADERS)
            text = line.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and headers:  # obsolete line folding
                name, value = headers[-1]
                headers[-1] = (name, value + " " + text.strip())
                continue
            name, sep, value = text.partition(":")
            if not sep or not name or name != name.strip():
                raise ProtocolError("bad header line: %r" % text[:80])
            headers.append((name, value.strip()))


class UnixConnection(Connection):
    """A connection to an HTTP server on a unix socket (the Docker Engine API); `Host` is
    `host_header`."""

    def __init__(self, path, timeout, host_header="localhost"):
        super().__init__("http", host_header, timeout)
        self.unix_path = path

    def _socket(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_path)
        except BaseException:
            sock.close()
            raise
        return sock


class Response(object):
    """status, reason, version, getheaders(), length (the body's length when known, else
    None), will_close; read(n) reads the body, close() ends it."""

    def __init__(self, rfile, method, version, status, reason, headers):
        self.fp = rfile
        self.version = version
        self.status = status
        self.reason = reason
        self._headers = headers
        fields = {}
        for k, v in headers:
            fields.setdefault(k.lower(), []).append(v)
        conn = ",".join(fields.get("connection", ())).lower()
        self.will_close = "close" in conn or (version == "HTTP/1.0" and "keep-alive" not in conn)
        self.chunked = False
        self._chunk_left = 0
        self.length = None
        if method == "HEAD" or status in (204, 304):
            self.length = 0
        elif "chunked" in ",".join(fields.get("transfer-encoding", ())).lower():
            self.chunked = True
        elif "content-length" in fields:
            values = set(v.strip() for v in ",".join(fields["content-length"]).split(","))
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ProtocolError("bad Content-Length: %r" % fields["content-length"])
            self.length = int(values.pop())
        else:
            self.will_close = True  # the body runs until the server closes the connection
        self._left = self.length
        self._done = self.length == 0

    def getheaders(self):
        return list(self._headers)

    def getheader(self, name, default=None):
        name = name.lower()
        for k, v in self._headers:
            if k.lower() == name:
                return v
        return default

    def read(self, n=None):
        """Up to n bytes of the body (all of it when n is None); b"" at its end."""
        if self._done or self.fp is None:
            return b""
        if self.chunked:
            return self._read_chunked(n)
        if self._left is None:  # until close
            data = self.fp.read() if n is None else self.fp.read1(n) if n else b""
            if n is None or (n and not data):
                self._done = True
            return data
        want = self._left if n is None else min(n, self._left)
        data = self.fp.read(want)
        self._left -= len(data)
        if len(data) < want:
            self._done = True
            raise ProtocolError("the body ended after %d of %d bytes" % (self.length - self._left, self.length))
        if not self._left:
            self._done = True
        return data

    def _read_chunked(self, n):
        parts, got = [], 0
        while n is None or got < n:
            if not self._chunk_left:
                line = self.fp.readline(MAX_LINE + 1)
                if not line or len(line) > MAX_LINE:
                    self._done = True
                    raise ProtocolError("bad or missing chunk size line")
                size = line.split(b";", 1)[0].strip()
                try:
                    self._chunk_left = int(size, 16)
                except ValueError:
                    self._done = True
                    raise ProtocolError("bad chunk size %r" % size[:20])
                if self._chunk_left == 0:
                    while True:  # trailers, up to the empty line
                        t = self.fp.readline(MAX_LINE + 1)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    self._done = True
                    break
            want = self._chunk_left if n is None else min(self._chunk_left, n - got)
            data = self.fp.read(want)
            if len(data) < want:
                self._done = True
                raise ProtocolError("a chunk ended early")
            parts.append(data)
            got += len(data)
            self._chunk_left -= len(data)
            if not self._chunk_left:
                self.fp.readline(MAX_LINE + 1)  # the CRLF after the chunk
            if n is not None:
                break  # one chunk's worth at a time is enough for a streaming reader
        return b"".join(parts)

    def close(self):
        self._done = True
        self.fp = None
