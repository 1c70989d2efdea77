"""What changed between two reports of an image: "why did my digest change?"

    changes = diff_reports(old, new)

Layers are matched by label (a built layer), else by source and position among that source's
layers (a pulled base's), else by index. For each matched pair whose digest differs the files
are compared by path: added, removed, or changed (another type, content sha256, size, mode,
owner or link target). A layer whose digest changed with the same files is reported so (its
bytes differ in metadata no listing holds, e.g. compression).

Result:
  {"digest_changed": bool, "config_changed": bool,
   "layers": [{"name", "status": "same"|"changed"|"added"|"removed", "old_digest", "new_digest",
               "added": [F], "removed": [F], "changed": [F]}],
  where F = {"path", "origin", "old_origin"?, "what": [field names that differ]}.
"""

_COMPARED = ("type", "sha256", "size", "mode", "uid", "gid", "target")


def _keys(layers):
    """A matching key for each layer (see the module docstring)."""
    keys = []
    seen = {}
    for layer in layers:
        if layer.get("label"):
            base = ("label", layer["label"])
        elif layer.get("source"):
            base = ("source", layer["source"])
        else:
            base = ("index", layer["index"])
        n = seen.get(base, 0)
        seen[base] = n + 1
        keys.append(base + (n,))
    return keys


def _files(layer):
    return {e["path"]: e for e in layer["entries"] if e["type"] != "dir"}


def _file_changes(old, new):
    a = _files(old)
    b = _files(new)
    added = [{"path": p, "origin": b[p]["origin"]} for p in sorted(set(b) - set(a))]
    removed = [{"path": p, "origin": a[p]["origin"]} for p in sorted(set(a) - set(b))]
    changed = []
    for p in sorted(set(a) & set(b)):
        what = [k for k in _COMPARED if a[p].get(k) != b[p].get(k)]
        if what:
            row = {"path": p, "origin": b[p]["origin"], "what": what}
            if a[p]["origin"] != b[p]["origin"]:
                row["old_origin"] = a[p]["origin"]
            changed.append(row)
    return added, removed, changed


def diff_reports(old, new):
    """The changes from report `old` to report `new` (dicts of model.build_report)."""
    old_by = dict(zip(_keys(old["layers"]), old["layers"]))
    rows = []
    matched = set()
    for key, layer in zip(_keys(new["layers"]), new["layers"]):
        before = old_by.get(key)
        row = {"name": layer["name"], "index": layer["index"], "new_digest": layer["digest"],
               "old_digest": before["digest"] if before else None,
               "added": [], "removed": [], "changed": []}
        if before is None:
            row["status"] = "added"
            row["added"] = [{"path": p, "origin": e["origin"]} for p, e in sorted(_files(layer).items())]
        else:
            matched.add(key)
            if before["digest"] == layer["digest"]:
                row["status"] = "same"
            else:
                row["status"] = "changed"
                row["added"], row["removed"], row["changed"] = _file_changes(before, layer)
        rows.append(row)
    for key, layer in zip(_keys(old["layers"]), old["layers"]):
        if key not in matched:
            rows.append({"name": layer["name"], "index": None, "status": "removed",
                         "old_digest": layer["digest"], "new_digest": None, "added": [],
                         "removed": [{"path": p, "origin": e["origin"]}
                                     for p, e in sorted(_files(layer).items())],
                         "changed": []})
    return {
        "digest_changed": old.get("digest") != new.get("digest"),
        "config_changed": old.get("config_digest") != new.get("config_digest"),
        "layers": rows,
    }
