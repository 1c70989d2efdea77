"""Writes one OCI image layer: a deterministic tar, compressed, with its descriptor.

Usage:
  layer.py --manifest=M.json --output=BLOB --descriptor=DESC.json [--listing=LIST.json]

On bad input it prints one line
`ERROR: <target>: attribute '<attr>': <value repr>: <problem>` on stderr, removes
--output, --descriptor and --listing, and exits 1.

Manifest (JSON, written by Starlark)
====================================

  {
    "target": "//pkg:name",
    "compression": "gzip" | "zstd" | "none",
    "compression_level": null | int,
    "mtime": 0,
    "defaults": {"file_mode": null | "0644", "dir_mode": "0755", "uid": 0, "gid": 0},
    "overrides": {"etc/app.conf": {"mode": "0600", "uid": 1000, "gid": 1000}},
    "entries": [
      {"kind": "file",    "dest": "app/bin/hello", "src": "bazel-out/.../hello", "origin": O},
      {"kind": "tree",    "dest": "srv/static",    "src": "bazel-out/.../static_dir", "origin": O},
      {"kind": "symlink", "dest": "usr/bin/py",    "target": "python3.11", "origin": O},
      {"kind": "dir",     "dest": "var/log/app", "origin": O},
      {"kind": "tar",     "dest": "",              "src": "path/to/import.tar", "origin": O}
    ]
  }
  where O = {"attr": "files", "label": "//x:hello"} names the rule attribute and label an entry
  came from; every error about an entry names them.

- compression_level: null means the default (gzip 1, zstd 3). gzip takes ISA-L levels 0..3,
  zstd 1..19; "none" ignores it.
- mtime: integer seconds >= 0, written on every member.
- defaults: file_mode (null: 0755 if the source file is executable by its owner, else 0644),
  dir_mode (null: 0755), uid, gid. User and group names are never written.
- overrides: layer path (relative, no leading slash) -> any of "mode" (octal string), "uid",
  "gid". They win over everything, including attributes kept from imported tars. A path that
  matches no member is an error (attribute 'modes' for mode-only entries, 'owners' for
  uid/gid-only ones, 'overrides' otherwise), so a typo cannot pass silently.
- entries:
  - file: `src` is followed if it is a symlink (content and exec bit come from the target).
    A directory given as a file is walked like a tree. Optional "executable": true/false
    decides the default mode (0755/0644) instead of the source's exec bit — Starlark knows
    better for generated files, which Bazel always marks executable (0555).
  - tree: `src` is walked recursively. A symlink inside it whose target is relative and stays
    inside the tree is kept as a symlink; any other symlink is dereferenced (its content is
    stored; a directory is walked, and every symlink below it is dereferenced too). Dangling
    symlinks, symlink loops, devices, FIFOs and sockets are errors.
  - symlink: `target` is stored as written.
  - dir: an (empty) directory.
  - tar: an existing tar, compressed with gzip, zstd, xz, bzip2 or not at all (detected by magic
    number), unpacked under `dest`. Member names lose a leading "./". Mode, uid and gid are kept
    (overrides still win), user/group names, pax extras (atime, ctime, xattrs, ...) and mtimes
    are dropped. Absolute names, ".." components, devices, FIFOs, unknown member types and
    hardlinks to something that is not a file of the same tar are errors (a hardlink to a
    symlink becomes the same symlink; GNU/pax sparse files are expanded). A compressed tar is
    first decompressed to a temporary file next to --output (tar members have to be read in
    the output's order, which needs random access); a plain tar is read in place.

Semantics of the output
=======================

- Members are sorted bytewise by path (so parents precede children); every parent directory
  is present (implicit ones get the directory defaults/overrides); there is no "./" entry and
  no leading "./"; directory names end with "/".
- Several entries at one path: directories merge (attributes from an imported tar win over
  defaults, the first such tar in entry order wins); regular files with identical content
  (same resolved source path, or same size and sha256) and symlinks with the same target keep the first;
  anything else is an error naming the path and both origins.
- Hardlinks: regular files whose content comes from the same source (the same path on disk
  once symlinks are resolved — never inode numbers, which depend on how inputs were
  materialized — or the same file of an imported tar, including that tar's hardlinks) and that end up with the
  same mode/uid/gid are stored once, at the first path in output order; later paths are tar
  hardlinks to it. (If overrides give them different attributes, the content is stored again.)
- Format: ustar headers; a pax header only when a value does not fit (names or link targets
  over 100 bytes, sizes >= 8 GiB, ids >= 2**21). Two zero blocks end the archive, no padding to
  a record size.
- Compression (the bytes depend only on the input and these constants, not on the machine's
  core count):
  - gzip: python-isal (ISA-L) raw deflate in independent 1 MiB blocks of the tar stream, each
    primed with the previous block's last 32 KiB and ended with a sync flush (as pigz does),
    compressed by a thread pool, then an empty final block; gzip header with mtime 0, no name,
    XFL 0, OS 255.
    Caveat: ISA-L picks SSE4.2/AVX2/AVX-512 kernels at run time; these are reported to give
    identical bytes, but a CPU without SSE4.2 (or another architecture) may not.
  - zstd: zstandard with the given level, checksum on, no content size, and a fixed 2 worker
    threads (zstd's multi-threaded output does not depend on the worker count, >= 1).
  - none: the plain tar.
  The diff_id (sha256 of the tar) and digest (sha256 of the blob) are computed while the tar is
  streamed, in one pass over the sources; the layer is never held in memory.

Descriptor (--descriptor, canonical JSON):
  {"mediaType": ..., "digest": "sha256:..", "size": N, "diff_id": "sha256:..",
   "compression": "gzip", "compressor": "isal 1.9.1 igzip level 1 (...)", "members": N}
Listing (--listing, optional, canonical JSON list in tar order):
  {"path": "/app/bin/hello", "type": "file"|"dir"|"symlink"|"hardlink", "mode": "0755",
   "uid": 0, "gid": 0, "size": N, "target": "..." (symlink: as stored; hardlink: "/path")}
"""

