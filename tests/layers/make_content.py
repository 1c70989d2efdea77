"""Writes layer inputs for tests/e2e/test_layer_contents.py.

  make_content.py tree DIR   a directory: files, a subdirectory, an executable, a relative
                             symlink inside the tree and one pointing out of it
  make_content.py tar FILE   a gzip tar with a symlink, a hardlink and an owner/mode to keep
"""

import gzip
import io
import os
import sys
import tarfile


def tree(out):
    os.makedirs(os.path.join(out, "sub"), exist_ok=True)
    with open(os.path.join(out, "a.txt"), "w") as f:
        f.write("tree a\n")
    with open(os.path.join(out, "sub", "b.txt"), "w") as f:
        f.write("tree b\n")
    with open(os.path.join(out, "run.sh"), "w") as f:
        f.write("#!/bin/sh\necho run\n")
    os.chmod(os.path.join(out, "run.sh"), 0o755)
    os.symlink("sub/b.txt", os.path.join(out, "link_in"))


def tar(out):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        d = tarfile.TarInfo("./opt/pkg")
        d.type = tarfile.DIRTYPE
        d.mode = 0o750
        t.addfile(d)
        data = b"payload\n"
        f = tarfile.TarInfo("./opt/pkg/data.bin")
        f.size = len(data)
        f.mode = 0o640
        f.uid, f.gid, f.uname, f.gname = 1000, 1001, "someone", "somegroup"
        f.mtime = 1700000000
        t.addfile(f, io.BytesIO(data))
        h = tarfile.TarInfo("./opt/pkg/data.hardlink")
        h.type = tarfile.LNKTYPE
        h.linkname = "./opt/pkg/data.bin"
        t.addfile(h)
        s = tarfile.TarInfo("./opt/pkg/data.symlink")
        s.type = tarfile.SYMTYPE
        s.linkname = "data.bin"
        t.addfile(s)
    with open(out, "wb") as fh:
        fh.write(gzip.compress(raw.getvalue()))


if __name__ == "__main__":
    {"tree": tree, "tar": tar}[sys.argv[1]](sys.argv[2])
