"""A small OCI distribution (registry v2) client: auth, retries, streaming blobs, manifests.

Python standard library only: the `image_pull` repository rule runs it with the host's python3,
outside any Bazel action, where no third-party package is available.

What it does, the way docker and podman do it:
- References: `registry/repo[:tag][@sha256:...]`; a first component without `.`/`:` that isn't
  `localhost` means Docker Hub (`docker.io`, `library/` for one-component names).
- Credentials (never printed, logged or written; `repr()` of a Credential hides them), looked up
  in this order: `$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`, podman's
  `$XDG_RUNTIME_DIR/containers/auth.json` and `~/.config/containers/auth.json`, then
  `~/.docker/config.json`. In each file: `credHelpers[registry]`, then an `auths` entry (`auth`
  base64 `user:password`, `username`/`password`, `identitytoken`, `registrytoken`; keys may be
  `host`, `https://host/v1/` or podman's `host/namespace/repo`, the longest match wins), then
  `credsStore`. Helpers speak the `docker-credential-<name> get` protocol (server on stdin, JSON
  `{"Username", "Secret"}` on stdout; Username `<token>` means Secret is an identity token).
- Auth challenges: `Basic` (credentials on every request) and `Bearer` (a token from the realm
  for the scopes the caller names, e.g. `repository:R:pull,push` plus `repository:S:pull` to
  mount from S; cached per scope set, refreshed when it expires or a request is refused).
- Transport: HTTPS, verified against the system CAs, plus `ca_file` and the CAs in
  `/etc/docker/certs.d/<host>/` and `/etc/containers/certs.d/<host>/`. Plain HTTP only for
  loopback registries (HTTPS first, then HTTP, as docker does) or with `insecure=True` (which also
  skips certificate checks). One keep-alive connection per thread and host.
- Faults: connection resets, timeouts, 5xx and 429 are retried with exponential backoff (plus
  jitter), honouring `Retry-After`, at most `RetryPolicy.attempts` times per operation; a blob
  upload that fails midway is restarted (monolithic) or resumed from the registry's last
  acknowledged offset (chunked). Other failures raise RegistryError with one line naming the
  operation, the blob or manifest, the registry and the HTTP status.
- Blobs stream from and to disk in 1 MiB pieces, hashed on the way; downloads are verified
  against their digest and size before they are kept.
"""

import base64
import email.utils
import hashlib
import http.client
import ipaddress
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

from python_tools import common  # standard library only, like this module

CHUNK = 1 << 20
USER_AGENT = "rules_shiko-registry/0.1"

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(r"^%s(?:/%s)*$" % (_REPO_COMPONENT, _REPO_COMPONENT))
_HOST_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                      r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$")

MAX_MANIFEST_BYTES = 4 << 20


class RegistryError(Exception):
    """A registry operation failed; str() is one line (no credentials, ever)."""

    def __init__(self, message, status=None, retry_after=None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthError(RegistryError):
    """401/403, or no usable credentials/token."""


class DigestMismatch(RegistryError):
    """Content did not match the digest it was asked for."""


class _Retryable(Exception):
    """Internal: a failure worth another attempt (carries the one-line reason)."""

    def __init__(self, reason, retry_after=None, status=None):
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status


# --- References -----------------------------------------------------------------------------


class Reference(object):
    """registry (host[:port]), repository, tag (or None), digest (or None)."""

    def __init__(self, registry, repository, tag=None, digest=None):
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def name(self):
        return "%s/%s" % (self.registry, self.repository)

    def __str__(self):
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def __repr__(self):
        return "Reference(%r)" % str(self)


def parse_reference(ref, allow_tag=True, allow_digest=True):
    """Parses `[registry/]repo[:tag][@digest]` (docker's normalization); ValueError when bad."""
    if not isinstance(ref, str) or not ref or ref != ref.strip():
        raise ValueError("empty or malformed image reference")
    rest, digest = ref, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValueError("digest %r is not sha256:<64 lowercase hex digits>" % digest)
        if not allow_digest:
            raise ValueError("a digest is not allowed here")
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise ValueError("tag %r is not valid ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})" % tag)
        if not allow_tag:
            raise ValueError("a tag is not allowed here (give it separately)")
    parts = rest.split("/", 1)
    if len(parts) == 2 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"
                            or parts[0].startswith("[")):
        registry, repository = parts
        if not _HOST_RE.match(registry):
            raise ValueError("registry %r is not a host[:port]" % registry)
    else:
        registry, repository = DOCKER_HUB, rest
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = "library/" + repository
    if not REPOSITORY_RE.match(repository):
        raise ValueError("repository %r is not valid (lowercase components [a-z0-9._-] separated by /)"
                         % repository)
    return Reference(registry, repository, tag, digest)


def host_of(registry):
    """The host part (no port, no brackets) of `host[:port]`."""
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry


