"""image_pull: a base image, pinned by digest, fetched into an external repository.

    image_pull(
        name = "base",
        image = "registry.example/team/base",   # registry/repository (a tag is only informative)
        digest = "sha256:…",                    # an image index or an image manifest
        platform = "linux/amd64",               # which manifest of an index ("": the host's)
    )
    image(name = "app", base = "@base", ...)

The repository `@base` is shallow: the small part of an OCI image layout of exactly one image,
`oci-layout`, `index.json` (one manifest descriptor with its platform), `blobs/sha256/<hex>` of
the manifest(s) and the config only, plus `digest` (the chosen manifest's `sha256:<hex>`) and
`source.json` (the registry the layers live in). Its default target `@base//:base` is a
`pulled_image` (rules/private/image/pulled.bzl): an ImageInfo that `image(base = ...)`,
image_test, image_push and image_load accept. Each layer is downloaded by its own build action
(verified, remote-cacheable), only when something needs its bytes; an image's metadata (and so
a CI build with Build without the Bytes) needs only the manifest and config. A push to the base's
own registry mounts its layers; a push elsewhere or a load streams them from the registry.

How it fetches, and why this way:
- Every manifest and the config are first looked up in Bazel's repository cache by its sha256 with a
  URL-less `rctx.download(sha256 = ...)` (no network at all when it is there), so a second
  checkout, or a new output base, downloads nothing.
- What the cache lacks is fetched by python_tools/pull.py (standard library only, run with the
  host's python3): registries need `Accept` headers for manifests, which `rctx.download` of
  Bazel 4 cannot send (its `auth` does handle Basic and `Bearer` patterns, checked on 4.2.3), and
  Bearer tokens expire mid-pull, registries behind private CAs are not in Bazel's Java trust
  store, and credential helpers must stay out of Starlark. pull.py verifies each blob's digest
  and size before keeping it, with retries. The layers' download actions run the same
  `pull.py fetch`; they are not in the repository cache (Bazel's disk or remote cache keeps them).
- Each fetched file then goes through `rctx.download("file://…", sha256 = ...)`: Bazel checks the
  digest once more and stores the file in the repository cache.
- A tag without a digest fails, printing the digest to pin. Credentials: as for image_push
  (docker/podman config files and credential helpers), read by pull.py only.
"""

load(":host.bzl", "absolute_label", "find_python", "host_arch", "label_name")

_PULL_TOOL = Label("//python_tools:pull.py")

_RESERVED = ["digest", "index.json", "oci-layout", "blobs", "source.json", "source_ca.pem", "BUILD", "BUILD.bazel", "WORKSPACE"]

_label_name = label_name

def _fail(rctx, attr, value, problem):
    fail("@%s: attribute '%s': %r: %s" % (_label_name(rctx), attr, value, problem))

def _is_digest(value):
    if not value.startswith("sha256:") or len(value) != 71:
        return False
    for c in value[7:].elems():
        if c not in "0123456789abcdef":
            return False
    return True

def _find_python(rctx):
    path, _ = find_python(rctx)
    if path:
        return path
    fail("@%s: image_pull needs a python3 (3.8+) on PATH or in $SHIKO_PYTHON to talk to the registry" %
         _label_name(rctx))

def _host_platform(rctx):
    arch, raw = host_arch(rctx)
    if arch:
        return "linux/" + arch
    fail("@%s: attribute 'platform': '': cannot tell the host's platform from %r; set platform" %
         (_label_name(rctx), raw))

def _tool(rctx, python, args, timeout = 600):
    tool = rctx.path(_PULL_TOOL)
    root = tool.dirname.dirname
    res = rctx.execute(
        [python, "-B", str(tool)] + args,
        environment = {"PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"},
        quiet = True,
        timeout = timeout,
    )
    if res.return_code != 0:
        msg = res.stderr.strip() or res.stdout.strip() or ("exit %d" % res.return_code)
        if msg.startswith("ERROR: "):
            msg = msg[len("ERROR: "):]
        return None, msg
    return res.stdout, None

def _registry_args(rctx):
    args = ["--image", rctx.attr.image, "--retries", str(rctx.attr.retries)]
    if rctx.attr.insecure:
        args.append("--insecure")
    if rctx.attr.ca_file:
        args += ["--ca_file", str(rctx.path(rctx.attr.ca_file))]
    return args

