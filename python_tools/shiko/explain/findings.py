"""Findings: where an image's bytes could be saved, each with one "what to do" line.

    findings(report)  ->  [{"kind", "title", "bytes", "what_to_do", "paths"}], largest first

Kinds (bytes are what the layers ship, deleted or overwritten files included):
- docs: documentation, man pages, info pages and locales (/usr/share/doc, man, info, locale),
  packages' copyright files left out (they are kept on purpose).
- bytecode: Python bytecode caches (__pycache__, .pyc, .pyo).
- cache: caches and leftovers (/var/cache, /var/lib/apt/lists, .cache directories, /tmp).
- overwritten: files a later layer replaces (they still ship in the earlier layer).
- deleted: files a later layer deletes with a whiteout (still shipped below it).
- large_file: a single regular file of LARGE_FILE bytes or more.
- same_content: the same bytes (sha256) stored at several paths that are not hardlinks
  (copyright files left out).
"""

from python_tools.shiko.explain.filesystem import WHITEOUT, final_files
from python_tools.shiko.explain.units import human, plural

THRESHOLD = 16 * 1024  # smaller groups are not worth a line
LARGE_FILE = 10 * 1000 * 1000
SHOWN_PATHS = 8

_DOC_DIRS = ("/usr/share/doc", "/usr/share/man", "/usr/share/info", "/usr/share/locale")
_CACHE_DIRS = ("/var/cache", "/var/lib/apt/lists", "/tmp", "/var/tmp")


def _files(report):
    """(layer, entry) of every non-directory entry of every layer."""
    for layer in report["layers"]:
        for e in layer["entries"]:
            if e["type"] != "dir":
                yield layer, e


def _origins_phrase(origins):
    """'deb:a=1, deb:b=2 and 3 more' from a collection of origin strings."""
    names = sorted(set(origins))
    if len(names) <= 3:
        return ", ".join(names)
    return "%s and %d more" % (", ".join(names[:3]), len(names) - 3)


def _finding(kind, title, size, what, paths):
    return {"kind": kind, "title": title, "bytes": size, "what_to_do": what,
            "paths": sorted(paths)[:SHOWN_PATHS]}


def _under(path, dirs):
    return any(path.startswith(d + "/") for d in dirs)


def _licence(path):
    """A package's copyright file (/usr/share/doc/<pkg>/copyright): kept on purpose (deb_layer
    keeps them even without keep_docs), never a finding."""
    return path.startswith("/usr/share/doc/") and path.endswith("/copyright")


def _matching(report, kind, match, title, what):
    """One finding of kind `kind` for the files whose path `match`es, when they hold THRESHOLD
    bytes or more: title(size, hits, origins) and what(origins, all_debs) give its text."""
    hits = [e for _, e in _files(report) if match(e["path"]) and not _licence(e["path"])]
    size = sum(int(e["size"]) for e in hits)
    if size < THRESHOLD:
        return []
    origins = [e["origin"] for e in hits]
    all_debs = all(o.startswith("deb:") for o in origins)
    return [_finding(kind, title(size, hits, origins), size, what(origins, all_debs),
                     [e["path"] for e in hits])]


def _held(d):
    """'<d> holds 3.1 MB in 412 files from 40 debs' for _matching."""
    def title(size, hits, origins):
        n = len(set(origins))
        source = plural(n, "deb") if all(o.startswith("deb:") for o in origins) else plural(n, "origin")
        return "%s holds %s in %s from %s" % (d, human(size), plural(len(hits), "file"), source)
    return title


def _docs(report):
    out = []
    for d in _DOC_DIRS:
        def what(origins, all_debs, d=d):
            if all_debs:
                return ("exclude docs in deb_layer / distroless_base: keep_docs = False (the "
                        "default) keeps only copyright files")
            return "leave %s out of %s: documentation is not needed at run time" % (
                d, _origins_phrase(origins))
        out += _matching(report, "docs", lambda p, d=d: _under(p, (d,)), _held(d), what)
    return out


def _caches(report):
    out = []
    for d, match in [(d, lambda p, d=d: _under(p, (d,))) for d in _CACHE_DIRS] + [
            (".cache directories", lambda p: "/.cache/" in p)]:
        what = (lambda origins, all_debs, d=d: "caches are rebuilt at run time: leave %s out of %s"
                % (d, _origins_phrase(origins)))
        out += _matching(report, "cache", match, _held(d), what)
    return out


