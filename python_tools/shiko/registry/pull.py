"""Pulling one platform's image into an OCI layout: the network half of `image_pull`.

Standard library only (rules/private/repo/pull.bzl runs python_tools/pull.py with the host's
python3). Starlark owns the repository cache; this module owns the registry (auth, TLS,
retries, Accept headers) and the choice of the platform's manifest:
- `current_digest`: the digest a tag points at now (for the "pin this digest" error);
- `fetch`: manifests by digest and blobs (in parallel, streamed) into a directory, each verified
  against its digest (and size) before it is kept; on a failure nothing half-verified is kept;
- `plan`: reads the manifests already in a layout (no network): the manifests still missing, or
  the platform's manifest and its config and layer descriptors;
- `finish`: checks the config's platform and writes oci-layout, index.json and digest;
- `assemble` (a build action, when an image's layout needs the base's bytes): the small layout
  plus the layer blobs its download actions fetched, as one OCI layout directory.
Problems are PullError (a UserError: one line, no target) or the client's RegistryError.
"""

import json
import os

from python_tools.shiko import threads
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import write_file_atomic
from python_tools.shiko.oci import media_types, platform as oci_platform, reference
from python_tools.shiko.oci.layout import MAX_INDEX_DEPTH, OCI_LAYOUT_FILE
from python_tools.shiko.registry import sources, tokens
from python_tools.shiko.registry.client import Client
from python_tools.shiko.registry.errors import RegistryError
from python_tools.shiko.registry.transport import RetryPolicy


class PullError(UserError):
    """A problem with what is pulled: printed as `ERROR: <problem>`."""


def parse_image(image):
    try:
        return reference.parse(image)
    except ValueError as e:
        raise PullError("image %r: %s" % (image, e))


def parse_platform(value):
    try:
        return oci_platform.parse(value)
    except ValueError as e:
        raise PullError(str(e))


def connect(image, insecure=False, ca_file=None, retries=6):
    """(Reference, Client) for an image reference."""
    ref = parse_image(image)
    return ref, Client(ref.registry, insecure=insecure, ca_file=ca_file or None,
                       retry=RetryPolicy(attempts=retries))


def current_digest(image, **registry_options):
    """The digest the image's digest, tag or `latest` names on the registry now."""
    ref, client = connect(image, **registry_options)
    name = ref.digest or ref.tag or "latest"
    _, _, digest = client.get_manifest(ref.repository, name, [tokens.pull_scope(ref.repository)])
    return digest


def fetch(image, directory, manifests=(), blobs=(), jobs=4, **registry_options):
    """Downloads manifests (digests) and blobs (`sha256:<hex>:<size>`) into directory/<hex>."""
    ref, client = connect(image, **registry_options)
    scopes = [tokens.pull_scope(ref.repository)]
    os.makedirs(directory, exist_ok=True)
    for d in manifests:
        if not reference.DIGEST_RE.match(d):
            raise PullError("bad manifest digest %r" % d)
        body, _, _ = client.get_manifest(ref.repository, d, scopes)  # verified against d
        write_file_atomic(os.path.join(directory, d[7:]), body)
    wanted = []
    for spec in blobs:
        digest, _, size = spec.rpartition(":")
        if not reference.DIGEST_RE.match(digest) or not size.isdigit():
            raise PullError("bad blob spec %r (want sha256:<hex>:<size>)" % spec)
        wanted.append((digest, int(size)))
    if not wanted:
        return
    wanted.sort(key=lambda b: -b[1])
    with threads.Pool(jobs) as pool:
        tasks = [pool.submit(client.get_blob, ref.repository, d, os.path.join(directory, d[7:]), scopes, size)
                 for d, size in wanted]
        error = None
        for t in tasks:
            try:
                t.result()
            except RegistryError as e:
                error = error or e
        if error:
            for d, _ in wanted:  # nothing half-verified is kept
                for p in (os.path.join(directory, d[7:]), os.path.join(directory, d[7:]) + ".part"):
                    if os.path.exists(p):
                        os.unlink(p)
            raise error
    client.close()


def _read_blob(layout, digest):
    path = os.path.join(layout, "blobs", "sha256", digest[7:])
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        data = f.read()
    try:
        obj = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise PullError("%s is not JSON" % digest)
    if not isinstance(obj, dict):
        raise PullError("%s is not a JSON object" % digest)
    return obj


