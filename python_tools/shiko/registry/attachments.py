"""Small things attached to an image in its repository: signatures now, referrers later.

Helpers shared by signatures.py (cosign's `sha256-<hex>.sig` tag) and, later, attestations
(OCI 1.1 referrers and the `sha256-<hex>` fallback tag): small blobs uploaded from memory,
small JSON blobs read back, a manifest that may be absent, and the check that the image an
attachment points at is really in the registry.
"""

import json
import os
import tempfile

from python_tools.shiko.registry.errors import RegistryError

MAX_JSON_BLOB = 4 << 20


def manifest_or_none(client, repo, reference, scopes):
    """(bytes, media type, digest, parsed JSON) of a manifest, or None when the registry has none."""
    try:
        body, media, digest = client.get_manifest(repo, reference, scopes)
    except RegistryError as e:
        if e.status == 404:
            return None
        raise
    parsed = json.loads(body.decode("utf-8"))
    if not isinstance(parsed, dict):
        raise RegistryError("registry %s: manifest %s of %s is not a JSON object" % (client.registry, reference, repo))
    return body, media, digest, parsed


def require_manifest(client, repo, digest, scopes):
    """Raises RegistryError unless the registry holds the manifest `digest` in repo: nothing is
    ever attached to a manifest the registry lacks."""
    got = client.manifest_digest(repo, digest, scopes)
    if got is None:
        raise RegistryError("registry %s: manifest %s is not in %s: nothing attached to it"
                            % (client.registry, digest, repo), 404)
    if got and got != digest:
        raise RegistryError("registry %s: %s of %s answers with digest %s" % (client.registry, digest, repo, got))


def upload_bytes(client, repo, digest, data, scopes):
    """Uploads a small blob held in memory, unless the repository has it already."""
    if client.blob_size(repo, digest, scopes) is not None:
        return
    with tempfile.TemporaryDirectory(prefix="shiko-attach-") as tmp:
        path = os.path.join(tmp, "blob")
        with open(path, "wb") as f:
            f.write(data)
        client.upload_blob(repo, digest, path, scopes, size=len(data))


def read_json_blob(client, repo, desc, scopes):
    """The parsed JSON of a small blob (a config), verified against its descriptor."""
    size = desc.get("size")
    if not isinstance(size, int) or size < 0 or size > MAX_JSON_BLOB:
        raise RegistryError("registry %s: blob %s of %s: unusable size %r"
                            % (client.registry, desc.get("digest"), repo, size))
    with tempfile.TemporaryDirectory(prefix="shiko-attach-") as tmp:
        path = os.path.join(tmp, "blob")
        client.get_blob(repo, desc["digest"], path, scopes, size=size)
        with open(path, "rb") as f:
            data = f.read()
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise RegistryError("registry %s: blob %s of %s is not JSON" % (client.registry, desc["digest"], repo))
