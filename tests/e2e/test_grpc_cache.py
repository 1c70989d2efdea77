"""CI on a gRPC remote cache (REAPI CAS, ByteStream): BuildGrid's CAS on 127.0.0.1 (no bots).

A first CI machine builds //examples/python_app:image with `--config=ci
--remote_cache=grpc://…`; a second, fresh one (its own --output_user_root) builds it again with
no local action, then `bazel run :push` streams the layers the registry lacks straight from the
gRPC cache through the ByteStream API (python_tools/shiko/registry/bytestream.py): the pushed
digest is the build's and the layers never land in the second machine's outputs. A cache that
lacks a layer fails the push with one line naming the blob.
"""

import json
import os
import re
import tempfile

import pytest

import services
from checkout import copy_checkout, remove_tree
from conftest import REPO_ROOT, Bazel
from machines import Machine

IMAGE = "//examples/python_app:image"


@pytest.fixture(scope="module")
def grpc_ci():
    work = tempfile.mkdtemp(prefix="shiko-grpc-ci-", dir="/tmp")
    machines = []
    try:
        tree = copy_checkout(REPO_ROOT, os.path.join(work, "rules_shiko"))
        with services.RemoteExecution(bots=0) as engine:
            def machine(name):
                cache = engine.buildgrid
                m = Machine(Bazel(tree), os.path.join(work, name),
                            ["--config=ci", "--remote_cache=" + cache.url,
                             "--remote_instance_name=" + cache.instance])
                machines.append(m)
                return m
            yield machine, engine
            for m in machines:
                m.shutdown()
    finally:
        remove_tree(work)


def _digest(m):
    return m.read("examples/python_app/image.digest").decode().strip()


def test_push_streams_layers_from_a_grpc_cache(grpc_ci, registry, tmp_path):
    machine, engine = grpc_ci
    first = machine("first")
    first.build("--remote_download_toplevel", "--output_groups=digest", IMAGE)
    digest = _digest(first)
    second = machine("second")
    res = second.build("--remote_download_toplevel", "--output_groups=digest", IMAGE)
    assert re.search(r"processes: .*remote cache hit", res.stderr), res.stderr[-1500:]
    assert " local" not in res.stderr.split("processes:")[-1].splitlines()[0], res.stderr[-1500:]
    assert _digest(second) == digest
    url = "%s/%s" % (engine.url, engine.instance)
    repo = "%s/grpc/python_app" % registry.host
    res = second.run("--//settings:remote_cache=" + url, "//examples/python_app:push", "--",
                     "--repository=" + repo, "--no-attach", env=_env(tmp_path))
    assert res.stdout.strip().splitlines()[-1] == "%s@%s" % (repo, digest)
    m = re.search(r"(\d+) blobs pushed, (\d+) skipped, (\d+) mounted; (\d+) bytes sent", res.stderr)
    assert m and int(m.group(1)) >= 4, res.stderr[-1500:]
    # The layers came from the cache, not from this machine's outputs.
    assert not os.path.exists(second.bin("examples/python_app/image_app.tar.gz"))


def test_push_fails_clearly_when_the_grpc_cache_lacks_a_blob(grpc_ci, registry, tmp_path):
    """The second machine of the test above (it never held python_app's layers) pushes to a new
    repository after the app layer left the cache: one line naming the blob and the cache."""
    machine, engine = grpc_ci
    m = machine("second")
    layer = json.loads(m.read("examples/python_app/image.manifest.json"))["layers"][-1]["digest"]
    assert not os.path.exists(m.bin("examples/python_app/image_app.tar.gz"))
    # Take the layer out of BuildGrid's disk CAS (a file named by the digest's hex).
    cas = os.path.join(engine.buildgrid.dir, "cas")
    found = [os.path.join(d, n) for d, _, names in os.walk(cas) for n in names
             if layer[len("sha256:"):] in os.path.join(d, n).replace("/", "")]
    assert found, "the layer is not in BuildGrid's CAS under %s" % cas
    for p in found:
        os.rename(p, p + ".away")
    try:
        res = m.run("--//settings:remote_cache=%s/%s" % (engine.url, engine.instance),
                    "//examples/python_app:push", "--", "--repository=%s/grpc/lacking" % registry.host,
                    "--no-attach", env=_env(tmp_path), check=False)
        assert res.returncode != 0
        lines = [l for l in res.stderr.splitlines() if l.startswith("ERROR: //examples/python_app:push")]
        assert len(lines) == 1, res.stderr[-2000:]
        assert "blob %s: not in the remote cache grpc://" % layer in lines[0], lines[0]
        assert "Traceback" not in res.stderr
    finally:
        for p in found:
            os.rename(p + ".away", p)


def _env(tmp_path):
    """No remembered blob sources (so nothing is mounted from an earlier push) and no credentials."""
    return dict(os.environ, SHIKO_BLOB_SOURCES=str(tmp_path / "blob_sources.json"),
                DOCKER_CONFIG=str(tmp_path / "docker-config"),
                REGISTRY_AUTH_FILE=str(tmp_path / "no-auth.json"))
