"""rules_shiko used from another repository, exactly as the README's "Using it" section says.

A fresh workspace in a temp dir depends on a snapshot of this checkout through
`local_repository`: its WORKSPACE and BUILD are the README's code blocks (marked
`<!-- consumer:WORKSPACE -->` and `<!-- consumer:BUILD -->`), copied verbatim, so a README that
drifts fails here. On top of them the consumer has its own pip lock (absl-py), its own Debian
lock (a Python base) and a py_image. The test builds both images, pushes them to a real
registry, loads them into a real dockerd and runs them.
"""

import os
import re
import shutil
import subprocess

import pytest

from checkout import copy_checkout, remove_tree
from conftest import REPO_ROOT, Bazel

def readme_block(marker):
    """The fenced code block right after `<!-- consumer:MARKER -->` in README.md."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- consumer:%s -->\n```python\n(.*?)```\n" % re.escape(marker), text, re.S)
    if not m:
        pytest.fail("README.md has no ```python block after <!-- consumer:%s -->" % marker, pytrace=False)
    return m.group(1)


APP_MAIN = '''"""The consumer's own Python program."""
from absl import app


def main(argv):
    print("consumer ok: " + " ".join(argv[1:]))


if __name__ == "__main__":
    app.run(main)
'''

HELLO_C = '#include <stdio.h>\nint main(void) { puts("hello from a consumer"); return 0; }\n'

# The consumer's own additions: a static hello, its own wheels and Debian packages, a py_image.
CONSUMER_BUILD_EXTRA = '''
load("@rules_cc//cc:defs.bzl", "cc_binary")
load("@rules_python//python:defs.bzl", "py_binary")
load("@rules_shiko//rules:defs.bzl", "distroless_base", "py_image")

cc_binary(
    name = "hello",
    srcs = ["hello.c"],
    features = ["fully_static_link"],
    linkopts = ["-static"],
    linkstatic = True,
)

distroless_base(
    name = "python_base",
    architecture = "amd64",
    groups = {"libc": ["base-files", "libc6", "libgcc-s1", "gcc-12-base"], "rest": ["*"]},
    packages = "@consumer_debs//:amd64",
    user = "nonroot",
)

py_binary(
    name = "app",
    srcs = ["app.py"],
    deps = ["@consumer_pip//absl_py"],
)

py_image(
    name = "py",
    binary = ":app",
    base = ":python_base",
    args = ["from", "py_image"],
    repo_tags = ["consumer/py:latest"],
)
'''

CONSUMER_WORKSPACE_EXTRA = '''
load("@rules_shiko//rules:repositories.bzl", "deb_repository", "pip_lock_repository")

pip_lock_repository(
    name = "consumer_pip",
    platforms = ["manylinux2014_x86_64"],
    requirements_lock = "//:requirements_lock.txt",
)

