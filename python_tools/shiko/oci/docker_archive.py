"""The one image archive both `docker load` and `podman load` accept, written to any file object.

Shared by the tarball tool (writes it to a file) and the load tool (streams it into the Docker
Engine API or a `podman load` pipe, so no tarball is ever written to disk). The format:

  one tar, the same bytes for the same inputs (members sorted by name, mtime 0, uid/gid 0, no
  user/group names, files 0644 and directories 0755), holding
  - the OCI layout: oci-layout, index.json, blobs/sha256/<hex> (the manifest, config and layer
    blobs the image uses, copied as they are, streamed and checked against their digests);
  - a Docker `manifest.json`:
    [{"Config": "blobs/sha256/<config hex>", "RepoTags": [refs], "Layers": ["blobs/sha256/<hex>"...]}]
    which is what `docker load` (20.10 and later) reads; it decompresses gzip layers itself.
    RepoTags hold fully qualified references (docker.io/library/... for short names): Docker
    shows them in their short form, and podman, which falls back to this file when index.json
    lists more than one tag, then names the image as Docker does instead of localhost/<name>.
  index.json lists the image manifest once per tag, annotated with
  "io.containerd.image.name": the fully qualified reference, which podman (one tag: it loads the
    OCI layout) and containerd-backed Docker 25+ use as the image name, and
  "org.opencontainers.image.ref.name": the tag, as containerd and `docker save` write it.
  With no tags it lists the manifest once, without annotations (the image loads untagged).

So `rules_shiko/app:1` loads as rules_shiko/app:1 in Docker and docker.io/rules_shiko/app:1 in
podman (`podman run rules_shiko/app:1` finds it), never as localhost/rules_shiko/app:1.

Use:
    tags = resolve_tags(raw_tags, stamp_values, target)      # [reference.Reference], validated
    archive = Archive(layout_dir, tags, target)              # reads and checks the layout
    archive = Archive.from_parts(image_parts, tags, target)  # or an image's parts, no layout
    archive.write(fileobj)                                   # returns the number of bytes written
"""

import hashlib
import io
import os
import tarfile

from python_tools.shiko.errors import UserError
from python_tools.shiko.files import canonical_json, open_blob
from python_tools.shiko.oci import layout as oci_layout
from python_tools.shiko.oci import platform as oci_platform
from python_tools.shiko.oci import reference
from python_tools.shiko.oci.media_types import MANIFEST_TYPES, OCI_INDEX
from python_tools.shiko.stamp import expand_stamp

COPY_BUFFER = 1 << 20


def parse_reference(ref, target, attr="repo_tags"):
    """Validates `name[:tag]` (reference.parse_tag): a reference.Reference whose `familiar` is
    "name:tag" as written and `full` the fully qualified reference; UserError when bad."""
    try:
        return reference.parse_tag(ref)
    except ValueError as e:
        raise UserError(str(e), target, attr, ref)


def resolve_tags(raw_tags, stamp_values, target, attr="repo_tags"):
    """Expands stamp placeholders in each tag and validates it; drops duplicates (same full ref)."""
    if not isinstance(raw_tags, list):
        raise UserError("must be a list of strings", target, attr, raw_tags)
    tags = []
    seen = set()
    for raw in raw_tags:
        if not isinstance(raw, str):
            raise UserError("must be a string", target, attr, raw)
        ref = parse_reference(expand_stamp(raw, stamp_values, target, attr), target, attr)
        if ref.full not in seen:
            seen.add(ref.full)
            tags.append(ref)
    return tags