def is_loopback(registry):
    host = host_of(registry)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_host(registry):
    """Where the API of `registry` lives (Docker Hub's is not at docker.io)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


# --- Credentials ----------------------------------------------------------------------------


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
    if head in _HUB_ALIASES:
        head = DOCKER_HUB
    return head + ("/" + tail if tail else "")


def _helper_server(registry):
    return DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry


def run_credential_helper(helper, server, env=None, timeout=60):
    """`docker-credential-<helper> get` for server: a Credential, or None when it has none."""
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


# --- Challenges -----------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_CHALLENGE_RE = re.compile(r"\s*(%s)\s*" % _TOKEN)
_PARAM_RE = re.compile(r"\s*(%s)\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|(%s))\s*" % (_TOKEN, _TOKEN))


def parse_challenges(header):
    """`WWW-Authenticate` value -> [(scheme lowercased, {param: value})], in order."""
    out = []
    if not header:
        return out
    pos, n = 0, len(header)
    while pos < n:
        m = _CHALLENGE_RE.match(header, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params = {}
        while pos < n:
            pm = _PARAM_RE.match(header, pos)
            if not pm:
                break
            value = pm.group(2)
            if value is not None:
                value = re.sub(r"\\(.)", r"\1", value)
            else:
                value = pm.group(3)
            params[pm.group(1).lower()] = value
            pos = pm.end()
            if pos < n and header[pos] == ",":
                pos += 1
                # Another param follows, or a new challenge (a token not followed by '=').
                nxt = _PARAM_RE.match(header, pos)
                if not nxt:
                    break
        while pos < n and header[pos] in ", ":
            pos += 1
        out.append((scheme, params))
    return out


# --- Retry policy ---------------------------------------------------------------------------


class RetryPolicy(object):
    """How often and how long to retry. attempts counts the first try too."""

    def __init__(self, attempts=6, base_delay=0.5, max_delay=20.0, max_retry_after=60.0, jitter=0.25,
                 sleep=time.sleep):
        self.attempts = max(1, int(attempts))
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self.max_retry_after = float(max_retry_after)
        self.jitter = float(jitter)
        self.sleep = sleep

    def delay(self, attempt, retry_after=None):
        """Seconds to wait after failed attempt number `attempt` (1-based).

        A `Retry-After` (seconds or an HTTP date) wins when given; more than max_retry_after
        raises ValueError (the caller gives up rather than hanging)."""
        if retry_after is not None:
            secs = parse_retry_after(retry_after)
            if secs is not None:
                if secs > self.max_retry_after:
                    raise ValueError("the registry asks to retry after %d s (more than %d s)"
                                     % (secs, self.max_retry_after))
                return secs
        d = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return d * (1 + random.uniform(0, self.jitter))


def parse_retry_after(value, now=None):
    """Retry-After: delta seconds or an HTTP date -> seconds (>= 0), or None if unparsable."""
    if value is None:
        return None
    v = str(value).strip()
    if v.isdigit():
        return float(int(v))
    try:
        when = email.utils.parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


# --- HTTP plumbing --------------------------------------------------------------------------

_RETRYABLE_EXC = (ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException, OSError)


class FileBody(object):
    """A request body streamed from part of a file, hashed and counted as it goes."""

    def __init__(self, path, offset=0, length=None, progress=None):
        self.path = path
        self.offset = offset
        self.length = os.path.getsize(path) - offset if length is None else length
        self.progress = progress
        self.sha256 = None

    def send(self, conn):
        h = hashlib.sha256()
        left = self.length
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while left > 0:
                buf = f.read(min(CHUNK, left))
                if not buf:
                    raise OSError("%s shrank while being sent" % self.path)
                conn.send(buf)
                h.update(buf)
                left -= len(buf)
                if self.progress:
                    self.progress(len(buf))
        self.sha256 = h.hexdigest()


class Response(object):
    def __init__(self, status, reason, headers, body, raw=None, url=None):
        self.status = status
        self.reason = reason
        self.headers = headers  # {lowercase name: value}
        self.body = body
        self.raw = raw  # http.client.HTTPResponse, when streaming
        self.url = url

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)


def _registry_errors(body):
    """`{"errors": [{"code", "message"}]}` -> "CODE: message; ..." (or a short text)."""
    if not body:
        return ""
    try:
        data = json.loads(body.decode("utf-8", "replace"))
        errs = data.get("errors") if isinstance(data, dict) else None
        if isinstance(errs, list) and errs:
            parts = []
            for e in errs[:3]:
                if isinstance(e, dict):
                    parts.append(("%s: %s" % (e.get("code", ""), e.get("message", ""))).strip(": "))
            return "; ".join(p for p in parts if p)
        if isinstance(data, dict) and (data.get("details") or data.get("error")):
            return str(data.get("details") or data.get("error"))[:200]
    except ValueError:
        pass
    text = body[:200].decode("utf-8", "replace").strip().splitlines()
    return text[0] if text else ""


class Client(object):
    """One registry. Thread-safe: each thread gets its own keep-alive connection.

    registry: "host[:port]" (Docker Hub: "docker.io"). env: for credentials and helpers.
    credentials: a Credential to use instead of looking them up (None: look up lazily).
    """

    def __init__(self, registry, insecure=False, ca_file=None, retry=None, timeout=120.0,
                 credentials=None, env=None, log=None, certs_dirs=("/etc/docker/certs.d",
                                                                  "/etc/containers/certs.d")):
        self.registry = registry
        self.host = api_host(registry)
        self.insecure = bool(insecure)
        self.ca_file = ca_file
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.env = dict(os.environ if env is None else env)
        self.log = log or (lambda msg: None)
        self.certs_dirs = certs_dirs
        self._credentials = credentials
        self._credentials_loaded = credentials is not None
        self._scheme = None
        self._lock = threading.RLock()
        self._local = threading.local()
        self._challenge = None  # ("basic"|"bearer"|"none", params)
        self._tokens = {}  # frozenset(scopes) -> (header, expiry)
        self._ssl = None
        self.retries = 0  # how many retries happened (for summaries and tests)

    # -- TLS and connections ------------------------------------------------------------------
    def _ssl_context(self):
        if self._ssl is None:
            if self.insecure:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx = ssl.create_default_context()
                if self.ca_file:
                    try:
                        ctx.load_verify_locations(cafile=self.ca_file)
                    except (OSError, ssl.SSLError) as e:
                        raise RegistryError("cannot load the CA file %s: %s" % (self.ca_file, e))
                for d in self.certs_dirs or ():
                    hd = os.path.join(d, self.registry)
                    if os.path.isdir(hd):
                        for name in sorted(os.listdir(hd)):
                            if name.endswith(".crt"):
                                try:
                                    ctx.load_verify_locations(cafile=os.path.join(hd, name))
                                except (OSError, ssl.SSLError):
                                    pass
            self._ssl = ctx
        return self._ssl

    def _new_conn(self, scheme, netloc):
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, context=self._ssl_context())
        return http.client.HTTPConnection(netloc, timeout=self.timeout)

    def _conn(self, scheme, netloc):
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        key = (scheme, netloc)
        c = conns.get(key)
        fresh = c is None
        if fresh:
            c = conns[key] = self._new_conn(scheme, netloc)
        return c, fresh

    def _drop_conn(self, scheme, netloc):
        conns = getattr(self._local, "conns", None) or {}
        c = conns.pop((scheme, netloc), None)
        if c is not None:
            try:
                c.close()
            except Exception:
                pass

    def close(self):
        for key in list((getattr(self._local, "conns", None) or {}).keys()):
            self._drop_conn(*key)

    def _raw(self, method, url, headers, body=None, stream=False):
        """One HTTP exchange (no retries, no auth). Raises OSError/HTTPException on I/O errors."""
        u = urllib.parse.urlsplit(url)
        path = u.path + ("?" + u.query if u.query else "")
        for attempt in (1, 2):
            conn, fresh = self._conn(u.scheme, u.netloc)
            try:
                conn.putrequest(method, path, skip_accept_encoding=True)
                for k, v in headers.items():
                    conn.putheader(k, v)
                if isinstance(body, FileBody):
                    conn.putheader("Content-Length", str(body.length))
                    conn.endheaders()
                    body.send(conn)
                elif body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders()
                    if body:
                        conn.send(body)
                else:
                    if method in ("PUT", "POST", "PATCH"):
                        conn.putheader("Content-Length", "0")
                    conn.endheaders()
                resp = conn.getresponse()
                hdrs = {k.lower(): v for k, v in resp.getheaders()}
                if stream and 200 <= resp.status < 300:
                    return Response(resp.status, resp.reason, hdrs, None, raw=resp, url=url)
                data = resp.read()  # also for HEAD: frees the connection for the next request
                if resp.will_close:
                    self._drop_conn(u.scheme, u.netloc)
                return Response(resp.status, resp.reason, hdrs, data, url=url)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self._drop_conn(u.scheme, u.netloc)
                # A kept-alive connection the server closed while idle: one immediate reconnect.
                # Never for streamed blob bodies: the registry may have taken part of it, and
                # the upload session must be restarted by the caller instead.
                if not fresh and attempt == 1 and not isinstance(body, FileBody):
                    continue
                raise
            except BaseException:
                self._drop_conn(u.scheme, u.netloc)
                raise
        raise AssertionError("unreachable")

    # -- scheme detection ---------------------------------------------------------------------
    def base_url(self):
        self._ensure_scheme()
        return "%s://%s" % (self._scheme, self.host)

    def _ensure_scheme(self):
        if self._scheme is not None:
            return
        with self._lock:
            if self._scheme is not None:
                return
            schemes = ["https"]
            if self.insecure or is_loopback(self.registry):
                schemes.append("http")
            last = None
            for attempt in range(1, self.retry.attempts + 1):
                for scheme in schemes:
                    url = "%s://%s/v2/" % (scheme, self.host)
                    try:
                        resp = self._raw("GET", url, {"User-Agent": USER_AGENT})
                    except ssl.SSLCertVerificationError as e:
                        self._drop_conn(scheme, self.host)
                        raise RegistryError(
                            "registry %s: the TLS certificate is not trusted (%s); pass the CA with "
                            "--ca_file (or put it in /etc/docker/certs.d/%s/ca.crt), or --insecure"
                            % (self.registry, e.verify_message or e.reason, self.registry))
                    except (ssl.SSLError, OSError, http.client.HTTPException) as e:
                        last = "%s: %s" % (scheme, _exc_text(e))
                        continue
                    if resp.status >= 500 or resp.status == 429:
                        last = "%s: HTTP %d %s" % (scheme, resp.status, resp.reason)
                        break
                    if resp.status not in (200, 401, 403):
                        last = "%s: HTTP %d %s on GET /v2/ (not a registry?)" % (scheme, resp.status, resp.reason)
                        if scheme == schemes[-1]:
                            raise RegistryError("registry %s: %s" % (self.registry, last), resp.status)
                        continue
                    self._scheme = scheme
                    if resp.status == 401:
                        self._remember_challenge(resp)
                    else:
                        self._challenge = ("none", {})
                    if scheme == "http":
                        self.log("registry %s: using plain HTTP" % self.registry)
                    return
                if attempt < self.retry.attempts:
                    self.retries += 1
                    self.retry.sleep(self.retry.delay(attempt))
            raise RegistryError("registry %s: cannot connect (%s) after %d attempts"
                                % (self.registry, last, self.retry.attempts))

    # -- auth -------------------------------------------------------------------------------
    def credentials(self):
        with self._lock:
            if not self._credentials_loaded:
                self._credentials = find_credentials(self.registry, None, self.env)
                self._credentials_loaded = True
            return self._credentials

    def _cred_hint(self):
        c = self._credentials if self._credentials_loaded else None
        if c is None:
            return "no credentials for %s were found (docker/podman config files, credential helpers)" % self.registry
        return "credentials from %s were refused" % c.source

    def _remember_challenge(self, resp):
        challenges = parse_challenges(resp.header("www-authenticate", ""))
        for scheme, params in challenges:
            if scheme == "bearer" and params.get("realm"):
                self._challenge = ("bearer", params)
                return params
        for scheme, params in challenges:
            if scheme == "basic":
                self._challenge = ("basic", params)
                return params
        raise AuthError("registry %s: HTTP 401 with no usable challenge (WWW-Authenticate: %r)"
                        % (self.registry, resp.header("www-authenticate", "")[:100]), 401)

    def _auth_header(self, scopes, force_refresh=False):
        kind, params = self._challenge or ("none", {})
        if kind == "none":
            return None
        if kind == "basic":
            cred = self.credentials()
            h = cred.basic_header() if cred else None
            if h is None:
                raise AuthError("registry %s: HTTP 401 Unauthorized: authentication required (Basic): %s"
                                % (self.registry, self._cred_hint()), 401)
            if self._scheme == "http" and not (self.insecure or is_loopback(self.registry)):
                raise AuthError("registry %s: refusing to send credentials over plain HTTP" % self.registry)
            return h
        key = frozenset(scopes)
        with self._lock:
            cached = self._tokens.get(key)
            if cached and not force_refresh and cached[1] > time.time() + 5:
                return cached[0]
            token, ttl = self._fetch_token(params, sorted(scopes))
            header = "Bearer " + token
            self._tokens[key] = (header, time.time() + ttl)
            return header

    def _fetch_token(self, params, scopes):
        realm = params["realm"]
        r = urllib.parse.urlsplit(realm)
        if r.scheme not in ("https", "http") or not r.netloc:
            raise AuthError("registry %s: bad token realm %r" % (self.registry, realm))
        if r.scheme == "http" and not (self.insecure or is_loopback(r.netloc)):
            raise AuthError("registry %s: refusing to fetch a token over plain HTTP from %s" % (self.registry, r.netloc))
        cred = self.credentials()
        query = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for s in scopes:
            query.append(("scope", s))
        headers = {"User-Agent": USER_AGENT}
        if cred and cred.registry_token:
            return cred.registry_token, 300
        if cred and cred.identity_token:
            form = [("grant_type", "refresh_token"), ("refresh_token", cred.identity_token),
                    ("client_id", "rules_shiko")] + query
            body = urllib.parse.urlencode(form).encode("ascii")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            method, url = "POST", realm
        else:
            body = None
            method = "GET"
            sep = "&" if r.query else "?"
            url = realm + (sep + urllib.parse.urlencode(query) if query else "")
            if cred and cred.basic_header():
                headers["Authorization"] = cred.basic_header()
        last = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                resp = self._raw(method, url, headers, body)
            except ssl.SSLCertVerificationError as e:
                raise AuthError("token server %s for %s: the TLS certificate is not trusted (%s)"
                                % (r.netloc, self.registry, e.verify_message or e.reason))
            except _RETRYABLE_EXC as e:
                last = _exc_text(e)
                resp = None
            if resp is not None:
                if resp.status in (401, 403):
                    raise AuthError("registry %s: token server %s: HTTP %d %s: %s"
                                    % (self.registry, r.netloc, resp.status, resp.reason,
                                       self._cred_hint() if cred is None else
                                       "credentials from %s were refused (wrong username or password?)" % cred.source),
                                    resp.status)
                if resp.status == 200:
                    try:
                        data = json.loads(resp.body.decode("utf-8"))
                        token = data.get("token") or data.get("access_token")
                    except (ValueError, AttributeError):
                        token = None
                        data = {}
                    if not token:
                        raise AuthError("registry %s: token server %s returned no token" % (self.registry, r.netloc))
                    try:
                        ttl = max(10, int(data.get("expires_in") or 60))
                    except (TypeError, ValueError):
                        ttl = 60
                    return token, ttl
                last = "HTTP %d %s" % (resp.status, resp.reason)
                if not (resp.status >= 500 or resp.status == 429):
                    raise AuthError("registry %s: token server %s: %s" % (self.registry, r.netloc, last), resp.status)
            if attempt < self.retry.attempts:
                self.retries += 1
                self.retry.sleep(self.retry.delay(attempt))
        raise AuthError("registry %s: token server %s: %s after %d attempts"
                        % (self.registry, r.netloc, last, self.retry.attempts))

    # -- requests ---------------------------------------------------------------------------
    def url(self, path):
        return self.base_url() + path

    def _once(self, method, url, headers, body, scopes, what, stream, auth_state):
        """One authenticated exchange; handles one 401 by (re)authenticating."""
        same_host = urllib.parse.urlsplit(url).netloc == self.host
        for _ in range(3):
            h = {"User-Agent": USER_AGENT}
            h.update(headers or {})
            if same_host:
                auth = self._auth_header(scopes, force_refresh=auth_state.get("refresh", False))
                auth_state["refresh"] = False
                if auth:
                    h["Authorization"] = auth
            resp = self._raw(method, url, h, body, stream=stream)
            if resp.status == 401 and same_host and not auth_state.get("reauthed"):
                auth_state["reauthed"] = True
                before = self._challenge
                self._remember_challenge(resp)
                if self._challenge[0] == "bearer":
                    # A refused token (expired, or scopes the challenge now names): fetch anew.
                    auth_state["refresh"] = True
                elif before and before[0] == "basic" and "Authorization" in h:
                    return resp
                continue
            return resp
        return resp

    def request(self, method, path_or_url, headers=None, body=None, scopes=(), ok=(200,), what="",
                stream=False, retry=True, follow_redirects=True):
        """An API call with auth, retries and redirects. Returns a Response whose status is in ok.

        `what` names the operation in error messages, e.g. "PUT manifest sha256:...".
        """
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        attempts = self.retry.attempts if retry else 1
        attempt = 0
        auth_state = {}
        redirects = 0
        while True:
            attempt += 1
            try:
                resp = self._once(method, url, headers, body, scopes, what, stream, auth_state)
                if resp.status in (301, 302, 303, 307, 308) and follow_redirects and resp.header("location"):
                    redirects += 1
                    if redirects > 5:
                        raise RegistryError("registry %s: %s: too many redirects" % (self.registry, what))
                    url = urllib.parse.urljoin(url, resp.header("location"))
                    attempt -= 1
                    continue
                if resp.status == 429 or resp.status >= 500:
                    raise _Retryable("HTTP %d %s%s" % (resp.status, resp.reason,
                                                       _suffix(_registry_errors(resp.body))),
                                     retry_after=resp.header("retry-after"), status=resp.status)
                if resp.status not in ok:
                    raise self.error(what, resp)
                return resp
            except _Retryable as e:
                reason, retry_after, status = str(e), e.retry_after, e.status
            except ssl.SSLCertVerificationError as e:
                raise RegistryError("registry %s: %s: TLS certificate not trusted (%s)"
                                    % (self.registry, what, e.verify_message or e.reason))
            except (RegistryError,):
                raise
            except _RETRYABLE_EXC as e:
                reason, retry_after, status = _exc_text(e), None, None
            if attempt >= attempts:
                # retry=False: the caller retries the whole operation and says how often.
                tail = " (gave up after %d attempts)" % attempt if retry else ""
                raise RegistryError("registry %s: %s: %s%s" % (self.registry, what, reason, tail),
                                    status, retry_after)
            try:
                d = self.retry.delay(attempt, retry_after)
            except ValueError as e:
                raise RegistryError("registry %s: %s: %s; %s" % (self.registry, what, reason, e), status)
            self.retries += 1
            self.log("registry %s: %s: %s; retrying in %.1f s" % (self.registry, what, reason, d))
            self.retry.sleep(d)

    def error(self, what, resp):
        detail = _registry_errors(resp.body)
        cls = AuthError if resp.status in (401, 403) else RegistryError
        msg = "registry %s: %s: HTTP %d %s%s" % (self.registry, what, resp.status, resp.reason, _suffix(detail))
        if resp.status == 401:
            msg += " (%s)" % self._cred_hint()
        elif resp.status == 403:
            msg += " (access denied for these credentials)"
        return cls(msg, resp.status)

    # -- blobs ------------------------------------------------------------------------------
    def blob_size(self, repo, digest, scopes):
        """HEAD a blob: its size if the repository has it, else None."""
        resp = self.request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), scopes=scopes, ok=(200, 404),
                            what="HEAD blob %s" % digest)
        if resp.status == 404:
            return None
        try:
            return int(resp.header("content-length"))
        except (TypeError, ValueError):
            return -1

    def mount_blob(self, repo, digest, from_repo, scopes):
        """Cross-repository mount: True if mounted (201); False if the registry declined."""
        q = urllib.parse.urlencode([("mount", digest), ("from", from_repo)])
        resp = self.request("POST", "/v2/%s/blobs/uploads/?%s" % (repo, q), scopes=scopes, ok=(201, 202),
                            what="mount blob %s from %s" % (digest, from_repo))
        if resp.status == 201:
            return True
        # 202: the registry opened an upload session instead; abandon it.
        loc = resp.header("location")
        if loc:
            try:
                self.request("DELETE", self._loc(loc), scopes=scopes, ok=(200, 202, 204, 404), retry=False,
                             what="cancel upload")
            except RegistryError:
                pass
        return False

    def _loc(self, location):
        return urllib.parse.urljoin(self.base_url() + "/", location)

    def upload_blob(self, repo, digest, path, scopes, size=None, progress=None, chunk_size=0):
        """Uploads a blob from a file, streaming. Restarts (or resumes) after failures.

        progress(n) is called with each piece of bytes sent (negative to undo a failed attempt).
        Returns the number of bytes sent in total (retries included).
        """
        size = os.path.getsize(path) if size is None else size
        sent_total = [0]

        def count(n):
            if n > 0:
                sent_total[0] += n  # bytes on the wire (undone progress is not subtracted)
            if progress:
                progress(n)

        what = "upload blob %s" % digest
        attempt = 0
        while True:
            attempt += 1
            sent_this = [0]

            def count_attempt(n):
                sent_this[0] += n
                count(n)

            try:
                resp = self.request("POST", "/v2/%s/blobs/uploads/" % repo, scopes=scopes, ok=(202,),
                                    what="start " + what)
                loc = self._loc(resp.header("location") or "")
                if not resp.header("location"):
                    raise RegistryError("registry %s: start %s: no Location header" % (self.registry, what))
                if chunk_size and chunk_size < size:
                    loc = self._upload_chunks(loc, path, size, scopes, what, count_attempt, chunk_size)
                    final = self.request("PUT", _add_query(loc, "digest", digest), scopes=scopes,
                                         ok=(201, 204), what="finish " + what, retry=False)
                else:
                    body = FileBody(path, 0, size, count_attempt)
                    final = self.request("PUT", _add_query(loc, "digest", digest),
                                         headers={"Content-Type": "application/octet-stream"},
                                         body=body, scopes=scopes, ok=(201, 204), what=what, retry=False)
                    if body.sha256 and "sha256:" + body.sha256 != digest:
                        raise DigestMismatch("blob %s: the local file %s has sha256:%s (corrupt layout?)"
                                             % (digest, path, body.sha256))
                got = final.header("docker-content-digest")
                if got and got != digest:
                    raise DigestMismatch("registry %s: %s: the registry stored %s" % (self.registry, what, got))
                return sent_total[0]
            except DigestMismatch:
                raise
            except RegistryError as e:
                # 404 BLOB_UPLOAD_UNKNOWN/INVALID: the session broke (or expired): start anew.
                session_lost = e.status == 404 and "BLOB_UPLOAD_" in str(e)
                # 400 DIGEST_INVALID with a good local file: the bytes were damaged on the way
                # (or a broken piece was appended twice): start anew.
                damaged = False
                if e.status == 400 and "DIGEST_INVALID" in str(e):
                    got, _ = common.sha256_file(path)
                    if "sha256:" + got != digest:
                        raise DigestMismatch("blob %s: the local file %s has sha256:%s (corrupt layout?)"
                                             % (digest, path, got))
                    damaged = True
                if e.status is not None and not (e.status >= 500 or e.status == 429 or session_lost or damaged):
                    raise
                reason, retry_after, status = str(e), e.retry_after, e.status
            if attempt >= self.retry.attempts:
                raise RegistryError("%s (gave up after %d upload attempts)" % (reason, attempt), status)
            self.retries += 1
            try:
                d = self.retry.delay(attempt, retry_after)
            except ValueError as ve:
                raise RegistryError("%s; %s" % (reason, ve), status)
            self.log("%s; restarting the upload in %.1f s" % (reason, d))
            if progress:
                progress(-sent_this[0])
            self.retry.sleep(d)

    def _upload_chunks(self, loc, path, size, scopes, what, progress, chunk_size):
        """PATCH pieces; on a failed piece, ask the registry where it is and resume from there."""
        offset = 0
        failures = 0
        while offset < size:
            n = min(chunk_size, size - offset)
            piece = [0]

            def count_piece(k, piece=piece):
                piece[0] += k
                progress(k)

            body = FileBody(path, offset, n, count_piece)
            try:
                resp = self.request("PATCH", loc, headers={"Content-Type": "application/octet-stream",
                                                           "Content-Range": "%d-%d" % (offset, offset + n - 1)},
                                    body=body, scopes=scopes, ok=(202,), what=what, retry=False)
                loc = self._loc(resp.header("location") or loc)
                offset = _range_end(resp.header("range"), offset + n)
            except RegistryError as e:
                if e.status is not None and not (e.status >= 500 or e.status == 429):
                    raise
                failures += 1
                if failures >= self.retry.attempts:
                    raise
                progress(-piece[0])
                self.retries += 1
                try:
                    self.retry.sleep(self.retry.delay(failures, e.retry_after))
                except ValueError as ve:
                    raise RegistryError("%s; %s" % (e, ve), e.status)
                status = self.request("GET", loc, scopes=scopes, ok=(204,), what="status of " + what)
                loc = self._loc(status.header("location") or loc)
                new = _range_end(status.header("range"), 0)
                if new != offset:
                    progress(new - offset)  # part of the failed piece kept, or bytes the registry lost
                offset = new
        return loc

    def get_blob(self, repo, digest, dest, scopes, size=None, progress=None):
        """Downloads a blob to dest (via dest + '.part'), verifying digest and size."""
        what = "GET blob %s" % digest
        tmp = dest + ".part"
        attempt = 0
        while True:
            attempt += 1
            got_bytes = [0]
            try:
                resp = self.request("GET", "/v2/%s/blobs/%s" % (repo, digest), scopes=scopes, ok=(200,),
                                    what=what, stream=True)
                h = hashlib.sha256()
                n = 0
                with open(tmp, "wb") as f:
                    try:
                        while True:
                            buf = resp.raw.read(CHUNK)
                            if not buf:
                                break
                            f.write(buf)
                            h.update(buf)
                            n += len(buf)
                            got_bytes[0] += len(buf)
                            if progress:
                                progress(len(buf))
                            if size is not None and n > size:
                                break
                    finally:
                        resp.raw.close()
                        self._drop_conn_for(resp.url)
                if size is not None and n < size:
                    raise _Retryable("short read: %d of %d bytes" % (n, size))
                got = "sha256:" + h.hexdigest()
                if got != digest or (size is not None and n != size):
                    _unlink(tmp)
                    raise DigestMismatch("registry %s: blob %s of %s: digest mismatch: got %s (%d bytes%s)"
                                         % (self.registry, digest, repo, got, n,
                                            "" if size is None else ", expected %d" % size))
                os.replace(tmp, dest)
                return n
            except DigestMismatch:
                _unlink(tmp)
                raise
            except RegistryError:
                _unlink(tmp)
                raise
            except (_Retryable,) + _RETRYABLE_EXC as e:
                _unlink(tmp)
                reason = _exc_text(e) if not isinstance(e, _Retryable) else str(e)
            if progress:
                progress(-got_bytes[0])
            if attempt >= self.retry.attempts:
                raise RegistryError("registry %s: %s: %s (gave up after %d attempts)"
                                    % (self.registry, what, reason, attempt))
            self.retries += 1
            self.retry.sleep(self.retry.delay(attempt))

    def _drop_conn_for(self, url):
        u = urllib.parse.urlsplit(url)
        self._drop_conn(u.scheme, u.netloc)

    # -- manifests --------------------------------------------------------------------------
    def get_manifest(self, repo, reference, scopes):
        """(bytes, media type, digest). By digest: verified. By tag: the digest of the bytes."""
        what = "GET manifest %s" % reference
        resp = self.request("GET", "/v2/%s/manifests/%s" % (repo, reference), headers={"Accept": MANIFEST_ACCEPT},
                            scopes=scopes, ok=(200,), what=what)
        body = resp.body or b""
        if len(body) > MAX_MANIFEST_BYTES:
            raise RegistryError("registry %s: %s: manifest too large (%d bytes)" % (self.registry, what, len(body)))
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if DIGEST_RE.match(reference) and digest != reference:
            raise DigestMismatch("registry %s: manifest %s of %s: digest mismatch: got %s"
                                 % (self.registry, reference, repo, digest))
        media = (resp.header("content-type") or "").split(";")[0].strip()
        try:
            parsed = json.loads(body.decode("utf-8"))
            if isinstance(parsed, dict) and parsed.get("mediaType"):
                media = parsed["mediaType"]
        except (ValueError, UnicodeDecodeError):
            raise RegistryError("registry %s: %s: not JSON" % (self.registry, what))
        return body, media, digest

    def manifest_digest(self, repo, reference, scopes):
        """HEAD a manifest: its digest, or None if absent."""
        resp = self.request("HEAD", "/v2/%s/manifests/%s" % (repo, reference), headers={"Accept": MANIFEST_ACCEPT},
                            scopes=scopes, ok=(200, 404), what="HEAD manifest %s" % reference)
        if resp.status == 404:
            return None
        return resp.header("docker-content-digest") or ""

    def put_manifest(self, repo, reference, body, media_type, scopes):
        """PUT a manifest under a digest or tag; checks the digest the registry reports."""
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        what = "PUT manifest %s" % (digest if reference == digest else "%s (tag %s)" % (digest, reference))
        resp = self.request("PUT", "/v2/%s/manifests/%s" % (repo, reference), headers={"Content-Type": media_type},
                            body=body, scopes=scopes, ok=(200, 201, 202), what=what)
        got = resp.header("docker-content-digest")
        if got and got != digest:
            raise DigestMismatch("registry %s: %s: the registry computed %s" % (self.registry, what, got))
        return digest

    def tags(self, repo, scopes):
        resp = self.request("GET", "/v2/%s/tags/list" % repo, scopes=scopes, ok=(200, 404), what="list tags")
        if resp.status == 404:
            return []
        try:
            return list(json.loads(resp.body.decode("utf-8")).get("tags") or [])
        except (ValueError, AttributeError):
            return []


def pull_scope(repo):
    return "repository:%s:pull" % repo


def push_scopes(repo, mount_from=()):
    return ["repository:%s:pull,push" % repo] + [pull_scope(r) for r in mount_from if r != repo]


def _suffix(detail):
    return " (%s)" % detail if detail else ""


def _exc_text(e):
    name = type(e).__name__
    msg = str(e).strip()
    return "%s: %s" % (name, msg) if msg else name


def _add_query(url, key, value):
    sep = "&" if urllib.parse.urlsplit(url).query else "?"
    return url + sep + urllib.parse.urlencode([(key, value)])


def _range_end(value, default):
    """`Range: 0-1234` (inclusive) -> 1235 (next offset to send)."""
    if not value:
        return default
    m = re.match(r"^(?:bytes=)?(\d+)-(\d+)$", value.strip())
    if not m:
        return default
    return int(m.group(2)) + 1


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass


# --- Remembered blob locations (for cross-repository mounts) -----------------------------------


def _sources_path(env=None):
    env = os.environ if env is None else env
    if env.get("SHIKO_BLOB_SOURCES"):
        return env["SHIKO_BLOB_SOURCES"]
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rules_shiko", "blob_sources.json")


MAX_REMEMBERED = 20000


def remembered_sources(registry, digests, env=None):
    """{digest: [repositories]} seen before on registry (by pushes and pulls of this machine)."""
    try:
        with open(_sources_path(env), "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    reg = data.get(registry) if isinstance(data, dict) else None
    if not isinstance(reg, dict):
        return {}
    return {d: [r for r in reg.get(d, []) if isinstance(r, str)] for d in digests if reg.get(d)}


def remember_sources(registry, repository, digests, env=None):
    """Records that repository on registry has these blobs (best effort; never fails)."""
    path = _sources_path(env)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        reg = data.setdefault(registry, {})
        if not isinstance(reg, dict):
            reg = data[registry] = {}
        for d in digests:
            repos = [r for r in reg.pop(d, []) if r != repository][:4]
            reg[d] = [repository] + repos  # most recent first; re-insert keeps recent at the end
        while len(reg) > MAX_REMEMBERED:
            reg.pop(next(iter(reg)))
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w") as f:
            json.dump(data, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        pass
