"""image_index: one target, linux/amd64 + linux/arm64, built through a platform transition.

Checks, on the real outputs: the index lists one manifest per platform with the right
`platform`; each child's config names its architecture (arm64 with variant v8); the amd64 child
is exactly the image built without a transition, and the arm64 child holds exactly the layers
of the image pinned to arm64; skopeo reads the layout and picks each platform; and the arm64
child really runs: its filesystem unpacked, its Python run under qemu-aarch64-static (no
binfmt_misc here: the emulator is copied into the root and chrooted into).
"""

import json
import os
import shutil
import subprocess
import tarfile
import tempfile

import pytest

import services
from conftest import run, tool

DISTROLESS = "examples/distroless"


def _read(path):
    with open(path, "rb") as f:
        return f.read()


class IndexLayout:
    """An image_index's `layout` output group: the index and its children's blobs."""

    def __init__(self, path):
        self.path = path
        top = json.loads(_read(os.path.join(path, "index.json")))
        assert len(top["manifests"]) == 1, top
        self.ref = top["manifests"][0]
        self.index = json.loads(self.blob(self.ref["digest"]))

    def blob(self, digest):
        return _read(os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1]))

    def child(self, arch):
        (desc,) = [m for m in self.index["manifests"] if m["platform"]["architecture"] == arch]
        manifest = json.loads(self.blob(desc["digest"]))
        config = json.loads(self.blob(manifest["config"]["digest"]))
        return desc, manifest, config


@pytest.fixture(scope="module")
def distroless(bazel):
    bazel("build", "//%s:index" % DISTROLESS, "//%s:python3" % DISTROLESS,
          "//%s:python3_arm64" % DISTROLESS, "--output_groups=+layout")
    bin_dir = os.path.join(bazel.info("bazel-bin"), DISTROLESS)
    return bin_dir, IndexLayout(os.path.join(bin_dir, "index"))


def test_index_has_one_image_per_platform(distroless):
    bin_dir, lay = distroless
    idx = lay.index
    assert idx["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"] for m in idx["manifests"]] == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
    ]
    with open(os.path.join(bin_dir, "index.digest")) as f:
        assert f.read().strip() == lay.ref["digest"]
    _, _, amd = lay.child("amd64")
    _, _, arm = lay.child("arm64")
    assert (amd["architecture"], amd.get("variant")) == ("amd64", None)
    assert (arm["architecture"], arm.get("variant")) == ("arm64", "v8")


def test_children_are_the_per_platform_images(distroless):
    bin_dir, lay = distroless
    amd_desc, _, _ = lay.child("amd64")
    with open(os.path.join(bin_dir, "python3.digest")) as f:
        assert amd_desc["digest"] == f.read().strip(), "amd64 child != //%s:python3" % DISTROLESS
    _, _, arm = lay.child("arm64")
    pinned = json.loads(_read(os.path.join(bin_dir, "python3_arm64.config.json")))
    # Same layers, byte for byte (only the history names the other layer targets).
    assert arm["rootfs"]["diff_ids"] == pinned["rootfs"]["diff_ids"]
    assert arm["config"] == pinned["config"]


def test_skopeo_picks_each_platform(distroless):
    _, lay = distroless
    skopeo = tool("skopeo")
    for arch in ("amd64", "arm64"):
        desc, _, _ = lay.child(arch)
        out = run([skopeo, "inspect", "--override-os", "linux", "--override-arch", arch,
                   "--config", "oci:%s:latest" % lay.path]).stdout
        assert json.loads(out)["architecture"] == arch


def unpack(lay, manifest, root):
    """The image's filesystem (its layers in order) under root; no whiteouts in these images."""
    for layer in manifest["layers"]:
        path = os.path.join(lay.path, "blobs", "sha256", layer["digest"].split(":", 1)[1])
        with tarfile.open(path, "r:*") as t:
            names = [m.name for m in t.getmembers()]
            assert not any(os.path.basename(n).startswith(".wh.") for n in names)
            t.extractall(root, numeric_owner=True)


def run_arm64(lay, config, root, argv):
    """argv in the unpacked arm64 root, through qemu-aarch64-static, as the image would run it."""
    qemu = tool("qemu-aarch64-static", "qemu-user-static")
    shutil.copy2(qemu, os.path.join(root, "qemu-aarch64-static"))
    env = dict(e.split("=", 1) for e in config["config"].get("Env", []))
    workdir = config["config"].get("WorkingDir") or "/"

    def enter():
        os.chroot(root)
        os.chdir(workdir)

    return subprocess.run(["/qemu-aarch64-static"] + argv, env=env, preexec_fn=enter,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)


