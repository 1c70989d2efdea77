"""Generates docs/rules.md and docs/repositories.md from the Starlark sources (standard library only).

    python3 docs/generate.py           # (re)writes docs/rules.md and docs/repositories.md
    python3 docs/generate.py --check   # exit 1 and a unified diff when they are not up to date

`bazel test //docs:docs_test` runs the check on the copies in its runfiles.

The work is done by the package docs/docgen/ (its __init__.py says what it reads and how); this
is its entry point. docs/ is on sys.path: it is this script's directory, and the py_library
//docs:docgen adds it (`imports`) under Bazel.
"""

import sys

from docgen.cli import main

if __name__ == "__main__":
    sys.exit(main())
