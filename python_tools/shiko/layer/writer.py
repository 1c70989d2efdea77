"""The layer's tar bytes: headers, member order as given, and the stream cut into blocks.

Format: ustar headers with numeric owners only (user and group names are never written); a
pax header only when a value does not fit (names or link targets over 100 bytes, sizes >= 8 GiB,
ids >= 2**21). Directory names end with "/". Two zero blocks end the archive, no padding to a
record size. These bytes are hashed into image digests: any change here changes every layer.

Names are bytes (imported tars and source trees can hold names that are not UTF-8; they arrive
as surrogate-escaped strings and are written back as the same bytes). The listing is JSON, so a
listed path or target that is not UTF-8 is escaped: see `listed_names`.
"""

import json
import os
from zlib import adler32

from python_tools.shiko.files import canonical_json
from python_tools.shiko.layer import walk
from python_tools.shiko.layer.members import FsSource, enc
from python_tools.shiko.layer.walk import HEAD_SIZE

os_open = os.open
os_close = os.close
readv = os.readv
_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)

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


_TAIL_SUM = _CHK_SPACES + sum(_TAIL)


def _byte_sum(b, start=1):
    """The sum of the bytes of `b` plus start-1, for at most 256 bytes in all: Adler-32's first
    half is 1 + that sum modulo 65521, which 256 bytes of 255 cannot reach (zlib's C loop is
    ~20x faster than sum() over the bytes)."""
    return adler32(b, start) & 0xFFFF


def _ustar(name, mode, uid, gid, size, mtime, typeflag, linkname):
    """One ustar header block; the numbers must fit their fields (tar_header sees to it)."""
    nums = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    # The checksum: the sum of the block's bytes (the NUL padding adds nothing). Name (<= 100
    # bytes) and numbers (48) in one Adler-32 sum, the link name (<= 100) in another.
    chk = _byte_sum(nums, _byte_sum(name)) - 1 + typeflag[0] + _TAIL_SUM
    if linkname:
        chk += _byte_sum(linkname) - 1
    return b"%s%s%06o\0 %s%s%s" % (name.ljust(100, b"\0"), nums, chk, typeflag,
                                   linkname.ljust(100, b"\0"), _TAIL)


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

    def read_in_place(self, f, size, what):
        """When one header block and `size` bytes fit in the current buffer, reads `size` bytes
        of the reader `f` (readinto) to where they go after that header and returns them (a
        memoryview, valid until `put_in_place`); else None, and nothing is read. The header is
        not known yet: the mode may depend on these bytes (one read for both)."""
        start = self.pos + BLOCK
        end = start + size
        if end > self.bs:
            return None
        mv = self.mv[start:end]
        n = f.readinto(mv)
        while n < size:  # a short read: read on (the file may have shrunk)
            k = f.readinto(mv[n:])
            if not k:
                raise RuntimeError("%s shrank while it was being read" % what())
            n += k
        return mv

    def put_in_place(self, header, size):
        """Writes the one-block `header` before the content `read_in_place` put in the buffer,
        then the padding, and moves on past them."""
        pos = self.pos
        mv = self.mv
        mv[pos: pos + BLOCK] = header
        end = pos + BLOCK + size
        pad = -size % BLOCK
        if pad:
            mv[end: end + pad] = _ZEROS[:pad]
        self.pos = end + pad
        if self.pos == self.bs:  # the buffer is full (pos is always a multiple of BLOCK)
            self._emit()

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


class Listing(object):
    """The listing: one JSON object per member, in tar order, kept as the text of the
    canonical JSON (shiko/files.py canonical_json: sorted keys, no spaces, not ASCII-escaped),
    written as it is (`json`) without building a dict per member and encoding those."""

    __slots__ = ("parts",)

    def __init__(self, parts):
        self.parts = parts

    def __len__(self):
        return len(self.parts)

    def json(self):
        """The bytes canonical_json gives for the list of entries."""
        return ("[" + ",".join(self.parts) + "]").encode("utf-8")

    def entries(self):
        """The entries as dicts (reports, tests)."""
        return json.loads(self.json().decode("utf-8"))


