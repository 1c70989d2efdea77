"""Compression and decompression of tar streams: the one implementation every tool uses.

Decompression (layer imports, image layers read back, the members of a .deb):
- `detect(head)` names the format of a stream from its first 512 bytes: "plain" when they are a
  tar header with a right checksum (a plain tar's first member name may start with a magic
  number, e.g. "BZh"), else from its magic number: gzip, zstd, xz, bzip2, or "plain";
  `suffix_format(name)` from a file name (`data.tar.zst`, ...).
- `open_file(path)` returns (format, reader of the decompressed bytes); `decompress(data, fmt)`
  the bytes of a compressed blob in memory; `errors()` the exceptions that mean corrupt input.
- gzip is read with python-isal when it is importable (faster), else the standard library's
  gzip; zstd needs zstandard (a missing module is `Unsupported`); zstd input is read across
  frames; xz and bzip2 use the standard library.

Compression (layer blobs): `pipeline(compression, sink, level)` returns the pipeline that hashes,
compresses and writes fixed-size blocks of a tar stream on other threads (see `Pipeline`); the
bytes depend only on the input and the constants below, not on the machine's core count:
- gzip: python-isal (ISA-L) raw deflate in independent 1 MiB blocks of the tar stream, each
  primed with the previous block's last 32 KiB and ended with a sync flush (as pigz does),
  compressed by a thread pool, then an empty final block; gzip header with mtime 0, no name,
  XFL 0, OS 255.
- zstd: zstandard (libzstd) with the given level, one independent frame per 8 MiB of the tar
  stream (the last one shorter), each compressed in one call by a single-threaded context on
  a thread pool and concatenated in order; every frame has a checksum, no content size and
  no dictionary id.
- none: the plain tar.

isal and zstandard are imported inside the functions that need them, so a process that
compresses and decompresses nothing (or only plain tars) never imports them.
"""

import bz2
import collections
import gzip
import hashlib
import io
import lzma
import queue
import struct
import sys
import zlib

from python_tools.shiko import threads as threads_mod

READ_SIZE = 1 << 20

# These constants decide the output bytes: changing one changes every layer digest.
GZIP_BLOCK_SIZE = 1 << 20
DEFLATE_WINDOW = 1 << 15
ZSTD_FRAME_SIZE = 8 << 20

COMPRESSIONS = ("gzip", "zstd", "none")
DEFAULT_LEVELS = {"gzip": 1, "zstd": 3}
LEVEL_RANGES = {"gzip": (0, 3), "zstd": (1, 19)}

# ---------------------------------------------------------------------------------------------
# Decompression

FORMATS = ("gzip", "zstd", "xz", "bzip2")
MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bzip2"),
)
SUFFIXES = (
    (".xz", "xz"),
    (".lzma", "xz"),  # the legacy .lzma format: lzma's automatic format detection reads both
    (".gz", "gzip"),
    (".zst", "zstd"),
    (".bz2", "bzip2"),
    (".tar", "plain"),
)


TAR_BLOCK = 512


class Unsupported(ValueError):
    """Input in a format this process cannot read (its module is not installed)."""


def is_tar_header(block):
    """True when `block` starts with a tar header block (ustar, pax, GNU or v7) whose checksum
    is right: the sum of its 512 bytes with the checksum field counted as spaces, unsigned or
    (old writers) signed, as the octal number in that field. An all-zero block is not one."""
    if len(block) < TAR_BLOCK:
        return False
    field = block[148:156].split(b"\0", 1)[0].strip()
    if not field or any(c not in b"01234567" for c in field):
        return False
    want = int(field, 8)
    rest = block[:148] + b" " * 8 + block[156:TAR_BLOCK]
    if sum(rest) == want:
        return True
    return sum(b - 256 if b > 127 else b for b in rest) == want


def detect(head, formats=FORMATS):
    """The format of a stream whose first bytes are `head` (its first 512 bytes, or all of it
    when shorter), among `formats`: "plain" when `head` is a tar header (is_tar_header), else
    the format whose magic number `head` starts with, else "plain"."""
    if is_tar_header(head):
        return "plain"
    for magic, fmt in MAGIC:
        if fmt in formats and head.startswith(magic):
            return fmt
    return "plain"


def suffix_format(name):
    """The format a file name's extension says (`data.tar.xz` -> "xz"), or None if unknown."""
    for suffix, fmt in SUFFIXES:
        if name.endswith(suffix):
            return fmt
    return None


def _reader(source, fmt, what):
    """A reader of the decompressed bytes of `source`: a path (the reader owns the file it
    opens and closes it) or a binary file object (left open)."""
    own = isinstance(source, str)
    if fmt == "gzip":
        try:
            from isal import igzip
            cls = igzip.IGzipFile
        except ImportError:
            cls = gzip.GzipFile
        return cls(source, "rb") if own else cls(fileobj=source, mode="rb")
    if fmt == "zstd":
        try:
            import zstandard
        except ImportError:
            raise Unsupported("%s is zstd-compressed and the zstandard module is missing" % what)
        f = open(source, "rb") if own else source
        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True, closefd=own)
    if fmt == "xz":
        return lzma.LZMAFile(source, "rb")
    if fmt == "bzip2":
        return bz2.BZ2File(source, "rb")
    raise ValueError("unknown compression format %r" % fmt)