import bz2
import collections
import concurrent.futures
import hashlib
import lzma
import os
import posixpath
import queue
import shutil
import stat
import struct
import tarfile
import tempfile

from absl import app
from absl import flags

from python_tools import common
from python_tools import worker

FLAGS = flags.FLAGS

flags.DEFINE_string("manifest", None, "JSON manifest written by Starlark (see the module docstring).")
flags.DEFINE_string("output", None, "Where to write the layer blob.")
flags.DEFINE_string("descriptor", None, "Where to write the layer descriptor JSON.")
flags.DEFINE_string("listing", None, "Optional: where to write the JSON listing of the members.")

MEDIA_TYPES = {
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "none": "application/vnd.oci.image.layer.v1.tar",
}
DEFAULT_LEVELS = {"gzip": 1, "zstd": 3}
LEVEL_RANGES = {"gzip": (0, 3), "zstd": (1, 19)}

# These constants decide the output bytes: changing one changes every layer digest.
GZIP_BLOCK_SIZE = 1 << 20
DEFLATE_WINDOW = 1 << 15
ZSTD_THREADS = 2

BLOCK = 512
READ_SIZE = 1 << 20

_MODE_MAX = 0o7777
_OCTAL7_MAX = 0o7777777
_OCTAL11_MAX = 0o77777777777

# ---------------------------------------------------------------------------------------------
# Members


class Origin(object):
    __slots__ = ("attr", "label")

    def __init__(self, attr, label):
        self.attr = attr
        self.label = label


class FsSource(object):
    """A regular file on disk (already resolved through symlinks)."""

    __slots__ = ("path", "key")

    def __init__(self, path, st):
        self.path = path
        # Identity by resolved path, not inode: inodes depend on how Bazel, a sandbox or a
        # cache materialized the inputs, and the tar's hardlinks must not.
        self.key = ("fs", os.path.realpath(path))

    def open(self):
        return _FdReader(os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))


class _FdReader(object):
    """Minimal reader: os-level reads straight into the caller's buffer."""

    __slots__ = ("fd",)

    def __init__(self, fd):
        self.fd = fd

    def readinto(self, mv):
        return os.readv(self.fd, [mv])

    def close(self):
        os.close(self.fd)


class _TarMemberReader(object):
    """Reads one non-sparse member straight from the (plain) tar file."""

    __slots__ = ("fd", "offset", "left")

    def __init__(self, fd, offset, size):
        self.fd = fd
        self.offset = offset
        self.left = size

    def readinto(self, mv):
        if len(mv) > self.left:
            mv = mv[: self.left]
        n = os.preadv(self.fd, [mv], self.offset)
        self.offset += n
        self.left -= n
        return n

    def close(self):
        pass


class TarMemberSource(object):
    """A regular file inside an imported tar."""

    __slots__ = ("tar", "info", "key")

    def __init__(self, tar, info):
        self.tar = tar
        self.info = info
        self.key = ("tar", tar.index, info.name)

    def open(self):
        if self.info.sparse is not None:
            return self.tar.tarfile.extractfile(self.info)
        return _TarMemberReader(self.tar.raw.fileno(), self.info.offset_data, self.info.size)


class Member(object):
    """One path of the layer. `path` is relative, without a trailing slash."""

    __slots__ = ("path", "kind", "origin", "size", "source", "target", "exec_bit",
                 "src_mode", "src_uid", "src_gid", "implicit", "mode", "uid", "gid",
                 "override")

    def __init__(self, path, kind, origin, size=0, source=None, target=None, exec_bit=False,
                 src_mode=None, src_uid=None, src_gid=None, implicit=False):
        self.path = path
        self.kind = kind  # "file" | "dir" | "symlink"; hardlinks are decided at the end.
        self.origin = origin
        self.size = size
        self.source = source
        self.target = target
        self.exec_bit = exec_bit
        self.src_mode = src_mode
        self.src_uid = src_uid
        self.src_gid = src_gid
        self.implicit = implicit
        self.mode = self.uid = self.gid = None
        self.override = None


def _enc(s):
    return s.encode("utf-8", "surrogateescape")


def _sort_key(path):
    return _enc(path)


# ---------------------------------------------------------------------------------------------
# Manifest validation


