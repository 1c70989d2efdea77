"""The tools' own Python: CPython from locked Debian packages, laid out to start through its own
dynamic loader, so an action needs nothing from the machine (or remote worker) but a kernel and
`/bin/sh` (issue #16; rules/private/repo/tool_python.bzl, python_tools/interpreter/README.md).

Two steps, both run by the repository rule on the client:

    assemble(debs, out)        # any python3 of the host: unpacks the .debs into `out`
    write_stdlib_zip(out)      # the unpacked interpreter itself (its own bytecode format)

The layout of `out` (every file a plain file: symlinks of the packages are resolved):

    bin/python3.X                  the interpreter
    lib/ld-linux-<cpu>.so.N        the dynamic loader, started as the program:
                                   `lib/ld-… --library-path lib bin/python3.X -I -S …`
    lib/*.so*                      every shared library of the packages (lib/<triplet>/ and
                                   usr/lib/<triplet>/, top level only), but SKIPPED_LIBRARIES
    lib/python3.X/lib-dynload/     the standard library's extension modules, but SKIPPED_MODULES
    lib/python3XY.zip              the standard library's modules: each .py with its .pyc
                                   (unchecked-hash, so no timestamps), in one file; Python puts
                                   this zip first on sys.path and finds its prefix by it

One zip instead of ~600 module files keeps each action's input list (and a remote worker's
input tree) short. Everything is deterministic: sorted members, fixed times and modes.
"""

import os
import posixpath
import shutil
import tarfile

from python_tools.shiko.debian.debfile import data_members, read_ar
from python_tools.shiko.files import sha256_file

# Parts of the standard library no tool can use (GUIs, test suites, installers, the 2to3
# translator, and the modules of the extension modules left out below): left out of the zip.
SKIPPED = ("idlelib/", "tkinter/", "turtledemo/", "lib2to3/", "ensurepip/", "test/",
           "site-packages/", "dist-packages/", "lib-dynload/", "__pycache__/",
           "sqlite3/", "curses/", "dbm/", "pydoc_data/", "turtle.py")

# Extension modules no tool imports, with the libraries only they need: Berkeley DB, SQLite,
# curses and readline (terminals), NIS (and the Kerberos libraries it pulls in), crypt(3), the
# audio modules, the CJK codecs (the tools read and write UTF-8) and CPython's own test
# modules. Every byte of the layout is copied, extracted and hashed by Bazel in each new output
# base (a quarter of it was these). Any other module or library, glibc's included (a wheel
# may need any of them, and glibc loads NSS modules and libgcc_s itself), stays.
SKIPPED_MODULES = frozenset((
    "_dbm", "_gdbm", "_sqlite3", "_curses", "_curses_panel", "readline", "nis", "_crypt",
    "audioop", "ossaudiodev", "_multibytecodec", "_codecs_cn", "_codecs_hk", "_codecs_iso2022",
    "_codecs_jp", "_codecs_kr", "_codecs_tw", "_ctypes_test", "_testbuffer", "_testcapi",
    "_testclinic", "_testimportmultiple", "_testinternalcapi", "_testmultiphase",
    "_testsinglephase", "_xxsubinterpreters", "_xxtestfuzz", "xxlimited", "xxlimited_35",
    "xxsubtype", "_tkinter",
))
SKIPPED_LIBRARIES = frozenset((
    "libdb-5.3.so", "libsqlite3.so.0", "libncursesw.so.6", "libncurses.so.6", "libtinfo.so.6",
    "libformw.so.6", "libform.so.6", "libmenuw.so.6", "libmenu.so.6", "libpanelw.so.6",
    "libpanel.so.6", "libtic.so.6", "libreadline.so.8", "libhistory.so.8", "libnsl.so.2",
    "libtirpc.so.3", "libgssapi_krb5.so.2", "libkrb5.so.3", "libk5crypto.so.3",
    "libkrb5support.so.0", "libcom_err.so.2", "libkeyutils.so.1", "libcrypt.so.1",
    "libexpatw.so.1", "libc_malloc_debug.so.0", "libmemusage.so", "libpcprofile.so",
    "libBrokenLocale.so.1", "libthread_db.so.1",
))


class Tree:
    """The data.tar members of several .debs, merged: files by path, symlinks by path."""

    def __init__(self):
        self.files = {}     # path -> bytes
        self.links = {}     # path -> symlink target (as written in the package)

    def add_deb(self, path):
        """The package's data members (read as the `deb` tool reads them: unsafe names, special
        files and dangling hardlinks are ValueErrors)."""
        with open(path, "rb") as f:
            data = f.read()
        what = os.path.basename(path)
        members, _ = read_ar(data, what)
        for p, e in data_members(members, what, keep_docs=True):
            if e.kind == "file":
                self.files[p] = e.data
            elif e.kind == "hardlink":
                self.files[p] = self.files[e.target]
            elif e.kind == "symlink":
                self.links[p] = e.target

    def resolve(self, path, depth=0):
        """The regular file `path` names after following symlinks (None if none)."""
        if depth > 16:
            return None
        if path in self.files:
            return path
        # A symlink on the path itself, or on one of its directories (/lib -> usr/lib merges).
        parts = path.split("/")
        for i in range(len(parts), 0, -1):
            head = "/".join(parts[:i])
            if head in self.links:
                target = self.links[head]
                base = "" if target.startswith("/") else posixpath.dirname(head)
                joined = posixpath.normpath(posixpath.join(base, target.lstrip("/")))
                rest = "/".join(parts[i:])
                return self.resolve(posixpath.join(joined, rest) if rest else joined, depth + 1)
        return None

    def listdir(self, directory):
        """Names directly in `directory` (files and symlinks)."""
        prefix = directory.rstrip("/") + "/"
        out = set()
        for p in list(self.files) + list(self.links):
            if p.startswith(prefix) and "/" not in p[len(prefix):]:
                out.add(p[len(prefix):])
        return sorted(out)


