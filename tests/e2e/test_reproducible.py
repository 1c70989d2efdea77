"""Every image under //examples is bit-for-bit reproducible.

Each image target is built twice, in two fresh output bases, from two copies of the checkout:

  build 1: <tmp>/a/rules_shiko            umask 022, files keep their mtimes
  build 2: <tmp>/b/another/place/shiko    umask 077 (files 0600/0700, as a git checkout would
                                          give), every file's and directory's mtime changed

and each image's `.digest` (the manifest digest, which pins config and layers) must match, as
must the bytes of its docker/podman tarball (output group `tarball`) and of its SBOMs
(output group `sbom`).
Both builds run from snapshots of the checkout (git-tracked plus untracked-but-not-ignored
files), so edits made to the checkout meanwhile can't skew the comparison, and neither build
touches the checkout's own bazel-* symlinks or output base.
"""

import hashlib
import json
import os
import stat
import tempfile
import time

from checkout import checkout_files, remove_tree, snapshot
from conftest import Bazel

# Every image: `image` targets (and the distroless bases) and `py_image` targets.
QUERY = 'kind("^(py_)?image_rule rule$", //examples/...)'
# A time no checkout has: 2004-02-29 12:34:56 UTC.
TOUCHED_MTIME = 1078058096


def _copy_elsewhere(src_root, files, dest, umask, mtime):
    """Copy as a checkout made under `umask` would be, then set every mtime to `mtime`."""
    old = os.umask(umask)
    try:
        for name in files:
            src = os.path.join(src_root, name)
            dst = os.path.join(dest, name)
            os.makedirs(os.path.dirname(dst), mode=0o777, exist_ok=True)
            if os.path.islink(src):
                os.symlink(os.readlink(src), dst)
                continue
            exe = os.stat(src).st_mode & stat.S_IXUSR
            with open(src, "rb") as fin:
                data = fin.read()
            fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if exe else 0o666)
            with os.fdopen(fd, "wb") as fout:
                fout.write(data)
    finally:
        os.umask(old)
    for root, dirs, names in os.walk(dest):
        for n in names:
            p = os.path.join(root, n)
            if not os.path.islink(p):
                os.utime(p, (mtime, mtime))
    for root, dirs, names in os.walk(dest, topdown=False):
        os.utime(root, (mtime, mtime))


def _umask_preexec(mask):
    def fn():
        os.umask(mask)
    return fn


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest_path(bazel_bin, label):
    pkg, name = label.lstrip("/").split(":", 1)
    return os.path.join(bazel_bin, pkg, name + ".digest")


def _layout(bazel_bin, label):
    pkg, name = label.lstrip("/").split(":", 1)
    return os.path.join(bazel_bin, pkg, name)


def _explain(layout_a, layout_b):
    """What differs between two layouts of the same image: config fields, layers."""

    def load(layout):
        try:
            with open(os.path.join(layout, "index.json")) as f:
                index = json.load(f)
            mdesc = index["manifests"][0]
            with open(os.path.join(layout, "blobs", *mdesc["digest"].split(":")), "rb") as f:
                manifest = json.load(f)
            with open(os.path.join(layout, "blobs", *manifest["config"]["digest"].split(":")),
                      "rb") as f:
                config = json.load(f)
            return manifest, config
        except (OSError, ValueError, KeyError, IndexError) as e:
            return {"error": repr(e)}, {}

    ma, ca = load(layout_a)
    mb, cb = load(layout_b)
    lines = []
    la = [l.get("digest") for l in ma.get("layers", [])]
    lb = [l.get("digest") for l in mb.get("layers", [])]
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            lines.append("  layer %d: %s vs %s" % (i, x, y))
    if len(la) != len(lb):
        lines.append("  layer count %d vs %d" % (len(la), len(lb)))
    for key in sorted(set(ca) | set(cb)):
        if ca.get(key) != cb.get(key):
            lines.append("  config[%r]: %s\n      vs %s" % (
                key, json.dumps(ca.get(key))[:300], json.dumps(cb.get(key))[:300]))
    for key in sorted(set(ma) | set(mb)):
        if key not in ("layers", "config") and ma.get(key) != mb.get(key):
            lines.append("  manifest[%r]: %s vs %s" % (key, ma.get(key), mb.get(key)))
    return "\n".join(lines) or "  (manifests, configs and layer digests look equal)"


