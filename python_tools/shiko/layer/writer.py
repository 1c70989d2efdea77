"""The layer's tar bytes: headers, member order as given, and the stream cut into blocks.

Format: ustar headers with numeric owners only (user and group names are never written); a
pax header only when a value does not fit (names or link targets over 100 bytes, sizes >= 8 GiB,
ids >= 2**21). Directory names end with "/". Two zero blocks end the archive, no padding to a
record size. These bytes are hashed into image digests: any change here changes every layer.

Names are bytes (imported tars and source trees can hold names that are not UTF-8; they arrive
as surrogate-escaped strings and are written back as the same bytes). The listing is JSON, so a
listed path or target that is not UTF-8 is escaped: see `listed_names`.
"""

import hashlib

from python_tools.shiko.layer.members import enc

BLOCK = 512

_OCTAL7_MAX = 0o7777777
_OCTAL11_MAX = 0o77777777777

_TYPEFLAGS = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}


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


class TarStream(object):
    """Cuts the tar byte stream into fixed-size blocks for a compression.Pipeline; file content
    is read straight into the block buffers."""

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

    def copy_from(self, f, size, what, digest=None):
        """Copies `size` bytes of `f` into the stream (padded to a block), updating the hashlib
        object `digest` with them when given."""
        left = size
        while left:
            want = min(left, self.bs - self.pos)
            n = f.readinto(self.mv[self.pos: self.pos + want])
            if not n:
                raise RuntimeError("%s shrank while it was being read" % what)
            if digest is not None:
                digest.update(self.mv[self.pos: self.pos + n])
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


def listed_names(names):
    """The names (path, link target) of one listing entry as text, and whether they are escaped:
    names that are all UTF-8 are listed as they are; otherwise, in every name of the entry, a
    backslash is written as two and each byte that is not part of valid UTF-8 as `\\xNN`, so
    the bytes can be recovered from the text."""
    raw = [enc(n) for n in names]
    try:
        return [b.decode("utf-8") for b in raw], False
    except UnicodeDecodeError:
        return [b.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace") for b in raw], True


def write_tar(members, stream, mtime):
    """Streams the members (collect.Layer.finalize's order) into `stream` (a TarStream) with
    `mtime` on every member; returns the listing (one dict per member, in tar order)."""
    listing = []
    for m in members:
        name = enc(m.path)
        linkname = b""
        size = 0
        if m.kind == "dir":
            name += b"/"
        elif m.kind == "symlink":
            linkname = enc(m.target)
        elif m.kind == "hardlink":
            linkname = enc(m.target)
        else:
            size = m.size
        stream.write(tar_header(name, m.mode, m.uid, m.gid, size, mtime, _TYPEFLAGS[m.kind],
                                linkname))
        digest = hashlib.sha256() if m.kind == "file" else None
        if m.kind == "file" and size:
            f = m.source.open()
            try:
                stream.copy_from(f, size, "the source of /" + m.path, digest)
            finally:
                f.close()
        shown = ["/" + m.path]
        if m.kind == "symlink":
            shown.append(m.target)
        elif m.kind == "hardlink":
            shown.append("/" + m.target)
        shown, escaped = listed_names(shown)
        entry = {"path": shown[0], "type": m.kind, "mode": "%04o" % m.mode,
                 "uid": m.uid, "gid": m.gid, "size": size}
        if len(shown) > 1:
            entry["target"] = shown[1]
        if escaped:
            entry["escaped"] = True
        if digest is not None:
            entry["sha256"] = digest.hexdigest()
        if not m.implicit:
            entry["origin"] = m.origin.label
        listing.append(entry)
    stream.close()
    return listing