class Layer(object):
    def __init__(self, manifest, tmpdir_parent):
        if not isinstance(manifest, dict):
            raise common.UserError("the layer manifest must be a JSON object")
        self.target = manifest.get("target") or "<unknown target>"
        self.tmpdir_parent = tmpdir_parent
        self.tmpdir = None
        self.tars = []
        self.members = {}
        self._digests = {}
        self._parse(manifest)

    def error(self, problem, attr=None, value=None):
        return common.UserError(problem, target=self.target, attr=attr, value=value)

    def _parse(self, m):
        comp = m.get("compression", "gzip")
        if comp not in MEDIA_TYPES:
            raise self.error("must be one of %s" % ", ".join(sorted(MEDIA_TYPES)), "compression", comp)
        self.compression = comp
        level = m.get("compression_level")
        if comp == "none":
            level = None
        elif level is None:
            level = DEFAULT_LEVELS[comp]
        elif isinstance(level, bool) or not isinstance(level, int) or not (
                LEVEL_RANGES[comp][0] <= level <= LEVEL_RANGES[comp][1]):
            raise self.error("%s levels are %d..%d" % ((comp,) + LEVEL_RANGES[comp]),
                             "compression_level", level)
        self.level = level
        mtime = m.get("mtime", 0)
        if isinstance(mtime, bool) or not isinstance(mtime, int) or mtime < 0:
            raise self.error("must be a non-negative integer (seconds)", "mtime", mtime)
        self.mtime = mtime
        d = m.get("defaults") or {}
        if not isinstance(d, dict):
            raise self.error("must be an object", "defaults", d)
        fm = d.get("file_mode")
        self.file_mode = None if fm is None else self._mode(fm, "modes")
        dm = d.get("dir_mode")
        self.dir_mode = 0o755 if dm is None else self._mode(dm, "modes")
        self.uid = self._id(d.get("uid", 0), "owners")
        self.gid = self._id(d.get("gid", 0), "owners")
        self.overrides = []
        ov = m.get("overrides") or {}
        if not isinstance(ov, dict):
            raise self.error("must be an object", "overrides", ov)
        for path in sorted(ov):
            spec = ov[path]
            keys = set(spec) if isinstance(spec, dict) else set()
            if keys <= {"mode"}:
                attr = "modes"
            elif keys <= {"uid", "gid"}:
                attr = "owners"
            else:
                attr = "overrides"
            if not isinstance(spec, dict) or not keys or keys - {"mode", "uid", "gid"}:
                raise self.error("an override must be an object with keys among mode, uid, gid",
                                 attr, spec)
            norm = self._norm(path.lstrip("/"), attr, "/" + path.lstrip("/"), allow_empty=True)
            if not norm:
                raise self.error("the layer root has no entry to override", attr, path)
            o = {}
            if "mode" in spec:
                o["mode"] = self._mode(spec["mode"], attr)
            if "uid" in spec:
                o["uid"] = self._id(spec["uid"], attr)
            if "gid" in spec:
                o["gid"] = self._id(spec["gid"], attr)
            self.overrides.append((norm, o, attr))
        entries = m.get("entries") or []
        if not isinstance(entries, list):
            raise self.error("must be a list", "entries", entries)
        self.entries = entries

    def _mode(self, v, attr):
        if isinstance(v, str) and v and len(v) <= 5 and all(c in "01234567" for c in v):
            mode = int(v, 8)
            if mode <= _MODE_MAX:
                return mode
        raise self.error("a mode must be an octal string such as \"0644\" (at most 07777)", attr, v)

    def _id(self, v, attr):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 0x7FFFFFFF:
            raise self.error("a uid/gid must be an integer between 0 and 2**31-1", attr, v)
        return v

    def _norm(self, path, attr, shown, allow_empty=False):
        """Normalizes a relative layer path; rejects absolute, '..' and empty paths."""
        if not isinstance(path, str):
            raise self.error("a path must be a string", attr, path)
        if path.startswith("/"):
            raise self.error("absolute paths are not allowed in a layer", attr, shown)
        parts = []
        for c in path.split("/"):
            if c in ("", "."):
                continue
            if c == "..":
                raise self.error("'..' is not allowed in a layer path", attr, shown)
            if "\0" in c:
                raise self.error("NUL is not allowed in a layer path", attr, shown)
            parts.append(c)
        if not parts and not allow_empty:
            raise self.error("empty path: a layer member needs a name", attr, shown)
        return "/".join(parts)

    # -----------------------------------------------------------------------------------------
    # Collecting members

    def collect(self):
        for e in self.entries:
            if not isinstance(e, dict):
                raise self.error("each entry must be an object", "entries", e)
            o = e.get("origin") or {}
            origin = Origin(o.get("attr") or "entries", o.get("label") or self.target)
            kind = e.get("kind")
            dest = e.get("dest", "")
            shown = dest if not isinstance(dest, str) or dest.startswith("/") else "/" + dest
            if kind == "file" or kind == "tree":
                path = self._norm(dest, origin.attr, shown, allow_empty=(kind == "tree"))
                executable = e.get("executable")
                if executable is not None and not isinstance(executable, bool):
                    raise self.error("'executable' must be true, false or null", origin.attr, shown)
                self._add_fs(e.get("src"), path, origin, executable)
            elif kind == "symlink":
                path = self._norm(dest, origin.attr, shown)
                target = e.get("target")
                if not isinstance(target, str) or not target or "\0" in target:
                    raise self.error("a symlink needs a non-empty target", origin.attr, shown)
                self.add(Member(path, "symlink", origin, target=target))
            elif kind == "dir":
                path = self._norm(dest, origin.attr, shown)
                self.add(Member(path, "dir", origin))
            elif kind == "tar":
                path = self._norm(dest, origin.attr, shown, allow_empty=True)
                self._add_tar(e.get("src"), path, origin)
            else:
                raise self.error("unknown entry kind", origin.attr, kind)
        self._add_parents()
        self._apply_overrides()

    def _join(self, prefix, rel):
        if not prefix:
            return rel
        return prefix + "/" + rel if rel else prefix

    def _add_fs(self, src, path, origin, executable=None):
        if not isinstance(src, str) or not src:
            raise self.error("an entry needs a source path", origin.attr, "/" + path)
        try:
            st = os.stat(src)
        except OSError as e:
            raise self.error("cannot read the source %r of %s: %s" % (src, origin.label, e.strerror),
                             origin.attr, "/" + path)
        if stat.S_ISDIR(st.st_mode):
            if path:
                self.add(Member(path, "dir", origin))
            self._walk(src, path, origin, [(st.st_dev, st.st_ino)], False)
        elif stat.S_ISREG(st.st_mode):
            self._check_name(path, origin)
            self._add_file(src, st, path, origin, executable)
        else:
            raise self.error("the source %r of %s is not a regular file or directory" % (
                src, origin.label), origin.attr, "/" + path)

    def _check_name(self, path, origin):
        if not path:
            raise self.error("empty path: a layer member needs a name", origin.attr, "/")

    def _add_file(self, real, st, path, origin, executable=None):
        if executable is None:
            executable = bool(st.st_mode & stat.S_IXUSR)
        self.add(Member(path, "file", origin, size=st.st_size, source=FsSource(real, st),
                        exec_bit=executable))

    def _walk(self, real_dir, prefix, origin, stack, under_deref, rel=""):
        """Adds the contents of a directory; `rel` is the logical path inside the tree."""
        try:
            names = os.listdir(real_dir)
        except OSError as e:
            raise self.error("cannot list %r: %s" % (real_dir, e.strerror), origin.attr,
                             "/" + prefix)
        names.sort(key=_sort_key)
        for name in names:
            p = os.path.join(real_dir, name)
            r = rel + "/" + name if rel else name
            path = self._join(prefix, r)
            st = os.lstat(p)
            deref = under_deref
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(p)
                if not under_deref and not target.startswith("/"):
                    inside = posixpath.normpath(posixpath.join(posixpath.dirname(r), target))
                    if inside != ".." and not inside.startswith("../"):
                        self.add(Member(path, "symlink", origin, target=target))
                        continue
                try:
                    st = os.stat(p)
                except OSError:
                    raise self.error("dangling symlink %r -> %r in the tree of %s" % (
                        p, target, origin.label), origin.attr, "/" + path)
                deref = True
            if stat.S_ISDIR(st.st_mode):
                ident = (st.st_dev, st.st_ino)
                if ident in stack:
                    raise self.error("symlink loop at %r in the tree of %s" % (p, origin.label),
                                     origin.attr, "/" + path)
                self.add(Member(path, "dir", origin))
                self._walk(p, prefix, origin, stack + [ident], deref, r)
            elif stat.S_ISREG(st.st_mode):
                self._add_file(p, st, path, origin)
            else:
                raise self.error("%r in the tree of %s is not a regular file, directory or "
                                 "symlink" % (p, origin.label), origin.attr, "/" + path)

    # -----------------------------------------------------------------------------------------
    # Imported tars

    def _tmp(self):
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix=".layer-import-", dir=self.tmpdir_parent)
        return self.tmpdir

    def _add_tar(self, src, prefix, origin):
        if not isinstance(src, str) or not src:
            raise self.error("a tar entry needs a source path", origin.attr, "/" + prefix)
        tar = ImportedTar(self, src, origin, len(self.tars))
        self.tars.append(tar)
        for m in tar.members(prefix):
            self.add(m)

    # -----------------------------------------------------------------------------------------
    # Conflicts, parents, overrides

    def _digest(self, m):
        key = m.source.key
        d = self._digests.get(key)
        if d is None:
            h = hashlib.sha256()
            f = m.source.open()
            try:
                buf = bytearray(READ_SIZE)
                mv = memoryview(buf)
                left = m.size
                while left:
                    n = f.readinto(mv[: min(left, READ_SIZE)])
                    if not n:
                        raise RuntimeError("%s: source of /%s shrank while reading" % (
                            self.target, m.path))
                    h.update(mv[:n])
                    left -= n
            finally:
                f.close()
            d = self._digests[key] = h.digest()
        return d

    def _same(self, a, b):
        if a.kind != b.kind:
            return False
        if a.kind == "dir":
            return True
        if a.kind == "symlink":
            return a.target == b.target
        if a.source.key == b.source.key:
            return True
        return a.size == b.size and self._digest(a) == self._digest(b)

    def _conflict(self, existing, new, detail=""):
        labels = (existing.origin.label, new.origin.label)
        if labels[0] == labels[1]:
            what = "%s (%s) and %s (%s)" % (labels[0], existing.kind, labels[1], new.kind)
        else:
            what = "%s and %s" % labels
        return self.error("two different sources at one path: %s%s" % (what, detail),
                          new.origin.attr, "/" + new.path)

    def add(self, m):
        old = self.members.get(m.path)
        if old is None:
            self.members[m.path] = m
            return
        if not self._same(old, m):
            raise self._conflict(old, m)
        if old.kind == "dir" and old.src_mode is None and m.src_mode is not None:
            old.src_mode, old.src_uid, old.src_gid = m.src_mode, m.src_uid, m.src_gid

    def _add_parents(self):
        for path in list(self.members):
            child = self.members[path]
            while "/" in path:
                path = path.rsplit("/", 1)[0]
                p = self.members.get(path)
                if p is None:
                    self.members[path] = Member(path, "dir", child.origin, implicit=True)
                elif p.kind != "dir":
                    raise self._conflict(p, Member(path, "dir", child.origin),
                                         " (%s needs a directory there for '/%s')" % (
                                             child.origin.label, child.path))
                else:
                    break

    def _apply_overrides(self):
        for path, o, attr in self.overrides:
            m = self.members.get(path)
            if m is None:
                raise self.error("no file, directory or link of this layer has this path "
                                 "(check for a typo)", attr, "/" + path)
            m.override = o

    # -----------------------------------------------------------------------------------------
    # Final attributes and order

    def finalize(self):
        """Returns the members in output order with modes/owners and hardlinks decided."""
        out = sorted(self.members.values(), key=lambda m: _sort_key(m.path))
        first = {}
        for m in out:
            o = m.override or {}
            if "mode" in o:
                m.mode = o["mode"]
            elif m.src_mode is not None:
                m.mode = m.src_mode
            elif m.kind == "file":
                m.mode = self.file_mode if self.file_mode is not None else (
                    0o755 if m.exec_bit else 0o644)
            elif m.kind == "dir":
                m.mode = self.dir_mode
            else:
                m.mode = 0o777
            m.uid = o["uid"] if "uid" in o else (m.src_uid if m.src_uid is not None else self.uid)
            m.gid = o["gid"] if "gid" in o else (m.src_gid if m.src_gid is not None else self.gid)
            if m.kind == "file":
                k = (m.source.key, m.mode, m.uid, m.gid)
                if k in first:
                    m.kind = "hardlink"
                    m.target = first[k]
                else:
                    first[k] = m.path
        return out

    def close(self):
        for t in self.tars:
            t.close()
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None


