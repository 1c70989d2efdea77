"""One registry's API session: which scheme it speaks, authenticated requests, retries, redirects.

- Scheme: HTTPS first; plain HTTP only for loopback registries (HTTPS tried first, then HTTP,
  as docker does) or with `insecure=True`. Where HTTP is allowed, an unverified TLS handshake
  (transport.Connections.speaks_tls; nothing is sent over it) first tells whether the server
  speaks TLS at all: a plain HTTP server gets no HTTPS request (which saves loading the system
  CA store), any other answer leaves the order as it is. `GET /v2/` tells which one answers and whether it
  asks for credentials (its challenge goes to tokens.Authenticator).
- Credentials go only to the registry's own origin: the same scheme, host and port as the
  scheme detection chose (transport.same_origin). A redirect elsewhere (a blob store, another
  port, plain HTTP) is followed without them; a redirect from HTTPS to plain HTTP is refused
  unless the registry is `insecure`; a redirect to any other scheme is refused.
- Faults: connection resets, timeouts, 5xx and 429 are retried with exponential backoff (plus
  jitter), honouring `Retry-After`, at most `RetryPolicy.attempts` times per request. Other
  failures raise RegistryError with one line naming the operation, the registry and the HTTP
  status (and, for 401/403, which credentials were refused, never their value). A response body
  larger than the request's `max_body` is an error too, after reading at most max_body + 1 bytes.
"""

import os
import threading

from python_tools.shiko.registry.errors import AuthError, RegistryError, Retryable
from python_tools.shiko.registry.tokens import Authenticator, scope_repository
from python_tools.shiko.registry.transport import (
    CERTS_DIRS,
    MAX_BODY_BYTES,
    RETRYABLE_EXC,
    USER_AGENT,
    Connections,
    RetryPolicy,
    api_host,
    exc_text,
    is_loopback,
    registry_errors,
    same_origin,
    split_url,
    ssl_error,
)


def _suffix(detail):
    return " (%s)" % detail if detail else ""


