"""The contract of //examples/static_c:image, checked with independent real tools.

umoci and skopeo read the OCI layout; dockerd and podman load the tarball and run it.
Outputs are only read from bazel-bin; anything that needs changing is copied first.
"""

import json
import os
import stat

from conftest import run, tool

EXPECTED_OUTPUT = "hello from rules_shiko\n"
REPO_TAG = "rules_shiko/static_c:latest"


def test_umoci_unpacks_the_layout(static_c_image, tmp_path):
    # As built: index.json names the manifest by the image's tag (repo_tags: ...:latest).
    assert static_c_image.index()["manifests"][0]["annotations"] == {"org.opencontainers.image.ref.name": "latest"}
    bundle = tmp_path / "bundle"
    run([tool("umoci"), "unpack", "--image", "%s:latest" % static_c_image.layout, bundle])

    hello = bundle / "rootfs" / "usr" / "local" / "bin" / "hello"
    assert hello.is_file(), "usr/local/bin/hello missing from the unpacked rootfs: %s" % sorted(
        str(p.relative_to(bundle / "rootfs")) for p in (bundle / "rootfs").rglob("*"))
    assert os.stat(hello).st_mode & stat.S_IXUSR, "usr/local/bin/hello is not executable"
    # The binary is static: it runs straight from the rootfs.
    assert run([hello]).stdout == EXPECTED_OUTPUT

    # umoci's runtime config carries the image config.
    with open(bundle / "config.json") as f:
        process = json.load(f)["process"]
    assert process["args"] == ["/usr/local/bin/hello"]
    assert (process["user"]["uid"], process["user"]["gid"]) == (65532, 65532)


def test_skopeo_reads_the_layout(static_c_image, tmp_path):
    skopeo = tool("skopeo")
    src = "oci:%s" % static_c_image.layout
    archive = tmp_path / "x.tar"
    run([skopeo, "copy", src, "docker-archive:%s:rules_shiko/static_c:e2e" % archive])
    assert archive.stat().st_size > 0

    inspected = json.loads(run([skopeo, "inspect", src]).stdout)
    assert inspected["Digest"] == static_c_image.digest, (
        "skopeo sees manifest %s, image.digest says %s"
        % (inspected["Digest"], static_c_image.digest))
    assert static_c_image.digest == static_c_image.index()["manifests"][0]["digest"]
    assert inspected["Labels"].get("org.opencontainers.image.title") == "static_c"

    raw_config = json.loads(run([skopeo, "inspect", "--config", src]).stdout)
    assert raw_config["config"]["Cmd"] == ["/usr/local/bin/hello"]
    assert raw_config["config"]["User"] == "65532:65532"


def test_docker_loads_and_runs_the_tarball(static_c_image, dockerd):
    out = dockerd.docker("load", "-i", static_c_image.tarball).stdout
    assert "Loaded image: %s" % REPO_TAG in out, out

    image_id = dockerd.docker("image", "inspect", "--format", "{{.Id}}", REPO_TAG).stdout.strip()
    assert image_id == static_c_image.config_digest, (
        "docker's image ID %s is not the config digest %s"
        % (image_id, static_c_image.config_digest))

    res = dockerd.docker("run", "--rm", "--network", "none", REPO_TAG)
    assert res.stdout == EXPECTED_OUTPUT
    assert res.stderr == ""


def test_podman_loads_and_runs_the_tarball(static_c_image, podman):
    out = podman.podman("load", "-i", static_c_image.tarball).stdout
    assert REPO_TAG in out, out

    image_id = podman.podman("image", "inspect", "--format", "{{.Id}}", REPO_TAG).stdout.strip()
    assert "sha256:" + image_id == static_c_image.config_digest

    res = podman.podman("run", "--rm", "--network", "none", REPO_TAG)
    assert res.stdout == EXPECTED_OUTPUT
