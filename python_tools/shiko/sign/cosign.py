"""cosign signatures of container images: the payload, the signature layer, the `.sig` image.

What `cosign sign --key cosign.key REGISTRY/REPO@sha256:<hex>` writes (with --tlog-upload=false),
and what skopeo and podman verify with a `sigstoreSigned` policy when registries.d says
`use-sigstore-attachments: true` (containers/image docker/docker_image_dest.go):

- the payload: a "simple signing" JSON document (sigstore/pkg/signature/payload, Go's
  json.Marshal, no trailing newline)
      {"critical":{"identity":{"docker-reference":"REGISTRY/REPO"},
                   "image":{"docker-manifest-digest":"sha256:<hex>"},
                   "type":"cosign container image signature"},"optional":null}
- the signature: ECDSA-SHA256 over those exact payload bytes, ASN.1 DER, base64 (standard,
  padded), in the layer annotation `dev.cosignproject.cosign/signature`;
- the layer: the payload blob itself, mediaType `application/vnd.dev.cosign.simplesigning.v1+json`;
- the image: an OCI manifest (go-containerregistry's empty.Image with OCI media types, plus one
  layer per signature) tagged `sha256-<hex>.sig` in the signed image's repository. Its config
  is go-containerregistry's ConfigFile: `{"architecture":"","created":"0001-01-01T00:00:00Z",
  "history":[{"created":"0001-01-01T00:00:00Z"},...],"os":"","rootfs":{"type":"layers",
  "diff_ids":[<each payload's digest>]},"config":{}}`.

A second signature of the same digest is appended to the existing `.sig` image (layers,
diff_ids and history grow; earlier signatures are kept, whoever wrote them: cosign, skopeo or
us); a layer identical to one already there (same payload and annotations) is not added twice,
as skopeo and cosign do.

This module builds bytes only; shiko/registry/signatures.py reads and writes the registry.
"""

import base64
import collections
import hashlib
import json

from python_tools.shiko.sign import gojson

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

# What append() builds: the `.sig` manifest and config bytes, the manifest's media type, and how
# many signature layers it holds.
SigImage = collections.namedtuple("SigImage", "manifest config media_type count")
SIG_SUFFIX = ".sig"


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def signature_tag(manifest_digest):
    """`sha256-<hex>.sig`: where cosign keeps the signatures of manifest_digest."""
    algo, _, hexd = manifest_digest.partition(":")
    if algo != "sha256" or len(hexd) != 64:
        raise ValueError("not a sha256 digest: %r" % manifest_digest)
    return "%s-%s%s" % (algo, hexd, SIG_SUFFIX)


def payload(repository, manifest_digest):
    """The simple-signing payload bytes naming REGISTRY/REPO and the manifest digest."""
    return gojson.marshal({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": None,
    })


def sign(key, payload_bytes):
    """The base64 ECDSA-SHA256 signature of payload_bytes by key (a keys.SigningKey)."""
    return base64.b64encode(key.sign(payload_bytes)).decode("ascii")


def layer(payload_bytes, b64sig):
    """The signature layer's descriptor (go-containerregistry's field order)."""
    return {
        "mediaType": SIMPLESIGNING_MEDIA_TYPE,
        "size": len(payload_bytes),
        "digest": digest_of(payload_bytes),
        "annotations": {SIGNATURE_ANNOTATION: b64sig},
    }


def _descriptor(d):
    """A descriptor re-marshalled as go-containerregistry's v1.Descriptor (known fields, its order)."""
    out = {"mediaType": d.get("mediaType", ""), "size": d.get("size", 0), "digest": d.get("digest", "")}
    for key in ("data", "urls"):
        if d.get(key):
            out[key] = d[key]
    if d.get("annotations"):
        out["annotations"] = gojson.sorted_map(d["annotations"])
    for key in ("platform", "artifactType"):
        if d.get(key):
            out[key] = d[key]
    return out


def _history(h):
    out = {}
    for key in ("author",):
        if h.get(key):
            out[key] = h[key]
    out["created"] = h.get("created") or GO_ZERO_TIME
    for key in ("created_by", "comment", "empty_layer"):
        if h.get(key):
            out[key] = h[key]
    return out


