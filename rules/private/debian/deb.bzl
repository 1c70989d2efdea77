"""Layers and distroless bases from locked Debian packages (see deb_lock.bzl, deb_repository.bzl).

    deb_layer(name = "libs", packages = "@debs//:amd64", architecture = "amd64", include = ["*"])
    distroless_base(
        name = "python3",
        packages = "@debs//:amd64",
        architecture = "amd64",
        groups = {"libc": ["libc6", ...], "libs": ["*"], "python": ["python3.11-minimal", ...]},
        user = "nonroot",
    )

A `deb_tar` target (python_tools/deb.py) unpacks the selected packages' data.tar into one tar
(no docs unless keep_docs, dpkg status records in /var/lib/dpkg/status.d/, the CA bundle, ...),
which an `image_layer` imports (`tars`), so the layer tool writes it reproducibly. When the
layer imports that one tar at its root (as deb_layer does), the layer's own action unpacks the
packages (DebTarInfo) and writes the inventory too: the same bytes, without an intermediate tar
for Bazel to write, hash and read back; the deb_tar's own action runs only when its tar is
asked for.
"""

load("//rules/private/common:macros.bzl", "helper_kwargs")
load("//rules/private/common:providers.bzl", "DebPackagesInfo", "DebTarInfo")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load("//rules/private/common:worker.bzl", "WORKER_REQUIREMENTS", "worker_args")
load("//rules/private/image:image.bzl", "image")
load("//rules/private/layer:layer.bzl", "image_layer")

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

def _packages(ctx):
    """(index File, {package name: [File, ...]}) of the `packages` attribute: each package's
    .deb, or its plain control.tar and data.tar (deb_repository.bzl: when the lock pins them)."""
    index = None
    debs = {}
    for f in ctx.attr.packages[DefaultInfo].files.to_list():
        if f.basename == "packages.json":
            index = f
            continue
        for suffix in (".deb", ".control.tar", ".data.tar"):
            if f.basename.endswith(suffix):
                debs.setdefault(f.basename[:-len(suffix)], []).append(f)
    if index == None:
        fail("%s: attribute 'packages': %s: not a deb_repository architecture (@repo//:<arch>: " %
             (ctx.label, ctx.attr.packages.label) + "packages.json and .deb files)")
    return index, debs

def _deb_entry(name, files):
    """The manifest's entry of one package (python_tools/deb.py) from its files."""
    entry = {"name": name}
    for f in files:
        if f.basename.endswith(".deb"):
            entry["src"] = f.path
        elif f.basename.endswith(".control.tar"):
            entry["control"] = f.path
        else:
            entry["data"] = f.path
    return entry

def _deb_tar_impl(ctx):
    target = str(ctx.label)
    index, debs = _packages(ctx)
    for n in ctx.attr.include + ctx.attr.exclude:
        if n != "*" and n not in debs:
            fail("%s: attribute '%s': %r: not a package of %s (it has: %s)" % (
                target,
                "include" if n in ctx.attr.include else "exclude",
                n,
                ctx.attr.packages.label,
                ", ".join(sorted(debs.keys())),
            ))
    if "*" in ctx.attr.include:
        names = [n for n in sorted(debs.keys()) if n not in ctx.attr.exclude]
    else:
        names = [n for n in ctx.attr.include if n not in ctx.attr.exclude]
    if not names and not ctx.attr.allow_empty:
        fail("%s: attribute 'include': %r: selects no package of %s" % (target, ctx.attr.include, ctx.attr.packages.label))
    selected = []
    entries = []
    for n in names:
        entries.append(_deb_entry(n, debs[n]))
        selected += debs[n]
    manifest = {
        "target": target,
        "architecture": ctx.attr.architecture,
        "index": index.path,
        "debs": entries,
        "keep_docs": ctx.attr.keep_docs,
        "basics": None,
    }
    return _run_deb_tool(ctx, manifest, [index] + selected, "Unpacking %d Debian packages for %s" % (len(names), ctx.label))

def _run_deb_tool(ctx, manifest, inputs, message):
    manifest_file = ctx.actions.declare_file(ctx.label.name + ".deb_manifest.json")
    ctx.actions.write(manifest_file, json.encode(manifest))
    out = ctx.actions.declare_file(ctx.label.name + ".tar")
    inventory = ctx.actions.declare_file(ctx.label.name + ".packages.json")
    args = worker_args(ctx)
    args.add("--manifest", manifest_file)
    args.add("--output", out)
    args.add("--packages", inventory)
    ctx.actions.run(
        executable = tool_executable(ctx, "_deb_tool"),
        tools = tool_inputs(ctx, "_deb_tool"),
        arguments = [args],
        inputs = depset([manifest_file] + inputs),
        outputs = [out, inventory],
        mnemonic = "ShikoDeb",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = message,
    )
    return [
        DefaultInfo(files = depset([out])),
        DebPackagesInfo(inventory = inventory),
        DebTarInfo(manifest = manifest_file, inputs = depset([manifest_file] + inputs)),
        OutputGroupInfo(packages = depset([inventory])),
    ]

