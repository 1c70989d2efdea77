"""image_layer: files, directories, runfiles trees, symlinks and tars as one reproducible layer."""

load("//rules/private/common:paths.bzl", "join_dest", "normalize_dest", "normalize_dest_or_root", "package_relative_path", "parse_octal", "parse_owner")
load("//rules/private/common:providers.bzl", "DebPackagesInfo", "DebTarInfo", "ExecutablesInfo", "LayerInfo")
load("//rules/private/common:runfiles.bzl", "walk_runfiles")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load("//rules/private/common:worker.bzl", "WORKER_REQUIREMENTS", "worker_args")

_EXTENSIONS = {
    "gzip": ".tar.gz",
    "zstd": ".tar.zst",
    "none": ".tar",
}

_LEVELS = {
    "gzip": (0, 3),
    "zstd": (1, 19),
}

def origin(attr_name, label):
    return {"attr": attr_name, "label": str(label)}

def _single_source(target, attr_name, dest, dep):
    files = dep[DefaultInfo].files.to_list()
    if len(files) != 1:
        fail(("%s: attribute '%s': %r: %s gives %d files, a destination takes exactly one file " +
              "or directory (use srcs with prefix for several)") %
             (target, attr_name, "/" + dest, dep.label, len(files)))
    return files[0]

def file_entry(dest, f, origin, executable = None):
    """A file or directory entry. `executable` (True/False) sets the default mode 0755/0644;
    None lets the tool decide by content: 0755 iff the file starts with `#!` or the ELF magic.
    Never by permission bits: Bazel marks every output executable (0555), and under remote
    execution every input too. Files found in a directory are always decided by content."""
    entry = {
        "kind": "tree" if f.is_directory else "file",
        "dest": dest,
        "src": f.path,
        "origin": origin,
    }
    if executable != None and not f.is_directory:
        entry["executable"] = executable
    return entry

def _executable_hint(f, dep):
    """True/False for generated files (executable iff it is its target's executable), None for
    sources and directories (the tool decides by content: `#!` or ELF)."""
    if f.is_source:
        return None
    return f == dep[DefaultInfo].files_to_run.executable

def _executables_aspect_impl(target, ctx):
    direct = []
    exe = target[DefaultInfo].files_to_run.executable
    if exe != None:
        direct.append(exe)
    transitive = []
    for name in dir(ctx.rule.attr):
        value = getattr(ctx.rule.attr, name)
        kind = type(value)
        if kind == "Target":
            values = [value]
        elif kind == "list":
            values = value
        elif kind == "dict":
            values = list(value.keys()) + list(value.values())
        else:
            continue
        for v in values:
            if type(v) == "Target" and ExecutablesInfo in v:
                transitive.append(v[ExecutablesInfo].files)
    return [ExecutablesInfo(files = depset(direct, transitive = transitive))]

# Which generated files are programs: Bazel writes every output 0555, so the layer gives 0755
# only to files that are some target's executable and 0644 to other generated files. Source
# files (and files of generated directories) get no hint: the layer tool decides by content,
# 0755 iff the file starts with `#!` or the ELF magic, never by permission bits (a remote
# worker materializes every input 0555). On image_layer's `binaries` and runfiles_layers'
# `binary`.
executables_aspect = aspect(
    implementation = _executables_aspect_impl,
    doc = "Collects the executables of a target and of everything it depends on.",
    attr_aspects = ["*"],
)

def executables_of(binary):
    """{path: True} of the files that are an executable of `binary` or of its dependencies."""
    executables = {}
    if ExecutablesInfo in binary:
        for f in binary[ExecutablesInfo].files.to_list():
            executables[f.path] = True
    return executables

def executable_hint(f, executables):
    """The "executable" of a runfile's entry: for a generated file, whether it is some target's
    executable (`executables`: executables_of()); None for sources and directories (the tool
    decides by content: `#!` or ELF)."""
    if f.is_source or f.is_directory:
        return None
    return f.path in executables

def _runfiles_entries(ctx, state, dest, dep, origin):
    """The executable at `dest` and its runfiles tree at `dest.runfiles/`, as file entries.

    The tree is Bazel's own runfiles layout (the binary's launcher finds its files there), so
    its paths hold the repositories' names as this Bazel world spells them.
    """
    info = dep[DefaultInfo]
    exe = info.files_to_run.executable
    if exe == None:
        fail("%s: attribute 'binaries': %r: %s is not executable" % (ctx.label, "/" + dest, dep.label))
    entries = [file_entry(dest, exe, origin, True)]
    inputs = [exe]
    executables = executables_of(dep)
    root = dest + ".runfiles"
    for item in walk_runfiles(info, ctx.workspace_name):
        path = join_dest(root, item.rpath)
        if item.kind == "empty":
            # Bazel creates these (e.g. __init__.py) in runfiles trees; store them as empty files.
            if "empty" not in state:
                state["empty"] = ctx.actions.declare_file(ctx.label.name + ".empty_file")
                ctx.actions.write(state["empty"], "")
            entries.append(file_entry(path, state["empty"], origin, False))
            inputs.append(state["empty"])
        else:
            entries.append(file_entry(path, item.file, origin, executable_hint(item.file, executables)))
            inputs.append(item.file)
    return entries, inputs

