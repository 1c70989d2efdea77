"""Processes static web assets: content-hashed names, a manifest, precompressed variants.

Usage:
  assets.py --manifest=M.json --output_dir=DIR

On bad input it prints one line `ERROR: <target>: attribute '<attr>': <value>: <problem>` on
stderr, removes DIR's content, and exits 1. Runs as a Bazel persistent worker with
--persistent_worker (python_tools/shiko/cli.py). The work is done by python_tools/shiko/assets/
(hashed.py: names, CSS, manifest; encodings.py: the gzip and brotli variants).

Manifest (JSON, written by Starlark: rules/private/web/assets.bzl)
==================================================================

  {
    "target": "//pkg:assets",
    "files": [{"logical": "css/app.css", "src": "pkg/static/css/app.css"}, ...],
    "hash_length": 12,                 # hex digits of sha256 in hashed names (8..64)
    "compress": ["gzip", "br"],        # variants to write, any of "gzip", "br"
    "compress_extensions": null | [".css", ...],   # null: COMPRESSIBLE below
    "min_saving": 0.05                 # keep a variant only if it is >= 5% smaller
  }

Output (DIR)
============

- Each asset at `<logical dir>/<stem>.<hash>.<ext>` where hash is the first `hash_length` hex
  digits of the sha256 of the bytes written (after CSS rewriting, below). `app.min.js` becomes
  `app.min.<hash>.js`; a name without extension gets `name.<hash>`.
- Precompressed variants next to it, `<hashed name>.gz` and `<hashed name>.br`, for files whose
  extension is compressible (text formats: CSS, JS, JSON, SVG, HTML, ...; never PNG, JPEG, WOFF2,
  ... which are compressed already) and only when the variant saves at least `min_saving`.
  gzip: raw deflate of zlib level 9 in a gzip member whose header holds no file name, mtime 0,
  XFL 2 and OS 255 (unknown), so the bytes depend only on the input and zlib's version. br:
  the `brotli` package (pinned in requirements_lock.txt), quality 11, window 22, text mode for
  text formats.
- CSS: `url(...)` and `@import "..."` references to other assets of the same set (relative
  paths, resolved against the CSS file's logical directory; query and fragment kept) are
  rewritten to the referenced asset's hashed name before the CSS is hashed, so a changed image
  changes the CSS's name too. Other references (absolute, `data:`, `http:`, unknown files) are
  left as they are. CSS files may reference each other; a cycle is an error.
- `manifest.json`, canonical JSON (sorted keys, no spaces):
    {"version": 1,
     "assets": {"css/app.css": {"path": "css/app.<hash>.css", "size": N,
                                "sha256": "<hex>", "integrity": "sha256-<base64>",
                                "content_type": "text/css; charset=utf-8",
                                "encodings": {"br": {"path": "css/app.<hash>.css.br", "size": N},
                                              "gzip": {"path": "...css.gz", "size": N}}}}}
  `integrity` is a Subresource Integrity value; `content_type` comes from a fixed table below
  (never from the machine's mime.types), `application/octet-stream` when unknown.

Every output file is written with mode 0644; nothing depends on the input's mtimes, modes or
paths, so the output is reproducible.
"""

from python_tools.shiko import cli
from python_tools.shiko.assets.hashed import process

FLAGS = [
    cli.string("manifest", required=True,
               help="JSON manifest written by Starlark (see the module docstring)."),
    cli.string("output_dir", required=True, help="Directory to write the processed assets into."),
]


def run(args, manifest):
    process(manifest, args.output_dir)  # a failure leaves --output_dir empty


if __name__ == "__main__":
    cli.main(FLAGS, run, manifest="manifest", worker=True)
