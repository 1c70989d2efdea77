"""Remote execution on a real REAPI engine: BuildGrid 0.4.4 + PostgreSQL + two tests/remote/bot.py
workers (services.RemoteExecution), each action in a fresh directory under bwrap with the host's
python3 hidden.

Each "machine" is a fresh `--output_user_root` on a snapshot of this checkout (the repository
cache is shared: fetching is not what is measured), building with the project's
`--config=remote --remote_executor=grpc://127.0.0.1:PORT`.

- Shell-only genrules and //examples/static_c:hello (gcc compile + static link) run remotely
  (Bazel's process summary: only `remote` and `internal`), with outputs byte-identical to a
  local build's; a probe action sees no python3 on the workers.
- Two slow actions run on both bots at once; one bot is SIGKILLed mid-action: BuildGrid reaps its
  session and requeues the lease, the other bot runs it, and the build succeeds.
- With the host's python3 left visible to the workers (a diagnostic), every action of
  //examples/static_c:image (layer, image, layout, tarball, SBOM, report) runs remotely with the
  local digest: the engine and the rules' inputs are complete; only the tools' interpreter is
  missing on a python-less worker (docs/remote-execution.md, "Status").
"""

import hashlib
import os
import threading
import time

import pytest

import services
from checkout import copy_checkout, remove_tree
from conftest import REPO_ROOT, Bazel
from test_remote_cache import processes

LOCAL_KINDS = ("worker", "linux-sandbox", "processwrapper-sandbox", "local", "sandbox")
SHELL_TARGETS = ["//tests/remote:hello_sh", "//tests/remote:python_probe"]
HELLO = "//examples/static_c:hello"
IMAGE = "//examples/static_c:image"
IMAGE_GROUPS = "--output_groups=+layout,+tarball,+sbom,+report"


class Machine:
    """One fresh Bazel output user root on the shared checkout snapshot."""

    def __init__(self, src, root, repo_cache):
        self.bazel = Bazel(src)
        self.startup = ["--output_user_root=" + root]
        self.repo_cache = repo_cache

    def build(self, *args, check=True):
        started = time.monotonic()
        res = self.bazel("build", "--color=no", "--curses=no", "--repository_cache=" + self.repo_cache,
                         *args, startup=self.startup, check=check)
        res.seconds = time.monotonic() - started
        return res

    def remote_build(self, rex, *args, check=True):
        return self.build("--config=remote", "--remote_executor=" + rex.url,
                          "--remote_instance_name=" + rex.instance, "--remote_download_toplevel",
                          *args, check=check)

    def bin(self, path):
        return os.path.join(self.bazel.info("bazel-bin", startup=self.startup), path)

    def read(self, path):
        with open(self.bin(path), "rb") as f:
            return f.read()

    def shutdown(self):
        self.bazel("shutdown", startup=self.startup, check=False)


def assert_all_remote(res, at_least):
    kinds = processes(res.stderr)
    assert not set(kinds) & set(LOCAL_KINDS), "actions ran on this machine: %r" % kinds
    assert kinds.get("remote", 0) >= at_least, "expected >= %d remote actions: %r" % (at_least, kinds)
    return kinds


@pytest.fixture(scope="module")
def machines(tmp_path_factory, bazel):
    work = str(tmp_path_factory.mktemp("rex"))
    src = copy_checkout(REPO_ROOT, os.path.join(work, "src"))
    repo_cache = bazel.info("repository_cache")
    made = []

    def machine(name):
        m = Machine(src, os.path.join(work, name), repo_cache)
        made.append(m)
        return m

    try:
        yield machine
    finally:
        for m in made:
            m.shutdown()
        remove_tree(work)


@pytest.fixture(scope="module")
def local(machines):
    """The reference: the same targets built on this machine."""
    m = machines("local")
    res = m.build(*SHELL_TARGETS, HELLO, IMAGE, IMAGE_GROUPS)
    print("local build: %.1fs, %r" % (res.seconds, processes(res.stderr)))
    return m


@pytest.fixture(scope="module")
def rex():
    with services.RemoteExecution(bots=2) as r:
        yield r


def test_shell_and_c_actions_run_remotely_with_local_outputs(machines, local, rex):
    m = machines("remote")
    res = m.remote_build(rex, *SHELL_TARGETS, HELLO)
    kinds = assert_all_remote(res, 4)  # two genrules, the compile, the link
    print("remote build: %.1fs, %r (load %s)" % (res.seconds, kinds, open("/proc/loadavg").read().strip()))

    assert m.read("tests/remote/hello_sh.txt") == local.read("tests/remote/hello_sh.txt") == b"hello from a shell\n"
    remote_hello = m.read("examples/static_c/hello")
    assert hashlib.sha256(remote_hello).hexdigest() == hashlib.sha256(local.read("examples/static_c/hello")).hexdigest()
    assert len(remote_hello) > 100000  # a real static binary

    # The workers hide the host's python3; this machine has it.
    assert m.read("tests/remote/python_probe.txt") == b"python3: hidden\nstdlib entries: 0\n"
    here = local.read("tests/remote/python_probe.txt").decode()
    assert here.startswith("python3: runs\n") and not here.endswith("entries: 0\n"), here
    # The bots ran them (each logs one line per lease it completed).
    assert sum(len(b.leases()) for b in rex.bots) >= 4


def test_two_bots_and_one_killed_mid_action(machines):
    with services.RemoteExecution(bots=2) as r:
        m = machines("killed")
        outcome = {}
        build = threading.Thread(target=lambda: outcome.update(
            res=m.remote_build(r, "//tests/remote:slow_a", "//tests/remote:slow_b", check=False)))
        build.start()
        # Both bots busy at the same time: the two actions run concurrently.
        deadline = time.monotonic() + 300
        while not all(b.busy() for b in r.bots):
            assert build.is_alive(), "the build ended before both bots ran: %s" % outcome["res"].stderr[-3000:]
            assert time.monotonic() < deadline, "the two bots never ran at the same time"
            time.sleep(0.2)
        victim, survivor = r.bots
        victim.kill()
        killed_at = time.monotonic()
        build.join(timeout=600)
        assert not build.is_alive(), "the build did not finish after a bot was killed"
        res = outcome["res"]
        assert res.returncode == 0, res.stderr[-4000:]
        print("build finished %.1fs after the kill" % (time.monotonic() - killed_at))
        assert_all_remote(res, 2)
        assert m.read("tests/remote/slow_a.txt") == b"slow a done\n"
        assert m.read("tests/remote/slow_b.txt") == b"slow b done\n"
        # The survivor ran its own action and the killed bot's (requeued by BuildGrid).
        assert len(survivor.leases()) == 2, survivor.log_tail()
        assert victim.leases() == [], victim.log_tail()


def test_static_c_image_remote_when_workers_show_python(machines, local):
    """Diagnostic until the tools carry their own interpreter (issue #16, parts 1-2): with the
    host's python3 visible to the workers, every action of the image runs remotely and the image
    digest is the local one."""
    with services.RemoteExecution(bots=2, hide_python=False) as r:
        m = machines("remote-python")
        res = m.remote_build(r, IMAGE, IMAGE_GROUPS)
        kinds = assert_all_remote(res, 8)  # compile, link, layer, image, layout, tarball, sbom, report
        print("remote image build: %.1fs, %r" % (res.seconds, kinds))
        for out in ("image.digest", "image.config.json", "image.manifest.json"):
            assert m.read("examples/static_c/" + out) == local.read("examples/static_c/" + out), out