def _image_layer_impl(ctx):
    target = str(ctx.label)
    entries = []
    inputs = []
    state = {}  # shared across binaries: the one empty file

    for dep, dests in ctx.attr.files.items():
        for dest in json.decode(dests):
            d = normalize_dest(target, "files", dest)
            f = _single_source(target, "files", d, dep)
            entries.append(file_entry(d, f, origin("files", dep.label), _executable_hint(f, dep)))
            inputs.append(f)

    prefix = normalize_dest_or_root(target, "prefix", ctx.attr.prefix)
    strip = ctx.attr.strip_prefix.strip("/")
    for dep in ctx.attr.srcs:
        for f in dep[DefaultInfo].files.to_list():
            rel = package_relative_path(f)
            if strip:
                if not (rel + "/").startswith(strip + "/"):
                    fail("%s: attribute 'strip_prefix': %r: %s (%s) is not under it" %
                         (target, ctx.attr.strip_prefix, f.short_path, dep.label))
                rel = rel[len(strip):].lstrip("/")
            d = normalize_dest_or_root(target, "srcs", join_dest(prefix, rel))
            if d == "" and not f.is_directory:
                fail("%s: attribute 'srcs': %s would be placed at the image root itself" % (target, f.short_path))
            entries.append(file_entry(d, f, origin("srcs", dep.label), _executable_hint(f, dep)))
            inputs.append(f)

    for dep, dests in ctx.attr.binaries.items():
        for dest in json.decode(dests):
            d = normalize_dest(target, "binaries", dest)
            more, more_inputs = _runfiles_entries(ctx, state, d, dep, origin("binaries", dep.label))
            entries += more
            inputs += more_inputs

    for link, link_target in ctx.attr.symlinks.items():
        d = normalize_dest(target, "symlinks", link)
        if not link_target:
            fail("%s: attribute 'symlinks': %r: the link target is empty" % (target, link))
        entries.append({"kind": "symlink", "dest": d, "target": link_target, "origin": origin("symlinks", ctx.label)})

    for dest in ctx.attr.empty_dirs:
        d = normalize_dest(target, "empty_dirs", dest)
        entries.append({"kind": "dir", "dest": d, "origin": origin("empty_dirs", ctx.label)})

    tar_dest = normalize_dest_or_root(target, "tars_prefix", ctx.attr.tars_prefix)

    # One deb_tar at the root (deb_layer): its packages are unpacked by this layer's action,
    # which writes the inventory too, instead of importing the tar its own action would write.
    debs = None
    if len(ctx.attr.tars) == 1 and tar_dest == "" and DebTarInfo in ctx.attr.tars[0]:
        debs = ctx.attr.tars[0]
        entries.append({"kind": "debs", "dest": "", "manifest": debs[DebTarInfo].manifest.path, "origin": origin("tars", debs.label)})
        inputs += debs[DebTarInfo].inputs.to_list()
    else:
        for dep in ctx.attr.tars:
            for f in dep[DefaultInfo].files.to_list():
                entries.append({"kind": "tar", "dest": tar_dest, "src": f.path, "origin": origin("tars", dep.label)})
                inputs.append(f)

    overrides = {}
    for path, mode in ctx.attr.modes.items():
        d = normalize_dest(target, "modes", path)
        overrides.setdefault(d, {})["mode"] = parse_octal(target, "modes", mode)
    for path, owner in ctx.attr.owners.items():
        d = normalize_dest(target, "owners", path)
        uid, gid = parse_owner(target, "owners", path, owner)
        overrides.setdefault(d, {}).update({"uid": uid, "gid": gid})

    if debs:
        return write_layer(ctx, entries, inputs, overrides, inventory = True)
    packages = [dep[DebPackagesInfo].inventory for dep in ctx.attr.tars if DebPackagesInfo in dep] if tar_dest == "" else []
    return write_layer(ctx, entries, inputs, overrides, packages)

