"""runfiles_layers: any binary's runfiles tree as image layers ordered by change rate.

The general rule, for a binary in any language (py_image is the Python front end):

  Every file of the binary's runfiles tree lands in exactly one layer, as a real file. Where:
  with `layout = "stable"` (the default), the main repository's files at
  `<root>/<workspace-relative path>` and an external repository's at
  `<root>/external/<apparent repository name>/<path>`: no canonical repository name
  (`_main`, `rules_shiko~~wheels~pip`, `rules_shiko++wheels+pip`) reaches the image, so the
  same sources give the same digest in WORKSPACE mode and on Bazel 7, 8 and 9. With
  `layout = "runfiles"`, Bazel's runfiles tree itself (`<root>/<workspace>/pkg/file`,
  `<root>/<repo>/...`, `_repo_mapping`; never a legacy `external/` copy), for programs that
  look their files up with a runfiles library. Which layer is decided by the file's runfiles
  path, in this order:

    1. `split` layers, one per label given, in the order given: the files of that label's
       repository whose path is in the label's package or below (`@pip//protobuf` takes the
       whole unpacked protobuf wheel; a label in a repository's root package takes the whole
       repository; `//app/static:all` takes the generated and source files of that package);
    2. the third-party layer: every other file of an external repository (pinned wheels,
       runtime libraries, `@bazel_tools` helpers);
    3. the first-party layer: the main repository's files (sources, generated code, data)
       and the runfiles root's own files (`_repo_mapping`, in the runfiles layout only).

  Excluded: the binary's own launcher (the executable; the image runs the program another
  way, e.g. with the base's interpreter) and the files of `exclude` (py_image excludes the
  Python toolchain's runtime files, which must come from the base image).

  File modes (unless `mode` is set): a generated file is 0755 iff it is the executable of the
  binary or of something it depends on (an aspect collects them), else 0644; a source file
  (first-party sources, every file of a pinned wheel or other external repository) and every
  file of a generated directory is 0755 iff its content starts with `#!` or the ELF magic,
  else 0644. The inputs' permission bits are never read: a remote worker materializes every
  input 0555, a local build does not, and the digest must not differ.

So layers go from rarely changing (heavy dependencies, then all pinned dependencies) to often
changing (your code), and a code edit rebuilds, and re-pushes, one small layer.
"""

load(":layer.bzl", "LAYER_ATTRS", "executable_hint", "executables_aspect", "executables_of", "file_entry", "origin", "write_layer")
load("//rules/private/common:paths.bzl", "join_dest", "normalize_dest")
load("//rules/private/common:runfiles.bzl", "label_repo", "stable_path", "walk_runfiles")

FIRST_PARTY = "first_party"
THIRD_PARTY = "third_party"

_PY_TOOLCHAIN = "@bazel_tools//tools/python:toolchain_type"

def image_path(ctx, rpath):
    """Where a runfiles path goes below `root`, by the rule's `layout` (see the docstring)."""
    if ctx.attr.layout == "runfiles":
        return rpath
    return stable_path(ctx.workspace_name, rpath)

def _split_keys(ctx):
    keys = []
    for t in ctx.attr.split:
        repo = label_repo(t.label) or ctx.workspace_name
        keys.append((repo, t.label.package))
    return keys

def classify(ctx, rpath, split_keys):
    """The group of one runfiles path: "split:<i>", THIRD_PARTY or FIRST_PARTY."""
    if "/" not in rpath:
        return FIRST_PARTY  # files of the runfiles root itself (_repo_mapping)
    repo, rest = rpath.split("/", 1)
    for i, key in enumerate(split_keys):
        if repo == key[0] and (key[1] == "" or rest == key[1] or rest.startswith(key[1] + "/")):
            return "split:%d" % i
    if repo == ctx.workspace_name:
        return FIRST_PARTY
    return THIRD_PARTY

def _excluded_paths(ctx, binary):
    excluded = {}
    exe = binary[DefaultInfo].files_to_run.executable
    if exe != None:
        excluded[exe.path] = True
    for t in ctx.attr.exclude:
        for f in t[DefaultInfo].files.to_list():
            excluded[f.path] = True
        for f in t[DefaultInfo].default_runfiles.files.to_list():
            excluded[f.path] = True
    if ctx.attr._python:
        runtime = getattr(ctx.toolchains[_PY_TOOLCHAIN], "py3_runtime", None)
        if runtime != None:
            if runtime.interpreter != None:
                excluded[runtime.interpreter.path] = True
            if runtime.files != None:
                for f in runtime.files.to_list():
                    excluded[f.path] = True
    return excluded

