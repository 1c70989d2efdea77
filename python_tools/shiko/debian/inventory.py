"""What a deb_tar holds, package by package: the `--packages` side file of python_tools/deb.py.

    inventory(manifest, entries, controls) -> dict

Format (canonical JSON):

  {
    "architecture": "amd64",
    "suites": ["bookworm", "bookworm-updates", ...],        # the lock's suites
    "lock": "//pkg:packages.lock.json", "lock_sha256": "<hex>",   # the lock (deb_repository)
    "packages": [                                         # sorted by name
      {"name": "libc6", "version": "2.36-9+deb12u14", "architecture": "amd64",
       "source": "glibc", "sha256": "<hex of the .deb>", "filename": "pool/main/g/glibc/...deb",
       "licenses": ["GPL-2+", "LGPL-2.1+", ...]}          # [] unless the copyright file is
    ],                                                    # machine-readable (DEP-5)
    "files": {"/usr/lib/x86_64-linux-gnu/libc.so.6": "libc6", ...}
  }

`files` maps every non-directory member that a package put there (its data.tar, its status
record, or maintainer work done for it: the CA bundle for ca-certificates, /etc/localtime for
tzdata) to the package's name, in the listing's path form (leading "/"). The distroless basics
(passwd, group, ...) belong to no package. Reports (origins per file) and SBOMs read this file.
"""

import posixpath

from python_tools.shiko.debian import deb822
from python_tools.shiko.debian.errors import DebError
from python_tools.shiko.files import read_json

DEP5_FORMAT = "https://www.debian.org/doc/packaging-manuals/copyright-format/1.0"


def dep5_licenses(text):
    """The short licence names of a machine-readable copyright file, sorted; [] otherwise."""
    first = text.split("\n", 1)[0]
    if not first.startswith("Format:") or DEP5_FORMAT not in first.replace("http://", "https://"):
        return []
    try:
        stanzas = deb822.parse_stanzas(text, fields={"License"})
    except DebError:
        return []
    names = set()
    for s in stanzas:
        short = s.get("License", "").split("\n", 1)[0].strip()
        if short:
            names.add(short)
    return sorted(names)


def _copyright(entries, name, seen=None):
    """The bytes of a package's copyright file, following a /usr/share/doc/<name> symlink
    (packages built from one source often point their doc directory at another's)."""
    seen = seen or set()
    if name in seen:
        return None
    seen.add(name)
    doc = "usr/share/doc/" + name
    e = entries.get(doc)
    if e is not None and e.kind == "symlink":
        other = posixpath.basename(posixpath.normpath(e.target))
        return _copyright(entries, other, seen)
    f = entries.get(doc + "/copyright")
    if f is None:
        return None
    if f.kind == "hardlink":
        f = entries.get(f.target)
    return f.data if f is not None and f.kind == "file" else None


def inventory(manifest, entries, controls):
    """The side file's dict for a deb manifest, its tar entries and the packages' controls."""
    index = read_json(manifest["index"]) if manifest.get("index") else {}
    locked = {p["name"]: p for p in index.get("packages", [])}
    packages = []
    for name in sorted(controls):
        fields = controls[name]
        lock = locked[name]
        data = _copyright(entries, name)
        licenses = dep5_licenses(data.decode("utf-8", "replace")) if data else []
        source = fields.get("Source", "").split(" ", 1)[0] or name
        packages.append({
            "name": name,
            "version": fields["Version"],
            "architecture": fields["Architecture"],
            "source": source,
            "sha256": lock["sha256"],
            "filename": lock["path"],
            "licenses": licenses,
        })
    files = {"/" + path: e.pkg for path, e in entries.items()
             if e.kind != "dir" and e.pkg and e.pkg in controls}
    return {
        "architecture": manifest.get("architecture", ""),
        "suites": list(index.get("suites") or []),
        "lock": index.get("lock", ""),
        "lock_sha256": index.get("lock_sha256", ""),
        "packages": packages,
        "files": files,
    }
