"""The command: write the generated docs, or with --check diff them against the committed ones."""

import argparse
import difflib
import os
import sys

from .render import generate
from .values import GenerateError

DESCRIPTION = ("Generates docs/rules.md and docs/repositories.md from the Starlark sources "
               "(standard library only).")


def default_root():
    """The repository root: the test's runfiles under `bazel test`, else this file's checkout."""
    srcdir = os.environ.get("TEST_SRCDIR")
    workspace = os.environ.get("TEST_WORKSPACE")
    if srcdir and workspace:
        return os.path.join(srcdir, workspace)
    # <root>/docs/docgen/cli.py
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def check(root, generated, stream=sys.stdout):
    """Prints a unified diff per stale file; returns the number of stale files."""
    stale = 0
    for path, text in generated.items():
        try:
            with open(os.path.join(root, path), "r", encoding="utf-8") as f:
                committed = f.read()
        except FileNotFoundError:
            committed = ""
        if committed == text:
            continue
        stale += 1
        stream.writelines(difflib.unified_diff(
            committed.splitlines(True), text.splitlines(True),
            fromfile=path + " (committed)", tofile=path + " (generated)"))
        stream.write("\n")
    if stale:
        stream.write("ERROR: %d generated doc file(s) are out of date: run `python3 docs/generate.py` "
                     "from the repository root and commit the result.\n" % stale)
    return stale


def main(argv=None):
    """Exit status of `python3 docs/generate.py [--check] [--root DIR]` (argv without the program)."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--check", action="store_true",
                        help="don't write: exit 1 with a diff when the committed files are stale")
    parser.add_argument("--root", default=None, help="repository root (default: found from this file)")
    args = parser.parse_args(argv)
    root = args.root or default_root()
    try:
        generated = generate(root)
    except GenerateError as e:
        sys.stderr.write("ERROR: docs/generate.py: %s\n" % e)
        return 1
    if args.check:
        return 1 if check(root, generated) else 0
    for path, text in generated.items():
        full = os.path.join(root, path)
        try:
            with open(full, "r", encoding="utf-8") as f:
                if f.read() == text:
                    print("%s: up to date" % path)
                    continue
        except FileNotFoundError:
            pass
        with open(full, "w", encoding="utf-8") as f:
            f.write(text)
        print("%s: written" % path)
    return 0
