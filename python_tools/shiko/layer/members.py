"""The members of a layer being built, and where their file content is read from."""

import os

MODE_MAX = 0o7777


class Origin(object):
    """The rule attribute and label an entry came from: every error about it names them."""

    __slots__ = ("attr", "label")

    def __init__(self, attr, label):
        self.attr = attr
        self.label = label


class FsSource(object):
    """A regular file on disk (already resolved through symlinks). `real`: its path with every
    symlink resolved, when the caller knows it (a tree walk does, without a system call per
    path component); else os.path.realpath(path)."""

    __slots__ = ("path", "key")

    def __init__(self, path, real=None):
        self.path = path
        # Identity by resolved path, not inode: inodes depend on how Bazel, a sandbox or a
        # cache materialized the inputs, and the tar's hardlinks must not.
        self.key = ("fs", real or os.path.realpath(path))

    def open(self):
        return _FdReader(os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)))


class _FdReader(object):
    """Minimal reader: os-level reads straight into the caller's buffer."""

    __slots__ = ("fd",)

    def __init__(self, fd):
        self.fd = fd

    def readinto(self, mv):
        return os.readv(self.fd, [mv])

    def head(self, n):
        """The first `n` bytes (fewer if the file is shorter), wherever the reads are."""
        return os.pread(self.fd, n, 0)

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
    """A regular file inside an imported tar (`tar`: an imports.ImportedTar)."""

    __slots__ = ("tar", "info", "key")

    def __init__(self, tar, info):
        self.tar = tar
        self.info = info
        # One member, not one name: a tar may hold a name twice with different contents.
        self.key = ("tar", tar.index, info.offset)

    def open(self):
        if self.info.sparse is not None:
            return self.tar.tarfile.extractfile(self.info)
        return _TarMemberReader(self.tar.raw.fileno(), self.info.offset_data, self.info.size)


class _BytesReader(object):
    """Reads bytes held in memory (a memoryview), straight into the caller's buffer."""

    __slots__ = ("data", "pos")

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def readinto(self, mv):
        n = min(len(mv), len(self.data) - self.pos)
        mv[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

    def head(self, n):
        return bytes(self.data[:n])

    def close(self):
        pass


class BytesSource(object):
    """A regular file whose content is in memory (a Debian package's file, read from its
    data.tar: shiko/layer/debs.py). `key` names the content: the paths of one hardlink group
    share it."""

    __slots__ = ("data", "key")

    def __init__(self, data, key):
        self.data = data
        self.key = key

    def open(self):
        return _BytesReader(memoryview(self.data))


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
        # Files on disk: True/False from the entry's "executable", None to decide by content.
        self.exec_bit = exec_bit
        self.src_mode = src_mode
        self.src_uid = src_uid
        self.src_gid = src_gid
        self.implicit = implicit
        self.mode = self.uid = self.gid = None
        self.override = None


def enc(s):
    """A path as the bytes written to the tar (undecodable file names round-trip)."""
    return s.encode("utf-8", "surrogateescape")


def sort_key(path):
    """Members and directory listings are sorted bytewise."""
    return enc(path)
