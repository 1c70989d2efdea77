"""The ShikoPyBytecode action (rules/private/python/tool.bzl, `py_bytecode`): the tools' own
modules into one zip with their bytecode, made by the tools' Python itself.

    <loader> --library-path <lib> <python3.X> -I -S -B compile.py OUT.zip NAME=PATH...

NAME is the module's path below its import root (python_tools/shiko/cli.py), PATH the file to
read. The launcher of each tool puts the zip first on sys.path, so a tool starts without
compiling its modules (its runfiles are read-only, and `-B` writes no __pycache__).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pyzip  # noqa: E402


def main(argv):
    out, pairs = argv[0], argv[1:]
    members = []
    for p in pairs:
        name, _, path = p.partition("=")
        if not name.endswith(".py") or not path:
            sys.stderr.write("ERROR: compile.py: expected NAME.py=PATH, got %r\n" % p)
            return 2
        members.append((name, path))
    pyzip.write(out, members)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
