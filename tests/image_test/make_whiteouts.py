"""Writes the whiteout layer of the image_test fixture (a tar for image_layer `tars`):
  etc/.wh.old.conf          removes /etc/old.conf of the layer below
  var/cache/.wh..wh..opq    hides everything the layers below put in /var/cache
  var/cache/fresh           a file of this layer, kept
"""

import io
import sys
import tarfile


def member(name, data=b"", mode=0o644):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = mode
    ti.mtime = 0
    return ti, io.BytesIO(data)


def main(out):
    with tarfile.open(out, "w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (("etc/.wh.old.conf", b""), ("var/cache/.wh..wh..opq", b""),
                           ("var/cache/fresh", b"fresh\n")):
            ti, f = member(name, data)
            t.addfile(ti, f)


if __name__ == "__main__":
    main(sys.argv[1])
