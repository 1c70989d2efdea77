"""Layer listings for the report: the layer tool's listing, or a pulled blob read as one.

Listing entries are the layer tool's (python_tools/layer.py): {"path", "type", "mode", "uid",
"gid", "size", "target"?, "sha256"? (regular files), "origin"? (the label of the manifest entry
that put the member there)}. A pulled base layer has no listing: `list_blob` reads its tar
(gzip, zstd or plain) and gives the same entries, with "sha256" of each regular file and the
tar's uncompressed size. A deb layer's side files (`<name>.packages.json`, written by deb.py)
name the package of each file: `deb_origins` turns them into `deb:<name>=<version>` origins.
"""

import hashlib
import tarfile

from python_tools.shiko.tar import stream

_TYPES = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.CONTTYPE: "file",
    tarfile.LNKTYPE: "hardlink",
    tarfile.SYMTYPE: "symlink",
    tarfile.DIRTYPE: "dir",
}

_CHUNK = 1 << 20


class _Counting(object):
    """A read-only stream that counts the bytes read through it."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def read(self, n=-1):
        b = self.raw.read(n)
        self.count += len(b)
        return b

    def close(self):
        self.raw.close()


def _entry(info, name, f):
    kind = _TYPES.get(info.type, "other")
    entry = {"path": name, "type": kind, "mode": "%04o" % (info.mode & 0o7777),
             "uid": info.uid, "gid": info.gid, "size": info.size}
    if kind == "symlink":
        entry["target"] = info.linkname
    elif kind == "hardlink":
        entry["target"] = stream.norm_member(info.linkname)
    elif kind == "file":
        h = hashlib.sha256()
        while True:
            b = f.read(_CHUNK)
            if not b:
                break
            h.update(b)
        entry["sha256"] = h.hexdigest()
    return entry


def list_blob(path, origin):
    """(entries, tar size) of a layer blob: its members in tar order (names as dive sees them:
    a leading "./" or "/" dropped, "." skipped), each with `origin`.

    Raises stream.LayerError for a blob that is not a (compressed) tar."""
    raw = _Counting(stream.open_layer(path))
    entries = []
    try:
        try:
            tar = tarfile.open(fileobj=raw, mode="r|")
        except tarfile.ReadError as e:
            if str(e) == "empty file":
                return [], raw.count
            raise stream.LayerError("%s is not a tar (%s)" % (path, e))
        with tar:
            while True:
                try:
                    info = tar.next()
                except tarfile.TarError as e:
                    raise stream.LayerError("%s: unreadable tar (%s)" % (path, e))
                if info is None:
                    break
                name = stream.norm_member(info.name)
                if name == "/":
                    continue
                f = tar.extractfile(info) if info.isreg() else None
                entry = _entry(info, name, f)
                entry["origin"] = origin
                entries.append(entry)
        while raw.read(_CHUNK):
            pass  # the rest of the stream (end blocks, record padding) is part of the tar size
        return entries, raw.count
    finally:
        raw.close()


def deb_origins(inventories):
    """{listing path: "deb:<name>=<version>"} from deb.py's `<name>.packages.json` inventories
    (parsed)."""
    origins = {}
    for data in inventories:
        versions = {pkg["name"]: pkg.get("version", "") for pkg in data.get("packages", [])}
        for member, name in data.get("files", {}).items():
            origins[member] = "deb:%s=%s" % (name, versions.get(name, "")) if versions.get(name) else "deb:" + name
    return origins
