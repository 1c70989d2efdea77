"""SBOMs from the build graph (`sbom` output group), cross-checked with syft on every example.

For each example image: every Debian and Python package syft finds in the image (its own
scan of the OCI layout) is in our SPDX and CycloneDX files with the same version; ours also
lists what syft cannot see (the .deb and wheel sha256s, the Bazel labels of first-party files,
which layer holds what); syft itself parses both files and recognises the packages by purl.
"""

import json
import os

import pytest

from conftest import REPO_ROOT, BuiltImage, run
from conftest import syft as find_syft

IMAGES = [
    ("examples/static_c", "image"),
    ("examples/distroless", "python3"),
    ("examples/distroless", "python3_arm64"),
    ("examples/python_app", "image"),
]


@pytest.fixture(scope="module")
def built(bazel):
    bazel("build", *["//%s:%s" % i for i in IMAGES], "--output_groups=+sbom,+layout,+tarball")
    bazel_bin = bazel.info("bazel-bin")
    out = {}
    for pkg, name in IMAGES:
        image = BuiltImage(bazel_bin, pkg, name)
        with open(os.path.join(bazel_bin, pkg, name + ".spdx.json")) as f:
            spdx = json.load(f)
        with open(os.path.join(bazel_bin, pkg, name + ".cdx.json")) as f:
            cdx = json.load(f)
        out["%s:%s" % (pkg, name)] = (image, spdx, cdx)
    return out


def _syft_scan(syft, env, source):
    res = run([syft, "scan", source, "-o", "json", "-q"], env=env, timeout=600)
    return json.loads(res.stdout)["artifacts"]


def _norm(name):
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.mark.parametrize("key", ["%s:%s" % i for i in IMAGES])
def test_every_package_syft_finds_is_in_our_sbom(built, key, tmp_path):
    image, spdx, cdx = built[key]
    syft, env = find_syft(tmp_path)
    found = {(a["type"], _norm(a["name"]), a["version"])
             for a in _syft_scan(syft, env, "oci-dir:" + image.layout)
             if a["type"] in ("deb", "python")}
    ours_spdx = {(_norm(p["name"]), p.get("versionInfo")) for p in spdx["packages"]}
    ours_cdx = {(_norm(c["name"]), c.get("version")) for c in cdx["components"]}
    for kind, name, version in sorted(found):
        assert (name, version) in ours_spdx, "%s: syft finds %s %s %s; our SPDX lacks it" % (
            key, kind, name, version)
        assert (name, version) in ours_cdx, "%s: syft finds %s %s %s; our CycloneDX lacks it" % (
            key, kind, name, version)
    if "static_c" not in key:
        assert len(found) >= 30, "%s: syft found only %s" % (key, found)
    # The image is described by its digest; both formats agree on the components.
    assert spdx["packages"][0]["versionInfo"] == image.digest
    assert cdx["metadata"]["component"]["version"] == image.digest
    assert len(cdx["components"]) == len(spdx["packages"]) - 1 - len(image.manifest()["layers"])


def test_ours_lists_what_syft_cannot_see(built):
    _, spdx, cdx = built["examples/python_app:image"]
    by = {c["name"]: c for c in cdx["components"]}
    # Wheels with the sha256 the lock pinned, and their purls.
    with open(os.path.join(REPO_ROOT, "examples", "python_app", "requirements_lock.txt")) as f:
        lock = f.read()
    for name in ("protobuf", "absl-py"):
        c = by[name]
        assert c["purl"].startswith("pkg:pypi/%s@" % name)
        assert c["hashes"][0]["content"] in lock, "%s: sha256 not from the lock" % name
    # First-party files by Bazel label, in the app layer (the image's last).
    app_layer = [p for p in cdx["metadata"]["component"]["properties"]
                 if p["name"] == "rules_shiko:layer"][-1]["value"]
    server = by["//examples/python_app:server.py"]
    assert {"name": "rules_shiko:layer", "value": app_layer} in server["properties"]
    # Debian packages with the .deb sha256 and DEP-5 licences.
    libc = next(p for p in spdx["packages"] if p["name"] == "libc6")
    assert libc["checksums"][0]["algorithm"] == "SHA256"
    certs = next(p for p in spdx["packages"] if p["name"] == "ca-certificates")
    assert certs["licenseDeclared"] == "GPL-2.0-or-later AND MPL-2.0"  # its DEP-5 copyright
    assert libc["externalRefs"][0]["referenceLocator"].startswith(
        "pkg:deb/debian/libc6@") and "distro=debian-12" in libc["externalRefs"][0]["referenceLocator"]


