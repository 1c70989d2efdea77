"""Debian version order (dpkg's verrevcmp) and version relations (`>=`, `<<`, ...)."""

from python_tools.shiko.debian.errors import DebError

_DIGITS = "0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _order(c):
    if c == "~":
        return -1
    if c in _DIGITS:
        return 0
    if c in _LETTERS:
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a, b):
    """dpkg's verrevcmp: compares upstream versions or revisions."""
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        first_diff = 0
        while (i < la and a[i] not in _DIGITS) or (j < lb and b[j] not in _DIGITS):
            ac = _order(a[i]) if i < la else 0
            bc = _order(b[j]) if j < lb else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < la and a[i] == "0":
            i += 1
        while j < lb and b[j] == "0":
            j += 1
        while i < la and a[i] in _DIGITS and j < lb and b[j] in _DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < la and a[i] in _DIGITS:
            return 1
        if j < lb and b[j] in _DIGITS:
            return -1
        if first_diff:
            return first_diff
    return 0


def parse_version(v):
    """(epoch, upstream, revision) of a Debian version string."""
    v = v.strip()
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        if not e.isdigit():
            raise DebError("bad version epoch in %r" % v)
        epoch = int(e)
    if "-" in v:
        upstream, revision = v.rsplit("-", 1)
    else:
        upstream, revision = v, ""
    return epoch, upstream, revision


def version_compare(a, b):
    """<0, 0 or >0 as Debian version a sorts before, equal to or after b."""
    ea, ua, ra = parse_version(a)
    eb, ub, rb = parse_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    c = _verrevcmp(ua, ub)
    if c:
        return c
    return _verrevcmp(ra, rb)


def version_satisfies(version, op, wanted):
    """Whether `version` satisfies the relation `op wanted` (op None: any version)."""
    if op is None:
        return True
    c = version_compare(version, wanted)
    if op == "<<":
        return c < 0
    if op in ("<=", "<"):  # "<" and ">" are the obsolete spellings of "<=" and ">="
        return c <= 0
    if op == "=":
        return c == 0
    if op in (">=", ">"):
        return c >= 0
    if op == ">>":
        return c > 0
    raise DebError("unknown version relation %r" % op)
