"""An image's blobs, wherever they are: local Bazel outputs, base layouts, a remote cache, or
the registry a pulled base came from.

`image_push` does not ship an image's OCI layout in its runfiles (Build without the Bytes would
then download every layer before the push). Its launcher passes the image's manifest and
config, and a blob map (written by rules/private/image/image_parts.bzl):

    {"self": "<runfiles path of this file>",
     "blobs": ["<exec path of a layer blob, e.g. bazel-out/k8-fastbuild/bin/x.tar.gz>", ...],
     "layouts": ["<runfiles path of a base's OCI layout directory (a pulled base)>"],
     "sources": ["<runfiles path of that pulled base's source.json>" | null, ...]}

`blobs` are the files of the manifest's last len(blobs) layers, in order (the layers the image
and its bases built or downloaded: a pulled base's layers are the outputs of its ShikoPullBlob
actions, rules/private/image/pulled.bzl). No layer file is in the runfiles: Bazel 4.2.3 would
download a runfile's whole action (blob included) first. A pulled layout holds only its
index.json, manifest and config (image_pull is shallow); its source.json ({"image":
"REGISTRY/REPO", "insecure", "ca_file", "retries"}) names where its layers live.

For each layer of the manifest, ImageParts takes, in order: the layer's output when it is on
this machine (`<execroot>/<exec path>`, its size checked; the registry or the archive checks
the digest), a base layout's `blobs/sha256/<hex>`, else a RemoteBlob streamed from the remote
cache (Bazel keys a file in the CAS by its sha256, which is the blob's digest): an HTTP cache's
`/cas/<hex>`, or a grpc:// / grpcs:// cache's ByteStream `[<instance>/]blobs/<hex>/<size>`
(bytestream.py) or, failing that, from the pulled base's registry. A RemoteBlob is opened only when its bytes
are needed (the push HEADs first, and mounts a pulled layer when pushing to its own registry:
`mount_sources`), streamed straight into the upload or the archive without a copy on disk, and
verified as it passes: the read that completes it checks its sha256 before handing out the
last bytes (VerifiedStream).
"""

import json
import os
import threading

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import CHUNK, new_sha256, sha256_hex
from python_tools.shiko.oci import media_types, reference
from python_tools.shiko.oci.reference import DIGEST_RE
from python_tools.shiko.registry import tokens
from python_tools.shiko.registry.client import Client
from python_tools.shiko.registry.errors import RegistryError
from python_tools.shiko.registry.transport import RetryPolicy

CACHE_TIMEOUT = 120

# The flags of a tool that takes an image by its parts (push.py, load.py; image_parts.bzl).
FLAGS = [
    cli.string("image_manifest", help="The image's manifest (the image_push/image_load launcher passes it "
               "with --image_config and --blob_map: no layout needed)."),
    cli.string("image_config", help="The image's config blob."),
    cli.string("blob_map", help="Where the image's layer blobs are (shiko/registry/image_blobs.py)."),
    cli.string("remote_cache", help="Bazel remote cache (http(s)://, or grpc(s)://HOST:PORT[/INSTANCE]) for "
               "layer blobs this machine lacks (default: "
               "$SHIKO_REMOTE_CACHE, or the target's //settings:remote_cache)."),
]


def from_flags(args, target):
    """The ImageParts the FLAGS name, or None when --image_manifest/--image_config/--blob_map aren't all given."""
    if not (args.image_manifest and args.image_config and args.blob_map):
        return None
    cache = args.remote_cache or os.environ.get("SHIKO_REMOTE_CACHE", "")
    return ImageParts(args.image_manifest, args.image_config, args.blob_map, target, cache)


