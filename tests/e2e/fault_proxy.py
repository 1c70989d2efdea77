"""A real HTTP/1.1 proxy on 127.0.0.1 between a registry client and a registry, injecting faults.

It forwards each request to the upstream registry over its own TCP connection (keep-alive on
both sides), counts what passes (requests, upload body bytes), and applies the first matching
rule with uses left:

    Rule(method="PUT", path=r"/blobs/uploads/", action="reset", after_bytes=100000, times=1,
         min_length=200000)
        forward the request head and 100000 body bytes of an upload of 200000 bytes or more
        upstream, then reset (RST) both sockets
    Rule(method="PUT", path=r"/manifests/", action="status", status=500, times=2)
        answer 500 itself (after reading the request body) without asking the registry
    Rule(method="HEAD", path=r"/blobs/", action="status", status=429, retry_after="1", times=1)
    Rule(..., times=None)                                   a fault that never stops

A TLS ClientHello (a client trying HTTPS first) gets a plain `400 Bad Request`, as a plain-HTTP
Go server answers, so clients fall back to HTTP. Standard library only; threads; stop() closes
everything it opened.

    with FaultProxy(registry.port) as proxy:   proxy.host -> "127.0.0.1:PORT"
        proxy.set_rules([...]); proxy.upload_bytes; proxy.requests
"""

import re
import socket
import struct
import threading


class Rule(object):
    def __init__(self, method=None, path=None, action="status", status=500, retry_after=None,
                 after_bytes=0, times=1, min_length=None):
        self.method = method
        self.min_length = min_length  # only requests with a Content-Length at least this
        self.path = re.compile(path) if path else None
        self.action = action
        self.status = status
        self.retry_after = retry_after
        self.after_bytes = after_bytes
        self.times = times  # None: forever
        self.hits = 0

    def matches(self, method, path, length=0):
        if self.times is not None and self.hits >= self.times:
            return False
        if self.min_length is not None and length < self.min_length:
            return False
        if self.method and self.method != method:
            return False
        if self.path and not self.path.search(path):
            return False
        return True