# A string's JSON text exactly as json.dumps(ensure_ascii=False) writes it (the C encoder).
_JSON_STR = json.encoder.encode_basestring
# One listing entry, keys sorted: escaped, gid, mode, origin, path, size, target, type, uid.
_ENTRY = '{%s"gid":%d,"mode":"%04o",%s"path":%s,"size":%d,%s"type":"%s","uid":%d}'


def _origin_json(label):
    """The `"origin":...,` part of the entries of one label."""
    text = _JSON_STR(label) if type(label) is str else canonical_json(label).decode("utf-8")
    return '"origin":%s,' % text


def write_tar(members, stream, mtime, layer):
    """Streams the members (collect.Layer.finalize's order) into `stream` (a TarStream) with
    `mtime` on every member; returns the Listing (one entry per member, in tar order).

    Decides what finalize leaves to it (`layer`: the collect.Layer): the mode of each file whose
    mode comes from its content, from the first bytes of the one read of that content, and
    hardlinks: a file whose source, mode, uid and gid equal an earlier file's is a hardlink to
    it (its content is not read again)."""
    parts = []
    first = {}  # (source key, mode, uid, gid) -> path of the file that holds the content
    known = layer.exec_by_content  # source key -> mode, of the sources already looked at
    origins = {}  # label -> its "origin" part
    looks_executable = walk.looks_executable
    bs = stream.bs
    one_block = mtime <= _OCTAL11_MAX  # and names, uids and gids that fit: no pax header
    for m in members:
        kind = m.kind
        path = m.path
        name = path.encode("utf-8", "surrogateescape")
        uid = m.uid
        gid = m.gid
        size = 0
        target = None  # a link's target as listed
        if kind == "file":
            mode = m.mode
            key = m.source.key
            if mode is None:
                mode = known.get(key)
                if mode is None and ((key, 0o755, uid, gid) in first or
                                     (key, 0o644, uid, gid) in first):
                    mode = _look_at(layer, m)  # maybe a hardlink: look before reading
                m.mode = mode
            to = None if mode is None else first.get((key, mode, uid, gid))
            if to is None:
                size = m.size
                src = m.source
                start = stream.pos + BLOCK
                end = start + size
                if (end <= bs and size and one_block and type(src) is FsSource and
                        len(name) <= 100 and uid <= _OCTAL7_MAX and gid <= _OCTAL7_MAX):
                    # The common case, inline: a file on disk whose one-block header and content
                    # fit in the current buffer. One open and one read: the content goes
                    # straight to its place after the header's block, then the header, whose
                    # mode may come from the content's first bytes, goes in front of it.
                    mv = stream.mv
                    content = mv[start:end]
                    try:
                        fd = os_open(src.path, _O_READ)
                        try:
                            n = readv(fd, [content])
                            if n < size:
                                _read_rest(fd, content, n, m)
                        finally:
                            os_close(fd)
                    except OSError as e:
                        if mode is None:
                            raise layer.read_error(m, e)
                        raise
                    if mode is None:
                        mode = m.mode = known[key] = (
                            0o755 if looks_executable(bytes(content[:HEAD_SIZE])) else 0o644)
                    pos = stream.pos
                    mv[pos:start] = _ustar(name, mode, uid, gid, size, mtime, b"0", b"")
                    pad = -size % BLOCK
                    if pad:
                        mv[end:end + pad] = _ZEROS[:pad]
                    stream.pos = end + pad
                    if end + pad == bs:  # the buffer is full (pos is a multiple of BLOCK)
                        stream._emit()
                else:
                    _write_file(stream, m, name, mtime, layer)
                    mode = m.mode
                first[(key, mode, uid, gid)] = path
            else:
                kind = m.kind = "hardlink"
                m.target = to
                target = "/" + to
                stream.write(tar_header(name, mode, uid, gid, 0, mtime, b"1",
                                        to.encode("utf-8", "surrogateescape")))
        else:
            mode = m.mode
            if kind == "dir":
                stream.write(tar_header(name + b"/", mode, uid, gid, 0, mtime, b"5"))
            else:  # symlink
                target = m.target
                stream.write(tar_header(name, mode, uid, gid, 0, mtime, b"2",
                                        target.encode("utf-8", "surrogateescape")))
        shown = "/" + path
        if shown.isascii() and (target is None or target.isascii()):
            escaped = ""  # listed as they are (the common case, without encoding them)
        else:
            names, esc = listed_names([shown] if target is None else [shown, target])
            shown = names[0]
            target = names[1] if target is not None else None
            escaped = '"escaped":true,' if esc else ""
        if m.implicit:
            origin = ""
        else:
            label = m.origin.label
            origin = origins.get(label) if type(label) is str else None
            if origin is None:
                origin = _origin_json(label)
                if type(label) is str:
                    origins[label] = origin
        parts.append(_ENTRY % (escaped, gid, mode, origin, _JSON_STR(shown), size,
                               "" if target is None else '"target":%s,' % _JSON_STR(target),
                               kind, uid))
    stream.close()
    return Listing(parts)