class VerifiedStream(object):
    """A blob's bytes as they arrive, hashed on the way: the read that completes the blob checks
    its sha256 first and raises instead of handing out the last bytes of a wrong blob; more bytes
    than the descriptor's size, or fewer before the end, raise too."""

    def __init__(self, raw, blob, origin, close=None):
        self.raw = raw
        self.blob = blob
        self.origin = origin
        self.h = new_sha256()
        self.n = 0
        self._close = close

    def read(self, n=-1):
        data = self.raw.read(CHUNK if n is None or n < 0 else n)
        if not data:
            if self.n != self.blob.size:
                raise self.blob.error("%s ended after %d of %d bytes" % (self.origin.name, self.n, self.blob.size))
            return data
        self.n += len(data)
        self.h.update(data)
        if self.n > self.blob.size:
            raise self.blob.error("%s sent more than the %d bytes of the blob" % (self.origin.name, self.blob.size))
        if self.n == self.blob.size and "sha256:" + self.h.hexdigest() != self.blob.digest:
            raise self.blob.error("%s sent %d bytes with digest sha256:%s (corrupt blob?)"
                                  % (self.origin.name, self.n, self.h.hexdigest()))
        return data

    def close(self):
        try:
            self.raw.close()
        finally:
            if self._close:
                self._close()