deb_repository(
    name = "consumer_debs",
    lock = "//:packages.lock.json",
)
'''


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    """(Bazel of the consumer workspace, its path); both removed afterwards."""
    work = str(tmp_path_factory.mktemp("consumer"))
    shiko = copy_checkout(REPO_ROOT, os.path.join(work, "rules_shiko"))
    ws = os.path.join(work, "app")
    os.makedirs(ws)
    workspace = readme_block("WORKSPACE").replace("/path/to/rules_shiko", shiko)
    with open(os.path.join(ws, "WORKSPACE"), "w") as f:
        f.write('workspace(name = "consumer")\n\n' + workspace + CONSUMER_WORKSPACE_EXTRA)
    build = readme_block("BUILD")
    with open(os.path.join(ws, "BUILD.bazel"), "w") as f:
        f.write(build + CONSUMER_BUILD_EXTRA)
    with open(os.path.join(ws, "hello.c"), "w") as f:
        f.write(HELLO_C)
    with open(os.path.join(ws, "app.py"), "w") as f:
        f.write(APP_MAIN)
    # The consumer's own locks: absl-py pinned with its hash; Debian packages for a Python base.
    with open(os.path.join(REPO_ROOT, "examples/python_app/requirements_lock.txt")) as f:
        lock = f.read()
    absl = re.search(r"^absl-py==.*?(?=^\S|\Z)", lock, re.S | re.M).group(0)
    with open(os.path.join(ws, "requirements_lock.txt"), "w") as f:
        f.write(absl)
    for name in ("packages.json", "packages.lock.json"):
        shutil.copy(os.path.join(REPO_ROOT, "examples/distroless", name), os.path.join(ws, name))
    # The README's .bazelrc lines, and plain Bazel (Debian's 4.2.3 here), not our ./bazelw.
    with open(os.path.join(ws, ".bazelrc"), "w") as f:
        f.write(readme_block("bazelrc"))
    with open(os.path.join(ws, "bazelw"), "w") as f:
        f.write('#!/bin/sh\nexec "${SHIKO_BAZEL:-bazel-4}" "$@"\n')
    os.chmod(os.path.join(ws, "bazelw"), 0o755)
    bazel = Bazel(ws)
    out_base = os.path.join(work, "ob")
    yield bazel, ws, ["--output_base=" + out_base]
    bazel("shutdown", startup=["--output_base=" + out_base], check=False)
    remove_tree(work)


def test_consumer_builds_pushes_loads_and_runs(consumer, registry, dockerd):
    bazel, ws, startup = consumer
    res = bazel("build", "//:image", "//:py", "//:load", "//:push", startup=startup)
    assert "Build completed successfully" in res.stderr

    # Push to the real registry; the pushed digest is the image's .digest.
    bin_dir = bazel.info("bazel-bin", startup=startup)
    res = bazel("run", "//:push", "--", "--repository=%s/consumer/hello" % registry.host, startup=startup)
    with open(os.path.join(bin_dir, "image.digest")) as f:
        digest = f.read().strip()
    assert res.stdout.strip().splitlines()[-1] == "%s/consumer/hello@%s" % (registry.host, digest)

    # Load: image_load has no repo_tags of its own, so the image's name is used.
    env = dict(dockerd.env)
    env.pop("CONTAINERS_CONF", None)
    res = bazel("run", "//:load", startup=startup, env=env)
    assert "Loaded image: example/hello:latest" in res.stdout, res.stdout + res.stderr
    run = dockerd.docker("run", "--rm", "--network", "none", "example/hello:latest")
    assert run.stdout == "hello from a consumer\n"

    # The py_image: the consumer's wheel on the consumer's distroless base, loaded as a tarball.
    bazel("build", "//:py", "--output_groups=+tarball", startup=startup)
    tar = os.path.join(bin_dir, "py.tar")
    dockerd.docker("load", "-i", tar)
    run = dockerd.docker("run", "--rm", "--network", "none", "consumer/py:latest")
    assert run.stdout == "consumer ok: from py_image\n", run.stdout + run.stderr
    # Stable paths: the consumer's files at workspace-relative paths, wheels under external/.
    cfg = dockerd.docker("image", "inspect", "--format", "{{json .Config.Entrypoint}}", "consumer/py:latest").stdout
    assert cfg.strip() == '["/usr/bin/python3","/app/app.py"]', cfg


def test_consumer_pushes_the_py_image(consumer, registry):
    bazel, ws, startup = consumer
    with open(os.path.join(ws, "BUILD.bazel"), "a") as f:
        f.write('\nimage_push(name = "push_py", image = ":py", remote_tags = ["v1"])\n')
    res = bazel("run", "//:push_py", "--", "--repository=%s/consumer/py" % registry.host, startup=startup)
    bin_dir = bazel.info("bazel-bin", startup=startup)
    with open(os.path.join(bin_dir, "py.digest")) as f:
        digest = f.read().strip()
    assert res.stdout.strip().splitlines()[-1] == "%s/consumer/py@%s" % (registry.host, digest)
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                          "docker://%s/consumer/py:v1" % registry.host],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    assert out.returncode == 0, out.stderr


def test_a_second_output_base_needs_no_package_index(consumer, tmp_path):
    """Pinned wheels come from Bazel's repository cache by sha256: a new output base fetches
    every pip_lock_repository (rules_shiko's own and the consumer's) with the index unreachable."""
    bazel, ws, startup = consumer
    bin_dir = bazel.info("bazel-bin", startup=startup)
    with open(os.path.join(bin_dir, "py.digest")) as f:
        want = f.read().strip()
    other = ["--output_base=" + str(tmp_path / "ob2")]
    env = dict(os.environ, PIP_INDEX_URL="http://127.0.0.1:9/simple", PIP_RETRIES="0", PIP_TIMEOUT="2",
               PIP_NO_INDEX="1")
    try:
        bazel("build", "//:py", startup=other, env=env)
        with open(os.path.join(bazel.info("bazel-bin", startup=other, env=env), "py.digest")) as f:
            assert f.read().strip() == want
    finally:
        bazel("shutdown", startup=other, check=False)
