"""The docker and podman drivers of image_test: the engine's CLI loads and runs the image.

The image is streamed untagged into `docker load` / `podman load` (shiko/oci/docker_archive.py,
from a one-image copy of the layout: no tar on disk) unless the engine already has an image with
this config digest, then each command runs with `run --rm --pull never --network none` by the
ID `load` printed. Which daemon and which podman: shiko/engines/discovery.py.
"""

import json
import os
import re
import shutil
import subprocess
import uuid

from python_tools.shiko.engines import discovery
from python_tools.shiko.image_test.driver import PROBE_TIMEOUT, DriverError, command_argv, describe, first_line
from python_tools.shiko.oci import media_types
from python_tools.shiko.oci.layout import OCI_LAYOUT_FILE

LOAD_TIMEOUT = 600
CLI_DEFAULT_HOST = "unix:///var/run/docker.sock"  # where the docker CLI goes without DOCKER_HOST


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
            raise DriverError("`%s load` failed (exit %d): %s" % (self.name, code, first_line(err) or out))
        m = re.search(r"Loaded image(?: ID)?: (\S+)", out)
        self.ref = m.group(1) if m else config
        self.log("image: loaded into %s as %s" % (self.name, self.ref))

    def run(self, command):
        argv = command_argv(command, self.image.cfg)
        name = "shiko-image-test-%s" % uuid.uuid4().hex[:12]
        args = ["run", "--rm", "--pull", "never", "--network", "none", "--name", name]
        for k in sorted(command.get("env") or {}):
            args += ["--env", "%s=%s" % (k, command["env"][k])]
        if "command" in command or "args" in command:
            args += ["--entrypoint", argv[0], self.ref] + argv[1:]
        else:
            args += [self.ref]
        self.log("run: %s %s (%s)" % (self.name, describe(argv), command["name"]))
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
            raise DriverError("`%s run` failed (exit 125, the engine's own error): %s" % (self.name, first_line(err)))
        return (r.returncode, out, err)

    def close(self):
        pass


def _single_image_layout(image, dest):
    """A layout holding only the image under test (blobs hard-linked or copied)."""
    os.makedirs(os.path.join(dest, "blobs", "sha256"))
    with open(os.path.join(dest, "oci-layout"), "wb") as f:
        f.write(OCI_LAYOUT_FILE)
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
    index = {"schemaVersion": 2, "mediaType": media_types.OCI_INDEX,
             "manifests": [{k: mdesc[k] for k in ("mediaType", "digest", "size") if k in mdesc}]}
    with open(os.path.join(dest, "index.json"), "w") as f:
        json.dump(index, f)


def probe_docker(env):
    """(cli, description) when a docker daemon answers, else (None, why not).

    The daemon is the one shiko/engines/discovery.py finds; when that is a default socket the
    docker CLI does not look at by itself ($XDG_RUNTIME_DIR/docker.sock), env["DOCKER_HOST"] is
    set to it, so the CLI calls made with env reach it."""
    cli = discovery.which("docker", env)
    if not cli:
        return None, "no docker CLI on PATH (apt-get install docker.io)"
    host = discovery.docker_host(env)
    if not host.found:
        return None, "DOCKER_HOST is unset and %s does not exist (pass --test_env=DOCKER_HOST=...)" % (
            host.socket_path)
    if host.how == "default" and host.url != CLI_DEFAULT_HOST:
        env["DOCKER_HOST"] = host.url
    try:
        r = subprocess.run([cli, "version", "--format", "{{.Server.Version}}"], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, "the daemon at %s did not answer within %ds" % (host.url, PROBE_TIMEOUT)
    if r.returncode != 0:
        return None, "the daemon at %s does not answer: %s" % (
            host.url, first_line(r.stderr.decode("utf-8", "replace")))
    return cli, "server %s at %s" % (r.stdout.decode().strip(), host.url)


def probe_podman(env, require_config):
    """(cli, description) when `podman info` works, else (None, why not). With require_config,
    only when the environment gives podman a configuration (discovery.PODMAN_ENV)."""
    cli = discovery.podman_binary(env)
    if not cli:
        return None, "no podman on PATH (apt-get install podman)"
    if require_config and not discovery.podman_configured(env):
        return None, "no podman configuration given to the test (%s)" % ", ".join(discovery.PODMAN_ENV)
    try:
        r = subprocess.run([cli, "info", "--format", "{{.Version.Version}} {{.Store.GraphDriverName}}"], env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=PROBE_TIMEOUT * 2)
    except subprocess.TimeoutExpired:
        return None, "`podman info` did not finish"
    if r.returncode != 0:
        return None, "`podman info` failed: %s" % first_line(r.stderr.decode("utf-8", "replace"))
    version = r.stdout.decode().strip().split()
    return cli, "podman %s, %s storage" % (version[0] if version else "?", version[1] if len(version) > 1 else "?")
