"""Destination paths inside an image: validation and normalization (shared by the rules)."""

load(":runfiles.bzl", "repo_relative")

def normalize_dest(target, attr_name, path):
    """Returns `path` inside the image as a relative, normalized path ("" is the root).

    Accepts `/a/b`, `a/b`, `./a//b/`; fails, naming target, attribute and value, on `..`
    components (which could leave the image root) and on empty paths.
    """
    if type(path) != "string" or path == "":
        fail("%s: attribute '%s': %r: destination must be a non-empty path" % (target, attr_name, path))
    parts = []
    for p in path.split("/"):
        if p == "" or p == ".":
            continue
        if p == "..":
            fail("%s: attribute '%s': %r: destination must stay inside the image root (no '..')" %
                 (target, attr_name, path))
        parts.append(p)
    return "/".join(parts)

def normalize_dest_or_root(target, attr_name, path):
    """Like normalize_dest, but "" and "/" mean the image root."""
    if path in ("", "/"):
        return ""
    return normalize_dest(target, attr_name, path)

def join_dest(*parts):
    return "/".join([p for p in parts if p])

def package_relative_path(f):
    """Path of a File relative to its owner's package (works for generated and external files)."""
    _, p = repo_relative(f)
    pkg = f.owner.package if f.owner else ""
    if pkg and p.startswith(pkg + "/"):
        p = p[len(pkg) + 1:]
    return p

def parse_octal(target, attr_name, value):
    """Validates an octal mode string such as "0755" and returns it (or fails)."""
    if not value or len(value) > 5:
        fail("%s: attribute '%s': %r: not an octal mode such as \"0755\"" % (target, attr_name, value))
    for c in value.elems():
        if c not in "01234567":
            fail("%s: attribute '%s': %r: not an octal mode such as \"0755\"" % (target, attr_name, value))
    return value

def parse_owner(target, attr_name, path, value):
    """Parses "uid:gid" (numbers only) and returns (uid, gid)."""
    parts = value.split(":")
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
        fail("%s: attribute '%s': %r: owner of %r must be \"uid:gid\" with numbers" %
             (target, attr_name, value, path))
    return int(parts[0]), int(parts[1])
