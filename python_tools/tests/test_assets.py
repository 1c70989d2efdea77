"""Unit tests of python_tools/assets.py and python_tools/shiko/assets/: real files processed,
outputs read back and checked."""

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
import zlib

import brotli
import pytest

from python_tools.shiko.assets import hashed as assets
from python_tools.shiko.assets.encodings import gzip_bytes
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import canonical_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = "//pkg:assets"

CSS = b"""body { background: url("../img/logo.png?v=2#top") no-repeat; }
@import "base.css";
.icon { background-image: url(../img/icon.svg); }
.keep { background: url(data:image/png;base64,AAAA); }
.abs { background: url(/static/other.png); }
.remote { background: url('https://example.invalid/x.png'); }
.missing { background: url(../img/nope.png); }
"""
BASE_CSS = b"html { color: #222; }\n" * 40
JS = b"'use strict';\n" + b"document.title = 'python_app';\n" * 50
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10"/></svg>\n' * 10
PNG = bytes(range(256)) * 4  # incompressible enough, and not a compressible type anyway


def write(root, rel, data):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
    return p


@pytest.fixture
def srcs(tmp_path):
    root = str(tmp_path / "src")
    files = {
        "css/app.css": CSS,
        "css/base.css": BASE_CSS,
        "js/app.js": JS,
        "img/logo.png": PNG,
        "img/icon.svg": SVG,
    }
    return [{"logical": k, "src": write(root, k, v)} for k, v in sorted(files.items())]


def manifest(files, **kw):
    m = {"target": TARGET, "files": files, "hash_length": 12, "compress": ["gzip", "br"]}
    m.update(kw)
    return m


