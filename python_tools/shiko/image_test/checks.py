"""image_test's checks: files (type, mode, owners, link, content, size), config fields, and a
command's outcome (exit code, stdout, stderr); each check is one report.Result."""

import re

from python_tools.shiko.image_test.report import Result, describe_bytes, mode_str, short, shown
from python_tools.shiko.image_test.spec import DICT_FIELDS, LIST_FIELDS, SET_FIELDS, STRING_FIELDS
from python_tools.shiko.tar import rootfs


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
            results.append(Result(subject, "mode", node.mode == checks["mode"], mode_str(checks["mode"]),
                                  mode_str(node.mode), where))
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
                                      None if ok else "no match in %s" % describe_bytes(data), where))
            for r in checks.get("no_content", []):
                m = re.search(r.encode("utf-8"), data, re.MULTILINE)
                results.append(Result(subject, "no_content", m is None, "does not match /%s/" % r,
                                      None if m is None else "matches %s at byte %d" % (
                                          describe_bytes(m.group(0)), m.start()), where))
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
                                          None if have is None else shown(have)))
                else:
                    results.append(Result("config", what, have == want, shown(want),
                                          "unset" if have is None else shown(have)))
            continue
        if key in SET_FIELDS:
            actual = sorted(set(actual))
        ok = actual == expected
        unset = (key in LIST_FIELDS and not expected) or (key in STRING_FIELDS and expected == "")
        results.append(Result("config", key, ok, "unset" if unset else shown(expected),
                              "unset" if (not actual and not ok) else shown(actual)))
    return results


# --- Commands -------------------------------------------------------------------------------


def check_command(command, outcome):
    """Results of one command's checks, given its (exit_code, stdout, stderr)."""
    code, out, err = outcome
    subject = "command %s" % shown(command["name"])
    results = []
    results.append(Result(subject, "exit code", code == command["exit_code"], command["exit_code"], code,
                          note=None if code == command["exit_code"] else "stderr: %s" % short(shown(err), 400)))
    for stream, text in (("stdout", out), ("stderr", err)):
        for r in command.get(stream, []):
            ok = re.search(r, text, re.MULTILINE) is not None
            results.append(Result(subject, stream, ok, "matches /%s/" % r, None if ok else shown(text)))
        for r in command.get("no_" + stream, []):
            m = re.search(r, text, re.MULTILINE)
            results.append(Result(subject, "no_" + stream, m is None, "does not match /%s/" % r,
                                  None if m is None else "%s (matched %s)" % (shown(text), shown(m.group(0)))))
    return results
