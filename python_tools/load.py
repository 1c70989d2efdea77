"""Loads an image into docker or podman, streaming it: the program behind `image_load`.

Two modes, both driven by rules/private/image/load.bzl.

Build time (action ShikoLoadTags): expand and check the tags, so bad ones fail the build.
  python -m python_tools.load --manifest=M.json --output_run_manifest=R.json
  M.json: {"target": "//pkg:load", "repo_tags": ["app:{STABLE_VERSION}"],
           "stamp": null | {"info_file": ..., "version_file": ...}}
  R.json: {"target": "//pkg:load", "repo_tags": ["app:1.2"]}    (placeholders expanded)
  Tags follow shiko/oci/docker_archive.parse_reference; `{KEY}` placeholders follow
  shiko/stamp.expand_stamp.

Run time (`bazel run //pkg:load [-- FLAGS]`, through the launcher the rule writes):
  load --run_manifest=R.json (--layout=DIR | --image_manifest=M --image_config=C --blob_map=B
       [--remote_cache=URL]) [--engine=auto|docker|podman]
       [--repo_tag=REF]... [--add_repo_tag=REF]... [--platform=linux/arm64]
  --repo_tag replaces the rule's repo_tags (repeat it for several); --add_repo_tag adds to them.
  An image_index is loaded from its layout: the image for --platform (default: this machine's).

What it does:
  1. Reads the OCI layout (one image manifest) and checks every blob's presence and size; or,
     from image_load, the image's manifest and config and where each layer is: this machine's
     layer outputs, a pulled base's layout, else the remote cache (shiko/registry/image_blobs.py),
     so a CI machine with Build without the Bytes downloads a layer only if the engine lacks it.
  2. Picks the engine (shiko/engines/discovery.py): --engine, or (auto) docker when DOCKER_HOST
     is set or a Docker socket exists (/var/run/docker.sock, $XDG_RUNTIME_DIR/docker.sock), else
     podman when it is on PATH. Docker is spoken to directly (shiko/engines/docker_api.py: the
     Docker Engine API over the unix socket, or plain tcp://); podman through its CLI
     (shiko/engines/podman.py), which honours CONTAINERS_CONF, CONTAINERS_STORAGE_CONF and the
     rest of its environment.
  3. If the engine already has an image with this config digest (docker: GET
     /images/sha256:<config>/json, podman: `podman image exists`), it only tags it: no byte of
     the image is sent. Otherwise it streams the archive of docker_archive.py (the same bytes
     the tarball output group holds), generated on the fly with the layer blobs read from the
     layout: as a chunked `POST /images/load` body, or into `podman load`'s stdin. Nothing is
     written to disk by this tool.
  4. Prints, on stdout:
       Loaded image: <ref>                (one line per tag)
       Image ID: sha256:<hex>
       Transfer: <N> bytes streamed to <engine> (<blobs> blobs) in <T>s
     or, when the image was there already:
       Transfer: none, image already present in <engine>: re-tagged, 0 bytes sent
A missing engine, an unreachable daemon or an engine error is one line
`ERROR: <target>: <problem and how to fix it>` on stderr and exit code 1.
"""

from python_tools.shiko import cli
from python_tools.shiko.engines import image_load
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import canonical_json, read_json, write_file_atomic
from python_tools.shiko.oci import platform as oci_platform
from python_tools.shiko.registry import image_blobs

FLAGS = [
    cli.string("manifest", help="Build time: JSON manifest written by Starlark (see module doc)."),
    cli.string("output_run_manifest", help="Build time: the run manifest to write."),
    cli.string("run_manifest", help="Run time: the run manifest written at build time."),
    cli.string("layout", help="Run time: the OCI image layout directory to load (or the image's parts:"
               " --image_manifest, --image_config, --blob_map)."),
    cli.enum("engine", "auto", image_load.ENGINES, help="Where to load the image: docker, podman, or auto "
             "(docker when DOCKER_HOST is set or a Docker socket exists, else podman)."),
    cli.multi_string("repo_tag", help="Tag the image with this reference instead of the rule's "
                     "repo_tags (repeat for several)."),
    cli.multi_string("add_repo_tag", help="Tag the image with this reference too (repeatable)."),
    cli.string("platform", help="os/architecture[/variant] of the image to load from an image index "
               "(default: this machine's, e.g. linux/amd64)."),
] + image_blobs.FLAGS


def _read(path, what):
    try:
        return read_json(path)
    except (OSError, ValueError) as e:
        raise UserError("cannot read the %s %s: %s" % (what, path, e))


def run(args):
    if args.manifest:
        if not args.output_run_manifest:
            raise cli.UsageError("--manifest needs --output_run_manifest")
        manifest = _read(args.manifest, "tool manifest")
        write_file_atomic(args.output_run_manifest, canonical_json(image_load.resolve_build_tags(manifest)))
        return 0
    if not args.run_manifest or not (args.layout or args.image_manifest):
        raise cli.UsageError("give --run_manifest and --layout (or --manifest and --output_run_manifest)")
    run_manifest = _read(args.run_manifest, "run manifest")
    target = run_manifest.get("target")
    tags = image_load.effective_tags(run_manifest, args.repo_tag, args.add_repo_tag)
    image = args.layout or image_blobs.from_flags(args, target)
    if image is None:
        raise cli.UsageError("--image_manifest needs --image_config and --blob_map")
    try:
        platform = oci_platform.parse(args.platform) if args.platform else oci_platform.host()
    except ValueError as e:
        raise UserError(str(e), target, "platform", args.platform)
    image_load.load(image, tags, args.engine, target, platform=platform)
    return 0


if __name__ == "__main__":
    cli.main(FLAGS, run, outputs=["output_run_manifest"], fast_exit=True)
