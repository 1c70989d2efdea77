"""deb822 control files (Packages, Release, control, .sources) and package relations."""

import re

from python_tools.shiko.debian.errors import DebError


def parse_stanzas(text, fields=None):
    """Paragraphs of a deb822 file (Packages, Release, control) as dicts.

    `fields`: if given, a set of field names to keep (faster on big indexes). Continuation lines
    are joined with "\n" (multi-line fields such as SHA256 keep their lines).
    """
    out = []
    cur = {}
    key = None
    for line in text.split("\n"):
        if not line.strip():
            if cur:
                out.append(cur)
                cur = {}
            key = None
            continue
        if line[0] in " \t":
            if key is not None:
                cur[key] += "\n" + line.strip()
            continue
        if line[0] == "#":
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise DebError("malformed line in a control file: %r" % line[:80])
        if fields is not None and k not in fields:
            key = None
            continue
        key = k
        cur[k] = v.strip()
    if cur:
        out.append(cur)
    return out


_REL = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9+.\-]*)(?::([A-Za-z0-9\-]+))?\s*"
    r"(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?\s*"
    r"(?:\[[^\]]*\]\s*)?(?:<[^>]*>\s*)*$")


def parse_relations(value):
    """`a (>= 1) | b, c:any` -> [[("a", ">=", "1"), ("b", None, None)], [("c", None, None)]]."""
    groups = []
    if not value or not value.strip():
        return groups
    for part in value.split(","):
        if not part.strip():
            continue
        alts = []
        for alt in part.split("|"):
            m = _REL.match(alt)
            if not m:
                raise DebError("malformed relation %r" % alt.strip())
            alts.append((m.group(1), m.group(3), m.group(4)))
        groups.append(alts)
    return groups


def format_group(group):
    return " | ".join(n if op is None else "%s (%s %s)" % (n, op, v) for n, op, v in group)
