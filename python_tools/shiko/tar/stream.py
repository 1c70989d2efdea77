"""A layer blob read back as a stream of tar members (gzip, zstd or plain), names checked.

    for ordinal, info, tar in members("blobs/sha256/..."):
        data = tar.extractfile(info).read()      # while the stream is at this member

Member names lose a leading "/" or "./" (`norm_member`, shiko/tar/names.py); a ".." component is
an error. Layers are decompressed by shiko/tar/compression.py: only the Python standard library
is needed for plain and gzip layers; python-isal (faster gzip) and zstandard (zstd layers) are
used when importable.
"""

import tarfile

from python_tools.shiko.tar import compression
from python_tools.shiko.tar import names

READ_SIZE = compression.READ_SIZE

# What an image layer can be (OCI image-spec); a blob with another magic number is read as a
# plain tar (and is then most likely "not a tar").
LAYER_FORMATS = ("gzip", "zstd")


class LayerError(Exception):
    """A layer that cannot be read or applied (corrupt, unsafe names, impossible paths)."""


def norm_member(name):
    """'./usr//bin/' -> '/usr/bin' (shiko/tar/names.py); LayerError on '..' (or a NUL)."""
    try:
        return names.absolute(name)
    except names.BadName as e:
        if e.reason == names.NUL:
            raise LayerError("member %r has a NUL in its name" % name)
        raise LayerError("member %r has a '..' component" % name)


def open_layer(path):
    """Opens a layer blob as a stream of tar bytes: gzip, zstd or plain (compression.detect)."""
    try:
        return compression.open_file(path, LAYER_FORMATS)[1]
    except compression.Unsupported as e:
        raise LayerError(str(e))


def members(path):
    """Yields (ordinal, TarInfo, tarfile) for each member of a layer, in order."""
    raw = open_layer(path)
    try:
        try:
            tar = tarfile.open(fileobj=raw, mode="r|")
        except tarfile.ReadError as e:
            # An empty blob is not a tar; an empty layer is two zero blocks (or nothing at all).
            if str(e) == "empty file":
                return
            raise LayerError("%s is not a tar (%s)" % (path, e))
        with tar:
            i = 0
            while True:
                try:
                    m = tar.next()
                except (tarfile.TarError,) + compression.errors() as e:
                    raise LayerError("%s: unreadable tar (%s)" % (path, e))
                if m is None:
                    break
                yield i, m, tar
                i += 1
    finally:
        raw.close()
