"""Real services for the end-to-end tests: a registry, a dockerd, a podman, a remote cache, and
a chromedriver with headless chromium.

Every service lives in its own temp dir (data, sockets, config, log), listens only on
127.0.0.1 or a private unix socket, and is stopped by the PID we started it with:
SIGTERM, wait, then SIGKILL. A service that does not come up within its timeout raises
ServiceError carrying the tail of its log; nothing here is ever mocked or skipped.

Use them as context managers:

    with Registry() as reg:   reg.host  -> "127.0.0.1:PORT"
    with Dockerd() as d:      d.docker("load", "-i", tar);  d.env["DOCKER_HOST"]
    with Podman() as p:       p.podman("run", "--rm", "--network", "none", img)
    with Chromedriver() as c: c.session(); c.url("file:///x.html"); c.script("return 1")

Only the Python standard library is used.
"""

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

DOCKER_REGISTRY = "/usr/bin/docker-registry"
DOCKERD = "/usr/sbin/dockerd"
PODMAN = "/usr/bin/podman"

# Debian's docker CLI (20.10) talks to Debian's dockerd best; fall back to PATH.
_DOCKER_CLI_CANDIDATES = ("/usr/bin/docker",)


class ServiceError(RuntimeError):
    """A service failed to start, or a command against it failed."""


