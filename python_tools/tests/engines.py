"""Test helpers for the image and tarball tools: small layers, tool runs, and real engines.

Engines are the real ones (dockerd 20.10 from Debian's docker.io, podman 4.3), each started
privately in a temporary directory and stopped by its own PID. They raise EngineError when they
cannot start: engine tests fail, they never skip.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import python_tools
from python_tools.shiko.oci import media_types

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(python_tools.__file__)))


class EngineError(RuntimeError):
    pass


# --- Layers and tool runs ------------------------------------------------------------------


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)  # key order kept: the tools must not depend on it
    return path


def layer_tar_bytes(entries):
    """entries: {path: bytes | (bytes, mode) | ("dir",) | ("symlink", target)} → tar bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path in sorted(entries):
            value = entries[path]
            ti = tarfile.TarInfo(path)
            ti.mtime = 0
            data = None
            if isinstance(value, bytes):
                data, ti.mode = value, 0o644
            elif value[0] == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            elif value[0] == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, value[1], 0o777
            else:
                data, ti.mode = value
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def make_layer(directory, name, entries, read_only=True, label=None):
    """Writes NAME.tgz and NAME.json (a layer-tool descriptor); returns the manifest entry."""
    raw = layer_tar_bytes(entries)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=6) as g:
        g.write(raw)
    blob = gz.getvalue()
    blob_path = os.path.join(directory, name + ".tgz")
    with open(blob_path, "wb") as f:
        f.write(blob)
    os.chmod(blob_path, 0o444 if read_only else 0o644)
    desc = {
        "mediaType": media_types.OCI_LAYER_GZIP,
        "digest": "sha256:" + hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        "diff_id": "sha256:" + hashlib.sha256(raw).hexdigest(),
        "compression": "gzip",
        "compressor": "python gzip level 6",
        "members": len(entries),
    }
    desc_path = write_json(os.path.join(directory, name + ".json"), desc)
    return {"blob": blob_path, "descriptor": desc_path, "label": label or "//test:" + name, "desc": desc}


def image_manifest(target="//test:image", base=None, layers=(), platform=None, annotations=None, stamp=None, **config):
    cfg = {
        "entrypoint": None,
        "cmd": None,
        "env": {},
        "user": None,
        "workdir": None,
        "labels": {},
        "exposed_ports": [],
        "volumes": [],
        "stop_signal": None,
        "created": None,
    }
    cfg.update(config)
    return {
        "target": target,
        "base": base,
        "platform": platform or {"os": "linux", "architecture": "amd64", "variant": ""},
        "layers": [{k: l[k] for k in ("blob", "descriptor", "label")} for l in layers],
        "config": cfg,
        "annotations": annotations or {},
        "stamp": stamp,
    }


def run_tool(module, manifest, workdir, cwd=None, umask=None, **flags):
    """Runs `python -m python_tools.MODULE --manifest=... --FLAG=VALUE...`; returns CompletedProcess."""
    manifest_path = write_json(os.path.join(workdir, "%s-%d.manifest.json" % (module, time.monotonic_ns())), manifest)
    argv = [sys.executable, "-m", "python_tools." + module, "--manifest=" + manifest_path]
    argv += ["--%s=%s" % (k, v) for k, v in sorted(flags.items()) if v is not None]
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run(argv, cwd=cwd or workdir, env=env, capture_output=True, text=True, preexec_fn=preexec)


def build_image(workdir, name, manifest, check=True, cwd=None, umask=None):
    """Runs the image tool as the `image` rule does, in two actions: metadata (NAME.digest,
    NAME.config.json, NAME.manifest.json in WORKDIR), then the OCI layout WORKDIR/NAME.

    Returns (layout, digest, proc): proc is the first step that failed, else the layout step.
    """
    layout = os.path.join(workdir, name)
    digest_file = os.path.join(workdir, name + ".digest")
    config = os.path.join(workdir, name + ".config.json")
    image_manifest_file = os.path.join(workdir, name + ".manifest.json")
    proc = run_tool("image", manifest, workdir, cwd=cwd, umask=umask, output_digest=digest_file,
                    output_config=config, output_manifest=image_manifest_file)
    if proc.returncode == 0:
        spec = {k: manifest.get(k) for k in ("target", "platform", "layers")}
        base = manifest.get("base")
        spec["base"] = {"layout": base["layout"], "label": base.get("label")} if base else None
        spec.update(config=config, manifest=image_manifest_file)
        os.makedirs(layout, exist_ok=True)  # as Bazel creates a declared directory
        proc = run_tool("image", spec, workdir, cwd=cwd, umask=umask, output_layout=layout)
    if check and proc.returncode != 0:
        raise AssertionError("image tool failed (%d): %s" % (proc.returncode, proc.stderr))
    digest = open(digest_file).read().strip() if proc.returncode == 0 else None
    return layout, digest, proc


def build_tarball(workdir, layout, repo_tags, name="image.tar", stamp=None, check=True):
    out = os.path.join(workdir, name)
    manifest = {"target": "//test:tarball", "layout": layout, "repo_tags": list(repo_tags), "stamp": stamp}
    proc = run_tool("tarball", manifest, workdir, output=out)
    if check and proc.returncode != 0:
        raise AssertionError("tarball tool failed (%d): %s" % (proc.returncode, proc.stderr))
    return out, proc


def _is_static_elf(data):
    """True for an ELF64 little-endian executable without a PT_INTERP (dynamic loader) header."""
    import struct

    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def busybox_bytes():
    """The static busybox binary (Debian busybox-static) for images that run in an engine."""
    for path in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                data = f.read()
            if _is_static_elf(data):
                return data
    raise EngineError("no static busybox at /bin/busybox: apt-get install -y busybox-static")