def read(root, rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


def listing(root):
    out = []
    for d, _, names in os.walk(root):
        for n in names:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return sorted(out)


def test_hashed_names_and_manifest(tmp_path, srcs):
    out = str(tmp_path / "out")
    result = assets.process(manifest(srcs), out)
    on_disk = json.loads(read(out, "manifest.json"))
    assert on_disk == {"version": 1, "assets": result}
    assert read(out, "manifest.json") == canonical_json(on_disk)

    js = result["js/app.js"]
    h = hashlib.sha256(JS).hexdigest()
    assert js["path"] == "js/app.%s.js" % h[:12]
    assert read(out, js["path"]) == JS
    assert js["sha256"] == h and js["size"] == len(JS)
    assert js["integrity"] == "sha256-" + base64.b64encode(hashlib.sha256(JS).digest()).decode()
    assert js["content_type"] == "text/javascript; charset=utf-8"

    png = result["img/logo.png"]
    assert png["path"] == "img/logo.%s.png" % hashlib.sha256(PNG).hexdigest()[:12]
    assert png["content_type"] == "image/png"
    assert png["encodings"] == {}, "PNG is never precompressed"
    # Only hashed names (and their variants) are written, plus the manifest.
    expected = {"manifest.json"}
    for e in result.values():
        expected.add(e["path"])
        expected.update(v["path"] for v in e["encodings"].values())
    assert set(listing(out)) == expected
    for name in listing(out):
        assert os.stat(os.path.join(out, name)).st_mode & 0o777 == 0o644


def test_precompressed_variants_decode_to_the_asset(tmp_path, srcs):
    out = str(tmp_path / "out")
    result = assets.process(manifest(srcs), out)
    for logical in ("js/app.js", "css/base.css", "img/icon.svg", "css/app.css"):
        e = result[logical]
        data = read(out, e["path"])
        gz = e["encodings"]["gzip"]
        br = e["encodings"]["br"]
        assert gz["path"] == e["path"] + ".gz" and br["path"] == e["path"] + ".br"
        gzb = read(out, gz["path"])
        assert gzip.decompress(gzb) == data
        assert brotli.decompress(read(out, br["path"])) == data
        assert gz["size"] == len(gzb) < len(data)
        # Deterministic gzip header: magic, deflate, no flags (no name), mtime 0, XFL 2, OS 255.
        assert gzb[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"


def test_css_references_are_rewritten_to_hashed_names(tmp_path, srcs):
    out = str(tmp_path / "out")
    result = assets.process(manifest(srcs), out)
    css = read(out, result["css/app.css"]["path"]).decode()
    logo = os.path.basename(result["img/logo.png"]["path"])
    icon = os.path.basename(result["img/icon.svg"]["path"])
    base = os.path.basename(result["css/base.css"]["path"])
    assert 'url("../img/%s?v=2#top")' % logo in css
    assert "url(../img/%s)" % icon in css
    assert '@import "%s";' % base in css
    # Not ours: left alone.
    assert "url(data:image/png;base64,AAAA)" in css
    assert "url(/static/other.png)" in css
    assert "url('https://example.invalid/x.png')" in css
    assert "url(../img/nope.png)" in css
    # The CSS is hashed after rewriting.
    assert result["css/app.css"]["sha256"] == hashlib.sha256(css.encode()).hexdigest()


def test_changing_a_referenced_image_renames_the_css(tmp_path, srcs):
    out1 = str(tmp_path / "out1")
    out2 = str(tmp_path / "out2")
    r1 = assets.process(manifest(srcs), out1)
    logo = [s for s in srcs if s["logical"] == "img/logo.png"][0]["src"]
    with open(logo, "ab") as f:
        f.write(b"\x00")
    r2 = assets.process(manifest(srcs), out2)
    assert r1["img/logo.png"]["path"] != r2["img/logo.png"]["path"]
    assert r1["css/app.css"]["path"] != r2["css/app.css"]["path"]
    assert r1["js/app.js"] == r2["js/app.js"]


def test_output_is_reproducible_and_independent_of_source_paths(tmp_path, srcs):
    out1 = str(tmp_path / "out1")
    assets.process(manifest(srcs), out1)
    # Same content elsewhere, other modes and mtimes.
    moved = []
    for s in srcs:
        with open(s["src"], "rb") as f:
            data = f.read()
        p = write(str(tmp_path / "elsewhere" / "x"), s["logical"].replace("/", "_"), data)
        os.chmod(p, 0o600)
        os.utime(p, (12345, 12345))
        moved.append({"logical": s["logical"], "src": p})
    out2 = str(tmp_path / "out2")
    assets.process(manifest(list(reversed(moved))), out2)
    assert listing(out1) == listing(out2)
    for name in listing(out1):
        assert read(out1, name) == read(out2, name), name


def test_options_hash_length_gzip_only_and_extensions(tmp_path, srcs):
    out = str(tmp_path / "out")
    result = assets.process(manifest(srcs, hash_length=8, compress=["gzip"],
                                     compress_extensions=[".js"]), out)
    assert result["js/app.js"]["path"].split(".")[-2] == hashlib.sha256(JS).hexdigest()[:8]
    assert set(result["js/app.js"]["encodings"]) == {"gzip"}
    assert result["css/base.css"]["encodings"] == {}


def test_variant_kept_only_when_it_saves_enough(tmp_path):
    root = str(tmp_path / "src")
    tiny = write(root, "a.css", b"a{}")
    out = str(tmp_path / "out")
    result = assets.process(manifest([{"logical": "a.css", "src": tiny}]), out)
    assert result["a.css"]["encodings"] == {}


def test_names_without_extension_and_dotted_names():
    assert assets.hashed_name("LICENSE", "ab" * 32, 8) == "LICENSE.abababab"
    assert assets.hashed_name("js/app.min.js", "cd" * 32, 8) == "js/app.min.cdcdcdcd.js"
    assert assets.hashed_name(".hidden", "ef" * 32, 8) == ".hidden.efefefef"


@pytest.mark.parametrize("kw, attr, value, problem", [
    ({"hash_length": 4}, "hash_length", 4, "between 8 and 64"),
    ({"compress": ["zstd"]}, "compress", "zstd", "unknown encoding"),
])
def test_bad_options(tmp_path, srcs, kw, attr, value, problem):
    with pytest.raises(UserError) as e:
        assets.process(manifest(srcs, **kw), str(tmp_path / "out"))
    assert e.value.attr == attr and e.value.value == value and problem in e.value.problem


@pytest.mark.parametrize("logical", ["/abs.css", "a/../b.css", "a//b.css", "manifest.json", ""])
def test_bad_names(tmp_path, logical):
    p = write(str(tmp_path), "x.css", b"x")
    with pytest.raises(UserError) as e:
        assets.process(manifest([{"logical": logical, "src": p}]), str(tmp_path / "out"))
    assert e.value.attr == "srcs"


def test_duplicate_names_and_css_cycles(tmp_path):
    a = write(str(tmp_path), "a.css", b'@import "b.css";')
    b = write(str(tmp_path), "b.css", b"x { background: url(a.css) }")
    with pytest.raises(UserError) as e:
        assets.process(manifest([{"logical": "a.css", "src": a}, {"logical": "a.css", "src": b}]),
                       str(tmp_path / "o1"))
    assert "two source files" in e.value.problem
    with pytest.raises(UserError) as e:
        assets.process(manifest([{"logical": "a.css", "src": a}, {"logical": "b.css", "src": b}]),
                       str(tmp_path / "o2"))
    assert "cycle" in e.value.problem and "a.css -> b.css -> a.css" in e.value.problem


def run_cli(mpath, out):
    return subprocess.run([sys.executable, "-m", "python_tools.assets", "--manifest", mpath,
                           "--output_dir", out], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# "missing.js" fails before anything is written; "zz/missing.js" after ok.js and its variants.
@pytest.mark.parametrize("missing", ["missing.js", "zz/missing.js"])
def test_cli_error_is_one_line_and_leaves_nothing(tmp_path, missing):
    a = write(str(tmp_path), "ok.js", JS)
    m = manifest([{"logical": "ok.js", "src": a}, {"logical": missing,
                                                    "src": str(tmp_path / "missing.js")}])
    mpath = write(str(tmp_path), "m.json", json.dumps(m).encode())
    out = str(tmp_path / "out")
    write(out, "stale/file.txt", b"from an earlier run")
    res = run_cli(mpath, out)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == ["ERROR: //pkg:assets: attribute 'srcs': %r: cannot read %s: "
                     "No such file or directory" % (missing, tmp_path / "missing.js")], res.stderr
    assert os.listdir(out) == []


def test_library_failure_leaves_the_output_directory_empty(tmp_path, srcs):
    out = str(tmp_path / "out")
    write(out, "stale.txt", b"old")
    bad = srcs + [{"logical": "zz.js", "src": str(tmp_path / "nope.js")}]
    with pytest.raises(UserError):
        assets.process(manifest(bad), out)
    assert os.path.isdir(out) and os.listdir(out) == []


def test_cli_bad_manifest_is_one_line(tmp_path):
    out = str(tmp_path / "out")
    os.makedirs(out)
    res = run_cli(str(tmp_path / "no-such-manifest.json"), out)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot read the manifest" in lines[0], res.stderr
    assert os.listdir(out) == []


def test_cli_writes_the_same_as_the_library(tmp_path, srcs):
    mpath = write(str(tmp_path), "m.json", json.dumps(manifest(srcs)).encode())
    out_cli = str(tmp_path / "cli")
    subprocess.run([sys.executable, "-m", "python_tools.assets", "--manifest", mpath,
                    "--output_dir", out_cli], cwd=REPO, check=True,
                   env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    out_lib = str(tmp_path / "lib")
    assets.process(manifest(srcs), out_lib)
    assert listing(out_cli) == listing(out_lib)
    for name in listing(out_lib):
        assert read(out_cli, name) == read(out_lib, name)


def test_gzip_is_plain_zlib_deflate():
    data = b"hello hello hello hello\n" * 30
    gz = gzip_bytes(data)
    co = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
    assert gz[10:-8] == co.compress(data) + co.flush()
