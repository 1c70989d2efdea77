"""What a deploy pipeline checks before it runs an image: python_tools/verify.py's checks.

    problems, lines = verify(client, ref, public_key, expected_digest=None)

For the manifest REF names (a tag is resolved; an index: the index and each child):
1. a cosign signature in `sha256-<hex>.sig` whose simple-signing payload names this digest and
   this repository, and whose ECDSA signature verifies with the key;
for each image manifest (an index's children):
2. an SBOM referrer (artifactType application/spdx+json, `subject` = the manifest) whose SPDX
   document describes this digest;
3. a provenance referrer (application/vnd.in-toto+json) whose DSSE envelope verifies with the
   key and whose in-toto statement is SLSA v1 provenance with this digest as its subject.
Every blob read is verified against its digest. Each miss is one problem line; none: it passes.
"""

import base64
import json
import os
import tempfile

from python_tools.shiko.registry import attachments, referrers, tokens
from python_tools.shiko.registry.attest import IN_TOTO_TYPE, SPDX_TYPE

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")


def _blob(client, repo, desc, scopes):
    """The bytes of a small blob, verified against its descriptor."""
    with tempfile.TemporaryDirectory(prefix="shiko-verify-") as tmp:
        path = os.path.join(tmp, "blob")
        client.get_blob(repo, desc["digest"], path, scopes, size=desc.get("size"))
        with open(path, "rb") as f:
            return f.read()


def _signature(client, ref, digest, key, scopes):
    """None when a signature of `digest` verifies, else the problem."""
    from python_tools.shiko.sign import cosign, keys
    sig = attachments.manifest_or_none(client, ref.repository, cosign.signature_tag(digest), scopes)
    if sig is None:
        return "%s@%s: not signed (no %s)" % (ref.name, digest, cosign.signature_tag(digest))
    why = []
    for desc, b64 in cosign.signatures(sig[3]):
        payload = _blob(client, ref.repository, desc, scopes)
        problem = cosign.check_payload(payload, digest, ref.name)
        if problem is None:
            try:
                raw = base64.b64decode(b64, validate=True)
            except ValueError:
                why.append("a signature is not base64")
                continue
            if keys.verify(key, raw, payload):
                return None
            problem = "a signature does not verify with the key"
        why.append(problem)
    return "%s@%s: no signature verifies with the key (%s)" % (
        ref.name, digest, "; ".join(why) or "the .sig image holds no signature")


def referrer_blob(client, ref, digest, desc, scopes):
    """The bytes of the one layer of the referrer `desc` of `digest` (verified), or None when
    that artifact is gone or does not refer to `digest`."""
    got = attachments.manifest_or_none(client, ref.repository, desc["digest"], scopes)
    if got is None:
        return None
    manifest = got[3]
    if (manifest.get("subject") or {}).get("digest") != digest or not manifest.get("layers"):
        return None
    return _blob(client, ref.repository, manifest["layers"][0], scopes)


def _referrers(client, ref, digest, artifact_type, scopes):
    """The layer bytes of every referrer of that type, newest first."""
    found = referrers.list_referrers(client, ref.repository, digest, scopes, artifact_type)
    for desc in reversed(found):
        data = referrer_blob(client, ref, digest, desc, scopes)
        if data is not None:
            yield data


def _sbom(client, ref, digest, scopes):
    got = next(_referrers(client, ref, digest, SPDX_TYPE, scopes), None)
    if got is None:
        return "%s@%s: no SBOM attached (referrer of type %s)" % (ref.name, digest, SPDX_TYPE)
    try:
        doc = json.loads(got.decode("utf-8"))
        described = [p.get("versionInfo") for p in doc.get("packages", []) if p.get("SPDXID") == "SPDXRef-Image"]
    except (ValueError, UnicodeDecodeError, AttributeError):
        return "%s@%s: the attached SBOM is not SPDX JSON" % (ref.name, digest)
    if not str(doc.get("spdxVersion", "")).startswith("SPDX-") or described != [digest]:
        return "%s@%s: the attached SBOM describes %s, not this image" % (ref.name, digest, described)
    return None


def _provenance(client, ref, digest, key, scopes):
    from python_tools.shiko.sbom import provenance
    from python_tools.shiko.sign import dsse
    envelopes = list(_referrers(client, ref, digest, IN_TOTO_TYPE, scopes))
    if not envelopes:
        return "%s@%s: no provenance attached (referrer of type %s)" % (ref.name, digest, IN_TOTO_TYPE)
    body = None
    for envelope in envelopes:  # any provenance signed by this key will do
        try:
            _, body = dsse.verify_envelope(envelope, key, dsse.IN_TOTO_PAYLOAD_TYPE)
            break
        except dsse.EnvelopeError as e:
            problem = str(e)
    if body is None:
        return "%s@%s: the provenance's envelope: %s" % (ref.name, digest, problem)
    try:
        statement = json.loads(body.decode("utf-8"))
        subjects = ["%s:%s" % kv for s in statement["subject"] for kv in s["digest"].items()]
        ptype = statement["predicateType"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError):
        return "%s@%s: the provenance is not an in-toto statement" % (ref.name, digest)
    if ptype != provenance.PREDICATE_TYPE:
        return "%s@%s: the provenance's predicate is %s, not %s" % (ref.name, digest, ptype, provenance.PREDICATE_TYPE)
    if digest not in subjects:
        return "%s@%s: the provenance names %s, not this digest" % (ref.name, digest, ", ".join(subjects))
    return None


def verify(client, ref, key, expected_digest=None):
    """(problems, lines): every check above for REF; `expected_digest` (the build's .digest)
    must be what REF resolves to."""
    scopes = [tokens.pull_scope(ref.repository)]
    body, media, digest = client.get_manifest(ref.repository, ref.digest or ref.tag or "latest", scopes)
    problems, lines = [], []
    if expected_digest and digest != expected_digest:
        problems.append("%s is %s, but this build's image is %s" % (ref, digest, expected_digest))
    images = [digest]
    if media in INDEX_TYPES:
        images = [m["digest"] for m in json.loads(body.decode("utf-8")).get("manifests") or []]
        p = _signature(client, ref, digest, key, scopes)
        problems += [p] if p else []
        lines += [] if p else ["%s@%s: index signature verified" % (ref.name, digest)]
    for d in images:
        for name, p in (("signature", _signature(client, ref, d, key, scopes)),
                        ("SBOM", _sbom(client, ref, d, scopes)),
                        ("provenance", _provenance(client, ref, d, key, scopes))):
            if p:
                problems.append(p)
            else:
                lines.append("%s@%s: %s verified" % (ref.name, d, name))
    return problems, lines
