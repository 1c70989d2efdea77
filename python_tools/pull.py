"""The network half of the `image_pull` repository rule (rules/private/pull.bzl).

Python standard library only (argparse, no absl): the repository rule runs it with the host's
python3 and `PYTHONPATH` set to rules_shiko's root. Starlark owns the repository cache (it
looks every blob up there first and puts every blob this tool fetched there); this tool owns
the registry (auth, TLS, retries, Accept headers) and the choice of the platform's manifest.

Subcommands (registry options: --insecure, --ca_file, --retries):
  digest   --image=REG/REPO[:TAG]
           prints the digest the tag points at now (for the "pin this digest" error).
  fetch    --image=REG/REPO --dir=DIR [--manifest=sha256:...]... [--blob=sha256:...:SIZE]...
           downloads manifests (by digest, with OCI and Docker Accept headers) and blobs (in
           parallel, streamed) into DIR/<hex>, each verified against its digest (and size)
           before it is kept. Prints nothing; on failure one line on stderr, exit 1.
  plan     --layout=DIR --digest=sha256:... --platform=os/arch[/variant]
           reads the manifests already in DIR/blobs/sha256 (no network) and prints JSON:
           {"need": [digests of manifests still missing]} or
           {"manifest": descriptor, "blobs": [config and layer descriptors]}.
  finish   --layout=DIR --image=REG/REPO --digest=sha256:... --manifest=sha256:... --platform=P
           checks the config's platform, writes DIR/oci-layout, DIR/index.json (the one
           manifest, with its platform) and DIR/digest ("sha256:<hex>" of that manifest).
Errors: one line `ERROR: <what>` on stderr, exit 1. Credentials are never printed.
"""

import argparse
import concurrent.futures
import json
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from python_tools.shiko.registry import client as registry  # noqa: E402

INDEX_TYPES = (registry.OCI_INDEX, registry.DOCKER_LIST)
MANIFEST_TYPES = (registry.OCI_MANIFEST, registry.DOCKER_MANIFEST)
DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


class PullError(Exception):
    pass


def _client(args, ref):
    policy = registry.RetryPolicy(attempts=args.retries)
    return registry.Client(ref.registry, insecure=args.insecure, ca_file=args.ca_file or None, retry=policy)


def _ref(image):
    try:
        return registry.parse_reference(image)
    except ValueError as e:
        raise PullError("image %r: %s" % (image, e))


def cmd_digest(args):
    ref = _ref(args.image)
    client = _client(args, ref)
    reference = ref.digest or ref.tag or "latest"
    _, _, digest = client.get_manifest(ref.repository, reference, [registry.pull_scope(ref.repository)])
    print(digest)


def cmd_fetch(args):
    ref = _ref(args.image)
    client = _client(args, ref)
    scopes = [registry.pull_scope(ref.repository)]
    os.makedirs(args.dir, exist_ok=True)
    for d in args.manifest:
        if not registry.DIGEST_RE.match(d):
            raise PullError("bad manifest digest %r" % d)
        body, _, _ = client.get_manifest(ref.repository, d, scopes)  # verified against d
        _write(os.path.join(args.dir, d[7:]), body)
    blobs = []
    for spec in args.blob:
        digest, _, size = spec.rpartition(":")
        if not registry.DIGEST_RE.match(digest) or not size.isdigit():
            raise PullError("bad blob spec %r (want sha256:<hex>:<size>)" % spec)
        blobs.append((digest, int(size)))
    if not blobs:
        return
    blobs.sort(key=lambda b: -b[1])
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futs = [pool.submit(client.get_blob, ref.repository, d, os.path.join(args.dir, d[7:]), scopes, size)
                for d, size in blobs]
        error = None
        for f in concurrent.futures.as_completed(futs):
            try:
                f.result()
            except registry.RegistryError as e:
                error = error or e
        if error:
            for d, _ in blobs:  # nothing half-verified is kept
                for p in (os.path.join(args.dir, d[7:]), os.path.join(args.dir, d[7:]) + ".part"):
                    if os.path.exists(p):
                        os.unlink(p)
            raise error
    client.close()


def _write(path, data):
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


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


def parse_platform(value):
    parts = (value or "").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise PullError("platform %r is not os/architecture[/variant], e.g. linux/amd64" % value)
    return {"os": parts[0], "architecture": parts[1], "variant": parts[2] if len(parts) == 3 else ""}


def _key(p):
    arch = p.get("architecture") or ""
    return (p.get("os") or "", arch, p.get("variant") or DEFAULT_VARIANTS.get(arch, ""))


