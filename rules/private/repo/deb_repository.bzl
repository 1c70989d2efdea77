"""deb_repository: the Debian packages pinned by a deb_lock lock file, fetched into a repository.

    deb_repository(
        name = "distroless_python3_debs",
        lock = "//examples/distroless:packages.lock.json",
        update_target = "//examples/distroless:lock.update",   # named in the "re-lock" error
        snapshots = [                                          # optional, tried after the mirror
            "http://snapshot.example/archive/debian",
            "http://snapshot.example/archive/debian-security",
        ],
    )

Each locked .deb is fetched with `rctx.download(urls, sha256 = <the lock's>)`, so Bazel checks it
and keeps it in the repository cache: a new output base or checkout downloads nothing, and
`--distdir` serves it too (by file name, checked by sha256), with no network at all. The URLs,
tried in order: `<archive URL of the package's suite>/<path>` (archive URLs from `archives` or,
by default, the machine's apt sources, read by python_tools/deb_lock.py `sources` with the
host's python3), then, when the lock records the snapshot it was resolved against,
`<snapshot root>/<snapshot>/<path>` for each root of `snapshots`. Mirrors drop a version when a
point release or a security update replaces it; the snapshot still has it, for good. No host
name is ever written in the repository by rules_shiko: the user gives the snapshot roots.

The repository holds, per architecture A of the lock:
    @<name>//:A                 A/packages.json (the lock's entries) + A/<package>.deb
                                (or A/<package>.control.tar + .data.tar: see below)
    @<name>//:lock.json         the lock itself
Pass `@<name>//:A` to `deb_layer` / `distroless_base` (packages = ...).

Each architecture is a repository of its own, `@<name>__A`, behind the alias `@<name>//:A`
(`@<name>` itself only reads the lock): a build fetches the .debs of the architectures it
uses, e.g. an amd64 image never copies the arm64 packages out of the repository cache.

A .deb already in Bazel's repository cache (by its sha256) is taken from there before any URL
is worked out: the machine's apt sources are read (with the host's python3) only for a
package the cache does not have.

When the lock pins each .deb's control.tar and data.tar decompressed (`control_sha256`,
`data_sha256`, written by deb_lock), those plain tars are kept in the repository cache instead
of the .deb, as `A/<package>.control.tar` and `A/<package>.data.tar`: made once per machine
from the checked .deb (deb_lock.py `data`, host python3), then copied from the cache, so a
build from a new output base neither copies the .debs nor decompresses their xz again. Older
locks without the digests (or a machine without python3 the first time) keep the .deb.

Errors: a .deb whose sha256 is not the lock's names the package and both digests; a version no
source has any more (Debian removes superseded versions) is one line naming the package, the
version, every URL tried and the fixes (re-lock, or add a snapshot archive).
"""

load(":host.bzl", "file_sha256", "find_python", "label_name")

_TOOL = Label("//python_tools:deb_lock.py")

_label_name = label_name

def _find_python(rctx):
    path, _ = find_python(rctx)
    if path:
        return path
    fail("@%s: deb_repository needs a python3 on PATH (or $SHIKO_PYTHON) to read the apt sources; " %
         _label_name(rctx) + "or set `archives` for every suite of the lock")

def _archive_urls(rctx, suites, optional):
    """{suite: [URL, ...]} from `archives`, else from the machine's apt sources.

    With `optional` (snapshot URLs will do), a suite the apt sources don't list gets [], and no
    python3 is needed.
    """
    overrides = rctx.attr.archives
    out = {}
    missing = []
    for s in suites:
        if s in overrides:
            out[s] = [overrides[s].rstrip("/")]
        elif "*" in overrides:
            out[s] = [overrides["*"].rstrip("/")]
        else:
            missing.append(s)
    if missing and optional and not find_python(rctx)[0]:
        for s in missing:
            out[s] = []
        return out
    if missing:
        args = [
            _find_python(rctx),
            str(rctx.path(_TOOL)),
            "sources",
            "--apt_dir",
            rctx.attr.apt_dir,
            "--target",
            "@" + _label_name(rctx),
        ]
        for s in missing:
            args += ["--suite", s]
        if optional:
            args.append("--optional")
        res = rctx.execute(args, quiet = True, timeout = 60)
        if res.return_code != 0:
            fail("@%s: attribute 'archives': %s" % (_label_name(rctx), (res.stderr or res.stdout).strip()))
        found = json.decode(res.stdout)
        for s in missing:
            out[s] = found[s]
    return out

