"""OCI 1.1 referrers: artifacts (an SBOM, a signed provenance) attached to an image manifest.

    attach(client, repo, subject, artifact_type, blob, blob_media_type, annotations, scopes)
    found = list_referrers(client, repo, subject_digest, scopes)   # [descriptor]

An artifact is an OCI image manifest with `artifactType`, the empty config
(`application/vnd.oci.empty.v1+json`, `{}`), one layer (the artifact's bytes) and `subject` (the
image manifest's descriptor). It is pushed by digest. A registry with the referrers API says so
by answering the PUT with an `OCI-Subject` header (and serves GET /v2/<name>/referrers/<digest>);
otherwise the spec's fallback is used: the tag `sha256-<hex of the subject>` holds an image
index listing the referrers, read, extended and written back, so earlier entries (ours or
another tool's) are kept. Listing reads the API when it answers 200, else the fallback tag.
"""

import hashlib
import json

from python_tools.shiko.files import canonical_json
from python_tools.shiko.registry import attachments
from python_tools.shiko.registry.errors import RegistryError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
EMPTY_DESCRIPTOR = {
    "mediaType": EMPTY_MEDIA_TYPE,
    "digest": "sha256:" + hashlib.sha256(EMPTY_BLOB).hexdigest(),
    "size": len(EMPTY_BLOB),
    "data": "e30=",
}


def fallback_tag(subject_digest):
    """The referrers tag schema's tag: `sha256-<hex>`."""
    algo, hexd = subject_digest.split(":", 1)
    return "%s-%s" % (algo, hexd)


def artifact_manifest(subject, artifact_type, blob, blob_media_type, annotations=None):
    """(bytes, descriptor) of the artifact manifest for `blob` attached to `subject`
    ({mediaType, digest, size} of the image manifest)."""
    layer = {"mediaType": blob_media_type, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
             "size": len(blob)}
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR,
        "layers": [layer],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    data = canonical_json(manifest)
    desc = {"mediaType": OCI_MANIFEST, "digest": "sha256:" + hashlib.sha256(data).hexdigest(),
            "size": len(data), "artifactType": artifact_type}
    if annotations:
        desc["annotations"] = dict(annotations)
    return data, desc


def attach(client, repo, subject, artifact_type, blob, blob_media_type, annotations, scopes):
    """Pushes one artifact referring to `subject`; returns (artifact descriptor, how: "api" or
    "tag <fallback tag>"). The subject must be in the registry."""
    attachments.require_manifest(client, repo, subject["digest"], scopes)
    data, desc = artifact_manifest(subject, artifact_type, blob, blob_media_type, annotations)
    attachments.upload_bytes(client, repo, EMPTY_DESCRIPTOR["digest"], EMPTY_BLOB, scopes)
    attachments.upload_bytes(client, repo, desc_digest(blob), blob, scopes)
    resp = client.request("PUT", "/v2/%s/manifests/%s" % (repo, desc["digest"]),
                          headers={"Content-Type": OCI_MANIFEST}, body=data, scopes=scopes,
                          ok=(200, 201, 202), what="PUT referrer %s" % desc["digest"])
    if resp.header("oci-subject") == subject["digest"]:
        return desc, "api"
    tag = fallback_tag(subject["digest"])
    _add_to_fallback(client, repo, tag, desc, scopes)
    return desc, "tag " + tag


def desc_digest(blob):
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _add_to_fallback(client, repo, tag, desc, scopes):
    old = attachments.manifest_or_none(client, repo, tag, scopes)
    manifests = []
    if old is not None:
        index = old[3]
        if index.get("mediaType") != OCI_INDEX or not isinstance(index.get("manifests"), list):
            raise RegistryError("registry %s: the tag %s of %s holds something other than a referrers "
                                "index: not replacing it" % (client.registry, tag, repo))
        manifests = list(index["manifests"])
    if any(m.get("digest") == desc["digest"] for m in manifests):
        return
    manifests.append(desc)
    body = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
    client.put_manifest(repo, tag, body, OCI_INDEX, scopes)


def list_referrers(client, repo, subject_digest, scopes, artifact_type=None):
    """The descriptors of the artifacts referring to subject_digest (API, else fallback tag)."""
    resp = client.request("GET", "/v2/%s/referrers/%s" % (repo, subject_digest),
                          headers={"Accept": OCI_INDEX}, scopes=scopes, ok=(200, 404),
                          what="GET referrers of %s" % subject_digest, max_body=4 << 20)
    manifests = None
    if resp.status == 200:
        try:
            index = json.loads((resp.body or b"").decode("utf-8"))
            if index.get("mediaType") == OCI_INDEX:
                manifests = index.get("manifests") or []
        except (ValueError, UnicodeDecodeError, AttributeError):
            manifests = None
    if manifests is None:
        old = attachments.manifest_or_none(client, repo, fallback_tag(subject_digest), scopes)
        manifests = (old[3].get("manifests") or []) if old is not None else []
    return [m for m in manifests if isinstance(m, dict)
            and (artifact_type is None or m.get("artifactType") == artifact_type)]
