"""Tests of python_tools/shiko/registry/ (the client, and the push and pull libraries and tools).

Parsing (references, auth files, challenges, Retry-After) is tested on data; the credential
helper protocol with a real helper executable; retries against a scripted HTTP server on
127.0.0.1 (resets, 5xx, 429 + Retry-After); everything else against a real docker-registry on
127.0.0.1: plain HTTP (HTTPS tried first), TLS with a test CA + htpasswd, and token auth.
"""

import base64
import hashlib
import http.server
import json
import os
import socket
import struct
import sys
import threading
import time

import pytest

from python_tools import pull as pull_tool
from python_tools.shiko import cli
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import CHUNK
from python_tools.shiko.oci import media_types, reference
from python_tools.shiko.registry import auth, errors, progress, pull, push, tokens, transport
from python_tools.shiko.registry.client import Client
from python_tools.tests import registry_fixtures as rf


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Sleeps(list):
    """A RetryPolicy sleep that records instead of waiting."""

    def __call__(self, secs):
        self.append(secs)


def fast_policy(attempts=4):
    return transport.RetryPolicy(attempts=attempts, base_delay=0.01, max_delay=0.05, jitter=0, sleep=Sleeps())


# --- References ---------------------------------------------------------------------------


@pytest.mark.parametrize("ref,want", [
    ("127.0.0.1:5000/a/b", ("127.0.0.1:5000", "a/b", None, None)),
    ("localhost/x:1.0", ("localhost", "x", "1.0", None)),
    ("registry.example/team/app:v1@sha256:" + "a" * 64,
     ("registry.example", "team/app", "v1", "sha256:" + "a" * 64)),
    ("debian", ("docker.io", "library/debian", None, None)),
    ("index.docker.io/foo/bar", ("docker.io", "foo/bar", None, None)),
    ("[::1]:5000/x", ("[::1]:5000", "x", None, None)),
])
def test_parse_reference(ref, want):
    r = reference.parse(ref)
    assert (r.registry, r.repository, r.tag, r.digest) == want


@pytest.mark.parametrize("ref", ["", "127.0.0.1:5000/A", "x@sha256:12", "host:5000/a:b:c", "a/b:-x", " a/b"])
def test_parse_reference_rejects(ref):
    with pytest.raises(ValueError):
        reference.parse(ref)


def test_loopback():
    assert transport.is_loopback("127.0.0.1:5000")
    assert transport.is_loopback("localhost:1")
    assert transport.is_loopback("[::1]:5000")
    assert not transport.is_loopback("registry.example:5000")
    assert not transport.is_loopback("10.0.0.1:5000")


# --- Credentials --------------------------------------------------------------------------


def write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def b64(s):
    return base64.b64encode(s.encode()).decode()


def test_auth_files_order(tmp_path):
    env = {"HOME": "/h", "REGISTRY_AUTH_FILE": "/a/auth.json", "DOCKER_CONFIG": "/d", "XDG_RUNTIME_DIR": "/run/u"}
    assert auth.auth_files(env) == ["/a/auth.json", "/d/config.json", "/run/u/containers/auth.json",
                                        "/h/.config/containers/auth.json"]
    assert auth.auth_files({"HOME": "/h"}) == ["/h/.config/containers/auth.json", "/h/.docker/config.json"]


def test_auths_entries(tmp_path):
    f = write(str(tmp_path / "c.json"), {"auths": {
        "https://index.docker.io/v1/": {"auth": b64("hub:hubpw")},
        "r.example:5000": {"username": "u", "password": "p"},
        "http://plain.example": {"auth": b64("pl:ain:colon")},
        "q.example": {"auth": b64("top:t")},
        "q.example/team": {"auth": b64("team:t")},
        "tok.example": {"identitytoken": "idtok"},
        "empty.example": {},
    }})
    env = {"HOME": str(tmp_path)}
    c = auth.find_credentials("docker.io", env=env, files=[f])
    assert (c.username, c.password) == ("hub", "hubpw")
    c = auth.find_credentials("r.example:5000", env=env, files=[f])
    assert (c.username, c.password) == ("u", "p")
    c = auth.find_credentials("plain.example", env=env, files=[f])
    assert (c.username, c.password) == ("pl", "ain:colon")
    # podman's namespaced keys: the longest match wins.
    assert auth.find_credentials("q.example", "team/app", env=env, files=[f]).username == "team"
    assert auth.find_credentials("q.example", "other/app", env=env, files=[f]).username == "top"
    assert auth.find_credentials("tok.example", env=env, files=[f]).identity_token == "idtok"
    assert auth.find_credentials("empty.example", env=env, files=[f]) is None
    assert auth.find_credentials("none.example", env=env, files=[f]) is None


def test_first_file_wins_and_env_files(tmp_path):
    a = write(str(tmp_path / "auth.json"), {"auths": {"r.example": {"auth": b64("podman:1")}}})
    d = write(str(tmp_path / "docker" / "config.json"), {"auths": {"r.example": {"auth": b64("docker:2")}}})
    env = {"HOME": str(tmp_path / "home"), "REGISTRY_AUTH_FILE": a, "DOCKER_CONFIG": os.path.dirname(d)}
    assert auth.find_credentials("r.example", env=env).username == "podman"
    del env["REGISTRY_AUTH_FILE"]
    assert auth.find_credentials("r.example", env=env).username == "docker"


def test_malformed_auth_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text("{not json")
    with pytest.raises(errors.AuthError, match="cannot read the auth file"):
        auth.find_credentials("r.example", env={}, files=[str(f)])
    write(str(f), {"auths": {"r.example": {"auth": b64("nocolon")}}})
    with pytest.raises(errors.AuthError, match="malformed `auth`"):
        auth.find_credentials("r.example", env={}, files=[str(f)])


def test_credential_repr_hides_secrets():
    c = auth.Credential(username="alice", password="hunter2", source="x")
    assert "hunter2" not in repr(c) and "hunter2" not in str(c) and "alice" not in repr(c)
    assert c.basic_header() == "Basic " + b64("alice:hunter2")


