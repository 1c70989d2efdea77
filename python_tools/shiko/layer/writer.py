"""The layer's tar bytes: headers, member order as given, and the stream cut into blocks.

Format: ustar headers with numeric owners only (user and group names are never written); a
pax header only when a value does not fit (names or link targets over 100 bytes, sizes >= 8 GiB,
ids >= 2**21). Directory names end with "/". Two zero blocks end the archive, no padding to a
record size. These bytes are hashed into image digests: any change here changes every layer.

Names are bytes (imported tars and source trees can hold names that are not UTF-8; they arrive
as surrogate-escaped strings and are written back as the same bytes). The listing is JSON, so a
listed path or target that is not UTF-8 is escaped: see `listed_names`.
"""

from python_tools.shiko.layer.members import enc

BLOCK = 512

_OCTAL7_MAX = 0o7777777
_OCTAL11_MAX = 0o77777777777

_TYPEFLAGS = {"file": b"0", "hardlink": b"1", "symlink": b"2", "dir": b"5"}
_ZEROS = memoryview(bytes(2 * BLOCK))


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


# After the checksum field: typeflag, linkname, then magic and version, uname and gname (never
# written), devmajor and devminor (0), prefix (empty) and the padding to 512 bytes.
_TAIL = b"ustar\x0000" + b"\0" * 64 + _octal(0, 8) + _octal(0, 8) + b"\0" * (155 + 12)
_CHK_SPACES = 8 * ord(" ")  # the checksum is computed with its own field as spaces


def _ustar(name, mode, uid, gid, size, mtime, typeflag, linkname):
    """One ustar header block; the numbers must fit their fields (tar_header sees to it)."""
    head = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0" % (name.ljust(100, b"\0"), mode, uid, gid, size,
                                                     mtime)
    tail = typeflag + linkname.ljust(100, b"\0") + _TAIL
    return head + b"%06o\0 " % (sum(head) + _CHK_SPACES + sum(tail)) + tail


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
        pos = self.pos
        if pos + n < self.bs:
            self.mv[pos: pos + n] = data
            self.pos = pos + n
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
        """Copies `size` bytes of the reader `f` (readinto) into the stream, then the padding
        to a whole block; `what()` names the source for the error when it has fewer bytes."""
        left = size
        pos = self.pos
        if pos + size < self.bs:  # the common case: a small file that fits in this buffer
            n = f.readinto(self.mv[pos: pos + size])
            self.pos = pos + n
            left -= n
            if not left:
                self.write(_ZEROS[: -size % BLOCK])
                return
            if not n:
                raise RuntimeError("%s shrank while it was being read" % what())
        while left:
            want = min(left, self.bs - self.pos)
            n = f.readinto(self.mv[self.pos: self.pos + want])
            if not n:
                raise RuntimeError("%s shrank while it was being read" % what())
            self.pos += n
            left -= n
            if self.pos == self.bs:
                self._emit()
        pad = -size % BLOCK
        if pad:
            self.write(_ZEROS[:pad])

    def close(self):
        self.write(_ZEROS)
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
        if m.kind == "file" and size:
            f = m.source.open()
            try:
                stream.copy_from(f, size, lambda: "the source of /" + m.path)
            finally:
                f.close()
        shown = ["/" + m.path]
        if m.kind == "symlink":
            shown.append(m.target)
        elif m.kind == "hardlink":
            shown.append("/" + m.target)
        if all(n.isascii() for n in shown):
            escaped = False  # listed as they are (the common case, without encoding them)
        else:
            shown, escaped = listed_names(shown)
        entry = {"path": shown[0], "type": m.kind, "mode": "%04o" % m.mode,
                 "uid": m.uid, "gid": m.gid, "size": size}
        if len(shown) > 1:
            entry["target"] = shown[1]
        if escaped:
            entry["escaped"] = True
        if not m.implicit:
            entry["origin"] = m.origin.label
        listing.append(entry)
    stream.close()
    return listing
