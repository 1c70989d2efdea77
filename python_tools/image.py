"""Writes an image's config, manifest and OCI image layout (rules_shiko `image` action).

Usage:
  python -m python_tools.image --manifest=M.json --output_layout=DIR --output_digest=FILE
      [--output_config=FILE] [--output_manifest=FILE]

Input contract (M.json, written by Starlark):
  {
    "target": "//pkg:image",
    "base": null | {"layout": "path/to/oci/layout/dir", "label": "//x:base"},
    "platform": {"os": "linux", "architecture": "amd64", "variant": ""},
    "layers": [{"blob": "path/to/layer.tgz", "descriptor": "path/to/layer.json",
                "label": "//pkg:layer"}],
    "config": {
      "entrypoint": null | ["/hello"], "cmd": null | ["a"], "env": {"PATH": "/app/bin:${PATH}"},
      "user": null | "65532", "workdir": null | "/app", "labels": {"k": "v"},
      "exposed_ports": ["8080/tcp"], "volumes": ["/data"], "stop_signal": null | "SIGTERM",
      "created": null | "2024-01-01T00:00:00Z" | "{BUILD_TIMESTAMP}"
    },
    "annotations": {"org.opencontainers.image.source": "..."},
    "stamp": null | {"info_file": "bazel-out/stable-status.txt",
                     "version_file": "bazel-out/volatile-status.txt"}
  }
  Each layer descriptor file (written by the layer tool) holds
  {"mediaType": ..., "digest": "sha256:..", "size": N, "diff_id": "sha256:..",
   "compression": "gzip", "compressor": "...", "members": N}; only mediaType, digest, size,
  diff_id and compressor are used. Its blob's size is checked (not re-hashed: one action made both).

Base:
  null means scratch. Otherwise `layout` must be an OCI image layout (`oci-layout` + `index.json`).
  Its index may list one manifest or image indexes (OCI or Docker manifest lists, nested); the
  manifest whose platform matches `platform` is used (a missing variant matches the default one:
  arm64 = v8, arm = v7, amd64 = v1). Docker v2 schema 2 manifests and configs are accepted.
  Every base blob used (indexes walked, manifest, config, layers) is verified against its digest
  and size (python_tools/oci_layout.py). Base layer descriptors keep their mediaType; the manifest
  written is always OCI. The base config is kept (unknown keys too) and changed as below.

Config semantics (Docker's):
  env is merged over the base's: a name already there is replaced in place, new names are
  appended sorted. Values expand `${NAME}` and `$NAME` from the base image's environment
  (unknown: empty); `$$` is a literal `$`. entrypoint, when set, replaces the base's and resets
  Cmd to `cmd` (null: no Cmd); cmd alone replaces Cmd. user, workdir, stop_signal replace when
  set. labels are merged over the base's; exposed_ports ("N", "N/tcp", "N/udp"; "N" means
  "N/tcp") and volumes (absolute paths) are unioned with the base's. rootfs.diff_ids and history
  are the base's plus one per new layer. `created` null means 1970-01-01T00:00:00Z.

Stamping:
  label values, annotation values and `created` may hold `{KEY}` placeholders (common.expand_stamp).
  With stamp files, `created` equal to "{BUILD_TIMESTAMP}" becomes that time in RFC 3339 UTC.
  Without stamping, a `created` holding any placeholder becomes 1970-01-01T00:00:00Z.

Outputs:
  DIR: oci-layout, index.json (one manifest descriptor with platform), blobs/sha256/<hex>. Layer
  blobs (base and ours) are hard-linked when the source file is read-only (as Bazel outputs are)
  and copied otherwise; everything this tool writes is mode 0644 (directories 0755).
  --output_digest: "sha256:<hex>\\n" of the manifest; --output_config / --output_manifest: the
  config and manifest blobs' bytes. All JSON is common.canonical_json, so the output depends only
  on the inputs. Any error: one line `ERROR: <target>: attribute '<attr>': <value>: <problem>`,
  exit 1, no outputs left behind.
"""

import datetime
import hashlib
import os
import re
import shutil
import stat

from absl import app
from absl import flags

from python_tools import common
from python_tools.shiko.oci import layout as oci_layout
from python_tools import worker

FLAGS = flags.FLAGS

OCI_LAYOUT_VERSION = oci_layout.OCI_LAYOUT_VERSION
OCI_INDEX = oci_layout.OCI_INDEX
OCI_MANIFEST = oci_layout.OCI_MANIFEST
OCI_CONFIG = oci_layout.OCI_CONFIG
EPOCH = "1970-01-01T00:00:00Z"

DIGEST_RE = oci_layout.DIGEST_RE
ENV_REF_RE = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
PORT_RE = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp))?$")
RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$"
)


