"""Debian packages in a layer (`debs` entries), without the deb tool's tar in between.

    for m in members(layer, entries, prefix, origin, index):
        layer.add(m)

`entries` are shiko/debian/unpack.py's (build_entries: {path: Entry}, contents in memory). The
members are what importing the tar write_tar makes of them would give (shiko/layer/imports.py):
names normalized, directories, symlinks and files with their mode, uid and gid, and each
hardlink group (unpack.hardlink_groups) one content, shared by all its paths and carrying the
attributes of the group's root. So the layer's bytes are the same either way; only the tar
(written, read back and parsed again: most of a package layer's time) is gone.
"""

from python_tools.shiko.debian.unpack import hardlink_groups
from python_tools.shiko.layer.members import MODE_MAX, BytesSource, Member
from python_tools.shiko.tar import names


def members(layer, entries, prefix, origin, index):
    """[Member] of `entries` under `prefix`, in name order; `index` keys their contents."""
    link_to, content_of = hardlink_groups(entries)
    sources = {}  # the path holding a content -> its BytesSource
    out = []
    for path in sorted(entries):
        rel = names.normalize(path, allow_absolute=False, allow_empty=True)
        full = names.join(prefix, rel)
        if not full:
            continue  # the root: no "./" entry in a layer
        e = entries[path]
        if e.kind == "dir":
            out.append(Member(full, "dir", origin, src_mode=e.mode & MODE_MAX, src_uid=e.uid,
                              src_gid=e.gid))
            continue
        holder = link_to.get(path, path)  # the group's first name in order holds the content
        if holder in content_of:
            e = entries[content_of[holder]]
        mode, uid, gid = e.mode & MODE_MAX, e.uid, e.gid
        if e.kind == "symlink":
            if not e.target:
                raise layer.error("symlink with an empty target (in %s)" % origin.label,
                                  origin.attr, path)
            out.append(Member(full, "symlink", origin, target=e.target, src_mode=mode,
                              src_uid=uid, src_gid=gid))
            continue
        source = sources.get(holder)
        if source is None:
            source = sources[holder] = BytesSource(e.data, ("debs", index, holder))
        out.append(Member(full, "file", origin, size=len(e.data), source=source, src_mode=mode,
                          src_uid=uid, src_gid=gid))
    return out
