"""A Debian lock survives the archive moving on: snapshot archives, the repository cache, --distdir.

One temporary workspace (WORKSPACE mode, `rules_shiko_dependencies()`, a copy of the checkout)
against a loopback archive served by Python's http.server on 127.0.0.1:
- `mirror/`: the "current" mirror, signed by a key made at test time. It has alpha 1.0-2 (a
  point release replaced 1.0-1, which the mirror dropped) and beta 1.0-1.
- `snapshot/debian/<T>/`: the same archive in snapshot layout as it was at T (alpha 1.0-1).

`bazel run //:lock.update` (deb_lock with `snapshots` and the test keyring) resolves against the
snapshot and records T; `@debs` (deb_repository with the mirror in `archives` and the same
`snapshots`) then builds although the mirror no longer has alpha 1.0-1: alpha comes from the
snapshot, beta from the mirror. A mirror serving other bytes at the locked path is passed over
for the snapshot's locked bytes; a version gone from every source is one line naming the package,
the version, every URL tried and the fixes; a malformed lock snapshot or `snapshots` entry is
one line naming the attribute and the value. With the server stopped, a new output base builds
`@debs` from the repository cache, and from `--distdir` alone.
The lock pins each package's control.tar and data.tar decompressed (`control_sha256`,
`data_sha256`, checked here with ar and xz): `@debs` keeps those plain tars in the repository
cache instead of the .debs (a new output base copies them from there, and the deb action reads
them), an older lock without the digests gives the same tar from the .debs, and a wrong digest
is one line naming the package and both digests.
"""

import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading

import pytest

from checkout import copy_checkout, remove_tree
from conftest import REPO_ROOT

sys.path.insert(0, REPO_ROOT)
from python_tools.tests import debian_fixtures as fx  # noqa: E402

T = "20240101T000000Z"


class _Logged(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        return super().do_GET()


class _Server:
    """An HTTP server on 127.0.0.1 serving a directory, recording request paths."""

    def __init__(self, root):
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Logged, directory=root))
        self.server.requests = []
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.running = True

    @property
    def requests(self):
        return self.server.requests

    def close(self):
        if self.running:
            self.server.shutdown()
            self.server.server_close()
            self.thread.join(30)
            self.running = False


_WORKSPACE = """workspace(name = "shiko_deb_snapshot_test")

local_repository(name = "rules_shiko", path = "{shiko}")

load("@rules_shiko//rules:repositories.bzl", "deb_repository", "rules_shiko_dependencies")

rules_shiko_dependencies()

deb_repository(
    name = "debs",
    lock = "//:packages.lock.json",
    archives = {{"*": "{mirror}"}},
    snapshots = ["{snapshot}"],
    update_target = "//:lock.update",
)
"""

_BUILD = """load("@rules_shiko//rules:defs.bzl", "deb_layer", "deb_lock")

exports_files(["packages.lock.json"])

deb_layer(
    name = "layer",
    architecture = "amd64",
    packages = "@debs//:amd64",
)

deb_lock(
    name = "lock",
    keyring = "{keyring}",
    lock = "packages.lock.json",
    manifest = "packages.json",
    snapshots = ["{snapshot}"],
)
"""


def _pool(root, name, version, payload=None):
    """Writes pool/main/<n>/<name>/<name>_<version>_amd64.deb; (Packages stanza, path, sha256)."""
    rel = "pool/main/%s/%s/%s_%s_amd64.deb" % (name[0], name, name, version)
    sha, size = fx.make_deb(os.path.join(root, rel), name, version, "amd64",
                            [("./usr/share/%s/VERSION" % name, "file", payload or version.encode(), 0o644)])
    return fx.packages_stanza(name, version, "amd64", rel, sha, size), rel, sha


