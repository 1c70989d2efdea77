"""py_image: a py_binary as an image, run by the base image's Python, layered by change rate.

    py_image(
        name = "image",
        binary = ":app",                          # any py_binary
        base = "//examples/distroless:python3",   # provides /usr/bin/python3
        split = ["@app_pip//protobuf"],           # optional: a heavy package in its own layer
    )

Layers on top of the base, bottom first (see runfiles_layers.bzl for the general rule):
`<name>_<split>` per `split` label, `<name>_deps` (every other external repository: the
pinned wheels), `<name>_app` (the main repository: code, generated code, data). Each runfiles
file is in exactly one of them, as a real file under `root` (default /app), at a path that is
the same in every Bazel world (`layout = "stable"`): `/app/pkg/main.py` (workspace-relative),
`/app/external/<pip repo>/<package>/site-packages/...` (the repository's apparent name).

The program runs with the base's interpreter, never a toolchain's from runfiles and never the
py_binary's launcher:
  entrypoint = [python, "<root>/<pkg>/<main>.py"]   (or [python, "-m", main_module])
  cmd        = args (default: the py_binary's own `args`)
  env        = PYTHONPATH: <root>, then each `imports` entry of the binary's PyInfo (what the
               launcher would put on sys.path, e.g. the wheels' site-packages) at its place in
               the image. With `layout = "runfiles"` the tree is Bazel's runfiles tree
               (`<root>/<workspace>/...`), `<root>/<workspace>` is on PYTHONPATH too and
               RUNFILES_DIR is <root> (for the runfiles libraries).
"""

load("@rules_python//python:defs.bzl", "PyInfo")
load("//rules/private/image:image.bzl", "IMAGE_ATTRS", "image_impl")
load("//rules/private/image:report.bzl", "explain_target")
load("//rules/private/common:macros.bzl", "helper_kwargs")
load("//rules/private/common:paths.bzl", "join_dest", "normalize_dest")
load("//rules/private/common:providers.bzl", "PyMainInfo")
load("//rules/private/common:runfiles.bzl", "runfiles_path", "stable_path")
load("//rules/private/layer:runfiles_layers.bzl", "runfiles_layers")

def _py_main_aspect_impl(target, ctx):
    attrs = ctx.rule.attr
    main_module = getattr(attrs, "main_module", "") or ""
    main = None
    main_attr = getattr(attrs, "main", None)
    if main_attr != None and not main_module:
        files = main_attr[DefaultInfo].files.to_list()
        if len(files) == 1:
            main = files[0]
    if main == None and not main_module:
        # No `main`: the source named <name>.py, as py_binary does.
        want = ctx.label.name + ".py"
        for src in getattr(attrs, "srcs", []):
            for f in src[DefaultInfo].files.to_list():
                if f.basename == want:
                    main = f
    args = getattr(attrs, "args", None) or []
    return [PyMainInfo(main = main, main_module = main_module, args = list(args))]

_py_main_aspect = aspect(
    implementation = _py_main_aspect_impl,
    doc = "Reads a py_binary's main file (or main_module) and args from its attributes.",
    attr_aspects = [],
)

def _place(ctx, root, rpath):
    """Where a runfiles path is in the image, by the `layout` (see runfiles_layers.bzl)."""
    if ctx.attr.layout == "runfiles":
        return join_dest(root, rpath)
    return join_dest(root, stable_path(ctx.workspace_name, rpath))

def _py_image_impl(ctx):
    target = str(ctx.label)
    binary = ctx.attr.binary
    if PyInfo not in binary:
        fail(("%s: attribute 'binary': %r: is not a Python binary (no PyInfo; on Bazel 7+ load " +
              "py_binary from @rules_python//python:defs.bzl: Bazel's built-in PyInfo is another provider)") %
             (target, str(binary.label)))
    info = binary[PyMainInfo]
    root = "/" + normalize_dest(target, "root", ctx.attr.root)
    python = ctx.attr.python
    if not python.startswith("/"):
        fail("%s: attribute 'python': %r: must be the absolute path of the base image's interpreter" % (target, python))

    if info.main_module:
        entrypoint = [python, "-m", info.main_module]
    elif info.main != None:
        entrypoint = [python, _place(ctx, root, runfiles_path(ctx.workspace_name, info.main.short_path))]
    else:
        fail(("%s: attribute 'binary': %r: cannot tell its main file (no `main`, and no source " +
              "named %s.py): set `main` on the py_binary") % (target, str(binary.label), binary.label.name))

    path = [root]
    for imp in binary[PyInfo].imports.to_list():
        p = _place(ctx, root, imp)
        if p not in path:
            path.append(p)
    env = {"PYTHONPATH": None}
    if ctx.attr.layout == "runfiles":
        ws = join_dest(root, ctx.workspace_name)
        if ws not in path:
            path.append(ws)
        env["RUNFILES_DIR"] = root
    env["PYTHONPATH"] = ":".join(path)

    if ctx.attr.app_args_set:
        cmd = ctx.attr.app_args
    else:
        cmd = [a for a in info.args]
        for a in cmd:
            if "$(" in a:
                fail(("%s: attribute 'args': the py_binary's args %r use make variables; give " +
                      "the image's `args` explicitly") % (target, cmd))
    return image_impl(ctx, computed = {
        "entrypoint": entrypoint,
        "cmd": cmd or None,
        "env": env,
    })

