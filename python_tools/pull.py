"""The network half of the `image_pull` repository rule (rules/private/repo/pull.bzl).

Python standard library only: the repository rule runs it with the host's python3 and
`PYTHONPATH` set to rules_shiko's root. Starlark owns the repository cache (it looks every blob
up there first and puts every blob this tool fetched there); this tool owns the registry (auth,
TLS, retries, Accept headers) and the choice of the platform's manifest
(python_tools/shiko/registry/pull.py).

Subcommands (registry options: --insecure, --ca_file, --retries):
  digest   --image=REG/REPO[:TAG]
           prints the digest the tag points at now (for the "pin this digest" error).
  fetch    --image=REG/REPO --dir=DIR [--manifest=sha256:...]... [--blob=sha256:...:SIZE]...
           downloads manifests (by digest, with OCI and Docker Accept headers) and blobs (in
           parallel, streamed) into DIR/<hex>, each verified against its digest (and size)
           before it is kept. Prints nothing; on failure one line on stderr, exit 1.
           The repository rule fetches manifests and the config; each layer is fetched by a
           ShikoPullBlob build action (rules/private/image/pulled.bzl), only when needed.
  plan     --layout=DIR --digest=sha256:... --platform=os/arch[/variant]
           reads the manifests already in DIR/blobs/sha256 (no network) and prints JSON:
           {"need": [digests of manifests still missing]} or
           {"manifest": descriptor, "blobs": [config and layer descriptors]}.
  finish   --layout=DIR --image=REG/REPO --digest=sha256:... --manifest=sha256:... --platform=P
           checks the config's platform, writes DIR/oci-layout, DIR/index.json (the one
           manifest, with its platform) and DIR/digest ("sha256:<hex>" of that manifest);
           prints the platform as JSON ({"architecture", "os"[, "variant"]}, from the config).
  assemble --layout=DIR --blob_file=PATH... --output=OUT   (a build action, ShikoPulledLayout)
           OUT: the whole OCI layout: DIR's small files and the layer blobs, hard-linked.
Errors: one line `ERROR: <what>` on stderr, exit 1 (a bad command line: exit 2). Credentials
are never printed.
"""

import json
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from python_tools.shiko import cli  # noqa: E402
from python_tools.shiko.errors import UserError  # noqa: E402
from python_tools.shiko.registry import pull  # noqa: E402
from python_tools.shiko.registry.errors import RegistryError  # noqa: E402

REGISTRY_FLAGS = [
    cli.string("image", required=True, help="REGISTRY/REPO[:TAG] of the image."),
    cli.boolean("insecure", help="Allow plain HTTP (and HTTPS to HTTP redirects) and unverified TLS for a "
                "non-loopback registry."),
    cli.string("ca_file", "", help="PEM file of CA certificates to trust (in addition to the system's)."),
    cli.integer("retries", 6, help="Attempts per operation (connection resets, 5xx, 429)."),
]
LAYOUT_FLAGS = [
    cli.string("layout", required=True, help="The layout directory being assembled."),
    cli.string("digest", required=True, help="The pinned digest (a manifest or an index)."),
    cli.string("platform", required=True, help="os/architecture[/variant] to pick from an index."),
]


def _registry_options(args):
    return {"insecure": args.insecure, "ca_file": args.ca_file, "retries": args.retries}


def _one_line(fn):
    """Registry failures are one `ERROR: <message>` line, as bad input is."""

    def run(args):
        try:
            return fn(args)
        except RegistryError as e:
            raise UserError(str(e))

    return run


@_one_line
def run_digest(args):
    sys.stdout.write(pull.current_digest(args.image, **_registry_options(args)) + "\n")


@_one_line
def run_fetch(args):
    pull.fetch(args.image, args.dir, args.manifest, args.blob, args.jobs, **_registry_options(args))


def run_plan(args):
    sys.stdout.write(json.dumps(pull.plan(args.layout, args.digest, args.platform), sort_keys=True) + "\n")


def run_finish(args):
    platform = pull.finish(args.layout, args.image, args.digest, args.manifest, args.platform)
    sys.stdout.write(json.dumps(platform, sort_keys=True) + "\n")


def run_assemble(args):
    pull.assemble(args.layout, args.blob_file, args.output)


COMMANDS = {
    "digest": cli.Command(REGISTRY_FLAGS, run_digest),
    "fetch": cli.Command(REGISTRY_FLAGS + [
        cli.string("dir", required=True, help="Where to put the verified files (named by hex digest)."),
        cli.multi_string("manifest", help="A manifest digest to fetch (repeatable)."),
        cli.multi_string("blob", help="sha256:<hex>:<size> of a blob to fetch (repeatable)."),
        cli.integer("jobs", 4, help="Blobs fetched in parallel."),
    ], run_fetch),
    "plan": cli.Command(LAYOUT_FLAGS, run_plan),
    "finish": cli.Command(LAYOUT_FLAGS + [
        cli.string("image", required=True, help="REGISTRY/REPO the image came from."),
        cli.string("manifest", "", help="The manifest digest the plan chose (checked)."),
    ], run_finish),
    "assemble": cli.Command([
        cli.string("layout", required=True, help="The pulled repository's small layout (no layers)."),
        cli.multi_string("blob_file", help="A downloaded layer blob, named by its hex digest (repeatable)."),
        cli.string("output", required=True, help="The layout directory to write."),
    ], run_assemble, outputs=["output"]),
}

if __name__ == "__main__":
    cli.main(COMMANDS)