def _blob_path(digest):
    return "blobs/sha256/" + digest[len("sha256:"):]

def _from_cache(rctx, digest):
    """Copies a blob from the repository cache (no network); False when it isn't there."""
    out = _blob_path(digest)
    if rctx.path(out).exists:
        return True
    return rctx.download([], output = out, sha256 = digest[len("sha256:"):], allow_fail = True).success

def _fetch_missing(rctx, python, manifests, blobs):
    """Fetches manifests (digests) and blobs (descriptors) with pull.py, then caches them."""
    stage = "_shiko_pull_stage"
    args = ["fetch"] + _registry_args(rctx) + ["--dir", str(rctx.path(stage))]
    for d in manifests:
        args += ["--manifest", d]
    for b in blobs:
        args += ["--blob", "%s:%d" % (b["digest"], b["size"])]
    _, err = _tool(rctx, python, args, timeout = rctx.attr.timeout)
    if err:
        rctx.delete(stage)
        fail("@%s: fetching %s@%s: %s" % (_label_name(rctx), rctx.attr.image, rctx.attr.digest, err))
    for d in manifests + [b["digest"] for b in blobs]:
        hexd = d[len("sha256:"):]
        staged = rctx.path(stage + "/" + hexd)

        # Bazel checks the digest once more and keeps the file in the repository cache.
        rctx.download("file://" + str(staged), output = _blob_path(d), sha256 = hexd)
        rctx.delete(staged)
    rctx.delete(stage)

def _image_pull_impl(rctx):
    name = _label_name(rctx)
    if name in _RESERVED:
        _fail(rctx, "name", name, "is reserved for a file of the pulled layout; choose another name")
    image = rctx.attr.image
    digest = rctx.attr.digest
    if "@" in image:
        image, inline = image.split("@", 1)
        if digest and digest != inline:
            _fail(rctx, "digest", digest, "differs from the digest in `image` (%s)" % inline)
        digest = inline
    if not image:
        _fail(rctx, "image", rctx.attr.image, "must be registry/repository")
    python = _find_python(rctx)
    if not digest:
        current, err = _tool(rctx, python, ["digest"] + _registry_args(rctx))
        if err:
            _fail(rctx, "digest", "", ("is required: a base must be pinned by digest " +
                                       "(and its current digest could not be looked up: %s)") % err)
        _fail(rctx, "digest", "", ("is required: a tag is not reproducible. Pin the image by digest:\n" +
                                   "    digest = \"%s\",  # %s, now") % (current.strip(), image))
    if not _is_digest(digest):
        _fail(rctx, "digest", digest, "must be sha256:<64 lowercase hex digits>")
    platform = rctx.attr.platform or _host_platform(rctx)

    # Manifests: the pinned one, then (for an index) the platform's, each from the cache if there.
    plan = None
    need = [digest]
    for _ in range(10):
        missing = [d for d in need if not _from_cache(rctx, d)]
        if missing:
            _fetch_missing(rctx, python, missing, [])
        out, err = _tool(rctx, python, [
            "plan",
            "--layout",
            str(rctx.path(".")),
            "--digest",
            digest,
            "--platform",
            platform,
        ])
        if err:
            fail("@%s: %s@%s: %s" % (name, image, digest, err))
        plan = json.decode(out)
        if "need" not in plan:
            break
        need = plan["need"]
    if plan == None or "need" in plan:
        fail("@%s: %s@%s: image indexes nest too deeply" % (name, image, digest))

    # The config only: layers are fetched by build actions, when something needs their bytes.
    config = plan["blobs"][0]
    if not _from_cache(rctx, config["digest"]):
        _fetch_missing(rctx, python, [], [config])

    out, err = _tool(rctx, python, [
        "finish",
        "--layout",
        str(rctx.path(".")),
        "--image",
        image,
        "--digest",
        digest,
        "--manifest",
        plan["manifest"]["digest"],
        "--platform",
        platform,
    ])
    if err:
        fail("@%s: %s@%s: %s" % (name, image, digest, err))
    config_platform = json.decode(out)

    files = ["oci-layout", "index.json", "source.json"] + [_blob_path(d) for d in _small_blobs(rctx)]
    ca = None
    if rctx.attr.ca_file:
        ca = "source_ca.pem"
        rctx.symlink(rctx.attr.ca_file, ca)
        files.append(ca)
    rctx.file("source.json", json.encode({
        "image": image,
        "insecure": rctx.attr.insecure,
        "ca_file": ca,
        "retries": rctx.attr.retries,
    }) + "\n")
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % name)
    rctx.file("BUILD.bazel", _BUILD.format(
        name = name,
        image = image,
        digest = digest,
        manifest = plan["manifest"]["digest"],
        platform = platform,
        bzl = absolute_label(Label("//rules/private/image:pulled.bzl")),
        files = repr(sorted(files)),
        manifest_file = _blob_path(plan["manifest"]["digest"]),
        config_file = _blob_path(config["digest"]),
        layers = repr(["%s:%d" % (b["digest"], b["size"]) for b in plan["blobs"][1:]]),
        insecure = rctx.attr.insecure,
        retries = rctx.attr.retries,
        os = config_platform.get("os", ""),
        architecture = config_platform.get("architecture", ""),
        variant = config_platform.get("variant", ""),
    ))