py_image_rule = rule(
    implementation = _py_image_impl,
    doc = "An image running a py_binary with the base's Python. Use the `py_image` macro.",
    attrs = dict(IMAGE_ATTRS, **{
        "binary": attr.label(
            mandatory = True,
            aspects = [_py_main_aspect],
            doc = "The py_binary to run.",
        ),
        "python": attr.string(
            default = "/usr/bin/python3",
            doc = "The interpreter in the base image that runs the program (absolute path).",
        ),
        "root": attr.string(
            default = "/app",
            doc = "Directory of the program's files in the image (the same as the layers').",
        ),
        "layout": attr.string(
            default = "stable",
            values = ["stable", "runfiles"],
            doc = "Where files go below `root` (the same as the layers'): \"stable\" or \"runfiles\" (see runfiles_layers).",
        ),
        "app_args": attr.string_list(
            doc = "Set by the macro from `args`: the program's arguments (CMD).",
        ),
        "app_args_set": attr.bool(
            doc = "Set by the macro: whether `args` was given (else the py_binary's own args are used).",
        ),
    }),
)

_LAYER_KWARGS = ("compression", "compression_level", "mtime")

def py_image(
        name,
        binary,
        base = None,
        args = None,
        split = [],
        layers = [],
        root = "/app",
        python = "/usr/bin/python3",
        layout = "stable",
        entrypoint = None,
        cmd = None,
        **kwargs):
    """An OCI image that runs a py_binary with the base image's Python.

    Creates the layers `<name>_<split>` (one per `split` label), `<name>_deps` (third-party:
    every other external repository, i.e. the pinned wheels) and `<name>_app` (first-party
    code, generated code and data), then the image `<name>` on `base` (its outputs, output
    groups and ImageInfo as `image`'s) and `<name>.explain` (as `image`'s). Each runfiles
    file lands in exactly one layer.

    File modes: a generated file is 0755 iff it is some target's executable; every other file
    (sources, wheels' files, files of generated directories) is 0755 iff its content starts with
    `#!` or the ELF magic; else 0644. Never the inputs' permission bits, which differ between a
    local and a remote build.

    Args:
      name: the image target's name.
      binary: the py_binary (its runfiles are laid out under `root`; its launcher is not used).
      base: an image with the interpreter `python`, e.g. //examples/distroless:python3.
      args: the program's arguments (the image's CMD); default: the py_binary's own `args`.
      split: labels whose package gets a layer of its own, below the deps layer, e.g.
        ["@app_pip//protobuf"] (a heavy package that changes less often than the others).
      layers: more image_layer targets, placed between the base and the runfiles layers.
      root: where the program's files go in the image (default /app).
      layout: "stable" (default): `<root>/<workspace-relative path>` for your files and
        `<root>/external/<repository>/...` for third-party ones, the same in every Bazel world;
        "runfiles": Bazel's runfiles tree, with RUNFILES_DIR set (for the runfiles libraries).
      python: the base image's interpreter (default /usr/bin/python3).
      entrypoint: replaces the computed entrypoint (rarely needed).
      cmd: replaces `args` as the image's CMD.
      **kwargs: every other `image` attribute (env, user, workdir, labels, exposed_ports,
        repo_tags, stamp, ...), the layers' compression/compression_level/mtime, and common
        attributes (tags, visibility, testonly).
    """
    layer_kwargs = {}
    for k in _LAYER_KWARGS:
        if k in kwargs:
            layer_kwargs[k] = kwargs.pop(k)
    layer_kwargs.update(helper_kwargs(kwargs))
    runfiles = runfiles_layers(
        name = name,
        binary = binary,
        split = split,
        root = root,
        layout = layout,
        python = True,
        **layer_kwargs
    )
    if cmd != None:
        args = cmd
    py_image_rule(
        name = name,
        binary = binary,
        base = base,
        layers = layers + runfiles,
        root = root,
        layout = layout,
        python = python,
        app_args = args or [],
        app_args_set = args != None,
        entrypoint = entrypoint or [],
        entrypoint_set = entrypoint != None,
        cmd = [],
        cmd_set = False,
        **kwargs
    )
    explain_target(name, kwargs)