class CacheOrigin(object):
    """The Bazel HTTP remote cache: `/cas/<hex>` (Bazel keys a file by its sha256)."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.name = "the remote cache %s" % url

    def open(self, blob):
        """(raw stream, close) of the blob, or None when the cache lacks it."""
        # Imported here: a push or load whose blobs are all on disk (or in the registry) never
        # needs them, and they cost a fresh `bazel run` process several milliseconds.
        import urllib.error
        import urllib.request
        try:
            resp = urllib.request.urlopen("%s/cas/%s" % (self.url, blob.digest[len("sha256:"):]),
                                          timeout=CACHE_TIMEOUT)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise blob.error("HTTP %d from %s" % (e.code, self.name))
        except (urllib.error.URLError, OSError) as e:
            raise blob.error("cannot reach %s: %s" % (self.name, getattr(e, "reason", e)))
        return resp, None


class _Chunks(object):
    """A file-like read() over an iterator of byte chunks (a ByteStream read)."""

    def __init__(self, chunks):
        self._it = iter(chunks)
        self._buf = b""

    def read(self, n=-1):
        while n < 0 or len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def close(self):
        close = getattr(self._it, "close", None)
        if close:
            close()


class GrpcCacheOrigin(object):
    """A gRPC remote cache (grpc://HOST:PORT[/INSTANCE], grpcs://): the REAPI CAS through the
    ByteStream API (shiko/registry/bytestream.py; grpcio imported only here)."""

    def __init__(self, url):
        self.url = url
        self.name = "the remote cache %s" % url

    def open(self, blob):
        from python_tools.shiko.registry import bytestream
        chunks = bytestream.read(self.url, blob.digest, blob.size, timeout=CACHE_TIMEOUT)
        try:
            first = next(chunks, b"")
        except bytestream.CacheError as e:
            if e.missing:
                return None
            raise blob.error("%s" % e)
        stream = _Chunks(_prepend(first, chunks, blob))
        return stream, None


def _prepend(first, rest, blob):
    from python_tools.shiko.registry import bytestream
    yield first
    try:
        for chunk in rest:
            yield chunk
    except bytestream.CacheError as e:
        raise blob.error("%s" % e)


def cache_origin(url):
    """The origin of a remote cache URL: gRPC (grpc://, grpcs://) or HTTP."""
    if url.startswith(("grpc://", "grpcs://")):
        return GrpcCacheOrigin(url)
    return CacheOrigin(url)


class RegistryOrigin(object):
    """The registry a pulled base came from (its source.json, written by image_pull):
    {"image": "REGISTRY/REPO", "insecure": bool, "ca_file": null | path in the layout, "retries": N}.
    Blobs stream from `GET /v2/<repo>/blobs/<digest>`; the same registry can mount them instead."""

    def __init__(self, source, layout_dir):
        ref = reference.parse(source["image"])
        self.registry, self.repository = ref.registry, ref.repository
        self.name = "registry %s (%s)" % (self.registry, self.repository)
        ca = source.get("ca_file")
        self.options = {"insecure": bool(source.get("insecure")),
                        "ca_file": os.path.join(layout_dir, ca) if ca else None,
                        "retries": int(source.get("retries") or 6)}
        self._client = None
        self._lock = threading.Lock()

    def client(self):
        with self._lock:
            if self._client is None:
                self._client = Client(self.registry, insecure=self.options["insecure"],
                                      ca_file=self.options["ca_file"],
                                      retry=RetryPolicy(attempts=self.options["retries"]))
            return self._client

    def open(self, blob):
        client = self.client()
        try:
            resp = client.request("GET", "/v2/%s/blobs/%s" % (self.repository, blob.digest),
                                  scopes=[tokens.pull_scope(self.repository)], ok=(200, 404), stream=True,
                                  what="GET blob %s" % blob.digest)
        except RegistryError as e:
            raise blob.error(str(e))
        if resp.status == 404:
            return None
        return resp.raw, lambda: client.session.connections.drop_for(resp.url)


class RemoteBlob(object):
    """A blob that is not on this machine: streamed, verified, from the first of its origins
    (the remote cache, then the registry a pulled base came from) that has it."""

    def __init__(self, digest, size, origins, target):
        self.digest = digest
        self.size = size
        self.origins = list(origins)
        self.target = target

    def error(self, problem):
        return UserError("blob %s: %s" % (self.digest, problem), self.target)

    def open(self):
        """A VerifiedStream of the blob (the caller closes it)."""
        for origin in self.origins:
            got = origin.open(self)
            if got is not None:
                return VerifiedStream(got[0], self, origin, got[1])
        raise self.error("not in %s (rebuild the image with this cache, or push from the machine that "
                         "built it)" % " nor ".join(o.name for o in self.origins))


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
    paths ({digest: local path, or RemoteBlob}: config and layers), mount_sources
    ({registry: {digest: [repository]}}: where pulled base layers can be mounted from).
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
        if config_desc.get("digest") != "sha256:" + sha256_hex(self.config_bytes):
            raise UserError("the config does not match the manifest", target, "image", config_path)
        self.digest = "sha256:" + sha256_hex(self.manifest_bytes)
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
        cache = [cache_origin(remote_cache)] if remote_cache else []
        pulled = self._pulled_origins(layouts, blob_map.get("sources") or [], runfiles, target)
        self.mount_sources = {}  # registry -> {digest: [repository]}: a push there mounts them
        for digest, origin in pulled.items():
            self.mount_sources.setdefault(origin.registry, {})[digest] = [origin.repository]
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
            origins = cache + ([pulled[d]] if d in pulled else [])
            if path is None and origins:
                path = RemoteBlob(d, layer["size"], origins, target)
            if path is None:
                missing.append(d)
                continue
            self.paths.setdefault(d, path)
        if missing:
            raise UserError(("%d layer blob(s) are neither on this machine nor in a remote cache (%s): build "
                             "the image here, or give the cache: --@rules_shiko//settings:remote_cache=URL or "
                             "$SHIKO_REMOTE_CACHE") % (len(missing), ", ".join(missing)), target, "image", None)

    @staticmethod
    def _pulled_origins(layouts, sources, runfiles, target):
        """{layer digest: RegistryOrigin} of the pulled bases: `sources` (parallel to `layouts`)
        holds the runfiles path of each pulled layout's source.json, or null."""
        out = {}
        for lay, src in zip(layouts, sources):
            if not src:
                continue
            path = _rlocation(runfiles, src, target)
            try:
                origin = RegistryOrigin(json.loads(_read(path, target, "base's source").decode("utf-8")), lay)
                index = json.loads(_read(os.path.join(lay, "index.json"), target, "base's index").decode("utf-8"))
                top = index["manifests"][0]["digest"]
                manifest = json.loads(_read(os.path.join(lay, "blobs", "sha256", top[len("sha256:"):]), target,
                                            "base's manifest").decode("utf-8"))
                digests = [l["digest"] for l in manifest.get("layers") or []]
            except (ValueError, KeyError, IndexError, TypeError) as e:
                raise UserError("the pulled base's source.json, index.json or manifest is malformed: %s" % e,
                                target, "image", lay)
            for d in digests:
                out.setdefault(d, origin)
        return out

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
    for registry, digests in parts.mount_sources.items():
        for d, repos in digests.items():
            plan.sources.setdefault(registry, {}).setdefault(d, []).extend(repos)
    return plan
