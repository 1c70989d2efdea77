"""Unit tests of python_tools/deb.py and python_tools/shiko/debian/unpack.py: real .deb files
built at test time are unpacked into a tar, which is read back member by member."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from python_tools.shiko.debian.unpack import build_tar
from python_tools.shiko.files import sha256_file
from python_tools.tests import debian_fixtures as fx

TARGET = "//pkg:base_libs_deb"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CERT_A = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"  # no final newline
CERT_B = b"-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n"


class Repo:
    """A deb_repository-like directory: <arch>/packages.json and <arch>/<name>.deb."""

    def __init__(self, root, arch="amd64"):
        self.root = str(root)
        self.arch = arch
        self.entries = []
        os.makedirs(os.path.join(self.root, arch), exist_ok=True)

    def add(self, name, version, members, arch=None, compression="xz", extra=None):
        arch = arch or self.arch
        path = os.path.join(self.root, self.arch, name + ".deb")
        sha, size = fx.make_deb(path, name, version, arch, members, compression, extra)
        self.entries.append({"name": name, "version": version, "architecture": arch,
                             "suite": "bookworm", "path": "pool/main/x/%s.deb" % name,
                             "sha256": sha, "size": size, "depends": []})
        return path

    def index(self):
        p = os.path.join(self.root, self.arch, "packages.json")
        with open(p, "w") as f:
            json.dump({"architecture": self.arch, "suites": ["bookworm", "bookworm-security"],
                       "packages": self.entries}, f)
        return p

    def manifest(self, names=None, keep_docs=False, basics=None, arch=None):
        names = names if names is not None else [e["name"] for e in self.entries]
        return {
            "target": TARGET,
            "architecture": arch or self.arch,
            "index": self.index(),
            "debs": [{"name": n, "src": os.path.join(self.root, self.arch, n + ".deb")} for n in names],
            "keep_docs": keep_docs,
            "basics": basics,
        }


def unpack(manifest, out):
    build_tar(manifest, str(out))
    members = {}
    with tarfile.open(str(out)) as tf:
        order = [m.name for m in tf.getmembers()]
        for m in tf.getmembers():
            data = tf.extractfile(m).read() if m.isreg() else None
            members[m.name] = (m, data)
    assert order == sorted(order), "members are not sorted"
    return members


def libfoo(repo, compression="xz"):
    return repo.add("libfoo", "1.2-3+deb12u1", [
        ("./usr/lib/x86_64-linux-gnu/libfoo.so.1.2", "file", b"\x7fELF-foo", 0o644),
        ("./usr/lib/x86_64-linux-gnu/libfoo.so.1", "symlink", "libfoo.so.1.2", 0o777),
        ("./usr/bin/foo", "file", b"#!foo\n", 0o755),
        ("./usr/bin/foo-suid", "file", b"suid", 0o4755),
        ("./usr/bin/foo-again", "hardlink", "./usr/bin/foo", 0o755),
        ("./etc/foo.conf", "file", b"secret=1\n", 0o600),
        ("./usr/share/doc/libfoo/copyright", "file", b"GPL\n", 0o644),
        ("./usr/share/doc/libfoo/changelog.Debian.gz", "file", b"log", 0o644),
        ("./usr/share/doc/libfoo/README", "file", b"readme", 0o644),
        ("./usr/share/doc/libfoo/README.again", "hardlink", "./usr/share/doc/libfoo/README", 0o644),
        ("./usr/share/man/man1/foo.1.gz", "file", b"man", 0o644),
        ("./usr/share/locale/de/LC_MESSAGES/foo.mo", "file", b"mo", 0o644),
        ("./usr/share/lintian/overrides/libfoo", "file", b"x", 0o644),
    ], compression=compression)


@pytest.mark.parametrize("compression", ["xz", "zst", "gz"])
def test_unpacks_data_with_modes_links_and_status(tmp_path, compression):
    repo = Repo(tmp_path / "repo")
    libfoo(repo, compression)
    m = unpack(repo.manifest(), tmp_path / "out.tar")
    ti, data = m["usr/lib/x86_64-linux-gnu/libfoo.so.1.2"]
    assert ti.isreg() and data == b"\x7fELF-foo" and ti.mode == 0o644
    ti, _ = m["usr/lib/x86_64-linux-gnu/libfoo.so.1"]
    assert ti.issym() and ti.linkname == "libfoo.so.1.2"
    assert m["usr/bin/foo-suid"][0].mode == 0o4755
    assert m["etc/foo.conf"][0].mode == 0o600
    ti, _ = m["usr/bin/foo-again"]
    assert ti.islnk() and ti.linkname == "usr/bin/foo"
    for name, (ti, _) in m.items():
        assert ti.mtime == 0 and ti.uname == "" and ti.gname == "", name
        assert not name.startswith("./") and not name.startswith("/")
    status = m["var/lib/dpkg/status.d/libfoo"][1].decode()
    assert status.startswith("Package: libfoo\nStatus: install ok installed\nVersion: 1.2-3+deb12u1\n")
    assert "Description: test package libfoo\n a package made by the tests\n" in status
    assert m["var/lib/dpkg/status.d"][0].isdir()


def test_docs_are_dropped_except_copyright(tmp_path):
    repo = Repo(tmp_path / "repo")
    libfoo(repo)
    m = unpack(repo.manifest(), tmp_path / "out.tar")
    assert m["usr/share/doc/libfoo/copyright"][1] == b"GPL\n"
    assert m["usr/share/doc/libfoo"][0].isdir()
    for gone in ("usr/share/doc/libfoo/changelog.Debian.gz", "usr/share/doc/libfoo/README",
                 "usr/share/man", "usr/share/man/man1/foo.1.gz", "usr/share/locale",
                 "usr/share/lintian"):
        assert gone not in m, gone
    # A kept hardlink to a dropped file becomes a file: none here, both README names are docs.
    assert "usr/share/doc/libfoo/README.again" not in m
    m = unpack(repo.manifest(keep_docs=True), tmp_path / "docs.tar")
    assert m["usr/share/man/man1/foo.1.gz"][1] == b"man"
    assert m["usr/share/doc/libfoo/README.again"][0].islnk()


def test_hardlink_to_a_dropped_file_becomes_a_file(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.add("tool", "1", [
        ("./usr/share/doc/tool/NEWS", "file", b"news", 0o644),
        ("./usr/lib/tool/NEWS", "hardlink", "./usr/share/doc/tool/NEWS", 0o644),
    ])
    m = unpack(repo.manifest(), tmp_path / "out.tar")
    ti, data = m["usr/lib/tool/NEWS"]
    assert ti.isreg() and data == b"news"


def _gnu_tar_extract(tar_path, dest):
    os.makedirs(str(dest))
    return subprocess.run(["tar", "-C", str(dest), "-xf", str(tar_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not shutil.which("tar"), reason="needs GNU tar to extract the output")
def test_hardlink_sorted_before_its_target_extracts(tmp_path):
    # The package's archive order has the file first; sorted by name the link comes first, so
    # the content goes to the first name in sorted order and the other names link to it.
    repo = Repo(tmp_path / "repo")
    repo.add("tool", "1", [
        ("./usr/bin/zz-tool", "file", b"#!tool\n", 0o750),
        ("./usr/bin/aa-tool", "hardlink", "./usr/bin/zz-tool", 0o750),
        ("./usr/bin/mm-tool", "hardlink", "./usr/bin/aa-tool", 0o750),  # a chain
        ("./usr/lib/tool/x", "file", b"x", 0o644),
        ("./usr/lib/tool/y", "hardlink", "./usr/lib/tool/x", 0o644),  # already in order
    ])
    out = tmp_path / "out.tar"
    m = unpack(repo.manifest(), out)
    ti, data = m["usr/bin/aa-tool"]
    assert ti.isreg() and data == b"#!tool\n" and ti.mode == 0o750
    for name in ("usr/bin/mm-tool", "usr/bin/zz-tool"):
        assert m[name][0].islnk() and m[name][0].linkname == "usr/bin/aa-tool", name
    assert m["usr/lib/tool/x"][0].isreg() and m["usr/lib/tool/y"][0].linkname == "usr/lib/tool/x"
    res = _gnu_tar_extract(out, tmp_path / "x")
    assert res.returncode == 0, res.stderr
    st = [os.stat(str(tmp_path / "x" / "usr/bin" / n)) for n in ("aa-tool", "mm-tool", "zz-tool")]
    assert len({(s.st_dev, s.st_ino) for s in st}) == 1 and st[0].st_nlink == 3
    with open(str(tmp_path / "x/usr/bin/zz-tool"), "rb") as f:
        assert f.read() == b"#!tool\n"


def test_reproducible_output(tmp_path):
    repo = Repo(tmp_path / "repo")
    libfoo(repo)
    build_tar(repo.manifest(), str(tmp_path / "a.tar"))
    build_tar(repo.manifest(), str(tmp_path / "b.tar"))
    assert sha256_file(str(tmp_path / "a.tar")) == sha256_file(str(tmp_path / "b.tar"))


def test_ca_certificates_bundle(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.add("ca-certificates", "20230311", [
        ("./usr/share/ca-certificates/mozilla/B_Root (2020), Inc.crt", "file", CERT_B, 0o644),
        ("./usr/share/ca-certificates/mozilla/A_Root.crt", "file", CERT_A, 0o644),
        ("./usr/share/ca-certificates/mozilla/notes.txt", "file", b"not a cert", 0o644),
        ("./etc/ssl/certs/", "dir", None, 0o755),
    ], arch="all")
    m = unpack(repo.manifest(), tmp_path / "out.tar")
    assert m["etc/ssl/certs/ca-certificates.crt"][1] == CERT_A + b"\n" + CERT_B
    assert m["etc/ssl/certs/ca-certificates.crt"][0].mode == 0o644
    link = m["etc/ssl/certs/B_Root_=2020=__Inc.pem"][0]
    assert link.issym() and link.linkname == "/usr/share/ca-certificates/mozilla/B_Root (2020), Inc.crt"
    conf = m["etc/ca-certificates.conf"][1].decode()
    assert conf.endswith("mozilla/A_Root.crt\nmozilla/B_Root (2020), Inc.crt\n")


def test_tzdata_and_base_files_maintainer_work(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.add("tzdata", "2024a-1", [("./usr/share/zoneinfo/Etc/UTC", "file", b"TZif", 0o644)],
             arch="all")
    repo.add("base-files", "12.4", [
        ("./usr/share/base-files/nsswitch.conf", "file", b"hosts: files\n", 0o644),
        ("./usr/lib/os-release", "file", b"ID=debian\n", 0o644),
        ("./etc/os-release", "symlink", "../usr/lib/os-release", 0o777),
    ])
    m = unpack(repo.manifest(), tmp_path / "out.tar")
    assert m["etc/localtime"][0].linkname == "/usr/share/zoneinfo/Etc/UTC"
    assert m["etc/timezone"][1] == b"Etc/UTC\n"
    assert m["etc/nsswitch.conf"][1] == b"hosts: files\n"


def run_cli(manifest_path, out, *extra):
    """Runs the tool (python -m python_tools.deb) as Bazel does."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "python_tools.deb", "--manifest", str(manifest_path),
                           "--output", str(out)] + list(extra), cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def errors_of(manifest, out):
    """The tool's stderr for a manifest that must fail: one line, exit 1, no output left."""
    mpath = os.path.join(os.path.dirname(str(out)), "m.json")
    with open(mpath, "w") as f:
        json.dump(manifest, f)
    with open(str(out), "w") as f:
        f.write("stale output of an earlier run")
    res = run_cli(mpath, out)
    assert res.returncode == 1, res.stderr
    err = res.stderr
    assert len(err.strip().splitlines()) == 1, err
    assert not os.path.exists(str(out)), "a failed run left its output behind"
    return err


