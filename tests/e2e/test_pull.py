"""`image_pull` against real registries on 127.0.0.1, in a temporary workspace.

The test pushes a two-platform image index (the static_c image for linux/amd64, and the same
layer under an arm64 config) with the push tool, then builds, in a copy of tests/pull_test/
(rules_shiko as a `local_repository`, its own output base and repository cache), an image on
top of `@base` pulled by the index digest (its SBOM names the base), and runs it in a real dockerd. Also: the arm64
manifest is chosen for platform linux/arm64; a tag without a digest fails printing the digest
to pin; a TLS + htpasswd registry is pulled from with the same config.json credentials as push (the
layer-download action too, given --action_env=DOCKER_CONFIG);
a corrupted layer in the registry fails the build of the layout (not of the image's metadata:
the pull is shallow) with a digest mismatch and nothing is kept; a second checkout (another
output base, same repository cache) builds with the registry stopped.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, run, tool
import services

sys.path.insert(0, REPO_ROOT)
from python_tools.tests import registry_fixtures as rf  # noqa: E402

TEMPLATE = os.path.join(REPO_ROOT, "tests", "pull_test")
USER, PASSWORD = "puller", "pull-pa55word"


def cj(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_index_layout(image, dest):
    """A copy of the image's layout whose index.json names a two-platform image index."""
    shutil.copytree(image.layout, dest)
    for root, dirs, files in os.walk(dest):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    blobs = os.path.join(dest, "blobs", "sha256")

    def put(data):
        with open(os.path.join(blobs, sha(data)[7:]), "wb") as f:
            f.write(data)
        return sha(data)

    desc = image.index()["manifests"][0]
    manifest = image.manifest()
    config = json.loads(image.blob(manifest["config"]["digest"]))
    arm_config = cj(dict(config, architecture="arm64", variant="v8"))
    arm_manifest = cj(dict(manifest, config=dict(manifest["config"], digest=put(arm_config), size=len(arm_config))))
    index = cj({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": desc["mediaType"], "digest": desc["digest"], "size": desc["size"],
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": desc["mediaType"], "digest": put(arm_manifest), "size": len(arm_manifest),
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]})
    with open(os.path.join(dest, "index.json"), "wb") as f:
        f.write(cj({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": put(index), "size": len(index)}]}))
    return {"index": sha(index), "amd64": desc["digest"], "arm64": sha(arm_manifest),
            "layer": manifest["layers"][0]["digest"], "layout": dest}


def push_layout(bazel, layout, repository, tag, env=None, extra=()):
    env = dict(env or os.environ)
    env.setdefault("SHIKO_BLOB_SOURCES", os.path.join(os.path.dirname(layout), "blob_sources.json"))
    res = bazel("run", "//python_tools:push", "--", "--layout", layout, "--repository", repository,
                "--tag", tag, *extra, env=env)
    return res.stdout.strip().splitlines()[-1]


class Workspace(object):
    """A temporary copy of tests/pull_test/ with its own output base and repository cache."""

    def __init__(self, bazel, root, pulls, repository_cache, pip_repo, files=()):
        self.bazel = bazel
        self.root = str(root)
        self.output_base = self.root + "-output"
        self.repository_cache = str(repository_cache)
        self.pip_repo = pip_repo
        os.makedirs(self.root)
        # WORKSPACE for Bazel 4.2.3; MODULE.bazel (the `images` extension) for modern Bazel.
        subst = {"@@ROOT@@": REPO_ROOT, "@@PULLS@@": "\n".join(p[0] for p in pulls),
                 "@@MODULE_PULLS@@": "\n".join(p[1] for p in pulls)}
        for src, dst in (("WORKSPACE.in", "WORKSPACE"), ("BUILD.in", "BUILD.bazel"), ("bazelrc.in", ".bazelrc"),
                         ("MODULE.bazel.in", "MODULE.bazel"), ("pulled.txt", "pulled.txt")):
            with open(os.path.join(TEMPLATE, src)) as f:
                text = f.read()
            for k, v in subst.items():
                text = text.replace(k, v)
            with open(os.path.join(self.root, dst), "w") as f:
                f.write(text)
        open(os.path.join(self.root, "WORKSPACE.bzlmod"), "w").close()
        for name, path in files:
            shutil.copy(path, os.path.join(self.root, name))

    def __call__(self, command, *args, check=True, env=None, repository_cache=None):
        env = dict(os.environ if env is None else env)
        # Where pull.py remembers blob locations (for push mounts): not the user's cache.
        env.setdefault("SHIKO_BLOB_SOURCES", self.root + "-blob_sources.json")
        flags = ["--repository_cache=" + (repository_cache or self.repository_cache),
                 "--override_repository=rules_shiko_pip=" + self.pip_repo]
        return self.bazel(command, *(flags + list(args)), startup=["--output_base=" + self.output_base],
                          cwd=self.root, check=check, env=env)

    def external(self, name, *parts):
        return os.path.join(self.output_base, "external", name, *parts)

    def shutdown(self):
        self.bazel("shutdown", startup=["--output_base=" + self.output_base], cwd=self.root, check=False)


def pull_rule(name, image, digest=None, platform=None, extra=""):
    """(WORKSPACE text, MODULE.bazel text) of one pull: image_pull(...) / images.pull(...)."""
    args = ['    name = "%s",' % name, '    image = "%s",' % image]
    if digest:
        args.append('    digest = "%s",' % digest)
    if platform:
        args.append('    platform = "%s",' % platform)
    if extra:
        args.append("    " + extra)
    body = "\n".join(args)
    return ("image_pull(\n%s\n)\n" % body,
            'images.pull(\n%s\n)\n\nuse_repo(images, "%s")\n' % (body, name))


@pytest.fixture(scope="module")
def pip_repo(bazel, static_c_image):
    """The checkout's fetched wheels, reused by the temporary workspaces (no second pip run)."""
    path = os.path.join(bazel.info("output_base"), "external", "rules_shiko_pip")
    if not os.path.isdir(path):
        pytest.fail("the checkout's @rules_shiko_pip was not fetched at %s" % path, pytrace=False)
    return path


@pytest.fixture(scope="module")
def pull_registry():
    reg = services.Registry()
    with reg:
        yield reg


@pytest.fixture(scope="module")
def pushed(bazel, static_c_image, pull_registry, tmp_path_factory):
    d = tmp_path_factory.mktemp("index")
    info = make_index_layout(static_c_image, str(d / "layout"))
    repo = pull_registry.host + "/pull/static_c"
    assert push_layout(bazel, info["layout"], repo, "multi") == "%s@%s" % (repo, info["index"])
    raw = run([tool("skopeo"), "inspect", "--raw", "--tls-verify=false", "docker://%s:multi" % repo]).stdout
    assert sha(raw.encode()) == info["index"]
    assert [m["platform"]["architecture"] for m in json.loads(raw)["manifests"]] == ["amd64", "arm64"]
    info["repo"] = repo
    return info


@pytest.fixture(scope="module")
def workspace(bazel, pushed, pip_repo, tmp_path_factory):
    d = tmp_path_factory.mktemp("ws")
    pulls = [
        pull_rule("base", pushed["repo"], pushed["index"], "linux/amd64"),
        pull_rule("base_arm64", pushed["repo"], pushed["index"], "linux/arm64"),
        pull_rule("bytag", pushed["repo"] + ":multi"),
        pull_rule("baddigest", pushed["repo"], "sha256:1234"),
    ]
    ws = Workspace(bazel, d / "one", pulls, d / "repository-cache", pip_repo)
    try:
        yield ws
    finally:
        ws.shutdown()


def test_image_on_pulled_base_runs(workspace, pushed, static_c_image, dockerd):
    workspace("build", "//:on_top", "--output_groups=+tarball,+sbom")
    with open(workspace.external("base", "digest")) as f:
        assert f.read().strip() == pushed["amd64"]
    bin_dir = os.path.join(workspace.root, "bazel-bin")
    # The SBOM names the pulled base by its manifest digest (read from the shallow layout).
    with open(os.path.join(bin_dir, "on_top.spdx.json")) as f:
        assert pushed["amd64"][7:] in f.read()
    with open(os.path.join(bin_dir, "on_top", "index.json")) as f:
        top = json.load(f)["manifests"][0]["digest"]
    with open(os.path.join(bin_dir, "on_top", "blobs", "sha256", top[7:])) as f:
        layers = [l["digest"] for l in json.load(f)["layers"]]
    assert layers[0] == pushed["layer"] and len(layers) == 2  # the base's layer, then ours

    out = dockerd.docker("load", "-i", os.path.join(bin_dir, "on_top.tar")).stdout
    assert "shiko-pull-test/on_top:latest" in out, out
    res = dockerd.docker("run", "--rm", "--network", "none", "shiko-pull-test/on_top:latest")
    assert res.stdout == "hello from rules_shiko\n"
    cid = dockerd.docker("create", "shiko-pull-test/on_top:latest").stdout.strip()
    try:
        tar = subprocess.run([dockerd.docker_cli, "cp", cid + ":/etc/pulled.txt", "-"], env=dockerd.env,
                             stdout=subprocess.PIPE, check=True).stdout
        assert b"built on a pulled base" in tar
    finally:
        dockerd.docker("rm", cid)


def test_report_lists_the_pulled_base_layer(workspace, pushed):
    """The `report` output group reads a pulled base's layer from its layout (no listing)."""
    workspace("build", "//:on_top", "--output_groups=+report")
    with open(os.path.join(workspace.root, "bazel-bin", "on_top.report.json")) as f:
        report = json.load(f)
    base, extra = report["layers"]
    assert base["digest"] == pushed["layer"] and base["label"] is None
    assert base["source"] == "@base//:base" and base["name"] == "base[0]"
    hello = {e["path"]: e for e in base["entries"]}["/usr/local/bin/hello"]
    assert hello["origin"] == "@base//:base" and len(hello["sha256"]) == 64 and hello["size"] > 0
    assert base["tar_size"] > hello["size"]
    assert extra["label"] == "//:extra"
    assert {e["path"]: e["origin"] for e in extra["entries"]}["/etc/pulled.txt"] == "//:pulled.txt"


def test_platform_selects_the_manifest(workspace, pushed):
    workspace("build", "@base_arm64//:base_arm64")
    with open(workspace.external("base_arm64", "digest")) as f:
        assert f.read().strip() == pushed["arm64"]
    with open(workspace.external("base_arm64", "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    assert desc["digest"] == pushed["arm64"]
    assert desc["platform"] == {"os": "linux", "architecture": "arm64", "variant": "v8"}


def test_tag_without_digest_prints_the_digest(workspace, pushed):
    res = workspace("build", "@bytag//:bytag", check=False)
    assert res.returncode != 0
    assert "attribute 'digest'" in res.stderr and "a tag is not reproducible" in res.stderr
    assert 'digest = "%s"' % pushed["index"] in res.stderr


def test_bad_digest_is_one_clear_error(workspace):
    res = workspace("build", "@baddigest//:baddigest", check=False)
    assert res.returncode != 0
    assert "@baddigest: attribute 'digest': \"sha256:1234\": must be sha256:<64 lowercase hex digits>" \
        in res.stderr, res.stderr[-2000:]


def test_pull_with_tls_and_credentials(bazel, static_c_image, pip_repo, tmp_path):
    tls = rf.TLSFiles(str(tmp_path / "tls"))
    htp = rf.htpasswd_file(str(tmp_path / "htpasswd"), {USER: PASSWORD})
    with services.Registry(http_config=tls.registry_http_config(), config=rf.htpasswd_config(htp)) as reg:
        env = dict(os.environ)
        env["DOCKER_CONFIG"] = str(tmp_path / "docker")
        env["REGISTRY_AUTH_FILE"] = str(tmp_path / "none.json")
        rf.write_docker_config(env["DOCKER_CONFIG"], auths={reg.host: (USER, PASSWORD)})
        info = make_index_layout(static_c_image, str(tmp_path / "layout"))
        repo = reg.host + "/pull/tls"
        push_layout(bazel, info["layout"], repo, "v", env=env, extra=("--ca_file", tls.ca_cert))
        pulls = [pull_rule("base", repo, info["index"], "linux/amd64", 'ca_file = "//:ca.crt",'),
                 pull_rule("nocreds", repo, info["index"], "linux/amd64", 'ca_file = "//:ca.crt",')]
        ws = Workspace(bazel, tmp_path / "ws", pulls, tmp_path / "rc", pip_repo, files=[("ca.crt", tls.ca_cert)])
        try:
            res = ws("build", "//:on_top", env=env)
            with open(ws.external("base", "digest")) as f:
                assert f.read().strip() == info["amd64"]
            assert PASSWORD not in res.stderr + res.stdout
            # The layer is fetched by a build action: the same CA file and, with --action_env,
            # the same credentials.
            res = ws("build", "//:on_top", "--output_groups=+layout", "--action_env=DOCKER_CONFIG", env=env)
            assert os.path.isfile(os.path.join(ws.root, "bazel-bin", "on_top", "blobs", "sha256", info["layer"][7:]))
            assert PASSWORD not in res.stderr + res.stdout
            # Without credentials (and nothing in the cache): one clear 401 line.
            env["DOCKER_CONFIG"] = str(tmp_path / "empty")
            res = ws("build", "@nocreds//:nocreds", env=env, check=False,
                     repository_cache=str(tmp_path / "rc-empty"))
            assert res.returncode != 0
            assert "HTTP 401 Unauthorized: authentication required" in res.stderr, res.stderr[-3000:]
            assert "no credentials for %s" % reg.host in res.stderr, \
                res.stderr[-3000:]
        finally:
            ws.shutdown()


def test_corrupt_blob_fails_with_digest_mismatch(bazel, static_c_image, pip_repo, tmp_path):
    with services.Registry() as reg:
        info = make_index_layout(static_c_image, str(tmp_path / "layout"))
        repo = reg.host + "/pull/corrupt"
        push_layout(bazel, info["layout"], repo, "c")
        layer = info["layer"]
        data = os.path.join(reg.storage, "docker", "registry", "v2", "blobs", "sha256", layer[7:9], layer[7:], "data")
        with open(data, "r+b") as f:
            f.seek(1000)
            f.write(b"\x00 corrupted by the test \x00")
        ws = Workspace(bazel, tmp_path / "ws", [pull_rule("base", repo, info["index"], "linux/amd64")],
                       tmp_path / "fresh-cache", pip_repo)
        try:
            # Shallow pull: the image's metadata needs no layer, so the corrupt layer isn't read.
            ws("build", "//:on_top")
            # Its layout needs the layer: the ShikoPullBlob action fails, keeping nothing.
            res = ws("build", "//:on_top", "--output_groups=+layout", check=False)
            assert res.returncode != 0
            assert "blob %s of pull/corrupt: digest mismatch" % layer in res.stderr, res.stderr[-3000:]
            assert not os.path.exists(ws.external("base", "blobs", "sha256", layer[7:]))
            assert not os.path.exists(ws.external("base", "_shiko_pull_stage"))
            assert not os.path.exists(os.path.join(ws.root, "bazel-bin", "external", "base", "base.layers",
                                                   layer[7:]))
            assert not os.path.exists(os.path.join(str(tmp_path / "fresh-cache"), "content_addressable",
                                                   "sha256", layer[7:]))
        finally:
            ws.shutdown()


def test_second_checkout_uses_the_repository_cache(workspace, pushed, pull_registry, tmp_path):
    """Another checkout and output base, the same repository cache, the registry stopped."""
    with open(os.path.join(workspace.root, "bazel-bin", "on_top.digest")) as f:
        first = f.read().strip()
    pull_registry.stop()
    ws2 = Workspace(workspace.bazel, tmp_path / "two", [pull_rule("base", pushed["repo"], pushed["index"],
                                                                  "linux/amd64")],
                    workspace.repository_cache, workspace.pip_repo)
    try:
        ws2("build", "//:on_top")
        with open(os.path.join(ws2.root, "bazel-bin", "on_top.digest")) as f:
            assert f.read().strip() == first
    finally:
        ws2.shutdown()