@pytest.fixture
def helper_env(tmp_path):
    bin_dir = str(tmp_path / "bin")
    log = str(tmp_path / "helper.log")
    rf.write_credential_helper(bin_dir, "shikotest", {
        "r.example:5000": ("helperuser", "helpersecret"),
        "tok.example": ("<token>", "refresh-token"),
        auth.DOCKER_HUB_AUTH_KEY: ("hubuser", "hubsecret"),
    }, log)
    env = {"HOME": str(tmp_path / "home"), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    return env, log


def test_credential_helper_protocol(tmp_path, helper_env):
    env, log = helper_env
    f = write(str(tmp_path / "c.json"), {
        "credHelpers": {"r.example:5000": "shikotest", "tok.example": "shikotest", "docker.io": "shikotest",
                        "missing.example": "shikotest"},
        # credHelpers win over auths entries.
        "auths": {"r.example:5000": {"auth": b64("fileuser:filepw")}},
    })
    c = auth.find_credentials("r.example:5000", env=env, files=[f])
    assert (c.username, c.password, c.source) == ("helperuser", "helpersecret", "docker-credential-shikotest")
    c = auth.find_credentials("tok.example", env=env, files=[f])
    assert c.identity_token == "refresh-token" and c.password is None
    c = auth.find_credentials("docker.io", env=env, files=[f])
    assert c.username == "hubuser"
    assert auth.find_credentials("missing.example", env=env, files=[f]) is None
    with open(log) as fh:
        calls = fh.read().splitlines()
    assert calls == ["get r.example:5000", "get tok.example", "get " + auth.DOCKER_HUB_AUTH_KEY,
                     "get missing.example"]


def test_creds_store_after_auths(tmp_path, helper_env):
    env, log = helper_env
    f = write(str(tmp_path / "c.json"), {"credsStore": "shikotest",
                                         "auths": {"file.example": {"auth": b64("f:pw")}, "r.example:5000": {}}})
    assert auth.find_credentials("file.example", env=env, files=[f]).username == "f"
    assert auth.find_credentials("r.example:5000", env=env, files=[f]).username == "helperuser"


def test_credential_helper_failures(tmp_path, helper_env):
    env, _ = helper_env
    f = write(str(tmp_path / "c.json"), {"credHelpers": {"x.example": "nosuchhelper"}})
    with pytest.raises(errors.AuthError, match="docker-credential-nosuchhelper .* not on PATH"):
        auth.find_credentials("x.example", env=env, files=[f])
    bad = tmp_path / "bin" / "docker-credential-broken"
    bad.write_text("#!/bin/sh\necho 'keychain locked'\nexit 3\n")
    bad.chmod(0o755)
    write(str(tmp_path / "c.json"), {"credHelpers": {"x.example": "broken"}})
    with pytest.raises(errors.AuthError, match=r"failed for x.example \(exit 3\): keychain locked"):
        auth.find_credentials("x.example", env=env, files=[f])


# --- Challenges and retry policy ----------------------------------------------------------


def test_parse_challenges():
    h = ('Bearer realm="https://auth.example/token",service="registry.example",'
         'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope"')
    assert tokens.parse_challenges(h) == [("bearer", {
        "realm": "https://auth.example/token", "service": "registry.example",
        "scope": "repository:a/b:pull,push repository:c:pull", "error": "insufficient_scope"})]
    assert tokens.parse_challenges('Basic realm="Registry Realm"') == [("basic", {"realm": "Registry Realm"})]
    assert tokens.parse_challenges('Basic realm="a \\"q\\"", Bearer realm="r",service=s') == [
        ("basic", {"realm": 'a "q"'}), ("bearer", {"realm": "r", "service": "s"})]
    assert tokens.parse_challenges("") == []


def test_retry_policy_backoff_and_retry_after():
    p = transport.RetryPolicy(attempts=5, base_delay=0.5, max_delay=3, jitter=0)
    assert [p.delay(i) for i in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert p.delay(1, "7") == 7.0
    now = time.time()
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 30))
    assert 25 <= p.delay(1, date) <= 31
    assert p.delay(2, "garbage") == 1.0  # unparsable: plain backoff
    with pytest.raises(ValueError, match="retry after 3600 s"):
        p.delay(1, "3600")
    assert transport.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    j = transport.RetryPolicy(base_delay=1, jitter=0.25)
    assert all(1.0 <= j.delay(1) <= 1.25 for _ in range(50))


class ScriptedServer(object):
    """A tiny HTTP server on 127.0.0.1: /v2/ answers 200; other requests follow a script of
    (status, headers) or "reset" entries, then 404. Records (method, path) of each request."""

    def __init__(self, script):
        self.script = list(script)
        self.seen = []
        self.ranges = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                if self.path == "/v2/":
                    step = (200, {})
                else:
                    outer.seen.append((self.command, self.path))
                    outer.ranges.append(self.headers.get("Content-Range"))
                    step = outer.script.pop(0) if outer.script else (404, {})
                if step == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    self.close_connection = True
                    return
                status, headers = step
                body = b'{"errors":[{"code":"X","message":"scripted"}]}' if status >= 400 else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.host = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_retries_resets_5xx_and_429():
    with ScriptedServer(["reset", (500, {}), (429, {"Retry-After": "2"}), (503, {}),
                         (200, {"Content-Length": "5"})]) as s:
        policy = fast_policy(attempts=6)
        c = Client(s.host, retry=policy, env={})
        assert c.blob_size("a", "sha256:" + "1" * 64, ["repository:a:pull"]) is not None
        # The reset hit the connection kept alive since the /v2/ check: that one is retried at
        # once on a new connection (as for any idle connection the server closed); the 500, 429
        # and 503 wait.
        assert c.retries == 3
        assert policy.sleep[1] == 2.0  # Retry-After honoured
        assert len(s.seen) == 5
        assert c.base_url().startswith("http://")  # loopback: HTTPS tried first, then HTTP


def test_retries_are_bounded():
    with ScriptedServer([(500, {})] * 10) as s:
        c = Client(s.host, retry=fast_policy(attempts=3), env={})
        with pytest.raises(errors.RegistryError) as e:
            c.blob_size("a", "sha256:" + "1" * 64, ["repository:a:pull"])
        msg = str(e.value)
        assert "HEAD blob sha256:111" in msg and s.host in msg and "HTTP 500" in msg
        assert "gave up after 3 attempts" in msg
        assert len(s.seen) == 3