def _define_flags():
    flags.DEFINE_string("manifest", None, "JSON manifest written by Starlark (see module doc).")
    flags.DEFINE_string("output_layout", None, "Directory to write the OCI image layout into.")
    flags.DEFINE_string("output_digest", None, "File to write the manifest digest into.")
    flags.DEFINE_string("output_config", None, "Optional file to write the config blob into.")
    flags.DEFINE_string("output_manifest", None, "Optional file to write the manifest blob into.")
    flags.mark_flags_as_required(["manifest", "output_layout", "output_digest"])


# --- Config ---------------------------------------------------------------------------------


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
            raise common.UserError("environment variable names must be non-empty and hold no '='", target, "env", name)
        if not isinstance(value, str):
            raise common.UserError("environment values must be strings", target, "env", name)
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
        raise common.UserError("must be N, N/tcp or N/udp with N in 1..65535", target, "exposed_ports", port)
    return "%d/%s" % (int(m.group(1)), m.group(2) or "tcp")


def rfc3339_from_seconds(value, target):
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise common.UserError("BUILD_TIMESTAMP is not a number of seconds", target, "created", value)
    t = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_created(created, stamp_values, target):
    if created is None:
        return EPOCH
    if not isinstance(created, str):
        raise common.UserError("must be an RFC 3339 time", target, "created", created)
    if common.STAMP_PLACEHOLDER.search(created):
        if stamp_values is None:
            return EPOCH
        if created.strip() == "{BUILD_TIMESTAMP}" and "BUILD_TIMESTAMP" in stamp_values:
            return rfc3339_from_seconds(stamp_values["BUILD_TIMESTAMP"], target)
        value = common.expand_stamp(created, stamp_values, target, "created")
    else:
        value = created
    if not RFC3339_RE.match(value):
        raise common.UserError("must be an RFC 3339 time such as 2024-01-01T00:00:00Z", target, "created", value)
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise common.UserError("must be an RFC 3339 time such as 2024-01-01T00:00:00Z", target, "created", value)
    return value


def _string_list(value, target, attr):
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise common.UserError("must be a list of strings", target, attr, value)
    return list(value)


def _string_dict(value, target, attr):
    value = value or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise common.UserError("must be a dict of strings", target, attr, value)
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

    env = _string_dict(spec.get("env"), target, "env")
    if env or inner.get("Env"):
        inner["Env"] = merge_env(inner.get("Env"), env, target)

    entrypoint = _string_list(spec.get("entrypoint"), target, "entrypoint")
    cmd = _string_list(spec.get("cmd"), target, "cmd")
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
                raise common.UserError("must be a string", target, attr, value)
            inner[key] = value

    labels = _string_dict(spec.get("labels"), target, "labels")
    if labels:
        merged = dict(inner.get("Labels") or {})
        for k in labels:
            merged[k] = common.expand_stamp(labels[k], stamp_values, target, "labels")
        inner["Labels"] = merged

    ports = _string_list(spec.get("exposed_ports") or [], target, "exposed_ports")
    if ports:
        merged = dict(inner.get("ExposedPorts") or {})
        for p in ports:
            merged[normalize_port(p, target)] = {}
        inner["ExposedPorts"] = merged

    volumes = _string_list(spec.get("volumes") or [], target, "volumes")
    if volumes:
        merged = dict(inner.get("Volumes") or {})
        for v in volumes:
            if not v.startswith("/"):
                raise common.UserError("volumes must be absolute paths", target, "volumes", v)
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


# --- Our layers -----------------------------------------------------------------------------


def read_layer(entry, target):
    label = entry.get("label") or entry.get("blob")

    def err(problem):
        return common.UserError(problem, target, "layers", label)

    try:
        desc = common.read_json(entry["descriptor"])
    except (KeyError, OSError, ValueError) as e:
        raise err("cannot read the layer descriptor: %s" % e)
    if not isinstance(desc, dict):
        raise err("layer descriptor is not a JSON object")
    for key in ("digest", "diff_id"):
        if not isinstance(desc.get(key), str) or not DIGEST_RE.match(desc[key]):
            raise err("layer descriptor has a malformed %s: %r" % (key, desc.get(key)))
    if not isinstance(desc.get("mediaType"), str) or not isinstance(desc.get("size"), int):
        raise err("layer descriptor lacks mediaType or size")
    blob = entry.get("blob")
    try:
        size = os.stat(blob).st_size
    except (OSError, TypeError):
        raise err("layer blob %r is missing" % (blob,))
    if size != desc["size"]:
        raise err("layer blob %s has %d bytes, its descriptor says %d" % (blob, size, desc["size"]))
    return {
        "mediaType": desc["mediaType"],
        "digest": desc["digest"],
        "size": desc["size"],
        "diff_id": desc["diff_id"],
        "compressor": desc.get("compressor"),
        "label": label,
        "path": blob,
    }


# --- Writing --------------------------------------------------------------------------------


def _mkdir(path):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)


def _write(path, data):
    common.write_file_atomic(path, data)
    os.chmod(path, 0o644)


