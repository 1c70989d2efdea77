"""Existing tars unpacked into a layer (`tar` entries).

The tar may be compressed with gzip, zstd, xz or bzip2 (compression.detect: the magic number,
unless the first 512 bytes are a tar header with a right checksum): it is then first
decompressed to a temporary file in the layer's scratch directory (members have to be read in
the output's order, which needs random access); a plain tar is read in place.

Member names lose a leading "./". Mode, uid and gid are kept (overrides still win); user/group
names, pax extras and mtimes are dropped. Absolute names, ".." components, devices, FIFOs,
unknown member types and hardlinks to something that is not an earlier file of the same tar
are errors (a hardlink to a symlink becomes the same symlink; GNU/pax sparse files are
expanded). Members are taken as extraction leaves them (`ImportedTar.members`). Names that are
not UTF-8 are kept as their bytes (tarfile's surrogate escapes).
"""

import os
import tarfile

from python_tools.shiko.layer.members import MODE_MAX, Member, TarMemberSource
from python_tools.shiko.tar import compression
from python_tools.shiko.tar import names

_NAME_PROBLEMS = {
    names.ABSOLUTE: "absolute member names are not allowed",
    names.DOTDOT: "'..' is not allowed in member names",
    names.NUL: "NUL is not allowed in member names",
}


class ImportedTar(object):
    """One imported tar; `index` (its position among the layer's tars) keys its contents."""

    def __init__(self, layer, src, origin, index):
        self.layer = layer
        self.src = src
        self.origin = origin
        self.index = index
        self.raw = None
        self.tarfile = None
        try:
            fmt, f = compression.open_file(src)
        except OSError as e:
            raise layer.error("cannot read the tar %r of %s: %s" % (src, origin.label, e.strerror),
                              origin.attr, src)
        self.format = fmt
        if fmt != "plain":
            f = self._decompress(f, fmt)
        self.raw = f
        self.empty = os.fstat(f.fileno()).st_size == 0

    def _decompress(self, reader, fmt):
        import tempfile  # imported here: most layers import no compressed tar

        tmp = tempfile.NamedTemporaryFile(dir=self.layer.scratch_dir(), suffix=".tar", delete=False)
        try:
            while True:
                try:
                    data = reader.read(compression.READ_SIZE)
                except compression.errors() as e:  # corrupt input, not our disk
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
        tmp.seek(0)
        return tmp

    def _bad(self, name, problem):
        return self.layer.error("%s (in %s)" % (problem, self.origin.label), self.origin.attr, name)

    def _norm_name(self, name):
        try:
            return names.normalize(name, allow_absolute=False, allow_empty=True)
        except names.BadName as e:
            raise self._bad(name, _NAME_PROBLEMS[e.reason])

    def members(self, prefix):
        """The layer members of this tar, unpacked under `prefix`.

        As extraction would leave them: a name written twice is its last member; a hardlink
        shares the content and attributes of what its target name was when the link came, in
        tar order (an earlier file or symlink, or what that name itself linked to), so
        `x`(A), `h` -> `x`, `x`(B) gives `h` = A and `x` = B. A hardlink whose target is not an
        earlier member is an error, as it is for `tar -x`."""
        if self.empty:
            return []
        try:
            self.tarfile = tarfile.open(fileobj=self.raw, mode="r:")
            infos = self.tarfile.getmembers()
        except tarfile.TarError as e:
            raise self.layer.error("not a valid tar file (%s): %s" % (self.origin.label, e),
                                   self.origin.attr, self.src)
        by_name = {}  # rel -> (last member of that name, the member it has its content from)
        for info in infos:
            rel = self._norm_name(info.name)
            if info.ischr() or info.isblk():
                raise self._bad(info.name, "device files are not allowed in a layer")
            if info.isfifo():
                raise self._bad(info.name, "FIFOs are not allowed in a layer")
            if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
                raise self._bad(info.name, "unsupported tar member type %r" % info.type)
            inode = info
            if info.islnk():
                target = by_name.get(self._norm_name(info.linkname))
                if target is None:
                    raise self._bad(info.name, "hardlink to %r, which is not a member of the "
                                    "same tar before it" % info.linkname)
                inode = target[1]
                if inode.isdir():
                    raise self._bad(info.name, "hardlink to a directory")
            by_name[rel] = (info, inode)  # later members win, as when extracting
        out = []
        for rel, (info, inode) in by_name.items():
            path = names.join(prefix, rel)
            if not path:
                continue  # the tar's own root: no "./" entry in a layer
            out.append(self._member(path, info, inode))
        return out

    def _member(self, path, info, inode):
        if info.isdir():
            return Member(path, "dir", self.origin, src_mode=info.mode & MODE_MAX,
                          src_uid=info.uid, src_gid=info.gid)
        # A hardlink shares its target's inode: content and attributes come from it (a hardlink
        # to a symlink becomes the same symlink).
        mode, uid, gid = inode.mode & MODE_MAX, inode.uid, inode.gid
        if inode.issym():
            if not inode.linkname:
                raise self._bad(info.name, "symlink with an empty target")
            return Member(path, "symlink", self.origin, target=inode.linkname, src_mode=mode,
                          src_uid=uid, src_gid=gid)
        return Member(path, "file", self.origin, size=inode.size,
                      source=TarMemberSource(self, inode), src_mode=mode, src_uid=uid, src_gid=gid)

    def close(self):
        if self.tarfile is not None:
            self.tarfile.close()
        if self.raw is not None:
            self.raw.close()
