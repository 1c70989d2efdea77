"""//examples/python_app end to end: a real dockerd runs it, and its layers follow change rates.

All tests share ONE copy of the checkout with ONE output base (built once, module scope; one
test builds a second copy to compare with):
  - the image runs in a real dockerd: `--selftest` prints `python_app ok`; the server, started
    with host networking on a free port, answers /api/greeting (JSON made from the proto
    message), serves / with hashed asset names, and serves an asset gzip- (and br-) encoded
    when asked, identity otherwise;
  - layering: every non-directory path is in exactly one layer (base layers included); the
    protobuf wheel, the other wheels and the app are in their own layers, nothing under a
    legacy `external/`; the arm64 image holds aarch64 wheels;
  - the image does not depend on the sources' permission bits: a second copy with every
    python_app source `chmod +x` (as a remote worker materializes inputs) gives the same digest;
  - editing one app source line changes only the app layer (base, protobuf and deps layers keep
    their digests), changing the lock (absl-py 2.5.1 -> 2.3.1, fetched by pip with its hash)
    changes only the deps layer. Each edit is undone afterwards.
"""

import gzip
import io
import json
import os
import socket
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

import pytest

from checkout import copy_checkout, remove_tree
from conftest import Bazel

PKG = "examples/python_app"
IMAGE = "//examples/python_app:image"
INDEX = "//examples/python_app:index"
REF = "rules_shiko/python_app:latest"
# The lock change: absl-py 2.5.1 -> 2.3.1 (a real release; pip fetches it, checking this hash).
ABSL_OLD = ("absl-py==2.5.1 \\\n"
            "    --hash=sha256:721200f2f0e9960f2ca9dc3a2a706b201f5f75d812c158f059cbbe29eeafbdb8")
ABSL_NEW = ("absl-py==2.3.1 \\\n"
            "    --hash=sha256:eeecf07f0c2a93ace0772c92e596ace6d3d3996c042b2128459aaae2a76de11d")


class Workspace:
    """The copy of the checkout, its Bazel (own output base) and the image's outputs."""

    def __init__(self, root, output_base):
        self.root = root
        self.bazel = Bazel(root)
        self.startup = ["--output_base=" + output_base, "--max_idle_secs=900"]
        self.bazel_bin = None

    def build(self, *targets, groups="+tarball"):
        self.bazel("build", "--symlink_prefix=/", "--output_groups=" + groups, *targets,
                   startup=self.startup)
        if self.bazel_bin is None:
            self.bazel_bin = self.bazel.info("bazel-bin", startup=self.startup)

    def path(self, rel):
        return os.path.join(self.bazel_bin, rel)

    def layout(self, name="image"):
        return Layout(self.path(os.path.join(PKG, name)))

    def source(self, rel):
        return os.path.join(self.root, rel)


def _blob(layout, digest):
    algo, hexd = digest.split(":", 1)
    with open(os.path.join(layout, "blobs", algo, hexd), "rb") as f:
        return f.read()


class Layout:
    """An OCI layout on disk: manifest, config, layer blobs."""

    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "index.json")) as f:
            index = json.load(f)
        assert len(index["manifests"]) == 1, index
        self.manifest = json.loads(self.blob(index["manifests"][0]["digest"]))
        self.config = json.loads(self.blob(self.manifest["config"]["digest"]))
        self.layers = [l["digest"] for l in self.manifest["layers"]]
        self.manifest_digest = index["manifests"][0]["digest"]

    def blob(self, digest):
        return _blob(self.path, digest)

    def members(self, digest):
        """[(path, type)] of one layer: type is "dir", "file", "symlink" or "hardlink"."""
        out = []
        with tarfile.open(fileobj=io.BytesIO(self.blob(digest)), mode="r:*") as tar:
            for m in tar:
                kind = ("dir" if m.isdir() else "symlink" if m.issym() else
                        "hardlink" if m.islnk() else "file")
                out.append(("/" + m.name.rstrip("/"), kind))
        return out


@pytest.fixture(scope="module")
def ws(repo_root):
    work = tempfile.mkdtemp(prefix="shiko-pyapp-", dir="/tmp")
    w = Workspace(copy_checkout(repo_root, os.path.join(work, "rules_shiko")),
                  os.path.join(work, "ob"))
    try:
        w.build(IMAGE)
        yield w
    finally:
        w.bazel("shutdown", startup=w.startup, check=False, timeout=120)
        remove_tree(work)


