"""Runs a tool as a Bazel persistent worker (proto protocol), or once as a plain command.

    if __name__ == "__main__":
        worker.run(main)          # instead of absl's app.run(main)

- `tool --persistent_worker`: Bazel's worker protocol on stdin/stdout. Each WorkRequest's
  arguments are parsed as the tool's flags (absl), `main(argv)` runs, and a WorkResponse carries
  the exit code and everything the tool printed. The process, its imports (absl, isal,
  zstandard, ...) and the interpreter stay warm between actions, which saves the ~0.1-0.2 s of
  Python start-up each action otherwise pays, plus the sandbox set-up (workers are not
  sandboxed unless --worker_sandboxing).
- `tool @params` (the params file Bazel writes for actions that support workers, one argument
  per line) or `tool --flag=value ...`: runs once, like app.run(main).

The protocol (bazel's worker_protocol.proto) is length-delimited protobuf messages; only the
fields used here are encoded/decoded, with a small varint codec, so no protobuf package is
needed:
  WorkRequest  { repeated string arguments = 1; repeated Input inputs = 2; int32 request_id = 3;
                 bool cancel = 4; int32 verbosity = 5; string sandbox_dir = 6; }
  WorkResponse { int32 exit_code = 1; string output = 2; int32 request_id = 3;
                 bool was_cancelled = 4; }
Singleplex: one request at a time, so the tools' global flag values are safe to reuse.
"""

import io
import os
import sys
import traceback

from absl import app
from absl import flags

FLAGS = flags.FLAGS


from python_tools.shiko.worker import (  # noqa: F401  (the protocol lives there)
    encode_varint,
    encode_work_response,
    parse_work_request,
    read_message,
    write_message,
)


# --- Running the tool --------------------------------------------------------------------------


def expand_params(args):
    """Expands `@file` arguments (one argument per line, Bazel's "multiline" params files)."""
    out = []
    for a in args:
        if a.startswith("@") and not a.startswith("@@"):
            with open(a[1:], "r", encoding="utf-8") as f:
                out.extend(line for line in f.read().split("\n") if line != "")
        else:
            out.append(a)
    return out


def _exit_code(e):
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    sys.stderr.write("%s\n" % e.code)
    return 1


def run_request(main, prog, args):
    """Runs main with `args` as the tool's command line; returns (exit code, printed text)."""
    buf = io.StringIO()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buf
    try:
        FLAGS.unparse_flags()
        try:
            argv = FLAGS([prog] + expand_params(args))
        except flags.Error as e:
            buf.write("FATAL Flags parsing error: %s\n" % e)
            return 1, buf.getvalue()
        try:
            code = main(argv)
            code = code if isinstance(code, int) else 0
        except SystemExit as e:
            code = _exit_code(e)
        except app.UsageError as e:
            buf.write("FATAL: %s\n" % e)
            code = 1
        except Exception:  # the tool crashed: report it like an uncaught exception would
            traceback.print_exc(file=buf)
            code = 1
        return code, buf.getvalue()
    finally:
        sys.stdout, sys.stderr = old_out, old_err


def serve(main, prog, stdin=None, stdout=None):
    """The worker loop for absl tools (see shiko/worker.py)."""
    from python_tools.shiko import worker as protocol

    protocol.serve(lambda args: run_request(main, prog, args), stdin, stdout)


def run(main, argv=None):
    """Entry point of a tool: worker loop with --persistent_worker, else one run (app.run)."""
    argv = list(sys.argv if argv is None else argv)
    if "--persistent_worker" in argv[1:]:
        serve(main, argv[0])
        return
    app.run(main, argv=[argv[0]] + expand_params(argv[1:]))