def read_json(path):
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def blob(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def layout_manifest(layout):
    index = read_json(os.path.join(layout, "index.json"))
    desc = index["manifests"][0]
    manifest = read_json(blob(layout, desc["digest"]))
    return desc, manifest, read_json(blob(layout, manifest["config"]["digest"]))


def short_tmpdir():
    """A private directory with a short path for an engine's state; returns (path, owned=True).

    Unix socket paths are limited to 108 bytes, and engines put sockets several levels below
    their state directory: with podman's tmp/run dirs under a pytest tmp_path (~60 chars),
    `podman container cleanup` silently fails and every `podman run --rm` waits podman's 20 s
    conmon timeout (measured). So engine state always lives in a fresh /tmp/shiko-XXXX dir.
    """
    return tempfile.mkdtemp(prefix="shiko-", dir="/tmp"), True


# --- Engines --------------------------------------------------------------------------------


def _binary(candidates, package):
    for c in candidates:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise EngineError("%s is not installed (apt-get install -y %s)" % (candidates[0], package))


class Dockerd(object):
    """A private dockerd on a unix socket in a temporary directory; use as a context manager."""

    def __init__(self, workdir, timeout=60):
        self.dockerd = _binary(["/usr/sbin/dockerd", "dockerd"], "docker.io")
        # Debian's 20.10 CLI matches the daemon; a newer CLI also negotiates down.
        self.cli = _binary(["/usr/bin/docker", "docker"], "docker.io")
        self.root, self._own_root = short_tmpdir()
        self.sock = os.path.join(self.root, "docker.sock")
        self.timeout = timeout
        self.proc = None
        self.log_path = os.path.join(self.root, "dockerd.log")

    def env(self):
        env = dict(os.environ)
        env["DOCKER_HOST"] = "unix://" + self.sock
        env["DOCKER_CONFIG"] = os.path.join(self.root, "cli-config")
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        return env

    def __enter__(self):
        argv = [
            self.dockerd,
            "--data-root", os.path.join(self.root, "data"),
            "--exec-root", os.path.join(self.root, "exec"),
            "--pidfile", os.path.join(self.root, "docker.pid"),
            "-H", "unix://" + self.sock,
            "--iptables=false", "--ip6tables=false", "--bridge=none",
        ]
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        log.close()
        deadline = time.monotonic() + self.timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._fail("dockerd exited with code %d" % self.proc.returncode)
            if os.path.exists(self.sock):
                r = subprocess.run([self.cli, "version", "--format", "{{.Server.Version}}"], env=self.env(), capture_output=True, text=True)
                if r.returncode == 0:
                    self.version = r.stdout.strip()
                    return self
                last = r.stderr
            time.sleep(0.2)
        self._fail("dockerd did not answer within %ds: %s" % (self.timeout, last))

    def _fail(self, problem):
        tail = ""
        try:
            with open(self.log_path, "rb") as f:
                tail = f.read()[-3000:].decode("utf-8", "replace")
        except OSError:
            pass
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        raise EngineError("%s\n--- dockerd log tail ---\n%s" % (problem, tail))

    def docker(self, *args, check=True):
        r = subprocess.run([self.cli] + list(args), env=self.env(), capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError("docker %s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # its containerd stops with it
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __exit__(self, *exc):
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        return False


class Podman(object):
    """podman as root with all its state (config, storage, run dirs) in a temporary directory."""

    def __init__(self, workdir):
        self.podman = _binary(["/usr/bin/podman", "podman"], "podman")
        self.root, self._own_root = short_tmpdir()

    def __enter__(self):
        for d in ("graph", "run", "tmp", "volumes"):
            os.makedirs(os.path.join(self.root, d), exist_ok=True)
        with open(os.path.join(self.root, "containers.conf"), "w") as f:
            f.write(
                "[containers]\n"
                'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                "[engine]\n"
                'runtime = "runc"\n'
                'cgroup_manager = "cgroupfs"\n'
                'events_logger = "file"\n'
                'tmp_dir = "%s"\n'
                'volume_path = "%s"\n' % (os.path.join(self.root, "tmp"), os.path.join(self.root, "volumes"))
            )
        with open(os.path.join(self.root, "storage.conf"), "w") as f:
            f.write(
                '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n'
                % (os.path.join(self.root, "graph"), os.path.join(self.root, "run"))
            )
        with open(os.path.join(self.root, "registries.conf"), "w") as f:
            f.write("unqualified-search-registries = []\n")
        r = self.run("info", "--format", "{{.Version.Version}} {{.Store.GraphDriverName}}", check=False)
        if r.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise EngineError("podman cannot start (%s info: exit %d): %s%s" % (self.podman, r.returncode, r.stdout, r.stderr))
        self.version = r.stdout.strip()
        return self

    def env(self):
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = os.path.join(self.root, "containers.conf")
        env["CONTAINERS_STORAGE_CONF"] = os.path.join(self.root, "storage.conf")
        env["CONTAINERS_REGISTRIES_CONF"] = os.path.join(self.root, "registries.conf")
        env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
        return env

    def run(self, *args, check=True):
        argv = [self.podman] + list(args)
        r = subprocess.run(argv, env=self.env(), capture_output=True, text=True, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError("podman %s failed (%d): %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
        return r

    def __exit__(self, *exc):
        self.run("rm", "-a", "-f", check=False)
        self.run("rmi", "-a", "-f", check=False)
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        return False
