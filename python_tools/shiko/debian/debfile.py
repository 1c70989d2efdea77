"""Reading .deb files: the ar container, control.tar and data.tar (any compression dpkg
writes), checked against the lock's sha256 before anything in them is decompressed.

    for deb, loaded in load_all(manifest_debs, locked):   # read ahead, in order
        entries = data_members(loaded.members, what, keep_docs, loaded.data)

A lock entry may also pin the .deb's control.tar and data.tar decompressed (`control_sha256`,
`data_sha256`, written by deb_lock): deb_repository then keeps those plain tars in Bazel's
repository cache instead of the .deb, and `load` reads them (each checked by its sha256): no
xz to decompress, the largest part of a cold build's package work. (Bazel copies and hashes
~3.6x the bytes of the .debs then, which costs less than the xz.) They are the locked .deb's
by construction: deb_lock and deb_repository make them from a .deb checked against the
lock's sha256.

Used by unpack.py (package groups) and interpreter.py (the tools' Python).
"""

import collections
import io
import stat
import tarfile

from python_tools.shiko import threads as threads_mod
from python_tools.shiko.debian import deb822
from python_tools.shiko.debian.errors import DebError
from python_tools.shiko.files import sha256_hex
from python_tools.shiko.tar import compression
from python_tools.shiko.tar import memtar
from python_tools.shiko.tar import names

CONTROL_FIELDS = frozenset(("Package", "Version", "Architecture", "Source"))

DROPPED_TREES = (
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "usr/share/doc-base",
)


class Entry:
    """One member of the output: kind file|dir|symlink|hardlink."""

    __slots__ = ("kind", "mode", "uid", "gid", "data", "target", "pkg")

    def __init__(self, kind, mode, uid=0, gid=0, data=b"", target="", pkg=""):
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.data = data
        self.target = target
        self.pkg = pkg


# --- reading a .deb ----------------------------------------------------------------------------

def read_ar(data, what):
    """{member name: bytes} of a Debian `ar` archive (common and GNU name formats)."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("%s is not a .deb (no ar archive header)" % what)
    pos = 8
    out = {}
    order = []
    while pos < len(data):
        if pos + 60 > len(data):
            raise ValueError("%s: truncated ar header at byte %d" % (what, pos))
        header = data[pos:pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError("%s: bad ar member header at byte %d" % (what, pos))
        name = header[0:16].decode("ascii", "replace").strip()
        if name.endswith("/"):
            name = name[:-1]
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise ValueError("%s: bad ar member size at byte %d" % (what, pos))
        start = pos + 60
        if start + size > len(data):
            raise ValueError("%s: truncated ar member %r" % (what, name))
        out[name] = data[start:start + size]
        order.append(name)
        pos = start + size + (size & 1)
    return out, order


def _decompress(name, blob, what):
    """The plain tar bytes of a control.tar.* / data.tar.* member (format from its suffix)."""
    fmt = compression.suffix_format(name)
    if fmt is None:
        raise ValueError("%s: unsupported member %r" % (what, name))
    return compression.decompress(blob, fmt, what)


def _member(members, prefix, what):
    found = [n for n in members if n == prefix or n.startswith(prefix + ".")]
    if len(found) != 1:
        raise ValueError("%s: expected one %s.* member, found %s" % (what, prefix, found or "none"))
    return found[0]


def _norm(name):
    """Member name without "./" and trailing "/" (shiko/tar/names.py); "" for the root; None if
    unsafe (absolute, "..")."""
    try:
        return names.normalize(name, allow_absolute=False)
    except names.BadName:
        return None


def _tar_members(raw):
    """(members, read) of a plain tar in memory: memtar's fast reader's, or tarfile's when it
    declines the tar (read(m) -> the bytes of a regular member)."""
    infos = memtar.members(raw)
    if infos is not None:
        return infos, lambda m: raw[m.offset_data:m.offset_data + m.size]
    tf = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    return tf.getmembers(), lambda m: tf.extractfile(m).read()


def read_control(members, what):
    cname = _member(members, "control.tar", what)
    raw = _decompress(cname, members[cname], what)
    infos, read = _tar_members(raw)
    for m in infos:
        if _norm(m.name) == "control" and m.isreg():
            return read(m).decode("utf-8", "replace")
    raise ValueError("%s: control.tar has no control file" % what)


def parse_control(text):
    """The Package, Version and Architecture fields of a control file (its first paragraph)."""
    stanzas = deb822.parse_stanzas(text, fields=CONTROL_FIELDS)
    return stanzas[0] if stanzas else {}


def status_record(control_text):
    """The control paragraph with `Status: install ok installed` after its Package line."""
    lines = control_text.rstrip("\n").split("\n")
    out = []
    for line in lines:
        if not line.strip():
            break
        out.append(line)
        if line.startswith("Package:"):
            out.append("Status: install ok installed")
    return ("\n".join(out) + "\n").encode("utf-8")


def _dropped(path):
    for t in DROPPED_TREES:
        if path == t or path.startswith(t + "/"):
            return True
    if path.startswith("usr/share/doc/"):
        parts = path.split("/")
        if len(parts) == 4:
            return False  # usr/share/doc/<pkg> (directory or symlink)
        if len(parts) == 5 and parts[4] == "copyright":
            return False
        return True
    return False


def data_tar(members, what):
    """(member name, plain tar bytes) of a .deb's data.tar.*."""
    dname = _member(members, "data.tar", what)
    return dname, _decompress(dname, members[dname], what)


def plain_members(blob, what):
    """(control.tar, data.tar) of a .deb, decompressed: what a lock's `control_sha256` and
    `data_sha256` pin."""
    members, _ = read_ar(blob, what)
    cname = _member(members, "control.tar", what)
    return _decompress(cname, members[cname], what), data_tar(members, what)[1]