@pytest.fixture(scope="module")
def loaded(ws, dockerd):
    """The image loaded into the session's dockerd (its tarball, `docker load -i`)."""
    out = dockerd.docker("load", "-i", ws.path(PKG + "/image.tar")).stdout
    assert "Loaded image: " + REF in out, out
    image_id = dockerd.docker("image", "inspect", "-f", "{{.Id}}", REF).stdout.strip()
    assert image_id == ws.layout().manifest["config"]["digest"], image_id
    return REF


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, headers=None, timeout=10):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()


def test_selftest_runs_in_dockerd(loaded, dockerd):
    res = dockerd.docker("run", "--rm", "--network", "none", loaded, "--selftest")
    assert res.stdout == "python_app ok\n", (res.stdout, res.stderr)
    # protobuf's abi3 wheel runs its C extension (upb) on the base's Python 3.11 (it needs the
    # base's libstdc++), not the pure-Python fallback.
    res = dockerd.docker("run", "--rm", "--network", "none", "--entrypoint", "/usr/bin/python3",
                         loaded, "-c", "from google.protobuf.internal import api_implementation"
                         " as a; print(a.Type())")
    assert res.stdout == "upb\n", (res.stdout, res.stderr)


def test_server_answers_with_host_networking(ws, loaded, dockerd):
    with open(ws.path(PKG + "/assets/manifest.json")) as f:
        assets = json.load(f)["assets"]
    port = _free_port()
    cid = dockerd.docker("run", "-d", "--network", "host", loaded, "--port=%d" % port,
                         "--host=127.0.0.1").stdout.strip()
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _, body = _get(base + "/healthz", timeout=2)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, socket.timeout):
                pass
            state = dockerd.docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip()
            if state != "true" or time.monotonic() > deadline:
                logs = dockerd.docker("logs", cid)
                pytest.fail("the server did not answer on port %d (running: %s)\n%s\n%s" % (
                    port, state, logs.stdout, logs.stderr), pytrace=False)
            time.sleep(0.1)

        status, headers, body = _get(base + "/api/greeting?name=Bazel")
        assert status == 200 and headers["content-type"] == "application/json", headers
        greeting = json.loads(body)
        assert greeting["name"] == "Bazel" and greeting["message"] == "Hello, Bazel!", greeting
        assert greeting["nameLength"] == 5 and greeting["service"] == "python_app", greeting
        assert greeting["servedAt"].endswith("Z"), greeting  # a Timestamp, as proto JSON

        status, _, page = _get(base + "/")
        css = assets["css/app.css"]
        assert ('href="/static/%s"' % css["path"]).encode() in page, page[:400]
        assert ("/static/" + assets["js/app.js"]["path"]).encode() in page

        with open(ws.path(PKG + "/assets/" + css["path"]), "rb") as f:
            css_bytes = f.read()
        url = base + "/static/" + css["path"]
        status, headers, body = _get(url, {"Accept-Encoding": "gzip"})
        assert headers.get("content-encoding") == "gzip", headers
        assert headers["content-type"] == "text/css; charset=utf-8", headers
        assert gzip.decompress(body) == css_bytes
        status, headers, body = _get(url, {"Accept-Encoding": "br;q=1.0, gzip;q=0.5"})
        assert headers.get("content-encoding") == "br", headers
        try:
            import brotli
        except ImportError:
            brotli = None
        if brotli is not None:  # the e2e venv has it (python_tools/requirements_lock.txt)
            assert brotli.decompress(body) == css_bytes
        status, headers, body = _get(url)
        assert "content-encoding" not in headers and body == css_bytes, headers
        status, headers, body = _get(url, {"Accept-Encoding": "gzip;q=0, identity"})
        assert "content-encoding" not in headers and body == css_bytes, headers
        with pytest.raises(urllib.error.HTTPError) as e:
            _get(base + "/static/css/app.css")  # logical names are not served, hashed ones are
        assert e.value.code == 404
    finally:
        dockerd.docker("rm", "-f", cid, timeout=60)


def _layer_names(layout, base_count):
    """Our layers, by role: [protobuf, deps, app] above `base_count` base layers."""
    ours = layout.layers[base_count:]
    assert len(ours) == 3, layout.layers
    return dict(zip(("protobuf", "deps", "app"), ours))


def _base_count(ws):
    """The base's layers, from its manifest (an input of the image's assembly; the base's own
    layout is not built for an image on it)."""
    with open(ws.path("examples/distroless/python3.manifest.json")) as f:
        return len(json.load(f)["layers"])


