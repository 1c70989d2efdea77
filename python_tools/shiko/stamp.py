"""Stamping, shared by every tool that takes a `stamp` entry in its manifest.

A value may hold `{KEY}` placeholders (KEY = [A-Z0-9_]+). With stamp files ("KEY value" lines of
Bazel's stable-status.txt and volatile-status.txt) each is replaced by its value, and an unknown
KEY is an error. Without stamping, `{BUILD_TIMESTAMP}` becomes "0" and any other KEY
"unstamped", so unstamped builds stay reproducible.
"""

import re

from python_tools.shiko.errors import UserError

STAMP_PLACEHOLDER = re.compile(r"\{([A-Z0-9_]+)\}")


def read_stamp(stamp, target=None):
    """Returns {KEY: value} read from a manifest's `stamp` entry, or None when not stamping."""
    if not stamp:
        return None
    values = {}
    for key in ("info_file", "version_file"):
        path = stamp.get(key)
        if not path:
            continue
        try:
            with open(path, "r", encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise UserError("cannot read stamp file: %s" % e.strerror, target, "stamp", path)
        for line in lines:
            if not line.strip():
                continue
            k, _, v = line.partition(" ")
            values[k] = v
    return values


def expand_stamp(value, stamp_values, target=None, attr=None):
    """Replaces `{KEY}` placeholders in value (see above); UserError on an unknown KEY."""

    def repl(m):
        key = m.group(1)
        if stamp_values is None:
            return "0" if key == "BUILD_TIMESTAMP" else "unstamped"
        if key not in stamp_values:
            raise UserError(
                "unknown stamp key {%s} (known: %s)" % (key, ", ".join(sorted(stamp_values)) or "none"),
                target,
                attr,
                value,
            )
        return stamp_values[key]

    return STAMP_PLACEHOLDER.sub(repl, value)
