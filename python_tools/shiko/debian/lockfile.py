"""The deb_lock manifest and lock file: reading, building (fetch, verify, resolve), writing.

The formats are documented in python_tools/deb_lock.py (the `lock` command).
"""

import hashlib
import json
import os
import tarfile

from python_tools.shiko import threads
from python_tools.shiko.debian import debfile, snapshots
from python_tools.shiko.debian.errors import DebError, NotFound
from python_tools.shiko.debian.fetch import fetch
from python_tools.shiko.debian.indexes import fetch_packages, fetch_release
from python_tools.shiko.debian.resolver import Universe, resolve
from python_tools.shiko.files import write_file_atomic
from python_tools.shiko.tar import compression

LOCK_VERSION = 1


def read_manifest(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = json.loads(raw.decode("utf-8"))
    except OSError as e:
        raise DebError("cannot read the manifest %s: %s" % (path, e.strerror))
    except ValueError as e:
        raise DebError("manifest %s is not valid JSON: %s" % (path, e))
    if not isinstance(data, dict):
        raise DebError("manifest %s: expected a JSON object" % path)
    known = {"suites", "components", "architectures", "packages", "exclude"}
    for k in data:
        if k not in known and not k.startswith("_"):
            raise DebError("manifest %s: unknown key %r (known: %s)" % (path, k, ", ".join(sorted(known))))

    def strings(key, required, default=None):
        v = data.get(key, default)
        if v is None:
            if required:
                raise DebError("manifest %s: %r is required (a list of strings)" % (path, key))
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise DebError("manifest %s: %r must be a list of non-empty strings" % (path, key))
        return [x.strip() for x in v]

    manifest = {
        "suites": strings("suites", True),
        "components": strings("components", False, ["main"]),
        "architectures": strings("architectures", True),
        "packages": strings("packages", True),
        "exclude": strings("exclude", False),
    }
    for key in ("suites", "architectures", "packages"):
        if not manifest[key]:
            raise DebError("manifest %s: %r is empty" % (path, key))
    return manifest, hashlib.sha256(raw).hexdigest()


def build_lock(manifest, manifest_sha256, urls, keyring, gpgv="gpgv", ignore_valid_until=False,
               log=None, snapshot=None, previous=None):
    """Fetches and verifies the indexes, resolves every architecture, returns the lock dict.

    `urls`: {suite: [archive URL, ...]} (the first that has the suite). `snapshot`: the
    timestamp of the snapshot archives `urls` point into; the lock records it (`"snapshot"`),
    and Release files are checked for `Valid-Until` at that time rather than now. Each package
    gets its `control_sha256` and `data_sha256` (add_member_digests; `previous`: the lock being
    replaced, whose digests are kept for the same files).
    """
    now = snapshots.epoch(snapshot) if snapshot else None
    releases = {}
    for suite in manifest["suites"]:
        try:
            releases[suite] = fetch_release(urls[suite], suite, keyring, gpgv, ignore_valid_until,
                                            now)
        except NotFound as e:
            if not snapshot:
                raise
            raise DebError("%s (no snapshot archive has it at %s: add the archive holding %r "
                           "to `snapshots`)" % (e, snapshot, suite))
        if log:
            log("verified %s/dists/%s (%s)" % (releases[suite][2], suite,
                                              releases[suite][0].get("Date", "no date")))
    lock = {
        "lock_version": LOCK_VERSION,
        "manifest_sha256": manifest_sha256,
        "suites": manifest["suites"],
        "architectures": {},
    }
    if snapshot:
        lock["snapshot"] = snapshot
    for arch in manifest["architectures"]:
        universe = Universe()
        for suite in manifest["suites"]:
            fields, files, base = releases[suite]
            for comp in manifest["components"]:
                universe.add(fetch_packages(base, suite, comp, arch, fields, files), suite)
        universe.finish()
        res = resolve(universe, manifest["packages"], manifest["exclude"], arch)
        pkgs = []
        for name in sorted(res.selected):
            st = res.selected[name]
            path = st["Filename"]
            if path.startswith("/") or ".." in path.split("/"):
                raise DebError("%s: %s: suspicious Filename %r in the index" % (arch, name, path))
            pkgs.append({
                "name": name,
                "version": st["Version"],
                "architecture": st.get("Architecture", arch),
                "suite": st["_suite"],
                "path": path,
                "sha256": st["SHA256"],
                "size": int(st.get("Size", "0") or 0),
                "depends": res.depends.get(name, []),
            })
        lock["architectures"][arch] = {"packages": pkgs, "assumed": res.assumed}
        if log:
            log("%s: %d packages, %.1f MB of .deb files" % (
                arch, len(pkgs), sum(p["size"] for p in pkgs) / 1e6))
    bases = {suite: releases[suite][2] for suite in manifest["suites"]}
    add_member_digests(lock, lambda p: fetch(bases[p["suite"]] + "/" + p["path"]), previous, log)
    return lock


def add_member_digests(lock, fetch_deb, previous=None, log=None):
    """Sets each package's `control_sha256` and `data_sha256`: the sha256 of its .deb's
    control.tar and data.tar, decompressed.

    deb_repository keeps those plain tars in Bazel's repository cache under these digests, so a
    build from a new output base copies them instead of the .deb and never decompresses its xz
    again. The digests of a file the `previous` lock pinned too (same sha256) are kept; any
    other .deb is fetched (`fetch_deb(package entry)` -> bytes, two at a time), checked against
    the lock's sha256, and its members decompressed and hashed. Changes `lock` in place."""
    known = {}
    for arch in (previous or {}).get("architectures", {}).values():
        for p in arch.get("packages", []):
            if p.get("control_sha256") and p.get("data_sha256") and p.get("sha256"):
                known[p["sha256"]] = (p["control_sha256"], p["data_sha256"])
    todo = {}
    for arch in lock["architectures"].values():
        for p in arch["packages"]:
            if p["sha256"] not in known:
                todo.setdefault(p["sha256"], p)

    def digests(p):
        what = "%s %s (%s)" % (p["name"], p["version"], p["path"])
        control, data = _checked_members(fetch_deb(p), p["sha256"], what, lambda got: (
            "the archive serves a .deb with sha256 %s, its index says %s" % (got, p["sha256"])))
        return hashlib.sha256(control).hexdigest(), hashlib.sha256(data).hexdigest()

    if todo:
        if log:
            log("control.tar and data.tar digests: %d .deb file(s) to read (%.1f MB)" % (
                len(todo), sum(p.get("size", 0) for p in todo.values()) / 1e6))
        with threads.Pool(2) as pool:
            tasks = [(sha, pool.submit(digests, p)) for sha, p in sorted(todo.items())]
            for sha, task in tasks:
                known[sha] = task.result()
    for arch in lock["architectures"].values():
        for p in arch["packages"]:
            p["control_sha256"], p["data_sha256"] = known[p["sha256"]]
    return lock


def _checked_members(blob, sha256, what, mismatch):
    """(control.tar, data.tar) of a .deb, decompressed, once its sha256 is `sha256`; else a
    DebError `<what>: <mismatch(its sha256)>`."""
    got = hashlib.sha256(blob).hexdigest()
    if got != sha256:
        raise DebError("%s: %s" % (what, mismatch(got)))
    try:
        return debfile.plain_members(blob, what)
    except (tarfile.TarError,) + compression.errors() as e:
        raise DebError("%s: cannot read its control.tar and data.tar: %s" % (what, e))


def write_plain_members(jobs):
    """Writes the decompressed control.tar and data.tar of each job's .deb (deb_lock.py
    `data`), two at a time: [{"deb", "sha256", "control", "data", "what"}]. A .deb with another
    sha256 is an error."""
    def one(job):
        with open(job["deb"], "rb") as f:
            blob = f.read()
        control, data = _checked_members(blob, job["sha256"], job["what"], lambda got: (
            "%s has sha256 %s, the lock says %s" % (job["deb"], got, job["sha256"])))
        write_file_atomic(job["control"], control)
        write_file_atomic(job["data"], data)

    with threads.Pool(2) as pool:
        for task in [pool.submit(one, job) for job in jobs]:
            task.result()


def encode_lock(lock):
    return (json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def lock_changes(old, new):
    """Human-readable lines of what changed between two locks."""
    lines = []
    if old and old.get("snapshot") != new.get("snapshot"):
        lines.append("snapshot: %s -> %s" % (old.get("snapshot") or "none", new.get("snapshot") or "none"))
    for arch in sorted(set(old.get("architectures", {})) | set(new.get("architectures", {}))):
        a = {p["name"]: p["version"] for p in old.get("architectures", {}).get(arch, {}).get("packages", [])}
        b = {p["name"]: p["version"] for p in new.get("architectures", {}).get(arch, {}).get("packages", [])}
        for n in sorted(set(a) | set(b)):
            if n not in a:
                lines.append("%s: + %s %s" % (arch, n, b[n]))
            elif n not in b:
                lines.append("%s: - %s %s" % (arch, n, a[n]))
            elif a[n] != b[n]:
                lines.append("%s: %s %s -> %s" % (arch, n, a[n], b[n]))
    return lines


def keep_previous_snapshot(old, new):
    """`new`, with the previous lock's snapshot timestamp when nothing else changed.

    Both snapshots hold every pinned file (each lock was resolved against its own), so a re-lock
    of an unchanged archive rewrites the same bytes instead of a newer timestamp.
    """
    if not old.get("snapshot") or not new.get("snapshot"):
        return new
    if encode_lock(dict(old, snapshot=None)) != encode_lock(dict(new, snapshot=None)):
        return new
    return dict(new, snapshot=old["snapshot"])


def read_previous(path):
    """The lock already at path (to report changes), or {} when there is none or it is unreadable."""
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}


def write(path, data):
    """Writes the encoded lock atomically, creating its directory."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_file_atomic(path, data)
