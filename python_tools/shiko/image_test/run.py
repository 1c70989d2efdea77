"""Runs commands in an image for image_test: with docker, podman, or no engine at all.

    driver = select("auto", image, tmpdir, log)   # image: image.Image; log(line) prints
    code, stdout, stderr = driver.run(command)    # command: a normalized image_test command
    driver.close()

Drivers
-------
- docker (engine.py): the daemon shiko/engines/discovery.py finds (DOCKER_HOST, else
  /var/run/docker.sock or $XDG_RUNTIME_DIR/docker.sock), through the docker CLI. The image is
  streamed untagged into `docker load` (shiko/oci/docker_archive.py, from a one-image copy of
  the layout: no tar on disk) unless the daemon already has an image with this config digest,
  then run with `docker run --rm --pull never --network none` by the ID `load` printed.
- podman (engine.py): the same CLI calls, with the podman configuration the test was given
  (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINER_HOST, ...).
- none (sandbox.py): the layers unpacked into a fresh temporary root for each command, run under
  bwrap (or unshare as root) as the image user, with Docker's environment rules.
- an image for another CPU (config architecture): only none, each command started through
  qemu user-mode emulation (emulation.py); auto picks none, docker/podman are an error.
- auto: docker when a daemon answers; else podman when its configuration is in the
  environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINER_HOST or
  CONTAINER_CONNECTION) and `podman info` works (podman's defaults fail on many CI machines,
  and Bazel passes no environment to tests unless told to); else none.

Exit codes follow Docker: 126 when the command cannot be executed, 127 when it is not found.
An engine's own failure (exit 125), a sandbox that cannot be set up, or no usable driver raise
DriverError (driver.py): image_test then fails.
"""

import os

from python_tools.shiko.image_test import emulation
from python_tools.shiko.image_test.driver import DriverError, tool_env
from python_tools.shiko.image_test.engine import Engine, probe_docker, probe_podman
from python_tools.shiko.image_test.sandbox import NoEngine


def select(name, image, tmp, log):
    env = tool_env()
    arch = image.config.get("architecture")
    if emulation.foreign(arch):
        # Engines run other CPUs' images only through binfmt_misc; the no-engine driver
        # starts each command through qemu itself (emulation.py).
        if name in ("docker", "podman"):
            raise DriverError("driver %s: the image is linux/%s and this host is not: engines need "
                              "binfmt_misc for that; use driver \"none\" (qemu-user-static)"
                              % (name, arch))
        if name == "auto":
            log("driver auto: linux/%s image on another CPU: no engine, qemu" % arch)
            return NoEngine(image, tmp, log)
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