def _bytecode(report):
    return _matching(
        report, "bytecode", lambda p: "/__pycache__/" in p or p.endswith((".pyc", ".pyo")),
        lambda size, hits, origins: "Python bytecode caches: %s in %s" % (
            human(size), plural(len(hits), "file")),
        lambda origins, all_debs: "leave __pycache__/*.pyc out of %s (compiled at run time, and "
                                  "they differ per interpreter); set PYTHONDONTWRITEBYTECODE=1 "
                                  "in the image" % _origins_phrase(origins))


def _replaced(report):
    """overwritten and deleted findings: regular files a layer ships that are not in the final
    filesystem from that layer. One finding per (layer, later layer that holds the path) for
    overwritten files, one per layer for deleted ones (whiteouts, opaque directories)."""
    final = final_files(report)
    names = {l["index"]: l["name"] for l in report["layers"]}
    groups = {}
    for layer, e in _files(report):
        if e["type"] != "file" or e["path"].rpartition("/")[2].startswith(WHITEOUT):
            continue
        owner = final.get(e["path"])
        if owner is not None and owner[0] == layer["index"]:
            continue
        if owner is not None:
            key = (layer["index"], "overwritten", owner[0])
            upper_origin = owner[1].get("origin")
        else:
            key = (layer["index"], "deleted", None)
            upper_origin = None
        g = groups.setdefault(key, [0, [], set(), set()])
        g[0] += int(e["size"])
        g[1].append(e["path"])
        g[2].add(e["origin"])
        if upper_origin:
            g[3].add(upper_origin)
    out = []
    for (lower, kind, upper), (size, paths, low, up) in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        them = "it" if len(paths) == 1 else "them"
        if kind == "overwritten":
            title = "%s in layer %s replaced by layer %s (%s shipped twice)" % (
                plural(len(paths), "file"), names[lower], names[upper], human(size))
            what = "ship each file from one layer: drop %s from %s, or from %s" % (
                them, _origins_phrase(low), _origins_phrase(up) or names[upper])
        else:
            title = "%s of layer %s deleted by a later layer (%s still shipped)" % (
                plural(len(paths), "file"), names[lower], human(size))
            what = ("a whiteout does not reclaim space: leave %s out of %s instead of deleting "
                    "%s later" % (them, _origins_phrase(low), them))
        out.append(_finding(kind, title, size, what, paths))
    return out


def _large(report):
    out = []
    for r in report["largest"]:
        if r["bytes"] < LARGE_FILE:
            break
        out.append(_finding(
            "large_file", "%s is %s (from %s)" % (r["path"], human(r["bytes"]), r["origin"]),
            r["bytes"], "check it is needed at run time; strip debug symbols from binaries, or "
                        "give it a layer of its own (py_image `split`, a separate image_layer) "
                        "so other edits do not re-push it", [r["path"]]))
    return out


def _same_content(report):
    by_hash = {}
    for layer, e in _files(report):
        if e["type"] == "file" and e.get("sha256") and int(e["size"]) > 0 and not _licence(e["path"]):
            by_hash.setdefault(e["sha256"], []).append((layer["index"], e))
    out = []
    for digest, hits in sorted(by_hash.items()):
        paths = sorted(set(e["path"] for _, e in hits))
        if len(paths) < 2:
            continue  # the same path in several layers is `overwritten`
        size = int(hits[0][1]["size"]) * (len(hits) - 1)
        if size < THRESHOLD:
            continue
        origins = [e["origin"] for _, e in hits]
        if all(o.startswith("deb:") for o in origins):
            what = ("these Debian packages ship the same file (%s): only leaving a package out "
                    "removes a copy" % _origins_phrase(origins))
        else:
            what = "store it once (one path, or a symlink to it) in %s" % _origins_phrase(origins)
        out.append(_finding(
            "same_content", "%d copies of the same %s file" % (len(hits), human(hits[0][1]["size"])),
            size, what, paths))
    return out


def findings(report):
    """Every finding of a report (model.build_report's dict without "findings"), largest first."""
    out = []
    out += _docs(report)
    out += _caches(report)
    out += _bytecode(report)
    out += _replaced(report)
    out += _large(report)
    out += _same_content(report)
    out.sort(key=lambda f: (-f["bytes"], f["kind"], f["title"]))
    return out
