"""Shallow base pulls (#11 item 5): a pulled base's layers are fetched only when their bytes are needed.

The test makes a base of ~100 MB (the static_c hello layer, so it runs, and three 32 MiB layers
of random data), pushes it to a real registry A, and pulls it through a counting proxy
(fault_proxy.py) in a temporary workspace copied from tests/pull_test/ (fresh output base and
repository cache: a fresh CI machine). Then, from that output root:

- building the image on the base downloads the manifest and config only (a few kB);
- `bazel run :push` to another repository of A mounts every base layer (no layer byte
  uploaded or downloaded), with no memory of earlier pulls (a fresh SHIKO_BLOB_SOURCES);
- `bazel run :push` to registry B streams each base layer from A to B, with no file written to
  TMPDIR, and B's blobs verify against their digests;
- `bazel run :load` into a real dockerd streams the layers from A; the image runs;
- a corrupted layer in A fails a push to B with one clear line naming the blob and registry;
- the layout output group downloads every layer (the "before" figure: what the old, eager
  image_pull fetched), once, through ShikoPullBlob actions;
- on a shared remote cache (nginx WebDAV, `--config=ci`), a second CI machine gets the layers
  as cache hits: no layer byte from the registry.
The byte counts are printed for docs/performance.md.
"""

import io
import json
import os
import tarfile
import urllib.error
import urllib.request

import pytest

import services
from fault_proxy import FaultProxy
from test_pull import Workspace, cj, pip_repo, pull_rule, push_layout, sha  # noqa: F401 (pip_repo: a fixture)
from test_push import summary

RANDOM_LAYERS = 3
RANDOM_LAYER_BYTES = 32 << 20
TAR = "application/vnd.oci.image.layer.v1.tar"


def random_layer(i):
    """An uncompressed tar holding /data/random-<i>.bin (32 MiB of random bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data/random-%d.bin" % i)
        info.size = RANDOM_LAYER_BYTES
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(os.urandom(RANDOM_LAYER_BYTES)))
    return buf.getvalue()


def make_big_base(image, dest):
    """An OCI layout of one linux/amd64 image: static_c's layer (so it runs) + random layers."""
    blobs = os.path.join(dest, "blobs", "sha256")
    os.makedirs(blobs)

    def put(data):
        with open(os.path.join(blobs, sha(data)[7:]), "wb") as f:
            f.write(data)
        return {"digest": sha(data), "size": len(data)}

    manifest = image.manifest()
    config = json.loads(image.blob(manifest["config"]["digest"]))
    hello = manifest["layers"][0]
    put(image.blob(hello["digest"]))
    layers = [dict(hello)]
    diff_ids = [config["rootfs"]["diff_ids"][0]]
    for i in range(RANDOM_LAYERS):
        desc = put(random_layer(i))
        layers.append(dict(desc, mediaType=TAR))
        diff_ids.append(desc["digest"])
    config = dict(config, rootfs={"type": "layers", "diff_ids": diff_ids})
    config.pop("history", None)
    config_desc = dict(put(cj(config)), mediaType="application/vnd.oci.image.config.v1+json")
    manifest_bytes = cj({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                         "config": config_desc, "layers": layers})
    mdesc = put(manifest_bytes)
    with open(os.path.join(dest, "index.json"), "wb") as f:
        f.write(cj({"schemaVersion": 2, "manifests": [dict(
            mdesc, mediaType="application/vnd.oci.image.manifest.v1+json",
            platform={"os": "linux", "architecture": "amd64"})]}))
    with open(os.path.join(dest, "oci-layout"), "wb") as f:
        f.write(cj({"imageLayoutVersion": "1.0.0"}))
    return {"manifest": mdesc["digest"], "manifest_size": len(manifest_bytes), "config": config_desc,
            "layers": layers, "layer_bytes": sum(l["size"] for l in layers)}


def registry_blob(host, repo, digest):
    with urllib.request.urlopen("http://%s/v2/%s/blobs/%s" % (host, repo, digest), timeout=120) as resp:
        return resp.read()


@pytest.fixture(scope="module")
def setup(bazel, static_c_image, pip_repo, tmp_path_factory):  # noqa: F811
    d = tmp_path_factory.mktemp("shallow")
    with services.Registry() as reg_a, services.Registry() as reg_b, FaultProxy(int(reg_a.host.split(":")[1])) as a:
        base = make_big_base(static_c_image, str(d / "layout"))
        repo = a.host + "/shallow/base"
        push_layout(bazel, str(d / "layout"), reg_a.host + "/shallow/base", "v1")
        ws = Workspace(bazel, d / "ws", [pull_rule("base", repo, base["manifest"], "linux/amd64")],
                       d / "repository-cache", pip_repo)
        try:
            yield {"ws": ws, "a": a, "reg_a": reg_a, "reg_b": reg_b, "base": base, "dir": d}
        finally:
            ws.shutdown()


