"""Runs commands in an image for image_test: with docker, podman, or no engine at all.

    driver = select("auto", image, tmpdir, log)   # image: image_test.Image; log(line) prints
    code, stdout, stderr = driver.run(command)    # command: a normalized image_test command
    driver.close()

Drivers
-------
- docker: the daemon of DOCKER_HOST (else unix:///var/run/docker.sock), through the docker CLI.
  The image is streamed untagged into `docker load` (python_tools/docker_archive.py, from a
  one-image copy of the layout: no tar on disk) unless the daemon already has an image with
  this config digest, then run with
  `docker run --rm --pull never --network none` by the ID `load` printed.
- podman: the same CLI calls, with the podman configuration the test was given
  (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINER_HOST, ...).
- none: the layers are unpacked (whiteouts applied; ownership kept when running as root) into a
  fresh temporary root for each command (each run starts from the image, as `docker run --rm`
  does), which runs under
    bwrap --bind ROOT / --proc /proc --dev /dev --die-with-parent --new-session
          --unshare-all --uid U --gid G --clearenv --setenv ... --chdir WORKDIR -- ARGV
  started as the image user when we are root, so files are accessed with the image's ids as in
  an engine (see NoEngine for the exact modes), or, when bwrap is missing or cannot make its
  namespaces and we are root,
    unshare --mount --pid --net --uts --ipc --fork --kill-child --mount-proc=/proc --root=ROOT
            --wd=WORKDIR --setuid U --setgid G -- ARGV
  with a minimal /dev made in the root. The environment is the image's Env, then the command's,
  plus PATH (Docker's default), HOME (from the image's /etc/passwd, else /) and HOSTNAME when
  unset, as Docker does; the user (name or uid, [:group]) is resolved in the image's
  /etc/passwd and /etc/group like Docker resolves it (no supplementary groups).
- auto: docker when a daemon answers; else podman when its configuration is in the
  environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINER_HOST or
  CONTAINER_CONNECTION) and `podman info` works (podman's defaults fail on many CI machines,
  and Bazel passes no environment to tests unless told to); else none.

Exit codes follow Docker: 126 when the command cannot be executed, 127 when it is not found.
An engine's own failure (exit 125), a sandbox that cannot be set up, or no usable driver raise
DriverError: image_test then fails.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import uuid

from python_tools.shiko.tar import rootfs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXTRA_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
PODMAN_ENV = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINER_HOST", "CONTAINER_CONNECTION")
PROBE_TIMEOUT = 30
LOAD_TIMEOUT = 600


class DriverError(Exception):
    pass


def _env():
    env = dict(os.environ)
    parts = [p for p in env.get("PATH", "").split(":") if p]
    for d in EXTRA_PATH:
        if d not in parts:
            parts.append(d)
    env["PATH"] = ":".join(parts)
    return env


def _which(name, env):
    return shutil.which(name, path=env["PATH"])


def _first_line(text):
    lines = [l for l in (text or "").strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def command_argv(command, cfg):
    """The argv a command runs: `command`, or entrypoint + (`args` or cmd)."""
    if "command" in command:
        return list(command["command"])
    entrypoint = list(cfg.get("Entrypoint") or [])
    if "args" in command:
        return entrypoint + list(command["args"])
    return entrypoint + list(cfg.get("Cmd") or [])


def _describe(argv):
    return json.dumps(argv)


# --- Engines -------------------------------------------------------------------------------


class Engine(object):
    """docker or podman through their CLI (the same commands work for both)."""

    def __init__(self, kind, cli, env, image, tmp, log):
        self.name = kind
        self.cli = cli
        self.env = env
        self.image = image
        self.tmp = tmp
        self.log = log
        self.ref = None

    def _call(self, args, timeout=PROBE_TIMEOUT, stdin=None):
        try:
            return subprocess.run([self.cli] + args, env=self.env, stdin=stdin or subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DriverError("`%s %s` did not finish within %ds" % (self.name, " ".join(args[:2]), timeout))
        except OSError as e:
            raise DriverError("cannot run %s: %s" % (self.cli, e))

    def load(self):
        config = self.image.config_digest
        r = self._call(["image", "inspect", "--format", "{{.Id}}", config])
        if r.returncode == 0:
            self.ref = config
            self.log("image: already in %s as %s (not loaded again)" % (self.name, config))
            return
        layout = os.path.join(self.tmp, "layout")
        _single_image_layout(self.image, layout)
        from python_tools.shiko.oci import docker_archive

        archive = docker_archive.Archive(layout, [], None, "image", self.image.label)
        out_path = os.path.join(self.tmp, "load.out")
        err_path = os.path.join(self.tmp, "load.err")
        with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
            try:
                proc = subprocess.Popen([self.cli, "load"], env=self.env, stdin=subprocess.PIPE,
                                        stdout=out_f, stderr=err_f)
            except OSError as e:
                raise DriverError("cannot run %s: %s" % (self.cli, e))
            try:
                archive.write(proc.stdin)  # streamed: no image tar on disk
                proc.stdin.close()
            except BrokenPipeError:
                pass
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            try:
                code = proc.wait(timeout=LOAD_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise DriverError("`%s load` did not finish within %ds" % (self.name, LOAD_TIMEOUT))
        with open(out_path, "rb") as f:
            out = f.read().decode("utf-8", "replace")
        with open(err_path, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        if code != 0:
            raise DriverError("`%s load` failed (exit %d): %s" % (self.name, code, _first_line(err) or out))
        m = re.search(r"Loaded image(?: ID)?: (\S+)", out)
        self.ref = m.group(1) if m else config
        self.log("image: loaded into %s as %s" % (self.name, self.ref))

    def run(self, command):
        argv = command_argv(command, self.image.cfg)
        if not argv:
            raise DriverError("the image has no entrypoint or cmd, and the command gives none")
        name = "shiko-image-test-%s" % uuid.uuid4().hex[:12]
        args = ["run", "--rm", "--pull", "never", "--network", "none", "--name", name]
        for k in sorted(command.get("env") or {}):
            args += ["--env", "%s=%s" % (k, command["env"][k])]
        if "command" in command or "args" in command:
            args += ["--entrypoint", argv[0], self.ref] + argv[1:]
        else:
            args += [self.ref]
        self.log("run: %s %s (%s)" % (self.name, _describe(argv), command["name"]))
        try:
            r = subprocess.run([self.cli] + args, env=self.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=command["timeout"])
        except subprocess.TimeoutExpired:
            self._call(["rm", "--force", name])
            return ("timed out after %ds" % command["timeout"], "", "")
        except BaseException:  # e.g. SystemExit from SIGTERM: stop the container too
            self._call(["rm", "--force", name])
            raise
        out = r.stdout.decode("utf-8", "replace")
        err = r.stderr.decode("utf-8", "replace")
        if r.returncode == 125:
            raise DriverError("`%s run` failed (exit 125, the engine's own error): %s" % (self.name, _first_line(err)))
        return (r.returncode, out, err)

    def close(self):
        pass


def _single_image_layout(image, dest):
    """A layout holding only the image under test (blobs hard-linked or copied)."""
    os.makedirs(os.path.join(dest, "blobs", "sha256"))
    with open(os.path.join(dest, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    mdesc = image.manifest_desc
    descs = [mdesc, image.manifest["config"]] + list(image.descs)
    for d in descs:
        hexd = d["digest"].split(":", 1)[1]
        src = os.path.join(image.layout, "blobs", "sha256", hexd)
        dst = os.path.join(dest, "blobs", "sha256", hexd)
        if os.path.exists(dst):
            continue
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{k: mdesc[k] for k in ("mediaType", "digest", "size") if k in mdesc}]}
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump(index, f)


def probe_docker(env):
    """(cli, None) when a docker daemon answers, else (None, why not)."""
    cli = _which("docker", env)
    if not cli:
        return None, "no docker CLI on PATH (apt-get install docker.io)"
    host = env.get("DOCKER_HOST")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return None, "DOCKER_HOST is unset and /var/run/docker.sock does not exist (pass --test_env=DOCKER_HOST=...)"
    try:
        r = subprocess.run([cli, "version", "--format", "{{.Server.Version}}"], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "the daemon at %s did not answer within %ds" % (host or "unix:///var/run/docker.sock", PROBE_TIMEOUT)
    if r.returncode != 0:
        return None, "the daemon at %s does not answer: %s" % (
            host or "unix:///var/run/docker.sock", _first_line(r.stderr.decode("utf-8", "replace")))
    return cli, "server %s at %s" % (r.stdout.decode().strip(), host or "unix:///var/run/docker.sock")


def probe_podman(env, require_config):
    cli = _which("podman", env)
    if not cli:
        return None, "no podman on PATH (apt-get install podman)"
    if require_config and not any(env.get(k) for k in PODMAN_ENV):
        return None, "no podman configuration given to the test (%s)" % ", ".join(PODMAN_ENV)
    try:
        r = subprocess.run([cli, "info", "--format", "{{.Version.Version}} {{.Store.GraphDriverName}}"], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=PROBE_TIMEOUT * 2)
    except subprocess.TimeoutExpired:
        return None, "`podman info` did not finish"
    if r.returncode != 0:
        return None, "`podman info` failed: %s" % _first_line(r.stderr.decode("utf-8", "replace"))
    version = r.stdout.decode().strip().split()
    return cli, "podman %s, %s storage" % (version[0] if version else "?", version[1] if len(version) > 1 else "?")


# --- No engine -----------------------------------------------------------------------------


def _passwd(tree):
    entries = []
    data = tree.read_file("/etc/passwd")
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        f = line.split(":")
        if len(f) >= 7 and f[2].isdigit() and f[3].isdigit():
            entries.append({"name": f[0], "uid": int(f[2]), "gid": int(f[3]), "home": f[5]})
    return entries


def _groups(tree):
    entries = []
    data = tree.read_file("/etc/group")
    for line in (data or b"").decode("utf-8", "replace").splitlines():
        f = line.split(":")
        if len(f) >= 3 and f[2].isdigit():
            entries.append({"name": f[0], "gid": int(f[2])})
    return entries


def resolve_user(tree, user):
    """(uid, gid, home or None) of a config User, resolved as Docker does."""
    name, _, group = (user or "").partition(":")
    passwd = None
    entry = None
    if not name:
        uid = 0
        passwd = _passwd(tree)
        entry = next((e for e in passwd if e["uid"] == 0), None)
    elif name.isdigit():
        uid = int(name)
        passwd = _passwd(tree)
        entry = next((e for e in passwd if e["uid"] == uid), None)
    else:
        passwd = _passwd(tree)
        entry = next((e for e in passwd if e["name"] == name), None)
        if entry is None:
            raise DriverError("unable to find user %s: no matching entries in the image's /etc/passwd" % name)
        uid = entry["uid"]
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in _groups(tree) if e["name"] == group), None)
            if g is None:
                raise DriverError("unable to find group %s: no matching entries in the image's /etc/group" % group)
            gid = g["gid"]
    else:
        gid = entry["gid"] if entry else 0
    return uid, gid, (entry["home"] if entry else None)


# Docker's default capabilities for a root user (moby/oci/caps/defaults.go).
DOCKER_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
               "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
               "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE")


def _traversable(path):
    """True when every directory from / to path can be searched by any user."""
    p = os.path.abspath(path)
    while True:
        try:
            if not os.stat(p).st_mode & 0o001:
                return False
        except OSError:
            return False
        if p == "/":
            return True
        p = os.path.dirname(p)


class NoEngine(object):
    """Runs commands in an unpacked copy of the image under bwrap (or unshare as root).

    How the image user is honoured (as Docker would: access checked against the real ids):
    - running as root, image user 0: bwrap without a user namespace, with Docker's default
      capabilities only;
    - running as root, image user U:G != 0: bwrap is started as U:G (no supplementary groups)
      and maps U:G onto itself in a user namespace: files are accessed as U:G. Inside, files
      of other owners show as 65534 (nobody) in stat; access is still checked on the real ids.
      The temporary root then lives in a directory only U can enter;
    - not root (or root of a user namespace mapping only itself, as in Bazel's linux-sandbox):
      bwrap maps the image user onto the caller (the files were unpacked as the caller's):
      ids inside are the image's, file access is the caller's;
    - unshare (root only, when bwrap is missing or cannot make its namespaces): real setuid/
      setgid after chroot, /proc mounted, a minimal /dev created in the root.
    """

    name = "none"

    def __init__(self, image, tmp, log, backend=None):
        self.image = image
        self.log = log
        self.env = _env()
        self.count = 0
        self.root_caller = rootfs.full_root()
        cfg = image.cfg
        self.uid, self.gid, home = resolve_user(image.tree, cfg.get("User"))
        self.as_user = self.root_caller and self.uid != 0
        self.tmp = self._workspace(tmp)
        self.workdir = cfg.get("WorkingDir") or "/"
        self.base_env = []
        for item in cfg.get("Env") or []:
            k, _, v = item.partition("=")
            self.base_env.append((k, v))
        self.home = home or "/"
        self.hostname = image.config_digest.split(":", 1)[1][:12]
        try:
            self.backend, why = self._backend(backend)
        except BaseException:
            self.close()
            raise
        if self.backend is None:
            self.close()
            raise DriverError(why)
        self.log("driver: none (%s; user %d:%d, workdir %s)" % (why, self.uid, self.gid, self.workdir))

    def _workspace(self, tmp):
        """Where the temporary roots go: `tmp`, or for bwrap started as the image user a
        directory it can reach (Bazel's TEST_TMPDIR sits below /root, which it cannot)."""
        if not self.as_user:
            return tmp
        parent = tmp if _traversable(tmp) else "/tmp"
        import tempfile

        d = tempfile.mkdtemp(prefix="image_test-root-", dir=parent)
        try:
            os.chown(d, self.uid, self.gid)
        except OSError as e:
            os.rmdir(d)
            raise DriverError("cannot give a temporary directory to the image user %d:%d: %s" % (
                self.uid, self.gid, e))
        self._own_tmp = d
        return d

    def _backend(self, only=None):
        """(("bwrap" | "unshare", path), description), or (None, why none works).
        `only` restricts the choice to one of them (for tests)."""
        bwrap = _which("bwrap", self.env) if only in (None, "bwrap") else None
        problems = []
        if only == "unshare":
            problems.append("bwrap not wanted")
        elif bwrap:
            ok, detail = self._try_bwrap(bwrap)
            if ok:
                return ("bwrap", bwrap), detail
            problems.append("bwrap cannot create its namespaces here: %s" % detail)
        else:
            problems.append("bwrap is not installed (apt-get install bubblewrap)")
        unshare = _which("unshare", self.env) if only in (None, "unshare") else None
        if self.root_caller and unshare:
            return ("unshare", unshare), "unshare, as root (%s)" % problems[0]
        if not self.root_caller:
            problems.append("unshare needs root")
        else:
            problems.append("unshare is not installed (util-linux)")
        return None, "no way to run commands without an engine: " + "; ".join(problems)

    def _bwrap_mode(self):
        if self.root_caller and self.uid == 0:
            return "as root, Docker's default capabilities"
        if self.as_user:
            return "started as %d:%d, mapped onto itself in a user namespace" % (self.uid, self.gid)
        return "user namespace mapping %d:%d onto the caller %d:%d" % (self.uid, self.gid, os.geteuid(), os.getegid())

    def _bwrap_args(self, bwrap, root):
        args = [bwrap, "--bind", root, "/", "--proc", "/proc", "--dev", "/dev", "--die-with-parent", "--new-session"]
        if self.root_caller and self.uid == 0:
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                     "--cap-drop", "ALL"]
            for cap in DOCKER_CAPS:
                args += ["--cap-add", cap]
        else:
            args += ["--unshare-all", "--uid", str(self.uid), "--gid", str(self.gid)]
        return args

    def _popen_user(self):
        if self.as_user:
            return {"user": self.uid, "group": self.gid, "extra_groups": []}
        return {}

    def _try_bwrap(self, bwrap):
        try:
            r = subprocess.run([bwrap, "--version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT)
            version = r.stdout.decode().strip().split()[-1] if r.returncode == 0 and r.stdout.strip() else "?"
            probe = os.path.join(self.tmp, "bwrap-probe")
            os.makedirs(os.path.join(probe, "proc"))
            os.makedirs(os.path.join(probe, "dev"))
            args = self._bwrap_args(bwrap, probe) + ["--", "/nonexistent-probe"]
            r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT,
                               **self._popen_user())
        except (OSError, subprocess.TimeoutExpired) as e:
            return False, str(e)
        finally:
            rootfs.remove_tree(os.path.join(self.tmp, "bwrap-probe"))
        err = r.stderr.decode("utf-8", "replace")
        # The namespaces were made when bwrap got as far as exec'ing the (missing) probe.
        if "execvp /nonexistent-probe" in err:
            return True, "bwrap %s, %s" % (version, self._bwrap_mode())
        return False, _first_line(err) or "exit %d" % r.returncode

    def _environment(self, command):
        env = list(self.base_env)
        names = [k for k, _ in env]
        for k in sorted(command.get("env") or {}):
            v = command["env"][k]
            if k in names:
                env[names.index(k)] = (k, v)
            else:
                env.append((k, v))
                names.append(k)
        for k, v in (("PATH", DEFAULT_PATH), ("HOSTNAME", self.hostname), ("HOME", self.home)):
            if k not in names:
                env.append((k, v))
                names.append(k)
        return env

    def _prepare(self):
        self.count += 1
        root = os.path.join(self.tmp, "rootfs-%d" % self.count)
        os.makedirs(root)
        self.image.tree.unpack(root)
        real = self.image.tree.resolve_dir(self.workdir)
        if real is None:
            raise DriverError("the working directory %s is not a directory in the image" % self.workdir)
        target = root + real if real != "/" else root
        if not os.path.isdir(target):
            os.makedirs(target, 0o755)
        # Mount points (Docker has them too); bwrap started as the image user cannot make them.
        for d in ("proc", "dev"):
            p = os.path.join(root, d)
            if not os.path.lexists(p):
                os.mkdir(p, 0o755)
        return root

    def run(self, command):
        argv = command_argv(command, self.image.cfg)
        if not argv:
            raise DriverError("the image has no entrypoint or cmd, and the command gives none")
        root = self._prepare()
        try:
            env = self._environment(command)
            kind, exe = self.backend
            self.log("run: %s %s (%s)" % (kind, _describe(argv), command["name"]))
            if kind == "bwrap":
                return self._run_bwrap(exe, root, env, argv, command["timeout"])
            return self._run_unshare(exe, root, env, argv, command["timeout"])
        finally:
            rootfs.remove_tree(root)

    def _spawn(self, argv, env, timeout, pass_fds=(), **kw):
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=pass_fds, start_new_session=True, **kw)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None, "", ""
        except BaseException:  # e.g. SystemExit from SIGTERM: leave nothing running
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def _run_bwrap(self, bwrap, root, env, argv, timeout):
        args = self._bwrap_args(bwrap, root) + ["--hostname", self.hostname, "--clearenv"]
        for k, v in env:
            args += ["--setenv", k, v]
        args += ["--chdir", self.workdir]
        r, w = os.pipe()
        args += ["--json-status-fd", str(w), "--"] + argv
        try:
            code, out, err = self._spawn(args, {"PATH": self.env["PATH"]}, timeout, pass_fds=(w,),
                                         **self._popen_user())
        finally:
            os.close(w)
            with os.fdopen(r, "rb") as f:
                status = f.read().decode("utf-8", "replace")
        if code is None:
            return ("timed out after %ds" % timeout, out, err)
        exits = re.findall(r'"exit-code"\s*:\s*(-?\d+)', status)
        if exits:
            return (int(exits[-1]), out, err)
        if '"child-pid"' not in status:
            raise DriverError("bwrap could not set up the sandbox (exit %d): %s" % (code, _first_line(err)))
        # The sandbox was made but the command could not be started (Docker: 127 / 126).
        missing = "No such file or directory" in err
        return (127 if missing else 126, out, err)

    def _run_unshare(self, unshare, root, env, argv, timeout):
        dev = os.path.join(root, "dev")
        for name, major, minor in (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
                                   ("urandom", 1, 9), ("tty", 5, 0)):
            p = os.path.join(dev, name)
            if not os.path.lexists(p):
                os.mknod(p, 0o666 | 0o020000, os.makedev(major, minor))
                os.chmod(p, 0o666)
        args = [unshare, "--mount", "--pid", "--net", "--uts", "--ipc", "--fork", "--kill-child",
                "--mount-proc=/proc", "--root=" + root, "--wd=" + self.workdir,
                "--setuid", str(self.uid), "--setgid", str(self.gid), "--"] + argv
        code, out, err = self._spawn(args, dict(env), timeout)
        if code is None:
            return ("timed out after %ds" % timeout, out, err)
        if code in (1, 127, 126) and err.startswith("unshare: ") and "failed to execute" not in err:
            raise DriverError("unshare could not set up the namespaces (exit %d): %s" % (code, _first_line(err)))
        return (code, out, err)

    def close(self):
        own = getattr(self, "_own_tmp", None)
        if own:
            rootfs.remove_tree(own)


# --- Selection -----------------------------------------------------------------------------


def select(name, image, tmp, log):
    env = _env()
    if name == "auto":
        cli, why_docker = probe_docker(env)
        if cli:
            return _engine("docker", cli, env, image, tmp, log, why_docker + "; driver auto")
        cli, why_podman = probe_podman(env, require_config=True)
        if cli:
            return _engine("podman", cli, env, image, tmp, log, why_podman + "; driver auto, docker: " + why_docker)
        log("driver auto: docker: %s; podman: %s" % (why_docker, why_podman))
        return NoEngine(image, tmp, log)
    if name == "docker":
        cli, why = probe_docker(env)
        if not cli:
            raise DriverError("driver docker: %s" % why)
        return _engine("docker", cli, env, image, tmp, log, why)
    if name == "podman":
        cli, why = probe_podman(env, require_config=False)
        if not cli:
            raise DriverError("driver podman: %s" % why)
        return _engine("podman", cli, env, image, tmp, log, why)
    if name == "none":
        return NoEngine(image, tmp, log)
    raise DriverError("unknown driver %r" % name)


def _engine(kind, cli, env, image, tmp, log, detail):
    if not env.get("HOME") and not env.get("DOCKER_CONFIG") and kind == "docker":
        env["DOCKER_CONFIG"] = os.path.join(tmp, "docker-config")
        os.makedirs(env["DOCKER_CONFIG"], exist_ok=True)
    engine = Engine(kind, cli, env, image, tmp, log)
    log("driver: %s (%s)" % (kind, detail))
    engine.load()
    return engine
