"""shiko/registry/http1.py: the registry client's HTTP/1.1 connection, against a loopback server
that answers with scripted bytes (framing, keep-alive, malformed answers), plus the import
budget of the push path (no http.client, email, ssl)."""

import socket
import subprocess
import sys
import threading

import pytest

from python_tools.shiko.registry import http1, transport
from python_tools.tests.test_worker import REPO


class Last(bytes):
    """An answer after which the server closes the connection."""


class RawServer(object):
    """Accepts connections on 127.0.0.1 and, for each request it reads (up to the blank line
    and a Content-Length body), sends the next scripted answer verbatim; "close" closes without
    an answer, a Last(...) answer closes after it."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.netloc = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            f = conn.makefile("rb")
            while self.answers:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = f.readline()
                    if not line:
                        break
                    head += line
                if not head:
                    break
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.requests.append(head + f.read(length))
                answer = self.answers.pop(0)
                if answer == "close":
                    break
                conn.sendall(answer)
                if isinstance(answer, Last):
                    break
            f.close()
            conn.close()

    def close(self):
        self.sock.close()


def exchange(conn, method="GET", path="/x", body=None):
    headers = {"User-Agent": "t"}
    if body is not None:
        headers["Content-Length"] = str(len(body))
    conn.request(method, path, headers, body)
    return conn.getresponse()


def test_content_length_keep_alive_and_request_bytes():
    srv = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello",
                     b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"])
    c = http1.Connection("http", srv.netloc, 5)
    r = exchange(c)
    assert (r.status, r.reason, r.length, r.will_close) == (200, "OK", 5, False)
    assert r.getheaders() == [("Content-Length", "5"), ("X-A", "1"), ("x-a", "2")]
    assert r.read(2) == b"he" and r.read() == b"llo" and r.read() == b""
    r = exchange(c, "PUT", "/y?z=1", b"body")
    assert (r.status, r.reason, r.read()) == (201, "Created", b"")
    c.close()
    srv.close()
    assert srv.connections == 1
    assert srv.requests[0] == b"GET /x HTTP/1.1\r\nHost: %s\r\nUser-Agent: t\r\n\r\n" % srv.netloc.encode()
    assert srv.requests[1].startswith(b"PUT /y?z=1 HTTP/1.1\r\n") and srv.requests[1].endswith(b"\r\n\r\nbody")


def test_chunked_interim_and_folded_headers():
    srv = RawServer([b"HTTP/1.1 100 Continue\r\n\r\n"
                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Long: a\r\n b\r\n\r\n"
                     b"3;ext=1\r\nabc\r\n5\r\ndefgh\r\n0\r\nTrailer: t\r\n\r\n"
                     b"HTTP/1.1 204 No Content\r\n\r\n"])
    c = http1.Connection("http", srv.netloc, 5)
    r = exchange(c)
    assert r.status == 200 and r.length is None and r.getheader("x-long") == "a b"
    assert r.read(2) == b"ab" and r.read(100) == b"c" and r.read() == b"defgh" and r.read() == b""
    r = exchange(c)  # the same connection: the chunked body and its trailer were consumed
    assert (r.status, r.length, r.read()) == (204, 0, b"")
    c.close()
    srv.close()
    assert srv.connections == 1


def test_head_has_no_body_and_http10_or_close_ends_the_connection():
    srv = RawServer([b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
                     b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
                     Last(b"HTTP/1.0 200 OK\r\n\r\nuntil close")])
    c = http1.Connection("http", srv.netloc, 5)
    r = exchange(c, "HEAD")
    assert (r.status, r.length, r.will_close, r.read()) == (200, 0, False, b"")
    assert r.getheader("content-length") == "1234"
    r = exchange(c)
    assert r.will_close and r.read() == b"ok"
    c.close()
    c = http1.Connection("http", srv.netloc, 5)
    r = exchange(c)
    assert r.will_close and r.length is None and r.read() == b"until close"
    c.close()
    srv.close()


@pytest.mark.parametrize("answer, error", [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 20 OK\r\n\r\n", "not an HTTP/1.x status line"),
    (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "bad header line"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "longer than 65536 bytes"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * 201 + b"\r\n", "more than 200 header lines"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "the body ended after 5 of 10 bytes"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
])
def test_malformed_answers_are_protocol_errors(answer, error):
    srv = RawServer([Last(answer)])
    c = http1.Connection("http", srv.netloc, 5)
    with pytest.raises(http1.ProtocolError) as e:
        r = exchange(c)
        r.read()
    assert error in str(e.value) and isinstance(e.value, OSError)
    c.close()
    srv.close()


def test_closed_without_a_status_line_is_remote_disconnected():
    srv = RawServer(["close"])
    c = http1.Connection("http", srv.netloc, 5)
    with pytest.raises(http1.RemoteDisconnected) as e:
        exchange(c)
    assert isinstance(e.value, ConnectionResetError)  # what transport.exchange reconnects on
    c.close()
    srv.close()


def test_header_injection_is_refused():
    c = http1.Connection("http", "127.0.0.1:9", 5)
    c.sock = object()  # never connects: the header is refused before anything is sent
    with pytest.raises(ValueError):
        c.request("GET", "/", {"X": "a\r\nEvil: 1"})


def test_split_netloc():
    assert http1.split_netloc("h", "https") == ("h", 443)
    assert http1.split_netloc("h:5000", "http") == ("h", 5000)
    assert http1.split_netloc("[::1]:5000", "http") == ("::1", 5000)
    assert http1.split_netloc("[::1]", "http") == ("::1", 80)
    with pytest.raises(http1.ProtocolError):
        http1.split_netloc("h:x", "http")


def test_client_hello_is_one_tls_record_with_a_line_end():
    hello = transport.client_hello()
    assert hello[:3] == b"\x16\x03\x01" and int.from_bytes(hello[3:5], "big") == len(hello) - 5
    assert hello[5] == 1 and int.from_bytes(hello[6:9], "big") == len(hello) - 9
    assert b"\r\n" in hello[11:43]  # a line-reading plain HTTP server answers at once


def test_push_path_imports_no_http_client_email_ssl_or_libcrypto():
    code = ("import sys, python_tools.push\n"
            "print(sorted(m for m in ('http.client', 'email', 'email.utils', 'ssl', 'random', 'calendar',"
            " 'datetime', 'hashlib', '_hashlib', 'urllib.parse', 'ipaddress', 'base64', 'contextlib')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, check=True,
                         text=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("url", [
    "https://registry.example/v2/", "http://127.0.0.1:5000/v2/a/b/manifests/v1",
    "https://h:443/v2/x/blobs/uploads/?mount=sha256:ab&from=y", "http://[::1]:5000/v2/", "https://H.Example:08/v2/",
    "http://h:99999/v2/", "http://h:/v2/", "https://user:pw@h/v2/", "https://h/v2/#frag", "https://h?x=1",
    "https://h", "HTTPS://h/v2/", "https://h/v2/a b", "https://h/v2/\u00e9", "ftp://h/x", "//h/x", "/v2/x",
])
def test_split_url_and_origin_agree_with_urllib(url):
    import urllib.parse
    u = urllib.parse.urlsplit(url)
    assert transport.split_url(url) == (u.scheme, u.netloc, u.path + ("?" + u.query if u.query else ""))
    try:
        port = u.port
    except ValueError:
        port = None
    want = (u.scheme.lower(), (u.hostname or "").lower(), port or transport.DEFAULT_PORTS.get(u.scheme.lower()))
    assert transport.origin(url) == want


def test_push_path_splits_its_urls_without_urllib():
    code = ("import sys\n"
            "from python_tools.shiko.registry import transport\n"
            "transport.split_url('http://127.0.0.1:5000/v2/a/manifests/t'); transport.origin('https://h:1/v2/')\n"
            "print('urllib.parse' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, check=True, text=True).stdout
    assert out.strip() == "False"
