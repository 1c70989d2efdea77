"""image_test specs: validation and normalization of the checks users write (build time).

`validate(manifest)` turns the manifest Starlark writes (documented in python_tools/image_test.py,
with the checks each key takes) into the normalized spec the test reads: modes as ints, ports as
N/proto, regexes as lists, `absent` as {"exists": false}. A bad spec is a UserError naming the
target, the attribute (or the spec file) and the key.
"""

import re

from python_tools.shiko.errors import UserError
from python_tools.shiko.files import read_json
from python_tools.shiko.oci import platform as oci_platform

DRIVERS = ("auto", "docker", "podman", "none")
FILE_TYPES = ("file", "dir", "symlink", "fifo", "char", "block")
FILE_KEYS = ("exists", "type", "mode", "uid", "gid", "link", "content", "no_content", "size")
LIST_FIELDS = ("entrypoint", "cmd")
STRING_FIELDS = ("user", "workdir", "stop_signal", "os", "architecture", "variant")
SET_FIELDS = ("exposed_ports", "volumes")
DICT_FIELDS = ("env", "labels")
CONFIG_KEYS = LIST_FIELDS + STRING_FIELDS + SET_FIELDS + DICT_FIELDS
COMMAND_KEYS = ("name", "command", "args", "env", "exit_code", "stdout", "stderr", "no_stdout",
                "no_stderr", "timeout")
SPEC_KEYS = ("files", "absent", "config", "commands")
DEFAULT_TIMEOUT = 60


