"""The tools' own Python laid out from .debs (shiko/debian/interpreter.py, tool_python.py),
on .debs built by the test: what goes where, symlinks resolved, sonames kept, the stdlib zip
deterministic with unchecked-hash bytecode, and clear errors."""

import importlib.util
import os
import stat
import subprocess
import sys
import zipfile

import pytest

from python_tools.interpreter import pyzip
from python_tools.shiko.debian import interpreter
from python_tools.tests.debian_fixtures import make_deb

TRIPLET = "x86_64-linux-gnu"
VERSION = "%d.%d" % sys.version_info[:2]
PY = "python" + VERSION
TOOL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tool_python.py")


def _debs(tmp_path, loader=True):
    libc = [("./lib/%s/libc.so.6" % TRIPLET, "file", b"\x7fELF libc", 0o755)]
    if loader:
        libc.append(("./lib/%s/ld-linux-x86-64.so.2" % TRIPLET, "file", b"\x7fELF ld", 0o755))
    libc.append(("./lib64/ld-linux-x86-64.so.2", "symlink", "/lib/%s/ld-linux-x86-64.so.2" % TRIPLET, 0o777))
    zlib = [
        ("./usr/lib/%s/libz.so.1.2.13" % TRIPLET, "file", b"\x7fELF zlib", 0o644),
        ("./usr/lib/%s/libz.so.1" % TRIPLET, "symlink", "libz.so.1.2.13", 0o777),
        # a development symlink to a file no package ships: skipped
        ("./usr/lib/%s/libfoo.so" % TRIPLET, "symlink", "libfoo.so.9", 0o777),
        ("./usr/lib/%s/pkgconfig/zlib.pc" % TRIPLET, "file", b"not a library", 0o644),
    ]
    std = "./usr/lib/%s/" % PY
    python = [
        ("./usr/bin/" + PY, "file", b"\x7fELF python", 0o755),
        (std + "os.py", "file", b"X = 1\n", 0o644),
        (std + "json/__init__.py", "file", b"from .decoder import *\n", 0o644),
        (std + "json/decoder.py", "file", b"def decode():\n    return 2\n", 0o644),
        (std + "_sysconfigdata__linux.py", "symlink", "../../share/%s/_sysconfigdata__linux.py" % PY, 0o777),
        ("./usr/share/%s/_sysconfigdata__linux.py" % PY, "file", b"build_time_vars = {}\n", 0o644),
        (std + "sitecustomize.py", "file", b"import debian_specific\n", 0o644),
        (std + "lib2to3/fixer.py", "file", b"x = 1\n", 0o644),
        (std + "test/test_os.py", "file", b"x = 1\n", 0o644),
        (std + "tkinter/__init__.py", "file", b"x = 1\n", 0o644),
        (std + "__pycache__/os.cpython-311.pyc", "file", b"stale", 0o644),
        (std + "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so", "file", b"\x7fELF _json", 0o644),
        (std + "lib-dynload/_lzma.so", "hardlink", std + "lib-dynload/_json.cpython-311-x86_64-linux-gnu.so", 0o644),
    ]
    out = []
    for name, members in (("libc6", libc), ("zlib1g", zlib), ("python", python)):
        path = str(tmp_path / "debs" / (name + ".deb"))
        make_deb(path, name, "1.0", members=members)
        out.append(path)
    return out