class World:
    """The archive, the workspace and its Bazel; every path under one temp directory."""

    def __init__(self, bazel):
        self.bazel = bazel
        self.work = tempfile.mkdtemp(prefix="shiko-debsnap-", dir="/tmp")
        self.srv = os.path.join(self.work, "srv")
        self.mirror = os.path.join(self.srv, "mirror")
        self.snap = os.path.join(self.srv, "snapshot", "debian", T)
        self.ws = os.path.join(self.work, "ws")
        self.key = fx.GpgKey()
        self.files = {}  # (name, version) -> (path in the pool, sha256)
        stanzas = []
        for name, version in (("alpha", "1.0-2"), ("beta", "1.0-1")):
            st, rel, sha = _pool(self.mirror, name, version)
            stanzas.append(st)
            self.files[(name, version)] = (rel, sha)
        fx.write_archive(self.mirror, "bookworm", {"amd64": stanzas}, self.key)
        stanzas = []
        for name, version in (("alpha", "1.0-1"), ("beta", "1.0-1")):
            st, rel, sha = _pool(self.snap, name, version)
            stanzas.append(st)
            assert self.files.setdefault((name, version), (rel, sha)) == (rel, sha)
        fx.write_archive(self.snap, "bookworm", {"amd64": stanzas}, self.key)
        self.server = _Server(self.srv)
        shiko = copy_checkout(REPO_ROOT, os.path.join(self.work, "rules_shiko"))
        os.makedirs(self.ws)
        snapshot_root = self.server.url + "/snapshot/debian"
        for fname, text in (
                ("WORKSPACE", _WORKSPACE.format(shiko=shiko, mirror=self.server.url + "/mirror",
                                                snapshot=snapshot_root)),
                ("BUILD.bazel", _BUILD.format(keyring=self.key.keyring, snapshot=snapshot_root)),
                (".bazelrc", "import %s/.bazelrc\n" % shiko),
                ("packages.json", json.dumps({"suites": ["bookworm"], "architectures": ["amd64"],
                                              "packages": ["alpha", "beta"]}))):
            with open(os.path.join(self.ws, fname), "w") as f:
                f.write(text)
        self.output_bases = []
        self.output_base = self.new_output_base()

    def new_output_base(self):
        ob = os.path.join(self.work, "ob%d" % len(self.output_bases))
        self.output_bases.append(ob)
        return ob

    def run(self, *args, output_base=None, check=True):
        startup = ["--output_base=" + (output_base or self.output_base), "--max_idle_secs=300"]
        return self.bazel(*args, startup=startup, cwd=self.ws, check=check, timeout=1200)

    def build_debs(self, cache, *flags, output_base=None, check=False):
        return self.run("build", "--repository_cache=" + cache, *flags, "@debs//:amd64",
                        output_base=output_base, check=check)

    def lock(self):
        with open(os.path.join(self.ws, "packages.lock.json")) as f:
            return json.load(f)

    def refetch(self):
        """Rewrites the lock with other whitespace: same content, but @debs is fetched again."""
        lock = self.lock()
        self._indent = getattr(self, "_indent", 2) + 1
        with open(os.path.join(self.ws, "packages.lock.json"), "w") as f:
            json.dump(lock, f, indent=self._indent)

    def fetched(self, output_base=None):
        """{name: sha256} of the .deb of each package in @debs//:amd64 (@debs__amd64) of an output
        base: of the .deb file itself, or, when the repository holds its plain control.tar and
        data.tar instead (the lock pins them), the lock's .deb sha256 once both match their pins."""
        repo = os.path.join(output_base or self.output_base, "external", "debs__amd64", "amd64")
        pins = {p["name"]: p for p in self.lock()["architectures"]["amd64"]["packages"]}
        out = {}
        for name in ("alpha", "beta"):
            deb = os.path.join(repo, name + ".deb")
            if os.path.exists(deb):
                with open(deb, "rb") as f:
                    out[name] = hashlib.sha256(f.read()).hexdigest()
                continue
            for member in ("control", "data"):
                with open(os.path.join(repo, "%s.%s.tar" % (name, member)), "rb") as f:
                    assert hashlib.sha256(f.read()).hexdigest() == pins[name][member + "_sha256"]
            out[name] = pins[name]["sha256"]
        return out

    def cache(self, name):
        return os.path.join(self.work, "cache-" + name)

    def close(self):
        self.server.close()
        for ob in self.output_bases:
            self.bazel("shutdown", startup=["--output_base=" + ob], cwd=self.ws, check=False,
                       timeout=120)
        self.key.close()
        remove_tree(self.work)


