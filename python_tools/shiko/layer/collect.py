"""All members of one layer: entries collected, conflicts checked, attributes and hardlinks decided.

    layer = Layer(manifest.Spec(m), scratch_parent)
    try:
        layer.collect()
        members = layer.finalize()      # sorted bytewise, parents first, modes/owners decided
        ...                             # write them (writer.write_tar(members, stream, mtime,
                                        # layer): it decides modes by content and hardlinks)
    finally:
        layer.close()                   # imported tars closed, scratch directory removed

Several entries at one path: directories merge (attributes from an imported tar win over
defaults, the first such tar in entry order wins); regular files with identical content (same
resolved source, or same size and sha256) and symlinks with the same target keep the first;
anything else is an error naming the path and both origins. Regular files with the same source
and the same final mode/uid/gid are stored once, at the first path in output order; later paths
become hardlinks to it (decided by the writer, which learns the modes decided by content as it
reads the files).
"""

import hashlib
import shutil

from python_tools.shiko.layer import walk
from python_tools.shiko.layer.imports import ImportedTar
from python_tools.shiko.layer.members import Member, Origin
from python_tools.shiko.tar import compression

READ_SIZE = compression.READ_SIZE


def _path_key(m):
    return m.path.encode("utf-8", "surrogateescape")  # members.sort_key, one call less


class Layer(object):
    """The members of the layer a checked manifest (`spec`) describes.

    scratch_parent: where the scratch directory (decompressed imported tars) is created, next
    to the output so that it is on the same file system and removed with the action's outputs.
    """

    def __init__(self, spec, scratch_parent):
        self.spec = spec
        self.target = spec.target
        self.scratch_parent = scratch_parent
        self.scratch = None
        self.tars = []
        self.inventories = []  # of `debs` entries, in entry order (shiko/debian/inventory.py)
        self.members = {}
        self._digests = {}
        self.exec_by_content = {}  # source key -> mode, of the files decided by content

    def error(self, problem, attr=None, value=None):
        return self.spec.error(problem, attr, value)

    def scratch_dir(self):
        if self.scratch is None:
            import tempfile  # only layers that import compressed tars need it

            self.scratch = tempfile.mkdtemp(prefix=".layer-import-", dir=self.scratch_parent)
        return self.scratch

    # -----------------------------------------------------------------------------------------
    # Collecting members

    def collect(self):
        norm = self.spec.norm
        for e in self.spec.entries:
            if not isinstance(e, dict):
                raise self.error("each entry must be an object", "entries", e)
            o = e.get("origin") or {}
            origin = Origin(o.get("attr") or "entries", o.get("label") or self.target)
            kind = e.get("kind")
            dest = e.get("dest", "")
            shown = dest if not isinstance(dest, str) or dest.startswith("/") else "/" + dest
            if kind == "file" or kind == "tree":
                path = norm(dest, origin.attr, shown, allow_empty=(kind == "tree"))
                executable = e.get("executable")
                if executable is not None and not isinstance(executable, bool):
                    raise self.error("'executable' must be true, false or null", origin.attr, shown)
                walk.add_source(self, e.get("src"), path, origin, executable)
            elif kind == "symlink":
                path = norm(dest, origin.attr, shown)
                target = e.get("target")
                if not isinstance(target, str) or not target or "\0" in target:
                    raise self.error("a symlink needs a non-empty target", origin.attr, shown)
                self.add(Member(path, "symlink", origin, target=target))
            elif kind == "dir":
                path = norm(dest, origin.attr, shown)
                self.add(Member(path, "dir", origin))
            elif kind == "tar":
                path = norm(dest, origin.attr, shown, allow_empty=True)
                self._add_tar(e.get("src"), path, origin)
            elif kind == "debs":
                path = norm(dest, origin.attr, shown, allow_empty=True)
                self._add_debs(e.get("manifest"), path, origin)
            else:
                raise self.error("unknown entry kind", origin.attr, kind)
        self._add_parents()
        self._apply_overrides()

    def _add_tar(self, src, prefix, origin):
        if not isinstance(src, str) or not src:
            raise self.error("a tar entry needs a source path", origin.attr, "/" + prefix)
        tar = ImportedTar(self, src, origin, len(self.tars))
        self.tars.append(tar)
        for m in tar.members(prefix):
            self.add(m)

    def _add_debs(self, manifest, prefix, origin):
        """A deb_tar's packages: the members of the tar python_tools/deb.py would write for its
        manifest, as importing that tar would give them (shiko/layer/debs.py), made straight
        from the packages' contents; its inventory is kept."""
        if not isinstance(manifest, str) or not manifest:
            raise self.error("a debs entry needs the deb tool's manifest", origin.attr, "/" + prefix)
        # Imported here: only layers of Debian packages need them.
        from python_tools.shiko.debian.inventory import inventory
        from python_tools.shiko.debian.unpack import build_entries
        from python_tools.shiko.files import read_json
        from python_tools.shiko.layer import debs

        deb_manifest = read_json(manifest)
        entries, controls = build_entries(deb_manifest)
        self.inventories.append(inventory(deb_manifest, entries, controls))
        for m in debs.members(self, entries, prefix, origin, len(self.inventories)):
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
        for path, o, attr in self.spec.overrides:
            m = self.members.get(path)
            if m is None:
                raise self.error("no file, directory or link of this layer has this path "
                                 "(check for a typo)", attr, "/" + path)
            m.override = o

    # -----------------------------------------------------------------------------------------
    # Final attributes and order

    def finalize(self):
        """Returns the members in output order with modes and owners decided, except the modes
        decided by content: those files keep mode None and the writer decides them from the
        first bytes it reads with their content (`file_mode`). Hardlinks are decided by the
        writer too (`link_key`), in output order."""
        spec = self.spec
        out = sorted(self.members.values(), key=_path_key)
        for m in out:
            o = m.override or {}
            if "mode" in o:
                m.mode = o["mode"]
            elif m.src_mode is not None:
                m.mode = m.src_mode
            elif m.kind == "file":
                if spec.file_mode is not None:
                    m.mode = spec.file_mode
                elif m.exec_bit is not None:
                    m.mode = 0o755 if m.exec_bit else 0o644
                elif m.size < 2:
                    m.mode = 0o644  # too short for "#!" or an ELF header
                else:
                    m.mode = None  # by content: the writer decides (file_mode)
            elif m.kind == "dir":
                m.mode = spec.dir_mode
            else:
                m.mode = 0o777
            m.uid = o["uid"] if "uid" in o else (m.src_uid if m.src_uid is not None else spec.uid)
            m.gid = o["gid"] if "gid" in o else (m.src_gid if m.src_gid is not None else spec.gid)
        return out

    # What the writer asks while it writes the members in output order.

    def file_mode(self, m, head):
        """The mode of a file whose mode is decided by content (finalize left it None), from
        `head`, its first bytes (at least walk.HEAD_SIZE of them when it has that many): 0755
        iff it starts with "#!" or an ELF header. Remembered per source, so the content of a
        source at several paths is looked at once. Never the permission bits, which depend on
        how the inputs were materialized (a remote worker makes every input 0555)."""
        mode = 0o755 if walk.looks_executable(bytes(head[:walk.HEAD_SIZE])) else 0o644
        self.exec_by_content[m.source.key] = mode
        return mode

    def read_error(self, m, e):
        """The error for a source that cannot be opened or read (an OSError `e`)."""
        return self.error("cannot read the source %r of %s: %s" % (
            m.source.path, m.origin.label, e.strerror), m.origin.attr, "/" + m.path)

    def close(self):
        for t in self.tars:
            t.close()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