def test_every_example_image_is_reproducible(repo_root):
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="shiko-repro-", dir="/tmp")
    tree_a = os.path.join(work, "a", "rules_shiko")
    tree_b = os.path.join(work, "b", "another", "place", "shiko")
    ob1 = os.path.join(work, "ob1")
    ob2 = os.path.join(work, "ob2")
    servers = []
    try:
        files = checkout_files(repo_root)
        assert "WORKSPACE" in files and "bazelw" in files, "odd checkout: %s" % files[:20]
        snapshot(repo_root, files, tree_a)
        _copy_elsewhere(tree_a, files, tree_b, umask=0o077, mtime=TOUCHED_MTIME)

        results = {}
        for tree, ob, mask in ((tree_a, ob1, 0o022), (tree_b, ob2, 0o077)):
            bazel = Bazel(tree)
            startup = ["--output_base=" + ob, "--max_idle_secs=600"]
            pre = _umask_preexec(mask)
            servers.append((bazel, startup))
            if not results:
                # cquery, not query: `./bazelw query` adds --config=bazel4, which .bazelrc
                # defines for build (and so cquery) only. Lines read "//pkg:name (config)".
                out = bazel("cquery", QUERY, startup=startup, preexec_fn=pre).stdout
                targets = sorted(set(line.split()[0] for line in out.splitlines()
                                     if line.startswith("//")))
                assert targets, "no image targets under //examples (cquery: %s)" % QUERY
            bazel("build", "--symlink_prefix=/", "--output_groups=+tarball,+sbom", *targets,
                  startup=startup, preexec_fn=pre)
            bazel_bin = bazel.info("bazel-bin", startup=startup, preexec_fn=pre)
            assert bazel_bin.startswith(ob), (bazel_bin, ob)
            digests, tarballs = {}, {}
            for label in targets:
                with open(_digest_path(bazel_bin, label)) as f:
                    digests[label] = f.read().strip()
                # The tarball and the SBOMs: the same bytes from every checkout and output base.
                tarballs[label] = tuple(_sha256_file(_layout(bazel_bin, label) + ext)
                                        for ext in (".tar", ".spdx.json", ".cdx.json"))
            results[tree] = (bazel_bin, digests, tarballs)
            # One Bazel server at a time (2 cores, ~0.5 GB each).
            bazel("shutdown", startup=startup, check=False, preexec_fn=pre)

        (bin_a, dig_a, tar_a), (bin_b, dig_b, tar_b) = results[tree_a], results[tree_b]
        for label in targets:
            assert dig_a[label].startswith("sha256:") and len(dig_a[label]) == 71, (
                "%s: bad digest file content %r" % (label, dig_a[label]))
        differing = [l for l in targets if dig_a[l] != dig_b[l]]
        assert not differing, "not reproducible (build 1 vs build 2):\n" + "\n".join(
            "%s: %s vs %s\n%s" % (l, dig_a[l], dig_b[l],
                                  _explain(_layout(bin_a, l), _layout(bin_b, l)))
            for l in differing)
        tar_differing = [l for l in targets if tar_a[l] != tar_b[l]]
        assert not tar_differing, (
            "same manifest digests, but the tarballs or SBOMs differ (sha256 of <name>.tar, "
            ".spdx.json, .cdx.json; build 1 vs build 2):\n" + "\n".join("%s: %s vs %s" % (l, tar_a[l], tar_b[l])
                                     for l in tar_differing))
        print("%d image(s) reproducible in %.0fs: %s" % (
            len(targets), time.monotonic() - started, ", ".join(targets)))
    finally:
        for bazel, startup in servers:
            bazel("shutdown", startup=startup, check=False, timeout=120)
        remove_tree(work)