@pytest.fixture(scope="module")
def world(bazel):
    w = World(bazel)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture(scope="module")
def locked(world):
    """`bazel run //:lock.update -- --snapshot=T`: the lock resolved against the snapshot."""
    res = world.run("run", "//:lock.update", "--", "--snapshot=" + T)
    assert "snapshot %s" % T in res.stdout, res.stdout + res.stderr[-2000:]
    return world.lock()


def _one_line_error(stderr):
    lines = [l for l in stderr.splitlines() if "@debs: " in l]
    assert lines, stderr[-3000:]
    return lines[0][lines[0].index("@debs: "):]


def test_lock_is_resolved_against_the_snapshot_and_records_it(world, locked):
    assert locked["snapshot"] == T
    pkgs = {p["name"]: p for p in locked["architectures"]["amd64"]["packages"]}
    assert {n: p["version"] for n, p in pkgs.items()} == {"alpha": "1.0-1", "beta": "1.0-1"}
    for name, p in pkgs.items():
        assert (p["path"], p["sha256"]) == world.files[(name, p["version"])]
    text = json.dumps(locked)
    assert "127.0.0.1" not in text and "http" not in text  # only the timestamp, no URL
    assert "/snapshot/debian/%s/dists/bookworm/InRelease" % T in world.server.requests
    assert not [r for r in world.server.requests if r.startswith("/mirror/")]