def _relock_hint(rctx):
    if rctx.attr.update_target:
        return "bazel run %s" % rctx.attr.update_target
    return "bazel run //<package of the manifest>:<deb_lock name>.update"

def _snapshot_hint(rctx, snapshot):
    """The second fix of a vanished version: snapshot archives."""
    if snapshot and rctx.attr.snapshots:
        return ("or check that `snapshots` lists the snapshot archives the lock was resolved against " +
                "(snapshot %s)") % snapshot
    if snapshot:
        return ("or add the snapshot archives the lock was resolved against (snapshot %s) to " +
                "`snapshots`") % snapshot
    return ("or add snapshot archives: set `snapshots` on the deb_lock and on this repository, and re-lock " +
            "(the lock then records a snapshot that keeps every pinned version)")

def _fetch(rctx, name, entry, arch, urls, output, snapshot):
    """Downloads one locked .deb from the first URL that has it (verified against the lock's sha256)."""
    full = [u + "/" + entry["path"] for u in urls]
    what = "package '%s' %s (%s)" % (entry["name"], entry["version"], arch)
    if not full:
        fail("@%s: %s: no archive URL for suite %r: set `archives`, or `snapshots`" % (name, what, entry["suite"]))
    res = rctx.download(full, output = output, sha256 = entry["sha256"], allow_fail = True)
    if res.success:
        return

    # Why? Fetch without the checksum to tell a changed file from a vanished one. (Not with
    # rctx.download: after a checksum failure Bazel 4 fails the same URL again without asking.)
    probe = rctx.execute([_find_python(rctx), str(rctx.path(_TOOL)), "probe", "--sha256=" + entry["sha256"]] +
                         ["--url=" + u for u in full], quiet = True, timeout = 600)
    found = {}
    if probe.return_code == 0 and probe.stdout.strip().startswith("{"):
        found = json.decode(probe.stdout)
    tried = found.get("tried", [])
    if found.get("match"):
        # A transient failure, or an earlier URL serving other bytes (tampered, or a rebuilt
        # file): the one that serves the locked bytes, alone.
        again = rctx.download([found["match"]], output = output, sha256 = entry["sha256"], allow_fail = True)
        if again.success:
            return
        fail("@%s: %s: the download of %s failed, then succeeded, then failed: retry the build" %
             (name, what, found["match"]))
    changed = [t for t in tried if "sha256" in t]
    if changed:
        fail(("@%s: %s: sha256 mismatch: the archive serves %s, the lock says %s " +
              "(%s). The file is not the locked one: a tampered mirror, or a lock edited by hand. " +
              "Re-lock only if you trust the archive: %s") %
             (name, what, changed[0]["sha256"], entry["sha256"], changed[0]["url"], _relock_hint(rctx)))
    if not tried:
        fail("@%s: %s could not be fetched from %s: %s" %
             (name, what, " or ".join(full), (probe.stderr or probe.stdout).strip()))
    reasons = "; ".join([t.get("error", t["url"]) for t in tried])
    if len([t for t in tried if t.get("missing")]) == len(tried):
        fail(("@%s: %s is no longer in the archive (tried %s): Debian removes superseded " +
              "versions from its mirrors. Re-lock to the current versions: %s, %s") %
             (name, what, reasons, _relock_hint(rctx), _snapshot_hint(rctx, snapshot)))
    fail("@%s: %s could not be fetched (tried %s)" % (name, what, reasons))

