"""An image's blobs, wherever they are: local Bazel outputs, base layouts, or a remote cache.

`image_push` does not ship an image's OCI layout in its runfiles (Build without the Bytes would
then download every layer before the push). Its launcher passes the image's manifest and
config, and a blob map (written by rules/private/image/push.bzl):

    {"self": "<runfiles path of this file>",
     "blobs": ["<exec path of a layer blob, e.g. bazel-out/k8-fastbuild/bin/x.tar.gz>", ...],
     "layouts": ["<runfiles path of a base's OCI layout directory (a pulled base)>"]}

`blobs` are the files of the manifest's last len(blobs) layers, in order (the layers the image
and its image-target bases built; a pulled base's come first in the manifest). No layer file is
in the runfiles: Bazel 4.2.3 would download a runfile's whole action (blob included) first.
For each layer of the manifest, `read_image_plan` takes, in order: the layer target's own
output when it is on this machine (`<execroot>/<exec path>`, its size checked; the registry
checks the digest), a base layout's
`blobs/sha256/<hex>`, else the remote cache's `/cas/<hex>` (Bazel keys a file in the CAS by its
sha256, which is the blob's digest). A blob from the cache is fetched only when the registry
lacks it (the push HEADs first), into a temporary file, verified against its digest and size,
uploaded, then deleted.
"""

import hashlib
import json
import os

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import CHUNK
from python_tools.shiko.oci import media_types
from python_tools.shiko.oci.reference import DIGEST_RE

CACHE_TIMEOUT = 120

# The flags of a tool that takes an image by its parts (push.py, load.py; image_parts.bzl).
FLAGS = [
    cli.string("image_manifest", help="The image's manifest (the image_push/image_load launcher passes it "
               "with --image_config and --blob_map: no layout needed)."),
    cli.string("image_config", help="The image's config blob."),
    cli.string("blob_map", help="Where the image's layer blobs are (shiko/registry/image_blobs.py)."),
    cli.string("remote_cache", help="Bazel HTTP remote cache for layer blobs this machine lacks (default: "
               "$SHIKO_REMOTE_CACHE, or the target's //settings:remote_cache)."),
]


def from_flags(args, target):
    """The ImageParts the FLAGS name, or None when --image_manifest/--image_config/--blob_map aren't all given."""
    if not (args.image_manifest and args.image_config and args.blob_map):
        return None
    cache = args.remote_cache or os.environ.get("SHIKO_REMOTE_CACHE", "")
    return ImageParts(args.image_manifest, args.image_config, args.blob_map, target, cache)


class CacheBlob(object):
    """A blob held only by a Bazel HTTP remote cache."""

    def __init__(self, cache_url, digest, size, target):
        self.url = "%s/cas/%s" % (cache_url.rstrip("/"), digest[len("sha256:"):])
        self.cache = cache_url
        self.digest = digest
        self.size = size
        self.target = target

    def error(self, problem):
        return UserError("blob %s: %s (remote cache %s)" % (self.digest, problem, self.cache), self.target)

    def fetch(self, directory=None):
        """Downloads the blob into a temporary file, verified; returns its path (caller deletes)."""
        # Imported here: a push or load whose blobs are all on disk (or in the registry) never
        # needs them, and they cost a fresh `bazel run` process several milliseconds.
        import tempfile
        import urllib.error
        import urllib.request

        fd, path = tempfile.mkstemp(prefix="shiko-blob-", dir=directory)
        h = hashlib.sha256()
        n = 0
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    resp = urllib.request.urlopen(self.url, timeout=CACHE_TIMEOUT)
                except urllib.error.HTTPError as e:
                    if e.code == 404:
                        raise self.error("not in the remote cache (rebuild the image with this cache, "
                                         "or push from the machine that built it)")
                    raise self.error("HTTP %d from the remote cache" % e.code)
                except (urllib.error.URLError, OSError) as e:
                    raise self.error("cannot reach the remote cache: %s" % getattr(e, "reason", e))
                with resp:
                    while True:
                        chunk = resp.read(CHUNK)
                        if not chunk:
                            break
                        n += len(chunk)
                        if n > self.size:
                            raise self.error("the cache sent more than the %d bytes of the blob" % self.size)
                        h.update(chunk)
                        out.write(chunk)
            if n != self.size or "sha256:" + h.hexdigest() != self.digest:
                raise self.error("the cache sent %d bytes with digest sha256:%s" % (n, h.hexdigest()))
            return path
        except BaseException:
            os.unlink(path)
            raise


