"""Files: sha256 while reading, atomic writes, and the one canonical JSON encoding.

sha256: `hashlib` (OpenSSL's, with SHA-NI ~1.6 GB/s here) is imported on first use, not when a
tool starts: it loads libcrypto, ~4-5 ms of a `bazel run` push's start-up. Small inputs
(manifests, configs, index.json: what a push that sends no blob hashes) use CPython's own
built-in sha256 (~0.4 GB/s), which costs nothing to import. Same digests either way.
"""

import json
import os

CHUNK = 1 << 20
# Up to this size, data is hashed with the built-in sha256 (no libcrypto load).
SMALL = 1 << 20

try:
    from _sha256 import sha256 as _builtin_sha256  # CPython 3.11 (3.12 and later: _sha2)
except ImportError:  # pragma: no cover - other Pythons
    try:
        from _sha2 import sha256 as _builtin_sha256
    except ImportError:
        _builtin_sha256 = None


def new_sha256():
    """A sha256 object for streamed data of any size (OpenSSL's)."""
    import hashlib
    return hashlib.sha256()


def sha256_hex(data):
    """The hex sha256 of bytes held in memory (built-in for small data, else OpenSSL's)."""
    if len(data) <= SMALL and _builtin_sha256 is not None:
        return _builtin_sha256(data).hexdigest()
    h = new_sha256()
    h.update(data)
    return h.hexdigest()


def sha256_file(path):
    """Returns (hex digest, size) of a file, read in chunks."""
    with open(path, "rb") as f:
        b = f.read(SMALL + 1)
        if len(b) <= SMALL:
            return sha256_hex(b), len(b)
        h = new_sha256()
        size = 0
        while b:
            h.update(b)
            size += len(b)
            b = f.read(CHUNK)
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


class open_blob(object):
    """`with open_blob(source) as f`: a readable binary stream of a blob source: a path is
    opened; anything else (a remote blob with an `open()` that streams it, verified against its
    digest as it is read: shiko/registry/image_blobs.RemoteBlob) is opened there. Nothing is
    copied to disk. (A class, not contextlib.contextmanager: no contextlib import at start-up.)"""

    def __init__(self, source):
        self.f = open(source, "rb") if isinstance(source, str) else source.open()

    def __enter__(self):
        return self.f

    def __exit__(self, *exc):
        self.f.close()