def test_arm64_child_runs_under_qemu(distroless):
    if os.geteuid() != 0:
        pytest.fail("chroot needs root: run the e2e tests as root", pytrace=False)
    _, lay = distroless
    _, manifest, config = lay.child("arm64")
    root = tempfile.mkdtemp(prefix="shiko-arm64-")
    try:
        unpack(lay, manifest, root)
        res = run_arm64(lay, config, root, [
            "/usr/bin/python3", "-c",
            "import platform, ssl, sqlite3; print(platform.machine(), 'distroless ok')"])
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "aarch64 distroless ok"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_push_index_then_repush_and_mount(bazel, registry, tmp_path):
    """`bazel run //examples/python_app:push_index`: every child's blobs and manifest, then the
    index under the tag; skopeo resolves each platform from the registry to the child built for
    it; a re-push sends no blob byte; a push to another repository mounts every blob."""
    env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "docker-config"),
               SHIKO_BLOB_SOURCES=str(tmp_path / "blob_sources.json"),
               REGISTRY_AUTH_FILE=str(tmp_path / "no-auth.json"))
    bazel("build", "//examples/python_app:index", "--output_groups=+layout")
    root = os.path.join(bazel.info("bazel-bin"), "examples/python_app/index")
    lay = IndexLayout(root)
    repo = registry.host + "/e2e/index"
    res = bazel("run", "//examples/python_app:push_index", "--", "--repository", repo, env=env)
    assert res.stdout.strip().splitlines()[-1] == "%s@%s" % (repo, lay.ref["digest"])
    skopeo = tool("skopeo")
    raw = json.loads(run([skopeo, "inspect", "--raw", "--tls-verify=false",
                          "docker://%s:latest" % repo]).stdout)
    assert raw == lay.index
    for arch in ("amd64", "arm64"):
        _, _, config = lay.child(arch)
        seen = json.loads(run([skopeo, "inspect", "--config", "--tls-verify=false", "--override-os",
                               "linux", "--override-arch", arch, "docker://%s:latest" % repo]).stdout)
        assert seen == config
    blobs = set()
    for arch in ("amd64", "arm64"):
        _, manifest, _ = lay.child(arch)
        blobs.update(d["digest"] for d in [manifest["config"]] + manifest["layers"])
    res = bazel("run", "//examples/python_app:push_index", "--", "--repository", repo, env=env)
    assert "0 blobs pushed, %d skipped, 0 mounted; 0 bytes sent" % len(blobs) in res.stderr, res.stderr
    other = registry.host + "/e2e/index-copy"
    res = bazel("run", "//examples/python_app:push_index", "--", "--repository", other,
                "--tag", "v1", env=env)
    assert "0 blobs pushed, 0 skipped, %d mounted; 0 bytes sent" % len(blobs) in res.stderr, res.stderr


def test_load_index_picks_the_host_platform_or_the_one_given(bazel, tmp_path):
    """`bazel run //examples/static_c:load_index` loads the host's image (it runs), and
    `-- --platform=linux/arm64` the arm64 one (the engine records its architecture)."""
    bazel("build", "//examples/static_c:index", "--output_groups=+layout")
    lay = IndexLayout(os.path.join(bazel.info("bazel-bin"), "examples/static_c/index"))
    with services.Dockerd() as d:
        env = dict(d.env)
        env.pop("CONTAINERS_CONF", None)
        res = bazel("run", "//examples/static_c:load_index", env=env)
        _, manifest, _ = lay.child("amd64")
        assert "Image ID: " + manifest["config"]["digest"] in res.stdout, res.stdout
        out = d.docker("run", "--rm", "--network", "none", "rules_shiko/static_c:index").stdout
        assert out == "hello from rules_shiko\n"
        res = bazel("run", "//examples/static_c:load_index", "--", "--platform=linux/arm64",
                    "--repo_tag=rules_shiko/static_c:arm64", env=env)
        _, arm_manifest, _ = lay.child("arm64")
        assert "Image ID: " + arm_manifest["config"]["digest"] in res.stdout, res.stdout
        arch = d.docker("image", "inspect", "--format", "{{.Architecture}}/{{.Variant}}",
                        "rules_shiko/static_c:arm64").stdout.strip()
        assert arch == "arm64/v8"
        bad = bazel("run", "//examples/static_c:load_index", "--", "--platform=linux/s390x",
                    env=env, check=False)
        assert bad.returncode != 0
        assert "has no image for linux/s390x (it has: linux/amd64, linux/arm64/v8)" in bad.stderr