def _tail(path, lines=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "<no log: %s>" % e


def _require_executable(path, what, apt_pkg):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ServiceError(
            "%s not found at %s. Install it: apt-get install -y %s" % (what, path, apt_pkg))
    return path


def _which_or_fail(candidates, name, apt_pkg):
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError("no `%s` CLI found (tried %s and PATH). Install it: apt-get install -y %s"
                       % (name, ", ".join(candidates), apt_pkg))


def _proc_start_time(pid):
    """Field 22 of /proc/PID/stat (start time in clock ticks), or None if the PID is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # comm may contain spaces/parens: split after the last ')'.
    rest = data[data.rfind(")") + 2:].split()
    return rest[19] if len(rest) > 19 else None


def _children(pid):
    """(pid, start_time, comm) of the direct children of pid."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, "rb") as f:
                data = f.read().decode(errors="replace")
        except OSError:
            continue
        comm = data[data.find("(") + 1:data.rfind(")")]
        rest = data[data.rfind(")") + 2:].split()
        if len(rest) > 19 and int(rest[1]) == pid:
            out.append((int(entry), rest[19], comm))
    return out


def _kill_pid(pid, start_time, timeout=15.0):
    """SIGTERM one (non-child) process we started, wait for it, SIGKILL as a fallback.

    start_time guards against signalling a recycled PID.
    """
    if _proc_start_time(pid) != start_time:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _proc_start_time(pid) != start_time:
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _proc_start_time(pid) == start_time:
        time.sleep(0.1)


def _stop_popen(proc, timeout=20.0):
    """Stop a subprocess.Popen we own: SIGTERM, wait, SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _unmount_under(root):
    """Lazily unmount anything still mounted below root (left by a killed daemon)."""
    root = os.path.realpath(root)
    try:
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f]
    except OSError:
        return
    mounts = [m.replace("\\040", " ") for m in mounts]
    for m in sorted((m for m in mounts if m == root or m.startswith(root + "/")),
                    key=len, reverse=True):
        subprocess.run(["umount", "-l", m], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _rmtree(path):
    if not os.path.exists(path):
        return
    _unmount_under(path)

    def onerror(func, p, exc_info):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    shutil.rmtree(path, onerror=onerror)


def run_checked(argv, env=None, input=None, timeout=300, what=None, cwd=None, user=None):
    """Run a command (as `user` if given), capture text output, raise ServiceError with both
    streams if it fails."""
    try:
        res = subprocess.run(argv, env=env, input=input, cwd=cwd, user=user, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise ServiceError("%s timed out after %ss: %s\nstdout:\n%s\nstderr:\n%s" % (
            what or "command", timeout, " ".join(argv), e.stdout, e.stderr))
    if res.returncode != 0:
        raise ServiceError("%s failed (exit %d): %s\nstdout:\n%s\nstderr:\n%s" % (
            what or "command", res.returncode, " ".join(argv), res.stdout[-4000:],
            res.stderr[-4000:]))
    return res


class _Service:
    """Base: a temp dir, a log file, a start timeout, context-manager protocol."""

    name = "service"
    start_timeout = 30.0

    def __init__(self, start_timeout=None, keep_dir=False):
        if start_timeout is not None:
            self.start_timeout = start_timeout
        self.keep_dir = keep_dir
        self.dir = None
        self.log_path = None
        self.proc = None
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _make_dir(self):
        # Short paths: unix socket paths are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="shiko-%s-" % self.name, dir="/tmp")
        self.log_path = os.path.join(self.dir, "%s.log" % self.name)

    def _spawn(self, argv, env=None):
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.dir,
                                     start_new_session=True)

    def log_tail(self, lines=40):
        return _tail(self.log_path, lines) if self.log_path else "<not started>"

    def fail(self, message):
        """Raise a ServiceError naming the service and showing its log tail."""
        raise ServiceError("%s: %s\n--- last lines of %s ---\n%s" % (
            self.name, message, self.log_path, self.log_tail()))

    def _wait_until(self, ready, what):
        """Poll ready() until true; fail loudly if the process exits or time runs out."""
        deadline = time.monotonic() + self.start_timeout
        last_err = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.fail("exited with code %s before %s" % (self.proc.returncode, what))
            try:
                value = ready()
                if value:
                    return value
            except OSError as e:
                last_err = e
            time.sleep(0.05)
        self.fail("not %s within %.0fs (last error: %s)" % (what, self.start_timeout, last_err))

    def start(self):
        raise NotImplementedError

    def _stop_process(self):
        _stop_popen(self.proc)

    def stop(self):
        try:
            self._stop_process()
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self.dir and not self.keep_dir:
                _rmtree(self.dir)


class Registry(_Service):
    """Debian's `docker-registry serve` (distribution 2.8) on 127.0.0.1:<free port>."""

    name = "registry"
    start_timeout = 20.0

    def __init__(self, http_config="", config="", **kw):
        """http_config: YAML lines added under `http:` (e.g. tls); config: top-level YAML (e.g. auth)."""
        super().__init__(**kw)
        self.port = None
        self.http_config = http_config
        self.extra_config = config

    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    @property
    def storage(self):
        """The registry's storage root (blobs live under docker/registry/v2/blobs/sha256/)."""
        return os.path.join(self.dir, "storage")

    @property
    def url(self):
        return "http://%s" % self.host

    def start(self):
        _require_executable(DOCKER_REGISTRY, "docker-registry", "docker-registry")
        self._make_dir()
        storage = os.path.join(self.dir, "storage")
        os.makedirs(storage)
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write("version: 0.1\n"
                    "log:\n  level: info\n"
                    "storage:\n"
                    "  filesystem:\n    rootdirectory: %s\n"
                    "  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:0\n  secret: shiko-e2e-secret\n" % storage)
            f.write(self.http_config)
            f.write(self.extra_config)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        self._spawn([DOCKER_REGISTRY, "serve", config], env=env)

        pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")

        def port_from_log():
            m = pattern.search(_tail(self.log_path, 200))
            return int(m.group(1)) if m else None

        self.port = self._wait_until(port_from_log, "listening (no 'listening on' in its log)")

        def answers():
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.")

        self._wait_until(answers, "answering GET /v2/")
        return self


def _unix_http_get(sock_path, path, timeout=2.0):
    """Minimal HTTP/1.0 GET over a unix socket; returns (status, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(b"GET %s HTTP/1.0\r\nHost: docker\r\n\r\n" % path.encode())
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body


class Dockerd(_Service):
    """A private dockerd: its own socket, data-root, exec-root and pidfile; no networking setup."""

    name = "dockerd"
    start_timeout = 60.0

    def __init__(self, **kw):
        super().__init__(**kw)
        self.socket_path = None
        self.env = None
        self.docker_cli = None
        self._containerd = []  # (pid, start_time) of dockerd's children seen while it ran

    def start(self):
        _require_executable(DOCKERD, "dockerd", "docker.io")
        self.docker_cli = _which_or_fail(_DOCKER_CLI_CANDIDATES, "docker", "docker.io")
        self._make_dir()
        self.socket_path = os.path.join(self.dir, "docker.sock")
        docker_config = os.path.join(self.dir, "cli-config")
        os.makedirs(docker_config)
        argv = [
            DOCKERD,
            "--data-root", os.path.join(self.dir, "data"),
            "--exec-root", os.path.join(self.dir, "exec"),
            "--pidfile", os.path.join(self.dir, "docker.pid"),
            "-H", "unix://" + self.socket_path,
            "--iptables=false", "--ip6tables=false", "--bridge=none",
        ]
        env = dict(os.environ)
        env["PATH"] = _sbin_path(env.get("PATH", ""))
        env.pop("DOCKER_HOST", None)
        self._spawn(argv, env=env)

        def pinged():
            if not os.path.exists(self.socket_path):
                return False
            status, body = _unix_http_get(self.socket_path, "/_ping")
            return status == 200 and body.strip() == b"OK"

        self._wait_until(pinged, "answering /_ping on %s" % self.socket_path)
        self._remember_children()
        self.env = dict(os.environ)
        self.env["DOCKER_HOST"] = "unix://" + self.socket_path
        self.env["DOCKER_CONFIG"] = docker_config
        self.env.pop("DOCKER_CONTEXT", None)
        self.env.pop("DOCKER_TLS_VERIFY", None)
        self.env.pop("DOCKER_CERT_PATH", None)
        return self

    def _remember_children(self):
        if self.proc is None:
            return
        for pid, st, comm in _children(self.proc.pid):
            if (pid, st) not in self._containerd:
                self._containerd.append((pid, st))

    def docker(self, *args, input=None, timeout=300):
        """Run the docker CLI against this daemon; raises ServiceError (with output) on failure."""
        if self.env is None:
            raise ServiceError("dockerd is not running")
        return run_checked([self.docker_cli] + [str(a) for a in args], env=self.env,
                           input=input, timeout=timeout, what="docker")

    def _stop_process(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._remember_children()
        _stop_popen(self.proc, timeout=30)
        # dockerd normally takes its containerd with it; if not, stop it by its PID.
        for pid, st in self._containerd:
            _kill_pid(pid, st)


def _sbin_path(path):
    parts = [p for p in path.split(":") if p]
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if d not in parts:
            parts.append(d)
    return ":".join(parts)


class Podman(_Service):
    """podman (no daemon) with its own containers.conf and storage.conf in a temp dir.

    Config per /work/shared/notes/container-test-stack.md: runc, cgroupfs, file events,
    ulimits under the hard limit, vfs storage with graphroot/runroot in the temp dir.
    """

    name = "podman"
    start_timeout = 60.0

    def __init__(self, **kw):
        super().__init__(**kw)
        self.env = None

    def start(self):
        _require_executable(PODMAN, "podman", "podman")
        self._make_dir()
        d = self.dir
        graphroot = os.path.join(d, "storage")
        runroot = os.path.join(d, "run")
        tmp = os.path.join(d, "tmp")
        for p in (graphroot, runroot, tmp):
            os.makedirs(p)
        containers_conf = os.path.join(d, "containers.conf")
        storage_conf = os.path.join(d, "storage.conf")
        with open(containers_conf, "w") as f:
            f.write('[containers]\n'
                    'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
                    '[engine]\n'
                    'runtime = "runc"\n'
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    'events_logfile_path = "%s"\n'
                    'tmp_dir = "%s"\n'
                    'volume_path = "%s"\n'
                    'static_dir = "%s"\n'
                    % (os.path.join(d, "events.log"), tmp, os.path.join(graphroot, "volumes"),
                       os.path.join(graphroot, "libpod")))
        with open(storage_conf, "w") as f:
            f.write('[storage]\n'
                    'driver = "vfs"\n'
                    'graphroot = "%s"\n'
                    'runroot = "%s"\n' % (graphroot, runroot))
        self.env = dict(os.environ)
        self.env["PATH"] = _sbin_path(self.env.get("PATH", ""))
        self.env["CONTAINERS_CONF"] = containers_conf
        self.env["CONTAINERS_STORAGE_CONF"] = storage_conf
        self.env.pop("CONTAINER_HOST", None)
        self.env.pop("CONTAINER_CONNECTION", None)
        # No daemon: check that podman works with this configuration, logging what it says.
        open(self.log_path, "w").close()
        try:
            res = subprocess.run([PODMAN, "info", "--format", "{{.Store.GraphRoot}}"],
                                 env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, timeout=self.start_timeout)
        except subprocess.TimeoutExpired:
            self.fail("`podman info` did not finish within %.0fs" % self.start_timeout)
        with open(self.log_path, "a") as f:
            f.write(res.stdout)
        if res.returncode != 0:
            self.fail("`podman info` failed (exit %d)" % res.returncode)
        if graphroot not in res.stdout:
            self.fail("podman ignored storage.conf: graphroot is not %s" % graphroot)
        return self

    def podman(self, *args, input=None, timeout=300):
        """Run podman with this configuration; raises ServiceError (with output) on failure."""
        if self.env is None:
            raise ServiceError("podman is not set up")
        return run_checked([PODMAN] + [str(a) for a in args], env=self.env, input=input,
                           timeout=timeout, what="podman")

    def _stop_process(self):
        if self.env is None:
            return
        # Remove leftover containers and storage mounts so the temp dir can be deleted.
        subprocess.run([PODMAN, "rm", "--all", "--force"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
        self.env = None


NGINX = "/usr/sbin/nginx"


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RemoteCache(_Service):
    """A Bazel HTTP remote cache: Debian's nginx-light with WebDAV PUT, on 127.0.0.1:<port>.

    Bazel GETs and PUTs /ac/<sha256> and /cas/<sha256>. The access log records, per request,
    the method, URI, status and body bytes sent (`gets()` / `puts()` read them), so a test can
    count exactly what a build downloaded.
    """

    name = "cache"
    start_timeout = 20.0

    def __init__(self, **kw):
        super().__init__(**kw)
        self.port = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def access_log(self):
        return os.path.join(self.dir, "access.log")

    def start(self):
        _require_executable(NGINX, "nginx", "nginx-light")
        self._make_dir()
        root = os.path.join(self.dir, "root")
        os.makedirs(os.path.join(self.dir, "tmp"))
        os.makedirs(root)
        self.port = _free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(
                ("user root;\n" if os.getuid() == 0 else "")
                + "daemon off;\nworker_processes 2;\npid %s/nginx.pid;\nerror_log %s/error.log;\n"
                "events { worker_connections 512; }\n"
                "http {\n"
                "  log_format c '$request_method $uri $status $body_bytes_sent $request_length';\n"
                "  access_log %s c;\n"
                "  client_body_temp_path %s/tmp;\n  client_max_body_size 0;\n"
                "  server {\n    listen 127.0.0.1:%d;\n    root %s;\n"
                "    location / { dav_methods PUT; create_full_put_path on; dav_access user:rw group:r all:r; }\n"
                "  }\n}\n" % (self.dir, self.dir, self.access_log, self.dir, self.port, root))
        self._spawn([NGINX, "-c", conf, "-p", self.dir])

        def answers():
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET /ac/none HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.")

        self._wait_until(answers, "answering GET on 127.0.0.1:%d" % self.port)
        return self

    def log_offset(self):
        """Where the access log ends now: pass it to requests() to see only later requests."""
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0

    def requests(self, since=0):
        """[(method, uri, status, body bytes sent, request length)] logged after offset `since`."""
        out = []
        with open(self.access_log, "rb") as f:
            f.seek(since)
            for line in f.read().decode("utf-8", "replace").splitlines():
                parts = line.split()
                if len(parts) == 5:
                    out.append((parts[0], parts[1], int(parts[2]), int(parts[3]), int(parts[4])))
        return out

    def get_bytes(self, since=0):
        """Body bytes the cache sent (successful GETs) after offset `since`."""
        return sum(r[3] for r in self.requests(since) if r[0] == "GET" and r[2] == 200)

    def put_bytes(self, since=0):
        return sum(r[4] for r in self.requests(since) if r[0] == "PUT")


CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"


class Chromedriver(_Service):
    """Debian's chromedriver on 127.0.0.1:<port>, driving headless Debian chromium through the
    W3C WebDriver protocol (a few JSON requests with urllib: `session()`, `url()`,
    `script()`, `browser_log()`, `screenshot()`)."""

    name = "chromedriver"
    start_timeout = 30.0

    def __init__(self, **kw):
        super().__init__(**kw)
        self.port = None
        self.session_id = None

    def start(self):
        _require_executable(CHROMEDRIVER, "chromedriver", "chromium-driver")
        _require_executable(CHROMIUM, "chromium", "chromium")
        self._make_dir()
        self.port = _free_port()
        self._spawn([CHROMEDRIVER, "--port=%d" % self.port, "--log-path=%s" % self.log_path])
        self._wait_until(lambda: self._call("GET", "/status")["value"].get("ready"),
                         "ready on 127.0.0.1:%d" % self.port)
        return self

    def _call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (self.port, path), data=data,
                                     method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read().decode())
        except urllib.error.HTTPError as e:
            raise ServiceError("WebDriver %s %s: HTTP %d: %s" % (method, path, e.code, e.read()[:2000]))

    def session(self, width=1280, height=1800):
        """Starts headless chromium (one session per Chromedriver)."""
        caps = {"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                         "--window-size=%d,%d" % (width, height),
                         "--user-data-dir=%s" % os.path.join(self.dir, "profile")],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}}
        self.session_id = self._call("POST", "/session", caps, timeout=120)["value"]["sessionId"]
        return self.session_id

    def _s(self, path):
        return "/session/%s%s" % (self.session_id, path)

    def url(self, url):
        self._call("POST", self._s("/url"), {"url": url})

    def script(self, source, *args):
        """Runs JavaScript (a function body) in the page; returns its result."""
        return self._call("POST", self._s("/execute/sync"), {"script": source, "args": list(args)})["value"]

    def browser_log(self):
        """The console messages and page errors so far: [{level, message, ...}]."""
        return self._call("POST", self._s("/se/log"), {"type": "browser"})["value"]

    def screenshot(self):
        """The viewport as PNG bytes."""
        return base64.b64decode(self._call("GET", self._s("/screenshot"))["value"])

    def _stop_process(self):
        if self.session_id is not None and self.proc is not None and self.proc.poll() is None:
            try:
                self._call("DELETE", self._s(""), timeout=30)
            except (OSError, ServiceError):
                pass
            self.session_id = None
        _stop_popen(self.proc)


# -- Remote execution: PostgreSQL + BuildGrid + bots (tests/remote/) --------------------------

PG_BIN = "/usr/lib/postgresql/15/bin"
REMOTE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "remote")
BOT = os.path.join(REMOTE_DIR, "bot.py")
BUILDGRID_VENV = os.environ.get(
    "SHIKO_BUILDGRID_VENV", os.path.expanduser("~/.cache/rules_shiko/buildgrid-venv"))


def _postgres_user():
    """initdb and postgres refuse to run as root: run them as Debian's `postgres` user then."""
    return "postgres" if os.getuid() == 0 else None


class Postgres(_Service):
    """A private PostgreSQL 15 cluster (Debian's `postgresql`) in a temp dir, on a unix socket
    only (no TCP), with trust authentication for the local socket. `url` is the SQLAlchemy
    connection string of its `postgres` database."""

    name = "postgres"
    start_timeout = 60.0

    @property
    def url(self):
        return "postgresql+psycopg2://postgres@/postgres?host=%s" % self.dir

    def start(self):
        for tool in ("initdb", "postgres", "pg_isready"):
            _require_executable(os.path.join(PG_BIN, tool), tool, "postgresql")
        self._make_dir()
        user = _postgres_user()
        if user:
            shutil.chown(self.dir, user, user)
        data = os.path.join(self.dir, "data")
        run_checked([os.path.join(PG_BIN, "initdb"), "-D", data, "--auth=trust", "--username=postgres",
                     "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"],
                    user=user, cwd=self.dir, timeout=120, what="initdb")
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(PG_BIN, "postgres"), "-D", data, "-c", "listen_addresses=",
             "-c", "unix_socket_directories=" + self.dir, "-c", "fsync=off", "-c", "max_connections=200"],
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT, cwd=self.dir,
            start_new_session=True, user=user, group=user, extra_groups=[] if user else None)

        def ready():
            return subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q", "-h", self.dir],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

        self._wait_until(ready, "accepting connections on %s" % self.dir)
        return self

    def _stop_process(self):
        # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting.
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        _stop_popen(self.proc)


