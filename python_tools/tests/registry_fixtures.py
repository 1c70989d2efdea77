"""Real registry setups for the registry tests (unit tests here, and tests/e2e/test_push.py).

Everything is real and local: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1,
certificates made by the `openssl` CLI at run time, bcrypt htpasswd files from `htpasswd -Bbn`,
and a token server (the registry's `auth: token` mode) that checks Basic credentials and signs
RS256 JWTs with `openssl dgst`, which the registry verifies against the certificate it is given.
Docker config files and `docker-credential-*` helper executables are written as users have them.
Standard library only. Missing tools raise FixtureError naming the Debian package.
"""

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

DOCKER_REGISTRY = "/usr/bin/docker-registry"
SERVICE = "shiko-registry"
ISSUER = "shiko-test-issuer"


class FixtureError(RuntimeError):
    pass


def _need(path, pkg):
    exe = path if os.path.isabs(path) else shutil.which(path)
    if not exe or not os.access(exe, os.X_OK):
        raise FixtureError("%s is not installed: apt-get install -y %s" % (path, pkg))
    return exe


def _run(argv, input=None):
    res = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if res.returncode != 0:
        raise FixtureError("%s failed (exit %d): %s" % (" ".join(argv), res.returncode,
                                                        res.stderr.decode(errors="replace")[-2000:]))
    return res.stdout


def openssl(*args, input=None):
    return _run([_need("/usr/bin/openssl", "openssl")] + [str(a) for a in args], input=input)


