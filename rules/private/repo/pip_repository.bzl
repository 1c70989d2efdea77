"""pip_lock_repository: Python wheels pinned by a hashed lock file, fetched by pip in the build.

The generated repository mirrors the layout of a rules_python `pip.parse` hub, so BUILD files
refer to the same labels in WORKSPACE and MODULE mode:

    @<name>//<normalized_name>        py_library of one package (e.g. @rules_shiko_pip//absl_py)
    @<name>//<normalized_name>:pkg    the same (alias)
    @<name>//:requirements.bzl        requirement("absl-py") -> Label("@<name>//absl_py")
    @<name>//<normalized_name>:site-packages/<path>   any file of the unpacked wheel (exported,
                                      e.g. a tool a wheel ships: protoc, a Go binary, ...)

pip runs with the machine's own configuration (pip.conf, PIP_* variables): no index host is
ever written in the repository. Every wheel is checked against the lock's hashes by pip
(--require-hashes); a mismatch fails with the package named. Wheels may be fetched for a
platform other than the host's (`platforms`, `python_version`), for images of another
architecture.
"""

load(":host.bzl", "file_sha256", "find_python", "host_arch")

_PIP_ENV = [
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_CONFIG_FILE",
    "PIP_CERT",
    "PIP_TRUSTED_HOST",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
    "HOME",
    "SHIKO_PYTHON",
]

def normalize_name(name):
    """PEP 503 name, then rules_python's label form: lower case, runs of -_. become _."""
    out = []
    prev_sep = False
    for c in name.lower().elems():
        if c in "-_.":
            if not prev_sep:
                out.append("_")
            prev_sep = True
        else:
            out.append(c)
            prev_sep = False
    return "".join(out)

def parse_lock(content):
    """Returns [(name, version)] of the `name==version` requirements in a hashed lock file."""
    reqs = []
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("--hash") or line.startswith("-"):
            continue
        spec = line.split(" ")[0].split(";")[0].rstrip("\\").strip()
        if "==" not in spec:
            continue
        name, version = spec.split("==", 1)
        name = name.split("[")[0]
        reqs.append((name.strip(), version.strip()))
    return reqs

def lock_hashes(content):
    """{normalized name: [sha256 hex]} of a hashed lock file: each package's `--hash` values."""
    out = {}
    current = None
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        first = line.split(" ")[0]
        if not first.startswith("-") and "==" in first:
            current = normalize_name(first.split("==", 1)[0].split("[")[0].strip())
            out.setdefault(current, [])
        for part in line.split(" "):
            if part.startswith("--hash=sha256:") and current != None:
                out[current].append(part[len("--hash=sha256:"):].rstrip("\\"))
    return out

def _glibc(plat):
    """(arch, glibc minor) of a manylinux platform tag; (arch, None) for others, ("", None) for any."""
    if plat == "any":
        return "", None
    for legacy, minor in (("manylinux1_", 5), ("manylinux2010_", 12), ("manylinux2014_", 17)):
        if plat.startswith(legacy):
            return plat[len(legacy):], minor
    if plat.startswith("manylinux_2_"):
        rest = plat[len("manylinux_2_"):]
        minor, _, arch = rest.partition("_")
        if minor.isdigit():
            return arch, int(minor)
    return plat, None

def wheel_platform_ok(plat, platforms):
    """Whether pip would take a wheel of platform tag `plat` for one of the requested platforms."""
    if plat == "any":
        return True
    arch, minor = _glibc(plat)
    for want in platforms:
        want_arch, want_minor = _glibc(want)
        if plat == want:
            return True
        if minor != None and want_minor != None and arch == want_arch and minor <= want_minor:
            return True
    return False

def wheel_python_ok(interp, abi, pyver):
    """Whether pip would take a wheel of (interpreter, abi) tags for CPython `pyver` (e.g. 3.11)."""
    cp = "cp" + pyver.replace(".", "")
    if abi == "none":
        return interp in ("py3", "py" + pyver.replace(".", ""), cp) or interp.startswith("py3")
    if abi == cp:
        return interp == cp
    if abi == "abi3" and interp.startswith("cp3"):
        return interp[3:].isdigit() and int(interp[3:]) <= int(pyver.split(".")[1])
    return False

