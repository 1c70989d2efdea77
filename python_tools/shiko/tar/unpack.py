"""An image's final filesystem (a rootfs.Tree) written to a directory, and removed again.

File contents are read in a second pass over the layers that hold them, each file once
(hardlinks share it); directories get their modes last, so read-only ones can be filled.
"""

import errno
import os
import shutil

from python_tools.shiko.tar import stream
from python_tools.shiko.tar.stream import LayerError


def unpack(tree, dest, keep_owner=None):
    """Writes a rootfs.Tree under the existing empty directory `dest`.

    keep_owner (default: when running as root with all ids mapped, see full_root) applies
    uid/gid. Device nodes are never created (an image's device node would give whoever runs
    in the tree the host device it names): returns the list of those skipped paths.
    """
    if keep_owner is None:
        keep_owner = full_root()
    skipped = []
    dest = os.path.abspath(dest)

    def host(p):
        return dest if p == "/" else dest + p

    dirs = sorted(p for p, n in tree.nodes.items() if n.kind == "dir")
    for p in dirs:
        if p != "/":
            os.mkdir(host(p), 0o700)
    by_source = {}
    for p, n in tree.nodes.items():
        if n.kind == "file":
            by_source.setdefault(n.content, []).append(p)
    layers = {}
    for src in by_source:
        layers.setdefault(src[0], set()).add(src[1])
    for layer in sorted(layers):
        ords = layers[layer]
        for ordinal, m, tar in stream.members(tree.layers[layer]):
            if ordinal not in ords:
                continue
            paths = sorted(by_source[(layer, ordinal)])
            first = host(paths[0])
            fd = os.open(first, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                src = tar.extractfile(m)
                shutil.copyfileobj(src, out, stream.READ_SIZE)
            for p in paths[1:]:
                os.link(first, host(p))
            ords.discard(ordinal)
            if not ords:
                break
        if ords:
            raise LayerError("layer %d: members %s vanished on the second read" % (layer + 1, sorted(ords)))
    for p, n in tree.nodes.items():
        h = host(p)
        if n.kind == "symlink":
            os.symlink(n.target, h)
        elif n.kind == "fifo":
            os.mkfifo(h, 0o600)
        elif n.kind in ("char", "block"):
            skipped.append(p)
    for p, n in tree.nodes.items():
        if n.kind == "dir" or p in skipped:
            continue
        h = host(p)
        if keep_owner:
            os.lchown(h, n.uid, n.gid)
        if n.kind != "symlink":
            os.chmod(h, n.mode)
        try:
            os.utime(h, (n.mtime, n.mtime), follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENOSYS, errno.EPERM):
                raise
    for p in reversed(dirs):
        n = tree.nodes[p]
        h = host(p)
        if keep_owner:
            os.lchown(h, n.uid, n.gid)
        os.chmod(h, n.mode)
        os.utime(h, (n.mtime, n.mtime))
    return skipped


def full_root():
    """True when we are root with every uid and gid mapped (not root of a user namespace that
    maps only itself, like Bazel's linux-sandbox): only then can any owner be set."""
    if os.geteuid() != 0:
        return False
    for name in ("uid_map", "gid_map"):
        try:
            with open("/proc/self/" + name) as f:
                lines = [l.split() for l in f.read().splitlines() if l.strip()]
        except OSError:
            return True  # no user namespaces at all
        if not any(len(l) == 3 and l[0] == "0" and l[1] == "0" and int(l[2]) >= 65536 for l in lines):
            return False
    return True


def remove_tree(path):
    """Removes an unpacked tree, even directories without write or search permission."""

    def onerror(func, p, exc):
        parent = os.path.dirname(p)
        try:
            os.chmod(parent, 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
        except OSError:
            pass
        try:
            func(p)
        except OSError:
            pass

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=onerror)
