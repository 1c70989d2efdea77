"""Checks an image inside `bazel test`: its files, its config, and commands run in it.

Two modes (the `image_test` rule uses both):

  image_test.py --manifest=M.json --output=SPEC.json       build action: validates the spec
  image_test.py --spec=SPEC.json --runfiles=DIR [--driver=D] the test (run by the launcher)

Manifest (M.json, written by Starlark)
======================================
  {
    "target": "//pkg:test",
    "image": {"label": "//pkg:image",
              "layout": "ws/pkg/image",            # runfiles path of the OCI layout directory
              "layers": ["//pkg:base_layer", "//pkg:app_layer"]},   # labels known, bottom first
    "platform": "" | "linux/arm64",                # which image of a multi-platform layout
    "driver": "auto" | "docker" | "podman" | "none",
    "spec": {"files": {...}, "absent": [...], "config": {...}, "commands": [...]},
    "spec_file": null | "path/to/spec.json"        # the same keys; merged with "spec"
  }
  `layers` holds the labels of the image's own layers (and of image bases, recursively) in
  order; they name the top len(layers) layers of the image, the ones below are "base layer N".

The spec (what users write; see README `### image_test`)
========================================================
  files: {"/abs/path": {check: value, ...}}, checks:
    exists (bool, default true; false: the path must be absent, no other check allowed),
    type ("file", "dir", "symlink", "fifo", "char", "block"), mode ("0755" or an int),
    uid, gid (ints), link (a symlink's target, exactly as stored),
    content / no_content (a regex or a list: each must match / none may match the bytes of the
    file, Python `re.search` with MULTILINE), size (bytes).
    Parent directories are resolved through symlinks as the kernel would; type, mode, uid,
    gid and link are those of the path itself (lstat), content and size those of the file it
    leads to (stat).
  absent: ["/bin/sh", ...] — shorthand for {"exists": false}.
  config: {field: expected}; fields: entrypoint, cmd (lists; null or [] = unset), user,
    workdir, stop_signal, os, architecture, variant (strings; null or "" = unset),
    exposed_ports, volumes (lists compared as sets; "80" means "80/tcp"),
    env, labels (dicts: each given name must have that value; a null value: must be unset;
    names not given are not checked).
  commands: [{"name": "...", "command": [...] | "args": [...], "env": {...}, "exit_code": 0,
    "stdout": regex(es), "stderr": regex(es), "no_stdout": ..., "no_stderr": ...,
    "timeout": 60}]
    Without command/args the image's entrypoint + cmd run; `args` replaces cmd (like
    `docker run IMAGE args...`); `command` replaces entrypoint and cmd. Output regexes are
    Python `re.search` with MULTILINE on the output decoded as UTF-8.

The output SPEC.json is the manifest with the spec merged and normalized (modes as ints,
ports as N/proto, regexes as lists), the one file the test reads. Bad specs fail the build
with one line `ERROR: <target>: attribute '<attr>': <value>: <problem>`.

The test
========
It prints the image, the driver used for commands, then one line per check: `PASS ...`, or
`FAIL ...` followed by `expected:`, `actual:` and, for files, the layer (index, digest and
image_layer label, or "base layer N") the path came from or was removed by. It exits 1 when a
check fails, and when the commands cannot be run at all (no usable driver, engine errors):
a test never passes without running what it was asked to run.

Drivers (python_tools/image_run.py): docker (DOCKER_HOST, else /var/run/docker.sock), podman
(CONTAINERS_CONF / CONTAINERS_STORAGE_CONF / CONTAINER_HOST as given to the test), none (the
layers unpacked in a temporary root, run under bwrap, or unshare as root). `auto` picks docker
when a daemon answers, else podman when its configuration was passed to the test and
`podman info` works, else none. The environment variable SHIKO_IMAGE_TEST_DRIVER overrides
`auto` (e.g. `bazel test --test_env=SHIKO_IMAGE_TEST_DRIVER=podman`).
"""

import json
import os
import re
import signal
import sys
import tempfile

from absl import app
from absl import flags