def _buildgrid_python():
    python = os.path.join(BUILDGRID_VENV, "bin", "python")
    if not os.access(python, os.X_OK):
        raise ServiceError("no BuildGrid venv at %s: tests/run_all.sh creates it from "
                           "tests/remote/requirements_lock.txt" % BUILDGRID_VENV)
    return python


class BuildGrid(_Service):
    """BuildGrid (`bgd server start`) on 127.0.0.1:<port>: CAS on disk in its temp dir, an
    ActionCache, Execution (+ Operations and Bots), ByteStream and Capabilities, for one
    instance, scheduling through PostgreSQL (`bgd migrate apply` first)."""

    name = "buildgrid"
    start_timeout = 90.0
    instance = "shiko"

    def __init__(self, database_url, keepalive=15, **kw):
        super().__init__(**kw)
        self.database_url = database_url
        self.keepalive = keepalive
        self.port = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    @property
    def url(self):
        return "grpc://" + self.address

    def config(self):
        return (
            "server:\n"
            "  - !channel\n    address: \"%(address)s\"\n    insecure-mode: true\n"
            "authorization:\n  method: none\n"
            # One gRPC thread per concurrent call (Bazel's Execute streams, the bots' long polls,
            # CAS transfers); the default (5 per core) refuses calls under --jobs=16.
            "thread-pool-size: 256\n"
            "connections:\n"
            "  - !sql-connection &sql\n    connection-string: \"%(db)s\"\n"
            "    pool-size: 10\n    max-overflow: 20\n"
            "storages:\n  - !disk-storage &cas\n    path: %(cas)s\n"
            "caches:\n  - !lru-action-cache &ac\n    storage: *cas\n    max-cached-refs: 100000\n"
            "    allow-updates: true\n    cache-failed-actions: false\n"
            "schedulers:\n  - !sql-scheduler &scheduler\n    sql: *sql\n    storage: *cas\n"
            "    action-cache: *ac\n    bot-session-keepalive-timeout: %(keepalive)d\n"
            "    session-expiry-timer-interval: 2.0\n"
            "    property-set: !dynamic-property-set\n      match-property-keys: [OSFamily, ISA]\n"
            "instances:\n  - name: %(instance)s\n    services:\n"
            "      - !action-cache\n        cache: *ac\n"
            "      - !execution\n        scheduler: *scheduler\n"
            "      - !cas\n        storage: *cas\n"
            "      - !bytestream\n        storage: *cas\n"
        ) % {"address": self.address, "db": self.database_url, "cas": os.path.join(self.dir, "cas"),
             "keepalive": self.keepalive, "instance": self.instance}

    def start(self):
        python = _buildgrid_python()
        bgd = os.path.join(BUILDGRID_VENV, "bin", "bgd")
        self._make_dir()
        os.makedirs(os.path.join(self.dir, "cas"))
        self.port = _free_port()
        path = os.path.join(self.dir, "buildgrid.yml")
        with open(path, "w") as f:
            f.write(self.config())
        run_checked([python, bgd, "migrate", "apply", self.database_url], cwd=self.dir, timeout=120,
                    what="bgd migrate apply")
        self._spawn([python, bgd, "server", "start", path])

        def answers():
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                return True

        self._wait_until(answers, "listening on %s" % self.address)
        run_checked([python, bgd, "capabilities", "--remote", "http://" + self.address,
                     "--instance-name", self.instance], timeout=60, what="bgd capabilities")
        return self


