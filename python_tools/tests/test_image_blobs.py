"""Blobs of an image that live elsewhere (shiko/registry/image_blobs.py): a shallow pulled base's
layers streamed from their registry (verified as they pass, no copy on disk) or mounted, against
a real docker-registry on 127.0.0.1."""

import hashlib
import io
import json
import os
import tempfile

import pytest

from python_tools.shiko.errors import UserError
from python_tools.shiko.files import canonical_json, open_blob
from python_tools.shiko.oci import media_types, reference
from python_tools.shiko.registry import image_blobs, push, tokens
from python_tools.shiko.registry.client import Client
from python_tools.tests import registry_fixtures as rf


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class BytesOrigin(object):
    """An origin serving fixed bytes (a stand-in for a cache or registry that misbehaves)."""

    name = "the test origin"

    def __init__(self, data):
        self.data = data

    def open(self, blob):
        return (io.BytesIO(self.data), None) if self.data is not None else None


def read_all(blob):
    out = b""
    with open_blob(blob) as f:
        while True:
            b = f.read(1000)
            if not b:
                return out
            out += b


def test_verified_stream_checks_digest_and_size():
    data = os.urandom(5000)
    assert read_all(image_blobs.RemoteBlob(sha(data), len(data), [BytesOrigin(data)], "//t")) == data
    # The first origin lacks it: the next one is used.
    assert read_all(image_blobs.RemoteBlob(sha(data), len(data), [BytesOrigin(None), BytesOrigin(data)], "//t")) == data
    bad = data[:-1] + bytes([data[-1] ^ 1])
    with pytest.raises(UserError, match="the test origin sent 5000 bytes with digest sha256:"):
        read_all(image_blobs.RemoteBlob(sha(data), len(data), [BytesOrigin(bad)], "//t"))
    with pytest.raises(UserError, match="ended after 4999 of 5000 bytes"):
        read_all(image_blobs.RemoteBlob(sha(data), len(data), [BytesOrigin(data[:-1])], "//t"))
    with pytest.raises(UserError, match="sent more than the 4999 bytes"):
        read_all(image_blobs.RemoteBlob(sha(data[:-1]), len(data) - 1, [BytesOrigin(data)], "//t"))
    with pytest.raises(UserError, match="not in the test origin"):
        read_all(image_blobs.RemoteBlob(sha(data), len(data), [BytesOrigin(None)], "//t"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with rf.LocalRegistry(str(tmp_path_factory.mktemp("reg"))) as reg:
        yield reg


@pytest.fixture(scope="module")
def other_registry(tmp_path_factory):
    with rf.LocalRegistry(str(tmp_path_factory.mktemp("reg2"))) as reg:
        yield reg


def upload(client, repo, data, tmp_path):
    p = tmp_path / ("blob-" + sha(data)[7:19])
    p.write_bytes(data)
    client.upload_blob(repo, sha(data), str(p), tokens.push_scopes(repo))


def test_stream_registry_to_registry_without_a_disk_copy(registry, other_registry, tmp_path, monkeypatch):
    data = os.urandom(3 * 1024 * 1024 + 5)
    upload(Client(registry.host, env={}), "src/base", data, tmp_path)
    origin = image_blobs.RegistryOrigin({"image": registry.host + "/src/base"}, str(tmp_path))
    blob = image_blobs.RemoteBlob(sha(data), len(data), [origin], "//t")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    dest = Client(other_registry.host, env={})
    assert dest.upload_blob("dst/app", sha(data), blob, tokens.push_scopes("dst/app"), chunk_size=1 << 20) == len(data)
    assert os.listdir(str(tmp)) == []
    out = str(tmp_path / "back")
    dest.get_blob("dst/app", sha(data), out, [tokens.pull_scope("dst/app")], size=len(data))
    with open(out, "rb") as f:
        assert f.read() == data


def test_corrupt_source_blob_is_not_stored(registry, other_registry, tmp_path):
    data = os.urandom(200000)
    upload(Client(registry.host, env={}), "src/corrupt", data, tmp_path)
    with open(registry.blob_data_path(sha(data)), "r+b") as f:
        f.seek(1000)
        f.write(b"\x00corrupt\x00")
    origin = image_blobs.RegistryOrigin({"image": registry.host + "/src/corrupt"}, str(tmp_path))
    blob = image_blobs.RemoteBlob(sha(data), len(data), [origin], "//t")
    dest = Client(other_registry.host, env={})
    with pytest.raises(UserError) as e:
        dest.upload_blob("dst/corrupt", sha(data), blob, tokens.push_scopes("dst/corrupt"))
    assert "blob %s: registry %s (src/corrupt) sent 200000 bytes with digest sha256:" % (sha(data), registry.host) \
        in str(e.value)
    assert dest.blob_size("dst/corrupt", sha(data), tokens.push_scopes("dst/corrupt")) is None


def pulled_image(tmp_path, host, layers):
    """An image on a shallow pulled base, as image_parts.bzl hands it to push and load."""
    run = tmp_path / "runfiles"
    base = run / "base"
    (base / "blobs" / "sha256").mkdir(parents=True)
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha(l) for l in layers]}})
    ldescs = [{"mediaType": media_types.OCI_LAYER, "digest": sha(l), "size": len(l)} for l in layers]
    manifest = canonical_json({"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST, "layers": ldescs,
                               "config": {"mediaType": media_types.OCI_CONFIG, "digest": sha(config),
                                          "size": len(config)}})
    for data in (config, manifest):
        (base / "blobs" / "sha256" / sha(data)[7:]).write_bytes(data)
    (base / "index.json").write_bytes(canonical_json({"schemaVersion": 2, "manifests": [
        {"mediaType": media_types.OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest)}]}))
    (base / "source.json").write_text(json.dumps({"image": host + "/src/pulled", "insecure": False,
                                                  "ca_file": None, "retries": 2}))
    (run / "manifest.json").write_bytes(manifest)
    (run / "config.json").write_bytes(config)
    (run / "blobs.json").write_text(json.dumps({"self": "blobs.json", "blobs": [], "layouts": ["base"],
                                                "sources": ["base/source.json"]}))
    return image_blobs.ImageParts(str(run / "manifest.json"), str(run / "config.json"), str(run / "blobs.json"),
                                  "//t:push")