from python_tools import common
from python_tools.shiko.oci import layout as oci_layout
from python_tools.shiko.tar import rootfs

FLAGS = flags.FLAGS

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
MAX_SHOWN = 600


def _define_flags():
    flags.DEFINE_string("manifest", None, "Validate: the JSON manifest written by Starlark.")
    flags.DEFINE_string("output", None, "Validate: the normalized spec to write.")
    flags.DEFINE_string("spec", None, "Test: the normalized spec (from the validation action).")
    flags.DEFINE_string("runfiles", None, "Test: the runfiles root the spec's paths are relative to.")
    flags.DEFINE_string("driver", None, "Test: override the spec's driver.")


# --- Spec validation ---------------------------------------------------------------------


class _Spec(object):
    """Validates and normalizes one spec; errors name the target, the attribute and the key."""

    def __init__(self, target, source=None):
        self.target = target
        self.source = source  # the spec file's path, when the spec comes from one

    def err(self, attr, where, problem):
        if self.source:
            return common.UserError(problem, self.target, "spec", "%s: %s" % (self.source, where))
        return common.UserError(problem, self.target, attr, where)

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
        raise common.UserError("must be one of %s" % ", ".join(DRIVERS), target, "driver", driver)
    platform = manifest.get("platform") or ""
    if platform and len(platform.split("/")) not in (2, 3):
        raise common.UserError("must be os/architecture[/variant]", target, "platform", platform)
    merged = {"files": {}, "config": {}, "commands": []}
    _Spec(target).merge(manifest.get("spec") or {}, merged)
    spec_file = manifest.get("spec_file")
    if spec_file:
        try:
            data = common.read_json(spec_file)
        except (OSError, ValueError) as e:
            raise common.UserError("cannot read it as JSON: %s" % e, target, "spec", spec_file)
        _Spec(target, source=spec_file).merge(data, merged)
    if not merged["files"] and not merged["config"] and not merged["commands"]:
        raise common.UserError("checks nothing: give files, absent, config, commands or spec", target, "spec",
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


# --- Results -------------------------------------------------------------------------------


class Result(object):
    def __init__(self, subject, what, ok, expected=None, actual=None, layer=None, note=None):
        self.subject = subject
        self.what = what
        self.ok = ok
        self.expected = expected
        self.actual = actual
        self.layer = layer
        self.note = note

    def render(self):
        head = "%s %s: %s" % ("PASS" if self.ok else "FAIL", self.subject, self.what)
        if self.ok:
            return head + ("" if self.expected is None else " = %s" % _short(self.expected))
        lines = [head]
        if self.expected is not None:
            lines.append("    expected: %s" % _block(self.expected))
        if self.actual is not None:
            lines.append("    actual:   %s" % _block(self.actual))
        if self.layer:
            lines.append("    layer:    %s" % self.layer)
        if self.note:
            lines.append("    note:     %s" % self.note)
        return "\n".join(lines)


def _short(text, limit=120):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


def _block(text):
    text = str(text)
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + "... (%d more characters)" % (len(text) - MAX_SHOWN)
    return text.replace("\n", "\n              ")


def _mode_str(mode):
    return "%04o" % mode


def _shown(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _describe_bytes(data):
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "%d bytes of binary data" % len(data)
    if len(text) > 200:
        return "%d bytes, starting %s" % (len(data), _shown(text[:200]))
    return _shown(text)


# --- The image --------------------------------------------------------------------------------


def _manifest_descriptor(layout, manifest):
    """The index descriptor (mediaType, digest, size) of the selected manifest."""
    candidates = []
    layout._walk(layout.check_layout(), candidates, 0)
    for _, desc, m, _ in candidates:
        if m is None:
            m = layout.read_json_blob(desc)
        if m == manifest:
            return desc
    raise layout.error("the selected manifest is not in the index")


class Image(object):
    """The image under test: config, layers (with names), and its final filesystem."""

    def __init__(self, spec, runfiles):
        image = spec["image"]
        layout_path = image["layout"]
        if runfiles and not os.path.isabs(layout_path):
            layout_path = os.path.join(runfiles, layout_path)
        self.label = image.get("label") or layout_path
        layout = oci_layout.Layout(layout_path, spec["target"], "image", self.label)
        if spec.get("platform"):
            parts = spec["platform"].split("/")
            plat = {"os": parts[0], "architecture": parts[1]}
            if len(parts) > 2:
                plat["variant"] = parts[2]
            self.manifest, self.config, self.descs, self.paths = layout.select(plat)
        else:
            self.manifest, self.config, self.descs, self.paths = layout.single()
        self.config_digest = self.manifest["config"]["digest"]
        self.manifest_desc = _manifest_descriptor(layout, self.manifest)
        self.layout = layout_path
        known = list(image.get("layers") or [])
        n = len(self.descs)
        if len(known) > n:
            known = known[len(known) - n:]
        self.names = ["base layer %d" % (i + 1) for i in range(n - len(known))] + known
        self._tree = None

    def layer(self, index):
        if index < 0:
            return None
        return "%d of %d, %s (%s)" % (index + 1, len(self.descs), self.descs[index]["digest"], self.names[index])

    @property
    def tree(self):
        if self._tree is None:
            tree = rootfs.Tree()
            for i, p in enumerate(self.paths):
                try:
                    tree.add_layer(p)
                except rootfs.LayerError as e:
                    raise common.UserError("layer %s: %s" % (self.layer(i), e), None, "image", self.label)
            self._tree = tree
        return self._tree

    @property
    def cfg(self):
        return self.config.get("config") or {}


# --- Structure checks ---------------------------------------------------------------------------


def check_files(image, files):
    by_path = {}
    tree = image.tree
    pending = []  # (results list, subject, node, checks, layer) needing file contents
    for path in sorted(files):
        checks = files[path]
        results = by_path.setdefault(path, [])
        subject = "file %s" % path
        try:
            real, node = tree.lookup(path)
        except rootfs.NotFound as e:
            real, node = None, None
            if e.path != path:
                missing = "%s is %s" % (e.path, e.reason)
            else:
                missing = e.reason if e.reason != "missing" else None
        if node is None:
            removed = tree.removal(path)
            if removed:
                why = "absent: %s was removed by a whiteout in layer %s" % (removed[0], image.layer(removed[1]))
            else:
                why = "absent" + (" (%s)" % missing if missing else "")
            if checks["exists"]:
                results.append(Result(subject, "exists", False, "exists", why,
                                      note="its other checks were not run" if len(checks) > 1 else None))
            else:
                results.append(Result(subject, "absent", True))
            continue
        where = image.layer(node.layer) if node.layer >= 0 else "the image root (no layer names it)"
        if not checks["exists"]:
            results.append(Result(subject, "absent", False, "absent",
                                  "exists (%s%s)" % (node.describe(), "" if real == path else " at " + real), where))
            continue
        results.append(Result(subject, "exists", True))
        if "type" in checks:
            results.append(Result(subject, "type", node.kind == checks["type"], checks["type"], node.kind, where))
        if "link" in checks:
            actual = node.target if node.kind == "symlink" else "not a symlink (%s)" % node.kind
            results.append(Result(subject, "link", node.kind == "symlink" and node.target == checks["link"],
                                  checks["link"], actual, where))
        if "mode" in checks:
            results.append(Result(subject, "mode", node.mode == checks["mode"], _mode_str(checks["mode"]),
                                  _mode_str(node.mode), where))
        for key in ("uid", "gid"):
            if key in checks:
                actual = getattr(node, key)
                results.append(Result(subject, key, actual == checks[key], checks[key], actual, where))
        if "size" in checks or "content" in checks or "no_content" in checks:
            try:
                freal, fnode = tree.lookup(path, follow=True)
            except rootfs.NotFound as e:
                freal, fnode = None, None
                reason = "%s: %s" % (e.path, e.reason)
            else:
                reason = None if fnode.kind == "file" else "%s is a %s" % (freal, fnode.kind)
            if reason:
                for key in ("size", "content", "no_content"):
                    if key in checks:
                        results.append(Result(subject, key, False, "a regular file", reason, where))
                continue
            fwhere = image.layer(fnode.layer)
            if "size" in checks:
                results.append(Result(subject, "size", fnode.size == checks["size"], checks["size"], fnode.size, fwhere))
            if "content" in checks or "no_content" in checks:
                pending.append((results, subject, fnode, checks, fwhere))
    if pending:
        contents = tree.read_files([p[2] for p in pending])
        for results, subject, fnode, checks, where in pending:
            data = contents.get(fnode.content, b"")
            for r in checks.get("content", []):
                ok = re.search(r.encode("utf-8"), data, re.MULTILINE) is not None
                results.append(Result(subject, "content", ok, "matches /%s/" % r,
                                      None if ok else "no match in %s" % _describe_bytes(data), where))
            for r in checks.get("no_content", []):
                m = re.search(r.encode("utf-8"), data, re.MULTILINE)
                results.append(Result(subject, "no_content", m is None, "does not match /%s/" % r,
                                      None if m is None else "matches %s at byte %d" % (
                                          _describe_bytes(m.group(0)), m.start()), where))
    return [r for path in sorted(by_path) for r in by_path[path]]


def _env_dict(env_list):
    out = {}
    for item in env_list or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def check_config(image, config):
    cfg = image.cfg
    actual_values = {
        "entrypoint": cfg.get("Entrypoint") or [],
        "cmd": cfg.get("Cmd") or [],
        "user": cfg.get("User") or "",
        "workdir": cfg.get("WorkingDir") or "",
        "stop_signal": cfg.get("StopSignal") or "",
        "os": image.config.get("os") or "",
        "architecture": image.config.get("architecture") or "",
        "variant": image.config.get("variant") or "",
        "exposed_ports": sorted((cfg.get("ExposedPorts") or {}).keys()),
        "volumes": sorted((cfg.get("Volumes") or {}).keys()),
        "env": _env_dict(cfg.get("Env")),
        "labels": cfg.get("Labels") or {},
    }
    results = []
    for key in sorted(config):
        expected = config[key]
        actual = actual_values[key]
        if key in DICT_FIELDS:
            for name in sorted(expected):
                want = expected[name]
                have = actual.get(name)
                what = "%s[%s]" % (key, name)
                if want is None:
                    results.append(Result("config", what, have is None, "unset",
                                          None if have is None else _shown(have)))
                else:
                    results.append(Result("config", what, have == want, _shown(want),
                                          "unset" if have is None else _shown(have)))
            continue
        if key in SET_FIELDS:
            actual = sorted(set(actual))
        ok = actual == expected
        unset = (key in LIST_FIELDS and not expected) or (key in STRING_FIELDS and expected == "")
        results.append(Result("config", key, ok, "unset" if unset else _shown(expected),
                              "unset" if (not actual and not ok) else _shown(actual)))
    return results


# --- Commands -------------------------------------------------------------------------------


def check_command(command, outcome):
    """Results of one command's checks, given its (exit_code, stdout, stderr)."""
    code, out, err = outcome
    subject = "command %s" % _shown(command["name"])
    results = []
    results.append(Result(subject, "exit code", code == command["exit_code"], command["exit_code"], code,
                          note=None if code == command["exit_code"] else "stderr: %s" % _short(_shown(err), 400)))
    for stream, text in (("stdout", out), ("stderr", err)):
        for r in command.get(stream, []):
            ok = re.search(r, text, re.MULTILINE) is not None
            results.append(Result(subject, stream, ok, "matches /%s/" % r, None if ok else _shown(text)))
        for r in command.get("no_" + stream, []):
            m = re.search(r, text, re.MULTILINE)
            results.append(Result(subject, "no_" + stream, m is None, "does not match /%s/" % r,
                                  None if m is None else "%s (matched %s)" % (_shown(text), _shown(m.group(0)))))
    return results


def run_commands(image, spec, driver_name, tmp, log):
    from python_tools.shiko.image_test import run as image_run

    try:
        driver = image_run.select(driver_name, image, tmp, log)
    except (image_run.DriverError, OSError) as e:
        log("ERROR: %s: cannot run the command checks: %s" % (spec["target"], e))
        return None
    results = []
    try:
        for command in spec["commands"]:
            try:
                outcome = driver.run(command)
            except (image_run.DriverError, OSError) as e:
                log("ERROR: %s: command %s could not be run by driver %s: %s" % (
                    spec["target"], _shown(command["name"]), driver.name, e))
                return None
            results.extend(check_command(command, outcome))
    finally:
        driver.close()
    return results


# --- Main ----------------------------------------------------------------------------------------


def run_test(spec, runfiles, driver=None, out=sys.stdout):
    """Runs every check; returns the process exit code (0: all passed)."""

    def log(line):
        out.write(line + "\n")
        out.flush()

    image = Image(spec, runfiles)
    log("image_test %s" % spec["target"])
    log("image: %s (%s, config %s, %d layers)" % (
        image.label, image.manifest.get("mediaType") or "manifest", image.config_digest, len(image.descs)))
    results = []
    if spec["files"]:
        results += check_files(image, spec["files"])
    if spec["config"]:
        results += check_config(image, spec["config"])
    broken = False
    driver_name = driver or spec["driver"]
    if spec["commands"]:
        if driver_name == "auto" and os.environ.get("SHIKO_IMAGE_TEST_DRIVER"):
            driver_name = os.environ["SHIKO_IMAGE_TEST_DRIVER"]
            if driver_name not in DRIVERS:
                log("ERROR: %s: SHIKO_IMAGE_TEST_DRIVER=%s is not one of %s" % (
                    spec["target"], driver_name, ", ".join(DRIVERS)))
                return 1
            log("driver: %s (from SHIKO_IMAGE_TEST_DRIVER)" % driver_name)
        base = os.environ.get("TEST_TMPDIR") or None
        tmp = tempfile.mkdtemp(prefix="image_test-", dir=base)
        try:
            command_results = run_commands(image, spec, driver_name, tmp, log)
        finally:
            rootfs.remove_tree(tmp)
        if command_results is None:
            broken = True
        else:
            results += command_results
    else:
        log("driver: none needed (no command checks)")
    failed = [r for r in results if not r.ok]
    for r in results:
        log(r.render())
    summary = "%d check%s, %d passed, %d failed" % (
        len(results), "" if len(results) == 1 else "s", len(results) - len(failed), len(failed))
    if broken:
        log("RESULT: FAILED (%s; the commands could not be run)" % summary)
        return 1
    log("RESULT: %s (%s)" % ("PASSED" if not failed else "FAILED", summary))
    return 0 if not failed else 1


def _terminated(signum, frame):
    sys.stdout.write("ERROR: terminated (signal %d), probably by Bazel's test timeout\n" % signum)
    sys.stdout.flush()
    sys.exit(128 + signum)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    if FLAGS.manifest:
        if not FLAGS.output:
            raise app.UsageError("--manifest needs --output")

        def build():
            try:
                manifest = common.read_json(FLAGS.manifest)
            except (OSError, ValueError) as e:
                raise common.UserError("cannot read the tool manifest %s: %s" % (FLAGS.manifest, e))
            common.write_file_atomic(FLAGS.output, json.dumps(validate(manifest), indent=1, sort_keys=True).encode("utf-8"))

        common.run_tool(build, [FLAGS.output])
        return
    if not FLAGS.spec:
        raise app.UsageError("give --manifest and --output (validate) or --spec (test)")
    if FLAGS.driver and FLAGS.driver not in DRIVERS:
        raise app.UsageError("--driver must be one of %s" % ", ".join(DRIVERS))
    spec = common.read_json(FLAGS.spec)
    # Bazel stops a test that runs too long with SIGTERM: clean up the temporary roots first.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        runfiles = FLAGS.runfiles or os.environ.get("RUNFILES_DIR") or os.environ.get("TEST_SRCDIR")
        code = run_test(spec, runfiles, FLAGS.driver)
    except common.UserError as e:
        sys.stdout.write("ERROR: %s\n" % e.render())
        code = 1
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
