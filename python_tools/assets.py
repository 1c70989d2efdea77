"""Processes static web assets: content-hashed names, a manifest, precompressed variants.

Usage:
  assets.py --manifest=M.json --output_dir=DIR

On bad input it prints one line `ERROR: <target>: attribute '<attr>': <value>: <problem>` on
stderr, removes DIR's content, and exits 1.

Manifest (JSON, written by Starlark: rules/private/assets.bzl)
==============================================================

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

import base64
import hashlib
import os
import posixpath
import re
import struct
import zlib

from absl import app
from absl import flags

from python_tools import common
from python_tools import worker

FLAGS = flags.FLAGS

flags.DEFINE_string("manifest", None, "JSON manifest written by Starlark (see the module docstring).")
flags.DEFINE_string("output_dir", None, "Directory to write the processed assets into.")

CONTENT_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".map": "application/json",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",
    ".webmanifest": "application/manifest+json",
}

# Extensions worth precompressing: text formats (and a few binary formats that are not
# compressed already). PNG, JPEG, GIF, WebP, AVIF and WOFF/WOFF2 are.
COMPRESSIBLE = (".css", ".js", ".mjs", ".map", ".json", ".html", ".htm", ".txt", ".xml", ".svg",
                ".ico", ".ttf", ".otf", ".wasm", ".webmanifest")
TEXT = (".css", ".js", ".mjs", ".map", ".json", ".html", ".htm", ".txt", ".xml", ".svg",
        ".webmanifest")

ENCODINGS = ("gzip", "br")
SUFFIXES = {"gzip": ".gz", "br": ".br"}

GZIP_LEVEL = 9
BROTLI_QUALITY = 11
BROTLI_LGWIN = 22

_CSS_URL = re.compile(r"""url\(\s*(?P<q>['"]?)(?P<ref>[^'")\s]+)(?P=q)\s*\)""")
_CSS_IMPORT = re.compile(r"""@import\s+(?P<q>['"])(?P<ref>[^'"]+)(?P=q)""")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def gzip_bytes(data, level=GZIP_LEVEL):
    """A deterministic gzip member: no name, mtime 0, XFL 2 (max compression), OS 255."""
    co = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    body = co.compress(data) + co.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def brotli_bytes(data, text):
    import brotli  # only when asked for: the tool works without it for gzip-only sets

    mode = brotli.MODE_TEXT if text else brotli.MODE_GENERIC
    return brotli.compress(data, mode=mode, quality=BROTLI_QUALITY, lgwin=BROTLI_LGWIN)


def _ext(logical):
    base = posixpath.basename(logical)
    dot = base.rfind(".")
    return base[dot:].lower() if dot > 0 else ""


def hashed_name(logical, digest_hex, length):
    """css/app.css -> css/app.<hash>.css; app.min.js -> app.min.<hash>.js; LICENSE -> LICENSE.<hash>."""
    d, base = posixpath.split(logical)
    dot = base.rfind(".")
    h = digest_hex[:length]
    if dot > 0:
        name = "%s.%s%s" % (base[:dot], h, base[dot:])
    else:
        name = "%s.%s" % (base, h)
    return posixpath.join(d, name) if d else name


def _check_logical(target, logical):
    if not isinstance(logical, str) or not logical or logical.startswith("/"):
        raise common.UserError("an asset name must be a relative path", target, "srcs", logical)
    parts = logical.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise common.UserError("an asset name must be a normalized relative path (no '', '.', '..')",
                               target, "srcs", logical)
    if logical == "manifest.json":
        raise common.UserError("the name manifest.json is taken by the asset manifest", target,
                               "srcs", logical)


def _split_ref(ref):
    """'img/a.png?v=1#x' -> ('img/a.png', '?v=1#x')."""
    cut = len(ref)
    for c in "?#":
        i = ref.find(c)
        if i != -1:
            cut = min(cut, i)
    return ref[:cut], ref[cut:]


class _Processor(object):
    def __init__(self, m):
        self.target = m.get("target")
        self.hash_length = int(m.get("hash_length", 12))
        if not 8 <= self.hash_length <= 64:
            raise common.UserError("must be between 8 and 64", self.target, "hash_length",
                                   self.hash_length)
        self.compress = list(m.get("compress", ENCODINGS))
        for c in self.compress:
            if c not in ENCODINGS:
                raise common.UserError("unknown encoding (known: %s)" % ", ".join(ENCODINGS),
                                       self.target, "compress", c)
        exts = m.get("compress_extensions")
        self.compressible = tuple(e.lower() for e in exts) if exts is not None else COMPRESSIBLE
        self.min_saving = float(m.get("min_saving", 0.05))
        self.sources = {}
        for entry in m.get("files", []):
            logical = entry["logical"]
            _check_logical(self.target, logical)
            if logical in self.sources:
                raise common.UserError("two source files have this asset name (%s and %s)" % (
                    self.sources[logical], entry["src"]), self.target, "srcs", logical)
            self.sources[logical] = entry["src"]
        self.done = {}  # logical -> (hashed path, bytes)
        self._visiting = []

    def _read(self, logical):
        src = self.sources[logical]
        try:
            with open(src, "rb") as f:
                return f.read()
        except OSError as e:
            raise common.UserError("cannot read %s: %s" % (src, e.strerror), self.target, "srcs",
                                   logical)

    def _resolve(self, css_logical, ref):
        """The logical name a CSS reference points at, or None when it is not one of ours."""
        path, _ = _split_ref(ref)
        if not path or path.startswith("/") or path.startswith("#") or _SCHEME.match(path):
            return None
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(css_logical), path))
        return joined if joined in self.sources else None

    def _rewrite_css(self, logical, data):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data  # not UTF-8: leave it alone

        css_dir = posixpath.dirname(logical)

        def repl(m):
            ref = m.group("ref")
            other = self._resolve(logical, ref)
            if other is None or other == logical:
                return m.group(0)
            hashed, _ = self.process(other)
            _, tail = _split_ref(ref)
            new_ref = posixpath.relpath(hashed, css_dir or ".") + tail
            s, e = m.span("ref")
            return m.group(0)[: s - m.start()] + new_ref + m.group(0)[e - m.start():]

        text = _CSS_URL.sub(repl, text)
        text = _CSS_IMPORT.sub(repl, text)
        return text.encode("utf-8")

    def process(self, logical):
        """Returns (hashed path, bytes) of one asset, processing its CSS references first."""
        if logical in self.done:
            return self.done[logical]
        if logical in self._visiting:
            cycle = self._visiting[self._visiting.index(logical):] + [logical]
            raise common.UserError("CSS files reference each other in a cycle: %s" %
                                   " -> ".join(cycle), self.target, "srcs", logical)
        self._visiting.append(logical)
        data = self._read(logical)
        if _ext(logical) == ".css":
            data = self._rewrite_css(logical, data)
        digest = hashlib.sha256(data).hexdigest()
        result = (hashed_name(logical, digest, self.hash_length), data)
        self._visiting.pop()
        self.done[logical] = result
        return result

    def run(self, out_dir):
        manifest = {}
        written = set()
        for logical in sorted(self.sources):
            hashed, data = self.process(logical)
            if hashed in written:
                raise common.UserError("two assets get the same hashed name %s" % hashed,
                                       self.target, "srcs", logical)
            written.add(hashed)
            ext = _ext(logical)
            digest = hashlib.sha256(data)
            entry = {
                "path": hashed,
                "size": len(data),
                "sha256": digest.hexdigest(),
                "integrity": "sha256-" + base64.b64encode(digest.digest()).decode("ascii"),
                "content_type": CONTENT_TYPES.get(ext, "application/octet-stream"),
                "encodings": {},
            }
            _write(out_dir, hashed, data)
            if ext in self.compressible and data:
                for enc in self.compress:
                    if enc == "gzip":
                        comp = gzip_bytes(data)
                    else:
                        comp = brotli_bytes(data, ext in TEXT)
                    if len(comp) <= len(data) * (1.0 - self.min_saving):
                        path = hashed + SUFFIXES[enc]
                        _write(out_dir, path, comp)
                        entry["encodings"][enc] = {"path": path, "size": len(comp)}
            manifest[logical] = entry
        _write(out_dir, "manifest.json", common.canonical_json({"version": 1, "assets": manifest}))
        return manifest


def _write(out_dir, rel, data):
    path = os.path.join(out_dir, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)


def process(manifest, out_dir):
    """Processes the assets a manifest dict lists into out_dir; returns the asset manifest."""
    os.makedirs(out_dir, exist_ok=True)
    return _Processor(manifest).run(out_dir)


def _clear(out_dir):
    if out_dir and os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            common.remove_outputs([os.path.join(out_dir, name)])


def main(argv):
    del argv
    if not FLAGS.manifest or not FLAGS.output_dir:
        raise app.UsageError("--manifest and --output_dir are required")

    def run():
        process(common.read_json(FLAGS.manifest), FLAGS.output_dir)

    try:
        common.run_tool(run, [])
    except BaseException:
        _clear(FLAGS.output_dir)  # a failed run leaves nothing behind
        raise


if __name__ == "__main__":
    worker.run(main)  # a persistent worker under Bazel (python_tools/worker.py), else app.run
