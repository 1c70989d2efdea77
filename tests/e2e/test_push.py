"""`bazel run //examples/static_c:push` against real registries on 127.0.0.1.

- plain HTTP (HTTPS is tried first, as docker does for loopback): skopeo sees the same manifest
  digest; `skopeo copy` back to an OCI layout gives identical blobs; pushing again sends no
  blob byte (counted by a proxy between push and registry) and still prints the digest;
- TLS with a test CA and htpasswd basic auth from a config.json written here; the same with a
  `credHelpers` entry and a real docker-credential helper; with bearer tokens (the registry's
  token mode, tokens from a token server signing with openssl); wrong passwords fail with a
  clear 401 line and never show the secret;
- a fault proxy (resets mid-blob, 500s, 429 with Retry-After): the push completes with the
  right digest; with faults that never stop it fails with one clear line and the tag does not
  exist.
"""

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, run, tool
from fault_proxy import FaultProxy, Rule
import services

sys.path.insert(0, REPO_ROOT)
from python_tools.tests import registry_fixtures as rf  # noqa: E402

TARGET = "//examples/static_c:push"
SUMMARY_RE_FIELDS = ("blobs pushed", "skipped", "mounted", "bytes sent")


@pytest.fixture
def push_env(tmp_path):
    """An environment with no credentials of the machine's user and a private blob memory."""
    env = dict(os.environ)
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config-empty")
    env["SHIKO_BLOB_SOURCES"] = str(tmp_path / "blob_sources.json")
    env["REGISTRY_AUTH_FILE"] = str(tmp_path / "no-auth.json")
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def bazel_push(bazel, env, repository, *flags, check=True):
    # --no-attach: these tests count the image's own bytes; the SBOM and provenance referrers a
    # push attaches by default are tested in test_attest.py.
    res = bazel("run", TARGET, "--", "--repository", repository, "--no-attach", *flags, env=env, check=check)
    return res


def last_line(text):
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def summary(stderr):
    for line in reversed(stderr.splitlines()):
        if all(f in line for f in SUMMARY_RE_FIELDS):
            return line
    pytest.fail("no summary line in the push output:\n" + stderr[-3000:], pytrace=False)


def sent_bytes(stderr):
    line = summary(stderr)
    return int(line.split(" bytes sent")[0].rsplit(" ", 1)[1])


def image_blob_sizes(image):
    m = image.manifest()
    return sum(d["size"] for d in [m["config"]] + m["layers"])


def skopeo_inspect(ref, *flags):
    return json.loads(run([tool("skopeo"), "inspect"] + list(flags) + ["docker://" + ref]).stdout)


def test_push_http_roundtrip_and_repush(bazel, registry, static_c_image, push_env, tmp_path):
    digest = static_c_image.digest
    with FaultProxy(registry.port) as proxy:  # no rules: it only counts
        repo = proxy.host + "/e2e/push-http"
        res = bazel_push(bazel, push_env, repo, "--tag", "t1", "--tag", "t2")
        assert last_line(res.stdout) == "%s@%s" % (repo, digest)
        assert "2 blobs pushed, 0 skipped, 0 mounted" in summary(res.stderr)
        assert proxy.upload_bytes == image_blob_sizes(static_c_image)
        assert sent_bytes(res.stderr) == proxy.upload_bytes

        for tag in ("t1", "t2"):
            seen = skopeo_inspect("%s/e2e/push-http:%s" % (registry.host, tag), "--tls-verify=false")
            assert seen["Digest"] == digest

        # skopeo copies it back: the same blobs, byte for byte.
        copy = tmp_path / "copy"
        run([tool("skopeo"), "copy", "--src-tls-verify=false",
             "docker://%s/e2e/push-http:t1" % registry.host, "oci:%s:t1" % copy])
        copied = sorted(os.listdir(copy / "blobs" / "sha256"))
        ours = set(os.listdir(os.path.join(static_c_image.layout, "blobs", "sha256")))
        assert set(copied) <= ours and len(copied) == 3, (copied, ours)
        for name in copied:
            with open(copy / "blobs" / "sha256" / name, "rb") as a:
                assert a.read() == static_c_image.blob("sha256:" + name), name
        with open(copy / "index.json") as f:
            assert json.load(f)["manifests"][0]["digest"] == digest

        # Again: nothing to send, same digest.
        proxy.reset_counters()
        res = bazel_push(bazel, push_env, repo, "--tag", "t1")
        assert last_line(res.stdout) == "%s@%s" % (repo, digest)
        assert "0 blobs pushed, 2 skipped" in summary(res.stderr)
        assert "the registry already had this image" in summary(res.stderr)
        assert proxy.upload_bytes == 0 and sent_bytes(res.stderr) == 0
        # The tag resolves to this image: one HEAD of the manifest, no blob looked at, no PUT.
        api = [(m, p) for m, p, _ in proxy.requests if p != "/v2/"]
        assert api == [("HEAD", "/v2/e2e/push-http/manifests/t1")], proxy.requests