def _read_rest(fd, mv, n, m):
    """Reads on after a short read of n bytes until `mv` is full (the file may have shrunk)."""
    while n < len(mv):
        k = os.readv(fd, [mv[n:]])
        if not k:
            raise RuntimeError("the source of /%s shrank while it was being read" % m.path)
        n += k


def _look_at(layer, m, f=None):
    """The mode of a by-content file from a read of its first bytes alone (before its content
    is copied from `f`, the open source, or when it may be a hardlink, whose content is not
    read at all)."""
    try:
        g = f if f is not None and hasattr(f, "head") else m.source.open()
        try:
            if hasattr(g, "head"):
                head = g.head(HEAD_SIZE)
            else:
                buf = bytearray(HEAD_SIZE)
                head = bytes(buf[:g.readinto(memoryview(buf))])
        finally:
            if g is not f:
                g.close()
    except OSError as e:
        raise layer.read_error(m, e)
    return layer.file_mode(m, head)


def _write_file(stream, m, name, mtime, layer):
    """Writes a regular file: header, content, padding; decides its mode when it is None."""
    size = m.size
    if not size:
        stream.write(tar_header(name, m.mode, m.uid, m.gid, 0, mtime, b"0"))
        return
    by_content = m.mode is None
    try:
        f = m.source.open()
    except OSError as e:
        if by_content:
            raise layer.read_error(m, e)
        raise
    what = lambda: "the source of /" + m.path  # noqa: E731
    try:
        if len(name) <= 100 and m.uid <= _OCTAL7_MAX and (
                m.gid <= _OCTAL7_MAX and mtime <= _OCTAL11_MAX):
            # The common case: a one-block header (no pax) and the content fit in the current
            # buffer. The content is read first, straight to its place; the header, which may
            # depend on it (the mode), then goes before it.
            try:
                content = stream.read_in_place(f, size, what)
            except OSError as e:
                if by_content:
                    raise layer.read_error(m, e)
                raise
            if content is not None:
                if by_content:
                    m.mode = layer.file_mode(m, content[:HEAD_SIZE])
                stream.put_in_place(_ustar(name, m.mode, m.uid, m.gid, size, mtime, b"0", b""),
                                    size)
                return
        if by_content:
            m.mode = _look_at(layer, m, f)
        stream.write(tar_header(name, m.mode, m.uid, m.gid, size, mtime, b"0"))
        stream.copy_from(f, size, what)
    finally:
        f.close()
