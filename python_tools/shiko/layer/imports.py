"""Existing tars unpacked into a layer (`tar` entries).

The tar may be compressed with gzip, zstd, xz or bzip2 (detected by magic number): it is then
first decompressed to a temporary file in the layer's scratch directory (members have to be
read in the output's order, which needs random access); a plain tar is read in place.

Member names lose a leading "./". Mode, uid and gid are kept (overrides still win); user/group
names, pax extras and mtimes are dropped. Absolute names, ".." components, devices, FIFOs,
unknown member types and hardlinks to something that is not a file of the same tar are errors
(a hardlink to a symlink becomes the same symlink; GNU/pax sparse files are expanded).
"""

import os
import tarfile
import tempfile

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
        """The layer members of this tar, unpacked under `prefix`."""
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
            path = names.join(prefix, rel)
            if not path:
                continue  # the tar's own root: no "./" entry in a layer
            mode = info.mode & MODE_MAX
            if info.isdir():
                out.append(Member(path, "dir", self.origin, src_mode=mode, src_uid=info.uid,
                                  src_gid=info.gid))
            elif info.issym():
                if not info.linkname:
                    raise self._bad(info.name, "symlink with an empty target")
                out.append(Member(path, "symlink", self.origin, target=info.linkname,
                                  src_mode=mode, src_uid=info.uid, src_gid=info.gid))
            else:
                out.append(self._hardlink_or_file(path, info, by_name))
        return out

    def _hardlink_or_file(self, path, info, by_name):
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
            return Member(path, "symlink", self.origin, target=t.linkname,
                          src_mode=t.mode & MODE_MAX, src_uid=t.uid, src_gid=t.gid)
        # A hardlink shares its target's inode: content and attributes come from it.
        return Member(path, "file", self.origin, size=t.size, source=TarMemberSource(self, t),
                      src_mode=t.mode & MODE_MAX, src_uid=t.uid, src_gid=t.gid)

    def close(self):
        if self.tarfile is not None:
            self.tarfile.close()
        if self.raw is not None:
            self.raw.close()