def _read(path, target, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UserError("cannot read the image's %s: %s" % (what, e.strerror or e), target, "image", path)


def runfiles_root(blob_map_path, self_rpath):
    """The runfiles root the blob map's runfiles paths are relative to."""
    env = os.environ.get("RUNFILES_DIR")
    if env and os.path.isfile(os.path.join(env, self_rpath)):
        return env
    if blob_map_path.endswith(self_rpath):
        return blob_map_path[: -len(self_rpath)]
    return None


def _rlocation(root, rpath, target):
    if root is not None:
        return os.path.join(root, rpath)
    manifest = os.environ.get("RUNFILES_MANIFEST_FILE")
    if manifest:
        with open(manifest) as f:
            for line in f:
                key, _, value = line.rstrip("\n").partition(" ")
                if key == rpath:
                    return value
                if rpath.startswith(key + "/"):
                    return value + rpath[len(key):]
    raise UserError("cannot find %s in the runfiles" % rpath, target, "image", None)


def execroot_of(path):
    """The exec root that holds a runfiles tree (`<execroot>/bazel-out/<cfg>/bin/...`), or None."""
    real = os.path.realpath(path)
    i = real.find(os.sep + "bazel-out" + os.sep)
    return real[:i] if i > 0 else None


class ImageParts(object):
    """One image from its parts: manifest and config bytes, and where each blob is.

    Attributes: manifest_bytes, manifest, config_bytes, config, digest (of the manifest),
    paths ({digest: local path, or CacheBlob}: config and layers).
    """

    def __init__(self, manifest_path, config_path, blob_map_path, target, remote_cache=""):
        self.manifest_path = manifest_path
        self.manifest_bytes = _read(manifest_path, target, "manifest")
        self.config_bytes = _read(config_path, target, "config")
        try:
            self.manifest = json.loads(self.manifest_bytes.decode("utf-8"))
            self.config = json.loads(self.config_bytes.decode("utf-8"))
            blob_map = json.loads(_read(blob_map_path, target, "blob map").decode("utf-8"))
        except ValueError as e:
            raise UserError("the image's manifest, config or blob map is not JSON: %s" % e, target, "image",
                            manifest_path)
        config_desc = self.manifest.get("config") or {}
        if config_desc.get("digest") != "sha256:" + hashlib.sha256(self.config_bytes).hexdigest():
            raise UserError("the config does not match the manifest", target, "image", config_path)
        self.digest = "sha256:" + hashlib.sha256(self.manifest_bytes).hexdigest()
        self.paths = {config_desc["digest"]: config_path}

        runfiles = runfiles_root(blob_map_path, blob_map["self"])
        execroot = execroot_of(blob_map_path)
        layers = self.manifest.get("layers") or []
        blobs = blob_map.get("blobs") or []
        if len(blobs) > len(layers):
            raise UserError("the blob map names %d layers, the manifest %d" % (len(blobs), len(layers)),
                            target, "image", blob_map_path)
        local = {}  # digest -> path of a layer target's output on this machine
        for layer, blob in zip(layers[len(layers) - len(blobs):], blobs):
            if execroot:
                p = os.path.join(execroot, blob)
                if os.path.isfile(p) and os.path.getsize(p) == layer.get("size"):
                    local.setdefault(layer.get("digest"), p)
        layouts = [_rlocation(runfiles, d, target) for d in blob_map.get("layouts") or []]
        missing = []
        for layer in layers:
            d = layer.get("digest")
            if not isinstance(d, str) or not DIGEST_RE.match(d) or not isinstance(layer.get("size"), int):
                raise UserError("malformed layer descriptor %r" % (layer,), target, "image", manifest_path)
            path = local.get(d)
            if path is None:
                for lay in layouts:
                    p = os.path.join(lay, "blobs", "sha256", d[len("sha256:"):])
                    if os.path.isfile(p):
                        path = p
                        break
            if path is None and remote_cache:
                path = CacheBlob(remote_cache, d, layer["size"], target)
            if path is None:
                missing.append(d)
                continue
            self.paths.setdefault(d, path)
        if missing:
            raise UserError(("%d layer blob(s) are neither on this machine nor in a remote cache (%s): build "
                             "the image here, or give the cache: --@rules_shiko//settings:remote_cache=URL or "
                             "$SHIKO_REMOTE_CACHE") % (len(missing), ", ".join(missing)), target, "image", None)

    def platform(self):
        """The index platform of the image, from its config (as the layout's index.json has it)."""
        out = {k: self.config[k] for k in ("architecture", "os") if self.config.get(k)}
        if self.config.get("variant"):
            out["variant"] = self.config["variant"]
        return out


def read_image_plan(plan, parts):
    """Fills `plan` (shiko/registry/push.py's Plan) with one image from its parts (ImageParts)."""
    media = parts.manifest.get("mediaType") or media_types.OCI_MANIFEST
    top = {"mediaType": media, "digest": parts.digest, "size": len(parts.manifest_bytes)}
    plan.top = top
    descs = [parts.manifest.get("config")] + list(parts.manifest.get("layers") or [])
    for desc in descs:
        plan.blobs.setdefault(desc["digest"], (desc, parts.paths[desc["digest"]]))
    plan.manifests.append((top, parts.manifest_bytes, media))
    return plan
