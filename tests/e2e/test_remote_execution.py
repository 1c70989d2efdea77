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
- //examples/... with every output group (layout, tarball, SBOM, report) builds on three
  python-less bots from a fresh output root: every action runs remotely (the rules_shiko tools
  on their own Python from locked Debian packages, python_tools/interpreter/), and every image
  and index digest equals a local build's. One bot is SIGKILLed while it runs a rules_shiko
  tool; the build still succeeds with the same digests.
- After that remote build, `bazel run --config=remote` of :push and :load work on the same
  machine (the layers stream from the engine's CAS).
"""

import hashlib
import os
import re
import threading
import time
import urllib.request

import pytest

import services
from checkout import copy_checkout, remove_tree
from conftest import REPO_ROOT, Bazel
from machines import Machine, processes

LOCAL_KINDS = ("worker", "linux-sandbox", "processwrapper-sandbox", "local", "sandbox")
SHELL_TARGETS = ["//tests/remote:hello_sh", "//tests/remote:python_probe"]
HELLO = "//examples/static_c:hello"
IMAGE_GROUPS = "--output_groups=+layout,+tarball,+sbom,+report"


def remote_build(m, rex, *args, check=True):
    """A build of machine `m` on the engine `rex`, its outputs downloaded."""
    return m.build("--config=remote", "--remote_executor=" + rex.url,
                   "--remote_instance_name=" + rex.instance, "--remote_download_toplevel",
                   *args, check=check)


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
        m = Machine(Bazel(src), os.path.join(work, name), ["--repository_cache=" + repo_cache])
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
    res = m.build(*SHELL_TARGETS, "//examples/...", IMAGE_GROUPS)
    print("local build: %.1fs, %r" % (res.seconds, processes(res.stderr)))
    return m


@pytest.fixture(scope="module")
def rex():
    with services.RemoteExecution(bots=2) as r:
        yield r


def test_shell_and_c_actions_run_remotely_with_local_outputs(machines, local, rex):
    m = machines("remote")
    res = remote_build(m, rex, *SHELL_TARGETS, HELLO)
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
            res=remote_build(m, r, "//tests/remote:slow_a", "//tests/remote:slow_b", check=False)))
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


# Every image and index of the examples: the digest a remote build must reproduce.
DIGESTS = [
    "examples/static_c/image.digest",
    "examples/static_c/index.digest",
    "examples/distroless/python3.digest",
    "examples/distroless/python3_arm64.digest",
    "examples/distroless/index.digest",
    "examples/python_app/image.digest",
    "examples/python_app/index.digest",
]
TOOL_LAUNCHER = re.compile(r"(^|/)bin/python_tools/\w+_hermetic\.exec$")


def registry_digest(registry, repo, tag):
    """The manifest digest the registry serves for repo:tag."""
    req = urllib.request.Request("%s/v2/%s/manifests/%s" % (registry.url, repo, tag), method="HEAD", headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.headers["Docker-Content-Digest"]


@pytest.fixture(scope="module")
def remote_examples(machines, local):
    """//examples/... with every output group on an engine whose three bots hide the host's
    python3, from a fresh output root; one bot is SIGKILLed while it runs a rules_shiko tool.
    Yields (machine, engine, build result, the program the killed bot was running)."""
    with services.RemoteExecution(bots=3) as r:
        m = machines("remote-examples")
        outcome = {}
        build = threading.Thread(target=lambda: outcome.update(
            res=remote_build(m, r, "//examples/...", IMAGE_GROUPS, check=False)))
        build.start()
        killed = None
        while build.is_alive() and killed is None:
            for b in r.bots:
                program = b.running()
                if program and TOOL_LAUNCHER.search(program):
                    b.kill()
                    killed = (b, program)
                    break
            time.sleep(0.02)
        build.join(timeout=1800)
        assert not build.is_alive(), "the remote build of //examples/... did not finish"
        yield m, r, outcome["res"], killed


def test_every_example_builds_remotely_on_python_less_workers(remote_examples, local):
    m, r, res, _ = remote_examples
    assert res.returncode == 0, res.stderr[-6000:]
    # ~95 actions, none a cache hit (each deb_layer unpacks its packages in its layer action:
    # no separate deb action since session 7).
    kinds = assert_all_remote(res, 90)
    print("remote build of //examples/...: %.1fs, %r (load %s)" % (
        res.seconds, kinds, open("/proc/loadavg").read().strip()))
    for path in DIGESTS:
        assert m.read(path) == local.read(path), path
    # The tools ran on the bots (which hide /usr/bin/python3* and /usr/lib/python3*) through
    # their own interpreter: every lease that ran a rules_shiko tool finished with exit 0.
    tool_runs = [l for b in r.bots for l in open(b.log_path).read().splitlines()
                 if ": run " in l and TOOL_LAUNCHER.search(l.split(": run ", 1)[1])]
    assert len(tool_runs) >= 40, tool_runs
    failed = [l for b in r.bots for l in b.leases() if ": exit 0 " not in l]
    assert failed == [], failed


def test_a_bot_killed_mid_tool_action_does_not_fail_the_build(remote_examples, local):
    m, r, res, killed = remote_examples
    assert killed is not None, "no bot was seen running a rules_shiko tool"
    victim, program = killed
    print("killed %s while it ran %s" % (victim.bot_id, program))
    assert victim.proc.poll() is not None
    # The build succeeded anyway (BuildGrid requeued the lease on another bot), with the local
    # digests (test above); the victim never reported the action it was running.
    assert res.returncode == 0, res.stderr[-6000:]
    assert victim.running() == program
    for path in DIGESTS:
        assert m.read(path) == local.read(path), path


def test_push_and_load_after_a_remote_build(remote_examples, local, registry, dockerd):
    """`bazel run --config=remote` of :push and :load on the machine that built remotely: the
    layers it never downloaded stream from the engine's CAS (--//settings:remote_cache)."""
    m, r, _, _ = remote_examples
    flags = ["--config=remote", "--remote_executor=" + r.url, "--remote_instance_name=" + r.instance,
             "--//settings:remote_cache=%s/%s" % (r.url, r.instance)]
    digest = local.read("examples/python_app/image.digest").decode().strip()
    repo = "%s/rex/python_app" % registry.host
    res = m.run(*flags, "//examples/python_app:push", "--", "--repository=" + repo)
    pushed = registry_digest(registry, "rex/python_app", "latest")
    assert pushed == digest, (pushed, digest, res.stderr[-2000:])

    env = dict(dockerd.env)
    env.pop("CONTAINERS_CONF", None)
    try:
        dockerd.docker("rmi", "-f", "rules_shiko/python_app:latest")
    except services.ServiceError:
        pass  # not there
    res = m.run(*flags, "//examples/python_app:load", env=env)
    assert "Loaded image: rules_shiko/python_app:latest" in res.stdout, res.stdout + res.stderr
    run = dockerd.docker("run", "--rm", "--network", "none", "rules_shiko/python_app:latest", "--selftest")
    assert run.stdout.strip() == "python_app ok", run.stdout + run.stderr