def _wheel_tags(rctx, site_packages):
    """(dist-info stem, [(interp, abi, plat)]) read from an unpacked wheel's WHEEL file."""
    for d in rctx.path(site_packages).readdir():
        if d.basename.endswith(".dist-info") and d.get_child("WHEEL").exists:
            tags = []
            for line in rctx.read(d.get_child("WHEEL")).splitlines():
                if line.startswith("Tag:"):
                    parts = line[len("Tag:"):].strip().split("-")
                    if len(parts) == 3:
                        tags.append((parts[0], parts[1], parts[2]))
            return d.basename[:-len(".dist-info")], tags
    return None, []

def wheel_file_name(stem, tags):
    """The wheel's file name, as its tags compress into it (`name-ver-py3-none-any.whl`)."""
    groups = [[], [], []]
    for t in tags:
        for i in range(3):
            if t[i] not in groups[i]:
                groups[i].append(t[i])
    return "%s-%s.whl" % (stem, "-".join([".".join(g) for g in groups]))

def _from_repository_cache(rctx, versions, hashes, platforms, pyver):
    """{norm: (unpacked dir, wheel name, zip)} of every pinned wheel, from Bazel's repository
    cache by sha256 (no pip, no network); None unless each package has exactly one cached,
    compatible wheel (anything else is left to pip, which picks as it always has). The unpacked
    dir of the wheel taken is kept (it becomes the package's site-packages); the others' are
    removed."""
    found = {}
    for norm in sorted(versions):
        hits = []
        for h in hashes.get(norm, []):
            zip_name = "_wheels/%s.zip" % h
            res = rctx.download(["file:///shiko-repository-cache-only/" + h], output = zip_name, sha256 = h, allow_fail = True)
            if not res.success:
                continue
            out = "_unpacked/" + h
            rctx.extract(zip_name, output = out)
            stem, tags = _wheel_tags(rctx, out)
            if stem and [t for t in tags if wheel_python_ok(t[0], t[1], pyver) and wheel_platform_ok(t[2], platforms)]:
                hits.append((out, wheel_file_name(stem, tags), zip_name))
            else:
                rctx.delete(out)
        if len(hits) != 1:
            rctx.delete("_unpacked")
            return None
        found[norm] = hits[0]
    return found

def _remember_in_repository_cache(rctx, wheel, hashes):
    """Puts a wheel pip downloaded into Bazel's repository cache (by its pinned sha256); returns
    that sha256 ("" if none of the lock's hashes fits, which pip has already refused). The hash
    is computed from the file first: a download given an expected sha256 is answered from the
    repository cache when it holds that hash, whatever the file (another platform's wheel of
    the same package would pass for this one)."""
    got = file_sha256(rctx, wheel, "_remember/probe")
    if got not in hashes:
        return ""
    rctx.download(["file://" + str(wheel)], output = "_remember/" + got, sha256 = got)
    return got