def _check_snapshot(name, rctx, lock):
    """The lock's snapshot timestamp (YYYYMMDDTHHMMSSZ), or None."""
    snapshot = lock.get("snapshot")
    if snapshot == None:
        return None
    ok = type(snapshot) == "string" and len(snapshot) == 16 and snapshot[8] == "T" and snapshot[15] == "Z"
    ok = ok and (snapshot[:8] + snapshot[9:15]).isdigit()
    if not ok:
        fail("@%s: attribute 'lock': %s: snapshot %r is not a YYYYMMDDTHHMMSSZ timestamp; re-lock: %s" %
             (name, rctx.attr.lock, snapshot, _relock_hint(rctx)))
    return snapshot

def _snapshot_urls(name, rctx, snapshot):
    """`<root>/<snapshot>` for each root of `snapshots` ([] when the lock records no snapshot)."""
    out = []
    for root in rctx.attr.snapshots:
        if not (root.startswith("http://") or root.startswith("https://") or root.startswith("file://")):
            fail("@%s: attribute 'snapshots': %r: expected an http, https or file URL" % (name, root))
        root = root.rstrip("/")
        last = root.split("/")[-1]
        if len(last) == 16 and last[8] == "T" and last.endswith("Z") and (last[:8] + last[9:15]).isdigit():
            fail(("@%s: attribute 'snapshots': %r: give the root without the timestamp " +
                  "(the lock records it)") % (name, root))
        if snapshot and root + "/" + snapshot not in out:
            out.append(root + "/" + snapshot)
    return out

def read_lock(rctx):
    """The lock of rctx.attr.lock, checked: struct(lock, suites, snapshot, snapshot_urls, urls).
    `urls` ({suite: [archive URL, ...]}) starts empty: archive_urls() fills it when a download
    needs it (reading the apt sources runs python3; a repository cache hit needs no URL)."""
    name = _label_name(rctx)
    lock = json.decode(rctx.read(rctx.path(rctx.attr.lock)))
    if type(lock) != "dict" or lock.get("lock_version") != 1 or type(lock.get("architectures")) != "dict":
        fail("@%s: attribute 'lock': %s: not a deb_lock lock file (lock_version 1); re-lock: %s" %
             (name, rctx.attr.lock, _relock_hint(rctx)))
    suites = lock.get("suites", [])
    snapshot = _check_snapshot(name, rctx, lock)
    snapshot_urls = _snapshot_urls(name, rctx, snapshot)
    return struct(lock = lock, suites = suites, urls = {}, snapshot_urls = snapshot_urls, snapshot = snapshot)

def archive_urls(rctx, locked):
    """{suite: [URL, ...]} of the lock's suites (archives, else the apt sources), computed once."""
    if not locked.urls:
        locked.urls.update(_archive_urls(rctx, locked.suites, optional = bool(locked.snapshot_urls)))
    return locked.urls

def _cached(rctx, sha256, output):
    """Whether Bazel's repository cache had this file (by sha256; then it is at `output`)."""
    return rctx.download(["file:///shiko-repository-cache-only/" + sha256], output = output,
                         sha256 = sha256, allow_fail = True).success

def fetch_arch(rctx, locked, arch, out_dir, attr = "architectures", skip = {}):
    """Downloads every locked .deb of `arch` to `out_dir/<package>.deb` (checked by sha256),
    but those of the packages named in `skip`; returns (the lock's entries, the paths written).
    `attr` names the caller's attribute that chose `arch`, for the error when the lock lacks it."""
    name = _label_name(rctx)
    if arch not in locked.lock["architectures"]:
        fail("@%s: attribute '%s': %r: the lock has %s only" %
             (name, attr, arch, ", ".join(sorted(locked.lock["architectures"].keys()))))
    entries = locked.lock["architectures"][arch]["packages"]
    files = []
    for i, e in enumerate(entries):
        if e["suite"] not in locked.suites:
            fail("@%s: package '%s' (%s) comes from suite %r, which the lock's suites don't list" %
                 (name, e["name"], arch, e["suite"]))
        if e["name"] in skip:
            continue
        rctx.report_progress("%s: %s %s (%d/%d)" % (arch, e["name"], e["version"], i + 1, len(entries)))
        out = "%s/%s.deb" % (out_dir, e["name"])
        if not _cached(rctx, e["sha256"], out):
            urls = archive_urls(rctx, locked)
            _fetch(rctx, name, e, arch, urls[e["suite"]] + locked.snapshot_urls, out, locked.snapshot)
        files.append(out)
    return entries, files