_COMMON_ATTRS = {
    "packages": attr.label(
        mandatory = True,
        allow_files = True,
        doc = "One architecture of a deb_repository: `@repo//:amd64` (packages.json and the .deb files).",
    ),
    "architecture": attr.string(
        mandatory = True,
        doc = "The image's architecture (amd64, arm64, ...): every package must be built for it or `all`.",
    ),
    "_deb_tool": attr.label(
        default = "//python_tools:deb",
        executable = True,
        cfg = "exec",
        doc = "Unpacks .deb files into a tar.",
    ),
}

deb_tar = rule(
    implementation = _deb_tar_impl,
    doc = "Unpacks locked Debian packages into one tar (see python_tools/deb.py). Use `deb_layer`.",
    attrs = dict(_COMMON_ATTRS, **{
        "include": attr.string_list(
            default = ["*"],
            doc = "Package names to unpack; [\"*\"] means all of `packages`.",
        ),
        "exclude": attr.string_list(
            doc = "Package names left out (those that go into other layers).",
        ),
        "keep_docs": attr.bool(
            doc = "Keep /usr/share/doc, man pages, info, locales and lintian files (default: only copyright files).",
        ),
        "allow_empty": attr.bool(
            doc = "Allow selecting no package (an empty tar).",
        ),
    }),
)

def _basics_tar_impl(ctx):
    index, debs = _packages(ctx)
    manifest = {
        "target": str(ctx.label),
        "architecture": ctx.attr.architecture,
        "index": index.path,
        "debs": [],
        "keep_docs": False,
        "basics": {
            "os_release": ctx.attr.os_release or None,
            "has_base_files": "base-files" in debs,
        },
    }
    return _run_deb_tool(ctx, manifest, [index], "Writing the distroless basics of %s" % ctx.label)

distroless_basics_tar = rule(
    implementation = _basics_tar_impl,
    doc = "The files every distroless base carries: passwd, group, /tmp, /root, /home/nonroot, os-release.",
    attrs = dict(_COMMON_ATTRS, **{
        "os_release": attr.string(
            doc = "Content of /etc/os-release. Default: the base-files package's, or a generated one " +
                  "(Debian, the lock's codename) when base-files is not among the packages.",
        ),
    }),
)

def deb_layer(name, packages, architecture, include = None, exclude = None, keep_docs = False, allow_empty = False, **kwargs):
    """One image layer of locked Debian packages.

    Args:
      name: the image_layer target; `<name>_deb.tar` is the unpacked tar it imports.
      packages: `@repo//:<arch>` of a deb_repository.
      architecture: the image's architecture (checked against each package's).
      include: package names, or ["*"] (default) for all of `packages`.
      exclude: package names to leave out.
      keep_docs: keep docs, man pages, locales (default: only copyright files).
      allow_empty: accept a selection of no package.
      **kwargs: image_layer attributes (compression, compression_level, ...) and common ones.
    """
    deb_tar(
        name = name + "_deb",
        packages = packages,
        architecture = architecture,
        include = include or ["*"],
        exclude = exclude or [],
        keep_docs = keep_docs,
        allow_empty = allow_empty,
        **helper_kwargs(kwargs)
    )
    image_layer(
        name = name,
        tars = [":" + name + "_deb"],
        **kwargs
    )

# The CPU constraint of each Debian architecture a `packages` dict may name.
_ARCH_CPUS = {
    "amd64": "cpu_x86_64",
    "arm64": "cpu_arm64",
}

def _by_platform(name, packages, architecture):
    """(packages, architecture) for the rules: `packages` as given, or, for a dict
    {architecture: @repo//:<architecture>}, selects on the target platform's CPU."""
    if type(packages) != "dict":
        if architecture == None:
            fail("distroless_base %s: attribute 'architecture': None: required when `packages` is one label" % name)
        return packages, architecture
    if architecture != None:
        fail("distroless_base %s: attribute 'architecture': %r: comes from the target platform when `packages` is a dict" % (name, architecture))
    for arch in packages:
        if arch not in _ARCH_CPUS:
            fail("distroless_base %s: attribute 'packages': %r: not one of %s" % (name, arch, sorted(_ARCH_CPUS.keys())))
    settings = {arch: str(Label("//platforms:" + _ARCH_CPUS[arch])) for arch in packages}
    no_match = "distroless_base //%s:%s: attribute 'packages': no Debian packages locked for the target platform's CPU (locked: %s); nothing is taken from another platform" % (
        native.package_name(),
        name,
        ", ".join(sorted(packages.keys())),
    )
    return (
        select({settings[a]: packages[a] for a in packages}, no_match_error = no_match),
        select({settings[a]: a for a in packages}, no_match_error = no_match),
    )