def _host_platform(rctx):
    arch, raw = host_arch(rctx)
    if arch:
        return {"amd64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}[arch]
    fail("pip_lock_repository: unsupported host architecture %r; set `platforms`" % raw)

def _find_python(rctx):
    path, tried = find_python(rctx, rctx.attr.python_interpreter, needs_pip = True)
    if path:
        return path
    fail(("%s: no Python with pip to fetch wheels; tried %s. " +
          "Install one (apt-get install python3-pip) or set python_interpreter / $SHIKO_PYTHON.") %
         (rctx.name, ", ".join(tried)))

def _explain_pip_failure(rctx, result):
    err = result.stderr + result.stdout
    if "DO NOT MATCH THE HASHES" in err:
        bad = []
        for line in err.splitlines():
            if "Expected sha256" in line or (" from " in line and "==" in line):
                bad.append(line.strip())
        fail(("%s: wheel hash mismatch against lock %s — the downloaded file is not the pinned " +
              "one (tampered, or the lock is wrong):\n  %s") %
             (rctx.name, rctx.attr.requirements_lock, "\n  ".join(bad) or err))
    fail("%s: pip download failed (exit %d) for lock %s:\n%s" %
         (rctx.name, result.return_code, rctx.attr.requirements_lock, err))

def _metadata_requires(content):
    """Names from Requires-Dist lines of a METADATA file, skipping extras-only ones."""
    names = []
    for line in content.splitlines():
        if not line.startswith("Requires-Dist:"):
            if line == "":
                break
            continue
        spec = line[len("Requires-Dist:"):].strip()
        if ";" in spec and "extra" in spec.split(";", 1)[1]:
            continue
        name = ""
        for c in spec.elems():
            if c.isalnum() or c in "-_.":
                name += c
            else:
                break
        if name:
            names.append(normalize_name(name))
    return names

_PKG_BUILD = """\
# Generated by rules_shiko's pip_lock_repository from {lock}: {name}=={version}
load("@rules_python//python:defs.bzl", "py_library")

package(default_visibility = ["//visibility:public"])

py_library(
    name = "{norm}",
    srcs = glob(["site-packages/**/*.py"], allow_empty = True),
    # Plus the wheel's identity for SBOMs (name, version, file, sha256 from the lock). Images
    # leave it out (rules/private/layer/runfiles_layers.bzl); it rides in runfiles to reach them.
    data = ["{metadata}"] + glob(
        ["site-packages/**"],
        exclude = ["site-packages/**/*.py", "site-packages/**/*.pyc", "site-packages/**/* *"],
        allow_empty = True,
    ),
    imports = ["site-packages"],
    deps = {deps},
)

alias(
    name = "pkg",
    actual = ":{norm}",
)

filegroup(
    name = "whl",
    srcs = ["{wheel}"],
)

# Every file of the wheel can be named directly, e.g. an executable it ships.
exports_files(glob(["site-packages/**"], exclude = ["site-packages/**/* *"], allow_empty = True))
"""

def _pip_lock_repository_impl(rctx):
    lock_path = rctx.path(rctx.attr.requirements_lock)
    reqs = parse_lock(rctx.read(lock_path))
    if not reqs:
        fail("%s: attribute 'requirements_lock': %s holds no `name==version` lines" %
             (rctx.name, rctx.attr.requirements_lock))
    versions = {normalize_name(n): (n, v) for n, v in reqs}

    platforms = rctx.attr.platforms or [_host_platform(rctx)]
    pyver = rctx.attr.python_version
    hashes = lock_hashes(rctx.read(lock_path))
    cached = _from_repository_cache(rctx, versions, hashes, platforms, pyver)
    if cached != None:
        _write_packages(
            rctx,
            versions,
            {n: (rctx.path(c[2]), c[1], c[2].split("/")[-1][:-len(".zip")]) for n, c in cached.items()},
            unpacked = {n: c[0] for n, c in cached.items()},
        )
        return

    python = _find_python(rctx)
    abi = "cp" + pyver.replace(".", "")
    args = [
        python,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--require-hashes",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        "--python-version",
        pyver,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
        "-d",
        "wheels",
        "-r",
        str(lock_path),
    ]
    for p in platforms:
        args += ["--platform", p]
    for p in rctx.attr.extra_pip_args:
        args.append(p)
    rctx.report_progress("pip download (%d pinned packages)" % len(reqs))
    result = rctx.execute(args, timeout = rctx.attr.timeout, quiet = True)
    if result.return_code != 0:
        _explain_pip_failure(rctx, result)

    wheels = {}
    for f in rctx.path("wheels").readdir():
        base = f.basename
        if not base.endswith(".whl"):
            continue
        wheels[normalize_name(base.split("-")[0])] = f
    missing = [versions[n][0] for n in versions if n not in wheels]
    if missing:
        fail("%s: pip fetched no wheel for %s (lock %s, platforms %s, python %s)" %
             (rctx.name, ", ".join(missing), rctx.attr.requirements_lock, platforms, pyver))
    sha256 = {}
    for norm in sorted(versions):
        # The next fetch of this lock (another output base, another checkout) needs no pip.
        sha256[norm] = _remember_in_repository_cache(rctx, wheels[norm], hashes.get(norm, []))
    rctx.delete("_remember")
    _write_packages(rctx, versions, {n: (wheels[n], wheels[n].basename, sha256[n]) for n in versions})

WHEEL_METADATA = "rules_shiko_wheel.json"

def _write_packages(rctx, versions, wheels, unpacked = {}):
    """One py_library package per pinned wheel; wheels: {norm: (wheel file, its name, sha256)};
    unpacked: {norm: a directory of the repository where the wheel is already unpacked}."""
    lock_sha256 = file_sha256(rctx, rctx.path(rctx.attr.requirements_lock), "_lock_sha256")
    for norm in sorted(versions):
        name, version = versions[norm]
        whl, whl_name, whl_sha256 = wheels[norm]
        rctx.file("%s/%s" % (norm, WHEEL_METADATA), json.encode({
            "name": name,
            "version": version,
            "filename": whl_name,
            "sha256": whl_sha256,
            "lock": str(rctx.attr.requirements_lock),
            "lock_sha256": lock_sha256,
        }) + "\n")

        if norm in unpacked:
            # Unpacked once already (to read its tags): the same files, not a second extraction.
            rctx.symlink(unpacked[norm], norm + "/site-packages")
        else:
            # Bazel 4's extract() refuses the .whl suffix: give it a .zip name.
            rctx.symlink(whl, "_zips/%s.zip" % norm)
            rctx.extract("_zips/%s.zip" % norm, output = norm + "/site-packages")
        rctx.symlink(whl, "%s/%s" % (norm, whl_name))
        deps = []
        for d in rctx.path(norm + "/site-packages").readdir():
            if d.basename.endswith(".dist-info"):
                meta = d.get_child("METADATA")
                if meta.exists:
                    deps = [
                        "//" + r
                        for r in _metadata_requires(rctx.read(meta))
                        if r in versions and r != norm
                    ]
        rctx.file(norm + "/BUILD.bazel", _PKG_BUILD.format(
            lock = rctx.attr.requirements_lock,
            name = name,
            version = version,
            norm = norm,
            deps = repr(sorted({d: None for d in deps}.keys())),
            wheel = whl_name,
            metadata = WHEEL_METADATA,
        ))
    rctx.delete("_zips")

    rctx.file("BUILD.bazel", "# Generated by rules_shiko's pip_lock_repository.\nexports_files([\"requirements.bzl\"])\n")
    write_requirements_bzl(rctx, sorted(versions.keys()))

def write_requirements_bzl(rctx, packages):
    """requirements.bzl of a wheel repository (pip_lock_repository, pip_hub_repository):
    requirement(name) -> the package's Label, and all_requirements."""
    rctx.file("requirements.bzl", """\
\"\"\"Generated: maps a requirement name to its py_library label in @{repo}.\"\"\"

_PACKAGES = {packages}

def requirement(name):
    norm = name.lower().replace("-", "_").replace(".", "_")
    if norm not in _PACKAGES:
        fail("requirement %r is not in the lock of @{repo}" % name)

    # A Label, resolved here: right whatever name the caller's repository mapping gives @{repo}.
    return Label("//" + norm)

all_requirements = [Label("//" + p) for p in _PACKAGES]
""".format(repo = rctx.attr.apparent_name or rctx.name, packages = repr(packages)))

PIP_LOCK_ATTRS = {
    "requirements_lock": attr.label(
        mandatory = True,
        allow_single_file = True,
        doc = "Lock file in pip's format: `name==version` with one or more `--hash=sha256:` per package.",
    ),
    "platforms": attr.string_list(
        doc = "pip platform tags of the wheels to fetch (e.g. manylinux2014_aarch64). Default: the host's.",
    ),
    "python_version": attr.string(
        default = "3.11",
        doc = "Python version the wheels are for (CPython ABI cpXY, abi3 and pure wheels accepted).",
    ),
    "python_interpreter": attr.string(
        doc = "Python with pip used to download (name on PATH or absolute path). Default: $SHIKO_PYTHON, python3.",
    ),
    "extra_pip_args": attr.string_list(
        doc = "Extra arguments for `pip download` (index options belong in the machine's pip configuration).",
    ),
    "timeout": attr.int(
        default = 600,
        doc = "Seconds pip may take.",
    ),
}

pip_lock_repository = repository_rule(
    implementation = _pip_lock_repository_impl,
    doc = "Fetches the wheels pinned (with hashes) in a requirements lock and makes one py_library per package.",
    attrs = dict(PIP_LOCK_ATTRS, apparent_name = attr.string(
        doc = "The name users refer to (module extensions give the repository a longer canonical name); default: the repository's name.",
    )),
    environ = _PIP_ENV,
)
