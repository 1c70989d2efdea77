"""Registry authentication: `WWW-Authenticate` challenges, Basic and Bearer, token scopes.

- `Basic`: the credentials go with every request (never over plain HTTP to a non-loopback
  registry unless `insecure`).
- `Bearer`: a token from the challenge's realm for the scopes the caller names, e.g.
  `repository:R:pull,push` plus `repository:S:pull` to mount from S (push_scopes); tokens are
  cached per scope set and fetched anew when they expire or a request is refused. An identity
  token (docker's `identitytoken`) is exchanged with the OAuth2 refresh-token grant; a registry
  token is used as it is.
- Credentials are those of the repository a request is for (the first scope's, scope_repository):
  podman's `registry/ns/repo`, then `registry/ns`, then `registry` entries (auth.py), looked up
  once per repository.
"""

import json
import re
import threading
import time

from python_tools.shiko.registry import auth
from python_tools.shiko.registry.errors import AuthError
from python_tools.shiko.registry.transport import (
    MAX_BODY_BYTES,
    RETRYABLE_EXC,
    USER_AGENT,
    exc_text,
    is_loopback,
    ssl_error,
)


def pull_scope(repo):
    return "repository:%s:pull" % repo


def push_scopes(repo, mount_from=()):
    """The repository pushed to first, then those blobs are mounted from."""
    return ["repository:%s:pull,push" % repo] + [pull_scope(r) for r in mount_from if r != repo]


def scope_repository(scopes):
    """The repository a request with these scopes is for: the first scope's (None if it names none)."""
    for s in scopes or ():
        if s.startswith("repository:") and s.count(":") >= 2:
            return s[len("repository:"):s.rindex(":")]
        return None
    return None


# --- Challenges ---------------------------------------------------------------------------------

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


# --- Authorization headers ------------------------------------------------------------------------


class Authenticator(object):
    """The `Authorization` header for a registry's requests: its challenge, credentials, tokens.

    credentials: a Credential to use (for every repository) instead of looking them up in `env`'s
    docker/podman files (None: looked up on first need, per repository). `retries` counts the
    token requests retried.
    """

    def __init__(self, registry, connections, retry, insecure=False, credentials=None, env=None):
        self.registry = registry
        self.connections = connections
        self.retry = retry
        self.insecure = bool(insecure)
        self.env = env
        self.challenge = None  # ("basic"|"bearer"|"none", params)
        self.retries = 0
        self._given = credentials
        self._credentials = {}  # repository (None: the registry's) -> Credential or None
        self._lock = threading.RLock()
        self._tokens = {}  # frozenset(scopes) -> (header, expiry)

    def credentials(self, repository=None):
        """The Credential for a repository of the registry (None: for the registry), or None."""
        if self._given is not None:
            return self._given
        with self._lock:
            if repository not in self._credentials:
                self._credentials[repository] = auth.find_credentials(self.registry, repository, self.env)
            return self._credentials[repository]

    def cred_hint(self, repository=None):
        """Why authentication failed, for error messages (which credentials, never their value)."""
        c = self._given if self._given is not None else self._credentials.get(repository)
        if c is None:
            return "no credentials for %s were found (docker/podman config files, credential helpers)" % self.registry
        return "credentials from %s were refused" % c.source

    def no_challenge(self):
        """The registry answered GET /v2/ without asking for credentials."""
        self.challenge = ("none", {})

    def remember_challenge(self, resp):
        """Takes the challenge of a 401 response (Bearer preferred); AuthError when unusable."""
        challenges = parse_challenges(resp.header("www-authenticate", ""))
        for scheme, params in challenges:
            if scheme == "bearer" and params.get("realm"):
                self.challenge = ("bearer", params)
                return params
        for scheme, params in challenges:
            if scheme == "basic":
                self.challenge = ("basic", params)
                return params
        raise AuthError("registry %s: HTTP 401 with no usable challenge (WWW-Authenticate: %r)"
                        % (self.registry, resp.header("www-authenticate", "")[:100]), 401)

    def header(self, scopes, scheme, force_refresh=False):
        """The Authorization value for a request with these scopes over `scheme`, or None."""
        kind, params = self.challenge or ("none", {})
        if kind == "none":
            return None
        repository = scope_repository(scopes)
        if kind == "basic":
            cred = self.credentials(repository)
            h = cred.basic_header() if cred else None
            if h is None:
                raise AuthError("registry %s: HTTP 401 Unauthorized: authentication required (Basic): %s"
                                % (self.registry, self.cred_hint(repository)), 401)
            if scheme == "http" and not (self.insecure or is_loopback(self.registry)):
                raise AuthError("registry %s: refusing to send credentials over plain HTTP" % self.registry)
            return h
        key = frozenset(scopes)
        with self._lock:
            cached = self._tokens.get(key)
            if cached and not force_refresh and cached[1] > time.time() + 5:
                return cached[0]
            token, ttl = self.fetch_token(params, sorted(scopes), repository)
            header = "Bearer " + token
            self._tokens[key] = (header, time.time() + ttl)
            return header

    def fetch_token(self, params, scopes, repository=None):
        """(token, seconds it lives) from the realm of a Bearer challenge, for these scopes, with
        the credentials of `repository` (None: the registry's)."""
        import urllib.parse  # lazily: only a token server needs it

        realm = params["realm"]
        r = urllib.parse.urlsplit(realm)
        if r.scheme not in ("https", "http") or not r.netloc:
            raise AuthError("registry %s: bad token realm %r" % (self.registry, realm))
        if r.scheme == "http" and not (self.insecure or is_loopback(r.netloc)):
            raise AuthError("registry %s: refusing to fetch a token over plain HTTP from %s" % (self.registry, r.netloc))
        cred = self.credentials(repository)
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
                resp = self.connections.exchange(method, url, headers, body)
            except RETRYABLE_EXC as e:
                if ssl_error(e, "SSLCertVerificationError"):
                    raise AuthError("token server %s for %s: the TLS certificate is not trusted (%s)"
                                    % (r.netloc, self.registry, e.verify_message or e.reason))
                last = exc_text(e)
                resp = None
            if resp is not None:
                if resp.status in (401, 403):
                    raise AuthError("registry %s: token server %s: HTTP %d %s: %s"
                                    % (self.registry, r.netloc, resp.status, resp.reason,
                                       self.cred_hint(repository) if cred is None else
                                       "credentials from %s were refused (wrong username or password?)" % cred.source),
                                    resp.status)
                if resp.status == 200 and resp.truncated:
                    raise AuthError("registry %s: token server %s: the response is larger than %d bytes "
                                    "(refused)" % (self.registry, r.netloc, MAX_BODY_BYTES))
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
