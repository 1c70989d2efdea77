"""Resolves Debian packages against signed archive indexes and writes a lock file.

Python standard library only (this command, python_tools/shiko/cli.py and
python_tools/shiko/debian/): `bazel run //pkg:<name>.update` (the `deb_lock` rule,
rules/private/debian/deb_lock.bzl) runs it, and the `deb_repository` repository rule runs its
`sources`, `probe` and `data` subcommands with the host's python3.

Subcommands
===========
  lock     --manifest=M.json --lock=OUT.json [--archive=SUITE=URL]... [--keyring=K]
           [--snapshot_archive=URL]... [--snapshot=YYYYMMDDTHHMMSSZ]
           [--apt_dir=/etc/apt] [--gpgv=gpgv] [--target=LABEL] [--ignore_valid_until]
           For each suite of the manifest: fetches `dists/<suite>/InRelease` (or `Release` +
           `Release.gpg`), verifies its signature with `gpgv` against the keyring (default: the
           Debian archive keyring): at least one signature must be valid from a key of the
           keyring and none bad (apt's rule; see shiko/debian/signatures.py). Checks
           `Valid-Until`, then fetches each architecture's `Packages.xz` (or .gz, or plain) and
           verifies its sha256 and size against the signed Release. Resolves the manifest's
           packages with their `Pre-Depends` and `Depends` and writes the lock (atomically).
           Prints what changed against the previous lock.
           With --snapshot_archive (the `snapshots` attribute), every suite is read from the
           snapshot archives instead, at `<root>/<timestamp>/` (the first root that has it),
           `Valid-Until` is checked at that time, and the lock records the timestamp: every
           pinned file is then in those snapshots for good. The timestamp is --snapshot, else
           the previous lock's when nothing else changed, else the current time.
  sources  --suite=S... [--archive=SUITE=URL]... [--apt_dir=/etc/apt] [--optional]
           prints JSON {suite: [archive URL, ...]}: the URLs the machine's apt sources give for
           each suite (overridden by --archive). With --optional a suite no source lists gets
           [] instead of an error (snapshot archives will do). Used by `deb_repository`.
  probe    --url=URL... [--sha256=HEX]
           prints JSON {"match": URL or null, "tried": [{"url", "sha256", "size"} or {"url",
           "error", "missing"}]}: what each URL serves, in order, up to the first serving
           --sha256: how `deb_repository` tells a changed .deb from a vanished one after
           Bazel's download failed.
  data     --jobs=JOBS.json
           JOBS: [{"deb": PATH, "sha256": HEX, "control": PATH, "data": PATH,
                   "what": "package 'libc6' 2.36-9"}, ...]:
           writes each .deb's control.tar and data.tar, decompressed, to `control` and `data` (two
           .debs at a time), after checking the .deb's sha256. `deb_repository` runs it for the
           packages whose plain tars (the lock's `control_sha256`, `data_sha256`) are not in
           Bazel's repository cache yet, then puts them there.
Errors: one line `ERROR: <target>: <problem>` on stderr, exit 1; nothing is written.

Archive URLs
============
No host name is ever written in a manifest or a lock: each suite's archive URL comes from an
`--archive SUITE=URL` override (`*=URL` for every suite without its own), or else from the
machine's apt sources (`<apt_dir>/sources.list`, `sources.list.d/*.list` one-line entries and
`sources.list.d/*.sources` deb822 entries; `Types: deb` only, `Enabled: no` skipped).
`file://` URLs work too (tests use them). Snapshot archive roots (--snapshot_archive) are
given by the user too; the lock records only the timestamp.

Manifest (JSON, written by the user)
====================================
  {
    "suites": ["bookworm", "bookworm-updates", "bookworm-security"],
    "components": ["main"],                       # default ["main"]
    "architectures": ["amd64", "arm64"],
    "packages": ["python3.11-minimal", "ca-certificates", "libfoo=1.2-3"],
    "exclude": ["debconf", "debconf-2.0"]         # optional
  }
Keys starting with "_" are comments. `name=version` pins a version.

Resolution rules
================
See python_tools/shiko/debian/resolver.py: the highest version of each package (first suite on
ties), Pre-Depends and Depends walked breadth-first, `exclude`d groups satisfied by nothing,
`Essential: yes` packages only when requested (else listed under "assumed").

Lock file (JSON, sorted keys, 2-space indent)
=============================================
  {
    "lock_version": 1,
    "manifest_sha256": "<sha256 of the manifest file>",
    "snapshot": "20250520T000000Z",              # only when resolved against snapshots
    "suites": ["bookworm", ...],
    "architectures": {
      "amd64": {
        "packages": [
          {"name": "libc6", "version": "2.36-9+deb12u10", "architecture": "amd64",
           "suite": "bookworm", "path": "pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb",
           "sha256": "<hex>", "size": 2757936, "depends": ["libgcc-s1"],
           "control_sha256": "<hex of its control.tar, decompressed>",
           "data_sha256": "<hex of its data.tar, decompressed>"},
          ...                                    # sorted by name
        ],
        "assumed": ["dpkg"]                      # Essential packages not installed
      },
      "arm64": {...}
    }
  }
A package's URLs are `<archive URL of its suite>/<path>`, then, when the lock has a snapshot,
`<snapshot root>/<snapshot>/<path>` for each snapshot root (all sources share the pool layout).
`control_sha256` and `data_sha256` (absent from older locks, which still work) let
deb_repository keep the .deb's members decompressed in Bazel's repository cache instead of the
.deb: `lock` reads every .deb once to compute them, except those the previous lock pinned
already (same sha256), whose digests it keeps.
"""

import json
import os
import sys