@pytest.mark.parametrize("fmt", ["spdx", "cdx"])
def test_syft_reads_our_sbom(built, fmt, tmp_path):
    """An independent parser: syft converts our file and recognises every package by purl."""
    image, spdx, cdx = built["examples/python_app:image"]
    syft, env = find_syft(tmp_path)
    path = os.path.join(os.path.dirname(image.layout), "image.%s.json" % fmt)
    res = run([syft, "convert", path, "-o", "syft-json", "-q"], env=env, timeout=300)
    types = [a["type"] for a in json.loads(res.stdout)["artifacts"]]
    with open(os.path.join(REPO_ROOT, "examples", "distroless", "packages.lock.json")) as f:
        debs = len(json.load(f)["architectures"]["amd64"]["packages"])
    assert types.count("deb") == debs and types.count("python") == 2, types


def test_index_sbom_holds_each_platform(bazel, tmp_path):
    """The `sbom` group of //examples/python_app:index: one document describing the index, which
    contains both platform images, each with its own Debian packages (by architecture) and
    wheels (the aarch64 and x86_64 files, by their lock sha256); syft parses it."""
    bazel("build", "//examples/python_app:index", "--output_groups=+sbom")
    out = os.path.join(bazel.info("bazel-bin"), "examples/python_app")
    with open(os.path.join(out, "index.spdx.json")) as f:
        spdx = json.load(f)
    with open(os.path.join(out, "index.digest")) as f:
        digest = f.read().strip()
    with open(os.path.join(out, "index.index.json")) as f:
        children = [m["digest"] for m in json.load(f)["manifests"]]
    ids = [p["SPDXID"] for p in spdx["packages"]]
    assert len(ids) == len(set(ids))
    assert spdx["packages"][0]["versionInfo"] == digest
    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in spdx["relationships"]}
    images = [p for p in spdx["packages"] if p["SPDXID"].startswith("SPDXRef-Image-")]
    assert [p["versionInfo"] for p in images] == children
    for p in images:
        assert ("SPDXRef-Index", "CONTAINS", p["SPDXID"]) in rels
    purls = [r["referenceLocator"] for p in spdx["packages"] for r in p.get("externalRefs", [])]
    for arch in ("amd64", "arm64"):
        assert any(u.startswith("pkg:deb/debian/libc6@") and "arch=%s" % arch in u for u in purls), arch
    protobuf = [p for p in spdx["packages"] if p["name"] == "protobuf"]
    assert len(protobuf) == 2 and len({p["checksums"][0]["checksumValue"] for p in protobuf}) == 2
    syft, env = find_syft(tmp_path)
    # syft reads both; from the SPDX file it takes both platforms' packages (72 debs); from
    # the CycloneDX file (children as nested components) syft 1.18 takes one child's.
    for name, debs in (("index.spdx.json", 60), ("index.cdx.json", 30)):
        res = run([syft, "convert", os.path.join(out, name), "-o", "syft-json", "-q"], env=env, timeout=300)
        types = [a["type"] for a in json.loads(res.stdout)["artifacts"]]
        assert types.count("python") >= 2 and types.count("deb") >= debs, (name, types.count("deb"))