@pytest.mark.parametrize("target,expected", [
    ("//examples/distroless:python3",
     "distroless_base //examples/distroless:python3: attribute 'packages': no Debian packages "
     "locked for the target platform's CPU (locked: amd64, arm64)"),
    ("@python_app_wheels//absl_py",
     "@python_app_wheels//absl_py: no locked wheel of absl-py for the target platform: "
     "//examples/python_app:requirements_lock.txt has wheels for @platforms//cpu:arm64, "
     "@platforms//cpu:x86_64 only"),
])
def test_a_platform_nothing_is_locked_for_fails_clearly(bazel, target, expected):
    """linux/riscv64: no .deb and no wheel is taken from another platform; the build fails with
    one line naming the target and what is locked."""
    res = bazel("build", "--platforms=//tests/bad_input:linux_riscv64", target, check=False)
    assert res.returncode != 0
    lines = [l for l in res.stderr.splitlines() if l.startswith("ERROR: ") and expected in l]
    assert lines, res.stderr[-3000:]


EM = {"amd64": 62, "arm64": 183}  # ELF e_machine: EM_X86_64, EM_AARCH64


@pytest.mark.parametrize("pkg", ["examples/static_c", "examples/python_app", DISTROLESS])
def test_every_elf_file_matches_its_childs_platform(bazel, pkg):
    """No x86-64 object in an arm64 image and no aarch64 object in an amd64 one: every ELF
    file of every layer of each child (base layers included) is for the child's platform."""
    bazel("build", "//%s:index" % pkg, "--output_groups=+layout")
    lay = IndexLayout(os.path.join(bazel.info("bazel-bin"), pkg, "index"))
    for arch, machine in sorted(EM.items()):
        _, manifest, _ = lay.child(arch)
        elves, wrong = 0, []
        for layer in manifest["layers"]:
            path = os.path.join(lay.path, "blobs", "sha256", layer["digest"].split(":", 1)[1])
            with tarfile.open(path, "r:*") as t:
                for m in t:
                    if not m.isreg() or m.size < 20:
                        continue
                    head = t.extractfile(m).read(20)
                    if head[:4] != b"\x7fELF":
                        continue
                    elves += 1
                    if int.from_bytes(head[18:20], "little") != machine:
                        wrong.append(m.name)
        assert elves > 0, "%s %s: no ELF file at all" % (pkg, arch)
        assert not wrong, "%s %s child holds ELF files of another machine: %s" % (pkg, arch, wrong[:10])


def test_skopeo_pulls_the_arm64_child_back_after_a_push(bazel, registry, tmp_path):
    env = dict(os.environ, DOCKER_CONFIG=str(tmp_path / "docker-config"),
               SHIKO_BLOB_SOURCES=str(tmp_path / "blob_sources.json"),
               REGISTRY_AUTH_FILE=str(tmp_path / "no-auth.json"))
    bazel("build", "//examples/static_c:index", "--output_groups=+layout")
    lay = IndexLayout(os.path.join(bazel.info("bazel-bin"), "examples/static_c/index"))
    repo = registry.host + "/e2e/index-static"
    bazel("run", "//examples/python_app:push_index", "--", "--repository", repo, "--no-attach",
          env=env)  # a second index in the registry first: tags must not mix them up
    bazel("run", "//examples/static_c:push_index", "--", "--repository", repo, "--tag", "multi", env=env)
    skopeo = tool("skopeo")
    raw = json.loads(run([skopeo, "inspect", "--raw", "--tls-verify=false", "docker://%s:multi" % repo]).stdout)
    assert raw == lay.index and len(lay.index["manifests"]) == 2
    out = tmp_path / "arm64"
    run([skopeo, "copy", "--src-tls-verify=false", "--override-arch", "arm64",
         "docker://%s:multi" % repo, "oci:%s:arm" % out])
    with open(out / "index.json") as f:
        got = json.load(f)["manifests"][0]["digest"]
    desc, _, _ = lay.child("arm64")
    assert got == desc["digest"]