def fresh_env(setup, name):
    """No memory of where blobs were seen (a fresh CI machine), and an empty TMPDIR to watch."""
    env = dict(os.environ)
    env["SHIKO_BLOB_SOURCES"] = str(setup["dir"] / (name + "-blob_sources.json"))
    tmp = setup["dir"] / (name + "-tmp")
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    return env, str(tmp)


@pytest.fixture(scope="module")
def metadata_build(setup):
    """Builds //:on_top (default outputs: manifest, config, digest) in the fresh output root."""
    ws, a, base = setup["ws"], setup["a"], setup["base"]
    a.reset_counters()
    ws("build", "//:on_top")
    got = {"download": a.download_bytes, "blob_download": a.blob_download_bytes}
    print("\nshallow pull, metadata build: %d bytes downloaded (%d of blobs); base: %d layer bytes"
          % (got["download"], got["blob_download"], base["layer_bytes"]))
    return got


def test_build_downloads_only_manifest_and_config(setup, metadata_build):
    base = setup["base"]
    assert base["layer_bytes"] > 100_000_000
    # The manifest (by digest) and the config blob; no layer.
    assert metadata_build["blob_download"] == base["config"]["size"], metadata_build
    assert metadata_build["download"] <= base["manifest_size"] + base["config"]["size"] + 4096, metadata_build
    assert metadata_build["download"] < base["layer_bytes"] / 1000
    gets = [p for (m, p, _) in setup["a"].requests if m == "GET" and "/blobs/" in p]
    assert all(l["digest"] not in p for l in base["layers"] for p in gets), gets
    layers_dir = os.path.join(setup["ws"].root, "bazel-bin", "external", "base", "base.layers")
    assert not os.path.exists(layers_dir) or not os.listdir(layers_dir)


def test_push_to_the_same_registry_mounts_the_base(setup, metadata_build):
    ws, a, base = setup["ws"], setup["a"], setup["base"]
    env, tmp = fresh_env(setup, "mount")
    a.reset_counters()
    res = ws("run", "//:push", "--", "--repository=%s/shallow/app" % a.host, "--tag=v1", env=env)
    line = summary(res.stderr)
    print("\nshallow pull, push to the same registry: %s; %d upload bytes, %d blob bytes downloaded"
          % (line, a.upload_bytes, a.blob_download_bytes))
    assert "%d mounted" % len(base["layers"]) in line, line
    assert a.blob_download_bytes == 0
    assert a.upload_bytes < 100_000, a.upload_bytes  # our small layer and the config
    mounts = [p for (m, p, s) in a.requests if m == "POST" and "mount=" in p and s == 201]
    assert len(mounts) == len(base["layers"]), mounts
    assert all("from=shallow%2Fbase" in p for p in mounts), mounts
    assert os.listdir(tmp) == []


def test_push_to_another_registry_streams_and_verifies(setup, metadata_build):
    ws, a, base, reg_b = setup["ws"], setup["a"], setup["base"], setup["reg_b"]
    env, tmp = fresh_env(setup, "stream")
    a.reset_counters()
    res = ws("run", "//:push", "--", "--repository=%s/shallow/app" % reg_b.host, "--tag=v1", env=env)
    line = summary(res.stderr)
    pushed = res.stdout.strip().splitlines()[-1]
    print("\nshallow pull, push to another registry: %s; %d blob bytes streamed from A"
          % (line, a.blob_download_bytes))
    assert a.blob_download_bytes == base["layer_bytes"], (a.blob_download_bytes, base["layer_bytes"])
    assert os.listdir(tmp) == []  # streamed registry to registry: no copy on disk
    manifest = json.loads(urllib.request.urlopen(urllib.request.Request(
        "http://%s/v2/shallow/app/manifests/%s" % (reg_b.host, pushed.split("@")[1]),
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}), timeout=60).read())
    assert [l["digest"] for l in manifest["layers"][:len(base["layers"])]] == [l["digest"] for l in base["layers"]]
    for layer in manifest["layers"] + [manifest["config"]]:
        assert sha(registry_blob(reg_b.host, "shallow/app", layer["digest"])) == layer["digest"]
    layers_dir = os.path.join(ws.root, "bazel-bin", "external", "base", "base.layers")
    assert not os.path.exists(layers_dir) or not os.listdir(layers_dir)