def test_push_default_repository_and_mount(bazel, registry, static_c_image, push_env):
    """The target's default tag is used without --tag; another repo mounts the blobs."""
    repo = registry.host + "/e2e/push-mount-a"
    res = bazel_push(bazel, push_env, repo)
    assert last_line(res.stdout) == "%s@%s" % (repo, static_c_image.digest)
    assert "tags: latest" in summary(res.stderr)
    assert skopeo_inspect(repo + ":latest", "--tls-verify=false")["Digest"] == static_c_image.digest
    other = registry.host + "/e2e/push-mount-b"
    res = bazel_push(bazel, push_env, other, "--tag", "m")
    assert "0 blobs pushed, 0 skipped, 2 mounted; 0 bytes sent" in summary(res.stderr)
    assert skopeo_inspect(other + ":m", "--tls-verify=false")["Digest"] == static_c_image.digest


# --- TLS and credentials ------------------------------------------------------------------------

USER, PASSWORD = "shiko", "pa55-word-not-in-output"


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return rf.TLSFiles(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory, tls_files):
    htp = rf.htpasswd_file(str(tmp_path_factory.mktemp("htpasswd") / "htpasswd"), {USER: PASSWORD})
    with services.Registry(http_config=tls_files.registry_http_config(), config=rf.htpasswd_config(htp)) as reg:
        yield reg


@pytest.fixture
def cert_dir(tmp_path, tls_files):
    d = tmp_path / "certs"
    d.mkdir()
    shutil.copy(tls_files.ca_cert, d / "ca.crt")
    return str(d)


def check_no_secret(res, *secrets):
    out = res.stdout + res.stderr
    for s in secrets:
        assert s not in out
        assert base64.b64encode(("%s:%s" % (USER, s)).encode()).decode() not in out


def test_push_tls_basic_auth_from_config_json(bazel, tls_registry, tls_files, static_c_image, push_env, cert_dir):
    rf.write_docker_config(push_env["DOCKER_CONFIG"], auths={tls_registry.host: (USER, PASSWORD)})
    repo = tls_registry.host + "/e2e/tls-basic"
    res = bazel_push(bazel, push_env, repo, "--tag", "v1", "--ca_file", tls_files.ca_cert)
    assert last_line(res.stdout) == "%s@%s" % (repo, static_c_image.digest)
    check_no_secret(res, PASSWORD)
    seen = skopeo_inspect(repo + ":v1", "--cert-dir", cert_dir, "--creds", "%s:%s" % (USER, PASSWORD))
    assert seen["Digest"] == static_c_image.digest
    res = bazel_push(bazel, push_env, repo, "--tag", "v1", "--ca_file", tls_files.ca_cert)
    assert last_line(res.stdout) == "%s@%s" % (repo, static_c_image.digest)
    assert sent_bytes(res.stderr) == 0


def test_push_tls_credential_helper(bazel, tls_registry, tls_files, static_c_image, push_env, cert_dir, tmp_path):
    log = str(tmp_path / "helper.log")
    bin_dir = str(tmp_path / "bin")
    rf.write_credential_helper(bin_dir, "shikoe2e", {tls_registry.host: (USER, PASSWORD)}, log)
    rf.write_docker_config(push_env["DOCKER_CONFIG"], cred_helpers={tls_registry.host: "shikoe2e"})
    push_env["PATH"] = bin_dir + os.pathsep + push_env.get("PATH", "")
    repo = tls_registry.host + "/e2e/tls-helper"
    res = bazel_push(bazel, push_env, repo, "--tag", "h", "--ca_file", tls_files.ca_cert)
    assert last_line(res.stdout) == "%s@%s" % (repo, static_c_image.digest)
    check_no_secret(res, PASSWORD)
    with open(log) as f:
        assert f.read().splitlines() == ["get " + tls_registry.host]
    seen = skopeo_inspect(repo + ":h", "--cert-dir", cert_dir, "--creds", "%s:%s" % (USER, PASSWORD))
    assert seen["Digest"] == static_c_image.digest


