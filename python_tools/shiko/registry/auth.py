"""Registry credentials from docker's and podman's configuration, as docker and podman find them.

Credentials are never printed, logged or written; `repr()` of a Credential hides them. They are
looked up in this order: `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`, podman's
`$XDG_RUNTIME_DIR/containers/auth.json` and `~/.config/containers/auth.json`, then
`~/.docker/config.json`. In each file: `credHelpers[registry]`, then an `auths` entry (`auth`
base64 `user:password`, `username`/`password`, `identitytoken`, `registrytoken`; keys may be
`host`, `https://host/v1/` or podman's `host/namespace/repo`, the longest match wins), then
`credsStore`. Helpers speak the `docker-credential-<name> get` protocol (server on stdin, JSON
`{"Username", "Secret"}` on stdout; Username `<token>` means Secret is an identity token).
"""

import json
import os

from python_tools.shiko.oci.reference import DOCKER_HUB, HUB_ALIASES
from python_tools.shiko.registry.errors import AuthError

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


class Credential(object):
    """Credentials for one registry. repr()/str() never show the secrets."""

    def __init__(self, username=None, password=None, identity_token=None, registry_token=None,
                 source=""):
        self.username = username or None
        self.password = password or None
        self.identity_token = identity_token or None
        self.registry_token = registry_token or None
        self.source = source

    def basic_header(self):
        if self.username is None or self.password is None:
            return None
        raw = ("%s:%s" % (self.username, self.password)).encode("utf-8")
        import base64  # lazily: only a registry that asks for credentials needs it

        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self):
        kinds = [k for k in ("username", "password", "identity_token", "registry_token")
                 if getattr(self, k)]
        return "Credential(<%s> from %s)" % (", ".join(kinds) or "empty", self.source or "?")

    __str__ = __repr__


def auth_files(env=None):
    """Auth files to read, in order of precedence (existing or not)."""
    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    out = []
    if env.get("REGISTRY_AUTH_FILE"):
        out.append(env["REGISTRY_AUTH_FILE"])
    if env.get("DOCKER_CONFIG"):
        out.append(os.path.join(env["DOCKER_CONFIG"], "config.json"))
    if env.get("XDG_RUNTIME_DIR"):
        out.append(os.path.join(env["XDG_RUNTIME_DIR"], "containers", "auth.json"))
    out.append(os.path.join(env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config"),
                            "containers", "auth.json"))
    if not env.get("DOCKER_CONFIG"):
        out.append(os.path.join(home, ".docker", "config.json"))
    seen = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def _normalize_auth_key(key):
    """`https://host/v1/` -> `host`; `host/ns/repo` stays; Docker Hub aliases -> docker.io."""
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.startswith(prefix):
            k = k[len(prefix):]
            # A URL key names a registry only; drop any API path (/v1/, /v2/).
            k = k.split("/", 1)[0]
            break
    k = k.rstrip("/")
    head, _, tail = k.partition("/")
    if head in HUB_ALIASES:
        head = DOCKER_HUB
    return head + ("/" + tail if tail else "")


def _helper_server(registry):
    return DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry


def run_credential_helper(helper, server, env=None, timeout=60):
    """`docker-credential-<helper> get` for server: a Credential, or None when it has none."""
    import shutil  # imported here: only credential helpers need them
    import subprocess

    env = dict(os.environ if env is None else env)
    exe = shutil.which("docker-credential-" + helper, path=env.get("PATH"))
    if not exe:
        raise AuthError("credential helper docker-credential-%s (for %s) is not on PATH" % (helper, server))
    try:
        res = subprocess.run([exe, "get"], input=server.encode("utf-8"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthError("credential helper docker-credential-%s failed for %s: %s"
                        % (helper, server, type(e).__name__))
    out = res.stdout.decode("utf-8", "replace").strip()
    if res.returncode != 0:
        if "credentials not found" in out.lower() or "credentials not found" in res.stderr.decode(
                "utf-8", "replace").lower():
            return None
        # Helpers print their error message on stdout; never echo anything that could be a secret.
        first = out.splitlines()[0][:200] if out else "no output"
        raise AuthError("credential helper docker-credential-%s failed for %s (exit %d): %s"
                        % (helper, server, res.returncode, first))
    try:
        data = json.loads(out)
    except ValueError:
        raise AuthError("credential helper docker-credential-%s returned malformed JSON for %s" % (helper, server))
    if not isinstance(data, dict):
        raise AuthError("credential helper docker-credential-%s returned malformed JSON for %s" % (helper, server))
    user, secret = data.get("Username") or "", data.get("Secret") or ""
    source = "docker-credential-%s" % helper
    if not secret:
        return None
    if user == "<token>":
        return Credential(identity_token=secret, source=source)
    return Credential(username=user, password=secret, source=source)


def _entry_credential(entry, source):
    if not isinstance(entry, dict):
        return None
    user, password = entry.get("username"), entry.get("password")
    if entry.get("auth"):
        import base64  # lazily (see basic_header)

        try:
            raw = base64.b64decode(entry["auth"]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise AuthError("malformed `auth` entry in %s" % source)
        if ":" not in raw:
            raise AuthError("malformed `auth` entry in %s (no ':' in the decoded value)" % source)
        user, password = raw.split(":", 1)
    if entry.get("identitytoken"):
        return Credential(username=user, identity_token=entry["identitytoken"], source=source)
    if entry.get("registrytoken"):
        return Credential(registry_token=entry["registrytoken"], source=source)
    if user and password:
        return Credential(username=user, password=password, source=source)
    return None


def _read_auth_file(path):
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8") or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise AuthError("cannot read the auth file %s: %s" % (path, type(e).__name__))
    if not isinstance(data, dict):
        raise AuthError("the auth file %s is not a JSON object" % path)
    return data


def credential_from_config(data, registry, repository, path, env=None):
    """Looks `registry` (and `repository`) up in one parsed config/auth file."""
    helpers = data.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key, helper in helpers.items():
            if _normalize_auth_key(key) == registry and helper:
                return run_credential_helper(helper, _helper_server(registry), env)
    auths = data.get("auths") or {}
    best, best_len = None, -1
    if isinstance(auths, dict):
        want = registry + ("/" + repository if repository else "")
        for key, entry in auths.items():
            k = _normalize_auth_key(key)
            if (k == registry or (repository and (want == k or want.startswith(k + "/")))) and len(k) > best_len:
                best, best_len = entry, len(k)
    cred = _entry_credential(best, path) if best is not None else None
    if cred is not None:
        return cred
    store = data.get("credsStore")
    if store:
        return run_credential_helper(store, _helper_server(registry), env)
    return None


def find_credentials(registry, repository=None, env=None, files=None):
    """The first credentials found for registry (see the module docstring), or None."""
    env = os.environ if env is None else env
    for path in (files if files is not None else auth_files(env)):
        data = _read_auth_file(path)
        if data is None:
            continue
        cred = credential_from_config(data, registry, repository, path, env)
        if cred is not None:
            return cred
    return None
