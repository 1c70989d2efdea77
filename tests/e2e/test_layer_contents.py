"""Layers built by Bazel from every kind of content, read back member by member."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile

import pytest

PKG = "//tests/layers"
TARGETS = ["everything", "everything_zstd", "everything_none"]


@pytest.fixture(scope="module")
def built(bazel):
    bazel("build", *["%s:%s" % (PKG, t) for t in TARGETS])
    return os.path.join(bazel.info("bazel-bin"), "tests", "layers")


def _decompress(blob, compression):
    data = open(blob, "rb").read()
    if compression == "gzip":
        return data, gzip.decompress(data)
    if compression == "zstd":
        out = subprocess.run(["zstd", "-d", "-c"], input=data, stdout=subprocess.PIPE, check=True)
        return data, out.stdout
    return data, data


@pytest.mark.parametrize("name,ext,compression", [
    ("everything", ".tar.gz", "gzip"),
    ("everything_zstd", ".tar.zst", "zstd"),
    ("everything_none", ".tar", "none"),
])
def test_descriptor_matches_blob(built, name, ext, compression):
    desc = json.load(open(os.path.join(built, name + ".layer.json")))
    blob, raw = _decompress(os.path.join(built, name + ext), compression)
    assert desc["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert desc["diff_id"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert desc["size"] == len(blob)
    assert desc["compression"] == compression
    assert desc["mediaType"] == {
        "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
        "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
        "none": "application/vnd.oci.image.layer.v1.tar",
    }[compression]
    members = tarfile.open(fileobj=io.BytesIO(raw)).getmembers()
    assert desc["members"] == len(members)
    assert [m.name for m in members if m.name.strip("/") == "etc/app.conf"]


@pytest.fixture(scope="module")
def members(built):
    raw = gzip.decompress(open(os.path.join(built, "everything.tar.gz"), "rb").read())
    t = tarfile.open(fileobj=io.BytesIO(raw))
    return t, {m.name.rstrip("/"): m for m in t.getmembers()}


def _content(t, by_name, name):
    m = by_name[name]
    while m.islnk():
        m = by_name[m.linkname.rstrip("/")]
    return t.extractfile(m).read()


def test_normalized_members(members):
    t, by_name = members
    names = [m.name for m in t.getmembers()]
    assert names == sorted(names, key=lambda n: n.encode())  # sorted, so parents come first
    seen = set()
    for m in t.getmembers():
        n = m.name.rstrip("/")
        assert not n.startswith(("/", "./")) and ".." not in n.split("/"), n
        assert m.mtime == 0, n
        assert m.uname == "" and m.gname == "", n
        assert "/" not in n or n.rsplit("/", 1)[0] in seen, "parent of %s missing" % n
        assert n not in seen, "%s twice" % n
        seen.add(n)


def test_files_modes_and_owners(members):
    t, by = members
    assert by["etc/app.conf"].mode == 0o600
    assert by["etc/app-copy.conf"].mode == 0o644
    # Generated, not an executable: 0644 although Bazel marks every output 0555.
    assert by["etc/generated.json"].mode == 0o644
    assert _content(t, by, "etc/app.conf") == b"config v1\n"
    assert by["var/cache/app"].isdir() and (by["var/cache/app"].uid, by["var/cache/app"].gid) == (65532, 65532)
    assert by["usr/bin/app"].issym() and by["usr/bin/app"].linkname == "/opt/app/app"


def test_runfiles_tree(members):
    t, by = members
    assert by["opt/app/app"].isfile() and by["opt/app/app"].mode == 0o755
    assert by["opt/app/app.runfiles/rules_shiko/tests/__init__.py"].mode == 0o644  # Bazel's empty files
    rf = "opt/app/app.runfiles/"
    # Sources by content (app.py has no #!), the launcher in the runfiles as an executable.
    assert by[rf + "rules_shiko/tests/layers/app.py"].mode == 0o644
    assert by[rf + "rules_shiko/tests/layers/app.conf"].mode == 0o644
    assert by[rf + "rules_shiko/tests/layers/app"].mode == 0o755
    assert _content(t, by, rf + "rules_shiko/tests/layers/app.py").startswith(b'"""A py_binary')
    assert _content(t, by, rf + "rules_shiko/tests/layers/app.conf") == b"config v1\n"
    absl = [n for n in by if n.endswith("site-packages/absl/app.py")]
    assert absl == [rf + "rules_shiko_pip_test/absl_py/site-packages/absl/app.py"], absl  # exactly once
    assert not [n for n in by if "/external/" in n]  # no legacy external runfiles copy
    for m in by.values():
        if m.issym():
            assert not m.linkname.startswith(("/root", "/work", "/tmp", "/home")), m.name


def test_tree_artifact(members):
    t, by = members
    assert _content(t, by, "srv/tree/sub/b.txt") == b"tree b\n"
    assert _content(t, by, "srv/tree/a.txt") == b"tree a\n"
    # Files of a tree artifact (Bazel makes them 0555) get their mode from their content: the
    # script (#!) 0755, the data 0644; never from the permission bits of the action's inputs.
    assert by["srv/tree/run.sh"].mode == 0o755
    assert by["srv/tree/a.txt"].mode == 0o644 and by["srv/tree/sub/b.txt"].mode == 0o644


def test_imported_tar(members):
    t, by = members
    d = by["opt/pkg/data.bin"]
    assert (d.mode, d.uid, d.gid, d.uname, d.gname, d.mtime) == (0o640, 1000, 1001, "", "", 0)
    assert by["opt/pkg"].mode == 0o750
    h = by["opt/pkg/data.hardlink"]
    assert h.islnk() and h.linkname == "opt/pkg/data.bin"
    s = by["opt/pkg/data.symlink"]
    assert s.issym() and s.linkname == "data.bin"
