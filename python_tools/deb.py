"""Turns Debian packages (.deb files pinned by a lock) into one tar for `image_layer(tars = ...)`.

Usage:
  deb.py --manifest=M.json --output=OUT.tar [--packages=PACKAGES.json]

--packages writes what the tar holds package by package (name, version, source, .deb sha256,
licences, and which package each file came from): the format is documented in
python_tools/shiko/debian/inventory.py. Reports and SBOMs read it.

No maintainer script is run; what an image needs from them is done here (see "Build-time
maintainer work"). On bad input (a bad manifest included) it prints one line
`ERROR: <target>: attribute '<attr>': <value repr>: <problem>` on stderr, removes --output and
exits 1. The work is done by python_tools/shiko/debian/unpack.py.

Manifest (JSON, written by Starlark: rules/private/debian/deb.bzl)
===================================================================
  {
    "target": "//pkg:name",
    "architecture": "amd64",
    "index": "external/<repo>/amd64/packages.json",   # the lock's entries for this architecture
    "debs": [{"name": "libc6", "src": "external/<repo>/amd64/libc6.deb"},
             {"name": "libssl3", "control": "external/<repo>/amd64/libssl3.control.tar",
              "data": "external/<repo>/amd64/libssl3.data.tar"}, ...],
    "keep_docs": false,
    "basics": null | {                               # the distroless basics instead of packages
        "os_release": null | "NAME=...\\n",           # /etc/os-release content (null: see below)
        "has_base_files": true | false               # base-files is among the packages
    }
  }
`index` is {"architecture": A, "suites": [...], "packages": [lock entries]} (see deb_lock.py).
A package is its .deb (`src`), or, when its lock entry pins them (`control_sha256`,
`data_sha256`), the .deb's control.tar and data.tar already decompressed (`control`, `data`:
deb_repository keeps those instead of the .deb), each checked against its pin.

What goes into the tar
======================
- Each .deb is checked first: its sha256 must be the lock's (else an error naming the package:
  the file is not the locked one; plain members: each sha256 must be the lock's pin), its
  `control` must name the same package, version and an architecture that is `all` or the
  target's.
- The members of its `data.tar` (xz, zstd, gzip, bzip2 or plain), without the leading "./":
  modes, owners (numeric), symlinks (targets verbatim) and hardlinks are kept; mtimes are not
  (the layer tool sets them). Devices, FIFOs, absolute names and ".." are errors.
- Unless keep_docs: no /usr/share/doc (except each package's directory or symlink there and its
  `copyright` file: licences stay with the binaries), /usr/share/man, /usr/share/info,
  /usr/share/locale, /usr/share/lintian, /usr/share/linda, /usr/share/doc-base. A hardlink whose
  target was dropped becomes a regular file.
- `/var/lib/dpkg/status.d/<package>`: the package's control paragraph with
  `Status: install ok installed` after its `Package:` line, as distroless images carry it, so
  scanners (syft, trivy, grype) see the package and its version.
- Two packages of one tar shipping the same path: directories merge (first wins), identical
  symlinks or files are kept once, anything else is an error naming both packages.

Build-time maintainer work
==========================
- ca-certificates: /etc/ssl/certs/ca-certificates.crt is the concatenation (each ending with a
  newline) of every /usr/share/ca-certificates/**/*.crt, in bytewise path order, as
  update-ca-certificates writes it from the ca-certificates.conf its postinst generates; that
  /etc/ca-certificates.conf and the /etc/ssl/certs/<name>.pem symlinks are written too (not the
  OpenSSL subject-hash links: OpenSSL and Python load the bundle file).
- tzdata: /etc/localtime -> /usr/share/zoneinfo/Etc/UTC and /etc/timezone (`Etc/UTC`).
- base-files: /etc/nsswitch.conf from /usr/share/base-files/nsswitch.conf.

Basics (`basics` set, `debs` empty)
===================================
/etc/passwd and /etc/group with root (0) and nonroot (65532) (and nobody, 65534), /root (0700),
/home/nonroot (0700, owned 65532:65532), /tmp (1777). /etc/os-release: `os_release` when given;
else, without base-files (which ships one), a generated one (ID=debian and the codename of the
lock's first suite). /etc/nsswitch.conf (files, then dns for hosts) without base-files.

Output: a plain tar, members sorted by name, mtime 0, numeric owners only. Hardlinked files:
the content is at the first of their names in that order (with the target's mode and owner),
every other name is a hardlink to it, so `tar -x` can extract the output in order.
"""

from python_tools.shiko import cli
from python_tools.shiko.debian.inventory import inventory
from python_tools.shiko.debian.unpack import build_tar
from python_tools.shiko.files import canonical_json, write_file_atomic

FLAGS = [
    cli.string("manifest", required=True,
               help="JSON manifest written by Starlark (see the module docstring)."),
    cli.string("output", required=True, help="Where to write the tar."),
    cli.string("packages", help="Optional: where to write the packages inventory JSON."),
]


def run(args, manifest):
    entries, controls = build_tar(manifest, args.output)
    if args.packages:
        write_file_atomic(args.packages, canonical_json(inventory(manifest, entries, controls)))


if __name__ == "__main__":
    # A persistent worker under Bazel (shiko/worker.py), else one run.
    cli.main(FLAGS, run, outputs=["output", "packages"], manifest="manifest", worker=True)