class _Spec(object):
    """Validates and normalizes one spec; errors name the target, the attribute and the key."""

    def __init__(self, target, source=None):
        self.target = target
        self.source = source  # the spec file's path, when the spec comes from one

    def err(self, attr, where, problem):
        if self.source:
            return UserError(problem, self.target, "spec", "%s: %s" % (self.source, where))
        return UserError(problem, self.target, attr, where)

    def _regexes(self, attr, where, value):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(x, str) for x in items):
            raise self.err(attr, where, "must be a regular expression or a non-empty list of them")
        for r in items:
            try:
                re.compile(r)
            except re.error as e:
                raise self.err(attr, where, "%r is not a valid regular expression: %s" % (r, e))
        return items

    def _int(self, attr, where, value, minimum=0):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.err(attr, where, "must be an integer >= %d" % minimum)
        return value

    def _path(self, attr, path):
        if not isinstance(path, str) or not path.startswith("/"):
            raise self.err(attr, path, "must be an absolute path")
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.err(attr, path, "must not contain '..'")
        return "/" + "/".join(parts)

    def files(self, files, absent, out):
        if not isinstance(files, dict):
            raise self.err("files", files, "must be a dict {path: {check: value}}")
        if not isinstance(absent, list) or not all(isinstance(p, str) for p in absent):
            raise self.err("absent", absent, "must be a list of absolute paths")
        for path in absent:
            p = self._path("absent", path)
            if p in out:
                raise self.err("absent", path, "is checked twice")
            out[p] = {"exists": False}
        for path in sorted(files):
            checks = files[path]
            p = self._path("files", path)
            if p in out:
                raise self.err("files", path, "is checked twice")
            if checks is None:
                checks = {}
            if not isinstance(checks, dict):
                raise self.err("files", path, "must map to a dict of checks (%s)" % ", ".join(FILE_KEYS))
            norm = {"exists": True}
            for key in sorted(checks):
                value = checks[key]
                where = "%s: %s" % (path, key)
                if key not in FILE_KEYS:
                    raise self.err("files", where, "unknown check (known: %s)" % ", ".join(FILE_KEYS))
                if key == "exists":
                    if not isinstance(value, bool):
                        raise self.err("files", where, "must be True or False")
                    norm["exists"] = value
                elif key == "type":
                    if value not in FILE_TYPES:
                        raise self.err("files", where, "%r is not one of %s" % (value, ", ".join(FILE_TYPES)))
                    norm["type"] = value
                elif key == "mode":
                    norm["mode"] = self._mode(where, value)
                elif key in ("uid", "gid", "size"):
                    norm[key] = self._int("files", where, value)
                elif key == "link":
                    if not isinstance(value, str) or not value:
                        raise self.err("files", where, "must be a non-empty string (the symlink's target)")
                    norm["link"] = value
                else:
                    norm[key] = self._regexes("files", where, value)
            if not norm["exists"] and len(norm) > 1:
                raise self.err("files", path, "an absent path takes no other check")
            if "link" in norm and norm.get("type", "symlink") != "symlink":
                raise self.err("files", path, "`link` needs type symlink")
            out[p] = norm
        return out

    def _mode(self, where, value):
        if isinstance(value, bool):
            raise self.err("files", where, "must be an octal string such as \"0755\"")
        if isinstance(value, int):
            mode = value
        elif isinstance(value, str) and value and all(c in "01234567" for c in value):
            mode = int(value, 8)
        else:
            raise self.err("files", where, "must be an octal string such as \"0755\"")
        if mode < 0 or mode > 0o7777:
            raise self.err("files", where, "must be between 0000 and 7777")
        return mode

    def config(self, config, out):
        if not isinstance(config, dict):
            raise self.err("config", config, "must be a dict {field: expected value}")
        for key in sorted(config):
            value = config[key]
            if key in out:
                raise self.err("config", key, "is checked twice")
            if key not in CONFIG_KEYS:
                raise self.err("config", key, "unknown field (known: %s)" % ", ".join(CONFIG_KEYS))
            if key in LIST_FIELDS:
                if value is None:
                    value = []
                if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                    raise self.err("config", key, "must be a list of strings (or None: unset)")
            elif key in STRING_FIELDS:
                if value is None:
                    value = ""
                if not isinstance(value, str):
                    raise self.err("config", key, "must be a string (or None: unset)")
            elif key in SET_FIELDS:
                if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                    raise self.err("config", key, "must be a list of strings")
                if key == "exposed_ports":
                    value = [self._port(p) for p in value]
                value = sorted(set(value))
            else:
                if not isinstance(value, dict) or not all(
                        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in value.items()):
                    raise self.err("config", key, "must be a dict of strings (a None value: must be unset)")
            out[key] = value
        return out

    def _port(self, value):
        num, sep, proto = value.partition("/")
        if not sep:
            proto = "tcp"
        if proto not in ("tcp", "udp") or not num.isdigit() or not 1 <= int(num) <= 65535:
            raise self.err("config", "exposed_ports: %s" % value, "a port must be N, N/tcp or N/udp")
        return "%d/%s" % (int(num), proto)

    def commands(self, commands, out):
        if not isinstance(commands, list):
            raise self.err("commands", commands, "must be a list of dicts")
        for i, c in enumerate(commands):
            if not isinstance(c, dict):
                raise self.err("commands", c, "each command must be a dict (%s)" % ", ".join(COMMAND_KEYS))
            name = c.get("name") or "command %d" % (len(out) + 1)
            if not isinstance(name, str):
                raise self.err("commands", name, "`name` must be a string")
            norm = {"name": name, "exit_code": 0, "timeout": DEFAULT_TIMEOUT, "env": {}}
            for key in sorted(c):
                value = c[key]
                where = "%s: %s" % (name, key)
                if key not in COMMAND_KEYS:
                    raise self.err("commands", where, "unknown key (known: %s)" % ", ".join(COMMAND_KEYS))
                if key in ("command", "args"):
                    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
                        raise self.err("commands", where, "must be a list of strings")
                    if key == "command" and not value:
                        raise self.err("commands", where, "must not be empty")
                    norm[key] = value
                elif key == "env":
                    if not isinstance(value, dict) or not all(
                            isinstance(k, str) and k and "=" not in k and isinstance(v, str)
                            for k, v in value.items()):
                        raise self.err("commands", where, "must be a dict of strings (names without '=')")
                    norm["env"] = value
                elif key == "exit_code":
                    norm[key] = self._int("commands", where, value)
                    if value > 255:
                        raise self.err("commands", where, "an exit code is 0..255")
                elif key == "timeout":
                    norm[key] = self._int("commands", where, value, minimum=1)
                elif key != "name":
                    norm[key] = self._regexes("commands", where, value)
            if "command" in norm and "args" in norm:
                raise self.err("commands", name, "give `command` (replaces entrypoint and cmd) or `args` (replaces cmd), not both")
            if any(x["name"] == name for x in out):
                raise self.err("commands", name, "two commands have this name")
            out.append(norm)
        return out

    def merge(self, spec, into):
        if not isinstance(spec, dict):
            raise self.err("spec", spec, "must be a JSON object with keys %s" % ", ".join(SPEC_KEYS))
        for key in spec:
            if key not in SPEC_KEYS:
                raise self.err("spec", key, "unknown key (known: %s)" % ", ".join(SPEC_KEYS))
        self.files(spec.get("files") or {}, spec.get("absent") or [], into["files"])
        self.config(spec.get("config") or {}, into["config"])
        self.commands(spec.get("commands") or [], into["commands"])


def validate(manifest):
    """The normalized spec the test reads (see the module docstring)."""
    target = manifest.get("target")
    driver = manifest.get("driver") or "auto"
    if driver not in DRIVERS:
        raise UserError("must be one of %s" % ", ".join(DRIVERS), target, "driver", driver)
    platform = manifest.get("platform") or ""
    if platform:
        try:
            oci_platform.parse(platform)
        except ValueError:
            raise UserError("must be os/architecture[/variant]", target, "platform", platform)
    merged = {"files": {}, "config": {}, "commands": []}
    _Spec(target).merge(manifest.get("spec") or {}, merged)
    spec_file = manifest.get("spec_file")
    if spec_file:
        try:
            data = read_json(spec_file)
        except (OSError, ValueError) as e:
            raise UserError("cannot read it as JSON: %s" % e, target, "spec", spec_file)
        _Spec(target, source=spec_file).merge(data, merged)
    if not merged["files"] and not merged["config"] and not merged["commands"]:
        raise UserError("checks nothing: give files, absent, config, commands or spec", target, "spec",
                               manifest.get("spec"))
    image = manifest.get("image") or {}
    return {
        "target": target,
        "image": {"label": image.get("label"), "layout": image.get("layout"), "layers": image.get("layers") or []},
        "platform": platform,
        "driver": driver,
        "files": merged["files"],
        "config": merged["config"],
        "commands": merged["commands"],
    }
