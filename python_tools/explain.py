"""Explains an image in the terminal: `bazel run //pkg:image.explain [-- --diff=OLD.report.json]`.

Usage (the launcher written by rules/private/image/report.bzl gives --report and --html):
  explain.py --report=IMAGE.report.json [--html=IMAGE.report.html] [--diff=OLD.report.json]

Without --diff it prints the report (python_tools/shiko/explain/model.py) as a compact table:
the image's size, dive's efficiency and wasted bytes, one line per layer with its top origins,
the findings with what to do, and the largest files; then where the HTML page is.

With --diff=OLD.report.json (an earlier build's `<name>.report.json`, e.g. copied from
bazel-bin before an edit) it prints what changed from OLD to this build: per layer whose digest
changed, the files added, removed or changed and the label each came from, e.g.
`app layer: 1 file changed, from //examples/python_app:server.py`. A relative --diff path is
taken from the directory `bazel run` was started in (BUILD_WORKING_DIRECTORY).

A missing or unreadable file is one line `ERROR: explain: --<flag>: <path>: <problem>`, exit 1.
"""

import os
import sys

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError
from python_tools.shiko.explain.diff import diff_reports
from python_tools.shiko.explain.table import render_diff, render_report
from python_tools.shiko.files import read_json

FLAGS = [
    cli.string("report", required=True, help="The image's <name>.report.json."),
    cli.string("html", help="The image's <name>.report.html (its path is printed)."),
    cli.string("diff", help="An older <name>.report.json: print what changed since."),
]


def _user_path(path):
    """A path as the user typed it: relative to where `bazel run` was started."""
    base = os.environ.get("BUILD_WORKING_DIRECTORY")
    if base and not os.path.isabs(path):
        return os.path.join(base, path)
    return path


def _load(flag, path):
    try:
        data = read_json(path)
    except OSError as e:
        raise UserError("cannot read it: %s" % (e.strerror or e), "explain", "--" + flag, path)
    except ValueError as e:
        raise UserError("not JSON: %s" % e, "explain", "--" + flag, path)
    if not isinstance(data, dict) or "layers" not in data or "digest" not in data:
        raise UserError("not an image report (<name>.report.json)", "explain", "--" + flag, path)
    return data


def run(args):
    report = _load("report", args.report)
    if args.diff:
        old = _load("diff", _user_path(args.diff))
        sys.stdout.write(render_diff(diff_reports(old, report)))
        return 0
    sys.stdout.write(render_report(report))
    sys.stdout.write("\nreport: %s\n" % os.path.realpath(args.report))
    if args.html:
        sys.stdout.write("page:   file://%s\n" % os.path.realpath(args.html))
    return 0


if __name__ == "__main__":
    cli.main(FLAGS, run)