def test_each_path_in_exactly_one_layer(ws):
    layout = ws.layout()
    seen = {}
    for i, digest in enumerate(layout.layers):
        for path, kind in layout.members(digest):
            if kind == "dir":
                continue
            assert path not in seen, "%s is in layer %d and layer %d" % (path, seen[path], i)
            seen[path] = i
    roles = _layer_names(layout, _base_count(ws))
    content = {r: [p for p, k in layout.members(d) if k != "dir"] for r, d in roles.items()}
    assert content["protobuf"] and all(
        p.startswith("/app/external/python_app_pip/protobuf/site-packages/") for p in content["protobuf"])
    assert content["deps"] and all(
        p.startswith("/app/external/python_app_pip/absl_py/site-packages/") for p in content["deps"])
    assert "/app/examples/python_app/main.py" in content["app"]
    assert "/app/examples/python_app/greeting_pb2.py" in content["app"]
    assert "/app/examples/python_app/assets/manifest.json" in content["app"]
    assert all(p.startswith("/app/examples/python_app/") for p in content["app"])
    every = [p for ps in content.values() for p in ps]
    # Stable paths: no repository name from Bazel's naming (`_main`, `rules_shiko`, `~`, `+`),
    # so WORKSPACE and Bazel 7/8/9 give the same layers; one copy of each file.
    assert not [p for p in every if set(p.split("/")) & {"_main", "rules_shiko"} or "~" in p or "+" in p]
    assert not [p for p in every if p.count("/external/") > 1 or "/examples/external/" in p]
    assert not [p for p in every if p.endswith((".proto", ".pyc", ".whl"))]
    # The py_binary's launcher is not shipped: the base's Python runs main.py.
    assert "/app/examples/python_app/python_app" not in every
    assert sum(p.endswith("/google/protobuf/__init__.py") for p in every) == 1
    cfg = layout.config["config"]
    assert cfg["Entrypoint"] == ["/usr/bin/python3",
                                 "/app/examples/python_app/main.py"], cfg
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["PYTHONPATH"].split(":") == [
        "/app",
        "/app/external/python_app_pip/protobuf/site-packages",
        "/app/external/python_app_pip/absl_py/site-packages",
    ], env
    assert "RUNFILES_DIR" not in env


def test_index_arm64_image_holds_aarch64_wheels(ws):
    """One py_binary, built for linux/arm64 by :index's transition: the arm64 image's wheels
    are the aarch64 ones (protobuf's C extension is an aarch64 ELF), at their own repository's
    paths, on the arm64 base; the amd64 child is :image itself."""
    ws.build(INDEX, groups="+layout")
    root = ws.path(PKG + "/index")
    with open(os.path.join(root, "index.json")) as f:
        (top,) = json.load(f)["manifests"]
    index = json.loads(_blob(root, top["digest"]))
    by_arch = {m["platform"]["architecture"]: m for m in index["manifests"]}
    assert sorted(by_arch) == ["amd64", "arm64"] and by_arch["arm64"]["platform"]["variant"] == "v8"
    assert by_arch["amd64"]["digest"] == ws.layout().manifest_digest
    manifest = json.loads(_blob(root, by_arch["arm64"]["digest"]))
    config = json.loads(_blob(root, manifest["config"]["digest"]))
    assert config["architecture"] == "arm64" and config.get("variant") == "v8"
    env = dict(e.split("=", 1) for e in config["config"]["Env"])
    assert env["PYTHONPATH"].split(":") == [
        "/app",
        "/app/external/python_app_pip_arm64/protobuf/site-packages",
        "/app/external/python_app_pip_arm64/absl_py/site-packages",
    ], env
    protobuf = manifest["layers"][-3]["digest"]
    data = _blob(root, protobuf)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        so = [m for m in tar if m.name.endswith("_message.abi3.so")]
        assert len(so) == 1, "no protobuf C extension in the arm64 image"
        head = tar.extractfile(so[0]).read(20)
    # ELF, 64-bit, e_machine 183 (EM_AARCH64).
    assert head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[18:20], "little") == 183


def _modes(layout, digest):
    with tarfile.open(fileobj=io.BytesIO(layout.blob(digest)), mode="r:*") as tar:
        return {"/" + m.name.rstrip("/"): "%04o" % m.mode for m in tar if m.isfile()}


