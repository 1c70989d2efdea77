"""Lays out the tools' own Python from locked Debian packages (the repository rule
rules/private/repo/tool_python.bzl runs it; python_tools/interpreter/README.md).

Python standard library only: `assemble` runs with the host's python3 (any 3.x), `zip` with the
interpreter it just unpacked (the bytecode must be that interpreter's).

Subcommands
===========
  assemble --out=DIR --triplet=x86_64-linux-gnu --deb=D.deb... [--target=LABEL]
           unpacks the packages' data into DIR (the layout: shiko/debian/interpreter.py) and
           prints the Python version ("3.11")
  zip      --out=DIR --version=X.Y [--no_pyc] [--target=LABEL]
           writes DIR/lib/pythonXY.zip from DIR/_stdlib: each module with its unchecked-hash
           .pyc (--no_pyc: sources only, for another CPU's interpreter, by any python3)
  tar      --out=DIR --output=T.tar [--target=LABEL]
           writes a deterministic tar of DIR's layout (bin/, lib/) and prints its sha256
Errors: one line `ERROR: <target>: <problem>` on stderr, exit 1.
"""

import os
import sys

if __package__ in (None, ""):  # run as a script (the repository rule): the repository root on sys.path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from python_tools.shiko import cli  # noqa: E402
from python_tools.shiko.debian import interpreter  # noqa: E402
from python_tools.shiko.errors import UserError  # noqa: E402

ASSEMBLE_FLAGS = [
    cli.string("out", required=True, help="The repository directory to lay the interpreter out in."),
    cli.string("triplet", required=True, help="The multiarch triplet: x86_64-linux-gnu, aarch64-linux-gnu."),
    cli.multi_string("deb", help="A .deb to unpack (repeatable)."),
    cli.string("target", "tool_python", help="The label named in errors."),
]
ZIP_FLAGS = [
    cli.string("out", required=True, help="The directory `assemble` wrote."),
    cli.string("version", required=True, help="The interpreter's version, X.Y."),
    cli.boolean("no_pyc", help="Sources only (another CPU's interpreter cannot run here)."),
    cli.string("target", "tool_python", help="The label named in errors."),
]


TAR_FLAGS = [
    cli.string("out", required=True, help="The directory `assemble` and `zip` wrote."),
    cli.string("output", required=True, help="The tar to write."),
    cli.string("target", "tool_python", help="The label named in errors."),
]


def _naming_the_target(run):
    def wrapped(args):
        try:
            return run(args)
        except (OSError, ValueError) as e:
            raise UserError(str(e), args.target)

    return wrapped


def run_assemble(args):
    if not args.deb:
        raise ValueError("no --deb to unpack")
    print(interpreter.assemble(args.deb, args.out, args.triplet))


def run_zip(args):
    interpreter.write_stdlib_zip(args.out, args.version, compile_pyc=not args.no_pyc)


def run_tar(args):
    print(interpreter.write_layout_tar(args.out, args.output))


COMMANDS = {
    "assemble": cli.Command(ASSEMBLE_FLAGS, _naming_the_target(run_assemble)),
    "zip": cli.Command(ZIP_FLAGS, _naming_the_target(run_zip)),
    "tar": cli.Command(TAR_FLAGS, _naming_the_target(run_tar)),
}


if __name__ == "__main__":
    cli.main(COMMANDS)
