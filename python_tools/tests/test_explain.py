"""Unit tests of python_tools/explain.py and the report diff and table (shiko/explain/diff.py,
table.py): a one-line edit of the same size is found by its content hash, added/removed files
and layers, and the command line on real report files."""

import copy
import hashlib
import json
import os
import subprocess
import sys

from python_tools.shiko.explain.diff import diff_reports
from python_tools.shiko.explain.model import build_report
from python_tools.shiko.explain.table import layer_summary, render_diff, render_report
from python_tools.shiko.files import canonical_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def f(path, content, origin, mode="0644"):
    return {"path": path, "type": "file", "mode": mode, "uid": 0, "gid": 0, "size": len(content),
            "origin": origin, "sha256": hashlib.sha256(content).hexdigest()}


def layer(label, digest, entries):
    return {"digest": digest, "size": 100, "tar_size": 10240, "label": label, "source": None,
            "entries": entries}


SERVER = b"def hello():\n    return 'hello'\n"
SERVER_EDITED = b"def hello():\n    return 'howdy'\n"  # the same size


def image(server, extra=(), deps_digest="sha256:d1", app_digest="sha256:a1", digest="sha256:i1"):
    layers = [
        layer("//examples/distroless:python3_libc", "sha256:b1",
              [f("/usr/lib/libc.so.6", b"\0" * 2000, "deb:libc6=2.36-9")]),
        layer("//examples/python_app:image_deps", deps_digest,
              [f("/app/external/pip/protobuf/__init__.py", b"# pb\n", "@python_app_pip//protobuf")]),
        layer("//examples/python_app:image_app", app_digest,
              [f("/app/examples/python_app/server.py", server, "//examples/python_app:server.py"),
               f("/app/examples/python_app/main.py", b"import server\n", "//examples/python_app:main.py")]
              + list(extra)),
    ]
    return build_report("//examples/python_app:image", digest, {"config": {"digest": digest + "c"}}, layers)


def test_a_one_line_edit_of_the_same_size_is_one_changed_file():
    assert len(SERVER) == len(SERVER_EDITED)
    old = image(SERVER)
    new = image(SERVER_EDITED, app_digest="sha256:a2", digest="sha256:i2")
    changes = diff_reports(old, new)
    rows = {r["name"]: r for r in changes["layers"]}
    assert rows["python3_libc"]["status"] == "same" and rows["deps"]["status"] == "same"
    app = rows["app"]
    assert app["status"] == "changed" and app["added"] == [] and app["removed"] == []
    assert app["changed"] == [{"path": "/app/examples/python_app/server.py",
                               "origin": "//examples/python_app:server.py", "what": ["sha256"]}]
    assert layer_summary(app) == "app layer: 1 file changed, from //examples/python_app:server.py"
    text = render_diff(changes)
    assert text.splitlines()[0] == "app layer: 1 file changed, from //examples/python_app:server.py"
    assert "2 layers unchanged" in text


def test_added_removed_and_layer_changes():
    old = image(SERVER)
    extra = [f("/app/examples/python_app/static/new.css", b"body{}", "//examples/python_app:assets")]
    new = image(SERVER, extra=extra, app_digest="sha256:a3", digest="sha256:i3")
    new["layers"] = new["layers"][1:]  # the libc layer is gone
    for i, l in enumerate(new["layers"]):
        l["index"] = i
    rows = {r["name"]: r for r in diff_reports(old, new)["layers"]}
    assert layer_summary(rows["app"]) == (
        "app layer: 1 file added, from //examples/python_app:assets")
    assert rows["python3_libc"]["status"] == "removed"
    assert layer_summary(rows["python3_libc"]) == (
        "python3_libc layer: layer removed, 1 file removed, from deb:libc6=2.36-9")
    back = {r["name"]: r for r in diff_reports(new, old)["layers"]}
    assert back["python3_libc"]["status"] == "added"
    assert back["app"]["removed"][0]["path"] == "/app/examples/python_app/static/new.css"


def test_a_digest_change_with_the_same_files_says_so():
    old = image(SERVER)
    new = image(SERVER, deps_digest="sha256:d9", digest="sha256:i9")
    rows = {r["name"]: r for r in diff_reports(old, new)["layers"]}
    assert layer_summary(rows["deps"]) == "deps layer: digest changed, same files (compression or metadata)"
    assert render_diff(diff_reports(old, old)) == "same image digest: nothing changed\n"


def test_table_names_layers_origins_and_dive_figures():
    text = render_report(image(SERVER))
    lines = text.splitlines()
    assert lines[0] == "//examples/python_app:image  sha256:i1"
    assert lines[2] == "efficiency 100.0 %, wasted 0 B (0 paths, as dive counts them)"
    row = [l for l in lines if l.lstrip().startswith("2 ")][0]
    assert row.split()[:2] == ["2", "app"]
    assert "//examples/python_app:server.py" in row and "//examples/python_app:main.py" in row


def _explain(*args, **kw):
    return subprocess.run([sys.executable, "-m", "python_tools.explain"] + list(args), cwd=REPO,
                          capture_output=True, text=True, **kw)


def test_explain_command_table_diff_and_errors(tmp_path):
    old = tmp_path / "old.report.json"
    new = tmp_path / "new.report.json"
    old.write_bytes(canonical_json(image(SERVER)))
    new.write_bytes(canonical_json(image(SERVER_EDITED, app_digest="sha256:a2", digest="sha256:i2")))
    proc = _explain("--report=%s" % new, "--html=%s" % (tmp_path / "x.html"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("//examples/python_app:image  sha256:i2\n")
    assert "page:   file://%s" % (tmp_path / "x.html") in proc.stdout
    # --diff relative to where `bazel run` started.
    env = dict(os.environ, BUILD_WORKING_DIRECTORY=str(tmp_path))
    proc = _explain("--report=%s" % new, "--diff=old.report.json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "app layer: 1 file changed, from //examples/python_app:server.py"
    proc = _explain("--report=%s" % new, "--diff=%s" % (tmp_path / "missing.json"))
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "ERROR: explain: attribute '--diff': %r: cannot read it: No such file or directory"
        % str(tmp_path / "missing.json")]
    (tmp_path / "other.json").write_text(json.dumps({"a": 1}))
    proc = _explain("--report=%s" % (tmp_path / "other.json"))
    assert proc.returncode == 1 and "not an image report" in proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_diff_matches_pulled_layers_by_source_and_position():
    def pulled(digests):
        layers = [{"digest": d, "size": 1, "tar_size": None, "label": None, "source": "@base",
                   "entries": [f("/f%d" % i, d.encode(), "@base")]} for i, d in enumerate(digests)]
        return build_report("//x:image", "sha256:" + "".join(digests), {}, layers)
    old = pulled(["sha256:1", "sha256:2"])
    new = pulled(["sha256:1", "sha256:3"])
    rows = diff_reports(old, new)["layers"]
    assert [r["status"] for r in rows] == ["same", "changed"]
    assert rows[1]["changed"][0]["path"] == "/f1" and rows[1]["name"] == "base[1]"
    assert copy.deepcopy(old) == old
