"""Static web assets processed: content-hashed names, CSS references rewritten, a manifest.

    asset_manifest = process(manifest_dict, "out/dir")

The manifest contract and the output (names, variants, manifest.json) are documented in
python_tools/assets.py; the precompressed variants are made by encodings.py.
"""

import base64
import hashlib
import os
import posixpath
import re

from python_tools.shiko.assets.encodings import (COMPRESSIBLE, ENCODINGS, SUFFIXES, TEXT, brotli_bytes,
                                                 gzip_bytes)
from python_tools.shiko.errors import UserError, remove_outputs
from python_tools.shiko.files import canonical_json

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

_CSS_URL = re.compile(r"""url\(\s*(?P<q>['"]?)(?P<ref>[^'")\s]+)(?P=q)\s*\)""")
_CSS_IMPORT = re.compile(r"""@import\s+(?P<q>['"])(?P<ref>[^'"]+)(?P=q)""")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


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
        raise UserError("an asset name must be a relative path", target, "srcs", logical)
    parts = logical.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UserError("an asset name must be a normalized relative path (no '', '.', '..')",
                        target, "srcs", logical)
    if logical == "manifest.json":
        raise UserError("the name manifest.json is taken by the asset manifest", target,
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
        if not isinstance(m, dict):
            raise UserError("the assets manifest must be a JSON object")
        self.target = m.get("target")
        self.hash_length = int(m.get("hash_length", 12))
        if not 8 <= self.hash_length <= 64:
            raise UserError("must be between 8 and 64", self.target, "hash_length",
                            self.hash_length)
        self.compress = list(m.get("compress", ENCODINGS))
        for c in self.compress:
            if c not in ENCODINGS:
                raise UserError("unknown encoding (known: %s)" % ", ".join(ENCODINGS),
                                self.target, "compress", c)
        exts = m.get("compress_extensions")
        self.compressible = tuple(e.lower() for e in exts) if exts is not None else COMPRESSIBLE
        self.min_saving = float(m.get("min_saving", 0.05))
        self.sources = {}
        for entry in m.get("files", []):
            logical = entry["logical"]
            _check_logical(self.target, logical)
            if logical in self.sources:
                raise UserError("two source files have this asset name (%s and %s)" % (
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
            raise UserError("cannot read %s: %s" % (src, e.strerror), self.target, "srcs",
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
            raise UserError("CSS files reference each other in a cycle: %s" %
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
                raise UserError("two assets get the same hashed name %s" % hashed,
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
        _write(out_dir, "manifest.json", canonical_json({"version": 1, "assets": manifest}))
        return manifest


def _write(out_dir, rel, data):
    path = os.path.join(out_dir, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)


def process(manifest, out_dir):
    """Processes the assets a manifest dict lists into out_dir; returns the asset manifest.

    A failure (a UserError or anything else) leaves out_dir empty: whatever it held is removed,
    the directory itself stays (it is the action's declared output)."""
    os.makedirs(out_dir, exist_ok=True)
    try:
        return _Processor(manifest).run(out_dir)
    except BaseException:
        clear_directory(out_dir)
        raise


def clear_directory(out_dir):
    """Removes everything inside out_dir (not out_dir itself)."""
    if out_dir and os.path.isdir(out_dir):
        remove_outputs([os.path.join(out_dir, name) for name in os.listdir(out_dir)])
