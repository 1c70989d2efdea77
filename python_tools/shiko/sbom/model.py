"""What an image holds, from the build graph: the model both SBOM formats are written from.

    image = load(manifest_dict)   # the python_tools/sbom.py manifest (documented there)

Components, each with the layers (digests) that hold its files:
- deb: a Debian package of a deb layer's inventory (python_tools/shiko/debian/inventory.py):
  name, version, architecture, source, the .deb's sha256, DEP-5 licences;
- wheel: a Python wheel from its identity file (pip_lock_repository: name, version, file,
  sha256 from the lock); wheels that came without one (another pip hub) are found by their
  `<name>-<version>.dist-info/` directory in the layer listing, with no sha256;
- oci: a pulled base image (its manifest digest), holding the base's layers;
- target: a Bazel label that put files in a layer (first-party sources, generated files,
  external repositories other than wheels, files a deb layer made itself), with its file
  count and bytes.
"""

import json
import os
import re

from python_tools.shiko.errors import UserError
from python_tools.shiko.files import read_json
from python_tools.shiko.sbom import purl

_DIST_INFO = re.compile(r"/site-packages/([^/]+)-([^/-]+)\.dist-info/METADATA$")


class Component:
    """One SBOM entry. `key` identifies it across layers; `layers` are layer digests."""

    def __init__(self, kind, name, version="", purl_="", sha256="", licenses=(), label="",
                 extra=None):
        self.kind = kind
        self.name = name
        self.version = version
        self.purl = purl_
        self.sha256 = sha256
        self.licenses = list(licenses)
        self.label = label
        self.extra = dict(extra or {})
        self.layers = []
        self.files = 0
        self.bytes = 0

    @property
    def key(self):
        return (self.kind, self.purl or self.label or self.name)

    def in_layer(self, digest):
        if digest not in self.layers:
            self.layers.append(digest)


class Image:
    """The image: its target, digest, creation time, layers and components (sorted)."""

    def __init__(self, target, name, digest, created, platform, layers, components, locks=None):
        self.locks = locks or {}  # lock label -> sha256 (the lock files the packages came from)
        self.target = target
        self.name = name
        self.digest = digest
        self.created = created
        self.platform = platform
        self.layers = layers  # [{"digest", "label"}], bottom first
        self.components = components


def _read_text(path):
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def _add(components, c, digest):
    have = components.get(c.key)
    if have is None:
        components[c.key] = have = c
    have.in_layer(digest)
    return have


def _base_layers(layout):
    """(manifest digest, [layer digests]) of the image in a pulled base's OCI layout."""
    index = read_json(os.path.join(layout, "index.json"))
    manifests = index.get("manifests") or []
    if len(manifests) != 1:
        raise UserError("the base layout %s holds %d manifests, not 1" % (layout, len(manifests)))
    digest = manifests[0]["digest"]
    m = read_json(os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1]))
    return digest, [l["digest"] for l in m.get("layers", [])]