def test_push_tls_wrong_password(bazel, tls_registry, tls_files, push_env, cert_dir):
    wrong = "wr0ng-pa55-never-printed"
    rf.write_docker_config(push_env["DOCKER_CONFIG"], auths={tls_registry.host: (USER, wrong)})
    repo = tls_registry.host + "/e2e/tls-wrong"
    res = bazel_push(bazel, push_env, repo, "--tag", "x", "--ca_file", tls_files.ca_cert, check=False)
    assert res.returncode != 0
    line = last_line(res.stderr)
    assert line.startswith("ERROR: %s: push to %s failed: registry %s: " % (TARGET, repo, tls_registry.host)), line
    assert "HTTP 401 Unauthorized" in line and "were refused" in line, line
    assert "Traceback" not in res.stderr
    check_no_secret(res, wrong, PASSWORD)
    # Without the CA: one line saying the certificate isn't trusted.
    res = bazel_push(bazel, push_env, repo, "--tag", "x", check=False)
    assert res.returncode != 0 and "TLS certificate is not trusted" in last_line(res.stderr)


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    ts = rf.TokenServer(str(tmp_path_factory.mktemp("token")), {USER: PASSWORD})
    with ts:
        with services.Registry(config=ts.registry_config()) as reg:
            yield reg, ts


def test_push_bearer_token(bazel, token_registry, static_c_image, push_env):
    reg, ts = token_registry
    rf.write_docker_config(push_env["DOCKER_CONFIG"], auths={reg.host: (USER, PASSWORD)})
    repo = reg.host + "/e2e/token"
    res = bazel_push(bazel, push_env, repo, "--tag", "tok")
    assert last_line(res.stdout) == "%s@%s" % (repo, static_c_image.digest)
    check_no_secret(res, PASSWORD)
    granted = [scopes for user, scopes, status in ts.requests if status == 200 and user == USER]
    assert ["repository:e2e/token:pull,push"] in granted, ts.requests
    seen = skopeo_inspect(repo + ":tok", "--tls-verify=false", "--creds", "%s:%s" % (USER, PASSWORD))
    assert seen["Digest"] == static_c_image.digest
    res = bazel_push(bazel, push_env, repo, "--tag", "tok")
    assert sent_bytes(res.stderr) == 0 and last_line(res.stdout).endswith(static_c_image.digest)


def test_push_bearer_wrong_password(bazel, token_registry, push_env):
    reg, ts = token_registry
    wrong = "t0ken-wrong-secret"
    rf.write_docker_config(push_env["DOCKER_CONFIG"], auths={reg.host: (USER, wrong)})
    res = bazel_push(bazel, push_env, reg.host + "/e2e/token-wrong", "--tag", "x", check=False)
    assert res.returncode != 0
    line = last_line(res.stderr)
    assert "token server" in line and "HTTP 401" in line and "wrong username or password" in line, line
    check_no_secret(res, wrong, PASSWORD)


# --- Faults -------------------------------------------------------------------------------------


def test_push_through_faults(bazel, registry, static_c_image, push_env):
    layer_size = static_c_image.manifest()["layers"][0]["size"]
    assert layer_size > 200000, "the example's layer is expected to be big enough to cut in half"
    with FaultProxy(registry.port) as proxy:
        rules = [
            Rule(method="HEAD", path=r"/blobs/sha256:", action="status", status=429, retry_after="1", times=1),
            Rule(method="PUT", path=r"/blobs/uploads/", action="reset", after_bytes=layer_size // 2,
                 min_length=200000, times=1),
            Rule(method="POST", path=r"/blobs/uploads/", action="status", status=500, times=1),
            Rule(method="PUT", path=r"/manifests/", action="status", status=503, times=2),
        ]
        proxy.set_rules(rules)
        repo = proxy.host + "/e2e/faults"
        res = bazel_push(bazel, push_env, repo, "--tag", "f", "--retry_delay", "0.1")
        assert last_line(res.stdout) == "%s@%s" % (repo, static_c_image.digest)
        assert [r.hits for r in rules] == [1, 1, 1, 2], proxy.requests
        assert "retries" in summary(res.stderr)
        # The reset cut the layer mid-way: it was sent once and a half.
        assert proxy.upload_bytes >= image_blob_sizes(static_c_image) + layer_size // 2
    seen = skopeo_inspect(registry.host + "/e2e/faults:f", "--tls-verify=false")
    assert seen["Digest"] == static_c_image.digest


