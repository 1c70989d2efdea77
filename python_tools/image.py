"""Writes an image's config, manifest and digest, or its OCI image layout (rules_shiko `image`).

Usage (two actions):
  python -m python_tools.image --manifest=M.json --output_digest=FILE --output_config=FILE
      --output_manifest=FILE                     # ShikoImage: metadata only, no layer bytes read
  python -m python_tools.image --manifest=L.json --output_layout=DIR
                                                 # ShikoLayout: on request (output group `layout`)

Input contract of the first (M.json, written by Starlark):
  {
    "target": "//pkg:image",
    "base": null | {"layout": "path/to/oci/layout/dir", "label": "//x:base"}
                 | {"config": "base.config.json", "manifest": "base.manifest.json", "label": "//x:base"},
    "platform": {"os": "linux", "architecture": "amd64", "variant": ""},
    "layers": [{"blob": "path/to/layer.tgz", "descriptor": "path/to/layer.json",
                "label": "//pkg:layer"}],
    "config": {
      "entrypoint": null | ["/hello"], "cmd": null | ["a"], "env": {"PATH": "/app/bin:${PATH}"},
      "user": null | "65532", "workdir": null | "/app", "labels": {"k": "v"},
      "exposed_ports": ["8080/tcp"], "volumes": ["/data"], "stop_signal": null | "SIGTERM",
      "created": null | "2024-01-01T00:00:00Z" | "{BUILD_TIMESTAMP}"
    },
    "annotations": {"org.opencontainers.image.source": "..."},
    "stamp": null | {"info_file": "bazel-out/stable-status.txt",
                     "version_file": "bazel-out/volatile-status.txt"}
  }
  Each layer descriptor file (written by the layer tool) holds
  {"mediaType": ..., "digest": "sha256:..", "size": N, "diff_id": "sha256:..",
   "compression": "gzip", "compressor": "...", "members": N}; only mediaType, digest, size,
  diff_id and compressor are used. Its blob's size is checked (not re-hashed: one action made both).

  (Layer `blob` paths are not read in this mode: descriptors carry digest, size and diff_id.)

Input contract of the second (L.json): {"target", "platform", "config": path, "manifest": path
  (the first action's outputs), "base": null | {"layout": dir, "label"} | {"layers": [{"blob",
  "descriptor"}], "label"}, "layers": [{"blob", "descriptor", "label"}], "ref_name": null |
  "TAG"}. A base given by its layers (an image target whose whole chain was built by rules_shiko:
  every layer's blob and descriptor, bottom first) needs no layout of its own. The manifest must
  list exactly the base's layers and these. index.json names the manifest
  `org.opencontainers.image.ref.name` = TAG (default `latest`), so umoci and
  `skopeo oci:DIR:TAG` open the layout; the digest is unchanged.

Base:
  null means scratch. An `image` target base is given by its config and manifest (metadata;
  its blobs only reach the layout action: its layers' files, or its own layout when a pulled
  or plain-layout base is at the bottom of its chain). Otherwise `layout` must be an OCI image
  layout (`oci-layout` + `index.json`).
  Its index may list one manifest or image indexes (OCI or Docker manifest lists, nested); the
  manifest whose platform matches `platform` is used (a missing variant matches the default one:
  arm64 = v8, arm = v7, amd64 = v1). Docker v2 schema 2 manifests and configs are accepted.
  Every base blob used (indexes walked, manifest, config, layers) is verified against its digest
  and size (python_tools/shiko/oci/layout.py). Base layer descriptors keep their mediaType; the manifest
  written is always OCI. The base config is kept (unknown keys too) and changed as below.

Config semantics: Docker's (env merge with ${NAME} expansion, entrypoint resetting Cmd, labels,
  ports and volumes unioned, ...), documented and implemented in python_tools/shiko/oci/config.py.

Stamping:
  label values, annotation values and `created` may hold `{KEY}` placeholders (shiko/stamp.py).
  With stamp files, `created` equal to "{BUILD_TIMESTAMP}" becomes that time in RFC 3339 UTC.
  Without stamping, a `created` holding any placeholder becomes 1970-01-01T00:00:00Z.

Outputs:
  --output_layout DIR: oci-layout, index.json (one manifest descriptor with platform), blobs/sha256/<hex>. Layer
  blobs (base and ours) are hard-linked when the source file is read-only (as Bazel outputs are)
  and copied otherwise; everything this tool writes is mode 0644 (directories 0755).
  --output_digest: "sha256:<hex>\\n" of the manifest; --output_config / --output_manifest: the
  config and manifest blobs' bytes. All JSON is files.canonical_json, so the output depends only
  on the inputs. Any error: one line `ERROR: <target>: attribute '<attr>': <value>: <problem>`,
  exit 1, no outputs left behind.
"""


from python_tools.shiko import cli
from python_tools.shiko.oci import image

FLAGS = [
    cli.string("manifest", required=True, help="JSON manifest written by Starlark (see module doc)."),
    cli.string("output_layout", help="Layout mode: the directory to write the OCI image layout into."),
    cli.string("output_digest", help="Metadata mode: the file to write the manifest digest into."),
    cli.string("output_config", help="Metadata mode: the file to write the config blob into."),
    cli.string("output_manifest", help="Metadata mode: the file to write the manifest blob into."),
]


def run(args, manifest):
    if args.output_layout:
        if args.output_digest or args.output_config or args.output_manifest:
            raise cli.UsageError("--output_layout goes alone (the layout of an image already built)")
        image.build_layout(manifest, args.output_layout)
    elif args.output_digest:
        image.build(manifest, args.output_digest, args.output_config, args.output_manifest)
    else:
        raise cli.UsageError("give --output_digest (metadata) or --output_layout (layout)")


if __name__ == "__main__":
    # A persistent worker under Bazel (shiko/worker.py), else one run.
    cli.main(FLAGS, run, outputs=["output_layout", "output_digest", "output_config", "output_manifest"],
             manifest="manifest", worker=True)
