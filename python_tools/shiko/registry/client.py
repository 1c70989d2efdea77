"""A small OCI distribution (registry v2) client: blobs and manifests of one registry.

Python standard library only: the `image_pull` repository rule runs it with the host's python3,
outside any Bazel action, where no third-party package is available.

It does what docker and podman do, in these parts (one concept each):
- references (`registry/repo[:tag][@sha256:...]`, Docker Hub's normalization): shiko/oci/reference.py;
- credentials from docker/podman config files and credential helpers: auth.py;
- challenges, Basic and Bearer tokens, scopes: tokens.py;
- TLS, keep-alive connections, the retry policy: transport.py;
- scheme detection, authenticated requests with retries and redirects: session.py;
- streaming, restartable blob uploads and verified downloads: blobs.py;
- the memory of where blobs were seen, for cross-repository mounts: sources.py;
- errors (one line, never a credential): errors.py.

    client = Client("127.0.0.1:5000", retry=RetryPolicy(attempts=6))
    client.upload_blob("team/app", digest, path, tokens.push_scopes("team/app"))
    client.put_manifest("team/app", "v1", body, media_types.OCI_MANIFEST, scopes)
"""

import json

from python_tools.shiko.files import sha256_hex
from python_tools.shiko.oci import media_types
from python_tools.shiko.oci.reference import DIGEST_RE
from python_tools.shiko.registry import blobs
from python_tools.shiko.registry.errors import DigestMismatch, RegistryError
from python_tools.shiko.registry.session import Session
from python_tools.shiko.registry.transport import CERTS_DIRS

MANIFEST_ACCEPT = ", ".join([media_types.OCI_INDEX, media_types.OCI_MANIFEST, media_types.DOCKER_LIST,
                             media_types.DOCKER_MANIFEST])
MAX_MANIFEST_BYTES = 4 << 20


class Client(object):
    """One registry. Thread-safe: each thread gets its own keep-alive connection.

    registry: "host[:port]" (Docker Hub: "docker.io"). env: for credentials and helpers.
    credentials: a Credential to use instead of looking them up (None: look up lazily).
    `scopes` arguments are token scopes (tokens.pull_scope, tokens.push_scopes).
    """

    def __init__(self, registry, insecure=False, ca_file=None, retry=None, timeout=120.0,
                 credentials=None, env=None, log=None, certs_dirs=CERTS_DIRS):
        self.session = Session(registry, insecure=insecure, ca_file=ca_file, retry=retry, timeout=timeout,
                               credentials=credentials, env=env, log=log, certs_dirs=certs_dirs)
        self.registry = registry

    @property
    def retries(self):
        """How many retries happened (for summaries and tests)."""
        return self.session.retries

    def base_url(self):
        return self.session.base_url()

    def request(self, method, path_or_url, **kwargs):
        """An API call with auth, retries and redirects (Session.request)."""
        return self.session.request(method, path_or_url, **kwargs)

    def close(self):
        self.session.close()

    # -- blobs ------------------------------------------------------------------------------
    def blob_size(self, repo, digest, scopes):
        """HEAD a blob: its size if the repository has it, else None."""
        resp = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), scopes=scopes, ok=(200, 404),
                            what="HEAD blob %s" % digest)
        if resp.status == 404:
            return None
        try:
            return int(resp.header("content-length"))
        except (TypeError, ValueError):
            return -1

    def mount_blob(self, repo, digest, from_repo, scopes):
        """Cross-repository mount: True if mounted (201); False if the registry declined."""
        import urllib.parse  # lazily: a push that sends nothing mounts nothing

        q = urllib.parse.urlencode([("mount", digest), ("from", from_repo)])
        resp = self.request("POST", "/v2/%s/blobs/uploads/?%s" % (repo, q), scopes=scopes, ok=(201, 202),
                            what="mount blob %s from %s" % (digest, from_repo))
        if resp.status == 201:
            return True
        # 202: the registry opened an upload session instead; abandon it.
        loc = resp.header("location")
        if loc:
            try:
                self.request("DELETE", self.session.absolute(loc), scopes=scopes, ok=(200, 202, 204, 404),
                             retry=False, what="cancel upload")
            except RegistryError:
                pass
        return False

    def upload_blob(self, repo, digest, path, scopes, size=None, progress=None, chunk_size=0):
        """Uploads a blob from a file (blobs.upload); returns the bytes sent, retries included."""
        return blobs.upload(self.session, repo, digest, path, scopes, size, progress, chunk_size)

    def get_blob(self, repo, digest, dest, scopes, size=None, progress=None):
        """Downloads a blob to dest, verifying digest and size (blobs.download); returns its size."""
        return blobs.download(self.session, repo, digest, dest, scopes, size, progress)

    # -- manifests --------------------------------------------------------------------------
    def get_manifest(self, repo, reference, scopes):
        """(bytes, media type, digest). By digest: verified. By tag: the digest of the bytes."""
        what = "GET manifest %s" % reference
        # A larger manifest is refused after reading at most MAX_MANIFEST_BYTES + 1 bytes.
        resp = self.request("GET", "/v2/%s/manifests/%s" % (repo, reference), headers={"Accept": MANIFEST_ACCEPT},
                            scopes=scopes, ok=(200,), what=what, max_body=MAX_MANIFEST_BYTES)
        body = resp.body or b""
        digest = "sha256:" + sha256_hex(body)
        if DIGEST_RE.match(reference) and digest != reference:
            raise DigestMismatch("registry %s: manifest %s of %s: digest mismatch: got %s"
                                 % (self.registry, reference, repo, digest))
        media = (resp.header("content-type") or "").split(";")[0].strip()
        try:
            parsed = json.loads(body.decode("utf-8"))
            if isinstance(parsed, dict) and parsed.get("mediaType"):
                media = parsed["mediaType"]
        except (ValueError, UnicodeDecodeError):
            raise RegistryError("registry %s: %s: not JSON" % (self.registry, what))
        return body, media, digest

    def manifest_digest(self, repo, reference, scopes):
        """HEAD a manifest: its digest, or None if absent."""
        resp = self.request("HEAD", "/v2/%s/manifests/%s" % (repo, reference), headers={"Accept": MANIFEST_ACCEPT},
                            scopes=scopes, ok=(200, 404), what="HEAD manifest %s" % reference)
        if resp.status == 404:
            return None
        return resp.header("docker-content-digest") or ""

    def put_manifest(self, repo, reference, body, media_type, scopes):
        """PUT a manifest under a digest or tag; checks the digest the registry reports."""
        digest = "sha256:" + sha256_hex(body)
        what = "PUT manifest %s" % (digest if reference == digest else "%s (tag %s)" % (digest, reference))
        resp = self.request("PUT", "/v2/%s/manifests/%s" % (repo, reference), headers={"Content-Type": media_type},
                            body=body, scopes=scopes, ok=(200, 201, 202), what=what)
        got = resp.header("docker-content-digest")
        if got and got != digest:
            raise DigestMismatch("registry %s: %s: the registry computed %s" % (self.registry, what, got))
        return digest

    def tags(self, repo, scopes):
        resp = self.request("GET", "/v2/%s/tags/list" % repo, scopes=scopes, ok=(200, 404), what="list tags")
        if resp.status == 404:
            return []
        try:
            return list(json.loads(resp.body.decode("utf-8")).get("tags") or [])
        except (ValueError, AttributeError):
            return []