_MAGIC = [
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
]


def _decompress_errors():
    import zlib
    import zstandard
    from isal import isal_zlib
    return (EOFError, ValueError, lzma.LZMAError, zlib.error, isal_zlib.error,
            zstandard.ZstdError, OSError)


class ImportedTar(object):
    def __init__(self, layer, src, origin, index):
        self.layer = layer
        self.src = src
        self.origin = origin
        self.index = index
        self.raw = None
        self.tarfile = None
        try:
            f = open(src, "rb")
        except OSError as e:
            raise layer.error("cannot read the tar %r of %s: %s" % (src, origin.label, e.strerror),
                              origin.attr, src)
        head = f.read(8)
        f.seek(0)
        fmt = "plain"
        for magic, name in _MAGIC:
            if head.startswith(magic):
                fmt = name
        self.format = fmt
        if fmt != "plain":
            f = self._decompress(f, fmt)
        self.raw = f
        self.empty = os.fstat(f.fileno()).st_size == 0

    def _decompress(self, f, fmt):
        tmp = tempfile.NamedTemporaryFile(dir=self.layer._tmp(), suffix=".tar", delete=False)
        if fmt == "gzip":
            from isal import igzip
            reader = igzip.IGzipFile(fileobj=f, mode="rb")
        elif fmt == "zstd":
            import zstandard
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
        elif fmt == "xz":
            reader = lzma.LZMAFile(f, "rb")
        else:
            reader = bz2.BZ2File(f, "rb")
        try:
            while True:
                try:
                    data = reader.read(READ_SIZE)
                except _decompress_errors() as e:  # corrupt input, not our disk
                    raise self.layer.error("cannot decompress the %s tar %s: %s" % (
                        fmt, self.origin.label, e), self.origin.attr, self.src)
                if not data:
                    break
                tmp.write(data)
            tmp.flush()
        except BaseException:
            tmp.close()
            raise
        finally:
            reader.close()
            f.close()
        tmp.seek(0)
        return tmp

    def _bad(self, name, problem):
        return self.layer.error("%s (in %s)" % (problem, self.origin.label), self.origin.attr, name)

    def _norm_name(self, name):
        if name.startswith("/"):
            raise self._bad(name, "absolute member names are not allowed")
        parts = []
        for c in name.split("/"):
            if c in ("", "."):
                continue
            if c == "..":
                raise self._bad(name, "'..' is not allowed in member names")
            parts.append(c)
        return "/".join(parts)

    def members(self, prefix):
        if self.empty:
            return []
        try:
            self.tarfile = tarfile.open(fileobj=self.raw, mode="r:")
            infos = self.tarfile.getmembers()
        except tarfile.TarError as e:
            raise self.layer.error("not a valid tar file (%s): %s" % (self.origin.label, e),
                                   self.origin.attr, self.src)
        by_name = {}
        for info in infos:
            rel = self._norm_name(info.name)
            if info.ischr() or info.isblk():
                raise self._bad(info.name, "device files are not allowed in a layer")
            if info.isfifo():
                raise self._bad(info.name, "FIFOs are not allowed in a layer")
            if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                raise self._bad(info.name, "unsupported tar member type %r" % info.type)
            if info.isdir() and rel in by_name and by_name[rel][1].isdir():
                by_name[rel] = (rel, info)  # later attributes win, as when extracting
                continue
            by_name[rel] = (rel, info)
        out = []
        for rel, info in by_name.values():
            path = self.layer._join(prefix, rel)
            if not path:
                continue  # the tar's own root: no "./" entry in a layer
            mode = info.mode & _MODE_MAX
            if info.isdir():
                out.append(Member(path, "dir", self.origin, src_mode=mode, src_uid=info.uid,
                                  src_gid=info.gid))
            elif info.issym():
                if not info.linkname:
                    raise self._bad(info.name, "symlink with an empty target")
                out.append(Member(path, "symlink", self.origin, target=info.linkname,
                                  src_mode=mode, src_uid=info.uid, src_gid=info.gid))
            else:
                seen = set()
                t = info
                while t.islnk():
                    if t.name in seen:
                        raise self._bad(info.name, "hardlink loop")
                    seen.add(t.name)
                    target = by_name.get(self._norm_name(t.linkname))
                    if target is None:
                        raise self._bad(info.name, "hardlink to %r, which is not a member of "
                                        "the same tar" % t.linkname)
                    t = target[1]
                if t.isdir():
                    raise self._bad(info.name, "hardlink to a directory")
                if t.issym():
                    out.append(Member(path, "symlink", self.origin, target=t.linkname,
                                      src_mode=t.mode & _MODE_MAX, src_uid=t.uid, src_gid=t.gid))
                    continue
                # A hardlink shares its target's inode: content and attributes come from it.
                out.append(Member(path, "file", self.origin, size=t.size,
                                  source=TarMemberSource(self, t), src_mode=t.mode & _MODE_MAX,
                                  src_uid=t.uid, src_gid=t.gid))
        return out

    def close(self):
        if self.tarfile is not None:
            self.tarfile.close()
        if self.raw is not None:
            self.raw.close()


