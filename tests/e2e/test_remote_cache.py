"""CI on a shared remote cache: a real HTTP cache (nginx WebDAV), several fresh CI machines.

Each "machine" is a fresh `--output_user_root` on a snapshot of this checkout, building with
the project's `--config=ci` (Build without the Bytes) and `--remote_cache=http://127.0.0.1:P`.
The repository cache is shared (fetched wheels and .debs are not what is measured). nginx's
access log counts every byte the cache sends.

- A cold machine fills the cache.
- A second machine builds the same targets: no action runs locally (only "remote cache hit"
  and "internal"), it downloads under 2% of the images' layer bytes, and the digests are equal.
- After a one-line edit of the app, a third machine runs exactly the app layer and the image
  assembly, and downloads no base or dependency layer: under 2% of the image's layer bytes.
- `bazel run --config=ci //examples/python_app:push` from a fresh machine pushes to a real
  registry the digest the build computed, streaming each layer the registry lacks from the
  cache (none lands in the machine's outputs); a re-push from another fresh machine downloads
  no layer; a blob missing from the cache fails with one line.
- `bazel run --config=ci //examples/python_app:load` from a fresh machine streams the layers the
  engine lacks from the cache into a real dockerd (the image runs); another fresh machine's
  load of the same image downloads no layer.
"""

import json
import os
import re

import pytest

import services
from checkout import copy_checkout, remove_tree
from conftest import REPO_ROOT, Bazel
from machines import Machine, local_mnemonics, processes

IMAGES = [
    "//examples/static_c:image",
    "//examples/distroless:python3",
    "//examples/distroless:python3_arm64",
    "//examples/python_app:image",
    # linux/amd64 + linux/arm64: :image built for both platforms (a transition).
    "//examples/python_app:index",
]
APP_IMAGE = "//examples/python_app:image"


def metadata(m, targets):
    """{target: (digest, image manifest)} built on machine `m`: downloads only the small metadata
    outputs. An image_index gives its index (its children's layers are not counted)."""
    m.build("--remote_download_toplevel", "--output_groups=digest,config,default", *targets)
    out = {}
    for t in targets:
        pkg, name = t[2:].split(":")
        digest = m.read(os.path.join(pkg, name + ".digest")).decode().strip()
        path = m.bin(os.path.join(pkg, name + ".manifest.json"))
        if not os.path.exists(path):
            index = json.loads(m.read(os.path.join(pkg, name + ".index.json")))
            out[t] = (digest, {"layers": [], "index": index})
            continue
        with open(path) as f:
            out[t] = (digest, json.load(f))
    return out


def layer_bytes(manifests):
    seen = {}
    for _, m in manifests.values():
        for layer in m["layers"]:
            seen[layer["digest"]] = layer["size"]
    return sum(seen.values())


@pytest.fixture(scope="module")
def ci(tmp_path_factory, bazel):
    work = str(tmp_path_factory.mktemp("ci"))
    src = copy_checkout(REPO_ROOT, os.path.join(work, "src"))
    repo_cache = bazel.info("repository_cache")
    with services.RemoteCache() as cache:
        machines = []

        def machine(name):
            m = Machine(Bazel(src), os.path.join(work, name),
                        ["--config=ci", "--remote_cache=" + cache.url, "--repository_cache=" + repo_cache])
            machines.append(m)
            return m

        try:
            yield machine, cache, src, work
        finally:
            for m in machines:
                m.shutdown()
    remove_tree(work)


@pytest.fixture(scope="module")
def warm(ci):
    """The cache after a cold CI machine built every example, and that machine's metadata."""
    machine, cache, _, _ = ci
    first = machine("first")
    since = cache.log_offset()
    first.build("//examples/...")
    print("cold machine: uploaded %d bytes" % cache.put_bytes(since))
    return metadata(first, IMAGES)


def test_second_machine_runs_nothing_and_downloads_almost_nothing(ci, warm):
    machine, cache, _, work = ci
    second = machine("second")
    since = cache.log_offset()
    log = os.path.join(work, "second.log")
    res = second.build("--execution_log_json_file=" + log, "//examples/...")
    got = cache.get_bytes(since)
    kinds = processes(res.stderr)
    assert set(kinds) <= {"remote cache hit", "internal"}, kinds
    assert kinds.get("remote cache hit", 0) > 10, kinds
    assert local_mnemonics(log) == [], local_mnemonics(log)
    total = layer_bytes(warm)
    print("second machine: %s; downloaded %d bytes of %d layer bytes" % (kinds, got, total))
    assert got < 0.02 * total, "downloaded %d bytes of %d layer bytes" % (got, total)
    # Same digests as the first machine's.
    assert {t: d for t, (d, _) in metadata(second, IMAGES).items()} == {t: d for t, (d, _) in warm.items()}


def test_app_edit_runs_only_the_app_layer_and_the_assembly(ci, warm):
    machine, cache, src, work = ci
    path = os.path.join(src, "examples", "python_app", "server.py")
    with open(path) as f:
        original = f.read()
    assert "MAX_NAME = 100\n" in original
    with open(path, "w") as f:
        f.write(original.replace("MAX_NAME = 100\n", "MAX_NAME = 120\n"))
    try:
        third = machine("third")
        since = cache.log_offset()
        log = os.path.join(work, "third.log")
        third.build("--execution_log_json_file=" + log, APP_IMAGE)
        got = cache.get_bytes(since)
        assert local_mnemonics(log) == ["ShikoImage", "ShikoLayer"], local_mnemonics(log)
        total = layer_bytes({APP_IMAGE: warm[APP_IMAGE]})
        print("after an app edit: ran %s; downloaded %d bytes of the image's %d layer bytes"
              % (local_mnemonics(log), got, total))
        assert got < 0.02 * total, "downloaded %d bytes of the image's %d layer bytes" % (got, total)
        after = metadata(third, [APP_IMAGE])[APP_IMAGE]
        old_layers = warm[APP_IMAGE][1]["layers"]
        new_layers = after[1]["layers"]
        assert after[0] != warm[APP_IMAGE][0]
        assert new_layers[:-1] == old_layers[:-1] and new_layers[-1] != old_layers[-1]
    finally:
        with open(path, "w") as f:
            f.write(original)


