"""Pushes an image to a registry (what `bazel run` of an `image_push` target runs).

Usage (the launcher written by image_push passes --image_manifest, --image_config, --blob_map
and the --default_* flags; users add their own after `--`):
  bazel run //pkg:push -- [--repository=REGISTRY/REPO] [--tag=T ...] [--insecure] [--ca_file=CA]
      [--jobs=4] [--retries=6] [--retry_delay=0.5] [--chunk_size=0] [--mount_from=REPO ...]
      [--progress=auto|tty|plain] [--sign-key=cosign.key]
  python -m python_tools.push --layout=DIR --repository=R [--tag=T ...]

Where the blobs come from: with --layout, the layout. From image_push, no layout: each layer
blob is read from its layer target's output when it is on this machine, else from a pulled
base's layout, else (Build without the Bytes on a CI machine) fetched from the Bazel HTTP
remote cache given by --remote_cache, $SHIKO_REMOTE_CACHE or the target's
//settings:remote_cache, and only when the registry lacks it (shiko/registry/image_blobs.py).

What it pushes: the layout's index.json must name one descriptor: an image manifest, or an
image index (multi-platform), whose child manifests are pushed first. First the manifest is
HEADed under each tag: when a tag already resolves to this very image (and an index's children
are there), the registry holds all of it and nothing else is sent but the tags that don't
resolve to it yet (a re-push of an unchanged image is one HEAD). Otherwise: every blob
(config and layers of all manifests) in parallel, `--jobs` at a time, largest first: HEAD
first and skipped when present; else mounted from another repository of the same registry
when one is known to have it (`--mount_from`, and the repositories this machine pushed it to
or pulled it from before, remembered in ~/.cache/rules_shiko/blob_sources.json); else uploaded,
streamed from disk. Then the manifests: an index's children by digest, then the top manifest
under each tag (by digest when there is none): a tag never points at a manifest whose blobs
aren't all there, and no manifest is sent twice under the same name (shiko/registry/push.py).

Signing (--sign-key=PATH, docs/supply-chain.md): PATH is a PEM ECDSA P-256 private key (PKCS#8,
SEC1, or cosign's encrypted key with the password in $COSIGN_PASSWORD). It is read and checked
before anything is sent (a bad key, a missing or wrong password: one line naming the file,
never its content), and only at run time: it is never an input of the build. After the image
is pushed (all its tags), its manifest digest is signed the way `cosign sign` does: a
simple-signing payload naming REGISTRY/REPO and the digest, appended to the
`sha256-<hex>.sig` image of that repository (earlier signatures are kept;
shiko/sign/cosign.py, shiko/registry/signatures.py). An image index is signed by its own
digest and each of its platform manifests by theirs (as `cosign sign --recursive`): skopeo and
podman check the manifest of the platform they pull. One stderr line per signature written. If
signing fails, the image and its tags stay pushed as they are and the error says so.

Attestations (--attachments, set by image_push; --no_attach / --no-attach skips them): after
the signatures, each pushed image manifest gets its SPDX SBOM and, with --sign-key, its SLSA v1
provenance (an in-toto statement naming REGISTRY/REPO@digest, in a DSSE envelope signed with the
key) as OCI 1.1 referrers: the registry's referrers API, else the `sha256-<hex>` fallback tag
(an index of the referrers, extended, never replaced; shiko/registry/attest.py, referrers.py).

Output: on a terminal, one status line with each active blob's bytes and rate; otherwise
nothing until the summary line on stderr (blobs pushed/skipped/mounted, bytes sent, retries).
The last line, on stdout, is `REGISTRY/REPO@sha256:<hex>`: the pushed manifest's digest, checked
to be the one in the image's `.digest` file (--digest_file).

Failures: bad flags print `ERROR: <target>: attribute '<flag>': <value>: <problem>`; registry
failures (after the retries the registry client makes) print one line naming the blob or
manifest, the registry and the HTTP status. Exit status 1 either way. Credentials come from the
docker/podman configuration (shiko/registry/auth.py; podman's per-repository entries too), go
only to the registry's own scheme, host and port, and are never printed. TLS trusts the system
CAs, --ca_file and /etc/docker/certs.d/<host>/*.crt (and /etc/containers/certs.d/); a
<name>.cert + <name>.key pair there is presented as a client certificate (mutual TLS).
"""

