"""Paths inside tars and layers: the one normalisation every tool uses.

    normalize("./usr//bin/")                 -> "usr/bin"
    normalize("/etc")                        -> BadName(reason=ABSOLUTE)
    normalize("/etc", allow_absolute=True)   -> "etc"
    normalize("a/../b")                      -> BadName(reason=DOTDOT)
    absolute("./usr/bin/")                   -> "/usr/bin"   (a leading "/" is allowed)

Components "" and "." are dropped: a leading "./", doubled and trailing slashes go, and "." or
"./" is the root (""). A ".." component or a NUL is never accepted (BadName), whatever the
caller, so a name can never leave the root it is unpacked under. A leading "/" is the caller's
choice (`allow_absolute`): layer paths and imported members reject it, image layers read back
(whose writers may have stored "/usr/...") drop it. Each caller turns BadName's `reason` into
its own message.

The normalised form ("a/b", no leading or trailing slash) is what a layer stores as the member
name (directories then get a "/" appended by the writer), so this function decides bytes that
are hashed into image digests: keep it exactly as it is.
"""

ABSOLUTE = "absolute"
DOTDOT = "dotdot"
NUL = "nul"
EMPTY = "empty"


class BadName(ValueError):
    """A name that cannot be normalised; `reason` is ABSOLUTE, DOTDOT, NUL or EMPTY."""

    def __init__(self, name, reason):
        self.name = name
        self.reason = reason
        super().__init__("%r: %s" % (name, reason))


def normalize(name, allow_absolute=False, allow_empty=True):
    """The relative form of a tar member or layer path: "a/b" ("" for the root).

    allow_absolute: drop a leading "/" (True) or reject it (False: BadName ABSOLUTE).
    allow_empty: accept a name that is the root ("", ".", "./"); False: BadName EMPTY.
    Checks run in this order: the leading "/", then each component from the left (".." and
    NUL), then emptiness.
    """
    if name.startswith("/") and not allow_absolute:
        raise BadName(name, ABSOLUTE)
    parts = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            raise BadName(name, DOTDOT)
        if "\0" in c:
            raise BadName(name, NUL)
        parts.append(c)
    if not parts and not allow_empty:
        raise BadName(name, EMPTY)
    return "/".join(parts)


def absolute(name):
    """The absolute form of a member name, "/a/b" ("/" for the root); a leading "/" is fine."""
    return "/" + normalize(name, allow_absolute=True)


def join(prefix, rel):
    """Joins two normalised relative paths ("" is the root)."""
    if not prefix:
        return rel
    return prefix + "/" + rel if rel else prefix
