"""Starts one rules_shiko tool under the tools' own Python (the launcher that
rules/private/python/tool.bzl writes runs it; python_tools/interpreter/README.md):

    <loader> --library-path <lib> <python3.X> -I -S boot.py RUNFILES IMPORTS MAIN [ARGS...]

RUNFILES: the absolute runfiles root. IMPORTS: ':'-separated directories below it (the tool's
PyInfo imports: the rules_shiko root, each wheel's directory). MAIN: the tool's .py below it.
sys.path becomes what a py_binary would give: the main file's directory, the imports, then the
standard library. Standard library only; nothing is imported before the tool.
"""

import sys


def _run():
    runfiles, imports, main = sys.argv[1:4]
    main = runfiles + "/" + main
    sys.path[:0] = [main.rsplit("/", 1)[0]] + [runfiles + "/" + p for p in imports.split(":") if p]
    sys.argv = [main] + sys.argv[4:]
    with open(main, "rb") as f:
        code = compile(f.read(), main, "exec", dont_inherit=True)
    namespace = sys.modules["__main__"].__dict__  # the tool's module is __main__, as usual
    namespace.pop("_run")
    namespace.update(__file__=main, __doc__=None, __cached__=None)
    exec(code, namespace)


_run()
