"""Writes an image's SBOM, in SPDX 2.3 and CycloneDX 1.5, from what the build graph knows.

Usage:
  sbom.py --manifest=M.json --spdx=OUT.spdx.json --cyclonedx=OUT.cdx.json
      [--provenance=OUT.provenance.json]

--provenance writes the SLSA v1 provenance predicate of the image (shiko/sbom/provenance.py):
image_push completes it into an in-toto statement naming the pushed image and attaches it,
signed, as an OCI referrer.

On bad input it prints one line `ERROR: ...` on stderr, removes both outputs and exits 1. Runs as
a Bazel persistent worker. The work is done by python_tools/shiko/sbom/ (model.py: what each
layer holds; spdx.py, cyclonedx.py: the formats; purl.py; licenses.py: Debian -> SPDX names).

Manifest (JSON, written by Starlark: rules/private/image/sbom.bzl)
==================================================================
  {
    "target": "//pkg:image",
    "name": "image",
    "manifest": "bazel-out/.../image.manifest.json",
    "config": "bazel-out/.../image.config.json",
    "digest": "bazel-out/.../image.digest",
    "build_info": "external/rules_shiko_build_info/info.json",   # {bazel_version, ...}
    "base": null | {"label": "@base//:base", "layout": "external/base"},   # a pulled base
    "layers": [                     # every layer rules_shiko built, bottom first (after the
      {                             # pulled base's layers, if any)
        "label": "//pkg:layer",
        "descriptor": "....layer.json",
        "listing": "....listing.json",
        "packages": ["....packages.json"],                  # deb inventories
        "wheels": [{"path": ".../rules_shiko_wheel.json", "origin": "@hub//protobuf"}]
      }
    ]
  }
The layers' digests (from the descriptors), after the base's, must be the image manifest's.

An image_index's manifest is {"target": "//pkg:index", "digest": "....index digest file",
"images": [one manifest as above per child]}: one document describes the index, which
contains each child image with its own layers and components (no provenance for an index:
each child has its own).

What is listed
==============
Every Debian package (name, version, architecture, purl pkg:deb/debian/NAME@VERSION?arch=&distro=,
the .deb's sha256, its DEP-5 licences), every wheel (purl pkg:pypi/NAME@VERSION, the sha256 the
lock pinned), a pulled base (purl pkg:oci/NAME@DIGEST), and every Bazel label that put other files
in a layer (with file count and bytes); for each, the layers holding its files. The creation time
is the image config's `created` (the epoch unless stamped), so the files are deterministic.
"""

from python_tools.shiko import cli
from python_tools.shiko.files import read_json, write_file_atomic
from python_tools.shiko.sbom import cyclonedx, model, provenance, spdx

FLAGS = [
    cli.string("manifest", required=True, help="JSON manifest written by Starlark (see above)."),
    cli.string("spdx", required=True, help="Where to write the SPDX 2.3 JSON."),
    cli.string("cyclonedx", required=True, help="Where to write the CycloneDX 1.5 JSON."),
    cli.string("provenance", help="Optional: where to write the SLSA v1 provenance predicate."),
]


def run(args, manifest):
    if "images" in manifest:  # an image_index: one document over its children
        index = model.load_index(manifest)
        write_file_atomic(args.spdx, model.dumps(spdx.index_document(index)))
        write_file_atomic(args.cyclonedx, model.dumps(cyclonedx.index_document(index)))
        return
    image = model.load(manifest)
    write_file_atomic(args.spdx, model.dumps(spdx.document(image)))
    write_file_atomic(args.cyclonedx, model.dumps(cyclonedx.document(image)))
    if args.provenance:
        info = read_json(manifest["build_info"]) if manifest.get("build_info") else {}
        write_file_atomic(args.provenance, model.dumps(provenance.predicate(image, info)))


if __name__ == "__main__":
    cli.main(FLAGS, run, outputs=["spdx", "cyclonedx", "provenance"], manifest="manifest", worker=True)
