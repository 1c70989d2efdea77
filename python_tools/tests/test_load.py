"""Tests of python_tools/load.py and shiko/engines/ (and the archive stream of docker_archive.py it
shares with the tarball tool): the streamed bytes, tag handling, and real loads into a private
dockerd (over its unix socket, and over TCP through a forwarder) and a private podman.

How "a second load transfers nothing" is known, independently of the tool's own summary: the
engine's event log. dockerd records an image `load` event per `POST /images/load` (read with the
docker CLI), podman a `loadfromarchive` event per `podman load`; a second run must add none.

Engines are the real ones, started privately; a test fails (never skips) when one cannot start.
"""

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import pytest

from python_tools.shiko.engines import discovery, docker_api, image_load, podman
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import sha256_file
from python_tools.shiko.oci import docker_archive
from python_tools.tests import engines
from python_tools.tests.engines import build_image, build_tarball, image_manifest, layout_manifest, make_layer

TARGET = "//test:load"
EXPECTED_OUTPUT = "hello from a loaded image\n"


@pytest.fixture
def work(tmp_path):
    return str(tmp_path)


def busybox_image(work, name="app", greeting="hello from a loaded image"):
    """A runnable image (static busybox, prints `greeting`); returns (layout, config digest)."""
    base = make_layer(work, name + "_busybox", {
        "bin": ("dir",), "bin/busybox": (engines.busybox_bytes(), 0o755), "bin/sh": ("symlink", "busybox"),
    })
    app = make_layer(work, name + "_app", {"app": ("dir",), "app/greeting.txt": (greeting + "\n").encode()})
    layout, _, _ = build_image(work, name, image_manifest(
        layers=[base, app], entrypoint=["/bin/busybox", "cat"], cmd=["/app/greeting.txt"], env={"PATH": "/bin"}))
    return layout, layout_manifest(layout)[1]["config"]["digest"]


def tool_env(env):
    """env with the checkout first on PYTHONPATH (keeping the test's own path: absl etc.)."""
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([engines.REPO_ROOT] + [p for p in sys.path if p])
    return env


def run_manifest(work, tags, name="run.json"):
    return engines.write_json(os.path.join(work, name), {"target": TARGET, "repo_tags": list(tags)})


def run_load(work, layout, tags, env, *flags, name="run.json"):
    """Runs the load tool's run-time mode; returns CompletedProcess."""
    argv = [sys.executable, "-m", "python_tools.load", "--run_manifest=" + run_manifest(work, tags, name),
            "--layout=" + layout] + list(flags)
    return subprocess.run(argv, cwd=work, env=tool_env(env), capture_output=True, text=True, timeout=600)


def ok(proc):
    assert proc.returncode == 0, "load failed (%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout.splitlines()


