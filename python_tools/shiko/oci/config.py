"""An image's config: the base's, changed by the target's settings with Docker's semantics.

Config semantics (Docker's):
  env is merged over the base's: a name already there is replaced in place, new names are
  appended sorted. Values expand `${NAME}` and `$NAME` from the base image's environment
  (unknown: empty); `$$` is a literal `$`. entrypoint, when set, replaces the base's and resets
  Cmd to `cmd` (null: no Cmd); cmd alone replaces Cmd. user, workdir, stop_signal replace when
  set. labels are merged over the base's; exposed_ports ("N", "N/tcp", "N/udp"; "N" means
  "N/tcp") and volumes (absolute paths) are unioned with the base's. rootfs.diff_ids and history
  are the base's plus one per new layer. `created` null means 1970-01-01T00:00:00Z.

Stamping: label values and `created` may hold `{KEY}` placeholders (shiko/stamp.py). With stamp
files, `created` equal to "{BUILD_TIMESTAMP}" becomes that time in RFC 3339 UTC. Without
stamping, a `created` holding any placeholder becomes 1970-01-01T00:00:00Z.
"""

import datetime
import re

from python_tools.shiko.errors import UserError
from python_tools.shiko.stamp import STAMP_PLACEHOLDER, expand_stamp

EPOCH = "1970-01-01T00:00:00Z"
ENV_REF_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
PORT_RE = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp))?$")
RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$"
)


def expand_env_value(value, env):
    """Expands ${NAME} and $NAME from env (unknown: empty); $$ is a literal $."""

    def repl(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1) or m.group(2), "")

    return ENV_REF_RE.sub(repl, value)


def merge_env(base_env, new_env, target):
    """Returns the merged "NAME=value" list (see module doc)."""
    entries = []  # [name, value or None for a raw entry without '=']
    for item in base_env or []:
        if not isinstance(item, str):
            continue
        name, sep, value = item.partition("=")
        entries.append([name, value if sep else None, item])
    base_values = {e[0]: (e[1] or "") for e in entries}
    positions = {e[0]: i for i, e in enumerate(entries)}
    new_names = []
    for name in new_env:
        value = new_env[name]
        if not name or "=" in name or "\0" in name:
            raise UserError("environment variable names must be non-empty and hold no '='", target, "env", name)
        if not isinstance(value, str):
            raise UserError("environment values must be strings", target, "env", name)
        expanded = expand_env_value(value, base_values)
        if name in positions:
            entries[positions[name]] = [name, expanded, None]
        else:
            new_names.append((name, expanded))
    out = []
    for name, value, raw in entries:
        out.append(raw if value is None and raw is not None else "%s=%s" % (name, value))
    for name, value in sorted(new_names):
        out.append("%s=%s" % (name, value))
    return out


def normalize_port(port, target):
    m = PORT_RE.match(port) if isinstance(port, str) else None
    if not m or not 1 <= int(m.group(1)) <= 65535:
        raise UserError("must be N, N/tcp or N/udp with N in 1..65535", target, "exposed_ports", port)
    return "%d/%s" % (int(m.group(1)), m.group(2) or "tcp")


def rfc3339_from_seconds(value, target):
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise UserError("BUILD_TIMESTAMP is not a number of seconds", target, "created", value)
    t = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_created(created, stamp_values, target):
    if created is None:
        return EPOCH
    if not isinstance(created, str):
        raise UserError("must be an RFC 3339 time", target, "created", created)
    if STAMP_PLACEHOLDER.search(created):
        if stamp_values is None:
            return EPOCH
        if created.strip() == "{BUILD_TIMESTAMP}" and "BUILD_TIMESTAMP" in stamp_values:
            return rfc3339_from_seconds(stamp_values["BUILD_TIMESTAMP"], target)
        value = expand_stamp(created, stamp_values, target, "created")
    else:
        value = created
    if not RFC3339_RE.match(value):
        raise UserError("must be an RFC 3339 time such as 2024-01-01T00:00:00Z", target, "created", value)
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError("must be an RFC 3339 time such as 2024-01-01T00:00:00Z", target, "created", value)
    return value


def string_list(value, target, attr):
    """value (None or a list of strings) as a list; UserError otherwise."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError("must be a list of strings", target, attr, value)
    return list(value)


def string_dict(value, target, attr):
    """value (None or a dict of strings) as a dict; UserError otherwise."""
    value = value or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UserError("must be a dict of strings", target, attr, value)
    return value


def build_config(base_config, spec, platform, new_layers, created, stamp_values, target):
    """Returns the image config object (see module doc)."""
    cfg = dict(base_config or {})
    cfg["architecture"] = platform.get("architecture") or ""
    cfg["os"] = platform.get("os") or ""
    if platform.get("variant"):
        cfg["variant"] = platform["variant"]
    else:
        cfg.pop("variant", None)
    cfg["created"] = created
    inner = dict(cfg.get("config") or {})

    env = string_dict(spec.get("env"), target, "env")
    if env or inner.get("Env"):
        inner["Env"] = merge_env(inner.get("Env"), env, target)

    entrypoint = string_list(spec.get("entrypoint"), target, "entrypoint")
    cmd = string_list(spec.get("cmd"), target, "cmd")
    if entrypoint is not None:
        inner["Entrypoint"] = entrypoint
        if cmd is None:
            inner.pop("Cmd", None)
        else:
            inner["Cmd"] = cmd
    elif cmd is not None:
        inner["Cmd"] = cmd

    for key, attr in (("User", "user"), ("WorkingDir", "workdir"), ("StopSignal", "stop_signal")):
        value = spec.get(attr)
        if value is not None:
            if not isinstance(value, str):
                raise UserError("must be a string", target, attr, value)
            inner[key] = value

    labels = string_dict(spec.get("labels"), target, "labels")
    if labels:
        merged = dict(inner.get("Labels") or {})
        for k in labels:
            merged[k] = expand_stamp(labels[k], stamp_values, target, "labels")
        inner["Labels"] = merged

    ports = string_list(spec.get("exposed_ports") or [], target, "exposed_ports")
    if ports:
        merged = dict(inner.get("ExposedPorts") or {})
        for p in ports:
            merged[normalize_port(p, target)] = {}
        inner["ExposedPorts"] = merged

    volumes = string_list(spec.get("volumes") or [], target, "volumes")
    if volumes:
        merged = dict(inner.get("Volumes") or {})
        for v in volumes:
            if not v.startswith("/"):
                raise UserError("volumes must be absolute paths", target, "volumes", v)
            merged[v] = {}
        inner["Volumes"] = merged

    cfg["config"] = inner
    rootfs = dict(cfg.get("rootfs") or {})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [layer["diff_id"] for layer in new_layers]
    cfg["rootfs"] = rootfs
    history = list(cfg.get("history") or [])
    for layer in new_layers:
        created_by = "rules_shiko image_layer %s" % layer["label"]
        if layer.get("compressor"):
            created_by += " (%s)" % layer["compressor"]
        history.append({"created": created, "created_by": created_by})
    cfg["history"] = history
    return cfg