def _pinned(e):
    """Whether a lock entry pins its .deb's members decompressed (deb_lock since 2026-12)."""
    return bool(e.get("control_sha256") and e.get("data_sha256"))

def _plain_paths(out_dir, e):
    return "%s/%s.control.tar" % (out_dir, e["name"]), "%s/%s.data.tar" % (out_dir, e["name"])

def cached_plain_members(rctx, entries, out_dir):
    """{package: True} of the pinned packages whose plain control.tar and data.tar Bazel's
    repository cache has (then copied to `<out_dir>/<package>.control.tar` and `.data.tar`):
    their .deb is not needed."""
    hits = {}
    for e in entries:
        if not _pinned(e):
            continue
        control, data = _plain_paths(out_dir, e)
        if _cached(rctx, e["control_sha256"], control):
            if _cached(rctx, e["data_sha256"], data):
                hits[e["name"]] = True
            else:
                rctx.delete(control)
    return hits

def make_plain_members(rctx, entries, debs, out_dir):
    """Writes the plain control.tar and data.tar of each fetched .deb whose entry pins them
    (deb_lock.py `data`, host python3), puts them in the repository cache (a file:// download
    checked by the lock's sha256) and removes the .deb. Returns {package: True} of those made
    (none without a python3: those packages keep their .deb, which the deb action reads)."""
    name = _label_name(rctx)
    todo = [(e, d) for e, d in zip(entries, debs) if _pinned(e)]
    python = find_python(rctx)[0] if todo else None
    if not python:
        return {}
    jobs = []
    for e, deb in todo:
        control, data = _plain_paths(out_dir, e)
        jobs.append({
            "deb": str(rctx.path(deb)),
            "sha256": e["sha256"],
            "control": str(rctx.path(control + ".unchecked")),
            "data": str(rctx.path(data + ".unchecked")),
            "what": "package '%s' %s" % (e["name"], e["version"]),
        })
    rctx.file("_plain_jobs.json", json.encode(jobs))
    res = rctx.execute([python, str(rctx.path(_TOOL)), "data", "--jobs=" + str(rctx.path("_plain_jobs.json")),
                        "--target=@" + name], quiet = True, timeout = 600)
    if res.return_code != 0:
        fail("@%s: %s" % (name, (res.stderr or res.stdout).strip()))
    rctx.delete("_plain_jobs.json")
    made = {}
    for e, deb in todo:
        for path, key, member in zip(_plain_paths(out_dir, e), ["control_sha256", "data_sha256"], ["control.tar", "data.tar"]):
            unchecked = rctx.path(path + ".unchecked")
            if not rctx.download(["file://%s" % unchecked], output = path, sha256 = e[key], allow_fail = True).success:
                fail(("@%s: package '%s' %s: its %s, decompressed, has sha256 %s, the lock's %s " +
                      "is %s: a lock edited by hand? Re-lock: %s") %
                     (name, e["name"], e["version"], member, file_sha256(rctx, unchecked, path + ".scratch"),
                      key, e[key], _relock_hint(rctx)))
            rctx.delete(unchecked)
        rctx.delete(deb)
        made[e["name"]] = True
    return made

