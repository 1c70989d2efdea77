"""Assembling an image: its layers, config and manifest, written as an OCI image layout.

The tool's input contract (the JSON manifest Starlark writes) and its outputs are documented in
python_tools/image.py; the config semantics in config.py. Everything is read and verified
before anything is written: base blobs against their digests (layout.py), our layers against
their descriptors' sizes (one action made both, so they are not re-hashed).
"""

import hashlib
import os
import shutil
import stat

from python_tools.shiko.errors import UserError, remove_outputs
from python_tools.shiko.files import canonical_json, read_json, write_file_atomic
from python_tools.shiko.oci import config as image_config
from python_tools.shiko.oci.layout import OCI_LAYOUT_VERSION, Layout
from python_tools.shiko.oci.media_types import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST
from python_tools.shiko.oci.reference import DIGEST_RE
from python_tools.shiko.stamp import expand_stamp, read_stamp


# --- Our layers -----------------------------------------------------------------------------


def read_layer(entry, target):
    """One of our layers (blob + the layer tool's descriptor), its size checked."""
    label = entry.get("label") or entry.get("blob")

    def err(problem):
        return UserError(problem, target, "layers", label)

    try:
        desc = read_json(entry["descriptor"])
    except (KeyError, OSError, ValueError) as e:
        raise err("cannot read the layer descriptor: %s" % e)
    if not isinstance(desc, dict):
        raise err("layer descriptor is not a JSON object")
    for key in ("digest", "diff_id"):
        if not isinstance(desc.get(key), str) or not DIGEST_RE.match(desc[key]):
            raise err("layer descriptor has a malformed %s: %r" % (key, desc.get(key)))
    if not isinstance(desc.get("mediaType"), str) or not isinstance(desc.get("size"), int):
        raise err("layer descriptor lacks mediaType or size")
    blob = entry.get("blob")
    try:
        size = os.stat(blob).st_size
    except (OSError, TypeError):
        raise err("layer blob %r is missing" % (blob,))
    if size != desc["size"]:
        raise err("layer blob %s has %d bytes, its descriptor says %d" % (blob, size, desc["size"]))
    return {
        "mediaType": desc["mediaType"],
        "digest": desc["digest"],
        "size": desc["size"],
        "diff_id": desc["diff_id"],
        "compressor": desc.get("compressor"),
        "label": label,
        "path": blob,
    }


# --- Writing --------------------------------------------------------------------------------


def _mkdir(path):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)


def _write(path, data):
    write_file_atomic(path, data)
    os.chmod(path, 0o644)


def place_blob(src, dst):
    """Hard-links a read-only, world-readable source (sharing it changes nothing); else copies."""
    real = os.path.realpath(src)
    st = os.stat(real)
    if stat.S_IMODE(st.st_mode) & 0o222 == 0 and stat.S_IMODE(st.st_mode) & 0o444 == 0o444:
        try:
            os.link(real, dst)
            return
        except OSError:
            pass
    tmp = dst + ".tmp-shiko"
    shutil.copyfile(real, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def write_layout(out_dir, linked_blobs, json_blobs, index_bytes):
    """linked_blobs: {hex: source path}; json_blobs: {hex: bytes}."""
    if os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            remove_outputs([os.path.join(out_dir, name)])
    _mkdir(out_dir)
    _mkdir(os.path.join(out_dir, "blobs"))
    blob_dir = os.path.join(out_dir, "blobs", "sha256")
    _mkdir(blob_dir)
    for hexdigest in sorted(linked_blobs):
        place_blob(linked_blobs[hexdigest], os.path.join(blob_dir, hexdigest))
    for hexdigest in sorted(json_blobs):
        _write(os.path.join(blob_dir, hexdigest), json_blobs[hexdigest])
    _write(os.path.join(out_dir, "oci-layout"), canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    _write(os.path.join(out_dir, "index.json"), index_bytes)


def _descriptor(media_type, data):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def build(manifest, output_layout, output_digest, output_config=None, output_manifest=None):
    """Writes the image the tool manifest describes (python_tools/image.py); returns its digest."""
    target = manifest.get("target")
    platform = manifest.get("platform") or {}
    if not platform.get("os") or not platform.get("architecture"):
        raise UserError("must name os and architecture", target, "platform", platform)
    spec = manifest.get("config") or {}
    stamp_values = read_stamp(manifest.get("stamp"), target)

    # Read and verify everything first: nothing is written until all inputs are known good.
    base_config, base_layers, base_paths = None, [], []
    if manifest.get("base"):
        base = manifest["base"]
        layout = Layout(base.get("layout"), target, "base", base.get("label"))
        _, base_config, base_layers, base_paths = layout.select(platform)
    layers = [read_layer(entry, target) for entry in manifest.get("layers") or []]

    created = image_config.resolve_created(spec.get("created"), stamp_values, target)
    config = image_config.build_config(base_config, spec, platform, layers, created, stamp_values, target)
    config_bytes = canonical_json(config)
    config_desc = _descriptor(OCI_CONFIG, config_bytes)

    annotations = {}
    for k, v in image_config.string_dict(manifest.get("annotations"), target, "annotations").items():
        annotations[k] = expand_stamp(v, stamp_values, target, "annotations")

    layer_descs = [{"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]} for d in base_layers]
    layer_descs += [{"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]} for d in layers]
    image_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    if annotations:
        image_manifest["annotations"] = annotations
    manifest_bytes = canonical_json(image_manifest)
    manifest_desc = _descriptor(OCI_MANIFEST, manifest_bytes)
    index_platform = {"architecture": platform["architecture"], "os": platform["os"]}
    if platform.get("variant"):
        index_platform["variant"] = platform["variant"]
    manifest_desc["platform"] = index_platform
    index_bytes = canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [manifest_desc]}
    )

    linked = {}
    for desc, path in zip(base_layers, base_paths):
        linked.setdefault(desc["digest"][len("sha256:"):], path)
    for layer in layers:
        linked.setdefault(layer["digest"][len("sha256:"):], layer["path"])
    json_blobs = {
        config_desc["digest"][len("sha256:"):]: config_bytes,
        manifest_desc["digest"][len("sha256:"):]: manifest_bytes,
    }
    for hexdigest in json_blobs:
        linked.pop(hexdigest, None)

    write_layout(output_layout, linked, json_blobs, index_bytes)
    _write(output_digest, (manifest_desc["digest"] + "\n").encode("ascii"))
    if output_config:
        _write(output_config, config_bytes)
    if output_manifest:
        _write(output_manifest, manifest_bytes)
    return manifest_desc["digest"]