def _config(old, diff_ids, history):
    """A ConfigFile as go-containerregistry marshals it (json.Marshal of v1.ConfigFile)."""
    old = old or {}
    out = {"architecture": old.get("architecture") or ""}
    for key in ("author", "container"):
        if old.get(key):
            out[key] = old[key]
    out["created"] = old.get("created") or GO_ZERO_TIME
    if old.get("docker_version"):
        out["docker_version"] = old["docker_version"]
    if history:
        out["history"] = history
    out["os"] = old.get("os") or ""
    rootfs = old.get("rootfs") if isinstance(old.get("rootfs"), dict) else {}
    out["rootfs"] = {"type": rootfs.get("type") or "layers", "diff_ids": diff_ids}
    out["config"] = old.get("config") if isinstance(old.get("config"), dict) else {}
    for key in ("os.version", "variant", "os.features"):
        if old.get(key):
            out[key] = old[key]
    return out


def same_layer(a, b):
    """Whether two signature layers are the same signature (skopeo's and cosign's test)."""
    return (a.get("mediaType") == b.get("mediaType") and a.get("size") == b.get("size")
            and a.get("digest") == b.get("digest")
            and (a.get("annotations") or {}) == (b.get("annotations") or {}))


def append(old_manifest, old_config, new_layer):
    """The `.sig` image with new_layer added (a SigImage), or None when an identical layer is
    already there. old_manifest / old_config: the parsed JSON of the image
    under the `.sig` tag now, or None when there is none."""
    layers = [_descriptor(d) for d in ((old_manifest or {}).get("layers") or []) if isinstance(d, dict)]
    if any(same_layer(d, new_layer) for d in layers):
        return None
    layers.append(_descriptor(new_layer))
    old_rootfs = (old_config or {}).get("rootfs") or {}
    diff_ids = [d for d in (old_rootfs.get("diff_ids") or []) if isinstance(d, str)]
    history = [_history(h) for h in ((old_config or {}).get("history") or []) if isinstance(h, dict)]
    diff_ids.append(new_layer["digest"])
    history.append(_history({}))
    config = gojson.marshal(_config(old_config, diff_ids, history))
    old_config_desc = (old_manifest or {}).get("config")
    media = (old_manifest or {}).get("mediaType") or OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media,
        "config": {"mediaType": (old_config_desc or {}).get("mediaType") or OCI_CONFIG,
                   "size": len(config), "digest": digest_of(config)},
        "layers": layers,
    }
    if (old_manifest or {}).get("annotations"):
        manifest["annotations"] = gojson.sorted_map(old_manifest["annotations"])
    return SigImage(gojson.marshal(manifest), config, media, len(signatures(manifest)))


def signatures(manifest):
    """[(layer descriptor, base64 signature)] of a parsed `.sig` manifest's simple-signing layers."""
    out = []
    for d in (manifest or {}).get("layers") or []:
        if isinstance(d, dict) and d.get("mediaType") == SIMPLESIGNING_MEDIA_TYPE:
            sig = (d.get("annotations") or {}).get(SIGNATURE_ANNOTATION)
            if isinstance(sig, str):
                out.append((d, sig))
    return out


def check_payload(payload_bytes, manifest_digest, repository=None):
    """None when payload_bytes is a cosign payload for manifest_digest (and repository, if given),
    else the problem (one line). The signature itself is checked by keys.verify."""
    try:
        doc = json.loads(payload_bytes.decode("utf-8"))
        critical = doc["critical"]
        kind = critical["type"]
        got = critical["image"]["docker-manifest-digest"]
        ref = critical["identity"]["docker-reference"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return "not a simple-signing payload"
    if kind != SIGNATURE_TYPE:
        return "payload type %r is not %r" % (kind, SIGNATURE_TYPE)
    if got != manifest_digest:
        return "the payload signs %s, not %s" % (got, manifest_digest)
    if repository is not None and ref != repository:
        return "the payload names %s, not %s" % (ref, repository)
    return None
