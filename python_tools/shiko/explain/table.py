"""The report and the diff of two reports as plain text for a terminal (explain.py)."""

from python_tools.shiko.explain.units import human, percent, plural

TOP_ORIGINS = 2
SHOWN = 10


def _short(digest):
    return digest[: len("sha256:") + 12] if digest else "-"


def _origin_cell(layer):
    parts = ["%s (%s%s)" % (o["origin"], o["package"] + ", " if o.get("package") else "",
                            human(o["bytes"])) for o in layer["origins"][:TOP_ORIGINS]]
    more = len(layer["origins"]) - TOP_ORIGINS
    if more > 0:
        parts.append("+%d more" % more)
    return ", ".join(parts)


def _columns(rows, right=()):
    """Text columns, left-aligned but for the indexes in `right` (the last is not padded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    out = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(cells + [r[-1]]).rstrip())
    return out


def render_report(report):
    """The compact table of a report, as one string."""
    tar = report.get("tar_size")
    lines = [
        "%s  %s" % (report["target"], _short(report["digest"])),
        "%s compressed%s, %s in %s" % (
            human(report["size"]), ", %s uncompressed" % human(tar) if tar is not None else "",
            human(report["bytes"]), plural(report["files"], "file")),
        "efficiency %s, wasted %s (%s, as dive counts them)" % (
            percent(report["efficiency"]), human(report["wasted_bytes"]),
            plural(len(report["duplicates"]), "path")),
        "",
    ]
    rows = [["#", "layer", "size", "files", "bytes", "origins"]]
    for layer in report["layers"]:
        rows.append([str(layer["index"]), layer["name"], human(layer["size"]),
                     str(layer["files"]), human(layer["bytes"]), _origin_cell(layer)])
    lines += _columns(rows, right=(0, 2, 3, 4))
    if report["findings"]:
        lines += ["", "Findings:"]
        for f in report["findings"]:
            lines.append("  %s" % f["title"])
            lines.append("    -> %s" % f["what_to_do"])
    if report["largest"]:
        lines += ["", "Largest files:"]
        lines += _columns([[human(r["bytes"]), "layer %d" % r["layer"], r["path"], r["origin"]]
                           for r in report["largest"][:SHOWN]], right=(0,))
    return "\n".join(lines) + "\n"


def layer_summary(row):
    """'app layer: 1 file changed, from //pkg:server.py' for one layer row of diff_reports."""
    counts = []
    origins = []
    for key, verb in (("changed", "changed"), ("added", "added"), ("removed", "removed")):
        if row[key]:
            counts.append("%s %s" % (plural(len(row[key]), "file"), verb))
            origins += [f["origin"] for f in row[key]]
    if row["status"] == "added":
        head = "%s layer: new layer" % row["name"]
    elif row["status"] == "removed":
        head = "%s layer: layer removed" % row["name"]
    else:
        head = "%s layer" % row["name"]
    if not counts:
        return head + ": digest changed, same files (compression or metadata)"
    names = sorted(set(origins))
    shown = ", ".join(names[:3]) + (" and %d more" % (len(names) - 3) if len(names) > 3 else "")
    sep = ", " if row["status"] in ("added", "removed") else ": "
    return "%s%s%s, from %s" % (head, sep, ", ".join(counts), shown)


def render_diff(changes):
    """The diff of two reports (diff.diff_reports) as text."""
    if not changes["digest_changed"]:
        return "same image digest: nothing changed\n"
    lines = []
    same = 0
    for row in changes["layers"]:
        if row["status"] == "same":
            same += 1
            continue
        lines.append(layer_summary(row))
        for key, mark in (("changed", "~"), ("added", "+"), ("removed", "-")):
            for f in row[key][:SHOWN]:
                extra = " (%s)" % ", ".join(f["what"]) if f.get("what") else ""
                lines.append("  %s %s  %s%s" % (mark, f["path"], f["origin"], extra))
            if len(row[key]) > SHOWN:
                lines.append("  %s ... %d more" % (mark, len(row[key]) - SHOWN))
    if changes["config_changed"] and not lines:
        lines.append("config changed (no layer changed)")
    elif changes["config_changed"]:
        lines.append("config changed too (it lists the layers' diff_ids)")
    lines.append("%s unchanged" % plural(same, "layer"))
    return "\n".join(lines) + "\n"
