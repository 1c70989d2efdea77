"""The final filesystem of an image: its layers applied in order, whiteouts included.

    tree = Tree()
    for path in layer_blob_paths:          # bottom first; gzip, zstd or plain tars
        tree.add_layer(path)
    real, node = tree.lookup("/usr/bin/app")          # parents resolved through symlinks
    data = tree.read_files([node])[node.content]      # file contents: a second, targeted pass
    tree.unpack("/tmp/rootfs", keep_owner=True)       # the same tree written to a directory

`add_layer` reads only the tar headers of a layer (no file data is kept) and applies them the
way an engine does (OCI image-spec, layer.md):
  - whiteouts first, against the layers below only: `DIR/.wh.NAME` removes DIR/NAME and
    everything under it; `DIR/.wh..wh..opq` removes everything the lower layers put in DIR
    (DIR itself stays). Whiteout files never appear in the tree;
  - then the other members, in tar order: a directory over a directory updates its metadata
    and keeps its children; anything else replaces what was at its path (a whole subtree);
    parent directories no member names are created (0755, 0:0); a parent component that is a
    symlink is followed inside the image (as an engine unpacking in a chroot does); a parent
    that is not a directory is an error; a hardlink becomes a node sharing its target's
    content and metadata (one inode).
Every node remembers the layer that last wrote it (`Node.layer`, an index into the layers
added) and every whiteout what it removed (`Tree.removed_by`), so checks can say where a file
came from, or which layer deleted it.

Layer blobs are read by shiko/tar/stream.py: gzip, zstd or plain (shiko/tar/compression.py;
only the standard library is needed for plain and gzip layers); member names lose a leading
"/" or "./" and a ".." component is an error (LayerError). `Tree.unpack` is shiko/tar/unpack.py.
LayerError, norm_member, open_layer, full_root and remove_tree are importable from here too.
"""

import tarfile

from python_tools.shiko.tar import stream
from python_tools.shiko.tar import unpack as unpacking
from python_tools.shiko.tar.stream import LayerError, norm_member, open_layer  # noqa: F401 (API)
from python_tools.shiko.tar.unpack import full_root, remove_tree  # noqa: F401 (API)

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_SYMLINKS = 40

_KINDS = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.GNUTYPE_SPARSE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
    tarfile.CHRTYPE: "char",
    tarfile.BLKTYPE: "block",
    tarfile.FIFOTYPE: "fifo",
}


class NotFound(Exception):
    """A path that does not resolve; `reason` says why (missing, not a directory, loop)."""

    def __init__(self, path, reason):
        self.path = path
        self.reason = reason
        super().__init__("%s: %s" % (path, reason))


class Node(object):
    """One path of the final filesystem.

    kind: file, dir, symlink, char, block or fifo. mode: permission bits (07777).
    layer: index of the layer that last wrote the path (-1: the root, which no layer needs).
    content: (layer index, member ordinal) of the tar member holding a file's data; hardlinks
    share their target's. target: a symlink's target. implicit: a directory no member named.
    """

    __slots__ = ("kind", "mode", "uid", "gid", "size", "mtime", "target", "layer", "content",
                 "dev", "implicit")

    def __init__(self, kind, mode=0o755, uid=0, gid=0, size=0, mtime=0, target=None, layer=-1,
                 content=None, dev=(0, 0), implicit=False):
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.mtime = mtime
        self.target = target
        self.layer = layer
        self.content = content
        self.dev = dev
        self.implicit = implicit

    def copy(self, layer):
        n = Node(self.kind, self.mode, self.uid, self.gid, self.size, self.mtime, self.target,
                 layer, self.content, self.dev)
        return n

    def describe(self):
        if self.kind == "symlink":
            return "symlink -> %s" % self.target
        return self.kind


def _join(parent, name):
    return "/" + name if parent == "/" else parent + "/" + name


def _split(path):
    i = path.rfind("/")
    return (path[:i] or "/"), path[i + 1:]


def _parent(path):
    return _split(path)[0] if path != "/" else "/"


