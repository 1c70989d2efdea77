"""`bazel run //examples/static_c:load` into a real dockerd and a real podman, each started by the
test itself (private socket / private storage), then `docker run` / `podman run` of the result.

A second load of the same image must transfer nothing. Two signals show it: the tool's summary
("already present ... 0 bytes sent"), and, independently, the engine's own event log: dockerd
records an image `load` event for every POST /images/load (`docker events`), podman a
`loadfromarchive` event for every `podman load` (`podman events`). The second run adds none.

DOCKER_HOST and CONTAINERS_CONF/CONTAINERS_STORAGE_CONF reach the program through `bazel run`
(the client runs it in its own environment; --incompatible_strict_action_env only concerns
actions), which the loads into the private engines below prove.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

import services

TARGET = "//examples/static_c:load"
REPO_TAG = "rules_shiko/static_c:latest"
EXPECTED_OUTPUT = "hello from rules_shiko\n"


@pytest.fixture
def private_dockerd():
    with services.Dockerd() as d:
        yield d


@pytest.fixture
def private_podman():
    with services.Podman() as p:
        yield p


def bazel_run(bazel, env, *flags, check=True):
    args = ["run", "--color=no", "--curses=no", TARGET]
    if flags:
        args += ["--"] + list(flags)
    return bazel(*args, env=env, check=check)


def docker_env(d):
    env = dict(d.env)
    env.pop("CONTAINERS_CONF", None)
    return env


def docker_image_events(d, since):
    out = d.docker("events", "--since", str(since), "--until", str(int(time.time()) + 1),
                   "--filter", "type=image", "--format", "{{.Action}} {{.Actor.Attributes.name}}").stdout
    return out.splitlines()


def output_lines(res):
    return [l for l in res.stdout.splitlines() if l.strip()]


def error_lines(res):
    return [l for l in res.stderr.splitlines() if l.startswith("ERROR:")]


def test_bazel_run_loads_into_docker_and_a_second_load_transfers_nothing(bazel, static_c_image, private_dockerd):
    d = private_dockerd
    env = docker_env(d)
    config = static_c_image.config_digest
    since = int(time.time()) - 1

    res = bazel_run(bazel, env)
    out = output_lines(res)
    assert out[:2] == ["Loaded image: " + REPO_TAG, "Image ID: " + config], res.stdout + res.stderr
    m = re.match(r"Transfer: (\d+) bytes streamed to docker at unix://%s \(3 blobs\)" % re.escape(d.socket_path), out[2])
    assert m, out
    assert int(m.group(1)) > 100000  # the static binary's layer went over the socket
    assert d.docker("image", "inspect", "--format", "{{.Id}}", REPO_TAG).stdout.strip() == config
    run = d.docker("run", "--rm", "--network", "none", REPO_TAG)
    assert run.stdout == EXPECTED_OUTPUT and run.stderr == ""
    events = docker_image_events(d, since)
    assert [e for e in events if e.startswith("load ")] == ["load " + config], events

    # Second run: nothing is sent; the daemon logs no load, only (re-)tags.
    time.sleep(1.1)  # event times have one-second resolution
    since2 = int(time.time())
    res = bazel_run(bazel, env, "--add_repo_tag=rules_shiko/static_c:e2e")
    out = output_lines(res)
    assert out == [
        "Loaded image: " + REPO_TAG,
        "Loaded image: rules_shiko/static_c:e2e",
        "Image ID: " + config,
        "Transfer: none, image already present in docker at unix://%s: re-tagged, 0 bytes sent" % d.socket_path,
    ], res.stdout + res.stderr
    events = docker_image_events(d, since2)
    assert not [e for e in events if e.startswith("load ")], events
    assert "tag rules_shiko/static_c:e2e" in events, events
    assert d.docker("image", "inspect", "--format", "{{.Id}}", "rules_shiko/static_c:e2e").stdout.strip() == config
    run = d.docker("run", "--rm", "--network", "none", "rules_shiko/static_c:e2e")
    assert run.stdout == EXPECTED_OUTPUT


def test_bazel_run_loads_into_podman_and_a_second_load_transfers_nothing(bazel, static_c_image, private_podman):
    p = private_podman
    env = dict(p.env)
    env.pop("DOCKER_HOST", None)
    config = static_c_image.config_digest

    res = bazel_run(bazel, env, "--engine", "podman")
    out = output_lines(res)
    assert out[:2] == ["Loaded image: " + REPO_TAG, "Image ID: " + config], res.stdout + res.stderr
    assert re.match(r"Transfer: \d+ bytes streamed to podman \(/\S+/podman\) \(3 blobs\)", out[2]), out
    names = json.loads(p.podman("image", "inspect", "--format", "{{json .RepoTags}}", REPO_TAG).stdout)
    assert names == ["docker.io/" + REPO_TAG], names
    run = p.podman("run", "--rm", "--network", "none", REPO_TAG)
    assert run.stdout == EXPECTED_OUTPUT

    def loads():
        return p.podman("events", "--stream=false", "--filter", "type=image",
                        "--format", "{{.Status}}").stdout.split().count("loadfromarchive")

    assert loads() == 1
    res = bazel_run(bazel, env, "--engine=podman")
    out = output_lines(res)
    assert out[-1].startswith("Transfer: none, image already present in podman"), res.stdout + res.stderr
    assert out[:2] == ["Loaded image: " + REPO_TAG, "Image ID: " + config], out
    assert loads() == 1


def test_unreachable_docker_daemon_is_one_clear_line(bazel, static_c_image):
    d = tempfile.mkdtemp(prefix="shiko-nodocker-", dir="/tmp")
    try:
        sock = os.path.join(d, "docker.sock")
        env = dict(os.environ, DOCKER_HOST="unix://" + sock)
        res = bazel_run(bazel, env, check=False)
    finally:
        shutil.rmtree(d)
    assert res.returncode != 0
    assert error_lines(res) == [
        "ERROR: %s: cannot reach the Docker daemon at unix://%s (from DOCKER_HOST, no such socket): "
        "start dockerd there, or point DOCKER_HOST at a running daemon, or use --engine=podman" % (TARGET, sock)
    ], res.stderr
    assert "Traceback" not in res.stderr
    assert "Loaded image" not in res.stdout


def test_missing_podman_is_one_clear_line(bazel, static_c_image, tmp_path):
    """`--engine podman` on a PATH without podman: the launcher `bazel run` runs, run directly."""
    bazel("build", TARGET)
    launcher = os.path.join(bazel.info("bazel-bin"), "examples", "static_c", "load")
    empty = tmp_path / "bin"
    empty.mkdir()
    env = {"PATH": str(empty), "HOME": os.environ.get("HOME", "/root")}
    res = subprocess.run([launcher, "--engine", "podman"], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.splitlines() == [
        "ERROR: %s: --engine=podman: podman is not on PATH (PATH=%s): install podman "
        "(e.g. apt-get install podman) or use --engine=docker" % (TARGET, empty)
    ], res.stderr


def test_bad_tag_fails_the_build_with_one_line(bazel):
    res = bazel("build", "--color=no", "--curses=no", "//tests/load:bad_tag", check=False)
    assert res.returncode != 0
    lines = [l for l in res.stderr.splitlines() if l.startswith("ERROR: //tests/load:bad_tag: ")]
    assert lines == ["ERROR: //tests/load:bad_tag: attribute 'repo_tags': 'Rules_Shiko/Static_C:1': "
                     "repository name must be lowercase"], res.stderr
    assert "Traceback" not in res.stderr
    bin_dir = os.path.join(bazel.info("bazel-bin"), "tests", "load")
    assert not os.path.exists(os.path.join(bin_dir, "bad_tag.load_run.json"))


def test_stamped_tags_are_expanded_at_build_time(bazel):
    bazel("build", "//tests/load:stamped")
    path = os.path.join(bazel.info("bazel-bin"), "tests", "load", "stamped.load_run.json")
    with open(path) as f:
        run_manifest = json.load(f)
    assert run_manifest["target"] == "//tests/load:stamped"
    (tag,) = run_manifest["repo_tags"]
    m = re.match(r"^rules_shiko/static_c:ts-(\d+)$", tag)
    assert m, tag
    # The build's own time: at most minutes before the action wrote its output. (Not "now": an
    # output base that built it earlier keeps that result, since Bazel does not re-run a stamped
    # action for a new BUILD_TIMESTAMP alone.)
    written = os.stat(path).st_mtime
    assert 0 <= written - int(m.group(1)) < 3600 and written <= time.time() + 5, (tag, written)


def test_image_load_defaults_to_the_images_repo_tags(bazel):
    bazel("build", "//tests/load:default_tags")
    path = os.path.join(bazel.info("bazel-bin"), "tests", "load", "default_tags.load_run.json")
    with open(path) as f:
        run_manifest = json.load(f)
    assert run_manifest["repo_tags"] == ["rules_shiko/named:1"], run_manifest