# ---------------------------------------------------------------------------------------------
# Tar encoding


def _octal(n, width):
    return b"%0*o\0" % (width - 1, n)


def _pax_header(records):
    body = b""
    for key in sorted(records):
        val = records[key]
        core = b" " + key + b"=" + val + b"\n"
        n = len(core) + 1
        while len(b"%d" % n) + len(core) != n:
            n = len(b"%d" % n) + len(core)
        body += b"%d" % n + core
    head = _ustar(b"././@PaxHeader", 0o644, 0, 0, len(body), 0, b"x", b"")
    return head + body + b"\0" * (-len(body) % BLOCK)


def _ustar(name, mode, uid, gid, size, mtime, typeflag, linkname):
    h = b"".join([
        name.ljust(100, b"\0"),
        _octal(mode, 8),
        _octal(uid, 8),
        _octal(gid, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,
        typeflag,
        linkname.ljust(100, b"\0"),
        b"ustar\x0000",
        b"\0" * 64,  # uname, gname: never written
        _octal(0, 8),
        _octal(0, 8),
        b"\0" * 155,
    ]).ljust(BLOCK, b"\0")
    chk = sum(h)
    return h[:148] + b"%06o\0 " % chk + h[156:]


def tar_header(name, mode, uid, gid, size, mtime, typeflag, linkname=b""):
    """Returns the header block(s) of one member: ustar, with a pax header only if needed."""
    pax = {}
    if len(name) > 100:
        pax[b"path"] = name
        name = name[:100]
    if len(linkname) > 100:
        pax[b"linkpath"] = linkname
        linkname = linkname[:100]
    if uid > _OCTAL7_MAX:
        pax[b"uid"] = b"%d" % uid
        uid = 0
    if gid > _OCTAL7_MAX:
        pax[b"gid"] = b"%d" % gid
        gid = 0
    if size > _OCTAL11_MAX:
        pax[b"size"] = b"%d" % size
        size = 0
    if mtime > _OCTAL11_MAX:
        pax[b"mtime"] = b"%d" % mtime
        mtime = 0
    head = _ustar(name, mode, uid, gid, size, mtime, typeflag, linkname)
    if not pax:
        return head
    for v in pax.values():
        try:
            v.decode("utf-8")
        except UnicodeDecodeError:
            pax[b"hdrcharset"] = b"BINARY"
            break
    return _pax_header(pax) + head


# ---------------------------------------------------------------------------------------------
# Streaming: tar bytes -> fixed-size blocks -> (hash, compress, hash, write)


class _Sink(object):
    """Hashes and writes the blob."""

    def __init__(self, path):
        self.f = open(path, "wb", buffering=0)
        self.h = hashlib.sha256()
        self.size = 0

    def write(self, b):
        if b:
            self.h.update(b)
            self.size += len(b)
            mv = memoryview(b)
            while len(mv):
                mv = mv[self.f.write(mv):]

    def close(self):
        self.f.close()


def _workers():
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, 8))


