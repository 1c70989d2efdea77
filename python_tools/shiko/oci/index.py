"""Assembling an OCI image index (multi-platform image) from images this ruleset built.

Two steps, two actions (python_tools/index.py documents both contracts):
- `build`: the index blob and its digest from the children's manifests and configs (a few kB;
  no layer bytes read).
- `build_layout`: an OCI layout holding the index, every child's manifest, config and layers
  (linked from the children's own layouts), and index.json naming the index by its tag.
"""

import hashlib
import json

from python_tools.shiko.errors import UserError
from python_tools.shiko.files import canonical_json, write_file_atomic
from python_tools.shiko.oci import platform as oci_platform
from python_tools.shiko.oci.image import REF_NAME_ANNOTATION, _ref_name, write_layout
from python_tools.shiko.oci.layout import Layout
from python_tools.shiko.oci.media_types import OCI_INDEX, OCI_MANIFEST


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _child(entry, target):
    """The index's descriptor of one child image (its manifest, with the platform its config
    names)."""
    label = entry.get("label")
    try:
        manifest_bytes = _read(entry["manifest"])
        config_bytes = _read(entry["config"])
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        config = json.loads(config_bytes.decode("utf-8"))
    except (KeyError, OSError, ValueError) as e:
        raise UserError("cannot read the image's manifest and config: %s" % e, target, "images", label)
    want = (manifest.get("config") or {}).get("digest")
    if want != "sha256:" + hashlib.sha256(config_bytes).hexdigest():
        raise UserError("the image's config does not match its manifest", target, "images", label)
    platform = {"os": config.get("os") or "", "architecture": config.get("architecture") or ""}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    if not platform["os"] or not platform["architecture"]:
        raise UserError("the image's config names no os/architecture", target, "images", label)
    return {
        "mediaType": manifest.get("mediaType") or OCI_MANIFEST,
        "digest": "sha256:" + hashlib.sha256(manifest_bytes).hexdigest(),
        "size": len(manifest_bytes),
        "platform": platform,
    }


def index_bytes(spec):
    """The index blob of a metadata-mode spec (python_tools/index.py)."""
    target = spec.get("target")
    images = spec.get("images") or []
    if not images:
        raise UserError("an index needs at least one image", target, "images", [])
    manifests = []
    seen = {}
    for entry in images:
        desc = _child(entry, target)
        k = oci_platform.key(desc["platform"])
        if k in seen:
            raise UserError("%s and %s are both for %s: an index holds one image per platform" % (
                seen[k], entry.get("label"), oci_platform.to_str(desc["platform"])),
                target, "images", entry.get("label"))
        seen[k] = entry.get("label")
        manifests.append(desc)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
    annotations = spec.get("annotations") or {}
    if annotations:
        index["annotations"] = dict(annotations)
    return canonical_json(index)


def build(spec, output_index, output_digest):
    """Writes the index blob and `sha256:<hex>\\n` of it."""
    data = index_bytes(spec)
    write_file_atomic(output_index, data)
    write_file_atomic(output_digest, ("sha256:%s\n" % hashlib.sha256(data).hexdigest()).encode())


def build_layout(spec, output_layout):
    """The OCI layout of an index: each child's manifest and config (its metadata files) and
    layers (from its own layout, each verified by layout.Layout), and the index itself;
    index.json names the index by `ref_name` (default "latest")."""
    target = spec.get("target")
    data = _read(spec["index"])
    index = json.loads(data.decode("utf-8"))
    listed = [d["digest"] for d in index["manifests"]]
    linked, json_blobs = {}, {hashlib.sha256(data).hexdigest(): data}
    got = []
    for entry in spec.get("images") or []:
        label = entry.get("label")
        manifest_bytes, config_bytes = _read(entry["manifest"]), _read(entry["config"])
        got.append("sha256:" + hashlib.sha256(manifest_bytes).hexdigest())
        layout = Layout(entry["layout"], target, "images", label)
        manifest, _, layers, paths = layout.single()
        if manifest != json.loads(manifest_bytes.decode("utf-8")):
            raise UserError("the image's layout holds another manifest than its metadata",
                            target, "images", label)
        for desc, path in zip(layers, paths):
            linked.setdefault(desc["digest"].split(":", 1)[1], path)
        for b in (manifest_bytes, config_bytes):
            json_blobs[hashlib.sha256(b).hexdigest()] = b
    if got != listed:
        raise UserError("the index lists %s, the layouts given hold %s" % (listed, got),
                        target, "images", None)
    for hexdigest in json_blobs:
        linked.pop(hexdigest, None)
    desc = {"mediaType": OCI_INDEX, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), "annotations": {REF_NAME_ANNOTATION: _ref_name(spec, target)}}
    top = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [desc]})
    write_layout(output_layout, linked, json_blobs, top)