def open_file(path, formats=FORMATS):
    """(format, reader): the file at `path` opened for reading its decompressed bytes, the
    format detected among `formats` by `detect` ("plain": the file itself, opened "rb").
    Closing the reader closes the file. OSError when it cannot be opened."""
    f = open(path, "rb")
    try:
        fmt = detect(f.read(TAR_BLOCK), formats)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    if fmt == "plain":
        return fmt, f
    f.close()
    return fmt, _reader(path, fmt, path)


def decompress(data, fmt, what="the input"):
    """The decompressed bytes of `data` in format `fmt` ("plain": `data` itself)."""
    if fmt == "plain":
        return data
    with _reader(io.BytesIO(data), fmt, what) as r:
        return r.read()


def errors():
    """The exceptions a reader raises on corrupt or truncated input (for `except errors():`).

    Looked up when an exception is being handled: isal and zstandard errors are included only
    when those modules were imported (only then can they have been raised)."""
    out = [EOFError, ValueError, OSError, lzma.LZMAError, zlib.error]
    isal_zlib = sys.modules.get("isal.isal_zlib")
    if isal_zlib is not None:
        out.append(isal_zlib.error)
    zstandard = sys.modules.get("zstandard")
    if zstandard is not None:
        out.append(zstandard.ZstdError)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Compression: tar bytes -> fixed-size blocks -> (hash, compress, hash, write)


class Sink(object):
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
    return min(threads_mod.usable_cores(), 8)


class Pipeline(object):
    """Hashes, compresses and writes fixed-size blocks of the tar stream, in order.

    The reading thread (the caller) fills buffers (`get_buffer`, then `block(buf, n)`); per
    block, three tasks run on other threads: hashing (diff_id, and the gzip CRC) on one ordered
    thread, compression on `threads` threads (independent blocks: gzip deflate blocks, zstd
    frames), and hashing+writing the compressed bytes on one ordered thread, which
    then recycles the buffer. hashlib, ISA-L and zstd release the GIL on large buffers, so this
    uses all cores. A fixed number of buffers bounds the memory and makes the reader wait for
    the writer. `finish()` writes the tail; `diff` is then the sha256 of the tar, `length` its
    size. This class itself is the "none" compression.
    """

    def __init__(self, sink, block_size=READ_SIZE, threads=1, nbuf=None):
        self.sink = sink
        self.block_size = block_size
        self.diff = hashlib.sha256()
        self.length = 0
        self.free = queue.Queue()
        self.nbuf = nbuf or 2 * threads + 4
        self.created = 0
        self.pending = collections.deque()
        self.hasher = threads_mod.Pool(1)
        self.compressor = threads_mod.Pool(threads)
        self.writer = threads_mod.Pool(1)

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
        for pool in (self.hasher, self.compressor, self.writer):
            pool.shutdown(cancel=True)


class GzipPipeline(Pipeline):
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
        Pipeline.__init__(self, sink, GZIP_BLOCK_SIZE, threads or _workers())
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


class ZstdPipeline(Pipeline):
    """zstd as independent frames, one per ZSTD_FRAME_SIZE bytes of the tar (the last one
    shorter), each compressed in one call by a single-threaded libzstd context on the pool's
    threads, then concatenated in order (RFC 8878: a zstd stream is one or more frames).

    Compared with one stream through libzstd's own workers, this reads the caller's buffers in
    place (no copy into libzstd's job buffers, no job hand-off), took ~15% less CPU for the same
    level on the layer bench's tree (docs/performance.md), and its bytes cannot depend on the
    thread count. Every frame has a checksum and no content size. The blob is ~0.5% larger
    than one stream's (no match reaches back across a frame boundary)."""

    def __init__(self, sink, level, threads=None):
        import threading
        import zstandard
        self.zstd = zstandard
        self.level = level
        self.local = threading.local()
        threads = threads or _workers()
        Pipeline.__init__(self, sink, ZSTD_FRAME_SIZE, threads, nbuf=threads + 3)

    def _compress(self, mv, ctx):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = self.zstd.ZstdCompressor(
                level=self.level, threads=0, write_checksum=True, write_content_size=False,
                write_dict_id=False)
        return c.compress(mv)


def pipeline(compression, sink, level, threads=None):
    """The pipeline of one compression ("gzip", "zstd" or "none") writing into `sink`.

    threads (default: the usable cores, at most 8) changes the speed, never the bytes (tests
    pin this)."""
    if compression == "gzip":
        return GzipPipeline(sink, level, threads)
    if compression == "zstd":
        return ZstdPipeline(sink, level, threads)
    return Pipeline(sink)


def compressor_name(compression, level):
    """What wrote the blob, for the layer descriptor: library versions, level and blocking."""
    if compression == "gzip":
        import isal
        return "isal %s igzip level %d (ISA-L %s, %d KiB blocks)" % (
            isal.__version__, level, isal.ISAL_VERSION, GZIP_BLOCK_SIZE >> 10)
    if compression == "zstd":
        import zstandard
        return "zstandard %s libzstd %s level %d (%d MiB frames)" % (
            zstandard.__version__, ".".join(str(x) for x in zstandard.ZSTD_VERSION), level,
            ZSTD_FRAME_SIZE >> 20)
    return "none"
