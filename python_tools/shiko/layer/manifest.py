"""The layer manifest (written by Starlark) checked and turned into settings.

The JSON contract is documented in python_tools/layer.py. Every problem is a UserError naming
the target, the attribute and the value.
"""

from python_tools.shiko.errors import UserError
from python_tools.shiko.oci import media_types
from python_tools.shiko.tar import compression as compressions
from python_tools.shiko.tar import names

MEDIA_TYPES = {
    "gzip": media_types.OCI_LAYER_GZIP,
    "zstd": media_types.OCI_LAYER_ZSTD,
    "none": media_types.OCI_LAYER,
}

_MODE_MAX = 0o7777

_PATH_PROBLEMS = {
    names.ABSOLUTE: "absolute paths are not allowed in a layer",
    names.DOTDOT: "'..' is not allowed in a layer path",
    names.NUL: "NUL is not allowed in a layer path",
    names.EMPTY: "empty path: a layer member needs a name",
}


class Spec(object):
    """A checked layer manifest.

    target, compression ("gzip" | "zstd" | "none"), level (None for "none"), mtime, file_mode
    (None: 0755/0644 by the entry's "executable", else by content), dir_mode, uid, gid,
    overrides [(path, {"mode"|"uid"|"gid": v}, attr)] sorted by path, entries (the raw entry
    dicts, checked while collecting).
    """

    def __init__(self, manifest):
        if not isinstance(manifest, dict):
            raise UserError("the layer manifest must be a JSON object")
        self.target = manifest.get("target") or "<unknown target>"
        self._parse(manifest)

    def error(self, problem, attr=None, value=None):
        return UserError(problem, target=self.target, attr=attr, value=value)

    def _parse(self, m):
        comp = m.get("compression", "gzip")
        if comp not in MEDIA_TYPES:
            raise self.error("must be one of %s" % ", ".join(sorted(MEDIA_TYPES)), "compression", comp)
        self.compression = comp
        level = m.get("compression_level")
        ranges = compressions.LEVEL_RANGES
        if comp == "none":
            level = None
        elif level is None:
            level = compressions.DEFAULT_LEVELS[comp]
        elif isinstance(level, bool) or not isinstance(level, int) or not (
                ranges[comp][0] <= level <= ranges[comp][1]):
            raise self.error("%s levels are %d..%d" % ((comp,) + ranges[comp]),
                             "compression_level", level)
        self.level = level
        mtime = m.get("mtime", 0)
        if isinstance(mtime, bool) or not isinstance(mtime, int) or mtime < 0:
            raise self.error("must be a non-negative integer (seconds)", "mtime", mtime)
        self.mtime = mtime
        d = m.get("defaults") or {}
        if not isinstance(d, dict):
            raise self.error("must be an object", "defaults", d)
        fm = d.get("file_mode")
        self.file_mode = None if fm is None else self._mode(fm, "modes")
        dm = d.get("dir_mode")
        self.dir_mode = 0o755 if dm is None else self._mode(dm, "modes")
        self.uid = self._id(d.get("uid", 0), "owners")
        self.gid = self._id(d.get("gid", 0), "owners")
        self.overrides = []
        ov = m.get("overrides") or {}
        if not isinstance(ov, dict):
            raise self.error("must be an object", "overrides", ov)
        for path in sorted(ov):
            spec = ov[path]
            keys = set(spec) if isinstance(spec, dict) else set()
            if keys <= {"mode"}:
                attr = "modes"
            elif keys <= {"uid", "gid"}:
                attr = "owners"
            else:
                attr = "overrides"
            if not isinstance(spec, dict) or not keys or keys - {"mode", "uid", "gid"}:
                raise self.error("an override must be an object with keys among mode, uid, gid",
                                 attr, spec)
            norm = self.norm(path.lstrip("/"), attr, "/" + path.lstrip("/"), allow_empty=True)
            if not norm:
                raise self.error("the layer root has no entry to override", attr, path)
            o = {}
            if "mode" in spec:
                o["mode"] = self._mode(spec["mode"], attr)
            if "uid" in spec:
                o["uid"] = self._id(spec["uid"], attr)
            if "gid" in spec:
                o["gid"] = self._id(spec["gid"], attr)
            self.overrides.append((norm, o, attr))
        entries = m.get("entries") or []
        if not isinstance(entries, list):
            raise self.error("must be a list", "entries", entries)
        self.entries = entries

    def _mode(self, v, attr):
        if isinstance(v, str) and v and len(v) <= 5 and all(c in "01234567" for c in v):
            mode = int(v, 8)
            if mode <= _MODE_MAX:
                return mode
        raise self.error("a mode must be an octal string such as \"0644\" (at most 07777)", attr, v)

    def _id(self, v, attr):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 0x7FFFFFFF:
            raise self.error("a uid/gid must be an integer between 0 and 2**31-1", attr, v)
        return v

    def norm(self, path, attr, shown, allow_empty=False):
        """Normalizes a relative layer path; rejects absolute, '..', NUL and empty paths."""
        if not isinstance(path, str):
            raise self.error("a path must be a string", attr, path)
        try:
            return names.normalize(path, allow_absolute=False, allow_empty=allow_empty)
        except names.BadName as e:
            raise self.error(_PATH_PROBLEMS[e.reason], attr, shown)