def _archs(rctx, lock):
    """The architectures to provide: `architectures`, checked against the lock, or all of its."""
    for arch in rctx.attr.architectures:
        if arch not in lock["architectures"]:
            fail("@%s: attribute 'architectures': %r: the lock has %s only" %
                 (_label_name(rctx), arch, ", ".join(sorted(lock["architectures"].keys()))))
    return rctx.attr.architectures or sorted(lock["architectures"].keys())

def arch_repository_name(name, arch):
    """The repository holding one architecture's .debs of the deb_repository `name`."""
    return "%s__%s" % (name, arch)

def _deb_repository_impl(rctx):
    """@<name>: the lock and one alias per architecture to its own repository (not fetched here)."""
    name = _label_name(rctx)
    locked = read_lock(rctx)
    build = [
        "# Generated by rules_shiko's deb_repository from %s." % rctx.attr.lock,
        "# Each architecture's .debs are in a repository of their own, fetched only when used.",
        "package(default_visibility = [\"//visibility:public\"])",
        "",
        "exports_files([\"lock.json\"])",
        "",
    ]
    for arch in _archs(rctx, locked.lock):
        if arch not in rctx.attr.declared:
            fail(("@%s: the lock has architecture %r, which has no repository: list the lock's " +
                  "architectures you use in `architectures`") % (name, arch))
        build += [
            "alias(",
            "    name = \"%s\"," % arch,
            "    actual = \"@%s//:%s\"," % (arch_repository_name(name, arch), arch),
            ")",
            "",
        ]
    rctx.file("lock.json", json.encode_indent(locked.lock, indent = "  ") + "\n")
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % name)
    rctx.file("BUILD.bazel", "\n".join(build))

def _deb_arch_repository_impl(rctx):
    """@<name>__<arch>: one architecture's .debs and packages.json, target `:<arch>`."""
    name = _label_name(rctx)
    locked = read_lock(rctx)
    arch = rctx.attr.architecture
    _archs(rctx, locked.lock)
    if arch not in locked.lock["architectures"]:
        fail("@%s: attribute 'architectures': %r: the lock has %s only" %
             (name, arch, ", ".join(sorted(locked.lock["architectures"].keys()))))
    hits = cached_plain_members(rctx, locked.lock["architectures"][arch]["packages"], arch)
    entries, debs = fetch_arch(rctx, locked, arch, arch, skip = hits)
    fetched = [e for e in entries if e["name"] not in hits]
    made = make_plain_members(rctx, fetched, debs, arch)
    files = []
    for e in entries:
        if e["name"] in hits or e["name"] in made:
            files += list(_plain_paths(arch, e))
        else:
            files.append("%s/%s.deb" % (arch, e["name"]))
    rctx.file(arch + "/packages.json", json.encode({
        "architecture": arch,
        "suites": locked.suites,
        "packages": entries,
        # Provenance: the lock these packages come from (a material of every image).
        "lock": str(rctx.attr.lock),
        "lock_sha256": file_sha256(rctx, rctx.path(rctx.attr.lock), "_lock_sha256"),
    }))
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % arch_repository_name(name, arch))
    rctx.file("BUILD.bazel", "\n".join([
        "# Generated by rules_shiko's deb_repository (@%s, %s) from %s." % (name, arch, rctx.attr.lock),
        "# control.tar and data.tar decompressed instead of the .deb: %d of %d packages (%d from the " % (
            len(hits) + len(made), len(entries), len(hits)) + "repository cache, %d written)." % len(made),
        "package(default_visibility = [\"//visibility:public\"])",
        "",
        "filegroup(",
        "    name = \"%s\"," % arch,
        "    srcs = %s," % repr([arch + "/packages.json"] + files),
        ")",
        "",
    ]))

