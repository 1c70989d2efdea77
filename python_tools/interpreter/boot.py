"""Starts one rules_shiko tool under the tools' own Python (the launcher that
rules/private/python/tool.bzl writes runs it; python_tools/interpreter/README.md):

    <loader> --library-path <lib> <python3.X> -I -S boot.py RUNFILES IMPORTS MAIN [ARGS...]

RUNFILES: the absolute runfiles root. IMPORTS: ':'-separated directories below it (the tool's
PyInfo imports: the rules_shiko root, each wheel's directory). MAIN: the tool's .py below it.
sys.path becomes the main file's directory, the standard library, then the imports (what a
py_binary gives, with the standard library before the third-party directories, as in any
Python). Standard library only (os and sys, which the interpreter has loaded anyway).
"""

import os
import sys


def _bytecode_cache():
    """Under `bazel run` (push, load, verify, explain on the user's machine), the tools' compiled
    modules go to a cache of the user's (sys.pycache_prefix, checked against the sources'
    mtimes as usual), so a second run compiles nothing. Actions and workers write none: their
    runfiles are read-only, a worker compiles once, and an action leaves nothing behind."""
    if not os.environ.get("BUILD_WORKSPACE_DIRECTORY"):
        return
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    sys.pycache_prefix = os.path.join(base, "rules_shiko", "pycache")
    sys.dont_write_bytecode = False


def _run():
    _bytecode_cache()
    runfiles, imports, main = sys.argv[1:4]
    main = runfiles + "/" + main
    # The standard library before the imports (as site-packages come after it): each import of
    # a standard module then stops at the stdlib zip instead of looking in every wheel first.
    sys.path[:] = [main.rsplit("/", 1)[0]] + sys.path + [runfiles + "/" + p for p in imports.split(":") if p]
    sys.argv = [main] + sys.argv[4:]
    # The import system's own loader (always loaded, no import): it compiles the main file, or
    # reads its bytecode from the cache when _bytecode_cache set one (a second `bazel run`).
    loader = sys.modules["_frozen_importlib_external"].SourceFileLoader("__main__", main)
    code = loader.get_code("__main__")
    namespace = sys.modules["__main__"].__dict__  # the tool's module is __main__, as usual
    namespace.pop("_run")
    namespace.pop("_bytecode_cache")
    namespace.update(__file__=main, __doc__=None, __cached__=None)
    exec(code, namespace)


_run()
