"""Self-checks of services.py against a tiny busybox image made with umoci (no Bazel involved).

They prove the harness the other e2e tests stand on: the registry takes a push from skopeo and
serves it back, dockerd and podman run a container, and a service that can't start fails loudly.
"""

import json
import os
import shutil

import pytest

import services
from conftest import run, tool

BUSYBOX = "/bin/busybox"


@pytest.fixture(scope="session")
def busybox_layout(tmp_path_factory):
    """An OCI layout `<dir>:t` with a static busybox at /bin/busybox (plus /bin/sh, /bin/echo)."""
    if not os.path.isfile(BUSYBOX):
        pytest.fail("%s is missing: apt-get install -y busybox-static" % BUSYBOX, pytrace=False)
    umoci = tool("umoci")
    work = tmp_path_factory.mktemp("busybox")
    layout = work / "layout"
    bundle = work / "bundle"
    run([umoci, "init", "--layout", layout])
    run([umoci, "new", "--image", "%s:t" % layout])
    run([umoci, "unpack", "--image", "%s:t" % layout, bundle])
    bindir = bundle / "rootfs" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, bindir / "busybox")
    for applet in ("sh", "echo", "cat"):
        os.symlink("busybox", bindir / applet)
    run([umoci, "repack", "--image", "%s:t" % layout, bundle])
    run([umoci, "config", "--image", "%s:t" % layout, "--config.cmd", "/bin/echo",
         "--config.cmd", "busybox says hi"])
    shutil.rmtree(bundle)
    return layout


def _digest_of(layout_ref):
    out = run([tool("skopeo"), "inspect", layout_ref]).stdout
    return json.loads(out)["Digest"]


def test_registry_push_and_pull(registry, busybox_layout, tmp_path):
    skopeo = tool("skopeo")
    src = "oci:%s:t" % busybox_layout
    ref = "docker://%s/e2e/busybox:1" % registry.host
    run([skopeo, "copy", "--dest-tls-verify=false", src, ref])

    # The registry serves the same manifest back, and its blobs pull into a new layout.
    remote = json.loads(run([skopeo, "inspect", "--tls-verify=false", ref]).stdout)
    assert remote["Digest"] == _digest_of(src)
    back = tmp_path / "back"
    run([skopeo, "copy", "--src-tls-verify=false", ref, "oci:%s:back" % back])
    assert _digest_of("oci:%s:back" % back) == remote["Digest"]

    tags = json.loads(run([skopeo, "list-tags", "--tls-verify=false",
                           "docker://%s/e2e/busybox" % registry.host]).stdout)
    assert tags["Tags"] == ["1"]


def test_dockerd_runs_a_container(dockerd, busybox_layout, tmp_path):
    tar = tmp_path / "busybox.tar"
    run([tool("skopeo"), "copy", "oci:%s:t" % busybox_layout,
         "docker-archive:%s:e2e/busybox:1" % tar])
    out = dockerd.docker("load", "-i", tar).stdout
    assert "e2e/busybox:1" in out
    res = dockerd.docker("run", "--rm", "--network", "none", "e2e/busybox:1")
    assert res.stdout == "busybox says hi\n"
    # Exit codes come through too (a test of the harness' failure path).
    with pytest.raises(services.ServiceError, match=r"exit 3"):
        dockerd.docker("run", "--rm", "--network", "none", "e2e/busybox:1",
                       "/bin/sh", "-c", "exit 3")


def test_podman_runs_a_container(podman, busybox_layout, tmp_path):
    tar = tmp_path / "busybox.tar"
    run([tool("skopeo"), "copy", "oci:%s:t" % busybox_layout,
         "docker-archive:%s:e2e/busybox:1" % tar])
    podman.podman("load", "-i", tar)
    res = podman.podman("run", "--rm", "--network", "none", "e2e/busybox:1")
    assert res.stdout == "busybox says hi\n"


def test_dockerd_stops_with_its_containerd():
    d = services.Dockerd()
    with d:
        pid = d.proc.pid
        d.docker("info")
        children = list(d._containerd)
        assert children, "dockerd started no containerd child?"
        tmpdir = d.dir
    assert d.proc.poll() is not None
    for cpid, start in children:
        assert services._proc_start_time(cpid) != start, "containerd %d outlived dockerd" % cpid
    assert services._proc_start_time(pid) is None or d.proc.returncode is not None
    assert not os.path.exists(tmpdir), "dockerd's temp dir was not removed"


class _BrokenRegistry(services.Registry):
    """A registry whose config file is not YAML: it must exit, and start() must say why."""

    def _spawn(self, argv, env=None):
        with open(argv[-1], "w") as f:
            f.write("version: [this is not\n")
        super()._spawn(argv, env=env)


def test_service_that_cannot_start_fails_loudly():
    reg = _BrokenRegistry(start_timeout=10)
    with pytest.raises(services.ServiceError) as e:
        with reg:
            pass
    msg = str(e.value)
    assert "registry: exited with code" in msg
    assert "--- last lines of" in msg
    assert not os.path.exists(reg.dir)