import os
import sys
import time

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError
from python_tools.shiko.oci.reference import DIGEST_RE, REPOSITORY_RE
from python_tools.shiko.registry import image_blobs
from python_tools.shiko.registry import push as pusher
from python_tools.shiko.registry.client import Client
from python_tools.shiko.registry.errors import RegistryError
from python_tools.shiko.registry.transport import RetryPolicy

FLAGS = [
    cli.string("layout", help="The OCI image layout directory to push (or --image_manifest, --image_config "
               "and --blob_map)."),
    cli.string("digest_file", help="The image's .digest file: the pushed digest must equal it."),
    cli.string("target", help="Label of the image_push target (for messages)."),
    cli.string("repository", help="REGISTRY/REPO to push to (overrides the target's `repository`)."),
    cli.multi_string("tag", help="Tag to set (repeatable); replaces the target's `tags` and tags file."),
    cli.string("default_repository", help="The target's `repository` (set by the launcher)."),
    cli.multi_string("default_tag", help="The target's `tags` (set by the launcher)."),
    cli.string("default_tags_file", help="The target's `remote_tags_file`: one tag per line."),
    cli.boolean("insecure", help="Allow plain HTTP (and HTTPS to HTTP redirects) and unverified TLS for a "
                "non-loopback registry."),
    cli.string("ca_file", help="PEM file of CA certificates to trust (in addition to the system's)."),
    cli.integer("jobs", 4, help="Blobs pushed in parallel.", lower_bound=1),
    cli.integer("retries", 6, help="Attempts per operation (connection resets, 5xx, 429).", lower_bound=1),
    cli.floating("retry_delay", 0.5, help="First backoff delay in seconds (doubles each retry).", lower_bound=0),
    cli.integer("chunk_size", 0, help="Upload blobs in PATCH chunks of this many bytes (0: one PUT).",
                lower_bound=0),
    cli.multi_string("mount_from", help="Repository on the same registry to mount blobs from."),
    cli.enum("progress", "auto", ["auto", "tty", "plain"],
             help="auto: a live status line when stderr is a terminal; plain: the summary only."),
    cli.string("sign_key", help="Sign the pushed manifest with this PEM ECDSA P-256 key (cosign format; "
               "an encrypted cosign key takes its password from $COSIGN_PASSWORD)."),
    cli.string("attachments", help="The image's SBOM and provenance files (set by the launcher; "
               "shiko/registry/attest.py)."),
    cli.boolean("no_attach", help="Attach no SBOM or provenance referrers."),
] + image_blobs.FLAGS


def load_sign_key(path, target, wd):
    """The SigningKey of --sign-key (relative to where the user typed the command), checked
    before anything is pushed; UserError naming the file otherwise."""
    from python_tools.shiko.sign import keys  # lazily: cryptography only when signing
    if path and wd and not os.path.isabs(path):
        path = os.path.join(wd, path)
    try:
        return keys.load_signing_key(path)
    except keys.KeyFileError as e:
        raise UserError(e.problem, target, "--sign-key", e.path)


def sign_pushed(client, ref, digests, key, target):
    """Appends the cosign signature of each pushed manifest digest; returns the summary lines."""
    from python_tools.shiko.registry import signatures, tokens
    from python_tools.shiko.sign import cosign
    lines = []
    for digest in digests:
        payload = cosign.payload(ref.name, digest)
        try:
            res = signatures.push_signature(client, ref.repository, digest, payload, cosign.sign(key, payload),
                                            tokens.push_scopes(ref.repository))
        except RegistryError as e:
            raise UserError("the image was pushed (%s@%s) but signing it failed: %s" % (ref.name, digests[-1], e),
                            target, "--sign-key", key.path)
        lines.append("%s:%s: %s (%d signature%s; key %s)" % (
            ref.name, res.tag, "signed" if res.added else "already signed by this signature",
            res.count, "" if res.count == 1 else "s", key.key_id))
    return lines