def plan(layout, top, platform):
    """{"need": [digests of manifests still missing]} or
    {"manifest": descriptor, "blobs": [config and layer descriptors]} of the platform's image."""
    want = parse_platform(platform)
    desc = {"digest": top}
    for _ in range(MAX_INDEX_DEPTH):
        obj = _read_blob(layout, desc["digest"])
        if obj is None:
            return {"need": [desc["digest"]]}
        media = obj.get("mediaType") or desc.get("mediaType")
        if media in media_types.INDEX_TYPES or (media is None and isinstance(obj.get("manifests"), list)):
            children = [m for m in obj.get("manifests") or [] if isinstance(m, dict)]
            images = [m for m in children
                      if (m.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"
                      and isinstance(m.get("platform"), dict)]
            matches = [m for m in images if oci_platform.key(m["platform"]) == oci_platform.key(want)]
            if not matches:
                avail = sorted(set(oci_platform.to_str(m["platform"]) for m in images))
                raise PullError("index %s has no image for platform %s (available: %s)"
                                % (desc["digest"], oci_platform.to_str(want), ", ".join(avail) or "none"))
            if len(set(m.get("digest") for m in matches)) > 1:
                raise PullError("index %s has several images for platform %s"
                                % (desc["digest"], oci_platform.to_str(want)))
            desc = matches[0]
            if not reference.DIGEST_RE.match(desc.get("digest") or ""):
                raise PullError("index %s names a malformed digest %r" % (top, desc.get("digest")))
            continue
        if media not in media_types.MANIFEST_TYPES and not (media is None and "layers" in obj):
            raise PullError("%s is neither an image manifest nor an index (mediaType %r)"
                            % (desc["digest"], media))
        config = obj.get("config")
        layers = obj.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise PullError("manifest %s has no config or layers" % desc["digest"])
        blobs = []
        for b in [config] + layers:
            if not isinstance(b, dict) or not reference.DIGEST_RE.match(b.get("digest") or "") \
                    or not isinstance(b.get("size"), int) or b["size"] < 0:
                raise PullError("manifest %s has a malformed descriptor %r" % (desc["digest"], b))
            blobs.append({"digest": b["digest"], "size": b["size"], "mediaType": b.get("mediaType", "")})
        manifest_desc = {
            "mediaType": media or media_types.OCI_MANIFEST,
            "digest": desc["digest"],
            "size": os.path.getsize(os.path.join(layout, "blobs", "sha256", desc["digest"][7:])),
        }
        return {"manifest": manifest_desc, "blobs": blobs}
    raise PullError("image indexes nest too deeply under %s" % top)


def finish(layout, image, digest, manifest, platform):
    """Checks the chosen manifest and its config's platform; writes oci-layout, index.json and
    digest (`sha256:<hex>` of the manifest), and remembers the blobs' repository (sources.py).
    Only the config must be in the layout: the layers are fetched by build actions, when needed
    (rules/private/image/pulled.bzl). Returns the image's platform (a dict, from the config)."""
    want = parse_platform(platform)
    p = plan(layout, digest, platform)
    if "need" in p:
        raise PullError("manifest %s is missing" % p["need"][0])
    mdesc = p["manifest"]
    if manifest and manifest != mdesc["digest"]:
        raise PullError("the plan chose manifest %s, not %s" % (mdesc["digest"], manifest))
    cdesc = p["blobs"][0]
    path = os.path.join(layout, "blobs", "sha256", cdesc["digest"][7:])
    if not os.path.isfile(path) or os.path.getsize(path) != cdesc["size"]:
        raise PullError("config %s is missing" % cdesc["digest"])
    config = _read_blob(layout, p["blobs"][0]["digest"])
    got = {k: config.get(k) or "" for k in ("os", "architecture", "variant")}
    if oci_platform.key(got) != oci_platform.key(want):
        raise PullError("manifest %s is for platform %s, not %s"
                        % (mdesc["digest"], oci_platform.to_str(got), oci_platform.to_str(want)))
    desc = dict(mdesc)
    desc["platform"] = {k: v for k, v in (("os", got["os"]), ("architecture", got["architecture"]),
                                          ("variant", got["variant"])) if v}
    ref = parse_image(image)
    index = {"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": [desc]}
    write_file_atomic(os.path.join(layout, "oci-layout"), OCI_LAYOUT_FILE)
    write_file_atomic(os.path.join(layout, "index.json"),
                      json.dumps(index, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    write_file_atomic(os.path.join(layout, "digest"), (mdesc["digest"] + "\n").encode("ascii"))
    # Remembered for cross-repository mounts when images built on this base are pushed.
    sources.remember_sources(ref.registry, ref.repository, [b["digest"] for b in p["blobs"]])
    return desc["platform"]


def assemble(layout, blob_paths, output):
    """Writes at output the whole OCI layout of a shallow pulled base: the small files of
    `layout` (oci-layout, index.json, manifests, config) and the layer blobs downloaded by build
    actions (`blob_paths`, each named by its hex digest), hard-linked. The consumer (an image's
    layout action) verifies every blob against its digest."""
    from python_tools.shiko.oci.image import write_layout  # not stdlib-only: build actions only

    blob_dir = os.path.join(layout, "blobs", "sha256")
    linked = {name: os.path.join(blob_dir, name) for name in os.listdir(blob_dir)}
    for path in blob_paths:
        linked[os.path.basename(path)] = path
    with open(os.path.join(layout, "index.json"), "rb") as f:
        index = f.read()
    write_layout(output, linked, {}, index)