def test_pinned_version_gone_from_the_mirror_comes_from_the_snapshot(world, locked):
    assert not os.path.exists(os.path.join(world.mirror, world.files[("alpha", "1.0-1")][0]))
    del world.server.requests[:]
    res = world.build_debs(world.cache("main"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert world.fetched() == {"alpha": world.files[("alpha", "1.0-1")][1],
                               "beta": world.files[("beta", "1.0-1")][1]}
    alpha, beta = world.files[("alpha", "1.0-1")][0], world.files[("beta", "1.0-1")][0]
    # The mirror first, then the snapshot for the version the mirror dropped (in lock order).
    assert world.server.requests == [
        "/mirror/" + alpha, "/snapshot/debian/%s/%s" % (T, alpha), "/mirror/" + beta]


def test_mirror_serving_other_bytes_is_passed_over_for_the_snapshot(world, locked):
    alpha = world.files[("alpha", "1.0-1")]
    _pool(world.mirror, "alpha", "1.0-1", payload=b"rebuilt, not the locked bytes")
    try:
        world.refetch()
        res = world.build_debs(world.cache("tampered"))
        assert res.returncode == 0, res.stderr[-3000:]
        assert world.fetched()["alpha"] == alpha[1]
    finally:
        os.remove(os.path.join(world.mirror, alpha[0]))


def test_version_gone_from_every_source_is_one_clear_line(world, locked):
    rel = world.files[("alpha", "1.0-1")][0]
    saved = os.path.join(world.work, "saved.deb")
    shutil.move(os.path.join(world.snap, rel), saved)
    try:
        world.refetch()
        res = world.build_debs(world.cache("removed"))
        assert res.returncode != 0
        line = _one_line_error(res.stderr)
        assert line.startswith("@debs: package 'alpha' 1.0-1 (amd64) is no longer in the archive "
                               "(tried "), line
        for url in ("%s/mirror/%s" % (world.server.url, rel),
                    "%s/snapshot/debian/%s/%s" % (world.server.url, T, rel)):
            assert re.search(re.escape(url) + r": HTTP 404", line), line
        assert "Re-lock to the current versions: bazel run //:lock.update" in line
        assert "`snapshots`" in line and T in line
    finally:
        shutil.move(saved, os.path.join(world.snap, rel))


def _replace_in(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text, (path, old)
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def test_bad_snapshot_inputs_are_one_line(world, locked):
    lock_path = os.path.join(world.ws, "packages.lock.json")
    with open(lock_path) as f:
        good = f.read()
    try:
        with open(lock_path, "w") as f:
            json.dump(dict(locked, snapshot="2024-01-01"), f)
        res = world.build_debs(world.cache("main"))
        assert res.returncode != 0
        assert _one_line_error(res.stderr) == (
            "@debs: attribute 'lock': //:packages.lock.json: snapshot \"2024-01-01\" is not a "
            "YYYYMMDDTHHMMSSZ timestamp; re-lock: bazel run //:lock.update")
    finally:
        with open(lock_path, "w") as f:
            f.write(good)
    root = world.server.url + "/snapshot/debian"
    cases = [
        ("WORKSPACE", "%s/%s" % (root, T), "@debs//:amd64",
         "@debs: attribute 'snapshots': \"%s/%s\": give the root without the timestamp (the lock "
         "records it)" % (root, T)),
        ("BUILD.bazel", "127.0.0.1/debian", "//:lock.update",
         "//:lock.update: attribute 'snapshots': \"127.0.0.1/debian\": expected an http, https or "
         "file URL"),
    ]
    for fname, bad, target, message in cases:
        path = os.path.join(world.ws, fname)
        _replace_in(path, '["%s"]' % root, '["%s"]' % bad)
        try:
            res = world.run("build", "--repository_cache=" + world.cache("main"), target, check=False)
            assert res.returncode != 0
            assert message in res.stderr, res.stderr[-3000:]
        finally:
            _replace_in(path, '["%s"]' % bad, '["%s"]' % root)


def _plain_sha256(deb, member):
    """The sha256 of a .deb's control.tar or data.tar, decompressed by the ar and xz programs."""
    out = os.path.join(os.path.dirname(deb), "_ar")
    os.makedirs(out)
    try:
        subprocess.run(["ar", "x", deb], cwd=out, check=True)
        raw = subprocess.run(["xz", "-dc", os.path.join(out, member + ".tar.xz")], check=True,
                             stdout=subprocess.PIPE).stdout
    finally:
        shutil.rmtree(out)
    return hashlib.sha256(raw).hexdigest()


def _repo_build(ob):
    with open(os.path.join(ob, "external", "debs__amd64", "BUILD.bazel")) as f:
        return f.read()


def test_plain_members_pinned_by_the_lock_come_from_the_repository_cache(world, locked):
    pkgs = {p["name"]: p for p in locked["architectures"]["amd64"]["packages"]}
    for name, p in pkgs.items():
        for member in ("control", "data"):
            assert p[member + "_sha256"] == _plain_sha256(os.path.join(world.snap, p["path"]), member), name
    cache = world.cache("plain")
    ob = world.new_output_base()
    res = world.run("build", "--repository_cache=" + cache, "//:layer_deb", output_base=ob, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert ("control.tar and data.tar decompressed instead of the .deb: 2 of 2 packages (0 from the "
            "repository cache, 2 written)") in _repo_build(ob)
    repo = os.path.join(ob, "external", "debs__amd64", "amd64")
    assert sorted(os.listdir(repo)) == ["alpha.control.tar", "alpha.data.tar", "beta.control.tar",
                                        "beta.data.tar", "packages.json"]
    for name, p in pkgs.items():
        for member in ("control", "data"):
            digest = p[member + "_sha256"]
            with open(os.path.join(repo, "%s.%s.tar" % (name, member)), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == digest
            assert os.path.isfile(os.path.join(cache, "content_addressable", "sha256", digest, "file"))
    built = os.path.join(ob, "execroot", "shiko_deb_snapshot_test", "bazel-out", "k8-fastbuild", "bin",
                         "layer_deb.tar")
    with open(built, "rb") as f:
        layer_tar = f.read()
    assert b"usr/share/alpha/VERSION" in layer_tar

    # A new output base with that repository cache copies them from there (no .deb at all).
    ob2 = world.new_output_base()
    res = world.run("build", "--repository_cache=" + cache, "//:layer_deb", output_base=ob2, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    assert ("control.tar and data.tar decompressed instead of the .deb: 2 of 2 packages (2 from the "
            "repository cache, 0 written)") in _repo_build(ob2)
    built2 = built.replace(ob, ob2)

    lock_path = os.path.join(world.ws, "packages.lock.json")
    with open(lock_path) as f:
        good = f.read()
    try:
        # An older lock without the digests: the .debs, which the action decompresses; the same tar.
        old = json.loads(good)
        for p in old["architectures"]["amd64"]["packages"]:
            del p["data_sha256"], p["control_sha256"]
        with open(lock_path, "w") as f:
            json.dump(old, f)
        res = world.run("build", "--repository_cache=" + cache, "//:layer_deb", output_base=ob2, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "instead of the .deb: 0 of 2 packages" in _repo_build(ob2)
        assert sorted(os.listdir(repo.replace(ob, ob2))) == ["alpha.deb", "beta.deb", "packages.json"]
        with open(built2, "rb") as f:
            assert f.read() == layer_tar

        # A wrong digest (a lock edited by hand): one line naming the package and both digests.
        bad = json.loads(good)
        wrong = "0" * 64
        bad["architectures"]["amd64"]["packages"][0]["data_sha256"] = wrong
        with open(lock_path, "w") as f:
            json.dump(bad, f)
        res = world.run("build", "--repository_cache=" + cache, "//:layer_deb", output_base=ob2, check=False)
        assert res.returncode != 0
        assert _one_line_error(res.stderr) == (
            "@debs: package 'alpha' 1.0-1: its data.tar, decompressed, has sha256 %s, the lock's "
            "data_sha256 is %s: a lock edited by hand? Re-lock: bazel run //:lock.update" % (
                pkgs["alpha"]["data_sha256"], wrong))
    finally:
        with open(lock_path, "w") as f:
            f.write(good)


def test_repository_cache_and_distdir_need_no_network(world, locked):
    res = world.build_debs(world.cache("main"))  # the cache of the first build (already full)
    assert res.returncode == 0, res.stderr[-3000:]
    want = world.fetched()
    distdir = os.path.join(world.work, "distdir")
    os.makedirs(distdir, exist_ok=True)
    for name in ("alpha", "beta"):
        rel = world.files[(name, "1.0-1")][0]
        shutil.copy(os.path.join(world.snap, rel), os.path.join(distdir, os.path.basename(rel)))
    world.server.close()  # no archive any more: connections are refused

    # A new output base (a fresh machine with the repository cache of an earlier build).
    ob = world.new_output_base()
    res = world.build_debs(world.cache("main"), output_base=ob)
    assert res.returncode == 0, res.stderr[-3000:]
    assert world.fetched(ob) == want

    # Another, with an empty repository cache: --distdir alone (files by name, checked by sha256).
    ob = world.new_output_base()
    res = world.build_debs(world.cache("empty"), "--distdir=" + distdir, output_base=ob)
    assert res.returncode == 0, res.stderr[-3000:]
    assert world.fetched(ob) == want
    # ... and without them the same build needs the network, which is gone.
    world.refetch()
    res = world.build_debs(world.cache("empty2"), output_base=ob)
    assert res.returncode != 0
    assert "@debs: package 'alpha' 1.0-1 (amd64) could not be fetched (tried " in _one_line_error(res.stderr)
