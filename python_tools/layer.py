"""Writes one OCI image layer: a deterministic tar, compressed, with its descriptor.

Usage:
  layer.py --manifest=M.json --output=BLOB --descriptor=DESC.json [--listing=LIST.json]
           [--packages=INVENTORY.json]

On bad input it prints one line
`ERROR: <target>: attribute '<attr>': <value repr>: <problem>` on stderr, removes
--output, --descriptor, --listing and --packages, and exits 1. Runs as a Bazel persistent worker with
--persistent_worker (python_tools/shiko/cli.py).

The work is done by python_tools/shiko/layer/ (manifest.py: the checks below; walk.py: files and
trees; imports.py: tar entries; collect.py: conflicts, parents, overrides, hardlinks;
writer.py: the tar bytes; build.py: all of it in one pass) and python_tools/shiko/tar/
(compression.py: the compressions; names.py: path normalisation).

Manifest (JSON, written by Starlark)
====================================

  {
    "target": "//pkg:name",
    "compression": "gzip" | "zstd" | "none",
    "compression_level": null | int,
    "mtime": 0,
    "defaults": {"file_mode": null | "0644", "dir_mode": "0755", "uid": 0, "gid": 0},
    "overrides": {"etc/app.conf": {"mode": "0600", "uid": 1000, "gid": 1000}},
    "entries": [
      {"kind": "file",    "dest": "app/bin/hello", "src": "bazel-out/.../hello", "origin": O},
      {"kind": "tree",    "dest": "srv/static",    "src": "bazel-out/.../static_dir", "origin": O},
      {"kind": "symlink", "dest": "usr/bin/py",    "target": "python3.11", "origin": O},
      {"kind": "dir",     "dest": "var/log/app", "origin": O},
      {"kind": "tar",     "dest": "",              "src": "path/to/import.tar", "origin": O},
      {"kind": "debs",    "dest": "",              "manifest": "path/to/x.deb_manifest.json", "origin": O}
    ]
  }
  where O = {"attr": "files", "label": "//x:hello"} names the rule attribute and label an entry
  came from; every error about an entry names them.

- compression_level: null means the default (gzip 1, zstd 3). gzip takes ISA-L levels 0..3,
  zstd 1..19; "none" ignores it.
- mtime: integer seconds >= 0, written on every member.
- defaults: file_mode (null: each file's mode is 0755 or 0644, see "File modes" below),
  dir_mode (null: 0755), uid, gid. User and group names are never written.
- overrides: layer path (relative, no leading slash) -> any of "mode" (octal string), "uid",
  "gid". They win over everything, including attributes kept from imported tars. A path that
  matches no member is an error (attribute 'modes' for mode-only entries, 'owners' for
  uid/gid-only ones, 'overrides' otherwise), so a typo cannot pass silently.
- entries:
  - file: `src` is followed if it is a symlink (the content comes from the target).
    A directory given as a file is walked like a tree. Optional "executable": true/false
    decides the default mode (0755/0644); null or absent: decided by the content (see "File
    modes"). Starlark gives true/false for generated files (true iff the file is some target's
    executable) and null for source files.
  - tree: `src` is walked recursively. A symlink inside it whose target is relative and stays
    inside the tree is kept as a symlink; any other symlink is dereferenced (its content is
    stored; a directory is walked, and every symlink below it is dereferenced too). Dangling
    symlinks, symlink loops, devices, FIFOs and sockets are errors.
    Every regular file found by the walk has no "executable": its mode is decided by content.
  - symlink: `target` is stored as written.
  - dir: an (empty) directory.
  - tar: an existing tar, compressed with gzip, zstd, xz, bzip2 or not at all (detected by magic
    number, unless the first 512 bytes are a tar header with a right checksum: then it is a
    plain tar whatever its first member's name), unpacked under `dest`. Member names lose a
    leading "./". Mode, uid and gid are kept (overrides still win), user/group names, pax
    extras (atime, ctime, xattrs, ...) and mtimes are dropped. Absolute names, ".." components,
    devices, FIFOs, unknown member types and hardlinks to something that is not an earlier
    file of the same tar are errors (a hardlink to a symlink becomes the same symlink; GNU/pax
    sparse files are expanded). As extraction would: a name written twice is its last member,
    and a hardlink has the content of what its target name was when the link came (`x`(A),
    `h` -> `x`, `x`(B): `h` is A). A compressed tar is first decompressed to a temporary file
    next to --output (tar members have to be read in the output's order, which needs random
    access); a plain tar is read in place.
  - debs: Debian packages, given by the manifest of python_tools/deb.py (a deb_tar's): the
    members are those that importing the tar that tool would write, as a `tar` entry, would
    give (so the layer is the same bytes), made from the packages' contents without writing
    that tar (shiko/layer/debs.py), and its inventory is what --packages writes
    (then the manifest must have exactly one debs entry). Errors about the packages name the
    deb_tar, as the deb tool's do. Starlark uses it for a layer importing one deb_tar at its
    root (deb_layer): Bazel then never writes, hashes and reads back that intermediate tar.

File modes
==========

A regular file's mode is, first that applies: its `overrides` mode; the mode kept from an
imported tar; `defaults.file_mode`; 0755 if the entry says "executable": true, 0644 if false;
and otherwise (`executable` null or absent: source files, and every file found by walking a
directory, tree artifact or source directory) decided by CONTENT: 0755 iff the file starts
with `#!` (a script) or with the ELF magic `\x7fELF` (a program or shared object), else 0644.
Only the first 4 bytes are looked at, and only when no earlier rule gives the mode; they are
read with the content (one read of the file for both), the header is written in front after.

The permission bits of the inputs are never read: they depend on how the action's inputs were
materialized, not on the sources (Bazel writes every output 0555; under remote execution
Bazel 4.2.3 and 7.x send every input with is_executable=true, so a worker materializes every
input 0555; a checkout's bits depend on its umask). Content does not, so a layer built locally,
on a remote worker or from another checkout has the same bytes. Symlinks kept as symlinks are
0777 as always.

Semantics of the output
=======================

- Members are sorted bytewise by path (so parents precede children); every parent directory
  is present (implicit ones get the directory defaults/overrides); there is no "./" entry and
  no leading "./"; directory names end with "/".
- Several entries at one path: directories merge (attributes from an imported tar win over
  defaults, the first such tar in entry order wins); regular files with identical content
  (same resolved source path, or same size and sha256) and symlinks with the same target keep the first;
  anything else is an error naming the path and both origins.
- Hardlinks: regular files whose content comes from the same source (the same path on disk
  once symlinks are resolved — never inode numbers, which depend on how inputs were
  materialized — or the same file of an imported tar, including that tar's hardlinks) and that end up with the
  same mode/uid/gid are stored once, at the first path in output order; later paths are tar
  hardlinks to it. (If overrides give them different attributes, the content is stored again.)
- Format: ustar headers; a pax header only when a value does not fit (names or link targets
  over 100 bytes, sizes >= 8 GiB, ids >= 2**21). Two zero blocks end the archive, no padding to
  a record size.
- Compression (the bytes depend only on the input and these constants, not on the machine's
  core count):
  - gzip: python-isal (ISA-L) raw deflate in independent 1 MiB blocks of the tar stream, each
    primed with the previous block's last 32 KiB and ended with a sync flush (as pigz does),
    compressed by a thread pool, then an empty final block; gzip header with mtime 0, no name,
    XFL 0, OS 255.
    Caveat: ISA-L picks SSE4.2/AVX2/AVX-512 kernels at run time; these are reported to give
    identical bytes, but a CPU without SSE4.2 (or another architecture) may not.
  - zstd: zstandard (libzstd) with the given level, one independent frame per 8 MiB of the tar
    stream (the last one shorter), each compressed in one call by a single-threaded context on
    a thread pool and concatenated in order; every frame has a checksum, no content size and
    no dictionary id.
  - none: the plain tar.
  The diff_id (sha256 of the tar) and digest (sha256 of the blob) are computed while the tar is
  streamed, in one pass over the sources; the layer is never held in memory.

Descriptor (--descriptor, canonical JSON):
  {"mediaType": ..., "digest": "sha256:..", "size": N, "diff_id": "sha256:..",
   "compression": "gzip", "compressor": "isal 1.9.1 igzip level 1 (...)", "members": N,
   "tar_size": N (bytes of the uncompressed tar)}
Listing (--listing, optional, canonical JSON list in tar order):
  {"path": "/app/bin/hello", "type": "file"|"dir"|"symlink"|"hardlink", "mode": "0755",
   "uid": 0, "gid": 0, "size": N, "target": "..." (symlink: as stored; hardlink: "/path"),
   "origin": "//x:hello"}
  `origin` is the label of the manifest entry the member came from (the member of an imported
  tar or a file under a tree: that entry's label); parent directories the tool added on its own
  have none. Reports and SBOMs read it; it never changes the layer's bytes.
  No per-file content hash is computed here (it would cost every build ~15-20% more CPU for
  what only a report needs): python_tools/report.py hashes the files from the blob on demand.
  Names are bytes in the tar; imported tars and source trees may hold names that are not UTF-8
  (the tar keeps their bytes). An entry whose path or target is not UTF-8 has "escaped": true,
  and in its path and target each backslash is doubled and each byte that is not part of valid
  UTF-8 becomes the four characters \\xNN (two lowercase hex digits), so the Latin-1 name
  /etc/café is listed as the text /etc/caf\\xe9 (JSON: "/etc/caf\\\\xe9").
"""

from python_tools.shiko import cli
from python_tools.shiko.files import canonical_json, write_file_atomic
from python_tools.shiko.layer.build import build_layer

FLAGS = [
    cli.string("manifest", required=True,
               help="JSON manifest written by Starlark (see the module docstring)."),
    cli.string("output", required=True, help="Where to write the layer blob."),
    cli.string("descriptor", required=True, help="Where to write the layer descriptor JSON."),
    cli.string("listing", help="Optional: where to write the JSON listing of the members."),
    cli.string("packages", help="Optional: where to write the inventory of the `debs` entry "
               "(python_tools/shiko/debian/inventory.py)."),
]


def run(args, manifest):
    desc, listing = build_layer(manifest, args.output, packages=args.packages)
    write_file_atomic(args.descriptor, canonical_json(desc))
    if args.listing:
        write_file_atomic(args.listing, listing.json())


if __name__ == "__main__":
    cli.main(FLAGS, run, outputs=["output", "descriptor", "listing", "packages"], manifest="manifest",
             worker=True)
