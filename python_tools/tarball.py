"""Turns an OCI image layout into one tar that `docker load` and `podman load` both accept.

Usage:
  python -m python_tools.tarball --manifest=M.json --output=IMAGE.tar

Input contract (M.json, written by Starlark):
  {
    "target": "//pkg:image_tarball",
    "layout": "path/to/oci/layout",          # one image manifest (as the image tool writes)
    "repo_tags": ["rules_shiko/static_c:latest"],
    "stamp": null | {"info_file": "bazel-out/stable-status.txt",
                     "version_file": "bazel-out/volatile-status.txt"}
  }
  repo_tags may hold `{KEY}` placeholders (shiko/stamp.py). Each tag must be a Docker
  reference `name[:tag]` (lowercase name components, optional registry host[:port] first,
  tag [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}); a missing tag means ":latest". Digests are refused.

Output: the archive python_tools/shiko/oci/docker_archive.py describes (the same bytes for the same
inputs): the OCI layout plus a Docker `manifest.json`, named by repo_tags. The load tool streams
the very same archive into docker or podman without writing it to disk.
"""


import os

from python_tools.shiko import cli
from python_tools.shiko.oci import docker_archive
from python_tools.shiko.stamp import read_stamp

FLAGS = [
    cli.string("manifest", required=True, help="JSON manifest written by Starlark (see module doc)."),
    cli.string("output", required=True, help="The tar file to write."),
]


def run(args, manifest):
    target = manifest.get("target")
    stamp_values = read_stamp(manifest.get("stamp"), target)
    tags = docker_archive.resolve_tags(manifest.get("repo_tags") or [], stamp_values, target)
    archive = docker_archive.Archive(manifest.get("layout") or "", tags, target)
    with open(args.output, "wb") as out:
        archive.write(out)
    os.chmod(args.output, 0o644)


if __name__ == "__main__":
    # A persistent worker under Bazel (shiko/worker.py), else one run.
    cli.main(FLAGS, run, outputs=["output"], manifest="manifest", worker=True)