def _file_origin(ctx, f, fallback):
    """The label a runfile is attributed to in listings, reports and SBOMs: a first-party file's
    owner (the source file, or the rule that generated it); for an external repository's file,
    its package (`@pip_hub//protobuf`: one origin per wheel, not per file)."""
    owner = f.owner
    if owner == None:
        return fallback
    if owner.workspace_name and owner.workspace_name != ctx.workspace_name:
        return origin("binary", "@%s//%s" % (owner.workspace_name, owner.package))
    return origin("binary", owner)

# The wheel identity file a pip_lock_repository package puts in runfiles (pip_repository.bzl):
# never stored in an image; collected for SBOMs instead.
_WHEEL_METADATA = "rules_shiko_wheel.json"

def _is_wheel_metadata(ctx, f):
    return (f.basename == _WHEEL_METADATA and f.is_source and f.owner != None and
            f.owner.workspace_name not in ("", ctx.workspace_name))

def runfiles_entries(ctx, binary, group, root):
    """(entries, inputs, wheels) of the files of `binary`'s runfiles that belong to `group`;
    wheels: the wheel identity files of that group (left out of the layer)."""
    info = binary[DefaultInfo]
    keys = _split_keys(ctx)
    excluded = _excluded_paths(ctx, binary)
    executables = executables_of(binary)
    o = origin("binary", binary.label)
    entries = []
    inputs = []
    wheels = []
    empty = None
    for item in walk_runfiles(info, ctx.workspace_name):
        if item.file != None and item.file.path in excluded:
            continue
        if item.kind == "repo_mapping":
            # Canonical repository names: only Bazel's runfiles layout has a use for it.
            if ctx.attr.layout != "runfiles" or group != FIRST_PARTY:
                continue
        elif classify(ctx, item.rpath, keys) != group:
            continue
        if item.kind == "file" and _is_wheel_metadata(ctx, item.file):
            wheels.append(item.file)
            continue
        dest = join_dest(root, image_path(ctx, item.rpath))
        if item.kind == "empty":
            if empty == None:
                empty = ctx.actions.declare_file(ctx.label.name + ".empty_file")
                ctx.actions.write(empty, "")
                inputs.append(empty)
            entries.append(file_entry(dest, empty, o, False))
        elif item.kind == "repo_mapping":
            entries.append(file_entry(dest, item.file, o, False))
            inputs.append(item.file)
        else:
            entries.append(file_entry(dest, item.file, _file_origin(ctx, item.file, o), executable_hint(item.file, executables)))
            inputs.append(item.file)
    return entries, inputs, wheels

def _runfiles_layer_impl(ctx):
    target = str(ctx.label)
    binary = ctx.attr.binary
    if binary[DefaultInfo].files_to_run.executable == None:
        fail("%s: attribute 'binary': %r: is not an executable target" % (target, str(binary.label)))
    group = ctx.attr.group
    if group not in (FIRST_PARTY, THIRD_PARTY):
        if not group.startswith("split:") or not group[len("split:"):].isdigit():
            fail("%s: attribute 'group': %r: must be first_party, third_party or split:<index>" % (target, group))
        if int(group[len("split:"):]) >= len(ctx.attr.split):
            fail("%s: attribute 'group': %r: there are only %d split labels" % (target, group, len(ctx.attr.split)))
    root = normalize_dest(target, "root", ctx.attr.root)
    entries, inputs, wheels = runfiles_entries(ctx, binary, group, root)
    return write_layer(ctx, entries, inputs, wheels = wheels)

