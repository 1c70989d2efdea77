"""The `none` driver of image_test: commands run in an unpacked copy of the image, no engine.

The layers are unpacked (whiteouts applied; ownership kept when running as root) into a fresh
temporary root for each command (each run starts from the image, as `docker run --rm` does),
which runs under
    bwrap --bind ROOT / --proc /proc --dev /dev --die-with-parent --new-session
          --unshare-all --uid U --gid G --clearenv --setenv ... --chdir WORKDIR -- ARGV
started as the image user when we are root, so files are accessed with the image's ids as in
an engine (see NoEngine for the exact modes), or, when bwrap is missing or cannot make its
namespaces and we are root,
    unshare --mount --pid --net --uts --ipc --fork --kill-child -- sh -c SETUP ...
        setpriv --bounding-set=-all,+<Docker's default caps> --inh-caps=-all --no-new-privs --
        unshare --root=ROOT --wd=WORKDIR --setuid U --setgid G -- ARGV
where SETUP, in the new namespaces, bind-mounts ROOT onto itself nodev,nosuid, mounts /proc and
binds the host's null, zero, full, random, urandom and tty over empty files of a fresh /dev (the
image's /dev hidden, as Docker's tmpfs does): as confined as bwrap (Docker's capabilities only;
no device reachable through a node the command makes). An image's own device nodes are never
created (shiko/tar/unpack.py). The environment is the image's Env, then the command's,
plus PATH (Docker's default), HOME (from the image's /etc/passwd, else /) and HOSTNAME when
unset, as Docker does; the user (name or uid, [:group]) is resolved in the image's /etc/passwd
and /etc/group like Docker resolves it (no supplementary groups).
"""

import os
import re
import signal
import subprocess
import tempfile

from python_tools.shiko.engines import discovery
from python_tools.shiko.image_test import emulation
from python_tools.shiko.image_test.driver import (
    DEFAULT_PATH,
    PROBE_TIMEOUT,
    DriverError,
    command_argv,
    describe,
    first_line,
    tool_env,
)
from python_tools.shiko.tar import rootfs


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

# The host devices the unshare fallback binds into the root's /dev (bwrap --dev's set).
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"))