def test_push_mounts_a_pulled_layer_on_its_registry_and_streams_it_elsewhere(registry, other_registry, tmp_path):
    layers = [os.urandom(70000), os.urandom(1000)]
    src = Client(registry.host, env={})
    for l in layers:
        upload(src, "src/pulled", l, tmp_path)
    parts = pulled_image(tmp_path, registry.host, layers)
    assert all(isinstance(parts.paths[sha(l)], image_blobs.RemoteBlob) for l in layers)
    assert parts.mount_sources == {registry.host: {sha(l): ["src/pulled"] for l in layers}}
    env = {"SHIKO_BLOB_SOURCES": str(tmp_path / "sources.json")}  # no memory: the plan says where

    plan = image_blobs.read_image_plan(push.Plan(), parts)
    ref = reference.parse(registry.host + "/dst/app", allow_tag=False, allow_digest=False)
    digest, result = push.push(plan, ref, ["v1"], src, env=env)
    assert digest == parts.digest
    assert (result.mounted, result.pushed) == (2, 1)  # the config is ours
    assert result.bytes_sent == len(parts.config_bytes)

    other = Client(other_registry.host, env={})
    ref = reference.parse(other_registry.host + "/dst/app", allow_tag=False, allow_digest=False)
    digest, result = push.push(image_blobs.read_image_plan(push.Plan(), parts), ref, ["v1"], other, env=env)
    assert (result.mounted, result.pushed) == (0, 3)
    assert result.bytes_sent == sum(len(l) for l in layers) + len(parts.config_bytes)
    for l in layers:
        assert other.blob_size("dst/app", sha(l), [tokens.pull_scope("dst/app")]) == len(l)