def _known_layer(components, layer, digest, locks):
    """Components of one layer rules_shiko built (listing, deb inventories, wheel files); the
    lock files they name go into `locks`."""
    owned = {}  # path -> component that owns it (debs, wheels)
    for inv_path in layer.get("packages") or []:
        inv = read_json(inv_path)
        if inv.get("lock"):
            locks[inv["lock"]] = inv.get("lock_sha256", "")
        distro = purl.debian_distro(inv.get("suites"))
        by_name = {}
        for p in inv.get("packages", []):
            c = _add(components, Component(
                "deb", p["name"], p["version"],
                purl.deb(p["name"], p["version"], p["architecture"], distro, p.get("source", "")),
                p["sha256"], p.get("licenses") or [], extra={
                    "architecture": p["architecture"], "source": p.get("source", ""),
                    "filename": p.get("filename", "")}), digest)
            by_name[p["name"]] = c
        for path, name in inv.get("files", {}).items():
            if name in by_name:
                owned[path] = by_name[name]
    wheel_origins = {}
    for w in layer.get("wheels") or []:
        meta = read_json(w["path"])
        if meta.get("lock"):
            locks[meta["lock"]] = meta.get("lock_sha256", "")
        c = _add(components, Component(
            "wheel", meta["name"], meta["version"], purl.pypi(meta["name"], meta["version"]),
            meta.get("sha256", ""), extra={"filename": meta.get("filename", ""),
                                           "lock": meta.get("lock", "")}), digest)
        wheel_origins[w["origin"]] = c
    listing = read_json(layer["listing"]) if layer.get("listing") else []
    for e in listing:
        path = e["path"]
        m = _DIST_INFO.search(path)
        if m and not e.get("escaped"):
            name, version = m.group(1), m.group(2)
            p = purl.pypi(name, version)
            if not any(c.purl == p for c in wheel_origins.values()):
                c = _add(components, Component("wheel", name, version, p), digest)
                wheel_origins.setdefault(e.get("origin") or "", c)
    for e in listing:
        if e["type"] == "dir":
            continue
        c = owned.get(e["path"])
        origin = e.get("origin")
        if c is None and origin in wheel_origins:
            c = wheel_origins[origin]
        if c is None:
            label = origin or layer.get("label") or ""
            c = _add(components, Component("target", label, label=label), digest)
        c.files += 1
        c.bytes += e.get("size", 0)


def load(manifest):
    """The Image a python_tools/sbom.py manifest describes."""
    target = manifest["target"]
    image_manifest = read_json(manifest["manifest"])
    config = read_json(manifest["config"])
    digest = _read_text(manifest["digest"]).strip()
    manifest_layers = [l["digest"] for l in image_manifest.get("layers", [])]
    components = {}
    layers = []
    base = manifest.get("base")
    n_base = 0
    if base:
        base_digest, base_layers = _base_layers(base["layout"])
        n_base = len(base_layers)
        c = Component("oci", base["label"], base_digest,
                      purl.oci(base.get("name") or base["label"].split(":")[-1], base_digest,
                               arch=config.get("architecture", "")),
                      base_digest.split(":", 1)[1], label=base["label"])
        for d in base_layers:
            _add(components, c, d)
            layers.append({"digest": d, "label": base["label"]})
    known = manifest.get("layers") or []
    locks = {}
    for layer in known:
        desc = read_json(layer["descriptor"])
        layers.append({"digest": desc["digest"], "label": layer.get("label") or ""})
        _known_layer(components, layer, desc["digest"], locks)
    if [l["digest"] for l in layers] != manifest_layers:
        raise UserError("%s: the image manifest's %d layers are not the %d base + %d built layers "
                        "the SBOM was given" % (target, len(manifest_layers), n_base, len(known)))
    order = {"oci": 0, "deb": 1, "wheel": 2, "target": 3}
    comps = sorted(components.values(), key=lambda c: (order[c.kind], c.name, c.version, c.purl))
    platform = {k: config.get(k) for k in ("os", "architecture", "variant") if config.get(k)}
    return Image(target, manifest.get("name") or target, digest,
                 config.get("created") or "1970-01-01T00:00:00Z", platform, layers, comps, locks)


class Index:
    """An image index: its target, digest and child Images (in the index's order)."""

    def __init__(self, target, digest, images):
        self.target = target
        self.digest = digest
        self.images = images
        self.created = min(i.created for i in images) if images else "1970-01-01T00:00:00Z"


def load_index(manifest):
    """The Index of a python_tools/sbom.py index manifest: {"target", "digest": P,
    "images": [child manifests, as for load()]}."""
    return Index(manifest["target"], _read_text(manifest["digest"]).strip(),
                 [load(m) for m in manifest["images"]])


def dumps(obj):
    """Deterministic, readable JSON (sorted keys, 1-space indent, final newline)."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
