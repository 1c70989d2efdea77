"""Unit tests of python_tools/report.py and python_tools/shiko/explain/ (model, efficiency,
findings, listing, inputs, page): synthetic listings with a later layer overwriting a file and
whiteouts of a file and a directory, and report.py run on real layers written by the layer tool
and a pulled-style blob."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

from python_tools.shiko.explain import efficiency as eff
from python_tools.shiko.explain import listing
from python_tools.shiko.explain.filesystem import final_files
from python_tools.shiko.explain.model import build_report, layer_name, origin_tally
from python_tools.shiko.explain.page import page_data, render_page
from python_tools.shiko.files import canonical_json
from python_tools.shiko.layer.build import build_layer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def f(path, size, origin="//x:src", sha=None, mode="0644"):
    return {"path": path, "type": "file", "mode": mode, "uid": 0, "gid": 0, "size": size,
            "origin": origin, "sha256": sha or hashlib.sha256(b"%d" % size).hexdigest()}


def d(path, origin=None):
    return {"path": path, "type": "dir", "mode": "0755", "uid": 0, "gid": 0, "size": 0,
            "origin": origin}


# Layer 0: files, a directory with two files. Layer 1 overwrites /a/x, deletes the file /a/y and
# the directory /d with whiteouts. Layer 2 adds /d/new under an opaque marker.
L0 = [d("/a"), f("/a/x", 100, "//x:old"), f("/a/y", 50, "//x:old"), d("/d"), f("/d/p", 30),
      f("/d/q", 20), f("/keep", 7)]
L1 = [d("/a"), f("/a/x", 120, "//x:new"), f("/a/.wh.y", 0, "//x:rm"), f("/.wh.d", 0, "//x:rm")]
L2 = [d("/d"), f("/d/.wh..wh..opq", 0, "//x:fresh"), f("/d/new", 3, "//x:fresh")]


def layer(entries, i, label=None):
    return {"digest": "sha256:%064x" % (i + 1), "size": 10 * (i + 1), "tar_size": 2048,
            "label": label or "//pkg:image_l%d" % i, "source": None, "entries": entries}


def report_of(*layers):
    return build_report("//pkg:image", "sha256:" + "f" * 64, {"config": {"digest": "sha256:c"}},
                        [layer(e, i) for i, e in enumerate(layers)])


# ---------------------------------------------------------------------------------------------
# dive's efficiency


def test_efficiency_counts_overwrites_and_whiteouts_as_dive():
    wasted, score, dupes = eff.efficiency([L0, L1])
    # /a/x: 100 + 120; /a/y: 50 + 0 (a deleted file counts 0 at the whiteout); /d: only the
    # whiteout counts it, with the size of the directory it deletes (30 + 20); /d/p, /d/q, /keep.
    assert wasted == 220 + 50
    assert score == float(100 + 0 + 50 + 30 + 20 + 7) / float(220 + 50 + 50 + 30 + 20 + 7)
    assert dupes == [{"path": "/a/x", "layers": [0, 1], "bytes": 220},
                     {"path": "/a/y", "layers": [0, 1], "bytes": 50}]


def test_efficiency_only_leaves_count_and_opaque_markers_are_not_paths():
    sizes = eff.path_sizes([L0, L1, L2])
    assert "/a" not in sizes and "/d/.wh..wh..opq" not in sizes
    # /d in layer 2 has children (new): not a leaf; its whiteout in layer 1 is.
    assert sizes["/d"] == [(1, 50)]
    assert sizes["/d/new"] == [(2, 3)]
    # An empty directory is a leaf of size 0.
    assert eff.path_sizes([[d("/empty")], [d("/empty")]])["/empty"] == [(0, 0), (1, 0)]


def test_efficiency_of_nothing_is_one():
    assert eff.efficiency([[], []]) == (0, 1.0, [])
    assert eff.efficiency([[d("/x")], [d("/x")]])[:2] == (0, 1.0)


def test_a_whiteout_of_a_missing_path_stops_the_layer_as_in_dive():
    # dive's visitor fails there: the layer's later leaves (by name) are not counted.
    sizes = eff.path_sizes([[f("/a", 1)], [f("/.wh.b", 0), f("/c", 5), f("/a", 1)]])
    assert sizes == {"/a": [(0, 1)]}


# ---------------------------------------------------------------------------------------------
# The report model


def test_report_layers_origins_duplicates_largest():
    r = report_of(L0, L1)
    assert [x["name"] for x in r["layers"]] == ["l0", "l1"]
    assert r["wasted_bytes"] == 270 and r["files"] == 8 and r["bytes"] == 327
    l0 = r["layers"][0]
    assert l0["origins"] == [{"origin": "//x:old", "files": 2, "bytes": 150},
                             {"origin": "//x:src", "files": 3, "bytes": 57}]
    assert r["largest"][0] == {"path": "/a/x", "layer": 1, "bytes": 120, "origin": "//x:new"}
    assert [x["path"] for x in r["duplicates"]] == ["/a/x", "/a/y"]
    kinds = {x["kind"]: x for x in r["findings"]}
    assert kinds["overwritten"]["paths"] == ["/a/x"]
    assert "//x:old" in kinds["overwritten"]["what_to_do"]
    assert "//x:new" in kinds["overwritten"]["what_to_do"]
    # The file whiteout and the directory whiteout: the bytes still shipped in layer 0.
    assert kinds["deleted"]["paths"] == ["/a/y", "/d/p", "/d/q"]
    assert kinds["deleted"]["bytes"] == 50 + 30 + 20
    assert kinds["deleted"]["title"] == "3 files of layer l0 deleted by a later layer (100 B still shipped)"
    # Deterministic: the same input gives the same bytes.
    assert canonical_json(r) == canonical_json(report_of(L0, L1))


def test_final_files_apply_whiteouts_and_opaque_markers():
    r = report_of(L0, L1, L2)
    final = final_files(r)
    assert final["/a/x"][0] == 1 and final["/a/x"][1]["size"] == 120
    assert "/a/y" not in final and "/d/p" not in final and "/d/q" not in final
    assert final["/d/new"][0] == 2 and "/keep" in final


def test_origin_tally_names_the_wheel_behind_an_origin():
    entries = [f("/app/external/pip/protobuf/a.py", 10, "@pip//protobuf"),
               f("/app/external/pip/protobuf/b.so", 30, "@pip//protobuf"), d("/app"),
               f("/app/main.py", 5, "//app:main.py")]
    assert origin_tally(entries, {"@pip//protobuf": "protobuf 6.33.6"}) == [
        {"origin": "@pip//protobuf", "files": 2, "bytes": 40, "package": "protobuf 6.33.6"},
        {"origin": "//app:main.py", "files": 1, "bytes": 5}]


def test_layer_names():
    assert layer_name("//pkg:image", {"label": "//pkg:image_app"}, 3) == "app"
    assert layer_name("//pkg:image", {"label": "//examples/distroless:python3_libc"}, 0) == "python3_libc"
    assert layer_name("//pkg:image", {"label": None, "source": "@base"}, 2) == "base[2]"


def test_findings_docs_caches_bytecode_large_and_same_content():
    big = 12 * 1000 * 1000
    docs = [f("/usr/share/doc/p%d/changelog.gz" % i, 20000, "deb:p%d=1.0" % i) for i in range(3)]
    junk = [f("/app/m/__pycache__/m.cpython-311.pyc", 30000, "//app:m"),
            f("/var/cache/apt/pkgcache.bin", 40000, "//app:junk"),
            f("/opt/model.bin", big, "@models//weights"),
            f("/opt/a.dat", 20000, "//app:data", sha="1" * 64),
            f("/opt/b.dat", 20000, "//app:data", sha="1" * 64)]
    r = report_of(docs, junk)
    by = {x["kind"]: x for x in r["findings"]}
    assert by["docs"]["title"] == "/usr/share/doc holds 60.0 kB in 3 files from 3 debs"
    assert "keep_docs" in by["docs"]["what_to_do"]
    assert by["bytecode"]["bytes"] == 30000 and "//app:m" in by["bytecode"]["what_to_do"]
    assert by["cache"]["paths"] == ["/var/cache/apt/pkgcache.bin"]
    assert by["large_file"]["title"] == "/opt/model.bin is 12.0 MB (from @models//weights)"
    assert by["same_content"]["paths"] == ["/opt/a.dat", "/opt/b.dat"]
    assert by["same_content"]["bytes"] == 20000
    assert r["findings"][0]["kind"] == "large_file"  # largest first
    assert all(x["what_to_do"] for x in r["findings"])


# ---------------------------------------------------------------------------------------------
# The page


def test_page_is_self_contained_and_escapes_data():
    r = report_of(L0, L1 + [f("/a/</script><b>", 5, "//x:<evil>")])
    page = render_page(r).decode("utf-8")
    assert page == render_page(r).decode("utf-8")
    lower = page.lower()
    for bad in ("http://", "https://", "<link", " src=", "@import", "url("):
        assert bad not in lower, bad
    assert "</script><b>" not in page and "\\u003c/script\\u003e" in page
    data = json.loads(page.split('id="report-data">', 1)[1].split("</script>", 1)[0])
    assert data["tree"] == [row for row in page_data(r)["tree"]]
    paths = [row[0] for row in data["tree"]]
    assert "/a/y" not in paths and "/d/p" not in paths  # deleted
    assert [row for row in data["tree"] if row[0] == "/a/x"] == [["/a/x", 1, 120, 1]]
    assert data["wasted_bytes"] == 270 and "entries" not in data["layers"][0]


# ---------------------------------------------------------------------------------------------
# Listing a pulled blob, deb origins


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            elif isinstance(data, tuple):
                info.type, info.linkname = data
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_list_blob_reads_a_gzip_layer(tmp_path):
    raw = _tar([("./etc/", None), ("./etc/os-release", b"ID=x\n"), ("etc/l", (tarfile.SYMTYPE, "os-release")),
                ("etc/h", (tarfile.LNKTYPE, "./etc/os-release")), ("./", None)])
    blob = tmp_path / "blob"
    blob.write_bytes(gzip.compress(raw))
    entries, size = listing.list_blob(str(blob), "@base")
    assert size == len(raw)
    assert [(e["path"], e["type"]) for e in entries] == [
        ("/etc", "dir"), ("/etc/os-release", "file"), ("/etc/l", "symlink"), ("/etc/h", "hardlink")]
    assert entries[1]["sha256"] == hashlib.sha256(b"ID=x\n").hexdigest()
    assert entries[2]["target"] == "os-release" and entries[3]["target"] == "/etc/os-release"
    assert all(e["origin"] == "@base" for e in entries)


def test_deb_origins():
    inventory = {"packages": [{"name": "libc6", "version": "2.36-9"}],
                 "files": {"/usr/lib/libc.so.6": "libc6"}}
    assert listing.deb_origins([inventory]) == {"/usr/lib/libc.so.6": "deb:libc6=2.36-9"}


# ---------------------------------------------------------------------------------------------
# report.py end to end: real layers, a pulled base layer, an image manifest


def _layer_manifest(entries):
    return {"target": "//pkg:l", "compression": "gzip", "compression_level": None, "mtime": 0,
            "defaults": {"file_mode": None, "dir_mode": "0755", "uid": 0, "gid": 0},
            "overrides": {}, "entries": entries}


def _build(tmp_path, name, files):
    entries = []
    for dest, data in files.items():
        src = tmp_path / "src" / name / dest
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_bytes(data)
        entries.append({"kind": "file", "dest": dest, "src": str(src),
                        "origin": {"attr": "files", "label": "//pkg:" + os.path.basename(dest)}})
    out = str(tmp_path / (name + ".tar.gz"))
    desc, entries = build_layer(_layer_manifest(entries), out)
    (tmp_path / (name + ".layer.json")).write_bytes(canonical_json(desc))
    (tmp_path / (name + ".listing.json")).write_bytes(entries.json())
    return desc


def _run_report(tmp_path, app_content, out="out"):
    layout = tmp_path / "layout"
    base_raw = _tar([("etc/", None), ("etc/config.txt", b"base config\n")])
    base_blob = gzip.compress(base_raw, mtime=0)
    base_digest = "sha256:" + hashlib.sha256(base_blob).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / base_digest[7:]).write_bytes(base_blob)
    app = _build(tmp_path, "image_app", {"etc/config.txt": b"our config\n", "app/main.py": app_content})
    manifest = {"schemaVersion": 2, "config": {"digest": "sha256:" + "c" * 64, "size": 1},
                "layers": [{"digest": base_digest, "size": len(base_blob)},
                           {"digest": app["digest"], "size": app["size"]}]}
    (tmp_path / "manifest.json").write_bytes(canonical_json(manifest))
    (tmp_path / "config.json").write_bytes(b"{}")
    (tmp_path / "digest").write_text("sha256:" + hashlib.sha256(canonical_json(manifest)).hexdigest())
    spec = {"target": "//pkg:image", "manifest": str(tmp_path / "manifest.json"),
            "config": str(tmp_path / "config.json"), "digest": str(tmp_path / "digest"),
            "base_layout": {"path": str(layout), "source": "@base"},
            "layers": [{"digest": None, "label": "//pkg:image_app",
                        "descriptor": str(tmp_path / "image_app.layer.json"),
                        "listing": str(tmp_path / "image_app.listing.json"),
                        "packages": [], "source": None,
                        # the files' content hashes come from the blob
                        "blob": str(tmp_path / "image_app.tar.gz")}],
            "json": str(tmp_path / (out + ".report.json")), "html": str(tmp_path / (out + ".report.html"))}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, "-m", "python_tools.report", "--manifest", str(tmp_path / "spec.json")],
                          cwd=REPO, capture_output=True, text=True)
    return proc, spec


def test_report_tool_on_real_layers(tmp_path):
    proc, spec = _run_report(tmp_path, b"print('hello')\n")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(open(spec["json"], "rb").read())
    assert [x["name"] for x in r["layers"]] == ["base[0]", "app"]
    assert r["layers"][0]["origins"] == [{"origin": "@base", "files": 1, "bytes": 12}]
    app_files = {e["path"]: e for e in r["layers"][1]["entries"]}
    assert app_files["/app/main.py"]["origin"] == "//pkg:main.py"
    assert app_files["/app/main.py"]["sha256"] == hashlib.sha256(b"print('hello')\n").hexdigest()
    # /etc/config.txt is in both layers: dive counts 12 + 11 bytes.
    assert r["wasted_bytes"] == 23
    assert r["duplicates"] == [{"path": "/etc/config.txt", "layers": [0, 1], "bytes": 23}]
    # The pulled blob's tar size is counted while it is listed (its tar: 3 blocks + 2 end
    # blocks, padded by Python's tarfile to a 10240-byte record).
    assert r["layers"][0]["tar_size"] == 10240
    html = open(spec["html"], "rb").read()
    assert b"layer-bar" in html and b"tree-node" in html
    # Deterministic bytes.
    first = open(spec["json"], "rb").read()
    proc, spec = _run_report(tmp_path, b"print('hello')\n", out="again")
    assert open(spec["json"], "rb").read() == first
    assert open(spec["html"], "rb").read() == html


def test_report_tool_bad_input_is_one_line_and_no_output(tmp_path):
    proc, spec = _run_report(tmp_path, b"x\n")
    assert proc.returncode == 0
    bad = json.loads((tmp_path / "spec.json").read_text())
    bad["base_layout"] = None
    os.unlink(bad["json"])
    os.unlink(bad["html"])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    proc = subprocess.run([sys.executable, "-m", "python_tools.report", "--manifest", str(tmp_path / "bad.json")],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "ERROR: //pkg:image: attribute 'base_layout': the image manifest has 1 layers below the "
        "1 built ones, and no base_layout holds them"]
    assert not os.path.exists(bad["json"]) and not os.path.exists(bad["html"])