def test_retry_after_too_long_fails_at_once():
    with ScriptedServer([(429, {"Retry-After": "86400"})]) as s:
        c = Client(s.host, retry=fast_policy(), env={})
        with pytest.raises(errors.RegistryError, match="HTTP 429.*retry after 86400 s"):
            c.blob_size("a", "sha256:" + "1" * 64, ["repository:a:pull"])


def test_chunked_upload_resumes_from_the_registry_offset(tmp_path):
    """A failed PATCH: ask the registry (GET the upload) where it stands, send from there."""
    data = os.urandom(250)
    p = tmp_path / "b"
    p.write_bytes(data)
    loc = {"Location": "/v2/a/blobs/uploads/u1"}
    with ScriptedServer([
        (202, loc),                                  # POST
        (202, dict(loc, Range="0-99")),              # PATCH 0-99
        (500, {}),                                   # PATCH 100-199 fails...
        (204, dict(loc, Range="0-149")),             # GET: the registry kept 150 bytes
        (202, dict(loc, Range="0-249")),             # PATCH 150-249
        (201, {"Docker-Content-Digest": sha(data)}),  # PUT ?digest=
    ]) as s:
        c = Client(s.host, retry=fast_policy(), env={})
        c.upload_blob("a", sha(data), str(p), tokens.push_scopes("a"), chunk_size=100)
        assert [m for m, _ in s.seen] == ["POST", "PATCH", "PATCH", "GET", "PATCH", "PUT"]
        assert [s.ranges[i] for i in (1, 2, 4)] == ["0-99", "100-199", "150-249"]
        assert "digest=" + sha(data).replace(":", "%3A") in s.seen[-1][1]


def test_client_errors_are_not_retried():
    with ScriptedServer([(400, {})]) as s:
        c = Client(s.host, retry=fast_policy(), env={})
        with pytest.raises(errors.RegistryError, match="HTTP 400"):
            c.put_manifest("a", "t", b"{}", media_types.OCI_MANIFEST, ["repository:a:pull,push"])
        assert len(s.seen) == 1


# --- Against a real registry ----------------------------------------------------------------


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory):
    with rf.LocalRegistry(str(tmp_path_factory.mktemp("plainreg"))) as reg:
        yield reg


@pytest.fixture
def blob_file(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    p = tmp_path / "blob"
    p.write_bytes(data)
    return str(p), sha(data), len(data)


def test_blob_roundtrip_monolithic_and_chunked(plain_registry, blob_file, tmp_path):
    path, digest, size = blob_file
    c = Client(plain_registry.host, env={})
    scopes = tokens.push_scopes("unit/a")
    assert c.blob_size("unit/a", digest, scopes) is None
    sent = []
    assert c.upload_blob("unit/a", digest, path, scopes, progress=sent.append) == size
    assert sum(sent) == size and max(sent) <= CHUNK
    assert c.blob_size("unit/a", digest, scopes) == size

    # Chunked (PATCH pieces) to another repository, then read back verified.
    assert c.upload_blob("unit/b", digest, path, tokens.push_scopes("unit/b"), chunk_size=1000000) == size
    out = str(tmp_path / "out")
    assert c.get_blob("unit/b", digest, out, [tokens.pull_scope("unit/b")], size=size) == size
    with open(out, "rb") as f, open(path, "rb") as g:
        assert f.read() == g.read()


def test_mount_from_another_repository(plain_registry, tmp_path):
    data = os.urandom(10000)
    p = tmp_path / "m"
    p.write_bytes(data)
    c = Client(plain_registry.host, env={})
    c.upload_blob("unit/src", sha(data), str(p), tokens.push_scopes("unit/src"))
    scopes = tokens.push_scopes("unit/dst", ["unit/src"])
    assert scopes == ["repository:unit/dst:pull,push", "repository:unit/src:pull"]
    assert c.mount_blob("unit/dst", sha(data), "unit/src", scopes)
    assert c.blob_size("unit/dst", sha(data), scopes) == len(data)
    # A blob the source doesn't have: the registry declines (202), nothing is mounted.
    assert not c.mount_blob("unit/dst", sha(b"absent"), "unit/src", scopes)


def test_manifests_and_tags(plain_registry, tmp_path):
    c = Client(plain_registry.host, env={})
    scopes = tokens.push_scopes("unit/m")
    cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    p = tmp_path / "cfg"
    p.write_bytes(cfg)
    c.upload_blob("unit/m", sha(cfg), str(p), scopes)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST,
                           "config": {"mediaType": media_types.OCI_CONFIG,
                                      "digest": sha(cfg), "size": len(cfg)}, "layers": []},
                          sort_keys=True).encode()
    d = c.put_manifest("unit/m", sha(manifest), manifest, media_types.OCI_MANIFEST, scopes)
    assert d == sha(manifest)
    assert c.put_manifest("unit/m", "v1", manifest, media_types.OCI_MANIFEST, scopes) == d
    body, media, digest = c.get_manifest("unit/m", "v1", scopes)
    assert (body, media, digest) == (manifest, media_types.OCI_MANIFEST, d)
    assert c.manifest_digest("unit/m", "v1", scopes) == d
    assert c.manifest_digest("unit/m", "nope", scopes) is None
    assert c.tags("unit/m", scopes) == ["v1"]


def test_corrupt_blob_in_registry_is_refused(plain_registry, tmp_path):
    data = os.urandom(50000)
    p = tmp_path / "c"
    p.write_bytes(data)
    c = Client(plain_registry.host, env={})
    c.upload_blob("unit/c", sha(data), str(p), tokens.push_scopes("unit/c"))
    stored = plain_registry.blob_data_path(sha(data))
    with open(stored, "r+b") as f:
        f.seek(100)
        f.write(b"\x00corrupt\x00")
    out = str(tmp_path / "out")
    with pytest.raises(errors.DigestMismatch, match="digest mismatch"):
        c.get_blob("unit/c", sha(data), out, [tokens.pull_scope("unit/c")], size=len(data))
    assert not os.path.exists(out) and not os.path.exists(out + ".part")


