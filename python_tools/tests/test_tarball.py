"""Tests of python_tools/tarball.py: the tar's exact shape, tag checks, skopeo reading it, and
real `docker load` (dockerd 20.10) and `podman load` (4.3) runs of a busybox image.

The engine tests start their engines privately and fail (never skip) when one cannot start."""

import hashlib
import json
import os
import subprocess
import sys
import tarfile

import pytest

from python_tools.shiko.oci import docker_archive, media_types
from python_tools.tests import engines
from python_tools.tests.engines import build_image, build_tarball, image_manifest, layout_manifest, make_layer, read_json


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def work(tmp_path):
    return str(tmp_path)


@pytest.fixture
def small_image(work):
    layer = make_layer(work, "hello", {"hello.txt": b"hello\n"})
    layer2 = make_layer(work, "second", {"second.txt": b"2\n"})
    layout, digest, _ = build_image(work, "layout", image_manifest(layers=[layer, layer2], cmd=["x"]))
    return layout, digest, [layer, layer2]


def members(path):
    with tarfile.open(path) as t:
        return [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]


def assert_error(proc, attr, *fragments):
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ERROR: //test:tarball: attribute '%s': " % attr), lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]


# --- Shape of the tar -----------------------------------------------------------------------


def test_tar_holds_layout_and_docker_manifest(work, small_image):
    layout, digest, layers = small_image
    out, _ = build_tarball(work, layout, ["rules_shiko/static_c:latest", "rules_shiko/static_c:v1", "localhost:5000/team/app"])
    ms = members(out)
    names = [m.name for m, _ in ms]
    desc, manifest, config = layout_manifest(layout)
    blob_names = sorted("blobs/sha256/" + d[7:] for d in [digest, manifest["config"]["digest"]] + [l["desc"]["digest"] for l in layers])
    assert names == ["blobs", "blobs/sha256"] + blob_names + ["index.json", "manifest.json", "oci-layout"]
    assert names == sorted(names)
    for m, data in ms:
        assert m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" and m.gname == "", m.name
        assert m.pax_headers == {}, m.name
        if m.isdir():
            assert m.mode == 0o755, m.name
        else:
            assert m.isfile() and m.mode == 0o644, m.name
            if m.name.startswith("blobs/"):
                assert sha(data) == "sha256:" + m.name.rsplit("/", 1)[1]
                assert data == open(os.path.join(layout, m.name), "rb").read()
    files = {m.name: data for m, data in ms}
    assert json.loads(files["manifest.json"]) == [
        {
            "Config": "blobs/sha256/" + manifest["config"]["digest"][7:],
            "RepoTags": ["docker.io/rules_shiko/static_c:latest", "docker.io/rules_shiko/static_c:v1", "localhost:5000/team/app:latest"],
            "Layers": ["blobs/sha256/" + l["desc"]["digest"][7:] for l in layers],
        }
    ]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    assert index["schemaVersion"] == 2 and index["mediaType"] == media_types.OCI_INDEX
    base = {k: desc[k] for k in ("mediaType", "digest", "size", "platform")}
    assert index["manifests"] == [
        dict(base, annotations={"io.containerd.image.name": "docker.io/rules_shiko/static_c:latest", "org.opencontainers.image.ref.name": "latest"}),
        dict(base, annotations={"io.containerd.image.name": "docker.io/rules_shiko/static_c:v1", "org.opencontainers.image.ref.name": "v1"}),
        dict(base, annotations={"io.containerd.image.name": "localhost:5000/team/app:latest", "org.opencontainers.image.ref.name": "latest"}),
    ]


def test_tar_is_reproducible_and_tagless_lists_manifest_once(work, small_image):
    layout, digest, _ = small_image
    a, _ = build_tarball(work, layout, ["a/b:1", "a/b:1"], name="a.tar")  # duplicates are dropped
    b, _ = build_tarball(work, layout, ["a/b:1"], name="b.tar")
    assert open(a, "rb").read() == open(b, "rb").read()
    assert oct(os.stat(a).st_mode & 0o777) == oct(0o644)
    c, _ = build_tarball(work, layout, [], name="c.tar")
    files = {m.name: data for m, data in members(c)}
    index = json.loads(files["index.json"])
    assert [d["digest"] for d in index["manifests"]] == [digest] and "annotations" not in index["manifests"][0]
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == []


