"""python_tools/sbom.py and shiko/sbom/: SPDX 2.3 and CycloneDX 1.5 from layer provenance."""

import json
import os
import subprocess
import sys

import pytest

from python_tools.shiko.errors import UserError
from python_tools.shiko.sbom import licenses, model, purl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

L1 = "sha256:" + "1" * 64
L2 = "sha256:" + "2" * 64
L3 = "sha256:" + "3" * 64
B1 = "sha256:" + "b" * 64
BASE_MANIFEST = "sha256:" + "c" * 64
DIGEST = "sha256:" + "d" * 64


def write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    """A python_app-like image on a pulled base: a deb layer, a wheel layer, an app layer."""
    t = tmp_path
    layout = t / "base"
    (layout / "blobs" / "sha256").mkdir(parents=True)
    write(layout / "index.json", {"manifests": [{"digest": BASE_MANIFEST}]})
    write(layout / "blobs" / "sha256" / ("c" * 64), {"layers": [{"digest": B1}]})
    inv = write(t / "libs.packages.json", {
        "architecture": "amd64", "suites": ["bookworm", "bookworm-updates"],
        "packages": [{"name": "libc6", "version": "2.36-9+deb12u14", "architecture": "amd64",
                      "source": "glibc", "sha256": "a" * 64, "filename": "pool/main/g/glibc/x.deb",
                      "licenses": ["GPL-2+", "LGPL-2.1+"]},
                     {"name": "tzdata", "version": "2025b-0+deb12u2", "architecture": "all",
                      "source": "tzdata", "sha256": "e" * 64, "filename": "pool/t.deb",
                      "licenses": []}],
        "files": {"/usr/lib/libc.so.6": "libc6", "/var/lib/dpkg/status.d/libc6": "libc6",
                  "/etc/localtime": "tzdata"}})
    wheel = write(t / "rules_shiko_wheel.json", {
        "name": "absl_py", "version": "2.5.1", "filename": "absl_py-2.5.1-py3-none-any.whl",
        "sha256": "f" * 64, "lock": "//app:requirements_lock.txt"})
    listings = {
        "libs": [
            {"path": "/etc", "type": "dir", "size": 0},
            {"path": "/etc/localtime", "type": "symlink", "size": 0, "origin": "//d:libs_deb"},
            {"path": "/etc/passwd", "type": "file", "size": 10, "origin": "//d:libs_deb"},
            {"path": "/usr/lib/libc.so.6", "type": "file", "size": 1000, "origin": "//d:libs_deb"},
            {"path": "/var/lib/dpkg/status.d/libc6", "type": "file", "size": 50,
             "origin": "//d:libs_deb"},
        ],
        "deps": [
            {"path": "/app/site-packages/absl/app.py", "type": "file", "size": 300,
             "origin": "@pip//absl_py"},
            {"path": "/app/site-packages/absl_py-2.5.1.dist-info/METADATA", "type": "file",
             "size": 30, "origin": "@pip//absl_py"},
            # A wheel from another hub: only its dist-info tells what it is.
            {"path": "/app/site-packages/six-1.16.0.dist-info/METADATA", "type": "file",
             "size": 20, "origin": "@other//six"},
            {"path": "/app/site-packages/six.py", "type": "file", "size": 200,
             "origin": "@other//six"},
        ],
        "app": [
            {"path": "/app/main.py", "type": "file", "size": 40, "origin": "//app:main.py"},
            {"path": "/app/gen_pb2.py", "type": "file", "size": 60, "origin": "//app:gen"},
            {"path": "/app/static/a.css", "type": "file", "size": 5, "origin": "//app:gen"},
        ],
    }
    layers = []
    for name, digest in (("libs", L1), ("deps", L2), ("app", L3)):
        layers.append({
            "label": "//app:" + name,
            "descriptor": write(t / (name + ".layer.json"), {"digest": digest}),
            "listing": write(t / (name + ".listing.json"), listings[name]),
            "packages": [inv] if name == "libs" else [],
            "wheels": [{"path": wheel, "origin": "@pip//absl_py"}] if name == "deps" else [],
        })
    return {
        "target": "//app:image",
        "name": "image",
        "manifest": write(t / "m.json", {"layers": [{"digest": d} for d in (B1, L1, L2, L3)]}),
        "config": write(t / "c.json", {"architecture": "amd64", "os": "linux",
                                        "created": "1970-01-01T00:00:00Z"}),
        "digest": write(t / "image.digest", DIGEST + "\n"),
        "base": {"label": "@debian//:debian", "layout": str(layout)},
        "layers": layers,
    }


