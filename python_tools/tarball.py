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
  repo_tags may hold `{KEY}` placeholders (common.expand_stamp). Each tag must be a Docker
  reference `name[:tag]` (lowercase name components, optional registry host[:port] first,
  tag [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}); a missing tag means ":latest". Digests are refused.

Output: the archive python_tools/docker_archive.py describes (the same bytes for the same
inputs): the OCI layout plus a Docker `manifest.json`, named by repo_tags. The load tool streams
the very same archive into docker or podman without writing it to disk.
"""

import os

from absl import app
from absl import flags

from python_tools import common
from python_tools.shiko.oci import docker_archive
from python_tools import worker

FLAGS = flags.FLAGS


def _define_flags():
    flags.DEFINE_string("manifest", None, "JSON manifest written by Starlark (see module doc).")
    flags.DEFINE_string("output", None, "The tar file to write.")
    flags.mark_flags_as_required(["manifest", "output"])


def parse_reference(ref, target):
    """Validates `name[:tag]`; returns (familiar "name:tag", fully qualified ref, tag)."""
    return tuple(docker_archive.parse_reference(ref, target))


def build(manifest, output):
    target = manifest.get("target")
    stamp_values = common.read_stamp(manifest.get("stamp"), target)
    tags = docker_archive.resolve_tags(manifest.get("repo_tags") or [], stamp_values, target)
    archive = docker_archive.Archive(manifest.get("layout") or "", tags, target)
    with open(output, "wb") as out:
        archive.write(out)
    os.chmod(output, 0o644)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))

    def run():
        try:
            manifest = common.read_json(FLAGS.manifest)
        except (OSError, ValueError) as e:
            raise common.UserError("cannot read the tool manifest %s: %s" % (FLAGS.manifest, e))
        build(manifest, FLAGS.output)

    common.run_tool(run, [FLAGS.output])


if __name__ == "__main__":
    _define_flags()
    worker.run(main)  # a persistent worker under Bazel (python_tools/worker.py), else app.run
