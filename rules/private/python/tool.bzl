"""rules_shiko's own Python tools, started with the tools' own Python (issue #16).

- `tool_python`: the interpreter of an @rules_shiko_python_<arch> repository
  (rules/private/repo/tool_python.bzl writes the target): ToolPythonInfo.
- `py_tool`: one tool (python_tools/<verb>.py and its py_library deps) as an executable that
  needs nothing from the machine but `/bin/sh` and a Linux kernel: a POSIX sh launcher that
  starts the interpreter through the packages' own dynamic loader,

      <runfiles>/<repo>/lib/ld-linux-….so.N --library-path <runfiles>/<repo>/lib \\
          <runfiles>/<repo>/bin/python3.X -I -S -B python_tools/interpreter/boot.py …

  so no `/usr/bin/python3`, no host library and no PATH lookup is involved. (Bazel 4.2.3's
  py_binary launcher is itself a Python script, `#!/usr/bin/python3`: a worker without the
  host's python3 cannot start it.) Actions, persistent workers and `bazel run` start the same
  launcher; the runfiles are found as `<launcher>.runfiles`, $RUNFILES_DIR, $TEST_SRCDIR, or the
  `*.runfiles/` directory the launcher sits in.
"""

load("@rules_python//python:defs.bzl", "PyInfo")
load("//rules/private/common:launcher.bzl", "runfiles_path", "sh_quote")
load("//rules/private/common:providers.bzl", "ShikoToolInfo", "ToolPythonInfo")

def _tool_python_impl(ctx):
    files = depset(ctx.files.files + [ctx.file.loader, ctx.file.interpreter])
    return [
        ToolPythonInfo(
            loader = ctx.file.loader,
            interpreter = ctx.file.interpreter,
            version = ctx.attr.version,
            files = files,
        ),
        DefaultInfo(files = files),
    ]

tool_python = rule(
    implementation = _tool_python_impl,
    doc = "The tools' own Python, unpacked from locked Debian packages (written by the rules_shiko_python_<arch> repositories).",
    attrs = {
        "loader": attr.label(mandatory = True, allow_single_file = True, doc = "The dynamic loader: lib/ld-linux-*.so.*."),
        "interpreter": attr.label(mandatory = True, allow_single_file = True, doc = "bin/python3.X."),
        "version": attr.string(mandatory = True, doc = "The Python version, e.g. \"3.11\"."),
        "files": attr.label_list(allow_files = True, doc = "The libraries, extension modules and the standard library's zip."),
    },
)

_LAUNCHER = """#!/bin/sh
# {label}: {main} under the tools' own Python ({python}), written by rules_shiko
# (rules/private/python/tool.bzl). Needs /bin/sh only: the interpreter starts through its own
# dynamic loader and libraries.
case "$0" in /*) self="$0" ;; *) self="$PWD/$0" ;; esac
if [ -d "$self.runfiles" ]; then
  r="$self.runfiles"
elif [ -n "${{RUNFILES_DIR:-}}" ] && [ -d "$RUNFILES_DIR/{probe}" ]; then
  r="$RUNFILES_DIR"
elif [ -n "${{TEST_SRCDIR:-}}" ] && [ -d "$TEST_SRCDIR/{probe}" ]; then
  r="$TEST_SRCDIR"
else
  case "$self" in
    *.runfiles/*) r="${{self%%.runfiles/*}}.runfiles" ;;
    *) echo "{label}: cannot find the runfiles of $0" >&2; exit 1 ;;
  esac
fi
case "$r" in /*) ;; *) r="$PWD/$r" ;; esac
exec "$r/{loader}" --library-path "$r/{libdir}" "$r/{interpreter}" -I -S -B "$r/{boot}" "$r" {imports} {main_rpath} "$@"
"""

_EXEC_LAUNCHER = """#!/bin/sh
# {label}: {source} under the tools' own Python ({python}), as actions start it: from the execution
# root, which holds every file it needs (the action's tools). Written by rules_shiko
# (rules/private/python/tool.bzl).
r="$PWD"
exec "$r/{loader}" --library-path "$r/{libdir}" "$r/{interpreter}" -I -S -B "$r/{boot}" "$r" {imports} {main} "$@"
"""

def _exec_import(ctx, path):
    """A PyInfo import (below the runfiles root: `<repository>/dir`) as a path below the
    execution root: the main repository's files are at its top, other repositories' under
    external/."""
    repo, _, rest = path.partition("/")
    if repo == ctx.workspace_name:
        return rest or "."
    return "external/" + path

def _py_tool_impl(ctx):
    py = ctx.attr.python[ToolPythonInfo]
    main = ctx.file.main
    imports = depset(transitive = [d[PyInfo].imports for d in ctx.attr.deps]).to_list()
    sources = depset([main], transitive = [d[PyInfo].transitive_sources for d in ctx.attr.deps])
    loader = runfiles_path(ctx, py.loader)
    libdir = loader.rsplit("/", 1)[0]
    launcher = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.write(launcher, _LAUNCHER.format(
        label = ctx.label,
        main = main.short_path,
        python = ctx.attr.python.label,
        probe = libdir,
        loader = loader,
        libdir = libdir,
        interpreter = runfiles_path(ctx, py.interpreter),
        boot = runfiles_path(ctx, ctx.file._boot),
        imports = sh_quote(":".join(imports)),
        main_rpath = sh_quote(runfiles_path(ctx, main)),
    ), is_executable = True)
    runfiles = ctx.runfiles(
        files = [main, ctx.file._boot],
        transitive_files = depset(transitive = [sources, py.files]),
    )
    for d in ctx.attr.deps:
        runfiles = runfiles.merge(d[DefaultInfo].default_runfiles)

    exec_launcher = ctx.actions.declare_file(ctx.label.name + ".exec")
    ctx.actions.write(exec_launcher, _EXEC_LAUNCHER.format(
        label = ctx.label,
        source = main.short_path,
        python = ctx.attr.python.label,
        loader = py.loader.path,
        libdir = py.loader.dirname,
        interpreter = py.interpreter.path,
        boot = ctx.file._boot.path,
        imports = sh_quote(":".join([_exec_import(ctx, i) for i in imports])),
        main = sh_quote(main.path),
    ), is_executable = True)
    return [
        DefaultInfo(executable = launcher, files = depset([launcher]), runfiles = runfiles),
        ShikoToolInfo(launcher = exec_launcher, inputs = runfiles.files),
    ]

py_tool = rule(
    implementation = _py_tool_impl,
    doc = "A rules_shiko tool started with the tools' own Python: needs only /bin/sh and a Linux kernel.",
    executable = True,
    attrs = {
        "main": attr.label(mandatory = True, allow_single_file = [".py"], doc = "The tool's command: python_tools/<verb>.py."),
        "deps": attr.label_list(providers = [PyInfo], doc = "The py_library targets it imports (their PyInfo imports go on sys.path)."),
        "python": attr.label(mandatory = True, providers = [ToolPythonInfo], doc = "The interpreter: @rules_shiko_python_<arch>//:python."),
        "_boot": attr.label(default = "//python_tools/interpreter:boot.py", allow_single_file = True),
    },
)