def write_layer(ctx, entries, inputs, overrides = {}, packages = [], wheels = [], inventory = False):
    """Runs the layer tool on `entries` (see python_tools/layer.py) and returns the providers.

    For rules whose attributes include LAYER_ATTRS (compression, compression_level, mtime, mode,
    dir_mode, uid, gid and the tool): image_layer, and the runfiles layers of runfiles_layers.bzl.

    Args:
      ctx: the rule context.
      entries: layer manifest entries (file_entry() and the other kinds of layer.py).
      inputs: the Files the entries read.
      overrides: {layer path: {"mode"|"uid"|"gid": value}}.
      packages: Debian inventories (DebPackagesInfo) of tars imported at the layer's root.
      wheels: identity files (pip_lock_repository's rules_shiko_wheel.json) of the wheels whose
        files this layer holds.
      inventory: whether the entries hold a `debs` entry whose inventory the action writes
        (`<name>.packages.json`, the layer's `packages`).

    Returns:
      [DefaultInfo, LayerInfo, OutputGroupInfo(listing)].
    """
    target = str(ctx.label)
    if ctx.attr.uid < 0 or ctx.attr.gid < 0:
        fail("%s: attribute 'uid'/'gid': %d/%d: must be >= 0" % (target, ctx.attr.uid, ctx.attr.gid))
    if ctx.attr.mtime < 0:
        fail("%s: attribute 'mtime': %d: must be >= 0 (seconds since the epoch)" % (target, ctx.attr.mtime))

    compression = ctx.attr.compression
    level = ctx.attr.compression_level
    if level != -1:
        if compression == "none":
            fail("%s: attribute 'compression_level': %d: compression is \"none\"" % (target, level))
        lo, hi = _LEVELS[compression]
        if level < lo or level > hi:
            fail("%s: attribute 'compression_level': %d: %s takes %d..%d" % (target, level, compression, lo, hi))

    manifest = {
        "target": target,
        "compression": compression,
        "compression_level": None if level == -1 else level,
        "mtime": ctx.attr.mtime,
        "defaults": {
            "file_mode": parse_octal(target, "mode", ctx.attr.mode) if ctx.attr.mode else None,
            "dir_mode": parse_octal(target, "dir_mode", ctx.attr.dir_mode),
            "uid": ctx.attr.uid,
            "gid": ctx.attr.gid,
        },
        "overrides": overrides,
        "entries": entries,
    }

    manifest_file = ctx.actions.declare_file(ctx.label.name + ".layer_manifest.json")
    ctx.actions.write(manifest_file, json.encode(manifest))
    blob = ctx.actions.declare_file(ctx.label.name + _EXTENSIONS[compression])
    descriptor = ctx.actions.declare_file(ctx.label.name + ".layer.json")
    listing = ctx.actions.declare_file(ctx.label.name + ".listing.json")

    args = worker_args(ctx)
    args.add("--manifest", manifest_file)
    args.add("--output", blob)
    args.add("--descriptor", descriptor)
    args.add("--listing", listing)
    outputs = [blob, descriptor, listing]
    if inventory:
        packages_file = ctx.actions.declare_file(ctx.label.name + ".packages.json")
        args.add("--packages", packages_file)
        outputs.append(packages_file)
        packages = packages + [packages_file]
    ctx.actions.run(
        executable = tool_executable(ctx, "_layer_tool"),
        tools = tool_inputs(ctx, "_layer_tool"),
        arguments = [args],
        inputs = depset([manifest_file] + inputs),
        outputs = outputs,
        mnemonic = "ShikoLayer",
        progress_message = "Writing image layer %s (%s)" % (ctx.label, compression),
        execution_requirements = WORKER_REQUIREMENTS,
    )

    return [
        DefaultInfo(files = depset([blob, descriptor])),
        LayerInfo(
            blob = blob,
            descriptor = descriptor,
            listing = listing,
            compression = compression,
            label = ctx.label,
            packages = packages,
            wheels = wheels,
        ),
        OutputGroupInfo(listing = depset([listing])),
    ]

