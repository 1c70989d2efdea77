"""cosign signatures in a registry: append one to the `sha256-<hex>.sig` image of a manifest.

Order (a failure at any step leaves the registry as it was, save for unreferenced blobs):
1. the signed manifest must be in the repository (HEAD by digest): a signature never points
   at a manifest the registry lacks, so push the image first;
2. the `.sig` image there now, if any, is read (manifest and config), so earlier signatures
   are kept (shiko/sign/cosign.py builds the new one);
3. the payload blob and the new config blob are uploaded;
4. the new manifest is PUT under the `.sig` tag, last: the only step that changes what a
   reader sees. The image's own tags are never touched.
Two signers appending at the same moment can lose one signature (the registry API has no
compare-and-swap on tags; cosign and skopeo have the same race).
"""

from python_tools.shiko.registry import attachments
from python_tools.shiko.registry.errors import RegistryError
from python_tools.shiko.sign import cosign


class SignResult(object):
    """What push_signature did: the tag, the `.sig` manifest digest, how many signatures it holds."""

    def __init__(self, tag, digest, count, added):
        self.tag = tag
        self.digest = digest
        self.count = count
        self.added = added


def push_signature(client, repo, manifest_digest, payload_bytes, b64sig, scopes):
    """Appends the signature (payload bytes, base64 signature) of manifest_digest in repo."""
    attachments.require_manifest(client, repo, manifest_digest, scopes)
    tag = cosign.signature_tag(manifest_digest)
    old = attachments.manifest_or_none(client, repo, tag, scopes)
    old_manifest = old_config = None
    if old is not None:
        old_manifest = old[3]
        if not isinstance(old_manifest.get("layers"), list):
            raise RegistryError("registry %s: the tag %s of %s holds something other than a signature "
                                "image (no layers): not replacing it" % (client.registry, tag, repo))
        if isinstance(old_manifest.get("config"), dict) and old_manifest["config"].get("digest"):
            old_config = attachments.read_json_blob(client, repo, old_manifest["config"], scopes)
    layer = cosign.layer(payload_bytes, b64sig)
    built = cosign.append(old_manifest, old_config, layer)
    if built is None:
        return SignResult(tag, old[2], len(cosign.signatures(old_manifest)), False)
    attachments.upload_bytes(client, repo, layer["digest"], payload_bytes, scopes)
    attachments.upload_bytes(client, repo, cosign.digest_of(built.config), built.config, scopes)
    digest = client.put_manifest(repo, tag, built.manifest, built.media_type, scopes)
    return SignResult(tag, digest, built.count, True)
