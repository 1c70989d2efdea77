"""deb_repository: the Debian packages pinned by a deb_lock lock file, fetched into a repository.

    deb_repository(
        name = "distroless_python3_debs",
        lock = "//examples/distroless:packages.lock.json",
        update_target = "//examples/distroless:lock.update",   # named in the "re-lock" error
    )

Each locked .deb is fetched with `rctx.download(url, sha256 = <the lock's>)`, so Bazel checks it
and keeps it in the repository cache (a new output base or checkout downloads nothing). URLs are
`<archive URL of the package's suite>/<path>`; archive URLs come from `archives` or, by default,
from the machine's apt sources (read by python_tools/deb_lock.py `sources` with the host's
python3): no host name is ever written in the repository.

The repository holds, per architecture A of the lock:
    @<name>//:A                 filegroup: A/packages.json (the lock's entries) + A/<package>.deb
    @<name>//:lock.json         the lock itself
Pass `@<name>//:A` to `deb_layer` / `distroless_base` (packages = ...).

Errors: a .deb whose sha256 is not the lock's names the package and both digests; a version the
archive no longer has (Debian removes superseded versions) says how to re-lock.
"""

load(":host.bzl", "find_python", "label_name")

_TOOL = Label("//python_tools:deb_lock.py")

_label_name = label_name

def _find_python(rctx):
    path, _ = find_python(rctx)
    if path:
        return path
    fail("@%s: deb_repository needs a python3 on PATH (or $SHIKO_PYTHON) to read the apt sources; " %
         _label_name(rctx) + "or set `archives` for every suite of the lock")

def _archive_urls(rctx, suites):
    """{suite: [URL, ...]} from `archives`, else from the machine's apt sources."""
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

def _fetch(rctx, name, entry, arch, urls, output):
    """Downloads one locked .deb (verified by Bazel against the lock's sha256)."""
    full = [u + "/" + entry["path"] for u in urls]
    res = rctx.download(full, output = output, sha256 = entry["sha256"], allow_fail = True)
    if res.success:
        return

    # Why? Fetch without the checksum to tell a changed file from a vanished one. (Not with
    # rctx.download: after a checksum failure Bazel 4 fails the same URL again without asking.)
    probe = rctx.execute([_find_python(rctx), str(rctx.path(_TOOL)), "probe"] +
                         ["--url=" + u for u in full], quiet = True, timeout = 600)
    found = {}
    if probe.return_code == 0 and probe.stdout.strip().startswith("{"):
        found = json.decode(probe.stdout)
    if found.get("sha256") == entry["sha256"]:
        fail("@%s: package '%s' %s (%s): the download of %s failed, then succeeded: retry the build" %
             (name, entry["name"], entry["version"], arch, " or ".join(full)))
    if "sha256" in found:
        fail(("@%s: package '%s' %s (%s): sha256 mismatch: the archive serves %s, the lock says %s " +
              "(%s). The file is not the locked one: a tampered mirror, or a lock edited by hand. " +
              "Re-lock only if you trust the archive: %s") %
             (
                 name,
                 entry["name"],
                 entry["version"],
                 arch,
                 found["sha256"],
                 entry["sha256"],
                 found.get("url", " or ".join(full)),
                 _relock_hint(rctx),
             ))
    error = found.get("error", (probe.stderr or probe.stdout).strip())
    if "HTTP 404" in error or "HTTP 410" in error or "no such file" in error:
        fail(("@%s: package '%s' %s (%s) is no longer in the archive (%s): Debian removes " +
              "superseded versions from its pool. Re-lock to the current versions: %s") %
             (name, entry["name"], entry["version"], arch, error, _relock_hint(rctx)))
    fail("@%s: package '%s' %s (%s) could not be fetched: %s" %
         (name, entry["name"], entry["version"], arch, error or " or ".join(full)))

def _deb_repository_impl(rctx):
    name = _label_name(rctx)
    lock = json.decode(rctx.read(rctx.path(rctx.attr.lock)))
    if type(lock) != "dict" or lock.get("lock_version") != 1 or type(lock.get("architectures")) != "dict":
        fail("@%s: attribute 'lock': %s: not a deb_lock lock file (lock_version 1); re-lock: %s" %
             (name, rctx.attr.lock, _relock_hint(rctx)))
    suites = lock.get("suites", [])
    urls = _archive_urls(rctx, suites)
    archs = rctx.attr.architectures or sorted(lock["architectures"].keys())
    build = [
        "# Generated by rules_shiko's deb_repository from %s." % rctx.attr.lock,
        "package(default_visibility = [\"//visibility:public\"])",
        "",
        "exports_files([\"lock.json\"])",
        "",
    ]
    for arch in archs:
        if arch not in lock["architectures"]:
            fail("@%s: attribute 'architectures': %r: the lock has %s only" %
                 (name, arch, ", ".join(sorted(lock["architectures"].keys()))))
        entries = lock["architectures"][arch]["packages"]
        files = [arch + "/packages.json"]
        for i, e in enumerate(entries):
            if e["suite"] not in urls:
                fail("@%s: package '%s' (%s) comes from suite %r, which the lock's suites don't list" %
                     (name, e["name"], arch, e["suite"]))
            rctx.report_progress("%s: %s %s (%d/%d)" % (arch, e["name"], e["version"], i + 1, len(entries)))
            out = "%s/%s.deb" % (arch, e["name"])
            _fetch(rctx, name, e, arch, urls[e["suite"]], out)
            files.append(out)
        rctx.file(arch + "/packages.json", json.encode({
            "architecture": arch,
            "suites": suites,
            "packages": entries,
        }))
        build += [
            "filegroup(",
            "    name = \"%s\"," % arch,
            "    srcs = %s," % repr(files),
            ")",
            "",
        ]
    rctx.file("lock.json", json.encode_indent(lock, indent = "  ") + "\n")
    rctx.file("WORKSPACE", "workspace(name = \"%s\")\n" % name)
    rctx.file("BUILD.bazel", "\n".join(build))

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
    "architectures": attr.string_list(
        doc = "Architectures of the lock to fetch. Default: all of them.",
    ),
    "apt_dir": attr.string(
        default = "/etc/apt",
        doc = "Where the machine's apt sources are (sources.list, sources.list.d/*.list and *.sources).",
    ),
    "update_target": attr.string(
        doc = "The deb_lock `.update` target, named in the error telling how to re-lock.",
    ),
}

deb_repository_rule = repository_rule(
    implementation = _deb_repository_impl,
    doc = "Fetches exactly the .deb files pinned (by sha256) in a deb_lock lock file.",
    attrs = dict(DEB_REPOSITORY_ATTRS, apparent_name = attr.string(
        doc = "The name users refer to (module extensions give the repository a longer canonical name).",
    )),
)

def deb_repository(name, **kwargs):
    """The Debian packages of a deb_lock lock file, as `@name//:<architecture>` filegroups.

    Args:
      name: repository name.
      **kwargs: lock (label, required), archives, architectures, apt_dir, update_target.
    """
    deb_repository_rule(name = name, apparent_name = name, **kwargs)
