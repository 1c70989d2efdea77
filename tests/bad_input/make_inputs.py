"""Writes the bad inputs the execution-time bad-input tests feed to the tools.

  make_inputs.py tars OUTDIR     device.tar absolute.tar dotdot.tar dangling_hardlink.tar
  make_inputs.py layout OUTDIR   a tiny OCI layout whose layer blob does not match its digest

Everything is deterministic (fixed names, mtimes, contents).
"""

import hashlib
import io
import json
import os
import sys
import tarfile


def _tar(path, members):
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for info, data in members:
            info.mtime = 0
            t.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name, data=b"x\n"):
    i = tarfile.TarInfo(name)
    i.size = len(data)
    return i, data


def tars(out):
    dev = tarfile.TarInfo("dev/sda")
    dev.type = tarfile.BLKTYPE
    dev.devmajor, dev.devminor = 8, 0
    _tar(os.path.join(out, "device.tar"), [_file("ok.txt"), (dev, None)])
    _tar(os.path.join(out, "absolute.tar"), [_file("/etc/shadow")])
    _tar(os.path.join(out, "dotdot.tar"), [_file("a/../../escape.txt")])
    link = tarfile.TarInfo("b/link")
    link.type = tarfile.LNKTYPE
    link.linkname = "a/missing.txt"
    _tar(os.path.join(out, "dangling_hardlink.tar"), [_file("a/present.txt"), (link, None)])


def _blob(out, data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", h), "wb") as f:
        f.write(data)
    return h


def layout(out):
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        info, data = _file("hello.txt", b"hello\n")
        t.addfile(info, io.BytesIO(data))
    layer = raw.getvalue()
    layer_hex = hashlib.sha256(layer).hexdigest()
    diff_id = layer_hex
    # The corruption: the blob stored under the layer's digest has other bytes (same size).
    corrupt = bytes([layer[0] ^ 0xFF]) + layer[1:]
    with open(os.path.join(out, "blobs", "sha256", layer_hex), "wb") as f:
        f.write(corrupt)
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    }, sort_keys=True).encode()
    config_hex = _blob(out, config)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + config_hex, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": "sha256:" + layer_hex, "size": len(layer)}],
    }, sort_keys=True).encode()
    manifest_hex = _blob(out, manifest)
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + manifest_hex, "size": len(manifest),
            "platform": {"architecture": "amd64", "os": "linux"}}]}, f, sort_keys=True)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    return [layer_hex, config_hex, manifest_hex]


if __name__ == "__main__":
    what, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    if what == "tars":
        tars(out)
    else:
        print("\n".join(layout(out)))
