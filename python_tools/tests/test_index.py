"""python_tools/index.py and shiko/oci/index.py: OCI image indexes and their layouts."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from python_tools.shiko.errors import UserError
from python_tools.shiko.files import canonical_json
from python_tools.shiko.oci import index

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob(layout, data):
    h = hashlib.sha256(data).hexdigest()
    d = os.path.join(layout, "blobs", "sha256")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, h), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}


def child(tmp_path, name, arch, variant=None, layer=b"layer"):
    """An image as `image` leaves it: manifest and config files, and its OCI layout."""
    layout = str(tmp_path / name)
    ldesc = dict(_blob(layout, layer), mediaType="application/vnd.oci.image.layer.v1.tar")
    config = {"architecture": arch, "os": "linux",
              "rootfs": {"type": "layers", "diff_ids": [ldesc["digest"]]}}
    if variant:
        config["variant"] = variant
    config_bytes = canonical_json(config)
    cdesc = dict(_blob(layout, config_bytes), mediaType="application/vnd.oci.image.config.v1+json")
    manifest_bytes = canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                     "config": cdesc, "layers": [ldesc]})
    mdesc = dict(_blob(layout, manifest_bytes), mediaType=OCI_MANIFEST)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(layout, "index.json"), "wb") as f:
        f.write(canonical_json({"schemaVersion": 2, "manifests": [mdesc]}))
    mpath, cpath = str(tmp_path / (name + ".manifest.json")), str(tmp_path / (name + ".config.json"))
    with open(mpath, "wb") as f:
        f.write(manifest_bytes)
    with open(cpath, "wb") as f:
        f.write(config_bytes)
    return {"label": "//x:" + name, "manifest": mpath, "config": cpath, "layout": layout,
            "digest": mdesc["digest"]}


def test_index_lists_children_with_their_platforms(tmp_path):
    a = child(tmp_path, "amd", "amd64")
    b = child(tmp_path, "arm", "arm64", "v8", layer=b"arm layer")
    out, dig = str(tmp_path / "i.json"), str(tmp_path / "i.digest")
    index.build({"target": "//x:index", "images": [a, b], "annotations": {"k": "v"}}, out, dig)
    data = open(out, "rb").read()
    got = json.loads(data)
    assert got["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["digest"], m["platform"]) for m in got["manifests"]] == [
        (a["digest"], {"architecture": "amd64", "os": "linux"}),
        (b["digest"], {"architecture": "arm64", "os": "linux", "variant": "v8"}),
    ]
    assert got["annotations"] == {"k": "v"}
    assert open(dig).read() == "sha256:%s\n" % hashlib.sha256(data).hexdigest()


def test_two_images_for_one_platform_is_an_error(tmp_path):
    a = child(tmp_path, "a", "arm64", "v8")
    b = child(tmp_path, "b", "arm64", layer=b"other")  # no variant: v8 all the same
    with pytest.raises(UserError) as e:
        index.index_bytes({"target": "//x:index", "images": [a, b]})
    assert "//x:a and //x:b are both for linux/arm64" in str(e.value)


def test_layout_holds_every_blob_and_names_the_index(tmp_path):
    a = child(tmp_path, "amd", "amd64")
    b = child(tmp_path, "arm", "arm64", "v8", layer=b"arm layer")
    out, dig = str(tmp_path / "i.json"), str(tmp_path / "i.digest")
    spec = {"target": "//x:index", "images": [a, b]}
    index.build(spec, out, dig)
    layout = str(tmp_path / "layout")
    index.build_layout(dict(spec, index=out, ref_name="multi"), layout)
    top = json.load(open(os.path.join(layout, "index.json")))
    assert top["manifests"][0]["digest"] == open(dig).read().strip()
    assert top["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "multi"}
    blobs = set(os.listdir(os.path.join(layout, "blobs", "sha256")))
    for c in (a, b):
        assert set(os.listdir(os.path.join(c["layout"], "blobs", "sha256"))) <= blobs
    for h in blobs:  # every blob is what its name says
        with open(os.path.join(layout, "blobs", "sha256", h), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == h


def test_layout_refuses_a_child_whose_layout_is_another_image(tmp_path):
    a = child(tmp_path, "amd", "amd64")
    b = child(tmp_path, "arm", "arm64", "v8", layer=b"arm layer")
    out, dig = str(tmp_path / "i.json"), str(tmp_path / "i.digest")
    index.build({"target": "//x:index", "images": [a, b]}, out, dig)
    swapped = [dict(a, layout=b["layout"]), b]
    with pytest.raises(UserError) as e:
        index.build_layout({"target": "//x:index", "images": swapped, "index": out},
                           str(tmp_path / "layout"))
    assert "another manifest" in str(e.value)


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path):
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"target": "//x:index", "images": []}))
    out, dig = tmp_path / "i.json", tmp_path / "i.digest"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-m", "python_tools.index", "--manifest", str(m),
                          "--output_index", str(out), "--output_digest", str(dig)], cwd=REPO,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert res.returncode == 1
    assert res.stderr == ("ERROR: //x:index: attribute 'images': []: an index needs at least "
                          "one image\n")
    assert not out.exists() and not dig.exists()