def data_members(members, what, keep_docs, data=None):
    """[(path, Entry)] of a .deb's data.tar, in archive order (`data`: data_tar's result when
    it was already taken)."""
    dname, raw = data or data_tar(members, what)
    out = []
    contents = {}  # path -> bytes of regular files (for hardlinks to dropped files)
    kept = set()
    infos, read = _tar_members(raw)
    for m in infos:
        path = _norm(m.name)
        if path is None:
            raise ValueError("%s: unsafe member name %r in %s" % (what, m.name, dname))
        if path == "":
            continue
        mode = stat.S_IMODE(m.mode)
        if m.isdir():
            e = Entry("dir", mode, m.uid, m.gid)
        elif m.isreg():
            data = read(m)
            contents[path] = (data, mode, m.uid, m.gid)
            e = Entry("file", mode, m.uid, m.gid, data=data)
        elif m.issym():
            e = Entry("symlink", 0o777, m.uid, m.gid, target=m.linkname)
        elif m.islnk():
            target = _norm(m.linkname)
            if target is None or target not in contents:
                raise ValueError("%s: hardlink %r -> %r whose target is not a file of the "
                                 "package" % (what, m.name, m.linkname))
            if target in kept or keep_docs or not _dropped(target):
                e = Entry("hardlink", mode, m.uid, m.gid, target=target)
            else:
                data, tmode, tuid, tgid = contents[target]
                e = Entry("file", tmode, tuid, tgid, data=data)
            contents[path] = contents[target]
        else:
            raise ValueError("%s: member %r is a device, FIFO or another special file" %
                             (what, m.name))
        if not keep_docs and _dropped(path):
            continue
        kept.add(path)
        out.append((path, e))
    return out


class Loaded(object):
    """One .deb read: its sha256 and size, and when it is the locked file, its ar members and
    data.tar (or the error reading them raised; raised in turn when the caller uses them)."""

    __slots__ = ("sha256", "size", "members", "ar_error", "data", "data_error")

    def __init__(self, sha256, size):
        self.sha256 = sha256
        self.size = size
        self.members = self.ar_error = self.data = self.data_error = None


def load(src, lock, data_src=None, control_src=None):
    """Reads one .deb, checks its sha256 and, only when it is the locked file, splits it and
    decompresses its data.tar (xz: most of a package group's time). Without the .deb (`src`
    None), its plain control.tar and data.tar (deb_repository's `<package>.control.tar` and
    `.data.tar`), each checked against the lock's pin (`control_sha256`, `data_sha256`), stand
    for it."""
    if src is None:
        return _load_plain(lock, control_src, data_src)
    with open(src, "rb") as f:
        blob = f.read()
    out = Loaded(sha256_hex(blob), len(blob))
    if out.sha256 != lock["sha256"]:
        return out  # never decompressed: not the file the lock pins
    what = "%s %s" % (lock["name"], lock["version"])
    try:
        out.members, _ = read_ar(blob, what)
    except ValueError as e:
        out.ar_error = e
        return out
    try:
        out.data = data_tar(out.members, what)
    except (tarfile.TarError, DebError) + compression.errors() as e:  # ValueError included
        out.data_error = e
    return out


def _load_plain(lock, control_src, data_src):
    what = "%s %s" % (lock["name"], lock["version"])
    out = Loaded(lock["sha256"], lock.get("size", 0))  # the locked .deb's members, by their pins
    try:
        if not (control_src and data_src and lock.get("control_sha256") and lock.get("data_sha256")):
            raise ValueError("%s: no .deb, and no plain control.tar and data.tar pinned by the lock" % what)
        out.members = {"control.tar": _pinned(control_src, lock, "control_sha256", what)}
    except ValueError as e:
        out.ar_error = e
        return out
    try:
        out.data = (data_src.rsplit("/", 1)[-1], _pinned(data_src, lock, "data_sha256", what))
    except ValueError as e:
        out.data_error = e
    return out


def _pinned(src, lock, key, what):
    """The bytes of a plain member file, checked against the lock's `key` (sha256); a
    ValueError when it cannot be read or has other bytes."""
    try:
        with open(src, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError("%s: %s" % (what, e))
    digest = sha256_hex(raw)
    if digest != lock[key]:
        raise ValueError("%s: %s has sha256 %s (%d bytes), the lock's %s is %s: not the locked "
                         "package's (tampered or corrupt); fetch it again" % (
                             what, src.rsplit("/", 1)[-1], digest, len(raw), key, lock[key]))
    return raw


def load_all(debs, locked, ahead=4):
    """Yields (deb, Loaded) for each manifest entry of `debs`, in order. With more than one .deb
    and more than one core, up to `ahead` of them are loaded (`load`) ahead of the caller on two
    threads (liblzma releases the GIL: the next packages decompress while this one is parsed;
    the output does not depend on it, and memory holds at most `ahead` data.tars more). Close
    the generator when stopping early: queued loads are cancelled."""
    if len(debs) < 2 or threads_mod.usable_cores() < 2:
        for d in debs:
            yield d, load(d.get("src"), locked[d["name"]], d.get("data"), d.get("control"))
        return
    pool = threads_mod.Pool(2)
    try:
        todo = iter(debs)
        tasks = collections.deque()
        for d in todo:
            tasks.append((d, pool.submit(load, d.get("src"), locked[d["name"]], d.get("data"),
                                         d.get("control"))))
            if len(tasks) == ahead:
                break
        while tasks:
            d, task = tasks.popleft()
            for nxt in todo:
                tasks.append((nxt, pool.submit(load, nxt.get("src"), locked[nxt["name"]],
                                               nxt.get("data"), nxt.get("control"))))
                break
            yield d, task.result()
    finally:
        pool.shutdown(cancel=True)
