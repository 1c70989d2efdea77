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
def local_file(source):
    """A local path for a blob source: a path is itself; anything else (a remote blob with a
    `fetch()` that downloads it, verified, to a temporary file) is fetched and deleted after."""
    if isinstance(source, str):
        yield source
        return
    path = source.fetch()
    try:
        yield path
    finally:
        os.unlink(path)