if __package__ in (None, ""):  # run as a script (deb_repository): the repository root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from python_tools.shiko import cli  # noqa: E402
from python_tools.shiko.debian import fetch, lockfile, snapshots, sources  # noqa: E402
from python_tools.shiko.debian.errors import DebError  # noqa: E402
from python_tools.shiko.debian.signatures import DEFAULT_KEYRING  # noqa: E402
from python_tools.shiko.errors import UserError  # noqa: E402

LOCK_FLAGS = [
    cli.string("manifest", required=True, help="The JSON manifest (see the module docstring)."),
    cli.string("lock", required=True, help="Lock file to write (relative paths: to "
               "$BUILD_WORKSPACE_DIRECTORY under `bazel run`)."),
    cli.multi_string("archive", help="SUITE=URL or *=URL (repeatable)."),
    cli.string("keyring", DEFAULT_KEYRING, help="OpenPGP keyring verifying the Release files (relative "
               "paths: to $BUILD_WORKSPACE_DIRECTORY under `bazel run`)."),
    cli.string("gpgv", "gpgv", help="The gpgv program."),
    cli.multi_string("snapshot_archive", help="A snapshot archive root URL (repeatable, in order): "
                     "resolve against <root>/<snapshot>/ instead of the archives."),
    cli.string("snapshot", "", help="The snapshot timestamp (YYYYMMDDTHHMMSSZ, UTC) with "
               "--snapshot_archive. Default: the previous lock's if nothing else changed, else now."),
    cli.string("apt_dir", sources.DEFAULT_APT_DIR, help="Where the machine's apt sources are."),
    cli.boolean("ignore_valid_until", help="Accept Release files past their Valid-Until date."),
    cli.string("target", "deb_lock", help="The label named in errors."),
]
SOURCES_FLAGS = [
    cli.multi_string("suite", help="A suite to print the archive URLs of (repeatable)."),
    cli.multi_string("archive", help="SUITE=URL or *=URL (repeatable)."),
    cli.string("apt_dir", sources.DEFAULT_APT_DIR, help="Where the machine's apt sources are."),
    cli.boolean("optional", help="A suite no source lists gets [] (snapshot archives will do)."),
    cli.string("target", "deb_repository", help="The label named in errors."),
]
DATA_FLAGS = [
    cli.string("jobs", required=True, help="JSON list of {deb, sha256, control, data, what} (see above)."),
    cli.string("target", "deb_repository", help="The label named in errors."),
]
PROBE_FLAGS = [
    cli.multi_string("url", help="A URL to fetch (repeatable, in order)."),
    cli.string("sha256", "", help="Stop at the first URL serving this sha256."),
    cli.string("target", "deb_repository", help="The label named in errors."),
]


def _naming_the_target(run):
    """`ERROR: <target>: <problem>` for the library's DebError (which does not know the target)."""

    def wrapped(args):
        try:
            return run(args)
        except DebError as e:
            raise UserError(e.problem, args.target)

    return wrapped


def run_lock(args):
    ws = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
    if ws and not os.path.isabs(args.lock):
        args.lock = os.path.join(ws, args.lock)
    if ws and not os.path.isabs(args.keyring):
        args.keyring = os.path.join(ws, args.keyring)
    manifest, digest = lockfile.read_manifest(args.manifest)
    roots = snapshots.check_roots(args.snapshot_archive)
    snapshot = None
    if roots:
        snapshot = snapshots.check_timestamp(args.snapshot) if args.snapshot else snapshots.now_timestamp()
        urls = {suite: snapshots.snapshot_urls(roots, snapshot) for suite in manifest["suites"]}
    elif args.snapshot:
        raise DebError("--snapshot %s: no snapshot archive to read it from (set `snapshots`, or "
                       "--snapshot_archive=URL)" % args.snapshot)
    else:
        overrides = sources.parse_archive_overrides(args.archive)
        urls = sources.archive_urls(manifest["suites"], overrides, args.apt_dir)

    def log(msg):
        sys.stderr.write("deb_lock: %s\n" % msg)

    old = lockfile.read_previous(args.lock)
    lock = lockfile.build_lock(manifest, digest, urls, args.keyring, args.gpgv, args.ignore_valid_until, log,
                               snapshot, previous=old)
    if not args.snapshot:
        lock = lockfile.keep_previous_snapshot(old, lock)
    lockfile.write(args.lock, lockfile.encode_lock(lock))
    changes = lockfile.lock_changes(old, lock)
    for line in changes:
        print(line)
    print("Wrote %s (%s; %s%s)" % (args.lock, ", ".join(
        "%s: %d packages" % (a, len(v["packages"])) for a, v in sorted(lock["architectures"].items())),
        "%d change(s)" % len(changes) if old else "new lock",
        "; snapshot %s" % lock["snapshot"] if lock.get("snapshot") else ""))


def run_sources(args):
    overrides = sources.parse_archive_overrides(args.archive)
    print(json.dumps(sources.archive_urls(args.suite, overrides, args.apt_dir, args.optional),
                     sort_keys=True))


def run_probe(args):
    print(json.dumps(fetch.probe(args.url, args.sha256 or None), sort_keys=True))


def run_data(args):
    with open(args.jobs, "rb") as f:
        jobs = json.loads(f.read().decode("utf-8"))
    lockfile.write_plain_members(jobs)


COMMANDS = {
    "lock": cli.Command(LOCK_FLAGS, _naming_the_target(run_lock)),
    "sources": cli.Command(SOURCES_FLAGS, _naming_the_target(run_sources)),
    "probe": cli.Command(PROBE_FLAGS, _naming_the_target(run_probe)),
    "data": cli.Command(DATA_FLAGS, _naming_the_target(run_data)),
}


if __name__ == "__main__":
    cli.main(COMMANDS)