DEB_REPOSITORY_ATTRS = {
    "lock": attr.label(
        mandatory = True,
        allow_single_file = True,
        doc = "The lock file written by a deb_lock target (`bazel run //pkg:<name>.update`).",
    ),
    "archives": attr.string_dict(
        doc = "Archive URL per suite, e.g. {\"bookworm-security\": \"http://mirror/debian-security\"}; " +
              "the key \"*\" applies to every suite without its own. Default: the machine's apt sources.",
    ),
    "snapshots": attr.string_list(
        doc = "Snapshot archive roots, tried in order after the archives of `archives` (or the apt " +
              "sources), e.g. [\"http://snapshot.example/archive/debian\", " +
              "\"http://snapshot.example/archive/debian-security\"]: each holds `<TIMESTAMP>/pool/...` " +
              "(the layout of Debian's snapshot service). A pinned .deb is fetched from the first URL " +
              "that has it, `<root>/<the lock's snapshot>/<path>` for a snapshot, and always checked by " +
              "sha256: a build keeps working after the mirrors drop the locked versions. Used when the " +
              "lock records a snapshot (a deb_lock with the same `snapshots`); the apt sources are then " +
              "optional.",
    ),
    "architectures": attr.string_list(
        doc = "Architectures of the lock to provide as `@<name>//:<arch>`. Default: all of the lock's. Each " +
              "architecture's .debs are a repository of their own (`@<name>__<arch>`), fetched only by a " +
              "build that uses it. In WORKSPACE mode, a lock with an architecture that is not one of Debian's " +
              "release architectures (amd64, arm64, armel, armhf, i386, mips64el, ppc64el, riscv64, s390x) " +
              "needs it listed here.",
    ),
    "apt_dir": attr.string(
        default = "/etc/apt",
        doc = "Where the machine's apt sources are (sources.list, sources.list.d/*.list and *.sources).",
    ),
    "update_target": attr.string(
        doc = "The deb_lock `.update` target, named in the error telling how to re-lock.",
    ),
}

# Debian's release architectures (bookworm and trixie): the repositories deb_repository declares
# when `architectures` is not given (a repository that nothing uses is never fetched; declaring
# one costs a few milliseconds of WORKSPACE evaluation, hence not every port). A lock with
# another architecture needs it listed in `architectures`.
DEBIAN_ARCHITECTURES = [
    "amd64",
    "arm64",
    "armel",
    "armhf",
    "i386",
    "mips64el",
    "ppc64el",
    "riscv64",
    "s390x",
]

_INTERNAL_ATTRS = {
    "apparent_name": attr.string(
        doc = "The name users refer to (module extensions give the repository a longer canonical name).",
    ),
}

deb_repository_rule = repository_rule(
    implementation = _deb_repository_impl,
    doc = "The lock of a deb_lock and `@<name>//:<arch>` aliases to the per-architecture repositories.",
    attrs = dict(DEB_REPOSITORY_ATTRS, **dict(_INTERNAL_ATTRS, declared = attr.string_list(
        doc = "The architectures whose repositories were declared (`<name>__<arch>`).",
    ))),
)

deb_arch_repository_rule = repository_rule(
    implementation = _deb_arch_repository_impl,
    doc = "Fetches exactly the .deb files of one architecture pinned (by sha256) in a deb_lock lock file.",
    attrs = dict(DEB_REPOSITORY_ATTRS, **dict(_INTERNAL_ATTRS, architecture = attr.string(
        mandatory = True,
        doc = "The Debian architecture of the lock to fetch.",
    ))),
)

def deb_repository(name, **kwargs):
    """The Debian packages of a deb_lock lock file, as `@name//:<architecture>`.

    Declares `@name` (the lock, and an alias per architecture) and `@name__<arch>` for each
    architecture (of `architectures`, default: Debian's release architectures): only the ones
    a build uses are fetched.

    Args:
      name: repository name.
      **kwargs: lock (label, required), archives, snapshots, architectures, apt_dir, update_target.
    """
    archs = kwargs.get("architectures") or DEBIAN_ARCHITECTURES
    for arch in archs:
        deb_arch_repository_rule(name = arch_repository_name(name, arch), apparent_name = name, architecture = arch, **kwargs)
    deb_repository_rule(name = name, apparent_name = name, declared = archs, **kwargs)