def test_inputs_exec_bits_do_not_change_the_image(ws, repo_root):
    """Under remote execution every input arrives 0555 (Bazel marks each REAPI input
    executable); locally a source keeps its checkout's bits. Layer modes must come from facts
    that are the same in both (the rule, the file's content): a second copy of the checkout
    whose python_app sources (main.py, server.py, the .proto, the static assets, ...) are all
    `chmod +x`, built in an output base of its own (so every layer action runs again: nothing
    is cached by content there), gives the image digest of the normal build."""
    work = tempfile.mkdtemp(prefix="shiko-pyapp-exec-", dir="/tmp")
    other = Workspace(copy_checkout(repo_root, os.path.join(work, "rules_shiko")),
                      os.path.join(work, "ob"))
    try:
        marked = []
        for d, _, names in os.walk(other.source(PKG)):
            for n in names:
                p = os.path.join(d, n)
                os.chmod(p, os.stat(p).st_mode | 0o111)
                marked.append(os.path.relpath(p, other.root))
        assert PKG + "/main.py" in marked and PKG + "/server.py" in marked, marked
        assert os.access(other.source(PKG + "/main.py"), os.X_OK)
        other.build(IMAGE, groups="+layout")
        mine, theirs = ws.layout(), other.layout()
        base_count = _base_count(ws)
        for role, a, b in zip(("protobuf", "deps", "app"), mine.layers[base_count:],
                              theirs.layers[base_count:]):
            if a != b:
                ma, mb = _modes(mine, a), _modes(theirs, b)
                diff = sorted((p, ma.get(p), mb.get(p)) for p in set(ma) | set(mb)
                              if ma.get(p) != mb.get(p))
                pytest.fail("the %s layer differs when the sources are executable; (path, "
                            "mode, mode with +x): %s" % (role, diff[:10]), pytrace=False)
        assert theirs.manifest_digest == mine.manifest_digest
        with open(other.path(PKG + "/image.digest")) as f:
            assert f.read().strip() == mine.manifest_digest
        modes = _modes(theirs, theirs.layers[-1])
        assert modes["/app/examples/python_app/main.py"] == "0644", modes
    finally:
        other.bazel("shutdown", startup=other.startup, check=False, timeout=120)
        remove_tree(work)


def _edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert text.count(old) == 1, "%s: expected one %r" % (path, old)
    with open(path, "w") as f:
        f.write(text.replace(old, new))
    return text


def _rebuild_after(ws, rel, old, new, inspect=None):
    """Layers before and after an edit of one source file (restored and rebuilt afterwards,
    so the other tests see the original image); inspect(layout) runs on the edited image."""
    before = ws.layout().layers
    path = ws.source(rel)
    original = _edit(path, old, new)
    try:
        ws.build(IMAGE, groups="+layout")
        layout = ws.layout()
        after = layout.layers
        if inspect is not None:
            inspect(layout)
    finally:
        with open(path, "w") as f:
            f.write(original)
    ws.build(IMAGE)
    assert ws.layout().layers == before, "restoring %s did not restore the image" % rel
    return before, after


def test_app_edit_changes_only_the_app_layer(ws):
    base_count = _base_count(ws)
    before, after = _rebuild_after(
        ws, PKG + "/server.py", 'MAX_NAME = 100\n', 'MAX_NAME = 120\n')
    assert len(before) == len(after) == base_count + 3
    assert before[:base_count] == after[:base_count], "base layers changed"
    roles = ("protobuf", "deps", "app")
    changed = [r for r, x, y in zip(roles, before[base_count:], after[base_count:]) if x != y]
    assert changed == ["app"], "changed layers: %s" % changed


def test_lock_change_changes_only_the_deps_layer(ws):
    base_count = _base_count(ws)
    seen = {}

    def inspect(layout):
        seen["deps"] = [p for p, _ in layout.members(layout.layers[base_count + 1])]

    before, after = _rebuild_after(ws, PKG + "/requirements_lock.txt", ABSL_OLD, ABSL_NEW,
                                   inspect)
    assert len(before) == len(after) == base_count + 3
    assert before[:base_count] == after[:base_count], "base layers changed"
    roles = ("protobuf", "deps", "app")
    changed = [r for r, x, y in zip(roles, before[base_count:], after[base_count:]) if x != y]
    assert changed == ["deps"], "changed layers: %s" % changed
    # The new deps layer holds the other absl-py.
    paths = seen["deps"]
    assert "/app/external/python_app_pip/absl_py/site-packages/absl_py-2.3.1.dist-info/METADATA" in paths
    assert not [p for p in paths if "absl_py-2.5.1" in p]