def test_tampered_deb_is_a_sha256_error_naming_the_package(tmp_path):
    repo = Repo(tmp_path / "repo")
    path = libfoo(repo)
    manifest = repo.manifest()
    with open(path, "r+b") as f:
        f.seek(-10, os.SEEK_END)
        f.write(b"0123456789")
    err = errors_of(manifest, tmp_path / "out.tar")
    assert err.startswith("ERROR: %s: attribute 'packages': 'libfoo': libfoo.deb has sha256 " % TARGET)
    assert "the lock says %s" % repo.entries[0]["sha256"] in err
    assert "not the locked package" in err


def test_wrong_architecture_and_version(tmp_path):
    repo = Repo(tmp_path / "repo", arch="amd64")
    repo.add("armlib", "1", [("./usr/lib/x", "file", b"x", 0o644)], arch="arm64")
    err = errors_of(repo.manifest(), tmp_path / "out.tar")
    assert "'armlib': armlib 1: built for arm64, the image is amd64" in err
    repo = Repo(tmp_path / "repo2")
    repo.add("lib", "1", [("./usr/lib/x", "file", b"x", 0o644)])
    repo.entries[0]["version"] = "2"
    err = errors_of(repo.manifest(), tmp_path / "out.tar")
    assert "the .deb is lib 1" in err