class TLSFiles(object):
    """A test CA and a server certificate for 127.0.0.1/localhost signed by it."""

    def __init__(self, directory):
        os.makedirs(directory, exist_ok=True)
        self.dir = directory
        self.ca_cert = os.path.join(directory, "ca.crt")
        self.ca_key = os.path.join(directory, "ca.key")
        self.cert = os.path.join(directory, "server.crt")
        self.key = os.path.join(directory, "server.key")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca_cert,
                "-days", "2", "-subj", "/CN=rules_shiko test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        csr = os.path.join(directory, "server.csr")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", csr,
                "-subj", "/CN=127.0.0.1")
        ext = os.path.join(directory, "server.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=serverAuth\n"
                    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                    "subjectKeyIdentifier=hash\n"
                    "authorityKeyIdentifier=keyid,issuer\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
                "-out", self.cert, "-days", "2", "-extfile", ext)

    def client_pair(self, directory, name="client"):
        """A client certificate (extendedKeyUsage clientAuth) signed by the CA: (cert, key) paths,
        named as docker's certs.d wants them: `<name>.cert` and `<name>.key` in directory."""
        os.makedirs(directory, exist_ok=True)
        cert = os.path.join(directory, name + ".cert")
        key = os.path.join(directory, name + ".key")
        csr = os.path.join(self.dir, name + ".csr")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\n"
                    "keyUsage=critical,digitalSignature,keyEncipherment\n"
                    "extendedKeyUsage=clientAuth\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key, "-CAcreateserial",
                "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key

    def registry_http_config(self, client_cas=()):
        """YAML lines under `http:` of a registry config; client_cas: require a client
        certificate signed by one of these CAs (mutual TLS)."""
        out = "  tls:\n    certificate: %s\n    key: %s\n" % (self.cert, self.key)
        if client_cas:
            out += "    clientcas:\n" + "".join("      - %s\n" % c for c in client_cas)
        return out

    def server_context(self):
        """An ssl.SSLContext serving the server certificate (for FakeRegistry)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def htpasswd_file(path, users):
    """Writes a bcrypt htpasswd file for {user: password}."""
    exe = _need("/usr/bin/htpasswd", "apache2-utils")
    lines = []
    for user, password in sorted(users.items()):
        lines.append(_run([exe, "-Bbn", user, password]).decode().strip())
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def htpasswd_config(path):
    return "auth:\n  htpasswd:\n    realm: shiko-test\n    path: %s\n" % path


def _b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def libtrust_key_id(der_public_key):
    """The key ID docker/libtrust (and so the registry) uses: base32 of sha256(SPKI)[:30], 4-grouped."""
    s = base64.b32encode(hashlib.sha256(der_public_key).digest()[:30]).decode("ascii").rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


class TokenServer(object):
    """The registry's token endpoint: Basic credentials in, signed JWT for the asked scopes out.

    requests: [(user or None, [scopes], status)] of every token request it answered.
    """

    def __init__(self, directory, users):
        os.makedirs(directory, exist_ok=True)
        self.users = dict(users)
        self.key = os.path.join(directory, "token.key")
        self.cert = os.path.join(directory, "token.crt")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", self.cert,
                "-days", "2", "-subj", "/CN=rules_shiko token issuer")
        der = openssl("pkey", "-in", self.key, "-pubout", "-outform", "DER")
        self.kid = libtrust_key_id(der)
        self.requests = []
        self._server = None
        self._thread = None
        self.port = None

    @property
    def realm(self):
        return "http://127.0.0.1:%d/token" % self.port

    def registry_config(self):
        return ("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n"
                % (self.realm, SERVICE, ISSUER, self.cert))

    def sign(self, claims):
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = "%s.%s" % (_b64url(json.dumps(header).encode()), _b64url(json.dumps(claims).encode()))
        sig = openssl("dgst", "-sha256", "-sign", self.key, input=signing_input.encode("ascii"))
        return signing_input + "." + _b64url(sig)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                u = urllib.parse.urlsplit(self.path)
                q = urllib.parse.parse_qs(u.query)
                scopes = q.get("scope", [])
                user = None
                ok = False
                auth = self.headers.get("Authorization") or ""
                if auth.startswith("Basic "):
                    try:
                        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                        ok = outer.users.get(user) == password
                    except ValueError:
                        ok = False
                if u.path != "/token" or not ok:
                    outer.requests.append((user, scopes, 401))
                    body = b'{"details":"invalid credentials"}'
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("WWW-Authenticate", 'Basic realm="shiko-token"')
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                access = []
                for s in scopes:
                    parts = s.split(":")
                    if len(parts) >= 3 and parts[0] == "repository":
                        access.append({"type": "repository", "name": ":".join(parts[1:-1]),
                                       "actions": parts[-1].split(",")})
                now = int(time.time())
                token = outer.sign({"iss": ISSUER, "sub": user, "aud": q.get("service", [SERVICE])[0],
                                    "exp": now + 300, "nbf": now - 10, "iat": now,
                                    "jti": hashlib.sha256(os.urandom(16)).hexdigest()[:16], "access": access})
                outer.requests.append((user, scopes, 200))
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


def write_docker_config(directory, auths=None, cred_helpers=None, creds_store=None):
    """A docker config.json in directory (use it as DOCKER_CONFIG). auths: {host: (user, password)}."""
    os.makedirs(directory, exist_ok=True)
    data = {}
    if auths:
        data["auths"] = {host: {"auth": base64.b64encode(("%s:%s" % up).encode()).decode()}
                         for host, up in auths.items()}
    if cred_helpers:
        data["credHelpers"] = dict(cred_helpers)
    if creds_store:
        data["credsStore"] = creds_store
    path = os.path.join(directory, "config.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def write_credential_helper(bin_dir, name, secrets, log_path):
    """An executable `docker-credential-<name>` speaking docker's protocol for `get`.

    secrets: {server: (username, secret)}; every call appends "get <server>" to log_path.
    """
    os.makedirs(bin_dir, exist_ok=True)
    path = os.path.join(bin_dir, "docker-credential-" + name)
    with open(path, "w") as f:
        f.write("#!%s\n" % sys.executable)
        f.write("import json, sys\n"
                "SECRETS = %r\n"
                "op = sys.argv[1] if len(sys.argv) > 1 else ''\n"
                "server = sys.stdin.read().strip()\n"
                "with open(%r, 'a') as log:\n"
                "    log.write('%%s %%s\\n' %% (op, server))\n"
                "if op != 'get':\n"
                "    sys.exit(1)\n"
                "if server not in SECRETS:\n"
                "    print('credentials not found in native keychain')\n"
                "    sys.exit(1)\n"
                "user, secret = SECRETS[server]\n"
                "print(json.dumps({'ServerURL': server, 'Username': user, 'Secret': secret}))\n"
                % ({k: list(v) for k, v in secrets.items()}, log_path))
    os.chmod(path, 0o755)
    return path


class LocalRegistry(object):
    """docker-registry on 127.0.0.1:<free port> in directory, stopped by its PID."""

    def __init__(self, directory, http_config="", config=""):
        self.dir = directory
        self.http_config = http_config
        self.config = config
        self.proc = None
        self.port = None
        self.log_path = os.path.join(directory, "registry.log")

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    @property
    def storage(self):
        return os.path.join(self.dir, "storage")

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        exe = _need(DOCKER_REGISTRY, "docker-registry")
        os.makedirs(self.storage, exist_ok=True)
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
                    "  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n  secret: shiko-unit-secret\n%s%s"
                    % (self.storage, self.http_config, self.config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([exe, "serve", cfg], stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with open(self.log_path, "rb") as f:
                m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return self
            time.sleep(0.05)
        with open(self.log_path, "rb") as f:
            tail = f.read()[-3000:].decode(errors="replace")
        raise FixtureError("docker-registry did not start:\n" + tail)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def blob_data_path(self, digest):
        hexd = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")


class Answer(object):
    """What FakeRegistry sends: a status, headers, and a body (bytes, or an iterable of byte
    chunks streamed until it ends or the client goes away; without a Content-Length header the
    body ends when the connection closes)."""

    def __init__(self, status, headers=None, body=b""):
        self.status = status
        self.headers = dict(headers or {})
        self.body = body


class Seen(object):
    """One request FakeRegistry answered."""

    def __init__(self, scheme, method, path, headers):
        self.scheme = scheme
        self.method = method
        self.path = path
        self.headers = headers  # {lowercase name: value}

    def __repr__(self):
        auth = "authorization" in self.headers
        return "Seen(%s %s %s, auth=%s)" % (self.scheme, self.method, self.path, auth)


class FakeRegistry(object):
    """A scripted HTTP server on 127.0.0.1: `answer(seen) -> Answer` for every request.

    With tls (a TLSFiles), one port speaks both TLS and plain HTTP (the first byte a client sends
    tells which), as a host reachable at https://host:port and http://host:port is.
    requests: every Seen; body_bytes: body bytes written in all (what a client made it send).
    """

    def __init__(self, answer, tls=None):
        self.answer = answer
        self.requests = []
        self.body_bytes = 0
        self._lock = threading.Lock()
        outer = self
        context = tls.server_context() if tls is not None else None

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
                seen = Seen(scheme, self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                with outer._lock:
                    outer.requests.append(seen)
                a = outer.answer(seen)
                self.send_response(a.status)
                for k, v in a.headers.items():
                    self.send_header(k, v)
                body = a.body
                if isinstance(body, bytes):
                    if "Content-Length" not in a.headers:
                        self.send_header("Content-Length", str(len(body)))
                    body = [body]
                if "Content-Length" not in a.headers and not isinstance(a.body, bytes):
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    for chunk in body:
                        self.wfile.write(chunk)
                        with outer._lock:
                            outer.body_bytes += len(chunk)
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
                    self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _answer

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                if context is not None:
                    sock.settimeout(10)
                    try:
                        first = sock.recv(1, socket.MSG_PEEK)
                        if first == b"\x16":  # a TLS handshake record
                            sock = context.wrap_socket(sock, server_side=True)
                    except (OSError, ssl.SSLError):
                        sock.close()
                        raise
                return sock, addr

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.host = "127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        return False


def endless(chunk_size=1 << 16, total=256 << 20):
    """An iterable of `total` zero bytes in chunks: a body too large to hold in memory."""
    chunk = b"\0" * chunk_size
    for _ in range(total // chunk_size):
        yield chunk
