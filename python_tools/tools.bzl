"""Macros declaring rules_shiko's Python tools and their pytest suites (python_tools/BUILD)."""

load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")
load("//rules/private/python:tool.bzl", "py_tool")

# The tools' own Python per execution platform (python_tools/interpreter/README.md); any other
# platform (macOS, Windows, other CPUs) falls back to a py_binary on the Python toolchain.
_TOOL_PYTHON = {
    "//python_tools/interpreter:linux_x86_64": "@rules_shiko_python_amd64//:python",
    "//python_tools/interpreter:linux_arm64": "@rules_shiko_python_arm64//:python",
}

def tool_python():
    """The tools' own Python of the platform a tool runs on (x86-64 when none matches)."""
    return select(dict(_TOOL_PYTHON, **{"//conditions:default": _TOOL_PYTHON.values()[0]}))

def tool(name, srcs = None, deps = [], binary = True):
    """A tool module: `<name>_lib` (py_library) and, with binary, the `<name>` CLI.

    The repository root goes on sys.path (imports = [".."]) so `import python_tools.x` works
    whether rules_shiko is the main repository or an external one.

    `<name>` is an alias: on Linux x86-64 and arm64 (the platform the tool runs on: the
    execution platform for actions), `<name>_hermetic`, started with the tools' own Python from
    locked Debian packages (needs only /bin/sh); elsewhere `<name>_py`, a py_binary on the
    Python toolchain (host python3 3.11 on Bazel 4.2.3, rules_python's on Bazel 7+).
    """
    py_library(
        name = name + "_lib",
        srcs = srcs or [name + ".py"],
        imports = [".."],
        deps = deps,
    )
    if binary:
        py_binary(
            name = name + "_py",
            srcs = [name + ".py"],
            main = name + ".py",
            python_version = "3.11",  # cp311 wheels; rules_python switches per target
            deps = [":%s_lib" % name],
        )
        py_tool(
            name = name + "_hermetic",
            main = name + ".py",
            python = tool_python(),
            deps = [":%s_lib" % name],
        )
        native.alias(
            name = name,
            actual = select(dict(
                [(k, ":%s_hermetic" % name) for k in _TOOL_PYTHON],
                **{"//conditions:default": ":%s_py" % name}
            )),
        )

def tool_test(name, deps, srcs = [], data = [], tags = [], size = "medium"):
    """`test_<x>`: pytest on tests/test_<x>.py (plus helper `srcs`, and `data` files in its
    runfiles), run by `bazel test`."""
    if not name.startswith("test_"):
        fail("tool_test %r: the name must be test_<module>" % name)
    main_src = "tests/%s.py" % name
    py_test(
        name = name,
        size = size,
        srcs = ["tests/pytest_main.py", main_src] + srcs,
        args = ["$(location %s)" % main_src],
        data = data,
        main = "tests/pytest_main.py",
        python_version = "3.11",  # cp311 wheels; rules_python switches per target
        tags = tags,
        deps = deps + ["@rules_shiko_pip_test//pytest"],
    )
