"""Files: sha256 while reading, atomic writes, and the one canonical JSON encoding."""

import contextlib
import hashlib
import json
import os

CHUNK = 1 << 20


def sha256_file(path):
    """Returns (hex digest, size) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
            size += len(b)
    return h.hexdigest(), size


def canonical_json(obj):
    """The one JSON encoding used for every blob we hash: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_json(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def write_file_atomic(path, data):
    """Writes bytes to path via a temporary file and rename, so a failure leaves nothing."""
    tmp = path + ".tmp-shiko"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


@contextlib.contextmanager
def open_blob(source):
    """A readable binary stream of a blob source: a path is opened; anything else (a remote blob
    with an `open()` that streams it, verified against its digest as it is read:
    shiko/registry/image_blobs.RemoteBlob) is opened there. Nothing is copied to disk."""
    f = open(source, "rb") if isinstance(source, str) else source.open()
    try:
        yield f
    finally:
        f.close()