class Tree(object):
    def __init__(self):
        self.nodes = {"/": Node("dir", 0o755, implicit=True)}
        self.children = {"/": set()}
        self.layers = []  # blob paths, in order
        self.removed_by = {}  # path -> index of the layer whose whiteout removed it

    # --- Building -----------------------------------------------------------------------

    def add_layer(self, blob_path):
        index = len(self.layers)
        self.layers.append(blob_path)
        whiteouts = []
        entries = []
        for ordinal, m, _ in stream.members(blob_path):
            path = norm_member(m.name)
            parent, base = _split(path)
            if base.startswith(WHITEOUT):
                whiteouts.append((parent, base))
                continue
            kind = _KINDS.get(m.type)
            if kind is None:
                raise LayerError("layer %d (%s): member %r has an unsupported type %r" % (
                    index + 1, blob_path, m.name, m.type))
            if path == "/" and kind != "dir":
                raise LayerError("layer %d (%s): the root is not a directory" % (index + 1, blob_path))
            entries.append((ordinal, path, kind, m.mode & 0o7777, m.uid, m.gid, m.size, int(m.mtime),
                            m.linkname, (m.devmajor, m.devminor)))
        for parent, base in whiteouts:
            self._whiteout(index, parent, base)
        for e in entries:
            self._add(index, *e)

    def _whiteout(self, index, parent, base):
        try:
            real, node = self._walk(parent, follow_last=True)
        except NotFound:
            return
        if node is None or node.kind != "dir":
            return
        if base == OPAQUE:
            for name in sorted(self.children.get(real, ())):
                child = _join(real, name)
                self._remove(child)
                self.removed_by[child] = index
            return
        victim = _join(real, base[len(WHITEOUT):])
        if victim in self.nodes:
            self._remove(victim)
            self.removed_by[victim] = index

    def _add(self, index, ordinal, path, kind, mode, uid, gid, size, mtime, linkname, dev):
        if path == "/":
            root = self.nodes["/"]
            root.mode, root.uid, root.gid, root.mtime, root.layer, root.implicit = mode, uid, gid, mtime, index, False
            return
        parent, base = _split(path)
        real_parent = self._mkdirs(parent, index, path)
        dest = _join(real_parent, base)
        if kind == "hardlink":
            target = norm_member(linkname)
            try:
                _, tnode = self._walk(target, follow_last=False)
            except NotFound as e:
                raise LayerError("layer %d: hardlink %s -> %s: %s" % (index + 1, path, linkname, e.reason))
            if tnode is None:
                raise LayerError("layer %d: hardlink %s -> %s: the target does not exist" % (index + 1, path, linkname))
            if tnode.kind == "dir":
                raise LayerError("layer %d: hardlink %s -> %s: the target is a directory" % (index + 1, path, linkname))
            node = tnode.copy(index)
        else:
            node = Node(kind, mode, uid, gid, size if kind == "file" else 0, mtime,
                        linkname if kind == "symlink" else None, index,
                        (index, ordinal) if kind == "file" else None, dev)
        existing = self.nodes.get(dest)
        if existing is not None:
            if existing.kind == "dir" and node.kind == "dir":
                node.implicit = False
                self.nodes[dest] = node
                self.removed_by.pop(dest, None)
                return
            self._remove(dest)
        self.nodes[dest] = node
        self.children[real_parent].add(base)
        if node.kind == "dir":
            self.children[dest] = set()
        self.removed_by.pop(dest, None)

    def _mkdirs(self, path, index, member):
        """Resolves directory `path` (symlinks followed), creating missing directories."""
        try:
            real, node = self._walk(path, follow_last=True, create_layer=index)
        except NotFound as e:
            raise LayerError("layer %d: cannot place %s: %s is %s" % (index + 1, member, e.path, e.reason))
        if node.kind != "dir":
            raise LayerError("layer %d: cannot place %s: %s is not a directory" % (index + 1, member, real))
        return real

    def _remove(self, path):
        node = self.nodes.pop(path, None)
        if node is None:
            return
        parent, base = _split(path)
        self.children.get(parent, set()).discard(base)
        if node.kind == "dir":
            stack = [path]
            while stack:
                p = stack.pop()
                for name in self.children.pop(p, ()):
                    c = _join(p, name)
                    n = self.nodes.pop(c, None)
                    if n is not None and n.kind == "dir":
                        stack.append(c)

    # --- Lookups ------------------------------------------------------------------------

    def _walk(self, path, follow_last, create_layer=None):
        """Resolves `path` in the tree; returns (real path, node or None if only the last
        component is missing). Raises NotFound when a middle component is missing (and
        create_layer is None), is not a directory, or symlinks loop."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        cur = "/"
        hops = 0
        i = 0
        while i < len(parts):
            name = parts[i]
            last = i == len(parts) - 1
            if name == "..":
                cur = _parent(cur)
                i += 1
                if last:
                    return cur, self.nodes[cur]
                continue
            nxt = _join(cur, name)
            node = self.nodes.get(nxt)
            if node is None:
                if create_layer is None:
                    if last:
                        return nxt, None
                    raise NotFound(nxt, "missing")
                node = Node("dir", 0o755, 0, 0, layer=create_layer, implicit=True)
                self.nodes[nxt] = node
                self.children[cur].add(name)
                self.children[nxt] = set()
                self.removed_by.pop(nxt, None)
            if node.kind == "symlink" and (follow_last or not last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise NotFound(nxt, "a symlink loop (more than %d links)" % MAX_SYMLINKS)
                target = node.target or ""
                rest = parts[i + 1:]
                parts = [p for p in target.split("/") if p not in ("", ".")] + rest
                if target.startswith("/"):
                    cur = "/"
                i = 0
                if not parts:
                    return cur, self.nodes[cur]
                continue
            if not last and node.kind != "dir":
                raise NotFound(nxt, "not a directory")
            cur = nxt
            i += 1
        return cur, self.nodes[cur]

    def lookup(self, path, follow=False):
        """(real path, Node) of `path` (parents resolved through symlinks; the last component
        too when follow). Raises NotFound with a reason when it does not exist."""
        real, node = self._walk(path, follow_last=follow)
        if node is None:
            raise NotFound(real, "missing")
        return real, node

    def removal(self, path):
        """(path, layer index) of the whiteout that removed `path` or one of its parents."""
        p = path
        while True:
            if p in self.removed_by:
                return p, self.removed_by[p]
            if p == "/":
                return None
            p = _parent(p)

    def resolve_dir(self, path):
        """The real path of `path` with every existing component resolved (for creating a
        missing working directory safely): symlinks are followed inside the tree."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        done = "/"
        for i in range(len(parts)):
            try:
                real, node = self._walk(_join(done, parts[i]), follow_last=True)
            except NotFound:
                return None
            if node is None:
                rest = "/".join(parts[i:])
                return _join(done, rest)
            if node.kind != "dir":
                return None
            done = real
        return done

    # --- Contents -----------------------------------------------------------------------

    def read_files(self, nodes, limit=None):
        """{node.content: bytes} for file nodes, read in one pass over the layers needed."""
        wanted = {}
        for n in nodes:
            if n.kind == "file" and n.content is not None:
                wanted.setdefault(n.content[0], set()).add(n.content[1])
        out = {}
        for layer in sorted(wanted):
            ords = wanted[layer]
            for ordinal, m, tar in stream.members(self.layers[layer]):
                if ordinal in ords:
                    f = tar.extractfile(m)
                    out[(layer, ordinal)] = f.read() if limit is None else f.read(limit)
                    ords.discard(ordinal)
                    if not ords:
                        break
        return out

    def read_file(self, path):
        """Bytes of a regular file (symlinks followed), or None when there is none."""
        try:
            _, node = self.lookup(path, follow=True)
        except NotFound:
            return None
        if node.kind != "file":
            return None
        return self.read_files([node]).get(node.content, b"")

    def unpack(self, dest, keep_owner=None):
        """Writes the tree under the existing empty directory `dest` (see unpack.unpack):
        returns the device nodes skipped (an image's device nodes are never created)."""
        return unpacking.unpack(self, dest, keep_owner)

def from_layers(blob_paths):
    tree = Tree()
    for p in blob_paths:
        tree.add_layer(p)
    return tree