def _write(path, data, mode):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def python_version(tree):
    """"3.11" from the package's usr/bin/python3.X."""
    found = [n for n in tree.listdir("usr/bin") if n.startswith("python3.") and n[8:].isdigit()]
    if len(found) != 1:
        raise ValueError("expected one usr/bin/python3.X in the packages, found %s" % (found or "none"))
    return found[0][len("python"):]


def assemble(debs, out, triplet):
    """Unpacks `debs` into `out` (see the module docstring); returns the Python version."""
    tree = Tree()
    for d in debs:
        tree.add_deb(d)
    version = python_version(tree)
    py = "python" + version
    exe = tree.resolve("usr/bin/" + py)
    _write(os.path.join(out, "bin", py), tree.files[exe], 0o755)
    for directory in ("lib/" + triplet, "usr/lib/" + triplet):
        names = [n for n in tree.listdir(directory) if ".so" in n]
        # A library is loaded by its soname, the symlink to the versioned file: keep the names
        # that symlinks give, and files no symlink names.
        linked = set(tree.resolve(directory + "/" + n) for n in names if directory + "/" + n in tree.links)
        for name in names:
            path = directory + "/" + name
            real = tree.resolve(path)
            if real is None:
                continue  # a development symlink to a file no package here ships
            if path not in tree.links and path in linked:
                continue
            if name in SKIPPED_LIBRARIES:
                continue
            _write(os.path.join(out, "lib", name), tree.files[real], 0o755)
    if not any(n.startswith("ld-linux") for n in os.listdir(os.path.join(out, "lib"))):
        raise ValueError("no dynamic loader (lib/%s/ld-linux-*) in the packages: is libc6 locked?" % triplet)
    stdlib = "usr/lib/" + py + "/"
    for name in tree.listdir(stdlib + "lib-dynload"):
        real = tree.resolve(stdlib + "lib-dynload/" + name)
        if name.split(".")[0] in SKIPPED_MODULES:
            continue
        if real is not None:
            _write(os.path.join(out, "lib", py, "lib-dynload", name), tree.files[real], 0o755)
    sources = os.path.join(out, "_stdlib")
    for p in sorted(set(tree.files) | set(tree.links)):
        if not p.startswith(stdlib) or not p.endswith(".py"):
            continue
        rel = p[len(stdlib):]
        if rel == "sitecustomize.py" or any(rel.startswith(s) or "/" + s in rel for s in SKIPPED):
            continue
        real = tree.resolve(p)
        if real is not None:
            _write(os.path.join(sources, rel), tree.files[real], 0o644)
    return version


def write_stdlib_zip(out, version, compile_pyc=True):
    """Writes lib/pythonXY.zip (`version` "X.Y") from `out`/_stdlib (then removed): run by the
    interpreter the zip is for (its bytecode format); with compile_pyc False (another CPU's
    interpreter, which can't run here), sources only, by any python3."""
    import sys

    from python_tools.interpreter import pyzip

    sources = os.path.join(out, "_stdlib")
    if compile_pyc and version != "%d.%d" % sys.version_info[:2]:
        raise ValueError("the bytecode of Python %s must be made by Python %s, not %d.%d" %
                         (version, version, sys.version_info[0], sys.version_info[1]))
    members = []
    for root, dirs, files in os.walk(sources):
        for f in files:
            full = os.path.join(root, f)
            members.append((os.path.relpath(full, sources).replace(os.sep, "/"), full))
    target = pyzip.write(os.path.join(out, "lib", "python%s.zip" % version.replace(".", "")), members, compile_pyc)
    shutil.rmtree(sources)
    return target


def write_layout_tar(out, target):
    """A deterministic tar of the layout in `out` (what the repository rule keeps in Bazel's
    repository cache, by sha256): sorted, uid/gid 0, mtime 0, modes 0755/0644. Returns its
    sha256."""
    paths = []
    for root, _, files in os.walk(out):
        for f in files:
            full = os.path.join(root, f)
            rel = os.path.relpath(full, out).replace(os.sep, "/")
            if rel.startswith(("bin/", "lib/")):
                paths.append((rel, full))
    paths.sort()
    with tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as tf:
        for rel, full in paths:
            st = os.stat(full)
            info = tarfile.TarInfo(rel)
            info.size = st.st_size
            info.mode = 0o755 if st.st_mode & 0o100 else 0o644
            info.mtime = 0
            with open(full, "rb") as f:
                tf.addfile(info, f)
    return sha256_file(target)[0]


