"""Reading OCI image layouts: index walking, platform selection, verified blobs.

Shared by every tool that consumes a layout (image bases, tarball, load, push, tests). Every
blob handed out is checked against its digest and size first; problems are UserError naming
the target, the attribute and the value that gave the layout.
"""

import os

from python_tools.shiko.errors import UserError
from python_tools.shiko.files import canonical_json, read_json, sha256_file
from python_tools.shiko.oci import platform as oci_platform
from python_tools.shiko.oci.media_types import INDEX_TYPES, MANIFEST_TYPES
from python_tools.shiko.oci.reference import DIGEST_RE

OCI_LAYOUT_VERSION = "1.0.0"
# The bytes of every `oci-layout` file written (layouts, docker archives, pulled bases).
OCI_LAYOUT_FILE = canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION})
MAX_INDEX_DEPTH = 8


# --- Reading a base layout -------------------------------------------------------------------


class Layout(object):
    """Reads an OCI image layout and verifies every blob it hands out.

    Errors are UserError naming `target`, attribute `attr` and the value `label`
    (the Bazel label that gave the layout, or its path).
    """

    def __init__(self, path, target=None, attr="image", label=None):
        self.layout = path or ""
        self.label = label or self.layout
        self.target = target
        self.attr = attr
        self.verified = {}  # digest -> path

    def error(self, problem):
        return UserError(problem, self.target, self.attr, self.label)

    def check_layout(self):
        for name in ("oci-layout", "index.json"):
            if not os.path.isfile(os.path.join(self.layout, name)):
                raise self.error("is not an OCI image layout (%s has no %s)" % (self.layout, name))
        try:
            oci_layout = read_json(os.path.join(self.layout, "oci-layout"))
            index = read_json(os.path.join(self.layout, "index.json"))
        except (ValueError, OSError) as e:
            raise self.error("is not an OCI image layout (unreadable oci-layout or index.json: %s)" % e)
        if not isinstance(oci_layout, dict) or not isinstance(index, dict):
            raise self.error("is not an OCI image layout (oci-layout or index.json is not an object)")
        return index

    def blob_path(self, desc):
        digest = desc.get("digest") if isinstance(desc, dict) else None
        if not isinstance(digest, str) or not DIGEST_RE.match(digest):
            raise self.error("unsupported or malformed digest %r (only sha256 is supported)" % (digest,))
        return os.path.join(self.layout, "blobs", "sha256", digest[len("sha256:"):])

    def verify(self, desc):
        """Checks a blob's sha256 and size against its descriptor; returns its path."""
        path = self.blob_path(desc)
        digest = desc["digest"]
        if digest in self.verified:
            return path
        if not os.path.isfile(path):
            raise self.error("blob %s is missing" % digest)
        got, size = sha256_file(path)
        if "sha256:" + got != digest:
            raise self.error("blob %s digest mismatch (got sha256:%s)" % (digest, got))
        if desc.get("size") != size:
            raise self.error("blob %s size mismatch (descriptor says %r, file has %d)" % (digest, desc.get("size"), size))
        self.verified[digest] = path
        return path

    def read_json_blob(self, desc):
        path = self.verify(desc)
        try:
            obj = read_json(path)
        except ValueError:
            raise self.error("blob %s is not JSON" % desc["digest"])
        if not isinstance(obj, dict):
            raise self.error("blob %s is not a JSON object" % desc["digest"])
        return obj

    def select(self, platform):
        """Returns (manifest, config, layer descriptors) of the manifest matching platform."""
        index = self.check_layout()
        candidates = []  # (digest, descriptor, manifest, platform dict)
        self._walk(index, candidates, 0)
        if not candidates:
            raise self.error("has no image manifest")
        want = oci_platform.key(platform)
        matches = {}
        for digest, desc, manifest, plat in candidates:
            # A manifest whose platform is unknown matches only when it is the only one.
            if oci_platform.key(plat) == want or (len(candidates) == 1 and not plat.get("architecture")):
                matches.setdefault(digest, (desc, manifest))
        if not matches:
            available = sorted(set(oci_platform.to_str(c[3]) for c in candidates))
            raise self.error(
                "has no image for platform %s (available: %s)" % (oci_platform.to_str(platform), ", ".join(available))
            )
        if len(matches) > 1:
            raise self.error(
                "has several images for platform %s (%s)" % (oci_platform.to_str(platform), ", ".join(sorted(matches)))
            )
        desc, manifest = next(iter(matches.values()))
        if manifest is None:
            manifest = self.read_json_blob(desc)
        config_desc = manifest.get("config")
        if not isinstance(config_desc, dict):
            raise self.error("manifest %s has no config descriptor" % desc["digest"])
        config = self.read_json_blob(config_desc)
        layers = manifest.get("layers") or []
        if not isinstance(layers, list):
            raise self.error("manifest %s has a malformed layers list" % desc["digest"])
        diff_ids = ((config.get("rootfs") or {}).get("diff_ids")) or []
        if len(diff_ids) != len(layers):
            raise self.error(
                "manifest %s has %d layers but its config lists %d diff_ids" % (desc["digest"], len(layers), len(diff_ids))
            )
        layer_paths = []
        for layer in layers:
            if not isinstance(layer, dict) or not isinstance(layer.get("mediaType"), str):
                raise self.error("manifest %s has a malformed layer descriptor" % desc["digest"])
            layer_paths.append(self.verify(layer))
        return manifest, config, layers, layer_paths

    def _walk(self, index, out, depth):
        if depth > MAX_INDEX_DEPTH:
            raise self.error("image indexes nest too deeply")
        descs = index.get("manifests")
        if not isinstance(descs, list):
            raise self.error("has an index without a manifests list")
        for desc in descs:
            if not isinstance(desc, dict):
                raise self.error("has a malformed descriptor in an index")
            annotations = desc.get("annotations") or {}
            if annotations.get("vnd.docker.reference.type") == "attestation-manifest":
                continue
            media_type = desc.get("mediaType")
            if media_type in INDEX_TYPES:
                self._walk(self.read_json_blob(desc), out, depth + 1)
                continue
            if media_type not in MANIFEST_TYPES and media_type is not None:
                continue  # artifacts and unknown kinds are not images
            plat = desc.get("platform")
            manifest = None
            if media_type is None or not isinstance(plat, dict):
                manifest = self.read_json_blob(desc)
                if media_type is None:
                    kind = manifest.get("mediaType")
                    if kind in INDEX_TYPES or (kind is None and "manifests" in manifest):
                        self._walk(manifest, out, depth + 1)
                        continue
                    if kind not in MANIFEST_TYPES and not (kind is None and "layers" in manifest):
                        continue
                if not isinstance(plat, dict):
                    config_desc = manifest.get("config")
                    if not isinstance(config_desc, dict):
                        raise self.error("manifest %s has no config descriptor" % desc["digest"])
                    config = self.read_json_blob(config_desc)
                    plat = {k: config.get(k) for k in ("os", "architecture", "variant") if config.get(k)}
            out.append((desc["digest"], desc, manifest, plat))

    def platforms(self):
        """The platforms (dicts) of the image manifests the layout holds."""
        candidates = []
        self._walk(self.check_layout(), candidates, 0)
        return [c[3] for c in candidates]

    def single(self):
        """(manifest, config, layers, layer_paths) of the layout's only image (error if several)."""
        plats = self.platforms()
        if len(plats) != 1:
            raise self.error("holds %d images (%s); one was expected" % (
                len(plats), ", ".join(oci_platform.to_str(p) for p in plats)))
        return self.select(plats[0])
