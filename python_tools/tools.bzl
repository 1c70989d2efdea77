"""Macros declaring rules_shiko's Python tools and their pytest suites (python_tools/BUILD)."""

load("@rules_python//python:defs.bzl", "py_binary", "py_library", "py_test")

def tool(name, srcs = None, deps = [], binary = True):
    """A tool module: `<name>_lib` (py_library) and, with binary, the `<name>` CLI (py_binary).

    The repository root goes on sys.path (imports = [".."]) so `import python_tools.x` works
    whether rules_shiko is the main repository or an external one.
    """
    py_library(
        name = name + "_lib",
        srcs = srcs or [name + ".py"],
        imports = [".."],
        deps = deps,
    )
    if binary:
        py_binary(
            name = name,
            srcs = [name + ".py"],
            main = name + ".py",
            python_version = "3.11",  # cp311 wheels; rules_python switches per target
            deps = [":%s_lib" % name],
        )

def tool_test(name, deps, srcs = [], tags = [], size = "medium"):
    """`test_<x>`: pytest on tests/test_<x>.py (plus helper `srcs`), run by `bazel test`."""
    if not name.startswith("test_"):
        fail("tool_test %r: the name must be test_<module>" % name)
    main_src = "tests/%s.py" % name
    py_test(
        name = name,
        size = size,
        srcs = ["tests/pytest_main.py", main_src] + srcs,
        args = ["$(location %s)" % main_src],
        main = "tests/pytest_main.py",
        python_version = "3.11",  # cp311 wheels; rules_python switches per target
        tags = tags,
        deps = deps + ["@rules_shiko_pip_test//pytest"],
    )