# --- TLS, htpasswd and token auth -----------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return rf.TLSFiles(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory, tls):
    d = str(tmp_path_factory.mktemp("basicreg"))
    htp = rf.htpasswd_file(os.path.join(d, "htpasswd"), {"alice": "correct horse"})
    with rf.LocalRegistry(d, http_config=tls.registry_http_config(), config=rf.htpasswd_config(htp)) as reg:
        yield reg


def _config_env(tmp_path, host, user, password):
    d = str(tmp_path / ("dc-" + user + hashlib.sha256(password.encode()).hexdigest()[:6]))
    rf.write_docker_config(d, auths={host: (user, password)})
    return {"HOME": str(tmp_path), "DOCKER_CONFIG": d}


def test_tls_basic_auth(basic_registry, tls, tmp_path):
    env = _config_env(tmp_path, basic_registry.host, "alice", "correct horse")
    c = Client(basic_registry.host, ca_file=tls.ca_cert, env=env)
    data = b"tls blob"
    p = tmp_path / "b"
    p.write_bytes(data)
    c.upload_blob("unit/tls", sha(data), str(p), tokens.push_scopes("unit/tls"))
    assert c.base_url() == "https://" + basic_registry.host
    assert c.blob_size("unit/tls", sha(data), tokens.push_scopes("unit/tls")) == len(data)


def test_tls_untrusted_without_ca(basic_registry, tmp_path):
    c = Client(basic_registry.host, env={"HOME": str(tmp_path)})
    with pytest.raises(errors.RegistryError, match="TLS certificate is not trusted.*--ca_file"):
        c.blob_size("unit/tls", sha(b"x"), tokens.push_scopes("unit/tls"))
    # --insecure: no verification (still TLS).
    c = Client(basic_registry.host, insecure=True,
                        env=_config_env(tmp_path, basic_registry.host, "alice", "correct horse"))
    assert c.blob_size("unit/tls", sha(b"never"), tokens.push_scopes("unit/tls")) is None
    assert c.base_url().startswith("https://")


def test_wrong_password_and_no_credentials(basic_registry, tls, tmp_path):
    env = _config_env(tmp_path, basic_registry.host, "alice", "wrong-password-123")
    c = Client(basic_registry.host, ca_file=tls.ca_cert, env=env)
    with pytest.raises(errors.AuthError) as e:
        c.blob_size("unit/tls", sha(b"x"), tokens.push_scopes("unit/tls"))
    msg = str(e.value)
    assert "HTTP 401" in msg and basic_registry.host in msg and "were refused" in msg
    assert "wrong-password-123" not in msg and b64("alice:wrong-password-123") not in msg
    c = Client(basic_registry.host, ca_file=tls.ca_cert, env={"HOME": str(tmp_path / "nohome")})
    with pytest.raises(errors.AuthError, match="no credentials for 127.0.0.1:[0-9]+ were found"):
        c.blob_size("unit/tls", sha(b"x"), tokens.push_scopes("unit/tls"))


