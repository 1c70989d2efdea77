"""Attestations as OCI 1.1 referrers, and `image_verify`, against the real docker-registry.

`bazel run //examples/python_app:push -- --sign-key=KEY` attaches the image's SPDX SBOM and its
SLSA v1 provenance (an in-toto statement in a DSSE envelope signed with the key). docker-registry
2.8 has no referrers API, so both land in the spec's fallback tag `sha256-<hex>` (an index of the
referrers). Checked independently of our code: the artifacts' `subject`, the SBOM's bytes (the
build's own file), the DSSE signature by `openssl dgst -verify` over the PAE, the statement's
subject and lock digests. A referrer of another tool in the fallback index is kept by a re-push,
and nothing is duplicated. `bazel run //examples/python_app:verify -- REF --key=PUB` passes on
it, and fails (exit 1, one line per miss) with another key, on an unsigned push, and when the
provenance is removed from the referrers.
"""

import base64
import hashlib
import json
import os
import subprocess
import urllib.request

import pytest

from conftest import REPO_ROOT, run, tool

PUSH = "//examples/python_app:push"
VERIFY = "//examples/python_app:verify"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("attest-keys")
    out = {}
    for name in ("signer", "other"):
        key = str(d / (name + ".pem"))
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key])
        run(["openssl", "ec", "-in", key, "-pubout", "-out", key + ".pub"])
        out[name] = (key, key + ".pub")
    return out


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ)
    e["DOCKER_CONFIG"] = str(tmp_path / "docker-config-empty")
    e["SHIKO_BLOB_SOURCES"] = str(tmp_path / "blob_sources.json")
    e["REGISTRY_AUTH_FILE"] = str(tmp_path / "no-auth.json")
    return e


def _get(registry, path, accept=None):
    req = urllib.request.Request("http://%s%s" % (registry.host, path),
                                 headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.read()


def _put(registry, path, data, media_type):
    req = urllib.request.Request("http://%s%s" % (registry.host, path), data=data, method="PUT",
                                 headers={"Content-Type": media_type})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status


def _manifest(registry, repo, ref, accept=OCI_MANIFEST):
    return json.loads(_get(registry, "/v2/%s/manifests/%s" % (repo, ref), accept))


def _blob(registry, repo, digest):
    data = _get(registry, "/v2/%s/blobs/%s" % (repo, digest))
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def _fallback(registry, repo, digest):
    return _manifest(registry, repo, "sha256-" + digest.split(":", 1)[1], OCI_INDEX)


def _openssl_verifies(pub, data, sig, tmp_path):
    (tmp_path / "data").write_bytes(data)
    (tmp_path / "sig").write_bytes(sig)
    res = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub, "-signature",
                          str(tmp_path / "sig"), str(tmp_path / "data")], capture_output=True, text=True)
    return res.returncode == 0 and "Verified OK" in res.stdout


@pytest.fixture(scope="module")
def built(bazel):
    bazel("build", "//examples/python_app:image", "--output_groups=+sbom,+provenance")
    out = os.path.join(bazel.info("bazel-bin"), "examples/python_app")
    with open(os.path.join(out, "image.digest")) as f:
        digest = f.read().strip()
    with open(os.path.join(out, "image.spdx.json"), "rb") as f:
        spdx = f.read()
    return digest, spdx


def test_push_attaches_sbom_and_signed_provenance(bazel, registry, keys, env, built, tmp_path):
    digest, spdx = built
    key, pub = keys["signer"]
    repo = "e2e/attest"
    res = bazel("run", PUSH, "--", "--repository", "%s/%s" % (registry.host, repo), "--sign-key", key, env=env)
    assert "SBOM attached (SPDX, tag sha256-" in res.stderr, res.stderr
    assert "SLSA provenance attached (DSSE" in res.stderr, res.stderr
    index = _fallback(registry, repo, digest)
    types = sorted(m["artifactType"] for m in index["manifests"])
    assert types == ["application/spdx+json", "application/vnd.in-toto+json"], index
    by_type = {m["artifactType"]: m for m in index["manifests"]}
    for m in index["manifests"]:
        art = _manifest(registry, repo, m["digest"])
        assert art["subject"]["digest"] == digest and art["artifactType"] == m["artifactType"]
        assert art["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    # The SBOM is the build's file, byte for byte.
    sbom_art = _manifest(registry, repo, by_type["application/spdx+json"]["digest"])
    assert _blob(registry, repo, sbom_art["layers"][0]["digest"]) == spdx
    # The provenance: DSSE over PAE, checked by openssl; statement about this digest.
    prov_art = _manifest(registry, repo, by_type["application/vnd.in-toto+json"]["digest"])
    assert prov_art["layers"][0]["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert by_type["application/vnd.in-toto+json"]["annotations"]["in-toto.io/predicate-type"] == \
        "https://slsa.dev/provenance/v1"
    env_doc = json.loads(_blob(registry, repo, prov_art["layers"][0]["digest"]))
    body = base64.b64decode(env_doc["payload"])
    ptype = env_doc["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(body), body)
    sig = base64.b64decode(env_doc["signatures"][0]["sig"])
    assert _openssl_verifies(pub, pae, sig, tmp_path)
    assert not _openssl_verifies(keys["other"][1], pae, sig, tmp_path)
    statement = json.loads(body)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": "%s/%s" % (registry.host, repo),
                                     "digest": {"sha256": digest.split(":", 1)[1]}}]
    deps = {d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]}
    for lock in ("examples/python_app/requirements_lock.txt", "examples/distroless/packages.lock.json"):
        with open(os.path.join(REPO_ROOT, lock), "rb") as f:
            want = hashlib.sha256(f.read()).hexdigest()
        label = "//" + lock.rsplit("/", 1)[0] + ":" + lock.rsplit("/", 1)[1]
        assert deps[label]["digest"]["sha256"] == want, deps.get(label)
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["bazelVersion"]
    assert statement["predicate"]["buildDefinition"]["externalParameters"] == {
        "target": "//examples/python_app:image"}