class _Pipeline(object):
    """Hashes, compresses and writes fixed-size blocks of the tar stream, in order.

    The reading thread (the caller) fills buffers; per block, three tasks run on other threads:
    hashing (diff_id, and the gzip CRC) on one ordered thread, compression on `threads`
    threads (gzip: independent blocks) or one ordered thread (zstd: one stream), and
    hashing+writing the compressed bytes on one ordered thread, which then recycles the
    buffer. hashlib, ISA-L and zstd release the GIL on large buffers, so this uses all cores.
    A fixed number of buffers bounds the memory and makes the reader wait for the writer.
    """

    def __init__(self, sink, block_size, threads):
        self.sink = sink
        self.block_size = block_size
        self.diff = hashlib.sha256()
        self.length = 0
        self.free = queue.Queue()
        self.nbuf = 2 * threads + 4
        self.created = 0
        self.pending = collections.deque()
        self.hasher = concurrent.futures.ThreadPoolExecutor(1)
        self.compressor = concurrent.futures.ThreadPoolExecutor(threads)
        self.writer = concurrent.futures.ThreadPoolExecutor(1)

    # Hooks for the compressions.
    def _hash_extra(self, mv):
        pass

    def _compress(self, mv, ctx):
        return mv

    def _context(self, mv):
        return None

    def _tail(self):
        return b""

    def get_buffer(self):
        if self.created < self.nbuf:
            self.created += 1
            return bytearray(self.block_size)
        while True:
            try:
                return self.free.get(timeout=0.05)
            except queue.Empty:
                self._check()

    def _check(self):
        while self.pending and self.pending[0].done():
            self.pending.popleft().result()  # re-raises a failure of the writer

    def _hash(self, mv):
        self.diff.update(mv)
        self._hash_extra(mv)

    def _write(self, fc, fh, buf):
        try:
            self.sink.write(fc.result())
            fh.result()
        finally:
            self.free.put(buf)

    def block(self, buf, n):
        mv = memoryview(buf)[:n]
        self.length += n
        ctx = self._context(mv)  # runs before `buf` can be recycled
        fh = self.hasher.submit(self._hash, mv)
        fc = self.compressor.submit(self._compress, mv, ctx)
        self.pending.append(self.writer.submit(self._write, fc, fh, buf))
        self._check()

    def finish(self):
        while self.pending:
            self.pending.popleft().result()
        self.sink.write(self._tail())
        self.abort()

    def abort(self):
        for ex in (self.hasher, self.compressor, self.writer):
            ex.shutdown(wait=True, cancel_futures=True)


