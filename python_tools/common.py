"""Deprecated home of the shared helpers: they live in python_tools/shiko/ now.

Kept only while tools move to `shiko.errors`, `shiko.files` and `shiko.stamp`; import those.
"""

from python_tools.shiko.errors import UserError, remove_outputs  # noqa: F401
from python_tools.shiko.files import CHUNK, canonical_json, read_json, sha256_file, write_file_atomic  # noqa: F401
from python_tools.shiko.stamp import STAMP_PLACEHOLDER, expand_stamp, read_stamp  # noqa: F401
import sys as _sys


def run_tool(fn, outputs):
    """Runs fn(); on UserError prints one clear line, removes `outputs` and exits 1."""
    try:
        fn()
    except UserError as e:
        remove_outputs(outputs)
        _sys.stderr.write("ERROR: %s\n" % e.render())
        _sys.exit(1)
    except BaseException:
        remove_outputs(outputs)
        raise
