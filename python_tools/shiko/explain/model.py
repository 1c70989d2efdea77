"""The image report: every layer's files traced to the Bazel label (or package) that put them
there, dive's wasted bytes and efficiency, duplicates, the largest files and findings.

    report = build_report(target, digest, image_manifest, layers)

`layers` (bottom first, one per manifest layer) are dicts {"digest", "size" (compressed),
"tar_size" (uncompressed, or None), "label" (or None), "source" (or None), "entries" (listing
entries, each with its "origin")}.

Report (`<name>.report.json`, canonical JSON)
=============================================

  {"schema": "rules_shiko.report/1",
   "target": "//pkg:image", "digest": "sha256:..", "config_digest": "sha256:..",
   "size": compressed bytes of all layers, "tar_size": uncompressed bytes (null if unknown),
   "files": non-directory members of all layers, "bytes": their sizes,
   "wasted_bytes": N, "efficiency": 0.0..1.0          (dive's inefficientBytes, efficiencyScore)
   "layers": [{"index": 0, "name": "app", "label": "//pkg:image_app" | null,
               "source": "@base//:base" | null, "digest": "sha256:..", "size": N,
               "tar_size": N | null, "files": N, "bytes": N,
               "origins": [{"origin": "//pkg:server.py", "files": N, "bytes": N,
                            "package": "protobuf 6.33.6" (a wheel's origin only)}, ...],
               "entries": [{"path", "type", "mode", "uid", "gid", "size", "origin",
                            "sha256"?, "target"?}, ...]}, ...],
   "duplicates": [{"path", "layers": [i, ...], "bytes": cumulative}, ...],
   "largest": [{"path", "layer": i, "bytes", "origin"}, ...],
   "findings": [{"kind", "title", "bytes", "what_to_do", "paths": [...]}, ...]}

- `origins` of a layer: its non-directory members grouped by origin, largest first. An origin
  is a label (`//examples/python_app:server.py`), an external package (`@app_pip//protobuf`), a
  Debian package (`deb:libc6=2.36-9`), a pulled base (its `source`), or the layer's own label
  when the listing names none.
- `duplicates`: dive's inefficiencies (paths counted in two layers or more), largest first.
- `name`: the layer's label name without the image's own name as prefix (`image_app` of
  //pkg:image is "app"), or for a pulled layer `<source name>[i]`.
"""

from python_tools.shiko.explain.efficiency import efficiency
from python_tools.shiko.explain import findings as findings_lib

SCHEMA = "rules_shiko.report/1"
LARGEST = 25


def label_name(label):
    """'//a/b:c' -> 'c'; '@r//a/b' -> 'b'; '@r//:layout' -> 'layout'; '@r' -> 'r'."""
    if ":" in label.split("//")[-1]:
        return label.rsplit(":", 1)[1]
    return label.rstrip("/").rsplit("/", 1)[-1].lstrip("@")


def layer_name(target, layer, index):
    """A short display name of a layer (see the module docstring)."""
    if layer.get("label"):
        name = label_name(layer["label"])
        own = label_name(target) + "_"
        if name.startswith(own) and len(name) > len(own):
            return name[len(own):]
        return name
    source = layer.get("source")
    return "%s[%d]" % (label_name(source) if source else "layer", index)


def origin_tally(entries, packages=None):
    """[{"origin", "files", "bytes", "package"?}] of the non-directory entries, largest first;
    `packages` ({origin: "protobuf 6.33.6"}) names the wheel behind an origin."""
    by = {}
    for e in entries:
        if e["type"] == "dir":
            continue
        t = by.setdefault(e["origin"], [0, 0])
        t[0] += 1
        t[1] += int(e.get("size") or 0)
    rows = [{"origin": o, "files": f, "bytes": b} for o, (f, b) in by.items()]
    for r in rows:
        if packages and r["origin"] in packages:
            r["package"] = packages[r["origin"]]
    rows.sort(key=lambda r: (-r["bytes"], -r["files"], r["origin"]))
    return rows


def _layer_report(target, layer, index):
    entries = layer["entries"]
    files = [e for e in entries if e["type"] != "dir"]
    return {
        "index": index,
        "name": layer_name(target, layer, index),
        "label": layer.get("label"),
        "source": layer.get("source"),
        "digest": layer["digest"],
        "size": layer["size"],
        "tar_size": layer.get("tar_size"),
        "files": len(files),
        "bytes": sum(int(e.get("size") or 0) for e in files),
        "origins": origin_tally(entries, layer.get("wheels")),
        "entries": entries,
    }


def largest_files(layers, count=LARGEST):
    """The `count` largest regular files of all layers: [{"path", "layer", "bytes", "origin"}]."""
    rows = []
    for layer in layers:
        for e in layer["entries"]:
            if e["type"] == "file" and int(e["size"]) > 0:
                rows.append({"path": e["path"], "layer": layer["index"], "bytes": int(e["size"]),
                             "origin": e["origin"]})
    rows.sort(key=lambda r: (-r["bytes"], r["path"], r["layer"]))
    return rows[:count]


def build_report(target, digest, image_manifest, layers):
    """The report dict (see the module docstring) of an image: `digest` is the manifest's
    `sha256:...`, `image_manifest` the parsed manifest JSON, `layers` as in the docstring."""
    reports = [_layer_report(target, layer, i) for i, layer in enumerate(layers)]
    wasted, score, dupes = efficiency([layer["entries"] for layer in layers])
    tar_sizes = [r["tar_size"] for r in reports]
    report = {
        "schema": SCHEMA,
        "target": target,
        "digest": digest,
        "config_digest": image_manifest.get("config", {}).get("digest"),
        "size": sum(r["size"] for r in reports),
        "tar_size": None if None in tar_sizes else sum(tar_sizes),
        "files": sum(r["files"] for r in reports),
        "bytes": sum(r["bytes"] for r in reports),
        "wasted_bytes": wasted,
        "efficiency": score,
        "layers": reports,
        "duplicates": dupes,
        "largest": largest_files(reports),
    }
    report["findings"] = findings_lib.findings(report)
    return report
