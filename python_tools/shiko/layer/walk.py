"""Files and directory trees on disk turned into layer members (`file` and `tree` entries).

A symlink inside a walked tree whose target is relative and stays inside the tree is kept as a
symlink; any other symlink is dereferenced (its content is stored; a directory is walked, and
every symlink below it is dereferenced too). Dangling symlinks, symlink loops, devices, FIFOs
and sockets are errors. Directory entries are visited in bytewise order.

A file's permission bits on disk are never read: under remote execution every input reaches the
action executable (Bazel marks each REAPI input is_executable), locally a source keeps its
checkout's bits. A file entry's `executable` (true/false) is kept; without one (a source file,
or any file found by walking a directory) the member's exec_bit is None and collect.py decides
by content (`looks_executable`).
"""

import os
import posixpath
import stat
from stat import S_ISREG

from python_tools.shiko.layer.members import FsSource, Member
from python_tools.shiko.tar import names


def add_source(layer, src, path, origin, executable=None):
    """Adds the file or directory `src` at `path` to `layer` (a collect.Layer)."""
    if not isinstance(src, str) or not src:
        raise layer.error("an entry needs a source path", origin.attr, "/" + path)
    try:
        st = os.stat(src)
    except OSError as e:
        raise layer.error("cannot read the source %r of %s: %s" % (src, origin.label, e.strerror),
                          origin.attr, "/" + path)
    if stat.S_ISDIR(st.st_mode):
        if path:
            layer.add(Member(path, "dir", origin))
        _walk(layer, src, os.path.realpath(src), path, origin, [(st.st_dev, st.st_ino)], False)
    elif stat.S_ISREG(st.st_mode):
        if not path:
            raise layer.error("empty path: a layer member needs a name", origin.attr, "/")
        _add_file(layer, src, None, st, path, origin, executable)
    else:
        raise layer.error("the source %r of %s is not a regular file or directory" % (
            src, origin.label), origin.attr, "/" + path)


# What a file starts with when it is a program: a script's "#!" line or an ELF header.
_PROGRAM_MAGIC = (b"#!", b"\x7fELF")
HEAD_SIZE = 4


def looks_executable(head):
    """Whether a file whose first bytes (at most HEAD_SIZE of them) are `head` is a program."""
    return head.startswith(_PROGRAM_MAGIC)


def _add_file(layer, p, real, st, path, origin, executable=None):
    # executable None: decided from the first bytes when the mode is needed (by the writer, in
    # the read of the content: writer.write_tar),
    # never from st_mode, which depends on how the action's inputs were materialized.
    layer.add(Member(path, "file", origin, size=st.st_size, source=FsSource(p, real),
                     exec_bit=executable))


def _name_key(entry):
    return entry.name.encode("utf-8", "surrogateescape")  # members.sort_key, one call less


def _walk(layer, real_dir, resolved, prefix, origin, stack, under_deref, rel=""):
    """Adds the contents of the directory `real_dir` (`resolved`: the same with every symlink
    resolved); `rel` is the logical path inside the tree. One lstat per entry (os.scandir)."""
    try:
        with os.scandir(real_dir) as it:
            entries = sorted(it, key=_name_key)
    except OSError as e:
        raise layer.error("cannot list %r: %s" % (real_dir, e.strerror), origin.attr,
                          "/" + prefix)
    rel_pre = rel + "/" if rel else ""
    path_pre = names.join(prefix, rel) + "/" if prefix or rel else ""
    real_pre = resolved + "/" if resolved != "/" else "/"
    members = layer.members
    for entry in entries:
        name = entry.name
        path = path_pre + name
        st = entry.stat(follow_symlinks=False)
        if S_ISREG(st.st_mode):  # the common case first: a regular file, not a symlink
            # executable None: see _add_file.
            m = Member(path, "file", origin, st.st_size, FsSource(entry.path, real_pre + name),
                       None, None)
            if path in members:
                layer.add(m)  # a conflict or a duplicate
            else:
                members[path] = m
            continue
        p = entry.path
        r = rel_pre + name
        deref = under_deref
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(p)
            if not under_deref and not target.startswith("/"):
                inside = posixpath.normpath(posixpath.join(posixpath.dirname(r), target))
                if inside != ".." and not inside.startswith("../"):
                    layer.add(Member(path, "symlink", origin, target=target))
                    continue
            try:
                st = os.stat(p)
            except OSError:
                raise layer.error("dangling symlink %r -> %r in the tree of %s" % (
                    p, target, origin.label), origin.attr, "/" + path)
            deref = True
            real = os.path.realpath(p)
        else:
            real = real_pre + name
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident in stack:
                raise layer.error("symlink loop at %r in the tree of %s" % (p, origin.label),
                                  origin.attr, "/" + path)
            layer.add(Member(path, "dir", origin))
            _walk(layer, p, real, prefix, origin, stack + [ident], deref, r)
        elif stat.S_ISREG(st.st_mode):
            _add_file(layer, p, real, st, path, origin)
        else:
            raise layer.error("%r in the tree of %s is not a regular file, directory or "
                              "symlink" % (p, origin.label), origin.attr, "/" + path)