def test_push_from_a_fresh_machine_streams_blobs_from_the_cache(ci, warm, registry):
    """A fresh CI machine pushes without holding the layers: each blob the registry lacks comes
    from the cache (verified); a re-push from another fresh machine downloads no layer."""
    machine, cache, _, _ = ci
    digest, manifest = warm[APP_IMAGE]
    total = layer_bytes({APP_IMAGE: warm[APP_IMAGE]})
    setting = "--//settings:remote_cache=" + cache.url
    repo = "%s/ci/python_app" % registry.host

    pusher = machine("pusher")
    since = cache.log_offset()
    res = pusher.run(setting, "//examples/python_app:push", "--", "--repository=" + repo)
    assert res.stdout.strip().splitlines()[-1] == "%s@%s" % (repo, digest)
    got = cache.get_bytes(since)
    # Every uploaded blob came from the cache, and nothing else of size did. (Blobs the registry
    # had, e.g. mounted from a repository an earlier test pushed to, are not fetched at all.)
    m = re.search(r"(\d+) blobs pushed, (\d+) skipped, (\d+) mounted; (\d+) bytes sent", res.stderr)
    assert m, res.stderr[-1500:]
    sent = int(m.group(4))
    print("push from a fresh machine: %d bytes from the cache, %d bytes uploaded, %d layer bytes (%s)"
          % (got, sent, total, m.group(0)))
    assert sent > 0 and sent <= got < sent * 1.02 + 200000, (got, sent, total)
    # The layers never landed in this machine's outputs.
    assert not os.path.exists(pusher.bin("examples/python_app/image")), "layout downloaded"
    assert not os.path.exists(pusher.bin("examples/python_app/image_app.tar.gz"))

    again = machine("repusher")
    since = cache.log_offset()
    res = again.run(setting, "//examples/python_app:push", "--", "--repository=" + repo)
    assert res.stdout.strip().splitlines()[-1] == "%s@%s" % (repo, digest)
    got = cache.get_bytes(since)
    print("re-push from a fresh machine: %d bytes from the cache" % got)
    assert got < 0.02 * total, (got, total)
    assert "0 blobs pushed" in res.stderr, res.stderr[-1500:]


def test_push_fails_clearly_when_the_cache_lacks_a_blob(ci, warm, registry):
    machine, cache, _, _ = ci
    digest, manifest = warm["//examples/static_c:image"]
    layer = manifest["layers"][-1]["digest"]
    cas = os.path.join(cache.dir, "root", "cas", layer[len("sha256:"):])
    assert os.path.isfile(cas)
    os.rename(cas, cas + ".away")
    try:
        lacking = machine("lacking")
        res = lacking.run("--//settings:remote_cache=" + cache.url, "//examples/static_c:push", "--",
                          "--repository=%s/ci/lacking" % registry.host, check=False)
        assert res.returncode != 0
        lines = [l for l in res.stderr.splitlines() if l.startswith("ERROR: //examples/static_c:push")]
        assert len(lines) == 1, res.stderr[-2000:]
        assert "blob %s: not in the remote cache" % layer in lines[0], lines[0]
        assert "Traceback" not in res.stderr
    finally:
        os.rename(cas + ".away", cas)


def test_load_from_a_fresh_machine_streams_only_what_the_engine_lacks(ci, warm, dockerd):
    machine, cache, _, _ = ci
    digest, manifest = warm[APP_IMAGE]
    total = layer_bytes({APP_IMAGE: warm[APP_IMAGE]})
    env = dict(dockerd.env)
    env.pop("CONTAINERS_CONF", None)
    setting = "--//settings:remote_cache=" + cache.url

    # The session's dockerd may hold the image from another test: remove it, so this load streams.
    config = manifest["config"]["digest"]
    try:
        dockerd.docker("image", "inspect", config)
    except services.ServiceError:
        pass  # not there
    else:
        dockerd.docker("rmi", "-f", config)
    loader = machine("loader")
    since = cache.log_offset()
    res = loader.run(setting, "//examples/python_app:load", env=env)
    assert "Loaded image: rules_shiko/python_app:latest" in res.stdout, res.stdout + res.stderr
    got = cache.get_bytes(since)
    print("load from a fresh machine: %d bytes from the cache for %d layer bytes" % (got, total))
    assert total <= got < total * 1.02 + 200000, (got, total)
    assert not os.path.exists(loader.bin("examples/python_app/image")), "layout downloaded"
    run = dockerd.docker("run", "--rm", "--network", "none", "rules_shiko/python_app:latest", "--selftest")
    assert run.stdout.strip() == "python_app ok", run.stdout + run.stderr

    again = machine("reloader")
    since = cache.log_offset()
    res = again.run(setting, "//examples/python_app:load", env=env)
    assert "Transfer: none, image already present" in res.stdout, res.stdout
    got = cache.get_bytes(since)
    print("load again from a fresh machine: %d bytes from the cache" % got)
    assert got < 0.02 * total, (got, total)