class Session(object):
    """Requests to one registry. Thread-safe: each thread gets its own keep-alive connection.

    registry: "host[:port]" (Docker Hub: "docker.io"). env: for credentials and helpers.
    credentials: a Credential to use instead of looking them up (None: look up lazily).
    """

    def __init__(self, registry, insecure=False, ca_file=None, retry=None, timeout=120.0,
                 credentials=None, env=None, log=None, certs_dirs=CERTS_DIRS):
        self.registry = registry
        self.host = api_host(registry)
        self.insecure = bool(insecure)
        self.retry = retry or RetryPolicy()
        self.log = log or (lambda msg: None)
        self.connections = Connections(registry, insecure, ca_file, timeout, certs_dirs)
        self.auth = Authenticator(registry, self.connections, self.retry, insecure, credentials,
                                  dict(os.environ if env is None else env))
        self._scheme = None
        self._lock = threading.RLock()
        self._retries = 0

    @property
    def retries(self):
        """How many retries happened (requests, whole uploads and downloads, tokens)."""
        return self._retries + self.auth.retries

    def retried(self):
        self._retries += 1

    def close(self):
        self.connections.close()

    # -- scheme detection ---------------------------------------------------------------------
    def base_url(self):
        self._ensure_scheme()
        return "%s://%s" % (self._scheme, self.host)

    def url(self, path):
        return self.base_url() + path

    def absolute(self, location):
        """A `Location` header (relative or not) as an absolute URL."""
        import urllib.parse  # lazily: Locations come with uploads, not with a push that sends nothing

        return urllib.parse.urljoin(self.base_url() + "/", location)

    def _ensure_scheme(self):
        if self._scheme is not None:
            return
        with self._lock:
            if self._scheme is not None:
                return
            schemes = ["https"]
            if self.insecure or is_loopback(self.registry):
                schemes.append("http")
                if self.connections.speaks_tls(self.host) is False:
                    schemes = ["http"]  # a plain HTTP server: HTTPS would fail the same way
            last = None
            for attempt in range(1, self.retry.attempts + 1):
                for scheme in schemes:
                    url = "%s://%s/v2/" % (scheme, self.host)
                    try:
                        resp = self.connections.exchange("GET", url, {"User-Agent": USER_AGENT})
                    except OSError as e:  # TLS errors too (ssl.SSLError is an OSError)
                        if ssl_error(e, "SSLCertVerificationError"):
                            self.connections.drop(scheme, self.host)
                            raise RegistryError(
                                "registry %s: the TLS certificate is not trusted (%s); pass the CA with "
                                "--ca_file (or put it in /etc/docker/certs.d/%s/ca.crt), or --insecure"
                                % (self.registry, e.verify_message or e.reason, self.registry))
                        refusal = self.connections.tls_refusal(e)
                        if refusal:
                            self.connections.drop(scheme, self.host)
                            raise RegistryError("registry %s: %s" % (self.registry, refusal))
                        last = "%s: %s" % (scheme, exc_text(e))
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
                        self.auth.remember_challenge(resp)
                    else:
                        self.auth.no_challenge()
                    if scheme == "http":
                        self.log("registry %s: using plain HTTP" % self.registry)
                    return
                if attempt < self.retry.attempts:
                    self.retried()
                    self.retry.sleep(self.retry.delay(attempt))
            raise RegistryError("registry %s: cannot connect (%s) after %d attempts"
                                % (self.registry, last, self.retry.attempts))

    # -- requests ---------------------------------------------------------------------------
    def _once(self, method, url, headers, body, scopes, stream, auth_state, max_body):
        """One exchange, authenticated when url is the registry's own origin (scheme, host and
        port); handles one 401 by (re)authenticating."""
        own = same_origin(url, self.base_url())
        for _ in range(3):
            h = {"User-Agent": USER_AGENT}
            h.update(headers or {})
            if own:
                auth = self.auth.header(scopes, split_url(url)[0],
                                        force_refresh=auth_state.get("refresh", False))
                auth_state["refresh"] = False
                if auth:
                    h["Authorization"] = auth
            resp = self.connections.exchange(method, url, h, body, stream=stream, max_body=max_body)
            if resp.status == 401 and own and not auth_state.get("reauthed"):
                auth_state["reauthed"] = True
                before = self.auth.challenge
                self.auth.remember_challenge(resp)
                if self.auth.challenge[0] == "bearer":
                    # A refused token (expired, or scopes the challenge now names): fetch anew.
                    auth_state["refresh"] = True
                elif before and before[0] == "basic" and "Authorization" in h:
                    return resp
                continue
            return resp
        return resp

    def request(self, method, path_or_url, headers=None, body=None, scopes=(), ok=(200,), what="",
                stream=False, retry=True, follow_redirects=True, max_body=MAX_BODY_BYTES):
        """An API call with auth, retries and redirects. Returns a Response whose status is in ok.

        `what` names the operation in error messages, e.g. "PUT manifest sha256:...". `scopes`
        name the repository the request is for first (its credentials are used: podman's
        per-repository auth entries). A body (not streamed) larger than max_body is an error.
        """
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        attempts = self.retry.attempts if retry else 1
        attempt = 0
        auth_state = {}
        redirects = 0
        while True:
            attempt += 1
            try:
                resp = self._once(method, url, headers, body, scopes, stream, auth_state, max_body)
                if resp.status in (301, 302, 303, 307, 308) and follow_redirects and resp.header("location"):
                    redirects += 1
                    if redirects > 5:
                        raise RegistryError("registry %s: %s: too many redirects" % (self.registry, what))
                    import urllib.parse  # lazily (see absolute)

                    target = urllib.parse.urljoin(url, resp.header("location"))
                    self._check_redirect(url, target, what)
                    url = target
                    attempt -= 1
                    continue
                if resp.status == 429 or resp.status >= 500:
                    detail = _suffix(registry_errors(resp.body))
                    raise Retryable("HTTP %d %s%s" % (resp.status, resp.reason, detail),
                                    retry_after=resp.header("retry-after"), status=resp.status)
                if resp.status not in ok:
                    raise self.error(what, resp, scopes)
                if resp.truncated:
                    raise RegistryError("registry %s: %s: the response is larger than %d bytes (refused)"
                                        % (self.registry, what, max_body), resp.status)
                return resp
            except Retryable as e:
                reason, retry_after, status = str(e), e.retry_after, e.status
            except (RegistryError,):
                raise
            except RETRYABLE_EXC as e:  # TLS errors too (ssl.SSLError is an OSError)
                if ssl_error(e, "SSLCertVerificationError"):
                    raise RegistryError("registry %s: %s: TLS certificate not trusted (%s)"
                                        % (self.registry, what, e.verify_message or e.reason))
                refusal = self.connections.tls_refusal(e)
                if refusal:
                    raise RegistryError("registry %s: %s: %s" % (self.registry, what, refusal))
                reason, retry_after, status = exc_text(e), None, None
            if attempt >= attempts:
                # retry=False: the caller retries the whole operation and says how often.
                tail = " (gave up after %d attempts)" % attempt if retry else ""
                raise RegistryError("registry %s: %s: %s%s" % (self.registry, what, reason, tail),
                                    status, retry_after)
            try:
                d = self.retry.delay(attempt, retry_after)
            except ValueError as e:
                raise RegistryError("registry %s: %s: %s; %s" % (self.registry, what, reason, e), status)
            self.retried()
            self.log("registry %s: %s: %s; retrying in %.1f s" % (self.registry, what, reason, d))
            self.retry.sleep(d)

    def _check_redirect(self, url, target, what):
        """Refuses a redirect to another scheme than http(s), and HTTPS -> HTTP unless insecure."""
        import urllib.parse  # lazily (see absolute)

        frm, to = urllib.parse.urlsplit(url).scheme.lower(), urllib.parse.urlsplit(target).scheme.lower()
        where = "%s://%s" % (to, urllib.parse.urlsplit(target).netloc)  # never the path: it may be signed
        if to not in ("https", "http"):
            raise RegistryError("registry %s: %s: refusing a redirect to %s (not HTTP)"
                                % (self.registry, what, where))
        if frm == "https" and to == "http" and not self.insecure:
            raise RegistryError("registry %s: %s: refusing to follow a redirect from HTTPS to plain HTTP (%s); "
                                "only an --insecure registry may do that" % (self.registry, what, where))

    def error(self, what, resp, scopes=()):
        """The RegistryError (AuthError for 401/403) for a response with an unexpected status."""
        detail = registry_errors(resp.body)
        cls = AuthError if resp.status in (401, 403) else RegistryError
        msg = "registry %s: %s: HTTP %d %s%s" % (self.registry, what, resp.status, resp.reason, _suffix(detail))
        if resp.status == 401:
            msg += " (%s)" % self.auth.cred_hint(scope_repository(scopes))
        elif resp.status == 403:
            msg += " (access denied for these credentials)"
        return cls(msg, resp.status)