def _pstr(p):
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def plan(layout, top, platform):
    """{"need": [...]} or {"manifest": desc, "blobs": [...]} (see the module docstring)."""
    want = parse_platform(platform)
    desc = {"digest": top}
    for _ in range(8):
        obj = _read_blob(layout, desc["digest"])
        if obj is None:
            return {"need": [desc["digest"]]}
        media = obj.get("mediaType") or desc.get("mediaType")
        if media in INDEX_TYPES or (media is None and isinstance(obj.get("manifests"), list)):
            children = [m for m in obj.get("manifests") or [] if isinstance(m, dict)]
            images = [m for m in children
                      if (m.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"
                      and isinstance(m.get("platform"), dict)]
            matches = [m for m in images if _key(m["platform"]) == _key(want)]
            if not matches:
                avail = sorted(set(_pstr(m["platform"]) for m in images))
                raise PullError("index %s has no image for platform %s (available: %s)"
                                % (desc["digest"], _pstr(want), ", ".join(avail) or "none"))
            if len(set(m.get("digest") for m in matches)) > 1:
                raise PullError("index %s has several images for platform %s" % (desc["digest"], _pstr(want)))
            desc = matches[0]
            if not registry.DIGEST_RE.match(desc.get("digest") or ""):
                raise PullError("index %s names a malformed digest %r" % (top, desc.get("digest")))
            continue
        if media not in MANIFEST_TYPES and not (media is None and "layers" in obj):
            raise PullError("%s is neither an image manifest nor an index (mediaType %r)" % (desc["digest"], media))
        config = obj.get("config")
        layers = obj.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list):
            raise PullError("manifest %s has no config or layers" % desc["digest"])
        blobs = []
        for b in [config] + layers:
            if not isinstance(b, dict) or not registry.DIGEST_RE.match(b.get("digest") or "") \
                    or not isinstance(b.get("size"), int) or b["size"] < 0:
                raise PullError("manifest %s has a malformed descriptor %r" % (desc["digest"], b))
            blobs.append({"digest": b["digest"], "size": b["size"], "mediaType": b.get("mediaType", "")})
        manifest_desc = {
            "mediaType": media or registry.OCI_MANIFEST,
            "digest": desc["digest"],
            "size": os.path.getsize(os.path.join(layout, "blobs", "sha256", desc["digest"][7:])),
        }
        return {"manifest": manifest_desc, "blobs": blobs}
    raise PullError("image indexes nest too deeply under %s" % top)


def cmd_plan(args):
    sys.stdout.write(json.dumps(plan(args.layout, args.digest, args.platform), sort_keys=True) + "\n")


def cmd_finish(args):
    want = parse_platform(args.platform)
    p = plan(args.layout, args.digest, args.platform)
    if "need" in p:
        raise PullError("manifest %s is missing" % p["need"][0])
    mdesc = p["manifest"]
    if args.manifest and args.manifest != mdesc["digest"]:
        raise PullError("the plan chose manifest %s, not %s" % (mdesc["digest"], args.manifest))
    for b in p["blobs"]:
        path = os.path.join(args.layout, "blobs", "sha256", b["digest"][7:])
        if not os.path.isfile(path) or os.path.getsize(path) != b["size"]:
            raise PullError("blob %s is missing" % b["digest"])
    config = _read_blob(args.layout, p["blobs"][0]["digest"])
    got = {k: config.get(k) or "" for k in ("os", "architecture", "variant")}
    if _key(got) != _key(want):
        raise PullError("manifest %s is for platform %s, not %s" % (mdesc["digest"], _pstr(got), _pstr(want)))
    desc = dict(mdesc)
    desc["platform"] = {k: v for k, v in (("os", got["os"]), ("architecture", got["architecture"]),
                                          ("variant", got["variant"])) if v}
    ref = _ref(args.image)
    index = {"schemaVersion": 2, "mediaType": registry.OCI_INDEX, "manifests": [desc]}
    _write(os.path.join(args.layout, "oci-layout"), b'{"imageLayoutVersion":"1.0.0"}')
    _write(os.path.join(args.layout, "index.json"),
           json.dumps(index, sort_keys=True, separators=(",", ":")).encode("utf-8"))
    _write(os.path.join(args.layout, "digest"), (mdesc["digest"] + "\n").encode("ascii"))
    # Remembered for cross-repository mounts when images built on this base are pushed.
    registry.remember_sources(ref.registry, ref.repository, [b["digest"] for b in p["blobs"]])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pull.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    def registry_opts(sp):
        sp.add_argument("--image", required=True)
        sp.add_argument("--insecure", action="store_true")
        sp.add_argument("--ca_file", default="")
        sp.add_argument("--retries", type=int, default=6)

    sp = sub.add_parser("digest")
    registry_opts(sp)
    sp = sub.add_parser("fetch")
    registry_opts(sp)
    sp.add_argument("--dir", required=True)
    sp.add_argument("--manifest", action="append", default=[])
    sp.add_argument("--blob", action="append", default=[])
    sp.add_argument("--jobs", type=int, default=4)
    sp = sub.add_parser("plan")
    sp.add_argument("--layout", required=True)
    sp.add_argument("--digest", required=True)
    sp.add_argument("--platform", required=True)
    sp = sub.add_parser("finish")
    sp.add_argument("--layout", required=True)
    sp.add_argument("--image", required=True)
    sp.add_argument("--digest", required=True)
    sp.add_argument("--manifest", default="")
    sp.add_argument("--platform", required=True)
    args = parser.parse_args(argv)
    try:
        {"digest": cmd_digest, "fetch": cmd_fetch, "plan": cmd_plan, "finish": cmd_finish}[args.cmd](args)
    except (PullError, registry.RegistryError) as e:
        sys.stderr.write("ERROR: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