def test_credential_helper_against_registry(basic_registry, tls, tmp_path):
    bin_dir = str(tmp_path / "bin")
    log = str(tmp_path / "helper.log")
    rf.write_credential_helper(bin_dir, "shikounit", {basic_registry.host: ("alice", "correct horse")}, log)
    d = str(tmp_path / "dc")
    rf.write_docker_config(d, cred_helpers={basic_registry.host: "shikounit"})
    env = {"HOME": str(tmp_path), "DOCKER_CONFIG": d, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    c = Client(basic_registry.host, ca_file=tls.ca_cert, env=env)
    assert c.blob_size("unit/helper", sha(b"y"), tokens.push_scopes("unit/helper")) is None
    with open(log) as f:
        assert f.read().splitlines() == ["get " + basic_registry.host]


@pytest.fixture(scope="module")
def token_setup(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tokenreg"))
    with rf.TokenServer(os.path.join(d, "token"), {"bob": "tokenpw"}) as ts:
        with rf.LocalRegistry(d, config=ts.registry_config()) as reg:
            yield reg, ts


def test_token_auth_scopes_and_mount(token_setup, tmp_path):
    reg, ts = token_setup
    env = _config_env(tmp_path, reg.host, "bob", "tokenpw")
    c = Client(reg.host, env=env)
    data = os.urandom(20000)
    p = tmp_path / "t"
    p.write_bytes(data)
    c.upload_blob("unit/tok-src", sha(data), str(p), tokens.push_scopes("unit/tok-src"))
    scopes = tokens.push_scopes("unit/tok-dst", ["unit/tok-src"])
    assert c.mount_blob("unit/tok-dst", sha(data), "unit/tok-src", scopes)
    asked = [sorted(s) for user, s, status in ts.requests if status == 200]
    assert ["repository:unit/tok-src:pull,push"] in asked
    assert ["repository:unit/tok-dst:pull,push", "repository:unit/tok-src:pull"] in asked
    # One token per scope set: the blob checks and the upload reuse it.
    assert len(asked) == 2


def test_token_auth_wrong_password(token_setup, tmp_path):
    reg, ts = token_setup
    env = _config_env(tmp_path, reg.host, "bob", "not-the-pw")
    c = Client(reg.host, env=env, retry=fast_policy())
    with pytest.raises(errors.AuthError) as e:
        c.blob_size("unit/x", sha(b"x"), tokens.push_scopes("unit/x"))
    msg = str(e.value)
    assert "token server" in msg and "HTTP 401" in msg and "not-the-pw" not in msg


# --- push and pull tools ------------------------------------------------------------------


def cj(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_layout(d, platforms=(("amd64", ""),), layer_data=None):
    """A small OCI layout: one image per platform sharing a layer; an index if several."""
    blobs = os.path.join(d, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)

    def put(data):
        with open(os.path.join(blobs, sha(data)[7:]), "wb") as f:
            f.write(data)
        return {"digest": sha(data), "size": len(data)}

    layer = put(layer_data or os.urandom(200000))
    layer["mediaType"] = media_types.OCI_LAYER
    descs = []
    for arch, variant in platforms:
        cfg = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}
        if variant:
            cfg["variant"] = variant
        c = put(cj(cfg))
        c["mediaType"] = media_types.OCI_CONFIG
        m = cj({"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST, "config": c, "layers": [layer]})
        md = put(m)
        md["mediaType"] = media_types.OCI_MANIFEST
        md["platform"] = dict({"os": "linux", "architecture": arch}, **({"variant": variant} if variant else {}))
        descs.append(md)
    if len(descs) == 1:
        top = descs[0]
    else:
        top = put(cj({"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": descs}))
        top["mediaType"] = media_types.OCI_INDEX
    with open(os.path.join(d, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(d, "index.json"), "wb") as f:
        f.write(cj({"schemaVersion": 2, "manifests": [top]}))
    return top, descs


def test_push_index_children_first_then_skip(plain_registry, tmp_path):
    top, children = make_layout(str(tmp_path / "l"), platforms=(("amd64", ""), ("arm64", "v8")))
    plan = push.read_plan(str(tmp_path / "l"), "//t:push")
    assert [m[0]["digest"] for m in plan.manifests] == [c["digest"] for c in children] + [top["digest"]]
    assert len(plan.blobs) == 3  # one shared layer, two configs
    env = {"HOME": str(tmp_path), "SHIKO_BLOB_SOURCES": str(tmp_path / "sources.json")}
    ref = reference.parse(plain_registry.host + "/unit/index")
    client = Client(plain_registry.host, env=env)
    digest, result = push.push(plan, ref, ["multi"], client, env=env)
    assert digest == top["digest"]
    assert (result.pushed, result.skipped, result.mounted) == (3, 0, 0)
    scopes = tokens.push_scopes("unit/index")
    for c in children:
        assert client.manifest_digest("unit/index", c["digest"], scopes) == c["digest"]
    assert client.manifest_digest("unit/index", "multi", scopes) == top["digest"]
    # Again: every blob is there, no byte is sent.
    digest2, again = push.push(plan, ref, ["multi"], Client(plain_registry.host, env=env), env=env)
    assert digest2 == digest and (again.pushed, again.skipped, again.bytes_sent) == (0, 3, 0)
    assert again.already and not result.already
    # A new tag beside one that resolves to the image: nothing but the new tag is PUT.
    _, tagged = push.push(plan, ref, ["multi", "other"], Client(plain_registry.host, env=env), env=env)
    assert (tagged.pushed, tagged.skipped, tagged.already) == (0, 3, True)
    assert client.manifest_digest("unit/index", "other", scopes) == top["digest"]
    # To another repository of the same registry: remembered blobs are mounted, not sent.
    ref2 = reference.parse(plain_registry.host + "/unit/index-copy")
    _, third = push.push(plan, ref2, [], Client(plain_registry.host, env=env), env=env)
    assert (third.pushed, third.mounted, third.bytes_sent) == (0, 3, 0)


@pytest.mark.parametrize("registry_says", ["this image", "no digest header", "another image", "a child missing"])
def test_repush_of_an_image_the_registry_has_is_one_head(tmp_path, registry_says):
    """A re-push HEADs the manifest under its tag first: when it resolves to this image (and an
    index's children are there), nothing else is asked or sent; any other answer (no
    Docker-Content-Digest, another digest, a child missing) gets the full push."""
    multi = registry_says == "a child missing"
    top, children = make_layout(str(tmp_path / "l"), platforms=(("amd64", ""), ("arm64", "v8")) if multi else (("amd64", ""),))
    plan = push.read_plan(str(tmp_path / "l"), "//t:push")

    def answer(seen):
        if seen.path == "/v2/":
            return rf.Answer(200)
        if seen.method == "HEAD" and "/manifests/" in seen.path:
            ref = seen.path.rsplit("/", 1)[1]
            digest = {"this image": top["digest"], "another image": "sha256:" + "0" * 64,
                      "a child missing": top["digest"]}.get(registry_says)
            if ref.startswith("sha256:"):
                return rf.Answer(404)  # the children, in the "a child missing" case
            return rf.Answer(200, {"Docker-Content-Digest": digest} if digest else {})
        if seen.method == "HEAD":  # blobs: all there
            return rf.Answer(200, {"Content-Length": "1"})
        if seen.method == "PUT" and "/manifests/" in seen.path:
            return rf.Answer(201)
        return rf.Answer(404)

    env = {"HOME": str(tmp_path), "SHIKO_BLOB_SOURCES": str(tmp_path / "sources.json")}
    with rf.FakeRegistry(answer) as reg:
        ref = reference.parse(reg.host + "/a")
        digest, result = push.push(plan, ref, ["t"], Client(reg.host, env={}, retry=fast_policy()), env=env)
        asked = [(r.method, r.path) for r in reg.requests if r.path != "/v2/"]
    assert digest == top["digest"]
    if registry_says == "this image":
        assert asked == [("HEAD", "/v2/a/manifests/t")]
        assert result.already and (result.pushed, result.skipped) == (0, len(plan.blobs))
    else:
        assert not result.already
        assert sorted(p for m, p in asked if m == "HEAD" and "/blobs/" in p) == sorted(
            "/v2/a/blobs/" + d for d in plan.blobs)
        puts = [p for m, p in asked if m == "PUT"]
        if multi:  # the tag already resolves to the index: only the missing children are PUT
            assert puts == ["/v2/a/manifests/" + c["digest"] for c in children]
        else:
            assert puts == ["/v2/a/manifests/t"]


def test_push_rejects_a_corrupt_layout(plain_registry, tmp_path):
    top, _ = make_layout(str(tmp_path / "l"))
    manifest = json.loads(open(os.path.join(str(tmp_path / "l"), "blobs", "sha256", top["digest"][7:])).read())
    layer = manifest["layers"][0]["digest"]
    path = os.path.join(str(tmp_path / "l"), "blobs", "sha256", layer[7:])
    with open(path, "r+b") as f:
        f.write(b"tampered")
    plan = push.read_plan(str(tmp_path / "l"), "//t:push")
    env = {"HOME": str(tmp_path), "SHIKO_BLOB_SOURCES": str(tmp_path / "sources.json")}
    client = Client(plain_registry.host, env=env)
    ref = reference.parse(plain_registry.host + "/unit/corrupt")
    with pytest.raises(errors.DigestMismatch, match="corrupt layout"):
        push.push(plan, ref, ["t"], client, env=env)
    assert client.manifest_digest("unit/corrupt", "t", tokens.push_scopes("unit/corrupt")) is None


def test_resolve_destination_errors():
    with pytest.raises(UserError, match="attribute '--repository'.*'127.0.0.1:5000/A'"):
        push.resolve_destination("//t:p", "127.0.0.1:5000/A", "", [], [], None)
    with pytest.raises(UserError, match="attribute '--tag': '-bad'"):
        push.resolve_destination("//t:p", "127.0.0.1:5000/a", "", ["-bad"], [], None)
    with pytest.raises(UserError, match="no repository to push to"):
        push.resolve_destination("//t:p", None, "", [], [], None)
    ref, tags = push.resolve_destination("//t:p", None, "r.example/a", [], ["x", "y", "x"], None)
    assert ref.name == "r.example/a" and tags == ["x", "y"]
    ref, tags = push.resolve_destination("//t:p", "r.example/b", "r.example/a", ["z"], ["x"], None)
    assert ref.name == "r.example/b" and tags == ["z"]


def test_live_progress_line():
    import io
    out = io.StringIO()
    p = progress.Progress(live=True, stream=out)
    p.total = 3
    p.begin("sha256:" + "ab" * 32, 5000000)
    p.add("sha256:" + "ab" * 32, 2000000)
    line = p._line()
    assert line.startswith("blobs 0/3  abababababab 2.0 MB/5.0 MB ") and line.endswith("/s"), line
    p.end("sha256:" + "ab" * 32)
    assert p._line().startswith("blobs 1/3")
    p.cancel.set()
    with pytest.raises(progress.Cancelled):
        p.add("sha256:" + "cd" * 32, 1)


def test_pull_plan_selects_platform(tmp_path):
    top, children = make_layout(str(tmp_path / "l"), platforms=(("amd64", ""), ("arm64", "v8")))
    layout = str(tmp_path / "l")
    p = pull.plan(layout, top["digest"], "linux/arm64")
    assert p["manifest"]["digest"] == children[1]["digest"]
    assert len(p["blobs"]) == 2
    assert pull.plan(layout, top["digest"], "linux/arm64/v8")["manifest"]["digest"] == children[1]["digest"]
    assert pull.plan(layout, top["digest"], "linux/amd64")["manifest"]["digest"] == children[0]["digest"]
    with pytest.raises(pull.PullError, match=r"no image for platform linux/s390x \(available: linux/amd64, linux/arm64/v8\)"):
        pull.plan(layout, top["digest"], "linux/s390x")
    os.unlink(os.path.join(layout, "blobs", "sha256", children[0]["digest"][7:]))
    assert pull.plan(layout, top["digest"], "linux/amd64") == {"need": [children[0]["digest"]]}
    assert pull.plan(layout, "sha256:" + "2" * 64, "linux/amd64") == {"need": ["sha256:" + "2" * 64]}


def test_pull_fetch_cli(plain_registry, tmp_path):
    top, children = make_layout(str(tmp_path / "l"), platforms=(("amd64", ""), ("arm64", "v8")))
    env = {"HOME": str(tmp_path), "SHIKO_BLOB_SOURCES": str(tmp_path / "sources.json")}
    plan = push.read_plan(str(tmp_path / "l"), "//t:push")
    push.push(plan, reference.parse(plain_registry.host + "/unit/pull"), ["v"],
              Client(plain_registry.host, env=env), env=env)
    out = str(tmp_path / "fetched")
    layer = [d for d, (desc, _) in plan.blobs.items() if desc["size"] == 200000][0]
    rc, text = cli.run_captured(pull_tool.COMMANDS, "pull", [
        "fetch", "--image", plain_registry.host + "/unit/pull", "--dir", out,
        "--manifest", top["digest"], "--blob", "%s:%d" % (layer, 200000)])
    assert (rc, text) == (0, "")
    assert sorted(os.listdir(out)) == sorted([top["digest"][7:], layer[7:]])
    # A wrong size is a failure, and nothing is kept.
    out2 = str(tmp_path / "fetched2")
    rc, text = cli.run_captured(pull_tool.COMMANDS, "pull", [
        "fetch", "--image", plain_registry.host + "/unit/pull", "--dir", out2,
        "--blob", "%s:%d" % (layer, 199999), "--retries", "1"])
    assert rc == 1 and os.listdir(out2) == []
    assert text.startswith("ERROR: registry %s: " % plain_registry.host) and text.count("\n") == 1, text



# --- Redirects: credentials only to the same origin, never HTTPS -> HTTP ----------------------


@pytest.mark.parametrize("a,b,same", [
    ("https://r.example/v2/", "https://r.example:443/x", True),
    ("https://R.Example/v2/", "https://r.example/v2/", True),
    ("http://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/a", True),
    ("https://r.example/v2/", "http://r.example/v2/", False),
    ("https://127.0.0.1:5000/v2/", "http://127.0.0.1:5000/v2/", False),
    ("https://r.example/v2/", "https://r.example:5000/v2/", False),
    ("https://r.example/v2/", "https://s3.example/blob", False),
])
def test_same_origin(a, b, same):
    assert transport.same_origin(a, b) is same


def _redirecting_registry(tls):
    """Basic auth over HTTPS; every manifest GET over HTTPS is redirected (307) to plain HTTP on
    the same host and port, where the manifest is served."""
    manifest = cj({"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST})

    def answer(seen):
        if seen.scheme == "https" and seen.path == "/v2/" and "authorization" not in seen.headers:
            return rf.Answer(401, {"WWW-Authenticate": 'Basic realm="fake"'})
        if seen.path == "/v2/":
            return rf.Answer(200)
        if seen.scheme == "https":
            where = "http://127.0.0.1:%d/elsewhere%s" % (srv.port, seen.path)
            return rf.Answer(307, {"Location": where})
        return rf.Answer(200, {"Content-Type": media_types.OCI_MANIFEST}, manifest)

    srv = rf.FakeRegistry(answer, tls=tls)
    return srv, manifest


def test_https_to_http_redirect_is_refused_and_gets_no_credentials(tls, tmp_path):
    srv, manifest = _redirecting_registry(tls)
    with srv:
        env = _config_env(tmp_path, srv.host, "alice", "s3cret")
        c = Client(srv.host, ca_file=tls.ca_cert, env=env, retry=fast_policy())
        try:
            c.get_manifest("a", "v1", [tokens.pull_scope("a")])
            msg = None
        except errors.RegistryError as e:
            msg = str(e)
        assert [r for r in srv.requests if r.scheme == "http" and "authorization" in r.headers] == []
        assert [r for r in srv.requests if r.scheme == "http"] == []
        assert msg and "redirect from HTTPS to plain HTTP" in msg, msg
        assert srv.host in msg and "--insecure" in msg, msg
        assert [r.path for r in srv.requests if "authorization" in r.headers] == ["/v2/a/manifests/v1"]

        # An explicitly insecure registry may redirect to plain HTTP: followed, without credentials.
        c = Client(srv.host, insecure=True, env=env, retry=fast_policy())
        del srv.requests[:]
        assert c.get_manifest("a", "v1", [tokens.pull_scope("a")])[0] == manifest
        plain = [r for r in srv.requests if r.scheme == "http"]
        assert [r.path for r in plain] == ["/elsewhere/v2/a/manifests/v1"]
        assert "authorization" not in plain[0].headers


def test_redirect_to_another_port_gets_no_credentials(tls, tmp_path):
    """Same host, same scheme, another port: another origin, no Authorization."""
    blob = b"blob bytes"

    def cdn(seen):
        return rf.Answer(200, {}, blob)

    with rf.FakeRegistry(cdn, tls=tls) as other:
        def answer(seen):
            if seen.path == "/v2/" and "authorization" not in seen.headers:
                return rf.Answer(401, {"WWW-Authenticate": 'Basic realm="fake"'})
            if seen.path == "/v2/":
                return rf.Answer(200)
            return rf.Answer(307, {"Location": "https://127.0.0.1:%d/cdn/blob" % other.port})

        with rf.FakeRegistry(answer, tls=tls) as srv:
            env = _config_env(tmp_path, srv.host, "alice", "s3cret")
            c = Client(srv.host, ca_file=tls.ca_cert, env=env, retry=fast_policy())
            out = str(tmp_path / "blob")
            assert c.get_blob("a", sha(blob), out, [tokens.pull_scope("a")], size=len(blob)) == len(blob)
            assert [r.path for r in other.requests] == ["/cdn/blob"]
            assert "authorization" not in other.requests[0].headers
            assert all("authorization" in r.headers for r in srv.requests[1:])


# --- Podman's per-repository credentials ------------------------------------------------------


def test_per_repository_credentials(basic_registry, tls, tmp_path):
    """auth.json keys `host/ns/repo`, `host/ns`, `host`: the most specific one wins, per repository
    of one client (cached per repository)."""
    host = basic_registry.host
    f = write(str(tmp_path / "auth.json"), {"auths": {
        host: {"auth": b64("alice:wrong-top-level")},
        host + "/unit": {"auth": b64("alice:correct horse")},
        host + "/unit/special": {"auth": b64("alice:wrong-special")},
    }})
    env = {"HOME": str(tmp_path / "home"), "REGISTRY_AUTH_FILE": f}
    c = Client(host, ca_file=tls.ca_cert, env=env, retry=fast_policy())
    with pytest.raises(errors.AuthError, match="HTTP 401.*were refused"):
        c.blob_size("other/app", sha(b"x"), tokens.push_scopes("other/app"))
    assert c.blob_size("unit/app", sha(b"x"), tokens.push_scopes("unit/app")) is None
    assert c.blob_size("unit/app", sha(b"x"), [tokens.pull_scope("unit/app")]) is None
    with pytest.raises(errors.AuthError, match="HTTP 401.*were refused"):
        c.blob_size("unit/special", sha(b"x"), [tokens.pull_scope("unit/special")])
    # A mount's scopes name the destination first: its credentials are used.
    assert c.blob_size("unit/dst", sha(b"x"), tokens.push_scopes("unit/dst", ["other/app"])) is None


def test_per_repository_credentials_are_looked_up_once(tmp_path):
    f = write(str(tmp_path / "auth.json"), {"auths": {"r.example/team": {"auth": b64("t:1")},
                                                      "r.example": {"auth": b64("r:2")}}})
    env = {"REGISTRY_AUTH_FILE": f, "HOME": "/nonexistent"}
    a = tokens.Authenticator("r.example", None, fast_policy(), env=env)
    assert a.credentials("team/app").username == "t"
    assert a.credentials("other/app").username == "r"
    assert a.credentials(None).username == "r"
    os.unlink(f)
    assert a.credentials("team/app").username == "t"  # cached per repository
    assert tokens.scope_repository(tokens.push_scopes("team/app", ["x/y"])) == "team/app"
    assert tokens.scope_repository(["registry:catalog:*"]) is None


# --- certs.d: CAs, client certificates (mutual TLS), malformed files --------------------------


@pytest.fixture(scope="module")
def mtls_registry(tmp_path_factory, tls):
    d = str(tmp_path_factory.mktemp("mtlsreg"))
    with rf.LocalRegistry(d, http_config=tls.registry_http_config(client_cas=[tls.ca_cert])) as reg:
        yield reg


def _certs_d(tmp_path, host, tls, pair=True, name="certs.d"):
    root = tmp_path / name
    hd = root / host
    hd.mkdir(parents=True)
    (hd / "ca.crt").write_bytes(open(tls.ca_cert, "rb").read())
    if pair:
        tls.client_pair(str(hd), "client")
    return str(root), hd


def test_certs_d_client_certificate(mtls_registry, tls, tmp_path):
    host = mtls_registry.host
    certs, _ = _certs_d(tmp_path, host, tls)
    env = {"HOME": str(tmp_path)}
    c = Client(host, env=env, certs_dirs=[str(tmp_path / "absent"), certs], retry=fast_policy())
    assert c.blob_size("unit/mtls", sha(b"x"), tokens.push_scopes("unit/mtls")) is None
    assert c.base_url() == "https://" + host
    # The same with --insecure (no server verification; the client certificate is still sent).
    c = Client(host, insecure=True, env={"HOME": str(tmp_path)}, certs_dirs=[certs], retry=fast_policy())
    assert c.blob_size("unit/mtls", sha(b"x"), tokens.push_scopes("unit/mtls")) is None

    # Without a client certificate the registry refuses the handshake: one line that says so.
    nocert, _ = _certs_d(tmp_path, host, tls, pair=False, name="nocert")
    c = Client(host, env={"HOME": str(tmp_path)}, certs_dirs=[nocert], retry=fast_policy(attempts=1))
    with pytest.raises(errors.RegistryError, match="client certificate") as e:
        c.blob_size("unit/mtls", sha(b"x"), tokens.push_scopes("unit/mtls"))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("files,problem", [
    ({"bad.crt": b"not a certificate\n"}, "cannot load the CA certificate {dir}/bad.crt"),
    ({"client.cert": None}, "client certificate {dir}/client.cert has no key {dir}/client.key"),
    ({"client.key": None}, "client key {dir}/client.key has no certificate {dir}/client.cert"),
    ({"client.cert": None, "client.key": b"garbage\n"},
     "cannot load the client certificate {dir}/client.cert with key {dir}/client.key"),
    ({"client.cert": None, "client.key": "encrypted"},
     "with key {dir}/client.key: the key is encrypted (a passphrase is not supported)"),
])
def test_certs_d_bad_files_are_named(tls, tmp_path, files, problem):
    host = "127.0.0.1:1"  # never reached: the TLS settings fail first
    certs, hd = _certs_d(tmp_path, host, tls, pair=False)
    cert, key = tls.client_pair(str(tmp_path / "pair"), "client")
    for name, data in files.items():
        if data is None:
            data = open(cert if name.endswith(".cert") else key, "rb").read()
        elif data == "encrypted":  # never prompts for the passphrase
            data = rf.openssl("pkey", "-in", key, "-aes256", "-passout", "pass:pw")
        (hd / name).write_bytes(data)
    for insecure in (False, True):
        c = Client(host, insecure=insecure, env={"HOME": str(tmp_path)}, certs_dirs=[certs],
                   retry=fast_policy())
        with pytest.raises(errors.RegistryError) as e:
            c.blob_size("a", sha(b"x"), [tokens.pull_scope("a")])
        msg = str(e.value)
        assert problem.format(dir=str(hd)) in msg and "\n" not in msg, msg


# --- Bounded response bodies -------------------------------------------------------------------


def _huge_body_registry(status, declare_length):
    """/v2/ answers 200; everything else `status` with a 256 MiB body (Content-Length or not)."""

    def answer(seen):
        if seen.path == "/v2/":
            return rf.Answer(200)
        headers = {"Content-Type": media_types.OCI_MANIFEST}
        if declare_length:
            headers["Content-Length"] = str(256 << 20)
        return rf.Answer(status, headers, rf.endless())

    return rf.FakeRegistry(answer)


# What the kernel may buffer between the two ends of a loopback connection, beyond what is read.
SOCKET_SLACK = 16 << 20


@pytest.mark.parametrize("declare_length", [False, True])
def test_huge_manifest_is_refused_after_a_bounded_read(declare_length):
    from python_tools.shiko.registry import client as client_mod
    with _huge_body_registry(200, declare_length) as srv:
        c = Client(srv.host, env={}, retry=fast_policy(attempts=1))
        start = time.monotonic()
        with pytest.raises(errors.RegistryError) as e:
            c.get_manifest("a", "v1", [tokens.pull_scope("a")])
        c.close()
        time.sleep(0.2)
        assert srv.body_bytes <= client_mod.MAX_MANIFEST_BYTES + SOCKET_SLACK, srv.body_bytes
        assert time.monotonic() - start < 20
        msg = str(e.value)
        assert "GET manifest v1" in msg and "larger than %d bytes" % client_mod.MAX_MANIFEST_BYTES in msg, msg
        assert srv.host in msg and "\n" not in msg


@pytest.mark.parametrize("status", [400, 500])
def test_huge_error_body_is_read_bounded(status):
    with _huge_body_registry(status, False) as srv:
        c = Client(srv.host, env={}, retry=fast_policy(attempts=2))
        with pytest.raises(errors.RegistryError) as e:
            c.put_manifest("a", "v1", b"{}", media_types.OCI_MANIFEST, tokens.push_scopes("a"))
        msg = str(e.value)
        assert "HTTP %d" % status in msg and "\n" not in msg and "\0" not in msg and len(msg) < 600, msg
        c.close()
        time.sleep(0.2)
        tries = 1 if status == 400 else 2
        assert srv.body_bytes <= tries * ((4 << 20) + SOCKET_SLACK), srv.body_bytes
        assert transport.MAX_BODY_BYTES == 4 << 20


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def test_scheme_probe_sends_no_https_request_to_a_plain_http_registry(tls):
    """Where plain HTTP is allowed (loopback), an unverified TLS handshake first tells a plain
    HTTP server (then no HTTPS request is made and the CA store is never loaded) from one that
    speaks TLS (HTTPS first, as before); a port where nothing listens cannot tell."""
    manifest = cj({"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST})

    def answer(seen):
        if seen.path == "/v2/":
            return rf.Answer(200)
        return rf.Answer(200, {"Content-Type": media_types.OCI_MANIFEST}, manifest)

    with rf.FakeRegistry(answer) as plain:
        assert transport.Connections(plain.host).speaks_tls(plain.host) is False
        c = Client(plain.host, env={}, retry=fast_policy())
        assert c.get_manifest("a", "v1", [tokens.pull_scope("a")])[0] == manifest
        assert c.session.connections._ssl is None
        assert [(r.scheme, r.path) for r in plain.requests] == [("http", "/v2/"), ("http", "/v2/a/manifests/v1")]
    with rf.FakeRegistry(answer, tls=tls) as both:
        assert transport.Connections(both.host).speaks_tls(both.host) is True
        c = Client(both.host, ca_file=tls.ca_cert, env={}, retry=fast_policy())
        assert c.get_manifest("a", "v1", [tokens.pull_scope("a")])[0] == manifest
        assert [(r.scheme, r.path) for r in both.requests] == [("https", "/v2/"), ("https", "/v2/a/manifests/v1")]
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    free = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    assert transport.Connections(free).speaks_tls(free) is None
