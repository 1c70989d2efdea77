"""deb_lock: `bazel run //pkg:<name>.update` resolves a package manifest into a lock file.

    deb_lock(
        name = "lock",
        manifest = "packages.json",          # suites, architectures, packages (see deb_lock.py)
        lock = "packages.lock.json",         # written in the source tree, next to the BUILD file
    )

`bazel run //pkg:lock.update` runs python_tools/deb_lock.py: it verifies each suite's Release
signature (gpgv, Debian archive keyring) and each Packages index checksum, resolves Depends and
Pre-Depends, and rewrites `pkg/packages.lock.json`, printing what changed. Archive URLs come from
`archives` or the machine's apt sources at run time. Commit the lock; `deb_repository` fetches it.

With `snapshots` (snapshot archive roots, the same list as the deb_repository's), the lock is
resolved against the snapshot archives at a timestamp it records, so every pinned .deb stays
fetchable after the mirrors drop it:

    deb_lock(
        name = "lock",
        manifest = "packages.json",
        lock = "packages.lock.json",
        snapshots = [
            "http://snapshot.example/archive/debian",
            "http://snapshot.example/archive/debian-security",
        ],
    )

`bazel run //pkg:lock.update -- --snapshot=20250520T000000Z` resolves at a chosen time.
"""

load("//rules/private/common:launcher.bzl", "runfile_arg", "write_launcher")

def _deb_lock_impl(ctx):
    if ctx.attr.lock.startswith("/") or ".." in ctx.attr.lock.split("/") or not ctx.attr.lock.endswith(".json"):
        fail("%s: attribute 'lock': %r: must be a relative path ending in .json (in the package)" %
             (ctx.label, ctx.attr.lock))
    lock_path = ctx.attr.lock
    if ctx.label.package:
        lock_path = ctx.label.package + "/" + lock_path
    if ctx.label.workspace_root:
        fail("%s: deb_lock targets must be in the main repository (the lock is written there)" % ctx.label)
    extra = []
    for suite, url in sorted(ctx.attr.archives.items()):
        if not url:
            fail("%s: attribute 'archives': %r: empty URL" % (ctx.label, suite))
        extra.append("--archive=%s=%s" % (suite, url))
    for root in ctx.attr.snapshots:
        if not (root.startswith("http://") or root.startswith("https://") or root.startswith("file://")):
            fail("%s: attribute 'snapshots': %r: expected an http, https or file URL" % (ctx.label, root))
        extra.append("--snapshot_archive=" + root)
    if ctx.attr.keyring:
        extra.append("--keyring=" + ctx.attr.keyring)
    if ctx.attr.ignore_valid_until:
        extra.append("--ignore_valid_until")
    manifest = ctx.file.manifest
    tool = ctx.executable._tool
    launcher = ctx.actions.declare_file(ctx.label.name)
    write_launcher(
        ctx,
        launcher,
        tool,
        [
            "lock",
            runfile_arg(manifest, "--manifest="),
            "--lock=" + lock_path,
            "--target=" + str(ctx.label),
        ] + extra,
        what = "deb_lock launcher (resolves %s, writes %s; extra flags go to deb_lock.py lock)" % (manifest.short_path, lock_path),
        bzl = "rules/private/deb_lock.bzl",
        preamble = """if [[ -z "${BUILD_WORKSPACE_DIRECTORY:-}" ]]; then
  echo "ERROR: %s: run it with bazel run %s (it writes %s in the source tree)" >&2
  exit 1
fi""" % (ctx.label, ctx.label, lock_path),
    )
    runfiles = ctx.runfiles(files = [launcher, tool, manifest])
    runfiles = runfiles.merge(ctx.attr._tool[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = launcher, files = depset([launcher]), runfiles = runfiles)]

deb_lock_rule = rule(
    implementation = _deb_lock_impl,
    executable = True,
    doc = "Runnable: resolves a Debian package manifest and writes its lock file. Use `deb_lock`.",
    attrs = {
        "manifest": attr.label(
            mandatory = True,
            allow_single_file = [".json"],
            doc = "JSON manifest: suites, components, architectures, packages, exclude (see python_tools/deb_lock.py).",
        ),
        "lock": attr.string(
            mandatory = True,
            doc = "Lock file to write, relative to the package (e.g. \"packages.lock.json\").",
        ),
        "archives": attr.string_dict(
            doc = "Archive URL per suite ({\"*\": URL} for all). Default: the machine's apt sources.",
        ),
        "snapshots": attr.string_list(
            doc = "Snapshot archive roots, in order, e.g. [\"http://snapshot.example/archive/debian\", " +
                  "\"http://snapshot.example/archive/debian-security\"]: each holds `<TIMESTAMP>/dists/...` " +
                  "and `<TIMESTAMP>/pool/...` (the layout of Debian's snapshot service). When set, every " +
                  "suite is resolved from `<root>/<TIMESTAMP>/` (the first root that has it) instead of " +
                  "`archives` or the apt sources, `Valid-Until` is checked at TIMESTAMP, and the lock " +
                  "records TIMESTAMP (`\"snapshot\"`): give deb_repository the same `snapshots` and the " +
                  "build keeps working after the mirrors drop the locked versions. TIMESTAMP " +
                  "(YYYYMMDDTHHMMSSZ): `-- --snapshot=...` on the command line, else the previous lock's " +
                  "when nothing else changed, else the current time.",
        ),
        "keyring": attr.string(
            doc = "OpenPGP keyring verifying the Release files (absolute, or relative to the workspace). " +
                  "Default: /usr/share/keyrings/debian-archive-keyring.gpg.",
        ),
        "ignore_valid_until": attr.bool(
            doc = "Accept Release files past their Valid-Until date (a stale mirror, or a copy of an " +
                  "old archive; `snapshots` are checked at their own time and need no such thing).",
        ),
        "_tool": attr.label(
            default = "//python_tools:deb_lock",
            executable = True,
            cfg = "target",
            doc = "The resolver, run by the launcher.",
        ),
    },
)

def deb_lock(name, manifest, lock, **kwargs):
    """`bazel run //pkg:<name>.update` resolves `manifest` and (re)writes `lock` in the package.

    Args:
      name: base name; the runnable target is `<name>.update`.
      manifest: label of the JSON manifest (suites, architectures, packages, exclude).
      lock: lock file name relative to the package (commit it; deb_repository reads it).
      **kwargs: archives, snapshots, keyring, ignore_valid_until, and common attributes (visibility, tags).
    """
    deb_lock_rule(
        name = name + ".update",
        manifest = manifest,
        lock = lock,
        **kwargs
    )