_REASONS = {400: "Bad Request", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable"}


class _Closed(Exception):
    pass


def _read_head(f):
    """Reads an HTTP head (start line + headers) from a buffered reader; None at EOF."""
    lines = []
    while True:
        line = f.readline(65537)
        if not line:
            if lines:
                raise _Closed()
            return None
        if line in (b"\r\n", b"\n"):
            if not lines:
                continue
            return lines
        lines.append(line)


def _headers(lines):
    out = {}
    for line in lines[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        out[k.strip().lower()] = v.strip()
    return out


def _rst(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy(object):
    def __init__(self, upstream_port, upstream_host="127.0.0.1", rules=()):
        self.upstream = (upstream_host, upstream_port)
        self.rules = list(rules)
        self.lock = threading.Lock()
        self.requests = []  # (method, path, status or "reset"/"status")
        self.upload_bytes = 0  # request body bytes forwarded to .../blobs/uploads/...
        self.manifest_bytes = 0  # request body bytes of manifest PUTs (.../manifests/<ref>)
        self.download_bytes = 0  # response body bytes of every GET (manifests, blobs, ...)
        self.blob_download_bytes = 0  # response body bytes of GET .../blobs/sha256:...
        self.injected = 0
        self._sock = None
        self._threads = []
        self._conns = set()
        self._stopping = threading.Event()
        self.port = None

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    def set_rules(self, rules):
        with self.lock:
            self.rules = list(rules)

    def reset_counters(self):
        with self.lock:
            self.requests = []
            self.upload_bytes = 0
            self.manifest_bytes = 0
            self.download_bytes = 0
            self.blob_download_bytes = 0
            self.injected = 0

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        self._sock = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stopping.set()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        with self.lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                c.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)

    def _accept(self):
        while not self._stopping.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self.lock:
                self._conns.add(client)
            t = threading.Thread(target=self._serve, args=(client,), daemon=True)
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _rule_for(self, method, path, length):
        with self.lock:
            for r in self.rules:
                if r.matches(method, path, length):
                    r.hits += 1
                    self.injected += 1
                    return r
        return None

    def _serve(self, client):
        upstream = None
        ufile = None
        cfile = client.makefile("rb")
        try:
            first = client.recv(1, socket.MSG_PEEK)
            if first == b"\x16":  # TLS ClientHello: answer like a plain-HTTP server does
                client.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            while not self._stopping.is_set():
                head = _read_head(cfile)
                if head is None:
                    return
                start = head[0].decode("latin-1").split()
                if len(start) < 3:
                    return
                method, path = start[0], start[1]
                hdrs = _headers(head)
                rule = self._rule_for(method, path, int(hdrs.get("content-length") or 0))
                uploading = "/blobs/uploads/" in path and method in ("PUT", "PATCH", "POST")
                if rule is not None and rule.action == "status":
                    self._drain_body(cfile, hdrs)
                    body = b'{"errors":[{"code":"INJECTED","message":"fault injected by the test proxy"}]}'
                    extra = "Retry-After: %s\r\n" % rule.retry_after if rule.retry_after is not None else ""
                    client.sendall(("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                                    % (rule.status, _REASONS.get(rule.status, "Error"), len(body), extra)).encode()
                                   + (body if method != "HEAD" else b""))
                    with self.lock:
                        self.requests.append((method, path, rule.status))
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self.upstream, timeout=120)
                    ufile = upstream.makefile("rb")
                upstream.sendall(b"".join(head) + b"\r\n")
                limit = rule.after_bytes if rule is not None and rule.action == "reset" else None
                sent = self._copy_body(cfile, upstream, hdrs, limit)
                if uploading:
                    with self.lock:
                        self.upload_bytes += sent
                elif method == "PUT" and "/manifests/" in path:
                    with self.lock:
                        self.manifest_bytes += sent
                if limit is not None:
                    with self.lock:
                        self.requests.append((method, path, "reset"))
                    _rst(client)
                    _rst(upstream)
                    return
                rhead = _read_head(ufile)
                if rhead is None:
                    return
                status = int(rhead[0].split()[1])
                rhdrs = _headers(rhead)
                client.sendall(b"".join(rhead) + b"\r\n")
                if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                    pass
                else:
                    got = self._copy_body(ufile, client, rhdrs, None, until_close=True)
                    if method == "GET":
                        with self.lock:
                            self.download_bytes += got
                            if "/blobs/sha256:" in path:
                                self.blob_download_bytes += got
                with self.lock:
                    self.requests.append((method, path, status))
                if rhdrs.get("connection", "").lower() == "close":
                    return
        except (OSError, _Closed, ValueError, IndexError):
            return
        finally:
            with self.lock:
                self._conns.discard(client)
            for f in (cfile, ufile):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            for s in (client, upstream):
                try:
                    if s is not None:
                        s.close()
                except OSError:
                    pass

    @staticmethod
    def _drain_body(f, hdrs):
        n = int(hdrs.get("content-length") or 0)
        while n > 0:
            b = f.read(min(n, 1 << 16))
            if not b:
                raise _Closed()
            n -= len(b)
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            FaultProxy._copy_chunked(f, None, None)

    @staticmethod
    def _copy_chunked(src, dst, limit):
        total = 0
        while True:
            line = src.readline(1024)
            if not line:
                raise _Closed()
            if dst is not None:
                dst.sendall(line)
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers
                    t = src.readline(65537)
                    if dst is not None:
                        dst.sendall(t)
                    if t in (b"\r\n", b"\n", b""):
                        return total
            left = size + 2
            while left > 0:
                b = src.read(min(left, 1 << 16))
                if not b:
                    raise _Closed()
                if dst is not None:
                    dst.sendall(b)
                left -= len(b)
            total += size
            if limit is not None and total >= limit:
                return total

    @staticmethod
    def _copy_body(src, dst, hdrs, limit, until_close=False):
        """Copies a message body (Content-Length, chunked, or until close); returns its size.

        With limit, stops after that many bytes (for the reset fault)."""
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            return FaultProxy._copy_chunked(src, dst, limit)
        if "content-length" in hdrs:
            n = int(hdrs["content-length"])
        elif until_close:
            n = None
        else:
            return 0
        sent = 0
        while n is None or sent < n:
            want = 1 << 16 if n is None else min(1 << 16, n - sent)
            if limit is not None:
                want = min(want, limit - sent)
                if want <= 0:
                    return sent
            b = src.read1(want) if hasattr(src, "read1") else src.read(want)
            if not b:
                if n is None:
                    return sent
                raise _Closed()
            dst.sendall(b)
            sent += len(b)
        return sent