def by_name(image):
    return {c.name: c for c in image.components}


def test_model_components_and_layers(inputs):
    image = model.load(inputs)
    c = by_name(image)
    assert c["libc6"].purl == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12&upstream=glibc"
    assert c["libc6"].sha256 == "a" * 64 and c["libc6"].layers == [L1] and c["libc6"].files == 2
    assert c["tzdata"].purl == "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u2?arch=all&distro=debian-12"
    assert c["absl_py"].purl == "pkg:pypi/absl-py@2.5.1" and c["absl_py"].sha256 == "f" * 64
    assert c["absl_py"].files == 2 and c["absl_py"].layers == [L2]
    assert c["six"].purl == "pkg:pypi/six@1.16.0" and c["six"].sha256 == "" and c["six"].files == 2
    assert c["//app:gen"].kind == "target" and (c["//app:gen"].files, c["//app:gen"].bytes) == (2, 65)
    # /etc/passwd is no package's: the deb tar's label keeps it.
    assert c["//d:libs_deb"].files == 1 and c["//d:libs_deb"].bytes == 10
    assert c["@debian//:debian"].kind == "oci" and c["@debian//:debian"].layers == [B1]
    assert c["@debian//:debian"].purl.startswith("pkg:oci/debian@sha256%3A" + "c" * 64)
    assert [l["digest"] for l in image.layers] == [B1, L1, L2, L3]


def test_layers_that_are_not_the_manifests_are_an_error(inputs):
    inputs["layers"] = inputs["layers"][:2]
    with pytest.raises(UserError) as e:
        model.load(inputs)
    assert "//app:image" in str(e.value) and "4 layers" in str(e.value)


def run_tool(tmp_path, manifest):
    mpath = tmp_path / "sbom_manifest.json"
    mpath.write_text(json.dumps(manifest))
    spdx, cdx = tmp_path / "image.spdx.json", tmp_path / "image.cdx.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-m", "python_tools.sbom", "--manifest", str(mpath),
                          "--spdx", str(spdx), "--cyclonedx", str(cdx)], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return res, spdx, cdx


def test_spdx_document(tmp_path, inputs):
    res, spdx, _ = run_tool(tmp_path, inputs)
    assert res.returncode == 0, res.stderr
    doc = json.loads(spdx.read_text())
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"]["created"] == "1970-01-01T00:00:00Z"
    assert doc["documentNamespace"].startswith("urn:uuid:")
    pk = {p["SPDXID"]: p for p in doc["packages"]}
    assert len(pk) == len(doc["packages"])  # ids are unique
    libc = next(p for p in doc["packages"] if p["name"] == "libc6")
    assert libc["licenseDeclared"] == "GPL-2.0-or-later AND LGPL-2.1-or-later"
    assert libc["checksums"] == [{"algorithm": "SHA256", "checksumValue": "a" * 64}]
    assert libc["externalRefs"][0]["referenceLocator"].startswith("pkg:deb/debian/libc6@")
    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
            for r in doc["relationships"]}
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image") in rels
    assert ("SPDXRef-Image", "CONTAINS", libc["SPDXID"]) in rels
    layer1 = next(p for p in doc["packages"] if p.get("versionInfo") == L1)
    assert (layer1["SPDXID"], "CONTAINS", libc["SPDXID"]) in rels
    for src, _, dst in rels:  # every relationship names a declared element
        assert src in pk or src == "SPDXRef-DOCUMENT"
        assert dst in pk