class Bot(_Service):
    """One tests/remote/bot.py worker serving BuildGrid's Bots API for one instance."""

    name = "bot"
    start_timeout = 30.0

    def __init__(self, buildgrid, bot_id, hide_python=True, **kw):
        super().__init__(**kw)
        self.buildgrid = buildgrid
        self.bot_id = bot_id
        self.hide_python = hide_python

    def start(self):
        python = _buildgrid_python()
        _require_executable("/usr/bin/bwrap", "bwrap", "bubblewrap")
        self._make_dir()
        self._spawn([python, "-u", BOT, "--server", self.buildgrid.address, "--instance",
                     self.buildgrid.instance, "--bot-id", self.bot_id,
                     "--workdir", os.path.join(self.dir, "work")]
                    + ([] if self.hide_python else ["--show-python"]))
        self._wait_until(lambda: "session " in _tail(self.log_path, 20), "registered with BuildGrid")
        return self

    def busy(self):
        """True while the bot runs an action: it has an exec-* directory."""
        work = os.path.join(self.dir, "work")
        return any(n.startswith("exec-") for n in os.listdir(work))

    def leases(self):
        """Lines 'lease ...: exit N ...' the bot logged (one per action it ran)."""
        return [l for l in _tail(self.log_path, 100000).splitlines() if ": exit " in l]

    def running(self):
        """The program (argv[0]) of the action the bot runs now, or None: its last 'lease L: run
        P' line when no 'lease L: exit' line follows."""
        current = None
        for line in _tail(self.log_path, 100000).splitlines():
            m = re.search(r"lease (\S+): run (\S+)", line)
            if m:
                current = (m.group(1), m.group(2))
            elif current and "lease %s: " % current[0] in line:
                current = None
        return current[1] if current else None

    def kill(self):
        """SIGKILL, as a crashed machine: no goodbye to BuildGrid; its action dies with it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class RemoteExecution:
    """A whole REAPI engine on this machine: PostgreSQL, BuildGrid and `bots` bots.

        with RemoteExecution() as rex:
            bazel build --remote_executor=rex.url --remote_instance_name=rex.instance ...
    """

    def __init__(self, bots=2, hide_python=True):
        """hide_python=False leaves the host's python3 visible to actions (a diagnostic)."""
        self.n_bots = bots
        self.hide_python = hide_python
        self.postgres = None
        self.buildgrid = None
        self.bots = []

    @property
    def url(self):
        return self.buildgrid.url

    @property
    def instance(self):
        return self.buildgrid.instance

    def __enter__(self):
        try:
            self.postgres = Postgres().__enter__()
            self.buildgrid = BuildGrid(self.postgres.url).__enter__()
            for i in range(self.n_bots):
                self.bots.append(Bot(self.buildgrid, "bot%d" % (i + 1),
                                     hide_python=self.hide_python).__enter__())
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        for s in self.bots + [self.buildgrid, self.postgres]:
            if s is not None:
                s.stop()
        return False