def test_repush_keeps_other_referrers_and_adds_nothing(bazel, registry, keys, env, built):
    digest, _ = built
    key, _ = keys["signer"]
    repo = "e2e/attest-keep"
    name = "%s/%s" % (registry.host, repo)
    bazel("run", PUSH, "--", "--repository", name, "--sign-key", key, env=env)
    # Another tool's referrer, added to the fallback index by hand.
    tag = "sha256-" + digest.split(":", 1)[1]
    index = _fallback(registry, repo, digest)
    subject = {"mediaType": OCI_MANIFEST, "digest": digest,
               "size": len(_get(registry, "/v2/%s/manifests/%s" % (repo, digest), OCI_MANIFEST))}
    foreign = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.other",
                          "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                     "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                                     "size": 2},
                          "layers": [{"mediaType": "application/vnd.oci.empty.v1+json",
                                      "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                                      "size": 2}],
                          "subject": subject}).encode()
    fdigest = "sha256:" + hashlib.sha256(foreign).hexdigest()
    _put(registry, "/v2/%s/manifests/%s" % (repo, fdigest), foreign, OCI_MANIFEST)
    index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": fdigest, "size": len(foreign),
                               "artifactType": "application/x.other"})
    _put(registry, "/v2/%s/manifests/%s" % (repo, tag), json.dumps(index).encode(), OCI_INDEX)
    bazel("run", PUSH, "--", "--repository", name, "--sign-key", key, env=env)
    after = _fallback(registry, repo, digest)
    digests = [m["digest"] for m in after["manifests"]]
    assert len(digests) == 3 and len(set(digests)) == 3 and fdigest in digests, after


def test_no_attach_attaches_nothing(bazel, registry, keys, env, built):
    digest, _ = built
    repo = "e2e/attest-none"
    res = bazel("run", PUSH, "--", "--repository", "%s/%s" % (registry.host, repo), "--no-attach", env=env)
    assert "attached" not in res.stderr
    with pytest.raises(urllib.error.HTTPError) as e:
        _fallback(registry, repo, digest)
    assert e.value.code == 404


def test_verify_passes_and_fails_as_a_deploy_gate(bazel, registry, keys, env, built):
    digest, _ = built
    key, pub = keys["signer"]
    name = "%s/e2e/attest-verify" % registry.host
    bazel("run", PUSH, "--", "--repository", name, "--sign-key", key, env=env)
    ok = bazel("run", VERIFY, "--", name + ":latest", "--key=" + pub, env=env, check=False)
    assert ok.returncode == 0, ok.stderr
    for what in ("signature verified", "SBOM verified", "provenance verified"):
        assert "OK %s@%s: %s" % (name, digest, what) in ok.stderr, ok.stderr
    # Another key: the signature and the provenance fail.
    bad = bazel("run", VERIFY, "--", name + ":latest", "--key=" + keys["other"][1], env=env, check=False)
    assert bad.returncode != 0
    assert "no signature verifies with the key" in bad.stderr
    assert "the provenance's envelope: no signature of the envelope verifies" in bad.stderr
    # Pushed without a key: not signed, no provenance (the SBOM is there).
    plain = "%s/e2e/attest-unsigned" % registry.host
    bazel("run", PUSH, "--", "--repository", plain, env=env)
    res = bazel("run", VERIFY, "--", plain + ":latest", "--key=" + pub, env=env, check=False)
    assert res.returncode != 0
    assert "not signed" in res.stderr and "no provenance attached" in res.stderr
    assert "OK %s@%s: SBOM verified" % (plain, digest) in res.stderr
    # The provenance dropped from the referrers: caught.
    repo = name.split("/", 1)[1]
    index = _fallback(registry, repo, digest)
    index["manifests"] = [m for m in index["manifests"] if m["artifactType"] != "application/vnd.in-toto+json"]
    _put(registry, "/v2/%s/manifests/sha256-%s" % (repo, digest.split(":", 1)[1]),
         json.dumps(index).encode(), OCI_INDEX)
    res = bazel("run", VERIFY, "--", name + ":latest", "--key=" + pub, env=env, check=False)
    assert res.returncode != 0 and "no provenance attached" in res.stderr, res.stderr
    # A tag that is not this build's image.
    other = "%s/e2e/attest-other" % registry.host
    bazel("run", "//examples/static_c:push", "--", "--repository", other, "--sign-key", key, env=env)
    res = bazel("run", VERIFY, "--", other + ":latest", "--key=" + pub, env=env, check=False)
    assert res.returncode != 0 and "but this build's image is %s" % digest in res.stderr, res.stderr