@pytest.mark.parametrize(
    "ref,familiar,full,tag",
    [
        ("busybox", "busybox:latest", "docker.io/library/busybox:latest", "latest"),
        ("rules_shiko/static_c:latest", "rules_shiko/static_c:latest", "docker.io/rules_shiko/static_c:latest", "latest"),
        ("team/a.b-c__d---e:V1.0-rc_2", "team/a.b-c__d---e:V1.0-rc_2", "docker.io/team/a.b-c__d---e:V1.0-rc_2", "V1.0-rc_2"),
        ("localhost/x:1", "localhost/x:1", "localhost/x:1", "1"),
        ("localhost:5000/team/app", "localhost:5000/team/app:latest", "localhost:5000/team/app:latest", "latest"),
        ("Registry.Example.com/team/app:1", "Registry.Example.com/team/app:1", "Registry.Example.com/team/app:1", "1"),
        ("ghcr.io/o/r/s:" + "t" * 128, "ghcr.io/o/r/s:" + "t" * 128, "ghcr.io/o/r/s:" + "t" * 128, "t" * 128),
    ],
)
def test_reference_parsing(ref, familiar, full, tag):
    r = docker_archive.parse_reference(ref, "//t")
    assert (r.familiar, r.full, r.tag) == (familiar, full, tag)