_RUNFILES_LAYER_ATTRS = dict(LAYER_ATTRS, **{
    "binary": attr.label(
        mandatory = True,
        aspects = [executables_aspect],
        doc = "The executable target whose runfiles tree is laid out (any language).",
    ),
    "group": attr.string(
        default = FIRST_PARTY,
        doc = "Which files go in this layer: \"first_party\" (the main repository), \"third_party\" (external repositories not split off) or \"split:<i>\" (the files of the i-th `split` label).",
    ),
    "split": attr.label_list(
        doc = "Labels whose package (and below, in their repository) get layers of their own; the same list for every layer of one binary.",
    ),
    "exclude": attr.label_list(
        allow_files = True,
        doc = "Targets whose files (and runfiles) are left out of every layer, e.g. a runtime the base image provides.",
    ),
    "root": attr.string(
        default = "/app",
        doc = "Directory in the image that holds the program's files.",
    ),
    "layout": attr.string(
        default = "stable",
        values = ["stable", "runfiles"],
        doc = "\"stable\" (default): the main repository's files at `<root>/<workspace-relative path>`, an external repository's at `<root>/external/<apparent name>/...`: the same paths, so the same digest, in WORKSPACE and every Bazel 7-9 module world. \"runfiles\": Bazel's runfiles tree (`<root>/<canonical repo name>/...` plus `_repo_mapping`), for programs that find their files with a runfiles library; its paths, so the digest, depend on how the Bazel version names repositories.",
    ),
})

runfiles_layer = rule(
    implementation = _runfiles_layer_impl,
    doc = "One layer of a binary's runfiles tree: the first-party, third-party or one split group. Use the `runfiles_layers` macro.",
    attrs = dict(_RUNFILES_LAYER_ATTRS, _python = attr.bool(
        default = False,
        doc = "Internal: False (this rule does not exclude a Python runtime).",
    )),
)

py_runfiles_layer = rule(
    implementation = _runfiles_layer_impl,
    doc = "runfiles_layer for a py_binary: also leaves out the Python toolchain's runtime files (the image's base provides Python).",
    attrs = dict(_RUNFILES_LAYER_ATTRS, _python = attr.bool(
        default = True,
        doc = "Internal: True (exclude the resolved Python toolchain's runtime files).",
    )),
    toolchains = [_PY_TOOLCHAIN],
)

def _layer_suffix(label, index, used):
    """A readable, unique target-name suffix for a split label: `@pip//protobuf` -> protobuf."""
    s = str(label)
    tail = s.split("//", 1)[-1]
    if ":" in tail:
        pkg, name = tail.split(":", 1)
    else:
        pkg, name = tail, tail.split("/")[-1]
    if not name or name in ("all", "pkg", "__pkg__", "__subpackages__"):
        name = pkg.split("/")[-1] or s.split("//")[0].lstrip("@") or "root"
    out = ""
    for c in name.elems():
        out += c if (c.isalnum() or c == "_") else "_"
    if out in used:
        out = "%s_%d" % (out, index)
    used[out] = True
    return out

def runfiles_layers(name, binary, split = [], root = "/app", exclude = [], python = False, layout = "stable", **kwargs):
    """Layers of a binary's runfiles tree, ordered by change rate; returns their labels.

    Creates `<name>_<split name>` (one per `split` label, in order), `<name>_deps` (third party)
    and `<name>_app` (first party); pass the returned list to `image(layers = ...)`. See the
    module docstring for which file goes where and which files are 0755.

    Args:
      name: prefix of the layer targets.
      binary: the executable target (any language) whose runfiles are laid out under `root`.
      split: labels whose package (and below) get a layer of their own, below the deps layer,
        e.g. ["@pip//torch"]. A label in a repository's root package splits the whole repository.
      root: directory of the runfiles tree in the image (default /app).
      exclude: targets whose files are left out (provided by the base image).
      python: leave out the Python toolchain's runtime files (py_image sets it).
      layout: "stable" (default; the same paths in every Bazel world) or "runfiles" (Bazel's
        runfiles tree, for programs that use a runfiles library); see the module docstring.
      **kwargs: layer attributes (compression, compression_level, mode, dir_mode, uid, gid,
        mtime) and common ones (tags, visibility, testonly).

    Returns:
      The labels of the created layers, bottom first.
    """
    layer_rule = py_runfiles_layer if python else runfiles_layer
    used = {"deps": True, "app": True}
    groups = []
    for i, label in enumerate(split):
        groups.append(("%s_%s" % (name, _layer_suffix(label, i, used)), "split:%d" % i))
    groups.append((name + "_deps", THIRD_PARTY))
    groups.append((name + "_app", FIRST_PARTY))
    for target_name, group in groups:
        layer_rule(
            name = target_name,
            binary = binary,
            group = group,
            split = split,
            exclude = exclude,
            root = root,
            layout = layout,
            **kwargs
        )
    return [":" + n for n, _ in groups]