def test_two_packages_with_one_file(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.add("a", "1", [("./usr/bin/tool", "file", b"a", 0o755), ("./usr/share/same", "file", b"s", 0o644)])
    repo.add("b", "1", [("./usr/bin/tool", "file", b"b", 0o755), ("./usr/share/same", "file", b"s", 0o644)])
    err = errors_of(repo.manifest(), tmp_path / "out.tar")
    assert "'/usr/bin/tool': shipped by both a and b" in err
    # Identical files and shared directories are fine.
    repo = Repo(tmp_path / "repo2")
    repo.add("a", "1", [("./usr/share/same", "file", b"s", 0o644)])
    repo.add("b", "1", [("./usr/share/same", "file", b"s", 0o644)])
    assert unpack(repo.manifest(), tmp_path / "ok.tar")["usr/share/same"][1] == b"s"


def test_special_files_and_unsafe_names_are_errors(tmp_path):
    repo = Repo(tmp_path / "repo")
    repo.add("fifo", "1", [("./run/fifo", "fifo", None, 0o644)])
    err = errors_of(repo.manifest(), tmp_path / "out.tar")
    assert "device, FIFO or another special file" in err
    repo = Repo(tmp_path / "repo2")
    repo.add("evil", "1", [("./../../etc/passwd", "file", b"x", 0o644)])
    err = errors_of(repo.manifest(), tmp_path / "out.tar")
    assert "unsafe member name" in err


def test_not_a_deb(tmp_path):
    repo = Repo(tmp_path / "repo")
    path = repo.add("x", "1", [])
    with open(path, "wb") as f:
        f.write(b"hello")
    repo.entries[0]["sha256"] = hashlib.sha256(b"hello").hexdigest()
    err = errors_of(repo.manifest(), tmp_path / "out.tar")
    assert "'x': x 1 is not a .deb" in err


def test_basics(tmp_path):
    repo = Repo(tmp_path / "repo")
    m = unpack(repo.manifest(names=[], basics={"os_release": None, "has_base_files": False}),
               tmp_path / "b.tar")
    passwd = m["etc/passwd"][1].decode()
    assert "root:x:0:0:root:/root:/sbin/nologin\n" in passwd
    assert "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n" in passwd
    assert "nonroot:x:65532:\n" in m["etc/group"][1].decode()
    assert m["tmp"][0].mode == 0o1777 and m["tmp"][0].isdir()
    home = m["home/nonroot"][0]
    assert (home.mode, home.uid, home.gid) == (0o700, 65532, 65532)
    assert m["root"][0].mode == 0o700
    os_release = m["etc/os-release"][1].decode()
    assert "ID=debian\n" in os_release and "VERSION_CODENAME=bookworm\n" in os_release
    assert "hosts:          files dns" in m["etc/nsswitch.conf"][1].decode()
    # With base-files among the packages, its os-release and nsswitch.conf are used instead.
    m = unpack(repo.manifest(names=[], basics={"os_release": None, "has_base_files": True}),
               tmp_path / "c.tar")
    assert "etc/os-release" not in m and "etc/nsswitch.conf" not in m
    m = unpack(repo.manifest(names=[], basics={"os_release": "ID=mine\n", "has_base_files": True}),
               tmp_path / "d.tar")
    assert m["etc/os-release"][1] == b"ID=mine\n"


def test_cli(tmp_path):
    repo = Repo(tmp_path / "repo")
    libfoo(repo)
    mpath = tmp_path / "m.json"
    mpath.write_text(json.dumps(repo.manifest()))
    out = tmp_path / "cli.tar"
    res = run_cli(mpath, out)
    assert res.returncode == 0, res.stderr
    with tarfile.open(str(out)) as tf:
        assert "usr/bin/foo" in tf.getnames()
    # The same bytes as the library writes.
    build_tar(repo.manifest(), str(tmp_path / "lib.tar"))
    assert sha256_file(str(out)) == sha256_file(str(tmp_path / "lib.tar"))


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2"])
def test_cli_bad_manifest_is_one_line_and_leaves_no_output(tmp_path, content):
    mpath = tmp_path / "m.json"
    if content is not None:
        mpath.write_text(content)
    out = tmp_path / "out.tar"
    out.write_text("stale output of an earlier run")
    res = run_cli(mpath, out)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    problem = "cannot read the manifest" if content is None else "the manifest is not valid JSON"
    assert lines[0].startswith("ERROR: ") and problem in lines[0], lines[0]
    assert "attribute '--manifest': %r" % str(mpath) in lines[0], lines[0]
    assert not out.exists(), "a failed run left its output behind"


def test_cli_missing_flag_is_a_usage_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-m", "python_tools.deb", "--output", str(tmp_path / "o.tar")],
                         cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    assert res.returncode == 2 and res.stderr == "ERROR: deb: missing required flag: --manifest\n"


DEP5 = b"""Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: bar

Files: *
Copyright: 2020 Someone
License: GPL-2+
 This program is free software.
 .
 More text.

Files: lib/*
Copyright: 2021 Other
License: LGPL-2.1+ or MIT
"""


def test_packages_inventory(tmp_path):
    """--packages: every package with version, source, sha256 and DEP-5 licences, and which
    package each non-directory member came from (also through a doc-directory symlink and for
    maintainer work done for a package)."""
    repo = Repo(tmp_path / "repo")
    libfoo(repo)  # copyright file is not machine-readable: no licences
    repo.add("libbar1", "2.0-1", [
        ("./usr/lib/libbar.so.1", "file", b"bar", 0o644),
        ("./usr/share/doc/libbar1", "symlink", "bar-common", 0o777),
    ], extra={"Source": "bar (2.0-1)"})
    repo.add("bar-common", "2.0-1", [
        ("./usr/share/doc/bar-common/copyright", "file", DEP5, 0o644),
    ], arch="all", extra={"Source": "bar"})
    mpath = tmp_path / "m.json"
    mpath.write_text(json.dumps(repo.manifest()))
    inv_path = tmp_path / "packages.json"
    res = run_cli(mpath, tmp_path / "out.tar", "--packages", str(inv_path))
    assert res.returncode == 0, res.stderr
    inv = json.loads(inv_path.read_text())
    by = {p["name"]: p for p in inv["packages"]}
    assert [p["name"] for p in inv["packages"]] == ["bar-common", "libbar1", "libfoo"]
    assert by["libbar1"]["source"] == "bar" and by["libbar1"]["version"] == "2.0-1"
    assert by["libbar1"]["licenses"] == ["GPL-2+", "LGPL-2.1+ or MIT"]  # through the symlink
    assert by["bar-common"]["architecture"] == "all"
    assert by["libfoo"]["licenses"] == [] and by["libfoo"]["source"] == "libfoo"
    locked = {e["name"]: e for e in repo.entries}
    for name, p in by.items():
        assert p["sha256"] == locked[name]["sha256"]
        assert p["filename"] == locked[name]["path"]
    assert inv["architecture"] == "amd64" and inv["suites"] == ["bookworm", "bookworm-security"]
    files = inv["files"]
    assert files["/usr/lib/libbar.so.1"] == "libbar1"
    assert files["/usr/share/doc/libbar1"] == "libbar1"
    assert files["/usr/bin/foo-again"] == "libfoo"
    assert files["/var/lib/dpkg/status.d/libfoo"] == "libfoo"
    assert "/usr/lib" not in files and "/usr/share/man/man1/foo.1.gz" not in files
    # Every non-directory member of the tar is attributed.
    with tarfile.open(str(tmp_path / "out.tar")) as tf:
        assert sorted(files) == sorted("/" + m.name for m in tf.getmembers() if not m.isdir())


def _many(repo, n=6):
    for i in range(n):
        repo.add("pkg%d" % i, "1", [("./usr/share/p%d/data" % i, "file", os.urandom(3000) * 50, 0o644),
                                    ("./usr/bin/p%d" % i, "file", b"#!p\n", 0o755)])


def test_packages_read_ahead_on_threads_give_the_same_bytes(tmp_path, monkeypatch):
    """.debs are read, checked and decompressed ahead of the caller on two threads when there
    are cores for it: the tar is the same as read one by one."""
    from python_tools.shiko.debian import debfile
    repo = Repo(tmp_path / "repo")
    _many(repo)
    manifest = repo.manifest()
    threaded = []
    real_pool = debfile.threads_mod.Pool

    def pool(n):
        threaded.append(n)
        return real_pool(n)
    monkeypatch.setattr(debfile.threads_mod, "Pool", pool)
    build_tar(manifest, str(tmp_path / "threads.tar"))
    assert threaded == [2]
    monkeypatch.setattr(debfile.threads_mod, "usable_cores", lambda: 1)  # one core
    build_tar(manifest, str(tmp_path / "one.tar"))
    assert threaded == [2]
    assert sha256_file(str(tmp_path / "threads.tar")) == sha256_file(str(tmp_path / "one.tar"))


def test_errors_come_in_package_order_when_read_ahead(tmp_path):
    """A later package's problem (tampered, not a .deb, corrupt data.tar) found by the threads
    reading ahead never hides an earlier package's: errors name the first bad package in the
    manifest's order, as when read one by one; a tampered .deb is never decompressed."""
    repo = Repo(tmp_path / "repo")
    repo.add("armlib", "1", [("./usr/lib/x", "file", b"x", 0o644)], arch="arm64")
    _many(repo, 3)
    bad = os.path.join(repo.root, "amd64", "pkg2.deb")
    with open(bad, "r+b") as f:  # corrupt the end of data.tar.xz, sha256 updated: a corrupt .deb
        f.seek(-40, os.SEEK_END)
        f.write(b"\0" * 40)
    repo.entries[-1]["sha256"] = sha256_file(bad)[0]
    err = errors_of(repo.manifest(), tmp_path / "out.tar")
    assert "'armlib': armlib 1: built for arm64, the image is amd64" in err
    # Without armlib, the corrupt one is the first problem.
    err = errors_of(repo.manifest(names=["pkg0", "pkg1", "pkg2"]), tmp_path / "out.tar")
    assert err.startswith("ERROR: %s: attribute 'packages': 'pkg2': " % TARGET), err
    assert not os.path.exists(str(tmp_path / "out.tar"))


def test_a_tampered_deb_is_never_decompressed(tmp_path, monkeypatch):
    from python_tools.shiko.debian import debfile
    from python_tools.shiko.errors import UserError
    repo = Repo(tmp_path / "repo")
    _many(repo, 3)
    with open(os.path.join(repo.root, "amd64", "pkg1.deb"), "r+b") as f:
        f.seek(-10, os.SEEK_END)
        f.write(b"0123456789")
    seen = []
    real = debfile.data_tar
    monkeypatch.setattr(debfile, "data_tar", lambda members, what: seen.append(what) or real(members, what))
    with pytest.raises(UserError, match="'pkg1': pkg1.deb has sha256"):
        build_tar(repo.manifest(), str(tmp_path / "out.tar"))
    assert "pkg1 1" not in seen and "pkg0 1" in seen


def _with_plain_members(repo, manifest):
    """The manifest with each package's control.tar and data.tar decompressed instead of its
    .deb (as deb_repository keeps them when the lock pins them), and the index pinning them."""
    from python_tools.shiko.debian import debfile
    for e in repo.entries:
        with open(os.path.join(repo.root, repo.arch, e["name"] + ".deb"), "rb") as f:
            control, data = debfile.plain_members(f.read(), e["name"])
        for member, raw in (("control", control), ("data", data)):
            with open(os.path.join(repo.root, repo.arch, "%s.%s.tar" % (e["name"], member)), "wb") as f:
                f.write(raw)
            e[member + "_sha256"] = hashlib.sha256(raw).hexdigest()
    manifest = dict(manifest, index=repo.index())
    manifest["debs"] = [{"name": d["name"], "control": d["src"][:-len(".deb")] + ".control.tar",
                         "data": d["src"][:-len(".deb")] + ".data.tar"} for d in manifest["debs"]]
    return manifest


def test_plain_members_pinned_by_the_lock_stand_for_the_deb(tmp_path, monkeypatch):
    """A package's control.tar and data.tar kept decompressed instead of its .deb (deb_repository,
    when the lock pins them) give the same tar as the .deb, and nothing is decompressed; a
    member with other bytes is an error naming the package, the file and both digests; a
    package with neither a .deb nor pinned members is an error."""
    from python_tools.shiko.debian import debfile
    from python_tools.shiko.errors import UserError
    repo = Repo(tmp_path / "repo")
    _many(repo, 3)
    libfoo(repo)
    plain = repo.manifest()
    build_tar(plain, str(tmp_path / "from_xz.tar"))
    manifest = _with_plain_members(repo, plain)
    for e in repo.entries:
        os.remove(os.path.join(repo.root, "amd64", e["name"] + ".deb"))  # not needed any more
    seen = []
    real = debfile.data_tar
    monkeypatch.setattr(debfile, "data_tar", lambda members, what: seen.append(what) or real(members, what))
    real_decompress = debfile.compression.decompress
    monkeypatch.setattr(debfile.compression, "decompress", lambda blob, fmt, what="": (
        real_decompress(blob, fmt, what) if fmt == "plain" else pytest.fail("decompressed %s: %s" % (fmt, what))))
    build_tar(manifest, str(tmp_path / "from_plain.tar"))
    assert seen == []
    assert sha256_file(str(tmp_path / "from_plain.tar")) == sha256_file(str(tmp_path / "from_xz.tar"))
    monkeypatch.undo()

    # Other bytes than the lock's: an error, nothing written.
    for member, offset in (("data", 600), ("control", 200)):
        bad = os.path.join(repo.root, "amd64", "pkg1.%s.tar" % member)
        with open(bad, "rb") as f:
            good = f.read()
        with open(bad, "r+b") as f:
            f.seek(offset)
            f.write(b"tampered")
        pinned = [e["%s_sha256" % member] for e in repo.entries if e["name"] == "pkg1"][0]
        with pytest.raises(UserError) as e:
            build_tar(manifest, str(tmp_path / "bad.tar"))
        msg = str(e.value)
        assert "'pkg1'" in msg and "pkg1.%s.tar has sha256 %s" % (member, sha256_file(bad)[0]) in msg, msg
        assert "the lock's %s_sha256 is %s" % (member, pinned) in msg, msg
        assert not os.path.exists(str(tmp_path / "bad.tar"))
        with open(bad, "wb") as f:
            f.write(good)

    # A lock without the pins (older locks) and no .deb: an error naming the package.
    for e in repo.entries:
        del e["data_sha256"]
    manifest["index"] = repo.index()
    with pytest.raises(UserError, match="'pkg0': pkg0 1: no .deb, and no plain control.tar and "
                       "data.tar pinned by the lock"):
        build_tar(manifest, str(tmp_path / "old_lock.tar"))


def _layer_cli(tmp_path, entries, name, *extra):
    """Runs the layer tool (python -m python_tools.layer) on a gzip layer of `entries`:
    (process, {output: path})."""
    m = {"target": "//pkg:base_libs", "compression": "gzip", "compression_level": None, "mtime": 0,
         "defaults": {"file_mode": None, "dir_mode": "0755", "uid": 0, "gid": 0}, "overrides": {},
         "entries": entries}
    mpath = tmp_path / (name + ".layer_manifest.json")
    mpath.write_text(json.dumps(m))
    out = {k: str(tmp_path / (name + ext)) for k, ext in (
        ("output", ".tar.gz"), ("descriptor", ".layer.json"), ("listing", ".listing.json"))}
    args = ["--manifest", str(mpath)] + ["--%s=%s" % kv for kv in sorted(out.items())] + list(extra)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-m", "python_tools.layer"] + args, cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return res, out


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_a_layer_unpacking_the_packages_itself_writes_the_same_bytes_and_inventory(tmp_path):
    """A layer's `debs` entry (deb_layer: no intermediate tar for Bazel) gives the layer, listing
    and inventory that the deb tool's tar imported as a `tar` entry gives; a bad package is the
    deb tool's one-line error naming the deb_tar, and the layer tool leaves no output."""
    repo = Repo(tmp_path / "repo")
    _many(repo, 3)
    libfoo(repo)
    with open(os.path.join(repo.root, "amd64", "libfoo.deb"), "rb") as f:
        assert b"data.tar.xz" in f.read()
    dm = tmp_path / "deb_manifest.json"
    dm.write_text(json.dumps(repo.manifest()))
    res = run_cli(dm, tmp_path / "deb.tar", "--packages", str(tmp_path / "deb.packages.json"))
    assert res.returncode == 0, res.stderr
    origin = {"attr": "tars", "label": TARGET}
    res, via_tar = _layer_cli(tmp_path, [{"kind": "tar", "dest": "", "src": str(tmp_path / "deb.tar"),
                                          "origin": origin}], "via_tar")
    assert res.returncode == 0, res.stderr
    inventory = str(tmp_path / "direct.packages.json")
    debs = [{"kind": "debs", "dest": "", "manifest": str(dm), "origin": origin}]
    res, direct = _layer_cli(tmp_path, debs, "direct", "--packages=" + inventory)
    assert res.returncode == 0, res.stderr
    for k in ("output", "descriptor", "listing"):
        assert _read(direct[k]) == _read(via_tar[k]), k
    assert _read(inventory) == _read(str(tmp_path / "deb.packages.json"))
    assert json.loads(_read(inventory))["files"]["/usr/bin/foo"] == "libfoo"

    # A tampered .deb: the deb tool's error, naming the deb_tar; nothing left behind.
    with open(os.path.join(repo.root, "amd64", "pkg1.deb"), "r+b") as f:
        f.seek(-10, os.SEEK_END)
        f.write(b"0123456789")
    res, bad = _layer_cli(tmp_path, debs, "bad", "--packages=" + str(tmp_path / "bad.packages.json"))
    assert res.returncode == 1
    assert res.stderr.startswith("ERROR: %s: attribute 'packages': 'pkg1': pkg1.deb has sha256 " % TARGET), res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    left = [p for p in list(bad.values()) + [str(tmp_path / "bad.packages.json")] if os.path.exists(p)]
    assert not left, left
    assert not [n for n in os.listdir(str(tmp_path)) if n.startswith(".layer-import-")]

    # --packages with no debs entry to take the inventory from.
    res, _ = _layer_cli(tmp_path, [{"kind": "tar", "dest": "", "src": str(tmp_path / "deb.tar"),
                                    "origin": origin}], "no_debs", "--packages=" + str(tmp_path / "x.json"))
    assert res.returncode == 1
    assert "--packages needs exactly one `debs` entry, the manifest has 0" in res.stderr, res.stderr


def test_read_ahead_is_bounded_and_in_order(monkeypatch):
    """load_all loads at most `ahead` .debs beyond the one the caller is at, and yields them in
    the manifest's order; closing it early cancels what is queued."""
    import threading
    import time
    from python_tools.shiko.debian import debfile
    started = []
    lock = threading.Lock()

    def load(src, entry, data_src=None, control_src=None):
        with lock:
            started.append(src)
        time.sleep(0.005 * (len(src) % 3))  # finish out of order
        return src
    monkeypatch.setattr(debfile, "load", load)
    monkeypatch.setattr(debfile.threads_mod, "usable_cores", lambda: 2)
    debs = [{"name": "p%d" % i, "src": "p%d.deb" % i} for i in range(12)]
    locked = {d["name"]: {} for d in debs}
    got = []
    for k, (deb, loaded) in enumerate(debfile.load_all(debs, locked, ahead=3)):
        assert loaded == deb["src"]
        with lock:
            assert len(started) <= 3 + k + 1, (k, started)
        got.append(loaded)
    assert got == [d["src"] for d in debs]

    # Closing early: p1 and p2 hold both threads until the close has begun, so p3 (submitted
    # when p0 was taken) is still queued then; it must be cancelled, never started.
    started[:] = []
    release = threading.Event()

    def held(src, entry, data_src=None, control_src=None):
        with lock:
            started.append(src)
        if src != "p0.deb":
            release.wait(5)
        return src
    monkeypatch.setattr(debfile, "load", held)
    gen = debfile.load_all(debs, locked, ahead=3)
    assert next(gen)[1] == "p0.deb"
    deadline = time.monotonic() + 5
    while len(started) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    timer = threading.Timer(0.1, release.set)
    timer.start()
    gen.close()
    timer.join()
    assert sorted(started) == ["p0.deb", "p1.deb", "p2.deb"], started


def test_a_symlink_with_an_empty_target_in_a_package_layer_is_one_line(tmp_path):
    """A package's symlink with an empty target, in a layer's `debs` entry: the layer tool's
    one-line error naming the target, the attribute and the path, and no output left."""
    repo = Repo(tmp_path / "repo")
    repo.add("dangling", "1", [("./usr/lib/empty-link", "symlink", "", 0o777),
                               ("./usr/lib/ok", "file", b"ok", 0o644)])
    dm = tmp_path / "deb_manifest.json"
    dm.write_text(json.dumps(repo.manifest()))
    origin = {"attr": "packages", "label": TARGET}
    res, out = _layer_cli(tmp_path, [{"kind": "debs", "dest": "", "manifest": str(dm),
                                      "origin": origin}], "empty_link")
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("ERROR: //pkg:base_libs: attribute 'packages': "), lines[0]
    assert "symlink with an empty target (in %s)" % TARGET in lines[0], lines[0]
    assert "usr/lib/empty-link" in lines[0], lines[0]
    assert not [p for p in out.values() if os.path.exists(p)]
