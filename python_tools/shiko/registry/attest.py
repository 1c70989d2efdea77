"""Attestations attached at push: the image's SBOM and its signed SLSA provenance, as referrers.

    entries = read_attachments(path)             # written by image_push (rules/private/image/push.bzl)
    lines = attach(client, ref, manifests, entries, key)

The attachments file (JSON, runfiles paths) lists, per image the push holds (an index: each
child): {"self": "<its own runfiles path>",
         "images": [{"digest_file": P, "spdx": P, "provenance": P}]}
For each pushed manifest with an entry:
- the SPDX SBOM as an artifact of type application/spdx+json (unsigned: the signature of the
  image and the provenance vouch for the build);
- with a key, the provenance: the build's SLSA v1 predicate completed into an in-toto statement
  whose subject is REGISTRY/REPO and the manifest digest (shiko/sbom/provenance.py), in a DSSE
  envelope signed with the key (shiko/sign/dsse.py), as an artifact of type
  application/vnd.in-toto+json with the predicate type as annotation.
Both have `subject` = the image manifest (shiko/registry/referrers.py: the referrers API, else
the `sha256-<hex>` fallback tag).
"""

import json
import os

from python_tools.shiko.files import read_json
from python_tools.shiko.registry import image_blobs, referrers, tokens

SPDX_TYPE = "application/spdx+json"
IN_TOTO_TYPE = "application/vnd.in-toto+json"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
PREDICATE_ANNOTATION = "in-toto.io/predicate-type"


def read_attachments(path):
    """{manifest digest: entry (absolute paths)} of an attachments file."""
    doc = read_json(path)
    root = image_blobs.runfiles_root(os.path.abspath(path), doc["self"]) or ""
    out = {}
    for e in doc["images"]:
        e = {k: os.path.join(root, v) for k, v in e.items()}
        with open(e["digest_file"]) as f:
            out[f.read().strip()] = e
    return out


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def attach(client, ref, manifests, entries, key):
    """Attaches each manifest's SBOM (and, with `key`, signed provenance); returns log lines.
    manifests: the pushed manifest descriptors ({mediaType, digest, size})."""
    from python_tools.shiko.sbom import provenance  # lazily: only when attaching
    scopes = tokens.push_scopes(ref.repository)
    lines = []
    for desc in manifests:
        e = entries.get(desc["digest"])
        if e is None:
            continue
        sbom = _read(e["spdx"])
        created = json.loads(sbom.decode("utf-8"))["creationInfo"]["created"]
        _, how = referrers.attach(client, ref.repository, desc, SPDX_TYPE, sbom, SPDX_TYPE,
                                  {"org.opencontainers.image.created": created}, scopes)
        lines.append("%s@%s: SBOM attached (SPDX, %s)" % (ref.name, desc["digest"], how))
        if key is None:
            lines.append("%s@%s: provenance not attached: it is signed, give --sign-key" % (
                ref.name, desc["digest"]))
            continue
        from python_tools.shiko.sign import dsse
        statement = provenance.statement(read_json(e["provenance"]), ref.name, desc["digest"])
        body = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode("utf-8")
        if _already_attested(client, ref, desc["digest"], body, key, scopes):
            lines.append("%s@%s: SLSA provenance already attached, signed by key %s" % (
                ref.name, desc["digest"], key.key_id))
            continue
        envelope = dsse.sign_envelope(key, dsse.IN_TOTO_PAYLOAD_TYPE, body)
        _, how = referrers.attach(client, ref.repository, desc, IN_TOTO_TYPE, envelope, DSSE_TYPE,
                                  {PREDICATE_ANNOTATION: provenance.PREDICATE_TYPE,
                                   "org.opencontainers.image.created": created}, scopes)
        lines.append("%s@%s: SLSA provenance attached (DSSE, key %s, %s)" % (
            ref.name, desc["digest"], key.key_id, how))
    return lines


def _already_attested(client, ref, digest, body, key, scopes):
    """Whether a provenance referrer of `digest` already holds this statement signed by this
    key (ECDSA signatures differ on every run: without this, each re-push would add one)."""
    from python_tools.shiko.registry import verify
    from python_tools.shiko.sign import dsse
    for found in referrers.list_referrers(client, ref.repository, digest, scopes, IN_TOTO_TYPE):
        got = verify.referrer_blob(client, ref, digest, found, scopes)
        if got is None:
            continue
        try:
            _, have = dsse.verify_envelope(got, key.public_key(), dsse.IN_TOTO_PAYLOAD_TYPE)
        except dsse.EnvelopeError:
            continue
        if have == body:
            return True
    return False