def _small_blobs(rctx):
    """The blobs this repository holds: manifests (index, platform manifest) and the config."""
    return ["sha256:" + p.basename for p in rctx.path("blobs/sha256").readdir()
            if not p.basename.endswith(".tmp-shiko")]

_BUILD = """\
# Generated by rules_shiko's image_pull: {image}@{digest}
# Platform {platform}: manifest {manifest}.
load("{bzl}", "pulled_image")

package(default_visibility = ["//visibility:public"])

# The pulled image, for image(base = "@{name}"): its manifest and config are here; each layer is
# downloaded by a build action, only when something needs its bytes (rules/private/image/pulled.bzl).
pulled_image(
    name = "{name}",
    layout_files = {files},
    manifest = "{manifest_file}",
    config = "{config_file}",
    digest_file = "digest",
    layers = {layers},
    image = "{image}",
    insecure = {insecure},
    retries = {retries},
    os = "{os}",
    architecture = "{architecture}",
    variant = "{variant}",
)

exports_files(["digest", "index.json", "oci-layout", "source.json"])
"""

PULL_ATTRS = {
    "image": attr.string(
        mandatory = True,
        doc = "registry/repository of the image, e.g. `registry.example/team/base` (Docker Hub: `docker.io/library/debian`). A `:tag` is informative only; `@sha256:…` may replace `digest`.",
    ),
    "digest": attr.string(
        doc = "sha256:<hex> of the image index or image manifest. Required: without it the fetch fails and prints the tag's current digest to pin.",
    ),
    "platform": attr.string(
        doc = "os/architecture[/variant] of the manifest to take from an index, e.g. linux/amd64 or linux/arm64/v8. Empty: the host's (linux/amd64 or linux/arm64).",
    ),
    "insecure": attr.bool(
        doc = "Allow plain HTTP and unverified TLS for a registry that is not on loopback (loopback registries may always fall back to HTTP).",
    ),
    "ca_file": attr.label(
        allow_single_file = True,
        doc = "PEM file of extra CA certificates to trust for this registry.",
    ),
    "retries": attr.int(
        default = 6,
        doc = "Attempts per registry operation (connection resets, 5xx, 429 with Retry-After).",
    ),
    "timeout": attr.int(
        default = 3600,
        doc = "Seconds allowed for downloading the missing blobs.",
    ),
}

image_pull_rule = repository_rule(
    implementation = _image_pull_impl,
    doc = "Fetches an image pinned by digest as an OCI layout repository. Use the `image_pull` macro (WORKSPACE) or the `images` module extension (MODULE.bazel).",
    attrs = dict(PULL_ATTRS, apparent_name = attr.string(
        doc = "The repository's name as users write it (`@base`): the name of its filegroup. Set by the macro and the module extension.",
    )),
)

def image_pull(name, **kwargs):
    """WORKSPACE: `image_pull(name, image, digest, platform = "", insecure, ca_file, retries, timeout)`.

    Args:
      name: repository name; `image(base = "@<name>")` uses it.
      **kwargs: the attributes of image_pull_rule (image, digest, platform, insecure, ca_file,
        retries, timeout).
    """
    image_pull_rule(name = name, apparent_name = name, **kwargs)
