"""Writes an image's report: `<name>.report.json` and `<name>.report.html` (the `report` output
group of every image).

Usage:
  report.py --manifest=M.json

Every byte of every layer traced to the Bazel label (or Debian package, wheel, pulled base)
that put it there; dive's wasted bytes and efficiency; duplicates, the largest files and
findings with what to do. The report format is documented in python_tools/shiko/explain/model.py,
the page in shiko/explain/page.py. Runs as a Bazel persistent worker with --persistent_worker.

Manifest (JSON, written by rules/private/image/report.bzl)
==========================================================

  {"target": "//pkg:image",
   "manifest": P, "config": P, "digest": P,      (the image's manifest, config and .digest)
   "base_layout": {"path": P, "source": "@base//:base"} | null,
   "layers": [{"digest": "sha256:.." | null, "label": "//x:layer" | null,
               "descriptor": P | null, "listing": P | null, "packages": [P, ...],
               "wheels": [{"identity": P, "origin": "@repo//package"}, ...],
               "blob": P | null, "source": str | null}, ...],
   "json": OUT, "html": OUT}

- layers: the layers the image and its image bases built (their LayerInfo), bottom first; they
  are the image manifest's last len(layers) layers. "digest" (optional) and the descriptor's
  digest are checked against the manifest's. "listing" is the layer tool's listing; null: the
  blob is listed (a tar, gzip or zstd) with origin `source`. "packages": deb.py's
  `<name>.packages.json` side files: their files get origin `deb:<name>=<version>`.
  "wheels" (optional): the identity files ({name, version, filename, sha256, lock}) of the
  pinned wheels whose files the layer holds under origin "@repo//package"; the report names
  each such origin's wheel and version.
- base_layout: the OCI layout of a pulled base (image_pull): the manifest's first layers (those
  not in `layers`) are read from its blobs/sha256/, with origin `source`.
- json, html: where to write the report and the page. Both are deterministic bytes.

On bad input: one line `ERROR: <target>: attribute '<attr>': <value>: <problem>`, exit 1, and
neither output is written.
"""

from python_tools.shiko import cli
from python_tools.shiko.errors import remove_outputs
from python_tools.shiko.explain.inputs import load_layers
from python_tools.shiko.explain.model import build_report
from python_tools.shiko.explain.page import render_page
from python_tools.shiko.files import canonical_json, write_file_atomic

FLAGS = [
    cli.string("manifest", required=True,
               help="JSON manifest written by Starlark (see the module docstring)."),
]


def _digest(path):
    with open(path, "r", encoding="utf-8") as f:
        return f.read().strip()


def run(args, manifest):
    outputs = [manifest.get("json"), manifest.get("html")]
    try:
        image_manifest, layers = load_layers(manifest)
        report = build_report(args.target, _digest(manifest["digest"]), image_manifest, layers)
        write_file_atomic(manifest["json"], canonical_json(report))
        write_file_atomic(manifest["html"], render_page(report))
    except BaseException:
        remove_outputs(outputs)
        raise


if __name__ == "__main__":
    cli.main(FLAGS, run, manifest="manifest", worker=True)