def place_blob(src, dst):
    """Hard-links a read-only, world-readable source (sharing it changes nothing); else copies."""
    real = os.path.realpath(src)
    st = os.stat(real)
    if stat.S_IMODE(st.st_mode) & 0o222 == 0 and stat.S_IMODE(st.st_mode) & 0o444 == 0o444:
        try:
            os.link(real, dst)
            return
        except OSError:
            pass
    tmp = dst + ".tmp-shiko"
    shutil.copyfile(real, tmp)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dst)


def write_layout(out_dir, linked_blobs, json_blobs, index_bytes):
    """linked_blobs: {hex: source path}; json_blobs: {hex: bytes}."""
    if os.path.isdir(out_dir):
        for name in os.listdir(out_dir):
            common.remove_outputs([os.path.join(out_dir, name)])
    _mkdir(out_dir)
    _mkdir(os.path.join(out_dir, "blobs"))
    blob_dir = os.path.join(out_dir, "blobs", "sha256")
    _mkdir(blob_dir)
    for hexdigest in sorted(linked_blobs):
        place_blob(linked_blobs[hexdigest], os.path.join(blob_dir, hexdigest))
    for hexdigest in sorted(json_blobs):
        _write(os.path.join(blob_dir, hexdigest), json_blobs[hexdigest])
    _write(os.path.join(out_dir, "oci-layout"), common.canonical_json({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    _write(os.path.join(out_dir, "index.json"), index_bytes)


def _descriptor(media_type, data):
    return {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def build(manifest, output_layout, output_digest, output_config=None, output_manifest=None):
    target = manifest.get("target")
    platform = manifest.get("platform") or {}
    if not platform.get("os") or not platform.get("architecture"):
        raise common.UserError("must name os and architecture", target, "platform", platform)
    spec = manifest.get("config") or {}
    stamp_values = common.read_stamp(manifest.get("stamp"), target)

    # Read and verify everything first: nothing is written until all inputs are known good.
    base_config, base_layers, base_paths = None, [], []
    if manifest.get("base"):
        base = manifest["base"]
        layout = oci_layout.Layout(base.get("layout"), target, "base", base.get("label"))
        _, base_config, base_layers, base_paths = layout.select(platform)
    layers = [read_layer(entry, target) for entry in manifest.get("layers") or []]

    created = resolve_created(spec.get("created"), stamp_values, target)
    config = build_config(base_config, spec, platform, layers, created, stamp_values, target)
    config_bytes = common.canonical_json(config)
    config_desc = _descriptor(OCI_CONFIG, config_bytes)

    annotations = {}
    for k, v in _string_dict(manifest.get("annotations"), target, "annotations").items():
        annotations[k] = common.expand_stamp(v, stamp_values, target, "annotations")

    layer_descs = [{"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]} for d in base_layers]
    layer_descs += [{"mediaType": d["mediaType"], "digest": d["digest"], "size": d["size"]} for d in layers]
    image_manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    if annotations:
        image_manifest["annotations"] = annotations
    manifest_bytes = common.canonical_json(image_manifest)
    manifest_desc = _descriptor(OCI_MANIFEST, manifest_bytes)
    index_platform = {"architecture": platform["architecture"], "os": platform["os"]}
    if platform.get("variant"):
        index_platform["variant"] = platform["variant"]
    manifest_desc["platform"] = index_platform
    index_bytes = common.canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [manifest_desc]}
    )

    linked = {}
    for desc, path in zip(base_layers, base_paths):
        linked.setdefault(desc["digest"][len("sha256:"):], path)
    for layer in layers:
        linked.setdefault(layer["digest"][len("sha256:"):], layer["path"])
    json_blobs = {
        config_desc["digest"][len("sha256:"):]: config_bytes,
        manifest_desc["digest"][len("sha256:"):]: manifest_bytes,
    }
    for hexdigest in json_blobs:
        linked.pop(hexdigest, None)

    write_layout(output_layout, linked, json_blobs, index_bytes)
    _write(output_digest, (manifest_desc["digest"] + "\n").encode("ascii"))
    if output_config:
        _write(output_config, config_bytes)
    if output_manifest:
        _write(output_manifest, manifest_bytes)
    return manifest_desc["digest"]


def main(argv):
    if len(argv) > 1:
        raise app.UsageError("unexpected arguments: %s" % " ".join(argv[1:]))
    outputs = [FLAGS.output_layout, FLAGS.output_digest, FLAGS.output_config, FLAGS.output_manifest]

    def run():
        try:
            manifest = common.read_json(FLAGS.manifest)
        except (OSError, ValueError) as e:
            raise common.UserError("cannot read the tool manifest %s: %s" % (FLAGS.manifest, e))
        build(manifest, FLAGS.output_layout, FLAGS.output_digest, FLAGS.output_config, FLAGS.output_manifest)

    common.run_tool(run, outputs)


if __name__ == "__main__":
    _define_flags()
    worker.run(main)  # a persistent worker under Bazel (python_tools/worker.py), else app.run