# The attributes write_layer() reads: how the layer is written (not what goes in it).
LAYER_ATTRS = {
    "mode": attr.string(
        doc = "Mode of every file taken from disk (files, directories, runfiles), e.g. \"0644\"; members of imported tars keep theirs, and image_layer's `modes` win over both. Unset: a generated file is 0755 iff it is some target's executable; a source file, and every file of a directory (tree artifact or source directory), is 0755 iff its content starts with `#!` or the ELF magic; else 0644. Never the inputs' permission bits, which differ between a local and a remote build.",
    ),
    "dir_mode": attr.string(
        default = "0755",
        doc = "Default mode of directories.",
    ),
    "uid": attr.int(
        default = 0,
        doc = "Default owner uid of every member.",
    ),
    "gid": attr.int(
        default = 0,
        doc = "Default owner gid of every member.",
    ),
    "mtime": attr.int(
        default = 0,
        doc = "Modification time (seconds since the epoch) of every member.",
    ),
    "compression": attr.string(
        default = "gzip",
        values = ["gzip", "zstd", "none"],
        doc = "Blob compression: gzip (ISA-L), zstd or none. Layer digests depend on it.",
    ),
    "compression_level": attr.int(
        default = -1,
        doc = "Compression level: gzip 0..3 (ISA-L, default 1), zstd 1..19 (default 3). -1 means the default.",
    ),
    "_layer_tool": attr.label(
        default = "//python_tools:layer",
        executable = True,
        cfg = "exec",
        doc = "The layer writer.",
    ),
}

image_layer_rule = rule(
    implementation = _image_layer_impl,
    doc = "One reproducible image layer. Use the `image_layer` macro (it takes `files` as {dest: label}).",
    attrs = dict(LAYER_ATTRS, **{
        "files": attr.label_keyed_string_dict(
            allow_files = True,
            doc = "Label -> JSON list of destinations (the macro inverts {dest: label}). Each label gives one file or directory.",
        ),
        "srcs": attr.label_list(
            allow_files = True,
            doc = "Files and directories placed under `prefix`, at their path relative to their package (minus `strip_prefix`).",
        ),
        "prefix": attr.string(
            default = "/",
            doc = "Directory in the image that `srcs` go under.",
        ),
        "strip_prefix": attr.string(
            doc = "Leading package-relative directory removed from each of `srcs` before placing it.",
        ),
        "binaries": attr.label_keyed_string_dict(
            cfg = "target",
            aspects = [executables_aspect],
            doc = "Executable label -> JSON list of destinations: the executable at dest, its runfiles tree at dest.runfiles/.",
        ),
        "symlinks": attr.string_dict(
            doc = "Link path in the image -> link target (kept verbatim; relative or absolute).",
        ),
        "empty_dirs": attr.string_list(
            doc = "Empty directories to create.",
        ),
        "tars": attr.label_list(
            allow_files = True,
            doc = "Existing tar files (plain, gzip, zstd, xz or bzip2) whose members become layer content; validated (no devices, absolute or '..' names, dangling hardlinks).",
        ),
        "tars_prefix": attr.string(
            default = "/",
            doc = "Directory in the image that the members of `tars` go under.",
        ),
        "modes": attr.string_dict(
            doc = "Per-path mode, {\"/etc/secret\": \"0600\"}; the path must exist in the layer.",
        ),
        "owners": attr.string_dict(
            doc = "Per-path owner, {\"/data\": \"1000:1000\"}; the path must exist in the layer.",
        ),
    }),
)

def _invert(target_name, attr_name, mapping):
    """{dest: label} -> {label: json([dest, ...])}, as Bazel 4 has no string-keyed label dict."""
    if mapping == None:
        return {}
    if type(mapping) != "dict":
        fail("image_layer %s: attribute '%s' must be a dict {\"/dest/path\": label}" % (target_name, attr_name))
    by_label = {}
    for dest, label in mapping.items():
        by_label.setdefault(label, []).append(dest)
    return {label: json.encode(dests) for label, dests in by_label.items()}

def image_layer(name, files = None, binaries = None, **kwargs):
    """One image layer, written reproducibly in one streaming pass.

    File modes, unless `mode` or `modes` gives them: a generated file of `files`/`srcs` is 0755
    iff it is its target's executable, a generated runfile of `binaries` iff it is some
    target's executable; a source file, and every file found in a directory (tree artifact or
    source directory), is 0755 iff its content starts with `#!` or the ELF magic; else 0644.
    Never the inputs' permission bits, which differ between a local and a remote build.

    Args:
      name: target name. Outputs `<name>.tar.gz` (or .tar.zst / .tar) and `<name>.layer.json`.
      files: {"/dest/path": label}: each label's single file or directory at that path.
      binaries: {"/dest/path": executable label}: the executable and its runfiles tree
        (`/dest/path.runfiles/<workspace>/...`), stored as real files.
      **kwargs: every other attribute of image_layer_rule (srcs, prefix, strip_prefix, symlinks,
        empty_dirs, tars, tars_prefix, mode, dir_mode, uid, gid, modes, owners, mtime,
        compression, compression_level) and the common ones (visibility, tags, testonly).
    """
    image_layer_rule(
        name = name,
        files = _invert(name, "files", files),
        binaries = _invert(name, "binaries", binaries),
        **kwargs
    )