def one_error_line(proc, *fragments):
    assert proc.returncode == 1, "expected exit 1, got %d:\n%s%s" % (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ERROR: %s: " % TARGET), lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def docker_env(d):
    env = d.env()
    for k in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        env.pop(k, None)
    return env


def docker_load_events(d, since):
    r = d.docker("events", "--since", str(since), "--until", str(int(time.time()) + 1),
                 "--filter", "type=image", "--format", "{{.Action}} {{.Actor.Attributes.name}}")
    return r.stdout.splitlines()


def podman_events(p):
    return p.run("events", "--stream=false", "--filter", "type=image", "--format", "{{.Status}}").stdout.split()


# --- The stream -----------------------------------------------------------------------------


def test_stream_is_byte_for_byte_the_tarball_tools_output(work):
    layer = make_layer(work, "a", {"a.txt": b"a\n"})
    layer2 = make_layer(work, "b", {"b.txt": b"b\n"})
    layout, _, _ = build_image(work, "layout", image_manifest(layers=[layer, layer2], cmd=["x"]))
    for tags in (["rules_shiko/static_c:latest", "localhost:5000/team/app:1"], ["one"], []):
        tar, _ = build_tarball(work, layout, tags, name="t.tar")
        refs = docker_archive.resolve_tags(tags, None, TARGET)
        out = io.BytesIO()
        n = docker_archive.Archive(layout, refs, TARGET).write(out)
        assert out.getvalue() == open(tar, "rb").read(), tags
        assert n == len(out.getvalue())


class _Recorder(object):
    """A write-only sink (no tell, no seek): what a socket or a pipe offers."""

    def __init__(self):
        self.sizes = []
        self.h = hashlib.sha256()

    def write(self, b):
        self.sizes.append(len(b))
        self.h.update(b)
        return len(b)


def test_stream_needs_only_write_and_sends_blobs_in_large_pieces(work):
    big = os.urandom(3 << 20)
    layer = make_layer(work, "big", {"big.bin": big})
    layout, _, _ = build_image(work, "layout", image_manifest(layers=[layer]))
    tar, _ = build_tarball(work, layout, ["x:1"])
    rec = _Recorder()
    docker_archive.Archive(layout, [docker_archive.parse_reference("x:1", TARGET)], TARGET).write(rec)
    assert rec.h.hexdigest() == sha256_file(tar)[0]
    assert max(rec.sizes) == docker_archive.COPY_BUFFER  # blobs are copied 1 MiB at a time


# Runs argv[2:] and writes its peak RSS (KiB) to argv[1]. A small fresh interpreter forks it:
# Linux keeps the highest RSS across exec, so forking from the (bigger) test process would count
# the test's memory too.
RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_large_layer_streams_into_docker_without_temp_files_or_memory_growth(work):
    """A 160 MiB layer goes to dockerd with the tool's memory far below that, nothing on disk."""
    size = 160 << 20
    raw = os.path.join(work, "big.tar")
    chunk = bytes(range(256)) * 4096  # 1 MiB
    with open(raw, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as t:
            ti = tarfile.TarInfo("big.bin")
            ti.size = size

            class Zeroish(object):
                def __init__(self):
                    self.left = size

                def read(self, n):
                    n = min(n, self.left, len(chunk))
                    self.left -= n
                    return chunk[:n]

            t.addfile(ti, Zeroish())
    os.chmod(raw, 0o444)
    digest, blob_size = sha256_file(raw)
    desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + digest,
            "size": blob_size, "diff_id": "sha256:" + digest, "compression": "none", "compressor": "none"}
    layer = {"blob": raw, "descriptor": engines.write_json(os.path.join(work, "big.json"), desc), "label": "//test:big"}
    layout, _, _ = build_image(work, "layout", image_manifest(layers=[layer], cmd=["/big.bin"]))
    tmp = os.path.join(work, "tmp")
    os.makedirs(tmp)
    with engines.Dockerd(work) as d:
        env = docker_env(d)
        env["TMPDIR"] = tmp
        argv = [sys.executable, "-m", "python_tools.load", "--run_manifest=" + run_manifest(work, ["big:1"]),
                "--layout=" + layout]
        env = tool_env(env)
        before = sorted(os.listdir(work))
        rss_file = os.path.join(tmp, "..", "maxrss")
        p = subprocess.run([sys.executable, "-c", RSS_WRAPPER, rss_file] + argv, cwd=work, env=env,
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stdout + p.stderr
        sent = int(p.stdout.split("Transfer: ", 1)[1].split(" bytes", 1)[0])
        assert sent > size
        maxrss = int(open(rss_file).read())
        os.unlink(rss_file)
        assert maxrss < 60 * 1024, "max RSS %d KiB" % maxrss  # KiB on Linux
        assert os.listdir(tmp) == []
        assert sorted(os.listdir(work)) == before
        assert d.docker("image", "inspect", "--format", "{{.Size}}", "big:1").stdout.strip() == str(size)


# --- Tags -----------------------------------------------------------------------------------


def build_mode(work, manifest):
    m = engines.write_json(os.path.join(work, "m.json"), manifest)
    out = os.path.join(work, "r.json")
    env = tool_env(os.environ)
    proc = subprocess.run([sys.executable, "-m", "python_tools.load", "--manifest=" + m, "--output_run_manifest=" + out],
                          cwd=work, env=env, capture_output=True, text=True)
    return proc, out


def test_build_mode_expands_stamps_and_checks_tags(work):
    info = os.path.join(work, "stable-status.txt")
    version = os.path.join(work, "volatile-status.txt")
    open(info, "w").write("STABLE_VERSION 1.2.3\nSTABLE_REPO team/app\n")
    open(version, "w").write("BUILD_TIMESTAMP 1700000000\n")
    stamp = {"info_file": info, "version_file": version}
    tags = ["{STABLE_REPO}:{STABLE_VERSION}", "x:ts-{BUILD_TIMESTAMP}", "plain", "plain:latest"]
    proc, out = build_mode(work, {"target": TARGET, "repo_tags": tags, "stamp": stamp})
    assert proc.returncode == 0, proc.stderr
    assert engines.read_json(out) == {"target": TARGET, "repo_tags": ["team/app:1.2.3", "x:ts-1700000000", "plain:latest"]}

    proc, out = build_mode(work, {"target": TARGET, "repo_tags": tags, "stamp": None})
    assert engines.read_json(out)["repo_tags"] == ["unstamped:unstamped", "x:ts-0", "plain:latest"]

    proc, out = build_mode(work, {"target": TARGET, "repo_tags": ["ok:1", "Team/App:1"], "stamp": None})
    one_error_line(proc, "attribute 'repo_tags'", "'Team/App:1'", "lowercase")
    assert not os.path.exists(out)
    proc, out = build_mode(work, {"target": TARGET, "repo_tags": ["x:{NOPE}"], "stamp": stamp})
    one_error_line(proc, "attribute 'repo_tags'", "unknown stamp key {NOPE}")
    assert not os.path.exists(out)


def test_bad_flag_combinations_exit_2(work):
    for argv, problem in [
        (["--manifest=" + os.path.join(work, "m.json")], "--manifest needs --output_run_manifest"),
        (["--layout=" + work], "give --run_manifest and --layout (or --manifest and --output_run_manifest)"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "python_tools.load"] + argv, cwd=work,
                              env=tool_env(os.environ), capture_output=True, text=True)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", "ERROR: load: %s\n" % problem)


def test_run_time_tag_flags_replace_or_extend():
    m = {"target": TARGET, "repo_tags": ["a:1", "b"]}
    fam = lambda refs: [r.familiar for r in refs]  # noqa: E731
    assert fam(image_load.effective_tags(m, [], [])) == ["a:1", "b:latest"]
    assert fam(image_load.effective_tags(m, ["c:2", "c:2"], [])) == ["c:2"]
    assert fam(image_load.effective_tags(m, [], ["c:2", "a:1"])) == ["a:1", "b:latest", "c:2"]
    assert fam(image_load.effective_tags(m, ["c:2"], ["d"])) == ["c:2", "d:latest"]
    with pytest.raises(UserError) as e:
        image_load.effective_tags(m, [], ["Bad"])
    assert e.value.render() == "%s: flag --add_repo_tag='Bad': repository name must be lowercase" % TARGET


def test_bad_run_time_tag_is_one_line_before_any_engine_is_contacted(work):
    layout, _ = busybox_image(work)
    env = dict(os.environ, DOCKER_HOST="unix://" + os.path.join(work, "none.sock"))
    one_error_line(run_load(work, layout, ["a:1"], env, "--repo_tag=a@sha256:" + "0" * 64),
                   "flag --repo_tag='a@sha256:", "digests cannot be loaded as tags")


# --- docker ---------------------------------------------------------------------------------


def test_docker_load_run_then_second_load_only_retags(work):
    layout, config_digest = busybox_image(work)
    with engines.Dockerd(work) as d:
        env = docker_env(d)
        since = int(time.time()) - 1
        out = ok(run_load(work, layout, ["rules_shiko/app:1", "localhost:5000/team/app"], env))
        assert out[:3] == ["Loaded image: rules_shiko/app:1", "Loaded image: localhost:5000/team/app:latest",
                           "Image ID: " + config_digest], out
        assert out[3].startswith("Transfer: ") and " bytes streamed to docker at unix://%s " % d.sock in out[3], out
        assert int(out[3].split()[1]) > 1000
        for ref in ("rules_shiko/app:1", "localhost:5000/team/app:latest"):
            assert d.docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() == config_digest
        assert d.docker("run", "--rm", "--network", "none", "rules_shiko/app:1").stdout == EXPECTED_OUTPUT
        events = docker_load_events(d, since)
        assert [e for e in events if e.startswith("load ")] == ["load " + config_digest], events

        # Second load: already there. The daemon's event log shows no new load.
        time.sleep(1.1)  # event timestamps are in seconds
        since2 = int(time.time())
        out = ok(run_load(work, layout, ["rules_shiko/app:1", "localhost:5000/team/app"], env))
        assert out == ["Loaded image: rules_shiko/app:1", "Loaded image: localhost:5000/team/app:latest",
                       "Image ID: " + config_digest,
                       "Transfer: none, image already present in docker at unix://%s: re-tagged, 0 bytes sent" % d.sock], out
        # --repo_tag at run time replaces the tags; the new one is added by re-tagging.
        out = ok(run_load(work, layout, ["rules_shiko/app:1"], env, "--repo_tag=other/name:2", "--engine=docker"))
        assert out[0] == "Loaded image: other/name:2" and "re-tagged, 0 bytes sent" in out[-1], out
        assert d.docker("image", "inspect", "--format", "{{.Id}}", "other/name:2").stdout.strip() == config_digest
        events = docker_load_events(d, since2)
        assert not [e for e in events if e.startswith("load ")], events
        assert "tag other/name:2" in events, events

        # A rebuilt image (another config) under the same tag is loaded again and takes the tag.
        layout2, config2 = busybox_image(work, name="app2", greeting="second build")
        out = ok(run_load(work, layout2, ["rules_shiko/app:1"], env))
        assert out[1] == "Image ID: " + config2 and "bytes streamed" in out[2], out
        assert d.docker("run", "--rm", "--network", "none", "rules_shiko/app:1").stdout == "second build\n"


def test_docker_untagged_load(work):
    layout, config_digest = busybox_image(work)
    with engines.Dockerd(work) as d:
        out = ok(run_load(work, layout, [], docker_env(d)))
        assert out[0] == "Image ID: " + config_digest and "bytes streamed" in out[1], out
        assert out[2].startswith("(untagged"), out
        assert d.docker("image", "inspect", "--format", "{{.Id}}", config_digest).stdout.strip() == config_digest


def test_docker_corrupt_blob_is_refused_and_never_loaded(work):
    layout, config_digest = busybox_image(work)
    layer_digest = layout_manifest(layout)[1]["layers"][1]["digest"]
    p = engines.blob(layout, layer_digest)
    data = bytearray(open(p, "rb").read())
    data[-5] ^= 0xFF  # same size: only the streamed hash can notice
    os.unlink(p)
    open(p, "wb").write(bytes(data))
    with engines.Dockerd(work) as d:
        since = int(time.time()) - 1
        proc = run_load(work, layout, ["rules_shiko/app:1"], docker_env(d))
        one_error_line(proc, "attribute 'image'", "blob %s digest mismatch" % layer_digest)
        r = d.docker("image", "inspect", config_digest, check=False)
        assert r.returncode != 0, r.stdout
        assert d.docker("images", "-q", "-a").stdout.strip() == ""
        assert not [e for e in docker_load_events(d, since) if e.startswith("load ")]


class _TcpToUnix(object):
    """Forwards 127.0.0.1:<port> to a unix socket (a TCP door to the private dockerd)."""

    def __init__(self, unix_path):
        self.unix_path = unix_path
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.server.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(self.unix_path)
            threading.Thread(target=self._pipe, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(1 << 16)
                if not data:
                    break
                b.sendall(data)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.server.close()


def test_docker_over_tcp(work):
    layout, config_digest = busybox_image(work)
    with engines.Dockerd(work) as d:
        fwd = _TcpToUnix(d.sock)
        try:
            env = docker_env(d)
            env["DOCKER_HOST"] = "tcp://127.0.0.1:%d" % fwd.port
            out = ok(run_load(work, layout, ["over/tcp:1"], env))
            assert out[1] == "Image ID: " + config_digest, out
            assert "streamed to docker at tcp://127.0.0.1:%d" % fwd.port in out[2], out
            assert d.docker("run", "--rm", "--network", "none", "over/tcp:1").stdout == EXPECTED_OUTPUT
        finally:
            fwd.close()


def test_unreachable_docker_is_one_clear_line(work):
    layout, _ = busybox_image(work)
    base = dict(os.environ)
    for k in ("DOCKER_TLS_VERIFY", "DOCKER_CONTEXT"):
        base.pop(k, None)
    sockets = tempfile.mkdtemp(prefix="shiko-load-", dir="/tmp")  # unix socket paths are short
    missing = os.path.join(sockets, "nope", "docker.sock")
    line = one_error_line(run_load(work, layout, ["a:1"], dict(base, DOCKER_HOST="unix://" + missing)),
                          "cannot reach the Docker daemon at unix://%s" % missing, "from DOCKER_HOST",
                          "no such socket", "--engine=podman")
    assert "Traceback" not in line
    # A socket file nobody listens on.
    dead = os.path.join(sockets, "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(dead)
    try:
        one_error_line(run_load(work, layout, ["a:1"], dict(base, DOCKER_HOST="unix://" + dead)),
                       "cannot reach the Docker daemon at unix://%s" % dead, "connection refused")
    finally:
        s.close()
        shutil.rmtree(sockets)
    # A closed TCP port.
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    port = t.getsockname()[1]
    t.close()
    one_error_line(run_load(work, layout, ["a:1"], dict(base, DOCKER_HOST="tcp://127.0.0.1:%d" % port)),
                   "cannot reach the Docker daemon at tcp://127.0.0.1:%d" % port, "connection refused")
    one_error_line(run_load(work, layout, ["a:1"], dict(base, DOCKER_HOST="ssh://me@host")),
                   "DOCKER_HOST=ssh://me@host", "only unix:// and tcp://")
    one_error_line(run_load(work, layout, ["a:1"], dict(base, DOCKER_HOST="tcp://127.0.0.1:2376", DOCKER_TLS_VERIFY="1")),
                   "TLS is not supported")


# --- podman ---------------------------------------------------------------------------------


def test_podman_load_run_then_second_load_only_retags(work):
    layout, config_digest = busybox_image(work)
    with engines.Podman(work) as p:
        env = p.env()
        env.pop("DOCKER_HOST", None)
        out = ok(run_load(work, layout, ["rules_shiko/app:1", "localhost:5000/team/app"], env, "--engine", "podman"))
        assert out[:3] == ["Loaded image: rules_shiko/app:1", "Loaded image: localhost:5000/team/app:latest",
                           "Image ID: " + config_digest], out
        assert "bytes streamed to podman" in out[3], out
        names = json.loads(p.run("image", "inspect", "--format", "{{json .RepoTags}}", config_digest[7:]).stdout)
        assert sorted(names) == ["docker.io/rules_shiko/app:1", "localhost:5000/team/app:latest"]
        assert p.run("run", "--rm", "--network", "none", "rules_shiko/app:1").stdout == EXPECTED_OUTPUT
        assert podman_events(p).count("loadfromarchive") == 1

        out = ok(run_load(work, layout, ["rules_shiko/app:1"], env, "--engine=podman", "--add_repo_tag=more/tags:3"))
        assert out[-1].startswith("Transfer: none, image already present in podman"), out
        assert out[:2] == ["Loaded image: rules_shiko/app:1", "Loaded image: more/tags:3"], out
        # Re-tags are fully qualified, as a load names them (not localhost/more/tags).
        names = json.loads(p.run("image", "inspect", "--format", "{{json .RepoTags}}", config_digest[7:]).stdout)
        assert "docker.io/more/tags:3" in names, names
        assert podman_events(p).count("loadfromarchive") == 1, podman_events(p)


def test_auto_engine_picks_podman_when_no_docker_daemon_exists(work, monkeypatch):
    layout, config_digest = busybox_image(work)
    monkeypatch.setattr(discovery, "DEFAULT_DOCKER_SOCKETS", (os.path.join(work, "no-docker.sock"),))
    # The choice itself (the default sockets of this machine are replaced by a missing one).
    env = {"PATH": "/usr/bin:/bin"}
    assert isinstance(image_load.choose_engine("auto", TARGET, env), podman.Podman)
    assert isinstance(image_load.choose_engine("auto", TARGET, dict(env, DOCKER_HOST="unix:///x.sock")), docker_api.Docker)
    with pytest.raises(UserError) as e:
        image_load.choose_engine("auto", TARGET, {"PATH": work})
    assert "no container engine found" in e.value.render() and "install podman" in e.value.render()
    # The real thing, in-process (so the replaced default socket applies): it loads into podman.
    with engines.Podman(work) as p:
        for k, v in p.env().items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        out = io.StringIO()
        summary = image_load.load(layout, [docker_archive.parse_reference("auto/picked:1", TARGET)], "auto", TARGET, out=out)
        assert summary["engine"] == "podman" and summary["sent"] > 0, out.getvalue()
        assert p.run("image", "inspect", "--format", "{{.Id}}", "docker.io/auto/picked:1").stdout.strip() == config_digest[7:]


def test_missing_podman_is_one_clear_line(work):
    layout, _ = busybox_image(work)
    empty = os.path.join(work, "emptybin")
    os.makedirs(empty)
    env = dict(os.environ, PATH=empty)
    one_error_line(run_load(work, layout, ["a:1"], env, "--engine=podman"),
                   "--engine=podman: podman is not on PATH (PATH=%s)" % empty, "install podman")