def test_chunked_push_resumes_after_faults(bazel, registry, static_c_image, push_env):
    """--chunk_size: PATCH pieces; a reset mid-piece and a 502 are survived."""
    with FaultProxy(registry.port) as proxy:
        rules = [
            Rule(method="PATCH", path=r"/blobs/uploads/", action="reset", after_bytes=50000, times=1),
            Rule(method="PATCH", path=r"/blobs/uploads/", action="status", status=502, times=1),
        ]
        proxy.set_rules(rules)
        repo = proxy.host + "/e2e/chunked"
        res = bazel_push(bazel, push_env, repo, "--tag", "c", "--chunk_size", "100000", "--retry_delay", "0.05")
        assert last_line(res.stdout) == "%s@%s" % (repo, static_c_image.digest)
        assert [r.hits for r in rules] == [1, 1]
        patches = [r for r in proxy.requests if r[0] == "PATCH"]
        assert len(patches) >= 5, patches  # 367 KB in 100 KB pieces, plus the failed ones
        # After each failed piece the client asked the registry where the upload stands (it
        # resumes from there, or restarts when the registry dropped the session).
        assert [r for r in proxy.requests if r[0] == "GET" and "/blobs/uploads/" in r[1]], proxy.requests
    assert skopeo_inspect(registry.host + "/e2e/chunked:c", "--tls-verify=false")["Digest"] == static_c_image.digest


def test_push_fails_cleanly_when_faults_never_stop(bazel, registry, static_c_image, push_env):
    with FaultProxy(registry.port) as proxy:
        proxy.set_rules([Rule(method="PUT", path=r"/blobs/uploads/", action="status", status=500, times=None)])
        repo = proxy.host + "/e2e/faults-forever"
        res = bazel_push(bazel, push_env, repo, "--tag", "never", "--retries", "3", "--retry_delay", "0.05",
                         check=False)
        assert res.returncode == 1, res.stderr[-2000:]
        line = last_line(res.stderr)
        assert line.startswith("ERROR: %s: push to %s failed: registry %s: upload blob sha256:"
                               % (TARGET, repo, proxy.host)), line
        assert "HTTP 500 Internal Server Error" in line, line
        assert "Traceback" not in res.stderr
        assert [line for line in res.stderr.splitlines() if line.startswith("ERROR")] == [line]
        assert res.stdout.strip() == ""  # no digest line: nothing was pushed
        assert not [r for r in proxy.requests if r[0] == "PUT" and "/manifests/" in r[1]], "a manifest was sent"
    # The registry has no such tag (nor any manifest in that repository).
    p = subprocess.run([tool("skopeo"), "inspect", "--tls-verify=false",
                        "docker://%s/e2e/faults-forever:never" % registry.host],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode != 0 and ("manifest unknown" in p.stderr or "not found" in p.stderr.lower()), p.stderr


# --- Tags, flags -------------------------------------------------------------------------------


def test_push_tags_from_attribute_and_file(bazel, registry, push_env):
    repo = registry.host + "/e2e/tags-file"
    res = bazel("run", "//tests/push:push_tags_file", "--", "--repository", repo, env=push_env)
    digest = last_line(res.stdout).split("@", 1)[1]
    with open(os.path.join(bazel.info("bazel-bin"), "tests", "push", "image.digest")) as f:
        assert digest == f.read().strip()
    assert "tags: from-attr, from-file-1, from-file-2" in summary(res.stderr)
    for tag in ("from-attr", "from-file-1", "from-file-2"):
        assert skopeo_inspect("%s:%s" % (repo, tag), "--tls-verify=false")["Digest"] == digest


def test_push_bad_flags_are_one_line(bazel, registry, push_env):
    res = bazel_push(bazel, push_env, registry.host + "/e2e/Bad", check=False)
    assert res.returncode == 1
    assert last_line(res.stderr) == (
        "ERROR: %s: attribute '--repository': '%s/e2e/Bad': repository 'e2e/Bad' is not valid "
        "(lowercase components [a-z0-9._-] separated by /) (expected REGISTRY/REPO, e.g. 127.0.0.1:5000/app)"
        % (TARGET, registry.host))
    res = bazel_push(bazel, push_env, registry.host + "/e2e/ok", "--tag", "bad:tag", check=False)
    assert res.returncode == 1
    assert last_line(res.stderr) == ("ERROR: %s: attribute '--tag': 'bad:tag': not a valid tag "
                                     "([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})" % TARGET)