class _PlainPipeline(_Pipeline):
    def __init__(self, sink):
        _Pipeline.__init__(self, sink, READ_SIZE, 1)


class _GzipPipeline(_Pipeline):
    """pigz-style gzip: independent raw deflate blocks, each primed with the previous block's
    last 32 KiB and ended by a sync flush, then an empty final block and the trailer."""

    # Fixed header: no flags, mtime 0, XFL 0, OS 255 (unknown).
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

    def __init__(self, sink, level, threads=None):
        from isal import isal_zlib
        self.zlib = isal_zlib
        self.level = level
        self.crc = 0
        self.zdict = b""
        _Pipeline.__init__(self, sink, GZIP_BLOCK_SIZE, threads or _workers())
        sink.write(self.HEADER)

    def _hash_extra(self, mv):
        self.crc = self.zlib.crc32(mv, self.crc)

    def _context(self, mv):
        zdict = self.zdict
        self.zdict = bytes(mv[-DEFLATE_WINDOW:])
        return zdict

    def _compress(self, mv, zdict):
        z = self.zlib
        if zdict:
            c = z.compressobj(self.level, z.DEFLATED, -15, zdict=zdict)
        else:
            c = z.compressobj(self.level, z.DEFLATED, -15)
        return c.compress(mv) + c.flush(z.Z_SYNC_FLUSH)

    def _tail(self):
        z = self.zlib
        last = z.compressobj(self.level, z.DEFLATED, -15)
        return (last.compress(b"") + last.flush(z.Z_FINISH) +
                struct.pack("<II", self.crc & 0xFFFFFFFF, self.length & 0xFFFFFFFF))


class _ZstdPipeline(_Pipeline):
    """One zstd stream (so compression calls run in order on one thread; libzstd runs its own
    fixed number of workers)."""

    def __init__(self, sink, level, threads=ZSTD_THREADS):
        import zstandard
        self.cobj = zstandard.ZstdCompressor(
            level=level, threads=threads, write_checksum=True, write_content_size=False,
            write_dict_id=False).compressobj()
        _Pipeline.__init__(self, sink, READ_SIZE, 1)

    def _compress(self, mv, ctx):
        return self.cobj.compress(mv)

    def _tail(self):
        return self.cobj.flush()


