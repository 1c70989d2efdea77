"""Checks an image in a registry before a deploy: signed, SBOM and provenance attached.

Usage (`image_verify` targets, rules/private/image/verify.bzl):
  bazel run //app:verify -- REGISTRY/REPO[:TAG|@DIGEST] --key=cosign.pub [--insecure] [--ca_file=CA]
  python -m python_tools.verify --ref=REF --key=PUB.pem [--digest_file=image.digest]

Checks (python_tools/shiko/registry/verify.py): REF resolves to this build's image (the
target's `.digest`, when the launcher gives --digest_file); a cosign signature of that digest
(the index and each child for an image index) verifies with the public key; each image has an
SBOM referrer describing its digest and a provenance referrer whose DSSE envelope verifies with
the key and whose SLSA v1 statement names the digest. Prints one line per check passed on
stderr and exits 0; any miss: one line per problem, exit 1. A relative --key is taken from
where `bazel run` was typed.
"""

import os
import sys

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError
from python_tools.shiko.oci import reference
from python_tools.shiko.registry import verify as checks
from python_tools.shiko.registry.client import Client
from python_tools.shiko.registry.errors import RegistryError

FLAGS = [
    cli.string("ref", help="REGISTRY/REPO[:TAG|@DIGEST] to check (or give it as the first argument)."),
    cli.string("key", required=True, help="The public key (PEM) the signature and provenance must verify with."),
    cli.string("digest_file", help="The image's .digest: REF must resolve to it (set by the launcher)."),
    cli.string("target", help="Label of the image_verify target (for messages)."),
    cli.boolean("insecure", help="Allow plain HTTP and unverified TLS for a non-loopback registry."),
    cli.string("ca_file", help="PEM file of CA certificates to trust (in addition to the system's)."),
]


def _here(path):
    wd = os.environ.get("BUILD_WORKING_DIRECTORY")
    return os.path.join(wd, path) if path and wd and not os.path.isabs(path) else path


def run(args):
    from python_tools.shiko.sign import keys  # cryptography: only here
    target = args.target or "verify"
    if not args.ref:
        raise UserError("give the image to check: REGISTRY/REPO[:TAG|@DIGEST]", target, "ref", "")
    try:
        ref = reference.parse(args.ref)
    except ValueError as e:
        raise UserError(str(e), target, "ref", args.ref)
    try:
        key = keys.load_public_key(_here(args.key))
    except keys.KeyFileError as e:
        raise UserError(e.problem, target, "--key", e.path)
    expected = None
    if args.digest_file:
        with open(args.digest_file) as f:
            expected = f.read().strip()
    client = Client(ref.registry, insecure=args.insecure, ca_file=_here(args.ca_file))
    try:
        problems, lines = checks.verify(client, ref, key, expected)
    except RegistryError as e:
        raise UserError("cannot check %s: %s" % (ref, e), target, "ref", args.ref)
    finally:
        client.close()
    for line in lines:
        sys.stderr.write("OK " + line + "\n")
    for p in problems:
        sys.stderr.write("FAIL " + p + "\n")
    sys.stderr.write("%s: %s\n" % (ref, "verified" if not problems else "%d problem(s)" % len(problems)))
    return 1 if problems else 0


def main(argv):
    # `verify REF --key=...`: the first bare argument is the reference.
    out = [argv[0]]
    for a in argv[1:]:
        out.append(a if a.startswith("--") or a.startswith("@") else "--ref=" + a)
    cli.main(FLAGS, run, target=lambda args, manifest: args.target or "verify", argv=out, fast_exit=True)


if __name__ == "__main__":
    main(sys.argv)