def _tree(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = os.lstat(p)
    return out


def test_layout(tmp_path):
    out = str(tmp_path / "out")
    assert interpreter.assemble(_debs(tmp_path), out, TRIPLET) == VERSION
    files = _tree(out)
    assert sorted(p for p in files if not p.startswith("_stdlib/")) == sorted([
        "bin/" + PY,
        "lib/ld-linux-x86-64.so.2",
        "lib/libc.so.6",
        "lib/libz.so.1",  # the soname, not libz.so.1.2.13 (the symlink names the library)
        "lib/%s/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so" % PY,
        "lib/%s/lib-dynload/_lzma.so" % PY,
    ])
    for rel, st in files.items():
        assert stat.S_ISREG(st.st_mode), rel  # plain files only: the packages' symlinks resolved
    with open(os.path.join(out, "lib/libz.so.1"), "rb") as f:
        assert f.read() == b"\x7fELF zlib"
    assert files["bin/" + PY].st_mode & 0o777 == 0o755
    stdlib = sorted(p[len("_stdlib/"):] for p in files if p.startswith("_stdlib/"))
    # sitecustomize (Debian's), 2to3, the test suite, tkinter and stale bytecode are left out;
    # the symlinked _sysconfigdata is stored as its content.
    assert stdlib == ["_sysconfigdata__linux.py", "json/__init__.py", "json/decoder.py", "os.py"]


def test_stdlib_zip_is_deterministic_with_unchecked_hash_bytecode(tmp_path):
    zips = []
    for n in (1, 2):
        out = str(tmp_path / ("out%d" % n))
        interpreter.assemble(_debs(tmp_path), out, TRIPLET)
        target = interpreter.write_stdlib_zip(out, VERSION)
        assert target == os.path.join(out, "lib", "python%d%d.zip" % sys.version_info[:2])
        assert not os.path.exists(os.path.join(out, "_stdlib"))
        with open(target, "rb") as f:
            zips.append(f.read())
    assert zips[0] == zips[1]
    with zipfile.ZipFile(target) as z:
        names = z.namelist()
        assert names == sorted(names)
        assert "json/decoder.pyc" in names and not [n for n in names if n.endswith(".py")]  # bytecode only
        assert {i.date_time for i in z.infolist()} == {pyzip.ZIP_TIME}
        pyc = z.read("json/decoder.pyc")
        assert pyc[:4] == importlib.util.MAGIC_NUMBER
        assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, not checked
        assert pyc[8:16] == importlib.util.source_hash(b"def decode():\n    return 2\n")


def test_zip_imports_from_the_bytecode(tmp_path):
    out = str(tmp_path / "out")
    interpreter.assemble(_debs(tmp_path), out, TRIPLET)
    target = interpreter.write_stdlib_zip(out, VERSION)
    code = "import sys; sys.path.insert(0, %r); import json.decoder as d; print(d.decode(), d.__spec__.cached)" % target
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split()[0] == "2"


def test_sources_only_for_another_cpu(tmp_path):
    out = str(tmp_path / "out")
    interpreter.assemble(_debs(tmp_path), out, TRIPLET)
    target = interpreter.write_stdlib_zip(out, "3.99", compile_pyc=False)
    with zipfile.ZipFile(target) as z:
        assert not [n for n in z.namelist() if n.endswith(".pyc")]
    assert target.endswith("python399.zip")


def test_bytecode_only_by_its_own_version(tmp_path):
    out = str(tmp_path / "out")
    interpreter.assemble(_debs(tmp_path), out, TRIPLET)
    with pytest.raises(ValueError, match="must be made by Python 3.99"):
        interpreter.write_stdlib_zip(out, "3.99")


def test_no_loader_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-I", "-S", TOOL, "assemble", "--out", str(tmp_path / "out"),
                          "--triplet", TRIPLET, "--target", "@py"] + ["--deb=" + d for d in _debs(tmp_path, loader=False)],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        "ERROR: @py: no dynamic loader (lib/%s/ld-linux-*) in the packages: is libc6 locked?" % TRIPLET]


def test_no_interpreter_is_one_line(tmp_path):
    path = str(tmp_path / "libc6.deb")
    make_deb(path, "libc6", "1.0", members=[("./lib/%s/libc.so.6" % TRIPLET, "file", b"x", 0o755)])
    res = subprocess.run([sys.executable, "-I", "-S", TOOL, "assemble", "--out", str(tmp_path / "out"),
                          "--triplet", TRIPLET, "--deb", path], capture_output=True, text=True)
    assert res.returncode == 1
    assert res.stderr.strip() == "ERROR: tool_python: expected one usr/bin/python3.X in the packages, found none"


def test_layout_tar_is_deterministic(tmp_path):
    shas = []
    for n in (1, 2):
        out = str(tmp_path / ("out%d" % n))
        interpreter.assemble(_debs(tmp_path), out, TRIPLET)
        interpreter.write_stdlib_zip(out, VERSION)
        os.utime(os.path.join(out, "lib", "libc.so.6"), (n * 1000, n * 1000))  # mtimes don't count
        shas.append(interpreter.write_layout_tar(out, str(tmp_path / ("l%d.tar" % n))))
    assert shas[0] == shas[1]
    import tarfile
    with tarfile.open(str(tmp_path / "l1.tar")) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names) and "bin/" + PY in names and "lib/python%d%d.zip" % sys.version_info[:2] in names
    modes = {m.name: m.mode for m in members}
    assert modes["bin/" + PY] == 0o755 and modes["lib/python%d%d.zip" % sys.version_info[:2]] == 0o644
    assert {(m.uid, m.gid, m.mtime) for m in members} == {(0, 0, 0)}
