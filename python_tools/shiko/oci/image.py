"""Assembling an image: config and manifest from metadata, then (on request) its OCI layout.

Two steps, two actions (python_tools/image.py documents both contracts):
- `build`: config, manifest and digest from the layers' descriptors and the base's config and
  manifest. No layer bytes are read, so a CI machine with Build without the Bytes never
  downloads a layer to assemble an image.
- `build_layout`: the OCI image layout (blobs hard-linked or copied), only when something needs
  the bytes (the `layout` and `tarball` output groups, image_push, image_load, image_test).
Everything is read and verified before anything is written: base blobs against their digests
(layout.py), our layers against their descriptors' sizes (one action made both).
"""

import hashlib
import json
import os
import shutil
import stat

from python_tools.shiko.errors import UserError, remove_outputs
from python_tools.shiko.files import canonical_json, read_json, write_file_atomic
from python_tools.shiko.oci import config as image_config
from python_tools.shiko.oci.layout import OCI_LAYOUT_FILE, Layout
from python_tools.shiko.oci.media_types import OCI_CONFIG, OCI_INDEX, OCI_MANIFEST
from python_tools.shiko.oci.reference import DEFAULT_TAG, DIGEST_RE, TAG_RE
from python_tools.shiko.stamp import expand_stamp, read_stamp


# --- Our layers -----------------------------------------------------------------------------


def read_layer(entry, target, check_blob=True, attr="layers", label=None):
    """One of our layers (the layer tool's descriptor; with check_blob, its blob's size checked).
    Errors name `attr` and `label` (default: the entry's label, else its blob)."""
    label = label or entry.get("label") or entry.get("blob")

    def err(problem):
        return UserError(problem, target, attr, label)

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
    if check_blob:
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
    _write(os.path.join(out_dir, "oci-layout"), OCI_LAYOUT_FILE)
    _write(os.path.join(out_dir, "index.json"), index_bytes)


def _descriptor(media_type, data):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"


def _ref_name(spec, target):
    """The tag index.json names the manifest by (umoci and skopeo open LAYOUT:TAG): the layout
    spec's `ref_name` (the tag of the image's first repo_tag), DEFAULT_TAG when absent or null."""
    ref_name = spec.get("ref_name")
    if ref_name is None:
        return DEFAULT_TAG
    if not isinstance(ref_name, str) or not TAG_RE.match(ref_name):
        raise UserError("is not valid as the tag for the layout's index.json (a tag is [A-Za-z0-9_] then up to "
                        "127 of [A-Za-z0-9_.-], without stamp placeholders)", target, "repo_tags", ref_name)
    return ref_name


def _index_bytes(manifest_bytes, platform, ref_name=DEFAULT_TAG):
    """The layout's index.json: the one manifest, with its platform and its tag as
    org.opencontainers.image.ref.name (index.json only: the manifest and its digest are the
    same whatever the tag)."""
    manifest_desc = _descriptor(OCI_MANIFEST, manifest_bytes)
    index_platform = {"architecture": platform["architecture"], "os": platform["os"]}
    if platform.get("variant"):
        index_platform["variant"] = platform["variant"]
    manifest_desc["platform"] = index_platform
    manifest_desc["annotations"] = {REF_NAME_ANNOTATION: ref_name}
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [manifest_desc]})


def _check_platform(manifest, target):
    platform = manifest.get("platform") or {}
    if not platform.get("os") or not platform.get("architecture"):
        raise UserError("must name os and architecture", target, "platform", platform)
    return platform


def _read_image_files(manifest_path, config_path):
    """(manifest bytes, config bytes, manifest, config) of an image this tool built."""
    with open(manifest_path, "rb") as f:
        manifest_bytes = f.read()
    with open(config_path, "rb") as f:
        config_bytes = f.read()
    return (manifest_bytes, config_bytes, json.loads(manifest_bytes.decode("utf-8")),
            json.loads(config_bytes.decode("utf-8")))


