"""Writes an OCI image index (a multi-platform image) or its OCI layout (rules_shiko `image_index`).

Usage (two actions):
  python -m python_tools.index --manifest=M.json --output_index=FILE --output_digest=FILE
      # ShikoIndex: metadata only (the children's manifests and configs, a few kB)
  python -m python_tools.index --manifest=L.json --output_layout=DIR
      # ShikoIndexLayout: on request (output group `layout`)

M.json (written by Starlark: rules/private/image/index.bzl):
  {"target": "//pkg:index",
   "images": [{"label": "//pkg:image (linux/arm64)", "manifest": P, "config": P}, ...],
   "annotations": {"k": "v"}}
  The index lists each child's manifest (OCI image manifest media type, digest, size) with the
  platform its config names (os, architecture, variant), in the order given. Two children for
  one platform (a missing variant is the default one) are an error. Annotations, when given,
  are the index's.

L.json: {"target", "index": P (the first action's output), "images": [{"label", "manifest",
  "config", "layout": DIR}], "ref_name": null | "TAG"}. The layout holds the index blob, every
  child's manifest, config and layers (layers hard-linked from the child's layout, each
  verified), and index.json with one descriptor: the index, named by
  org.opencontainers.image.ref.name = TAG (default `latest`), as skopeo and umoci expect.

Outputs: --output_index the index blob (files.canonical_json), --output_digest
"sha256:<hex>\\n" of it. Any error: one line `ERROR: <target>: attribute '<attr>': <value>:
<problem>`, exit 1, no outputs left behind.
"""

from python_tools.shiko import cli
from python_tools.shiko.oci import index

FLAGS = [
    cli.string("manifest", required=True, help="JSON manifest written by Starlark (see module doc)."),
    cli.string("output_index", help="Metadata mode: where to write the index blob."),
    cli.string("output_digest", help="Metadata mode: where to write the index digest."),
    cli.string("output_layout", help="Layout mode: the directory to write the OCI layout into."),
]


def run(args, manifest):
    if args.output_layout:
        if args.output_index or args.output_digest:
            raise cli.UsageError("--output_layout goes alone (the layout of an index already built)")
        index.build_layout(manifest, args.output_layout)
    elif args.output_index and args.output_digest:
        index.build(manifest, args.output_index, args.output_digest)
    else:
        raise cli.UsageError("give --output_index and --output_digest, or --output_layout")


if __name__ == "__main__":
    cli.main(FLAGS, run, outputs=["output_index", "output_digest", "output_layout"],
             manifest="manifest", worker=True)
