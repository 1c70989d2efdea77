"""Where the container engines are: the one discovery behind image_load and image_test.

- docker: the daemon of DOCKER_HOST when it is set; else the first default socket that exists
  (/var/run/docker.sock, then $XDG_RUNTIME_DIR/docker.sock, rootless Docker's); else none is
  found (and unix:///var/run/docker.sock is named in messages). image_load speaks the Docker
  Engine API to it (docker_api.py); image_test runs the docker CLI against it.
- podman: the `podman` binary on the environment's PATH. It reads its configuration from the
  environment (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINER_HOST, CONTAINER_CONNECTION,
  ...); `podman_configured` tells whether any of it is given, which image_test's `auto` driver
  requires (podman's defaults fail on many CI machines, and Bazel passes no environment to tests
  unless told to).

Nothing here talks to an engine: whether it answers is for the caller to find out.
"""

import collections
import os
import shutil

DEFAULT_DOCKER_SOCKETS = ("/var/run/docker.sock",)
PODMAN_ENV = ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINER_HOST", "CONTAINER_CONNECTION")


class DockerHost(collections.namedtuple("DockerHost", "url how found")):
    """url: the daemon's address (`unix:///path` or `tcp://host:port`, as DOCKER_HOST gives it);
    how: "DOCKER_HOST" (from the variable) or "default" (a default socket);
    found: True when DOCKER_HOST is set or the default socket exists."""

    @property
    def socket_path(self):
        """The unix socket path of a default host (messages: "... does not exist")."""
        return self.url[len("unix://"):] if self.url.startswith("unix://") else None


def docker_host(env=None):
    """The Docker daemon to use (a DockerHost): DOCKER_HOST, else the first existing default socket."""
    env = os.environ if env is None else env
    host = env.get("DOCKER_HOST")
    if host:
        return DockerHost(host, "DOCKER_HOST", True)
    candidates = list(DEFAULT_DOCKER_SOCKETS)
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "docker.sock"))
    for c in candidates:
        if os.path.exists(c):
            return DockerHost("unix://" + c, "default", True)
    return DockerHost("unix://" + candidates[0], "default", False)


def which(name, env=None):
    """The path of program `name` on the environment's PATH, or None."""
    env = os.environ if env is None else env
    return shutil.which(name, path=env.get("PATH"))


def podman_binary(env=None):
    """The podman program on the environment's PATH, or None."""
    return which("podman", env)


def podman_configured(env=None):
    """True when the environment gives podman a configuration (one of PODMAN_ENV)."""
    env = os.environ if env is None else env
    return any(env.get(k) for k in PODMAN_ENV)