class _HashingReader(object):
    """File wrapper that hashes what tarfile streams out of it."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()

    def read(self, n=-1):
        b = self.f.read(n)
        self.h.update(b)
        return b


class _CountingWriter(object):
    """Forwards writes and counts them (tarfile asks the position with tell())."""

    def __init__(self, out):
        self.out = out
        self.count = 0

    def write(self, b):
        self.out.write(b)
        self.count += len(b)
        return len(b)

    def tell(self):
        return self.count


def _info(name, size=0, directory=False):
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    ti.mode = 0o755 if directory else 0o644
    ti.size = 0 if directory else size
    ti.mtime = 0
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


class Archive(object):
    """The archive of a one-image OCI layout under the given tags ([Reference]).

    The constructor reads the index, manifest and config (verified) and checks that every blob
    exists with its descriptor's size; layer blobs are hashed while write() streams them.
    Attributes: manifest_digest, config_digest, layers (descriptors), blob_bytes (sum of the
    blob sizes), tags.
    """

    def __init__(self, layout_path, tags, target, attr="image", label=None, platform=None):
        """`platform` ({"os", "architecture", "variant"}) picks the image of a multi-platform
        layout (an image index); a one-image layout must hold that platform's image."""
        self.tags = list(tags)
        self.layout = oci_layout.Layout(layout_path, target, attr, label)
        self.error = self.layout.error
        index = self.layout.check_layout()
        descs = {}
        for d in index.get("manifests") or []:
            if isinstance(d, dict):
                descs.setdefault(d.get("digest"), d)
        if len(descs) != 1:
            raise self.error("must hold exactly one image manifest, has %d" % len(descs))
        desc = next(iter(descs.values()))
        if platform is not None and desc.get("mediaType") not in MANIFEST_TYPES:
            desc = self._for_platform(platform)
        if desc.get("mediaType") not in MANIFEST_TYPES:
            raise self.error("holds a %s, not an image manifest" % desc.get("mediaType"))
        manifest = self.layout.read_json_blob(desc)
        config = manifest.get("config")
        layers = manifest.get("layers") or []
        if not isinstance(config, dict) or not isinstance(layers, list) or not all(isinstance(l, dict) for l in layers):
            raise self.error("manifest %s is malformed" % desc["digest"])
        self.layout.read_json_blob(config)
        self._setup(desc, config, layers, self.layout.blob_path)

    def _for_platform(self, platform):
        """The descriptor of the layout's image manifest for `platform` (indexes walked)."""
        candidates = []
        self.layout._walk(self.layout.check_layout(), candidates, 0)
        want = oci_platform.key(platform)
        found = [c[1] for c in candidates if oci_platform.key(c[3]) == want]
        if len(found) != 1:
            raise self.error("has %s image for %s (it has: %s)" % (
                "no" if not found else "more than one", oci_platform.to_str(platform),
                ", ".join(sorted(oci_platform.to_str(c[3]) for c in candidates))))
        return found[0]

    @classmethod
    def from_parts(cls, parts, tags, target):
        """The archive of an image given by its parts (shiko/registry/image_blobs.ImageParts):
        no layout needed; a layer not on this machine is streamed when write() needs it."""
        self = cls.__new__(cls)
        self.tags = list(tags)
        self.layout = None
        self.error = lambda problem: UserError(problem, target, "image", None)
        media = parts.manifest.get("mediaType") or MANIFEST_TYPES[0]
        desc = {"mediaType": media, "digest": parts.digest, "size": len(parts.manifest_bytes),
                "platform": parts.platform()}
        paths = dict(parts.paths)
        manifest_path = parts.manifest_path
        self._setup(desc, parts.manifest["config"], parts.manifest.get("layers") or [],
                    lambda d: manifest_path if d["digest"] == parts.digest else paths[d["digest"]])
        return self

    def _setup(self, desc, config, layers, source):
        """source(descriptor) -> the blob's local path, or a RemoteBlob (streamed on write)."""
        self.desc = desc
        self.manifest_digest = desc["digest"]
        self.config_digest = config["digest"]
        self.layers = layers
        self.source = source
        self.blobs = {}  # hex -> descriptor
        for d in [desc, config] + layers:
            if not isinstance(d.get("digest"), str) or not isinstance(d.get("size"), int):
                raise self.error("manifest %s has a descriptor without digest or size" % desc["digest"])
            self.blobs.setdefault(d["digest"][len("sha256:"):], d)
        self.blob_bytes = 0
        for d in self.blobs.values():
            path = source(d)
            if isinstance(path, str):
                try:
                    size = os.stat(path).st_size
                except OSError:
                    raise self.error("blob %s is missing" % d["digest"])
                if size != d["size"]:
                    raise self.error("blob %s has %d bytes, its descriptor says %d" % (d["digest"], size, d["size"]))
            self.blob_bytes += d["size"]

    def _small_files(self):
        base_desc = {k: self.desc[k] for k in ("mediaType", "digest", "size", "platform") if k in self.desc}
        if self.tags:
            index_manifests = []
            for ref in self.tags:
                d = dict(base_desc)
                d["annotations"] = {"io.containerd.image.name": ref.full, "org.opencontainers.image.ref.name": ref.tag}
                index_manifests.append(d)
        else:
            index_manifests = [base_desc]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_manifests}
        docker_manifest = [
            {
                "Config": "blobs/sha256/" + self.config_digest[len("sha256:"):],
                "RepoTags": [ref.full for ref in self.tags],
                "Layers": ["blobs/sha256/" + l["digest"][len("sha256:"):] for l in self.layers],
            }
        ]
        return {
            "index.json": canonical_json(index),
            "manifest.json": canonical_json(docker_manifest),
            "oci-layout": oci_layout.OCI_LAYOUT_FILE,
        }

    def write(self, out):
        """Writes the archive to `out` (anything with write(bytes)); returns the bytes written.

        Blobs are streamed from the layout in 1 MiB pieces and checked against their digests;
        on a mismatch UserError is raised after the blob was written (the caller must then
        discard what it wrote: the tar is not finished).
        """
        small = self._small_files()
        counter = _CountingWriter(out)
        tar = tarfile.open(fileobj=counter, mode="w", format=tarfile.PAX_FORMAT)
        tar.copybufsize = COPY_BUFFER
        tar.addfile(_info("blobs", directory=True))
        tar.addfile(_info("blobs/sha256", directory=True))
        for hexdigest in sorted(self.blobs):
            d = self.blobs[hexdigest]
            with open_blob(self.source(d)) as f:
                reader = _HashingReader(f)
                tar.addfile(_info("blobs/sha256/" + hexdigest, d["size"]), reader)
            if reader.h.hexdigest() != hexdigest:
                raise self.error("blob %s digest mismatch (got sha256:%s)" % (d["digest"], reader.h.hexdigest()))
        for name in sorted(small):
            data = small[name]
            tar.addfile(_info(name, len(data)), io.BytesIO(data))
        tar.close()
        return counter.count