class TarStream(object):
    """Cuts the tar byte stream into fixed-size blocks for the pipeline; file content is read
    straight into the block buffers."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.bs = pipeline.block_size
        self._new()

    def _new(self):
        self.buf = self.pipeline.get_buffer()
        self.mv = memoryview(self.buf)
        self.pos = 0

    def _emit(self):
        if self.pos:
            self.mv = None
            self.pipeline.block(self.buf, self.pos)
            self._new()

    def write(self, data):
        n = len(data)
        if self.pos + n < self.bs:
            self.mv[self.pos: self.pos + n] = data
            self.pos += n
            return
        mv = memoryview(data)
        while len(mv):
            n = min(len(mv), self.bs - self.pos)
            self.mv[self.pos: self.pos + n] = mv[:n]
            self.pos += n
            mv = mv[n:]
            if self.pos == self.bs:
                self._emit()

    def copy_from(self, f, size, what):
        left = size
        while left:
            want = min(left, self.bs - self.pos)
            n = f.readinto(self.mv[self.pos: self.pos + want])
            if not n:
                raise RuntimeError("%s shrank while it was being read" % what)
            self.pos += n
            left -= n
            if self.pos == self.bs:
                self._emit()
        pad = -size % BLOCK
        if pad:
            self.write(b"\0" * pad)

    def close(self):
        self.write(b"\0" * (2 * BLOCK))
        self._emit()


_TYPEFLAGS = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}


def write_tar(members, stream, mtime):
    """Streams the members; returns the listing."""
    listing = []
    for m in members:
        name = _enc(m.path)
        linkname = b""
        size = 0
        if m.kind == "dir":
            name += b"/"
        elif m.kind == "symlink":
            linkname = _enc(m.target)
        elif m.kind == "hardlink":
            linkname = _enc(m.target)
        else:
            size = m.size
        stream.write(tar_header(name, m.mode, m.uid, m.gid, size, mtime, _TYPEFLAGS[m.kind],
                                linkname))
        if m.kind == "file" and size:
            f = m.source.open()
            try:
                stream.copy_from(f, size, "the source of /" + m.path)
            finally:
                f.close()
        entry = {"path": "/" + m.path, "type": m.kind, "mode": "%04o" % m.mode,
                 "uid": m.uid, "gid": m.gid, "size": size}
        if m.kind == "symlink":
            entry["target"] = m.target
        elif m.kind == "hardlink":
            entry["target"] = "/" + m.target
        listing.append(entry)
    stream.close()
    return listing


def compressor_name(compression, level, zstd_threads=ZSTD_THREADS):
    if compression == "gzip":
        import isal
        return "isal %s igzip level %d (ISA-L %s, %d KiB blocks)" % (
            isal.__version__, level, isal.ISAL_VERSION, GZIP_BLOCK_SIZE >> 10)
    if compression == "zstd":
        import zstandard
        return "zstandard %s libzstd %s level %d threads %d" % (
            zstandard.__version__, ".".join(str(x) for x in zstandard.ZSTD_VERSION), level,
            zstd_threads)
    return "none"


def build_layer(manifest, output, _gzip_threads=None, _zstd_threads=ZSTD_THREADS):
    """Writes the blob of the layer described by `manifest` (a dict) to `output`.

    Returns (descriptor dict, listing list)."""
    layer = Layer(manifest, os.path.dirname(os.path.abspath(output)))
    backend = None
    sink = None
    try:
        layer.collect()
        members = layer.finalize()
        sink = _Sink(output)
        if layer.compression == "gzip":
            backend = _GzipPipeline(sink, layer.level, _gzip_threads)
        elif layer.compression == "zstd":
            backend = _ZstdPipeline(sink, layer.level, _zstd_threads)
        else:
            backend = _PlainPipeline(sink)
        entries = write_tar(members, TarStream(backend), layer.mtime)
        backend.finish()
        diff = backend.diff
        backend = None
    finally:
        if backend is not None:
            backend.abort()
        if sink is not None:
            sink.close()
        layer.close()
    desc = {
        "mediaType": MEDIA_TYPES[layer.compression],
        "digest": "sha256:" + sink.h.hexdigest(),
        "size": sink.size,
        "diff_id": "sha256:" + diff.hexdigest(),
        "compression": layer.compression,
        "compressor": compressor_name(layer.compression, layer.level, _zstd_threads),
        "members": len(entries),
    }
    return desc, entries


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    outputs = [FLAGS.output, FLAGS.descriptor, FLAGS.listing]

    def run():
        try:
            manifest = common.read_json(FLAGS.manifest)
        except (OSError, ValueError) as e:
            raise common.UserError("cannot read the layer manifest %r: %s" % (FLAGS.manifest, e))
        desc, entries = build_layer(manifest, FLAGS.output)
        common.write_file_atomic(FLAGS.descriptor, common.canonical_json(desc))
        if FLAGS.listing:
            common.write_file_atomic(FLAGS.listing, common.canonical_json(entries))

    common.run_tool(run, outputs)


if __name__ == "__main__":
    flags.mark_flags_as_required(["manifest", "output", "descriptor"])
    worker.run(main)  # a persistent worker under Bazel (python_tools/worker.py), else app.run
