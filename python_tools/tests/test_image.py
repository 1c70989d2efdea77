"""Tests of python_tools/image.py: run as a CLI on small layers made here, cross-checked with
umoci and skopeo."""

import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest

from python_tools.shiko.oci.media_types import (
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
)
from python_tools.shiko.oci.media_types import DOCKER_LAYER_GZIP as DOCKER_LAYER
from python_tools.tests import engines
from python_tools.tests.engines import build_image, image_manifest, layout_manifest, make_layer, read_json


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree(path):
    """{relative path: (mode, bytes)} of every file and directory under path."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, path)] = (stat.S_IMODE(st.st_mode), data)
    return out


def assert_error(proc, attr, *fragments):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ERROR: //test:image: attribute '%s': " % attr), lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]


def assert_no_outputs(workdir, name):
    assert not os.path.exists(os.path.join(workdir, name))
    assert not os.path.exists(os.path.join(workdir, name + ".digest"))
    assert not os.path.exists(os.path.join(workdir, name + ".manifest.json"))


# --- Hand-made base layouts (other tools' formats) ---------------------------------------------


class HandLayout(object):
    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion": "1.0.0"}')

    def blob(self, data, media_type):
        if not isinstance(data, bytes):
            data = json.dumps(data, indent=2).encode()
        with open(os.path.join(self.path, "blobs", "sha256", sha(data)[7:]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": sha(data), "size": len(data)}

    def image(self, layer, arch, variant=None, docker=False, env=None):
        """One single-layer image; returns its manifest descriptor (with platform)."""
        layer_desc = self.blob(open(layer["blob"], "rb").read(), DOCKER_LAYER if docker else layer["desc"]["mediaType"])
        config = {
            "architecture": arch,
            "os": "linux",
            "config": {"Env": env or ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [layer["desc"]["diff_id"]]},
            "history": [{"created_by": "hand made %s" % arch}],
        }
        if variant:
            config["variant"] = variant
        if docker:
            config["container_config"] = {"Cmd": ["/bin/sh", "-c", "#(nop)"]}
        config_desc = self.blob(config, DOCKER_CONFIG if docker else OCI_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST, "config": config_desc, "layers": [layer_desc]}
        desc = self.blob(manifest, manifest["mediaType"])
        desc["platform"] = {"architecture": arch, "os": "linux"}
        if variant:
            desc["platform"]["variant"] = variant
        return desc

    def index(self, manifests):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}, f)


@pytest.fixture
def work(tmp_path):
    return str(tmp_path)


@pytest.fixture
def hello_layer(work):
    return make_layer(work, "hello", {"hello.txt": b"hello\n", "app": ("dir",), "app/run": (b"#!/bin/sh\n", 0o755)})


# --- Scratch images ------------------------------------------------------------------------


def test_scratch_layout_structure(work, hello_layer):
    m = image_manifest(layers=[hello_layer], entrypoint=["/app/run"], cmd=["x"], env={"A": "1"}, workdir="/app", user="65532",
                       annotations={"org.opencontainers.image.source": "https://example.com/x"})
    layout, digest, proc = build_image(work, "out", m)
    out_config = os.path.join(work, "out.config.json")
    out_manifest = os.path.join(work, "out.manifest.json")

    assert sorted(os.listdir(layout)) == ["blobs", "index.json", "oci-layout"]
    assert read_json(os.path.join(layout, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = read_json(os.path.join(layout, "index.json"))
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    assert len(index["manifests"]) == 1
    desc = index["manifests"][0]
    assert desc["mediaType"] == OCI_MANIFEST
    assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
    assert desc["digest"] == digest
    assert open(os.path.join(work, "out.digest")).read() == digest + "\n"

    manifest_bytes = open(engines.blob(layout, digest), "rb").read()
    assert sha(manifest_bytes) == digest and len(manifest_bytes) == desc["size"]
    assert open(out_manifest, "rb").read() == manifest_bytes
    manifest = json.loads(manifest_bytes)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    assert manifest["layers"] == [{k: hello_layer["desc"][k] for k in ("mediaType", "digest", "size")}]
    assert manifest["annotations"] == {"org.opencontainers.image.source": "https://example.com/x"}
    # canonical JSON: sorted keys, no spaces
    assert manifest_bytes == json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()

    config_bytes = open(engines.blob(layout, manifest["config"]["digest"]), "rb").read()
    assert sha(config_bytes) == manifest["config"]["digest"]
    assert open(out_config, "rb").read() == config_bytes
    config = json.loads(config_bytes)
    assert config["architecture"] == "amd64" and config["os"] == "linux" and "variant" not in config
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"] == {"Entrypoint": ["/app/run"], "Cmd": ["x"], "Env": ["A=1"], "WorkingDir": "/app", "User": "65532"}
    assert config["rootfs"] == {"type": "layers", "diff_ids": [hello_layer["desc"]["diff_id"]]}
    assert config["history"] == [{"created": "1970-01-01T00:00:00Z", "created_by": "rules_shiko image_layer //test:hello (python gzip level 6)"}]

    # every blob is what its name says, and readable
    for name in os.listdir(os.path.join(layout, "blobs", "sha256")):
        p = os.path.join(layout, "blobs", "sha256", name)
        assert sha(open(p, "rb").read()) == "sha256:" + name
        assert os.stat(p).st_mode & 0o444 == 0o444
    assert len(os.listdir(os.path.join(layout, "blobs", "sha256"))) == 3
    for p in ("oci-layout", "index.json", "blobs/sha256/" + digest[7:], "blobs/sha256/" + manifest["config"]["digest"][7:]):
        assert stat.S_IMODE(os.stat(os.path.join(layout, p)).st_mode) == 0o644, p
    for p in ("", "blobs", "blobs/sha256"):
        assert stat.S_IMODE(os.stat(os.path.join(layout, p)).st_mode) == 0o755, p


def test_read_only_layer_is_hardlinked_writable_one_copied(work):
    ro = make_layer(work, "ro", {"a": b"a"}, read_only=True)
    rw = make_layer(work, "rw", {"b": b"b"}, read_only=False)
    layout, _, _ = build_image(work, "out", image_manifest(layers=[ro, rw]))
    ro_out = engines.blob(layout, ro["desc"]["digest"])
    rw_out = engines.blob(layout, rw["desc"]["digest"])
    assert os.stat(ro_out).st_ino == os.stat(ro["blob"]).st_ino
    assert os.stat(rw_out).st_ino != os.stat(rw["blob"]).st_ino
    assert stat.S_IMODE(os.stat(rw_out).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(rw["blob"]).st_mode) == 0o644  # the input is left alone
    assert stat.S_IMODE(os.stat(ro["blob"]).st_mode) == 0o444


def test_output_is_reproducible_across_umasks_and_directories(work, hello_layer):
    m = image_manifest(layers=[hello_layer], env={"B": "2", "A": "1"}, labels={"z": "1", "a": "2"}, exposed_ports=["80", "53/udp"])
    results = []
    for i, umask in enumerate((0o022, 0o077, 0o002)):
        d = os.path.join(work, "run%d" % i)
        os.makedirs(d)
        layout, digest, proc = build_image(d, "layout", m, cwd=work, umask=umask)
        assert proc.returncode == 0, proc.stderr
        results.append((tree(layout), digest))
    assert results[0] == results[1] == results[2]


def test_existing_output_directory_contents_are_replaced(work, hello_layer):
    layout = os.path.join(work, "out")
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    open(os.path.join(layout, "stale"), "w").write("x")
    open(os.path.join(layout, "blobs", "sha256", "0" * 64), "w").write("x")
    build_image(work, "out", image_manifest(layers=[hello_layer]))
    assert sorted(os.listdir(layout)) == ["blobs", "index.json", "oci-layout"]
    assert "0" * 64 not in os.listdir(os.path.join(layout, "blobs", "sha256"))


# --- Bases and config merging ---------------------------------------------------------------


def _base(work, hello_layer, **config):
    defaults = dict(
        entrypoint=["/bin/base"], cmd=["--base"], env={"PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C"},
        labels={"base": "yes", "shared": "base"}, exposed_ports=["8080/tcp"], volumes=["/base"], user="0",
        workdir="/", stop_signal="SIGINT",
    )
    defaults.update(config)
    layout, digest, _ = build_image(work, "base", image_manifest(target="//test:base", layers=[hello_layer], **defaults))
    return {"layout": layout, "label": "//test:base"}, digest


def test_config_merges_over_base(work, hello_layer):
    base, _ = _base(work, hello_layer)
    child_layer = make_layer(work, "child", {"child.txt": b"child\n"})
    m = image_manifest(
        base=base, layers=[child_layer],
        env={"PATH": "/app/bin:${PATH}", "HOME": "$HOME/x", "ZED": "$$HOME ${NOPE}$NOPE-$", "AAA": "${LANG}"},
        cmd=["--child"], labels={"shared": "child", "new": "1"}, exposed_ports=["80", "53/udp", "8080/tcp"],
        volumes=["/data", "/base"], user="65532", workdir="/app", created="2024-01-02T03:04:05Z",
    )
    layout, _, _ = build_image(work, "out", m)
    _, manifest, config = layout_manifest(layout)
    base_desc, base_manifest, base_config = layout_manifest(base["layout"])
    c = config["config"]
    assert c["Env"] == ["HOME=/root/x", "LANG=C", "PATH=/app/bin:/usr/bin:/bin", "AAA=C", "ZED=$HOME -$"]
    assert base_config["config"]["Env"] == ["HOME=/root", "LANG=C", "PATH=/usr/bin:/bin"]
    assert c["Entrypoint"] == ["/bin/base"] and c["Cmd"] == ["--child"]
    assert c["Labels"] == {"base": "yes", "shared": "child", "new": "1"}
    assert c["ExposedPorts"] == {"8080/tcp": {}, "80/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/base": {}, "/data": {}}
    assert c["User"] == "65532" and c["WorkingDir"] == "/app" and c["StopSignal"] == "SIGINT"
    assert config["rootfs"]["diff_ids"] == [hello_layer["desc"]["diff_id"], child_layer["desc"]["diff_id"]]
    assert config["created"] == "2024-01-02T03:04:05Z"
    assert config["history"] == base_config["history"] + [
        {"created": "2024-01-02T03:04:05Z", "created_by": "rules_shiko image_layer //test:child (python gzip level 6)"}
    ]
    assert [l["digest"] for l in manifest["layers"]] == [hello_layer["desc"]["digest"], child_layer["desc"]["digest"]]
    assert manifest["layers"] == base_manifest["layers"] + [{k: child_layer["desc"][k] for k in ("mediaType", "digest", "size")}]
    assert "annotations" not in manifest


@pytest.mark.parametrize(
    "entrypoint,cmd,want_entrypoint,want_cmd",
    [
        (["/new"], None, ["/new"], None),  # a new entrypoint resets the base's Cmd
        (["/new"], ["a"], ["/new"], ["a"]),
        (None, ["b"], ["/bin/base"], ["b"]),
        (None, None, ["/bin/base"], ["--base"]),
    ],
)
def test_entrypoint_and_cmd_follow_docker(work, hello_layer, entrypoint, cmd, want_entrypoint, want_cmd):
    base, _ = _base(work, hello_layer)
    layout, _, _ = build_image(work, "out", image_manifest(base=base, entrypoint=entrypoint, cmd=cmd))
    c = layout_manifest(layout)[2]["config"]
    assert c.get("Entrypoint") == want_entrypoint
    assert c.get("Cmd") == want_cmd


def test_base_without_new_layers_shares_base_blobs(work, hello_layer):
    base, _ = _base(work, hello_layer)
    layout, digest, _ = build_image(work, "out", image_manifest(base=base, labels={"x": "y"}))
    _, manifest, config = layout_manifest(layout)
    assert len(manifest["layers"]) == 1 and len(config["rootfs"]["diff_ids"]) == 1
    blob = engines.blob(layout, hello_layer["desc"]["digest"])
    assert open(blob, "rb").read() == open(hello_layer["blob"], "rb").read()


def _two_platform_base(work, hello_layer, nested_type=OCI_INDEX):
    hand = HandLayout(os.path.join(work, "multi"))
    arm = make_layer(work, "arm", {"arch": b"arm64\n"})
    amd = hand.image(hello_layer, "amd64")
    arm64 = hand.image(arm, "arm64", variant="v8")
    s390x = hand.image(arm, "s390x")
    nested = hand.blob({"schemaVersion": 2, "mediaType": nested_type, "manifests": [amd, arm64]}, nested_type)
    # Top-level index: a nested index plus one more manifest without a platform field.
    del s390x["platform"]
    hand.index([nested, s390x])
    return hand, {"amd64": amd, "arm64": arm64, "s390x": s390x, "arm_layer": arm}


@pytest.mark.parametrize("nested_type", [OCI_INDEX, DOCKER_LIST])
def test_base_index_selects_platform(work, hello_layer, nested_type):
    hand, descs = _two_platform_base(work, hello_layer, nested_type)
    base = {"layout": hand.path, "label": "//test:multi"}
    for arch, variant, want in (("arm64", "", "arm64"), ("arm64", "v8", "arm64"), ("amd64", "", "amd64"), ("s390x", "", "s390x")):
        out = "out-%s-%s" % (arch, variant)
        layout, _, _ = build_image(work, out, image_manifest(base=base, platform={"os": "linux", "architecture": arch, "variant": variant}))
        desc, manifest, config = layout_manifest(layout)
        want_manifest = read_json(engines.blob(hand.path, descs[want]["digest"]))
        assert manifest["layers"] == want_manifest["layers"]
        assert config["history"][0]["created_by"] == "hand made %s" % want
        assert config["architecture"] == arch
        assert desc["platform"] == dict({"os": "linux", "architecture": arch}, **({"variant": variant} if variant else {}))


def test_base_without_the_platform_lists_available(work, hello_layer):
    hand, _ = _two_platform_base(work, hello_layer)
    m = image_manifest(base={"layout": hand.path, "label": "//test:multi"}, platform={"os": "linux", "architecture": "ppc64le", "variant": ""})
    _, _, proc = build_image(work, "out", m, check=False)
    assert_error(proc, "base", "'//test:multi'", "no image for platform linux/ppc64le", "available: linux/amd64, linux/arm64/v8, linux/s390x")
    assert_no_outputs(work, "out")


def test_docker_schema2_base_keeps_layer_media_types(work, hello_layer):
    hand = HandLayout(os.path.join(work, "dockerbase"))
    desc = hand.image(hello_layer, "amd64", docker=True, env=["PATH=/bin", "X=1"])
    del desc["platform"]
    hand.index([desc])
    child = make_layer(work, "child", {"c": b"c"})
    layout, _, _ = build_image(work, "out", image_manifest(base={"layout": hand.path, "label": "//test:dockerbase"}, layers=[child], env={"X": "$X$X"}))
    _, manifest, config = layout_manifest(layout)
    assert manifest["mediaType"] == OCI_MANIFEST
    assert manifest["config"]["mediaType"] == OCI_CONFIG
    assert [l["mediaType"] for l in manifest["layers"]] == [DOCKER_LAYER, child["desc"]["mediaType"]]
    assert config["config"]["Env"] == ["PATH=/bin", "X=11"]
    assert config["container_config"] == {"Cmd": ["/bin/sh", "-c", "#(nop)"]}  # the base config is kept


def _corrupt(path, same_size=True):
    data = bytearray(open(path, "rb").read())
    os.chmod(path, 0o644)
    if same_size:
        data[len(data) // 2] ^= 0xFF
    else:
        data += b"x"
    with open(path, "wb") as f:
        f.write(bytes(data))
    return sha(bytes(data))


@pytest.mark.parametrize("which", ["layer", "config", "manifest"])
def test_corrupt_base_blob_is_refused_and_nothing_written(work, hello_layer, which):
    base, digest = _base(work, hello_layer)
    _, manifest, _ = layout_manifest(base["layout"])
    target = {"layer": manifest["layers"][0]["digest"], "config": manifest["config"]["digest"], "manifest": digest}[which]
    got = _corrupt(engines.blob(base["layout"], target))
    # The metadata action reads (and verifies) a layout base; it fails before the layout action.
    _, _, proc = build_image(work, "out", image_manifest(base=base), check=False)
    assert_error(proc, "base", "'//test:base'", "blob %s digest mismatch (got %s)" % (target, got))
    assert_no_outputs(work, "out")


def test_base_blob_size_mismatch_and_missing_blob(work, hello_layer):
    base, _ = _base(work, hello_layer)
    _, manifest, _ = layout_manifest(base["layout"])
    layer_path = engines.blob(base["layout"], manifest["layers"][0]["digest"])
    shutil.copy(layer_path, layer_path + ".orig")
    os.unlink(layer_path)
    _, _, proc = build_image(work, "out", image_manifest(base=base), check=False)
    assert_error(proc, "base", "blob %s is missing" % manifest["layers"][0]["digest"])
    assert_no_outputs(work, "out")


def test_base_that_is_not_a_layout(work):
    d = os.path.join(work, "notalayout")
    os.makedirs(d)
    open(os.path.join(d, "index.json"), "w").write("{}")
    _, _, proc = build_image(work, "out", image_manifest(base={"layout": d, "label": "//x:base"}), check=False)
    assert_error(proc, "base", "'//x:base'", "is not an OCI image layout")
    assert_no_outputs(work, "out")


@pytest.mark.parametrize(
    "config,attr,value",
    [
        ({"env": {"A=B": "1"}}, "env", "'A=B'"),
        ({"env": {"": "1"}}, "env", "''"),
        ({"exposed_ports": ["80/sctp"]}, "exposed_ports", "'80/sctp'"),
        ({"exposed_ports": ["0"]}, "exposed_ports", "'0'"),
        ({"exposed_ports": ["65536/tcp"]}, "exposed_ports", "'65536/tcp'"),
        ({"exposed_ports": ["http"]}, "exposed_ports", "'http'"),
        ({"volumes": ["data"]}, "volumes", "'data'"),
        ({"created": "yesterday"}, "created", "'yesterday'"),
    ],
)
def test_invalid_config_values(work, hello_layer, config, attr, value):
    _, _, proc = build_image(work, "out", image_manifest(layers=[hello_layer], **config), check=False)
    assert_error(proc, attr, value)
    assert_no_outputs(work, "out")


def test_missing_layer_blob(work, hello_layer):
    os.chmod(hello_layer["blob"], 0o644)
    with open(hello_layer["blob"], "ab") as f:
        f.write(b"junk")
    _, _, proc = build_image(work, "out", image_manifest(layers=[hello_layer]), check=False)
    assert_error(proc, "layers", "'//test:hello'", "its descriptor says")


# --- Stamping -------------------------------------------------------------------------------


def _stamp_files(work):
    info = os.path.join(work, "stable-status.txt")
    version = os.path.join(work, "volatile-status.txt")
    open(info, "w").write("BUILD_EMBED_LABEL 1.2.3\nSTABLE_GIT_COMMIT abc123\nBUILD_USER\n")
    open(version, "w").write("BUILD_TIMESTAMP 1700000000\nFORMATTED_DATE 2023 Nov 14 22 13 20 Tue\n")
    return {"info_file": info, "version_file": version}


def test_stamped_labels_annotations_and_created(work, hello_layer):
    m = image_manifest(
        layers=[hello_layer], stamp=_stamp_files(work), created="{BUILD_TIMESTAMP}",
        labels={"version": "{BUILD_EMBED_LABEL}", "commit": "{STABLE_GIT_COMMIT}-{BUILD_TIMESTAMP}", "plain": "{lower}", "user": "<{BUILD_USER}>"},
        annotations={"org.opencontainers.image.revision": "{STABLE_GIT_COMMIT}"},
    )
    layout, _, _ = build_image(work, "out", m)
    _, manifest, config = layout_manifest(layout)
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert config["history"][0]["created"] == "2023-11-14T22:13:20Z"
    assert config["config"]["Labels"] == {"version": "1.2.3", "commit": "abc123-1700000000", "plain": "{lower}", "user": "<>"}
    assert manifest["annotations"] == {"org.opencontainers.image.revision": "abc123"}


def test_unstamped_placeholders_are_reproducible(work, hello_layer):
    m = image_manifest(
        layers=[hello_layer], created="{BUILD_TIMESTAMP}",
        labels={"version": "{BUILD_EMBED_LABEL}", "ts": "{BUILD_TIMESTAMP}"},
        annotations={"org.opencontainers.image.version": "v{BUILD_EMBED_LABEL}"},
    )
    layout, digest, _ = build_image(work, "out", m)
    _, manifest, config = layout_manifest(layout)
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["Labels"] == {"version": "unstamped", "ts": "0"}
    assert manifest["annotations"] == {"org.opencontainers.image.version": "vunstamped"}
    _, digest2, _ = build_image(work, "out2", m)
    assert digest == digest2


@pytest.mark.parametrize(
    "where,config",
    [
        ("labels", {"labels": {"v": "{NO_SUCH_KEY}"}}),
        ("annotations", {"annotations": {"a": "x{NO_SUCH_KEY}"}}),
        ("created", {"created": "{NO_SUCH_KEY}"}),
    ],
)
def test_unknown_stamp_key_is_an_error(work, hello_layer, where, config):
    _, _, proc = build_image(work, "out", image_manifest(layers=[hello_layer], stamp=_stamp_files(work), **config), check=False)
    assert_error(proc, where, "unknown stamp key {NO_SUCH_KEY}", "BUILD_TIMESTAMP")
    assert_no_outputs(work, "out")


# --- Real tools -----------------------------------------------------------------------------


def _run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert r.returncode == 0, "%s failed (%d): %s%s" % (argv, r.returncode, r.stdout, r.stderr)
    return r


def test_umoci_unpacks_a_child_of_a_base(work, hello_layer):
    base, _ = _base(work, hello_layer)
    child = make_layer(work, "child", {"app/child.txt": b"child\n", "app": ("dir",)})
    layout, _, _ = build_image(work, "out", image_manifest(base=base, layers=[child], env={"PATH": "/app:$PATH"}, cmd=["--child"]))
    bundle = os.path.join(work, "bundle")
    # Our layout as it is: its index names the tag (by default `latest`), as umoci needs.
    _run(["umoci", "unpack", "--rootless", "--image", layout + ":latest", bundle])
    rootfs = os.path.join(bundle, "rootfs")
    assert open(os.path.join(rootfs, "hello.txt")).read() == "hello\n"
    assert open(os.path.join(rootfs, "app", "child.txt")).read() == "child\n"
    assert os.access(os.path.join(rootfs, "app", "run"), os.X_OK)
    spec = read_json(os.path.join(bundle, "config.json"))
    assert spec["process"]["args"] == ["/bin/base", "--child"]
    assert "PATH=/app:/usr/bin:/bin" in spec["process"]["env"]
    assert spec["process"]["cwd"] == "/"


def test_skopeo_reads_layout_and_its_copy_works_as_base(work, hello_layer):
    layout, digest, _ = build_image(work, "out", image_manifest(layers=[hello_layer], labels={"k": "v"}))
    info = json.loads(_run(["skopeo", "inspect", "oci:" + layout]).stdout)
    assert info["Digest"] == digest
    assert info["Labels"] == {"k": "v"}
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert info["Layers"] == [hello_layer["desc"]["digest"]]
    raw = _run(["skopeo", "inspect", "--raw", "oci:" + layout]).stdout.encode()
    assert sha(raw) == digest

    # A layout written by skopeo (tagged, its own JSON formatting) as a base.
    copied = os.path.join(work, "skopeo-copy")
    _run(["skopeo", "copy", "oci:" + layout, "oci:" + copied + ":v1"])
    child = make_layer(work, "child", {"c": b"c"})
    layout2, digest2, _ = build_image(work, "out2", image_manifest(base={"layout": copied, "label": "//x:copied"}, layers=[child]))
    info2 = json.loads(_run(["skopeo", "inspect", "oci:" + layout2]).stdout)
    assert info2["Layers"] == [hello_layer["desc"]["digest"], child["desc"]["digest"]]
    assert info2["Labels"] == {"k": "v"}


REF_NAME = "org.opencontainers.image.ref.name"


def _layout_step(work, name, image_name, ref_name, platform=None, layers=()):
    """Runs the layout action alone (over IMAGE_NAME's config and manifest) into WORK/NAME."""
    layout = os.path.join(work, name)
    os.makedirs(layout)  # Bazel creates the tree artifact's directory
    spec = {"target": "//test:image", "platform": platform or {"os": "linux", "architecture": "amd64", "variant": ""},
            "base": None, "layers": list(layers), "config": os.path.join(work, image_name + ".config.json"),
            "manifest": os.path.join(work, image_name + ".manifest.json"), "ref_name": ref_name}
    return layout, engines.run_tool("image", spec, work, output_layout=layout)


def test_layout_index_names_the_tag_and_the_digest_stays(work, hello_layer):
    """index.json names the manifest by its tag (ref_name, default `latest`) so umoci and skopeo
    open LAYOUT:TAG; the tag is in index.json only: manifest, config and digest are the same."""
    m = image_manifest(layers=[hello_layer], cmd=["/app/run"])
    default, digest, _ = build_image(work, "out", m)  # no ref_name in the layout spec
    index = read_json(os.path.join(default, "index.json"))
    assert index["manifests"][0]["annotations"] == {REF_NAME: "latest"}
    assert index["manifests"][0]["digest"] == digest

    tagged, proc = _layout_step(work, "tagged", "out", "v1.2_rc-3", layers=m["layers"])
    assert proc.returncode == 0, proc.stderr
    tagged_index = read_json(os.path.join(tagged, "index.json"))
    want = json.loads(json.dumps(index))
    want["manifests"][0]["annotations"] = {REF_NAME: "v1.2_rc-3"}
    assert tagged_index == want
    files, tagged_files = tree(default), tree(tagged)
    del files["index.json"], tagged_files["index.json"]
    assert files == tagged_files  # every blob (manifest and config included) byte for byte
    assert open(os.path.join(work, "out.digest")).read().strip() == digest

    # Independent readers find the image by its tag, with the same digest.
    info = json.loads(_run(["skopeo", "inspect", "oci:%s:v1.2_rc-3" % tagged]).stdout)
    assert info["Digest"] == digest
    bundle = os.path.join(work, "bundle")
    _run(["umoci", "unpack", "--rootless", "--image", tagged + ":v1.2_rc-3", bundle])
    assert open(os.path.join(bundle, "rootfs", "hello.txt")).read() == "hello\n"
    r = subprocess.run(["umoci", "unpack", "--rootless", "--image", tagged + ":latest", os.path.join(work, "b2")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "not found" in r.stderr, r.stderr


@pytest.mark.parametrize("ref_name", ["", "-x", "a b", "x" * 129, "{BUILD_USER}", 7])
def test_bad_ref_name_is_refused_and_nothing_written(work, hello_layer, ref_name):
    m = image_manifest(layers=[hello_layer])
    build_image(work, "out", m)
    layout, proc = _layout_step(work, "tagged", "out", ref_name, layers=m["layers"])
    assert_error(proc, "repo_tags", "the tag for the layout's index.json", "%r" % (ref_name,))
    assert not os.path.exists(layout)


# --- Two actions: metadata (no layer bytes), then the layout on request -------------------


def test_metadata_step_reads_no_layer_bytes(work, hello_layer):
    """The metadata action gives the same digest with every layer blob absent (Build without
    the Bytes: only descriptors reach it), also on an image base given by config + manifest."""
    base, base_digest = _base(work, hello_layer)
    child = make_layer(work, "child", {"child.txt": b"child\n"})
    m = image_manifest(base=base, layers=[child], env={"X": "1"})
    _, want, _ = build_image(work, "full", m)

    # The base as an `image` target gives it: its config and manifest files only.
    as_image = dict(m, base={"config": os.path.join(work, "base.config.json"),
                             "manifest": os.path.join(work, "base.manifest.json"), "label": "//test:base"})
    os.chmod(child["blob"], 0o644)
    os.unlink(child["blob"])
    os.unlink(hello_layer["blob"])
    out = os.path.join(work, "meta.digest")
    proc = engines.run_tool("image", as_image, work, output_digest=out,
                            output_config=os.path.join(work, "meta.config.json"),
                            output_manifest=os.path.join(work, "meta.manifest.json"))
    assert proc.returncode == 0, proc.stderr
    assert open(out).read().strip() == want
    assert open(os.path.join(work, "meta.manifest.json"), "rb").read() == open(os.path.join(work, "full.manifest.json"), "rb").read()
    assert base_digest != want


def test_image_base_config_must_match_its_manifest(work, hello_layer):
    _base(work, hello_layer)
    with open(os.path.join(work, "base.config.json"), "ab") as f:
        f.write(b" ")
    m = image_manifest(base={"config": os.path.join(work, "base.config.json"),
                             "manifest": os.path.join(work, "base.manifest.json"), "label": "//test:base"})
    _, _, proc = build_image(work, "out", m, check=False)
    assert_error(proc, "base", "'//test:base'", "the base image's config does not match its manifest")
    assert_no_outputs(work, "out")


def test_layout_step_checks_blobs_and_leaves_nothing(work, hello_layer):
    m = image_manifest(layers=[hello_layer])
    _, digest, _ = build_image(work, "ok", m)
    # A blob that is not the one the descriptor (and so the manifest) describes.
    os.chmod(hello_layer["blob"], 0o644)
    with open(hello_layer["blob"], "ab") as f:
        f.write(b"x")
    layout = os.path.join(work, "out")
    os.makedirs(layout)  # Bazel creates the tree artifact's directory
    spec = {"target": "//test:image", "platform": m["platform"], "base": None, "layers": m["layers"],
            "config": os.path.join(work, "ok.config.json"), "manifest": os.path.join(work, "ok.manifest.json")}
    proc = engines.run_tool("image", spec, work, output_layout=layout)
    assert_error(proc, "layers", "'//test:hello'", "its descriptor says")
    assert not os.path.exists(layout)


def test_layout_step_refuses_a_manifest_of_other_layers(work, hello_layer):
    other = make_layer(work, "other", {"other.txt": b"other\n"})
    build_image(work, "ok", image_manifest(layers=[hello_layer]))
    spec = {"target": "//test:image", "platform": {"os": "linux", "architecture": "amd64", "variant": ""},
            "base": None, "layers": image_manifest(layers=[other])["layers"],
            "config": os.path.join(work, "ok.config.json"), "manifest": os.path.join(work, "ok.manifest.json")}
    proc = engines.run_tool("image", spec, work, output_layout=os.path.join(work, "out"))
    assert_error(proc, "layers", "does not list the base's and this image's layers")


def test_layout_of_an_image_base_given_by_its_layers(work, hello_layer):
    """An image target's base whose chain was all built here reaches the layout action as its
    layers' files (blob and descriptor, bottom first), not its layout: the same layout, byte for
    byte; a base layer that is not what the manifest lists is refused, naming the base."""
    base, _ = _base(work, hello_layer)
    child = make_layer(work, "child", {"child.txt": b"child\n"})
    m = image_manifest(base=base, layers=[child], env={"X": "1"})
    want, _, _ = build_image(work, "full", m)

    def layout_step(name, base_layers):
        layout = os.path.join(work, name)
        os.makedirs(layout)
        spec = {"target": "//test:image", "platform": m["platform"], "layers": m["layers"],
                "base": {"layers": base_layers, "label": "//test:base"},
                "config": os.path.join(work, "full.config.json"),
                "manifest": os.path.join(work, "full.manifest.json")}
        return layout, engines.run_tool("image", spec, work, output_layout=layout)

    files = [{"blob": hello_layer["blob"], "descriptor": hello_layer["descriptor"]}]
    layout, proc = layout_step("by_layers", files)
    assert proc.returncode == 0, proc.stderr
    assert tree(layout) == tree(want)

    # The child's layer given as the base's: the manifest does not list that.
    wrong = [{"blob": child["blob"], "descriptor": child["descriptor"]}]
    layout, proc = layout_step("wrong", wrong)
    assert_error(proc, "layers", "does not list the base's and this image's layers")
    assert not os.path.exists(layout)

    # A base layer blob that is not the one its descriptor describes.
    os.chmod(hello_layer["blob"], 0o644)
    with open(hello_layer["blob"], "ab") as f:
        f.write(b"x")
    layout, proc = layout_step("bad_blob", files)
    assert_error(proc, "base", "'//test:base'", "its descriptor says")
    assert not os.path.exists(layout)


def test_layout_and_metadata_flags_do_not_mix(work, hello_layer):
    proc = engines.run_tool("image", image_manifest(layers=[hello_layer]), work,
                            output_layout=os.path.join(work, "out"), output_digest=os.path.join(work, "d"))
    assert proc.returncode == 2 and proc.stderr.strip() == (
        "ERROR: image: --output_layout goes alone (the layout of an image already built)"), proc.stderr