def read_image_base(base, target):
    """(config, layer descriptors) of a base that is an `image` target: its config and manifest
    files, written by this tool, so no layer blob is read (metadata only)."""
    label = base.get("label")

    def err(problem):
        return UserError(problem, target, "base", label)

    try:
        _, config_bytes, manifest, config = _read_image_files(base["manifest"], base["config"])
    except (KeyError, OSError, ValueError) as e:
        raise err("cannot read the base image's manifest and config: %s" % e)
    if not isinstance(manifest, dict) or not isinstance(config, dict):
        raise err("the base image's manifest or config is not a JSON object")
    want = (manifest.get("config") or {}).get("digest")
    if want != "sha256:" + hashlib.sha256(config_bytes).hexdigest():
        raise err("the base image's config does not match its manifest (%s)" % want)
    layers = manifest.get("layers") or []
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise err("the base image's manifest has %d layers but its config %d diff_ids" % (len(layers), len(diff_ids)))
    return config, layers


def build(manifest, output_digest, output_config=None, output_manifest=None):
    """Writes the config, manifest and digest the tool manifest describes (python_tools/image.py).

    Metadata only: our layers are known by their descriptors, an image base by its config and
    manifest; no layer blob is opened. A base given as an OCI layout is read (and verified)
    from the layout. Returns the manifest digest.
    """
    target = manifest.get("target")
    platform = _check_platform(manifest, target)
    spec = manifest.get("config") or {}
    stamp_values = read_stamp(manifest.get("stamp"), target)

    # Read and verify everything first: nothing is written until all inputs are known good.
    base_config, base_layers = None, []
    base = manifest.get("base")
    if base and base.get("layout"):
        layout = Layout(base.get("layout"), target, "base", base.get("label"))
        _, base_config, base_layers, _ = layout.select(platform)
    elif base:
        base_config, base_layers = read_image_base(base, target)
    layers = [read_layer(entry, target, check_blob=False) for entry in manifest.get("layers") or []]

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
    digest = _descriptor(OCI_MANIFEST, manifest_bytes)["digest"]

    _write(output_digest, (digest + "\n").encode("ascii"))
    if output_config:
        _write(output_config, config_bytes)
    if output_manifest:
        _write(output_manifest, manifest_bytes)
    return digest


def build_layout(spec, output_layout):
    """Writes the OCI image layout of an image whose config and manifest are already built.

    spec (python_tools/image.py, layout mode): {"target", "platform", "config": path,
    "manifest": path, "base": null | {"layout": dir, "label"} | {"layers": [{"blob",
    "descriptor"}], "label"}, "layers": [{"blob", "descriptor", "label"}], "ref_name": null |
    "TAG"}. Every blob placed is checked: the
    base's against their digests, ours against their descriptors' sizes, and the manifest must
    list exactly these layers. index.json names the manifest by ref_name (default "latest").
    """
    target = spec.get("target")
    platform = _check_platform(spec, target)
    ref_name = _ref_name(spec, target)
    try:
        manifest_bytes, config_bytes, image_manifest, _ = _read_image_files(spec["manifest"], spec["config"])
    except (KeyError, OSError, ValueError) as e:
        raise UserError("cannot read the image's manifest and config: %s" % e, target, "image", None)

    base_layers, base_paths = [], []
    base = spec.get("base")
    if base and "layers" in base:
        # An image target whose chain was all built here: its layers' own files.
        base_layers = [read_layer(e, target, attr="base", label=base.get("label"))
                       for e in base["layers"]]
        base_paths = [d["path"] for d in base_layers]
    elif base:
        layout = Layout(base.get("layout"), target, "base", base.get("label"))
        _, _, base_layers, base_paths = layout.select(platform)
    layers = [read_layer(entry, target) for entry in spec.get("layers") or []]
    want = [(d["mediaType"], d["digest"], d["size"]) for d in list(base_layers) + layers]
    have = [(d.get("mediaType"), d.get("digest"), d.get("size")) for d in image_manifest.get("layers") or []]
    if want != have:
        raise UserError("the image manifest does not list the base's and this image's layers", target, "layers", None)

    linked = {}
    for desc, path in zip(base_layers, base_paths):
        linked.setdefault(desc["digest"][len("sha256:"):], path)
    for layer in layers:
        linked.setdefault(layer["digest"][len("sha256:"):], layer["path"])
    json_blobs = {
        hashlib.sha256(config_bytes).hexdigest(): config_bytes,
        hashlib.sha256(manifest_bytes).hexdigest(): manifest_bytes,
    }
    for hexdigest in json_blobs:
        linked.pop(hexdigest, None)
    write_layout(output_layout, linked, json_blobs, _index_bytes(manifest_bytes, platform, ref_name))
