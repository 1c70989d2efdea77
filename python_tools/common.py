"""Helpers shared by every rules_shiko tool: errors, hashing, atomic outputs, JSON.

Every tool reads one JSON manifest written by Starlark (its contract is documented in the
tool's module docstring) and never guesses paths. A problem with the user's input is raised as
`UserError`; `run_tool` prints it as one line naming the target, attribute and value, removes
whatever the tool had started to write, and exits 1.
"""

import hashlib
import json
import os
import shutil
import sys

CHUNK = 1 << 20


class UserError(Exception):
    """Bad input: printed as `ERROR: <target>: attribute '<attr>': <value>: <problem>`."""

    def __init__(self, problem, target=None, attr=None, value=None):
        self.problem = problem
        self.target = target
        self.attr = attr
        self.value = value
        super().__init__(self.render())

    def render(self):
        parts = []
        if self.target:
            parts.append(str(self.target))
        if self.attr:
            parts.append("attribute '%s'" % self.attr)
        if self.value is not None:
            parts.append(repr(self.value))
        parts.append(self.problem)
        return ": ".join(parts)


def remove_outputs(paths):
    """Removes files or directories a failed tool run may have left behind."""
    for p in paths:
        if not p:
            continue
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            elif os.path.lexists(p):
                os.unlink(p)
        except OSError:
            pass


def run_tool(fn, outputs):
    """Runs fn(); on UserError prints one clear line, removes `outputs` and exits 1."""
    try:
        fn()
    except UserError as e:
        remove_outputs(outputs)
        sys.stderr.write("ERROR: %s\n" % e.render())
        sys.exit(1)
    except BaseException:
        remove_outputs(outputs)
        raise


def sha256_file(path):
    """Returns (hex digest, size) of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            h.update(b)
            size += len(b)
    return h.hexdigest(), size


def canonical_json(obj):
    """The one JSON encoding used for every blob we hash: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_json(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def write_file_atomic(path, data):
    """Writes bytes to path via a temporary file and rename, so a failure leaves nothing."""
    tmp = path + ".tmp-shiko"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# --- Stamping (shared by every tool that takes a `stamp` entry) -------------------------------
# A value may hold `{KEY}` placeholders (KEY = [A-Z0-9_]+). With stamp files ("KEY value" lines of
# Bazel's stable-status.txt and volatile-status.txt) each is replaced by its value, and an unknown
# KEY is an error. Without stamping, `{BUILD_TIMESTAMP}` becomes "0" and any other KEY
# "unstamped", so unstamped builds stay reproducible.

import re as _re

STAMP_PLACEHOLDER = _re.compile(r"\{([A-Z0-9_]+)\}")


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