@pytest.mark.parametrize(
    "ref,problem",
    [
        ("Rules_Shiko/app:1", "lowercase"),
        ("app:-bad", "tag '-bad'"),
        ("app:" + "t" * 129, "tag"),
        ("app:", "tag ''"),
        ("app@sha256:" + "0" * 64, "digests"),
        ("a//b", "component ''"),
        ("a/b_:1", "component 'b_'"),
        ("", "non-empty"),
        ("bad_host.com:99x/app", "registry host"),
        ("a.b-c__d/e", "registry host 'a.b-c__d'"),
        ("a/b___c", "component 'b___c'"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_bad_repo_tags_are_refused(work, small_image, ref, problem):
    layout = small_image[0]
    out, proc = build_tarball(work, layout, ["ok:1", ref], check=False)
    assert_error(proc, "repo_tags", repr(ref), problem)
    assert not os.path.exists(out)


def test_stamped_repo_tags(work, small_image):
    layout = small_image[0]
    info = os.path.join(work, "stable-status.txt")
    version = os.path.join(work, "volatile-status.txt")
    open(info, "w").write("STABLE_VERSION 1.2.3\nSTABLE_REPO team/app\n")
    open(version, "w").write("BUILD_TIMESTAMP 1700000000\n")
    stamp = {"info_file": info, "version_file": version}
    out, _ = build_tarball(work, layout, ["{STABLE_REPO}:{STABLE_VERSION}", "x:ts-{BUILD_TIMESTAMP}"], stamp=stamp)
    files = {m.name: data for m, data in members(out)}
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == ["docker.io/team/app:1.2.3", "docker.io/library/x:ts-1700000000"]

    out, _ = build_tarball(work, layout, ["x:{STABLE_VERSION}", "x:ts-{BUILD_TIMESTAMP}"], name="unstamped.tar")
    files = {m.name: data for m, data in members(out)}
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == ["docker.io/library/x:unstamped", "docker.io/library/x:ts-0"]

    out, proc = build_tarball(work, layout, ["x:{NOPE}"], stamp=stamp, name="bad.tar", check=False)
    assert_error(proc, "repo_tags", "'x:{NOPE}'", "unknown stamp key {NOPE}")
    assert not os.path.exists(out)


def test_corrupt_blob_is_refused(work, small_image):
    layout, _, layers = small_image
    p = engines.blob(layout, layers[1]["desc"]["digest"])
    data = bytearray(open(p, "rb").read())
    data[-5] ^= 0xFF
    os.unlink(p)  # it may be a hard link to the layer input
    open(p, "wb").write(bytes(data))
    out, proc = build_tarball(work, layout, ["x:1"], check=False)
    assert_error(proc, "image", "blob %s digest mismatch (got %s)" % (layers[1]["desc"]["digest"], sha(bytes(data))))
    assert not os.path.exists(out)


def test_layout_with_two_images_is_refused(work, small_image):
    layout = small_image[0]
    index = read_json(os.path.join(layout, "index.json"))
    other = dict(index["manifests"][0], digest="sha256:" + "1" * 64)
    index["manifests"].append(other)
    os.chmod(os.path.join(layout, "index.json"), 0o644)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    out, proc = build_tarball(work, layout, ["x:1"], check=False)
    assert_error(proc, "image", "exactly one image manifest, has 2")


def test_large_blob_is_streamed(work):
    """A 256 MiB layer goes through without the tool's memory growing to its size."""
    big = os.path.join(work, "big.tgz")
    h = hashlib.sha256()
    chunk = (b"0123456789abcdef" * 65536)  # 1 MiB
    with open(big, "wb") as f:
        for _ in range(256):
            f.write(chunk)
            h.update(chunk)
    os.chmod(big, 0o444)
    desc = {"mediaType": media_types.OCI_LAYER_GZIP, "digest": "sha256:" + h.hexdigest(), "size": 256 << 20,
            "diff_id": "sha256:" + "2" * 64, "compressor": "none"}
    engines.write_json(os.path.join(work, "big.json"), desc)
    layer = {"blob": big, "descriptor": os.path.join(work, "big.json"), "label": "//test:big"}
    layout, _, _ = build_image(work, "layout", image_manifest(layers=[layer]))
    manifest_path = engines.write_json(os.path.join(work, "tar.json"), {"target": "//test:tarball", "layout": layout, "repo_tags": ["big:1"], "stamp": None})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([engines.REPO_ROOT] + [p for p in sys.path if p]))
    # The tool's own peak (VmHWM of its memory map, which starts at exec): getrusage's maxrss
    # of a child counts the forking parent's memory too (a whole pytest session's).
    hwm = os.path.join(work, "hwm.txt")
    run = ("import runpy, sys\n"
           "sys.argv = ['tarball', %r, %r]\n"
           "try:\n"
           "    runpy.run_module('python_tools.tarball', run_name='__main__')\n"
           "finally:\n"
           "    open(%r, 'w').write([l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0])\n"
           % ("--manifest=" + manifest_path, "--output=" + os.path.join(work, "big.tar"), hwm))
    p = subprocess.run([sys.executable, "-c", run], cwd=work, env=env)
    assert p.returncode == 0
    with open(hwm) as f:
        peak_kib = int(f.read().split()[1])
    assert peak_kib < 100 * 1024, "peak RSS %d KiB" % peak_kib
    with tarfile.open(os.path.join(work, "big.tar")) as t:
        m = t.getmember("blobs/sha256/" + h.hexdigest())
        assert m.size == 256 << 20


# --- Real readers and engines ---------------------------------------------------------------


def _run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    assert r.returncode == 0, "%s failed (%d): %s%s" % (argv, r.returncode, r.stdout, r.stderr)
    return r


def test_skopeo_reads_the_tarball(work, small_image):
    layout, digest, layers = small_image
    out, _ = build_tarball(work, layout, ["rules_shiko/static_c:latest"])
    config = layout_manifest(layout)[2]
    got = json.loads(_run(["skopeo", "inspect", "--config", "docker-archive:" + out]).stdout)
    assert got["rootfs"] == config["rootfs"] and got["config"] == config["config"]
    info = json.loads(_run(["skopeo", "inspect", "oci-archive:" + out + ":latest"]).stdout)
    assert info["Digest"] == digest
    assert info["Layers"] == [l["desc"]["digest"] for l in layers]
    # skopeo finds the image by its docker name too.
    _run(["skopeo", "inspect", "docker-archive:" + out + ":rules_shiko/static_c:latest"])


EXPECTED_OUTPUT = "hello from shiko\nchild layer\nPATH=/app/bin:/bin\n65532\n/app\n"


def busybox_app(work):
    """A busybox base image and a child adding a layer, env, user and workdir; returns the child layout."""
    base_layer = make_layer(work, "busybox", {
        "bin": ("dir",), "bin/busybox": (engines.busybox_bytes(), 0o755), "bin/sh": ("symlink", "busybox"), "tmp": ("dir",),
    })
    base_layout, _, _ = build_image(work, "base", image_manifest(target="//test:busybox", layers=[base_layer], env={"PATH": "/bin"}, cmd=["/bin/sh"]))
    app_layer = make_layer(work, "app", {"app": ("dir",), "app/greeting.txt": b"child layer\n", "app/bin": ("dir",)})
    layout, digest, _ = build_image(work, "app", image_manifest(
        base={"layout": base_layout, "label": "//test:busybox"}, layers=[app_layer],
        env={"GREETING": "hello from shiko", "PATH": "/app/bin:${PATH}"}, user="65532", workdir="/app",
        entrypoint=["/bin/busybox", "sh", "-c"],
        cmd=['echo "$GREETING"; cat greeting.txt; echo "PATH=$PATH"; /bin/busybox id -u; /bin/busybox pwd'],
    ))
    config_digest = layout_manifest(layout)[1]["config"]["digest"]
    return layout, config_digest


def test_docker_load_and_run(work):
    layout, config_digest = busybox_app(work)
    tags = ["rules_shiko/static_c:latest", "rules_shiko/static_c:v1", "localhost:5000/team/app:1.0"]
    out, _ = build_tarball(work, layout, tags)
    single, _ = build_tarball(work, layout, ["rules_shiko/single"], name="single.tar")
    with engines.Dockerd(work) as d:
        r = d.docker("load", "-i", out)
        assert r.stdout.strip().splitlines() == ["Loaded image: " + t for t in tags], r.stdout
        for t in tags:
            assert d.docker("image", "inspect", "--format", "{{.Id}}", t).stdout.strip() == config_digest
        repo_tags = json.loads(d.docker("image", "inspect", "--format", "{{json .RepoTags}}", config_digest).stdout)
        assert sorted(repo_tags) == sorted(tags)
        for t in tags:
            run = d.docker("run", "--rm", "--network", "none", t)
            assert run.stdout == EXPECTED_OUTPUT, run.stdout + run.stderr
        r = d.docker("load", "-i", single)
        assert r.stdout.strip() == "Loaded image: rules_shiko/single:latest", r.stdout
        run = d.docker("run", "--rm", "--network", "none", "--entrypoint", "/bin/busybox", "rules_shiko/single", "cat", "/app/greeting.txt")
        assert run.stdout == "child layer\n"


def test_podman_load_and_run(work):
    layout, config_digest = busybox_app(work)
    multi, _ = build_tarball(work, layout, ["rules_shiko/static_c:latest", "rules_shiko/static_c:v1", "localhost:5000/team/app:1.0"])
    single, _ = build_tarball(work, layout, ["rules_shiko/single:2"], name="single.tar")
    official, _ = build_tarball(work, layout, ["shikobox"], name="official.tar")
    with engines.Podman(work) as p:
        # One tag: podman reads the OCI layout and its io.containerd.image.name annotation.
        r = p.run("load", "-i", single)
        assert "Loaded image: docker.io/rules_shiko/single:2" in r.stdout.splitlines(), r.stdout
        r = p.run("load", "-i", official)
        assert "Loaded image: docker.io/library/shikobox:latest" in r.stdout.splitlines(), r.stdout
        # Several tags: podman falls back to manifest.json, whose references are fully qualified.
        r = p.run("load", "-i", multi)
        loaded = sorted(l for l in r.stdout.splitlines() if l.startswith("Loaded image"))
        assert loaded == sorted("Loaded image: " + n for n in (
            "docker.io/rules_shiko/static_c:latest", "docker.io/rules_shiko/static_c:v1", "localhost:5000/team/app:1.0")), r.stdout
        names = json.loads(p.run("image", "inspect", "--format", "{{json .RepoTags}}", config_digest[7:]).stdout)
        assert sorted(names) == sorted([
            "docker.io/rules_shiko/single:2", "docker.io/library/shikobox:latest", "docker.io/rules_shiko/static_c:latest",
            "docker.io/rules_shiko/static_c:v1", "localhost:5000/team/app:1.0"])
        assert p.run("image", "inspect", "--format", "{{.Id}}", "rules_shiko/static_c:v1").stdout.strip() == config_digest[7:]
        for short in ("rules_shiko/static_c:latest", "rules_shiko/single:2", "shikobox", "localhost:5000/team/app:1.0"):
            run = p.run("run", "--rm", "--network", "none", short)
            assert run.stdout == EXPECTED_OUTPUT, run.stdout + run.stderr