def test_load_streams_from_the_registry_and_runs(setup, metadata_build, dockerd):
    ws, a, base = setup["ws"], setup["a"], setup["base"]
    env, tmp = fresh_env(setup, "load")
    env["DOCKER_HOST"] = dockerd.env["DOCKER_HOST"]
    a.reset_counters()
    res = ws("run", "//:load", env=env)
    assert "Loaded image: shiko-pull-test/on_top:latest" in res.stdout, res.stdout + res.stderr[-2000:]
    assert a.blob_download_bytes == base["layer_bytes"]
    assert os.listdir(tmp) == []
    out = dockerd.docker("run", "--rm", "--network", "none", "shiko-pull-test/on_top:latest").stdout
    assert out == "hello from rules_shiko\n"
    dockerd.docker("rmi", "shiko-pull-test/on_top:latest")


def test_corrupt_source_blob_fails_a_streamed_push(setup, metadata_build):
    ws, base, reg_a, reg_b = setup["ws"], setup["base"], setup["reg_a"], setup["reg_b"]
    layer = base["layers"][2]["digest"]
    data = os.path.join(reg_a.storage, "docker", "registry", "v2", "blobs", "sha256", layer[7:9], layer[7:], "data")
    with open(data, "r+b") as f:
        f.seek(1 << 20)
        original = f.read(32)
        f.seek(1 << 20)
        f.write(b"\x00 corrupted by the test \x00".ljust(32, b"!"))
    try:
        env, _ = fresh_env(setup, "corrupt")
        res = ws("run", "//:push", "--", "--repository=%s/shallow/corrupt" % reg_b.host, env=env, check=False)
        assert res.returncode != 0
        assert "blob %s: registry %s (shallow/base) sent %d bytes with digest sha256:" \
            % (layer, setup["a"].host, base["layers"][2]["size"]) in res.stderr, res.stderr[-3000:]
        req = urllib.request.Request("http://%s/v2/shallow/corrupt/blobs/%s" % (reg_b.host, layer), method="HEAD")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=30)
        assert e.value.code == 404
    finally:
        with open(data, "r+b") as f:
            f.seek(1 << 20)
            f.write(original)


def test_layout_downloads_every_layer_once(setup, metadata_build):
    """The `before` figure: the old image_pull fetched every layer; now only a layout does."""
    ws, a, base = setup["ws"], setup["a"], setup["base"]
    a.reset_counters()
    ws("build", "//:on_top", "--output_groups=+layout")
    print("\nshallow pull, layout build (= the old eager pull): %d bytes downloaded (%d of blobs)"
          % (a.download_bytes, a.blob_download_bytes))
    assert a.blob_download_bytes == base["layer_bytes"]
    with open(os.path.join(ws.root, "bazel-bin", "on_top", "index.json")) as f:
        top = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(ws.root, "bazel-bin", "on_top", "blobs", "sha256", top[7:])) as f:
        layers = [l["digest"] for l in json.load(f)["layers"]]
    assert layers[:len(base["layers"])] == [l["digest"] for l in base["layers"]]
    a.reset_counters()
    ws("build", "//:on_top", "--output_groups=+layout,+tarball")
    assert a.blob_download_bytes == 0  # Bazel keeps the downloaded layers as action outputs


def test_pulled_layers_are_remote_cache_hits_on_another_machine(setup, metadata_build, bazel, pip_repo):  # noqa: F811
    """ShikoPullBlob outputs are content-addressed: a second CI machine (fresh output base and
    repository cache, `--config=ci`) gets them from the remote cache, never from the registry."""
    a, base, d = setup["a"], setup["base"], setup["dir"]
    pulls = [pull_rule("base", a.host + "/shallow/base", base["manifest"], "linux/amd64")]
    with services.RemoteCache() as cache:
        flags = ["--config=ci", "--remote_cache=" + cache.url]
        one = Workspace(bazel, d / "ci-one", pulls, d / "ci-one-rc", pip_repo)
        two = Workspace(bazel, d / "ci-two", pulls, d / "ci-two-rc", pip_repo)
        try:
            a.reset_counters()
            one("build", *flags, "//:on_top", "--output_groups=+layout")
            first = a.blob_download_bytes
            assert first == base["layer_bytes"] + base["config"]["size"]
            a.reset_counters()
            since = cache.log_offset()
            two("build", *flags, "//:on_top")
            meta = (a.blob_download_bytes, cache.get_bytes(since))
            assert a.blob_download_bytes == base["config"]["size"]
            a.reset_counters()
            two("build", *flags, "//:on_top", "--output_groups=+layout,+tarball")
            print("\nshallow pull, CI machines on a remote cache: first machine %d registry blob bytes; second "
                  "machine: metadata build %d registry blob bytes, %d cache bytes; layout+tarball build %d "
                  "registry blob bytes" % (first, meta[0], meta[1], a.blob_download_bytes))
            assert a.blob_download_bytes == 0  # the layers were remote cache hits
            assert meta[1] < 100_000
        finally:
            one.shutdown()
            two.shutdown()