# The unshare fallback's setup, run by sh in the new namespaces (still root, all capabilities):
# sh -c SETUP sh MOUNT ROOT HOSTNAME STATUS -- CONFINED_ARGV. Writes "ready" to the file STATUS
# (outside the root) once everything is mounted, so a setup failure is never taken for the
# command's.
UNSHARE_SETUP = """set -e
mnt=$1 root=$2 hn=$3 status=$4
shift 5
"$mnt" --bind "$root" "$root"
"$mnt" -o remount,bind,nodev,nosuid "$root"
"$mnt" -t proc -o nosuid,nodev,noexec proc "$root/proc"
for d in %s; do
    if [ -e "/dev/$d" ]; then "$mnt" --bind "/dev/$d" "$root/dev/$d"; fi
done
{ printf '%%s' "$hn" > /proc/sys/kernel/hostname; } 2>/dev/null || :
printf ready > "$status"
exec "$@"
""" % " ".join(DEVICES)


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
    - unshare (root only, when bwrap is missing or cannot make its namespaces): the root
      bind-mounted nodev,nosuid, /proc mounted, a fresh /dev with the host's harmless devices,
      then the bounding set cut to Docker's default capabilities and real setuid/setgid after
      chroot.
    """

    name = "none"

    def __init__(self, image, tmp, log, backend=None):
        self.image = image
        self.log = log
        self.env = tool_env()
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
        arch = image.config.get("architecture")
        self.emulator = emulation.find(arch, self.env) if emulation.foreign(arch) else None
        try:
            self.backend, why = self._backend(backend)
        except BaseException:
            self.close()
            raise
        if self.backend is None:
            self.close()
            raise DriverError(why)
        self.log("driver: none (%s; user %d:%d, workdir %s%s)" % (
            why, self.uid, self.gid, self.workdir,
            "; linux/%s through %s" % (arch, self.emulator) if self.emulator else ""))

    def _workspace(self, tmp):
        """Where the temporary roots go: `tmp`, or for bwrap started as the image user a
        directory it can reach (Bazel's TEST_TMPDIR sits below /root, which it cannot)."""
        if not self.as_user:
            return tmp
        parent = tmp if _traversable(tmp) else "/tmp"
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
        bwrap = discovery.which("bwrap", self.env) if only in (None, "bwrap") else None
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
        tools = {}
        if only in (None, "unshare"):
            for name in ("unshare", "setpriv", "mount", "sh"):
                tools[name] = discovery.which(name, self.env)
        missing = [name for name in ("unshare", "setpriv", "mount", "sh") if not tools.get(name)]
        if self.root_caller and not missing:
            return ("unshare", tools), "unshare, as root, Docker's default capabilities (%s)" % problems[0]
        if not self.root_caller:
            problems.append("unshare needs root")
        else:
            problems.append("the unshare fallback needs %s (util-linux)" % ", ".join(missing))
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
        return False, first_line(err) or "exit %d" % r.returncode

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
        root = self._prepare()
        try:
            env = self._environment(command)
            if self.emulator:
                argv = emulation.wrap(root, argv, env, self.emulator)
            kind, exe = self.backend
            self.log("run: %s %s (%s)" % (kind, describe(argv), command["name"]))
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
            raise DriverError("bwrap could not set up the sandbox (exit %d): %s" % (code, first_line(err)))
        # The sandbox was made but the command could not be started (Docker: 127 / 126).
        missing = "No such file or directory" in err
        return (127 if missing else 126, out, err)

    @staticmethod
    def _fresh_mount_points(root):
        """Real directories /proc and /dev in the root (an image's own, or a symlink or file
        there, is replaced: mounts must not follow the image's symlinks), /dev holding what
        the setup binds or links: empty files for the devices, the fd links and shm."""
        for d in ("proc", "dev"):
            p = os.path.join(root, d)
            if os.path.islink(p) or not os.path.isdir(p):
                if os.path.lexists(p):
                    os.unlink(p)
            else:
                rootfs.remove_tree(p)
            os.mkdir(p, 0o755)
        dev = os.path.join(root, "dev")
        for name in DEVICES:
            open(os.path.join(dev, name), "wb").close()
        for name, target in DEV_LINKS:
            os.symlink(target, os.path.join(dev, name))
        os.mkdir(os.path.join(dev, "shm"))
        os.chmod(os.path.join(dev, "shm"), 0o1777)

    def _run_unshare(self, tools, root, env, argv, timeout):
        self._fresh_mount_points(root)
        caps = ",".join("+" + c[len("CAP_"):].lower() for c in DOCKER_CAPS)
        confined = [tools["setpriv"], "--bounding-set=-all," + caps, "--inh-caps=-all", "--no-new-privs", "--",
                    tools["unshare"], "--root=" + root, "--wd=" + self.workdir,
                    "--setuid", str(self.uid), "--setgid", str(self.gid), "--"] + argv
        status_file = root + ".status"
        args = [tools["unshare"], "--mount", "--pid", "--net", "--uts", "--ipc", "--fork", "--kill-child", "--",
                tools["sh"], "-c", UNSHARE_SETUP, "sh", tools["mount"], root, self.hostname, status_file,
                "--"] + confined
        try:
            code, out, err = self._spawn(args, dict(env), timeout)
            try:
                with open(status_file, "rb") as f:
                    status = f.read()
            except OSError:
                status = b""
        finally:
            if os.path.lexists(status_file):
                os.unlink(status_file)
        if code is None:
            return ("timed out after %ds" % timeout, out, err)
        if status != b"ready":
            raise DriverError("unshare could not set up the sandbox (exit %d): %s" % (code, first_line(err)))
        if (code in (1, 127, 126) and err.startswith(("unshare: ", "setpriv: "))
                and "failed to execute" not in err):
            raise DriverError("unshare could not set up the sandbox (exit %d): %s" % (code, first_line(err)))
        return (code, out, err)

    def close(self):
        own = getattr(self, "_own_tmp", None)
        if own:
            rootfs.remove_tree(own)