def run(args):
    target = args.target
    # `bazel run` starts us in the runfiles tree; paths given by the user are relative to where
    # they typed the command.
    wd = os.environ.get("BUILD_WORKING_DIRECTORY")
    ca_file = args.ca_file
    if ca_file and wd and not os.path.isabs(ca_file):
        ca_file = os.path.join(wd, ca_file)
    start = time.monotonic()
    ref, tags = pusher.resolve_destination(target, args.repository, args.default_repository, args.tag,
                                           args.default_tag, args.default_tags_file)
    for m in args.mount_from:
        if not REPOSITORY_RE.match(m):
            raise UserError("not a repository name on the same registry", target, "--mount_from", m)
    sign_key = load_sign_key(args.sign_key, target, wd) if args.sign_key is not None else None
    parts = None if args.layout else image_blobs.from_flags(args, target)
    if args.layout:
        plan = pusher.read_plan(args.layout, target)
    elif parts:
        plan = image_blobs.read_image_plan(pusher.Plan(), parts)
    else:
        raise cli.UsageError("give --layout, or --image_manifest, --image_config and --blob_map")
    digest = plan.top["digest"]
    if args.digest_file:
        with open(args.digest_file) as f:
            want = f.read().strip()
        if want != digest:
            raise UserError("the layout's manifest is %s but the image's .digest says %s"
                            % (digest, want), target, "image", args.layout or args.image_manifest)
    if not DIGEST_RE.match(digest):
        raise UserError("unsupported digest", target, "image", digest)
    live = args.progress == "tty" or (args.progress == "auto" and sys.stderr.isatty())

    def log(msg):
        # Retries are reported live on a terminal; otherwise the summary counts them.
        if live:
            sys.stderr.write("\r\x1b[K" + msg + "\n")
            sys.stderr.flush()

    client = Client(ref.registry, insecure=args.insecure, ca_file=ca_file,
                    retry=RetryPolicy(attempts=args.retries, base_delay=args.retry_delay), log=log)
    signed = None
    try:
        try:
            pushed, result = pusher.push(plan, ref, tags, client, jobs=args.jobs, mount_from=args.mount_from,
                                         chunk_size=args.chunk_size, live=live, log=log)
        except RegistryError as e:
            raise UserError("push to %s failed: %s" % (ref.name, e), target)
        elapsed = time.monotonic() - start
        sys.stderr.write(pusher.summary(ref, result, elapsed, client.retries, plan, tags) + "\n")
        sys.stderr.flush()
        if sign_key is not None:
            # An index's platform manifests first, then the index (what `cosign sign --recursive`
            # signs): a verifier that resolves the index to one platform checks that manifest.
            signed = sign_pushed(client, ref, [desc["digest"] for desc, _, _ in plan.manifests], sign_key, target)
        if args.attachments and not args.no_attach:
            from python_tools.shiko.registry import attest
            try:
                signed = list(signed or ()) + attest.attach(
                    client, ref, [desc for desc, _, _ in plan.manifests],
                    attest.read_attachments(args.attachments), sign_key)
            except RegistryError as e:
                raise UserError("the image was pushed (%s@%s) but attaching its SBOM or provenance failed: %s"
                                % (ref.name, pushed, e), target, "--attachments", args.attachments)
    finally:
        client.close()
    for line in signed or ():
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
    sys.stdout.write("%s@%s\n" % (ref.name, pushed))
    sys.stdout.flush()


if __name__ == "__main__":
    cli.main(FLAGS, run, target=lambda args, manifest: args.target or args.layout or "push", fast_exit=True)