def test_cyclonedx_document(tmp_path, inputs):
    res, _, cdx = run_tool(tmp_path, inputs)
    assert res.returncode == 0, res.stderr
    doc = json.loads(cdx.read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert doc["metadata"]["component"]["type"] == "container"
    refs = [c["bom-ref"] for c in doc["components"]]
    assert len(refs) == len(set(refs))
    absl = next(c for c in doc["components"] if c["name"] == "absl_py")
    assert absl["purl"] == "pkg:pypi/absl-py@2.5.1"
    assert absl["hashes"] == [{"alg": "SHA-256", "content": "f" * 64}]
    assert {"name": "rules_shiko:layer", "value": L2} in absl["properties"]
    libc = next(c for c in doc["components"] if c["name"] == "libc6")
    assert libc["licenses"] == [{"expression": "GPL-2.0-or-later AND LGPL-2.1-or-later"}]
    deps = {d["ref"]: d.get("dependsOn") for d in doc["dependencies"]}
    assert set(deps["image:" + DIGEST]) == set(refs)


def test_deterministic_and_bad_input_writes_nothing(tmp_path, inputs):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    r1, s1, c1 = run_tool(a, inputs)
    r2, s2, c2 = run_tool(b, inputs)
    assert r1.returncode == r2.returncode == 0
    assert s1.read_bytes() == s2.read_bytes() and c1.read_bytes() == c2.read_bytes()
    bad = dict(inputs, layers=inputs["layers"][1:])
    c = tmp_path / "c"
    c.mkdir()
    r3, s3, c3 = run_tool(c, bad)
    assert r3.returncode == 1 and r3.stderr.startswith("ERROR: ") and len(r3.stderr.splitlines()) == 1
    assert not s3.exists() and not c3.exists()


@pytest.mark.parametrize("names,expr", [
    (["GPL-2+"], "GPL-2.0-or-later"),
    (["GPL-2+", "LGPL-2.1+ or MIT"], "GPL-2.0-or-later AND (LGPL-2.1-or-later OR MIT)"),
    (["BSD-variant"], "LicenseRef-Debian-BSD-variant"),
    (["Expat", "Expat"], "MIT"),
    ([], "NOASSERTION"),
])
def test_debian_licences_as_spdx(names, expr):
    assert licenses.expression(names) == expr


def test_purls():
    assert purl.pypi("Foo_Bar.baz", "1.0") == "pkg:pypi/foo-bar-baz@1.0"
    assert purl.deb("x", "1:2.0~rc1", "arm64", "debian-12") == "pkg:deb/debian/x@1%3A2.0~rc1?arch=arm64&distro=debian-12"
    assert purl.debian_distro(["trixie-security"]) == "debian-13"
    assert purl.debian_distro(["sid"]) == "sid"


def test_provenance_predicate_and_statement(inputs, tmp_path):
    from python_tools.shiko.sbom import provenance
    inv_path = inputs["layers"][0]["packages"][0]
    inv = json.load(open(inv_path))
    inv.update(lock="//d:packages.lock.json", lock_sha256="1" * 64)
    open(inv_path, "w").write(json.dumps(inv))
    image = model.load(inputs)
    pred = provenance.predicate(image, {"bazel_version": "4.2.3+ds-9", "bazel_version_source": "dpkg"})
    bd = pred["buildDefinition"]
    assert bd["externalParameters"] == {"target": "//app:image"}
    assert bd["internalParameters"]["bazelVersion"] == "4.2.3+ds-9"
    deps = {d["uri"]: d for d in bd["resolvedDependencies"]}
    assert deps["bazel://d:packages.lock.json"]["digest"] == {"sha256": "1" * 64}
    assert deps["pkg:pypi/absl-py@2.5.1"]["digest"] == {"sha256": "f" * 64}
    assert any(u.startswith("pkg:deb/debian/libc6@") for u in deps)
    assert any(u.startswith("pkg:oci/debian@") for u in deps)
    st = provenance.statement(pred, "reg/app", DIGEST)
    assert st["subject"] == [{"name": "reg/app", "digest": {"sha256": "d" * 64}}]
    assert st["predicateType"] == "https://slsa.dev/provenance/v1"
    # Deterministic: the same inputs, the same bytes.
    again = provenance.predicate(model.load(inputs), {"bazel_version": "4.2.3+ds-9", "bazel_version_source": "dpkg"})
    assert model.dumps(again) == model.dumps(pred)