def distroless_base(
        name,
        packages,
        architecture = None,
        groups = None,
        user = "root",
        keep_docs = False,
        os_release = None,
        env = None,
        compression = "gzip",
        **kwargs):
    """A distroless base image from locked Debian packages: no shell, no package manager.

    Layers, bottom first: the basics (/etc/passwd and /etc/group with root 0 and nonroot 65532,
    /tmp 1777, /root, /home/nonroot, /etc/os-release when base-files isn't installed), then one
    layer per entry of `groups`. Each package lands in exactly one layer.

    Args:
      name: the image target (`image` outputs: layout, .digest, tarball output group).
      packages: `@repo//:<arch>` of a deb_repository; or a dict {architecture: `@repo//:<arch>`}
        (amd64, arm64): the target platform's CPU picks one, so the same target builds for
        every platform of an image_index.
      architecture: amd64, arm64, ... (the config's; arm64 gets variant v8). Only with one
        `packages` label; with a dict, the target platform's.
      groups: ordered {layer name: [package names]}; one group may be ["*"]: every package not
        named in another group. Without a "*" group, the rest goes to a last layer "rest".
        Default: {"packages": ["*"]} (one layer).
      user: "root" (0:0, workdir /) or "nonroot" (65532:65532, workdir /home/nonroot).
      keep_docs: keep docs, man pages and locales.
      os_release: content of /etc/os-release (default: base-files', or a generated one).
      env: merged over {"PATH": the Debian default}.
      compression: of every layer (gzip, zstd, none).
      **kwargs: every other `image` attribute (entrypoint, cmd, labels, repo_tags, workdir, ...).
    """
    if user == "root":
        uid = "0:0"
        workdir = "/"
    elif user == "nonroot":
        uid = "65532:65532"
        workdir = "/home/nonroot"
    else:
        fail("distroless_base %s: attribute 'user': %r: must be \"root\" or \"nonroot\"" % (name, user))
    if groups == None:
        groups = {"packages": ["*"]}
    if type(groups) != "dict" or not groups:
        fail("distroless_base %s: attribute 'groups': must be a non-empty dict {layer name: [packages]}" % name)
    listed = []
    star = None
    for g, names in groups.items():
        if type(names) != "list" or not names:
            fail("distroless_base %s: attribute 'groups': %r: must be a non-empty list of package names" % (name, g))
        if "*" in names:
            if len(names) != 1:
                fail("distroless_base %s: attribute 'groups': %r: \"*\" must stand alone" % (name, g))
            if star != None:
                fail("distroless_base %s: attribute 'groups': %r and %r both say \"*\"" % (name, star, g))
            star = g
            continue
        for n in names:
            if n in listed:
                fail("distroless_base %s: attribute 'groups': package %r is in two groups" % (name, n))
            listed.append(n)
    order = list(groups.keys())
    if star == None:
        if "rest" in groups:
            fail("distroless_base %s: attribute 'groups': name a \"*\" group, or don't call a group \"rest\"" % name)
        groups = dict(groups)
        groups["rest"] = ["*"]
        order.append("rest")
        star = "rest"

    common = helper_kwargs(kwargs)
    fixed_arch = architecture
    packages, architecture = _by_platform(name, packages, architecture)

    distroless_basics_tar(
        name = name + "_basics",
        packages = packages,
        architecture = architecture,
        os_release = os_release,
        **common
    )
    image_layer(
        name = name + "_basics_layer",
        tars = [":" + name + "_basics"],
        compression = compression,
        **common
    )
    layers = [":" + name + "_basics_layer"]
    for g in order:
        names = groups[g]
        deb_layer(
            name = "%s_%s" % (name, g),
            packages = packages,
            architecture = architecture,
            include = names,
            exclude = listed if g == star else [],
            keep_docs = keep_docs,
            allow_empty = g == star,
            compression = compression,
            **common
        )
        layers.append(":%s_%s" % (name, g))

    full_env = {"PATH": _PATH}
    full_env.update(env or {})
    if "workdir" not in kwargs:
        kwargs["workdir"] = workdir
    if fixed_arch == "arm64" and "variant" not in kwargs:
        kwargs["variant"] = "v8"
    image(
        name = name,
        layers = layers,
        # By platform: empty, so `image` takes the target platform's (arm64 gets variant v8).
        architecture = fixed_arch or "",
        user = uid,
        env = full_env,
        **kwargs
    )
