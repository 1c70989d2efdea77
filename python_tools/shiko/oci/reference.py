"""Image references `[registry/]repository[:tag][@digest]`: the one grammar and its Reference.

The grammar is docker's (github.com/distribution/reference): a tag is what follows the last ':'
after the last '/'; the first component names the registry (host[:port]) when it holds '.' or
':' or is `localhost`, else the image is on Docker Hub (`docker.io`, with `library/` before a
one-component name); repository components are runs of [a-z0-9] joined by '.', '_', '__' or
'-'.

Two entry points, one per use, each with the wording its users have always printed (ValueError
with a one-line problem):
- `parse(ref)`: where an image is pulled from or pushed to (registry client, push, pull). Tag
  and digest are optional; Docker Hub's aliases (index.docker.io, registry-1.docker.io, ...)
  become `docker.io`; a bracketed IPv6 host (`[::1]:5000`) is allowed.
- `parse_tag(ref)`: the name an image is loaded under (tarball, load): `name[:tag]`, `:latest`
  when no tag is given, no digest, at most 255 characters, no IPv6 host (docker 20.10 cannot
  load one), and, as docker does, an uppercase first component is taken for a registry host,
  so `Repo/app` is refused as not lowercase. Registry names are kept as written (no aliases).
"""

import re

DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_COMPONENT_RE = re.compile(r"^%s$" % _COMPONENT)
REPOSITORY_RE = re.compile(r"^%s(?:/%s)*$" % (_COMPONENT, _COMPONENT))
_HOSTNAME = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
_PORT = r"(?::[0-9]+)?"
HOST_RE = re.compile(r"^(?:%s|\[[0-9A-Fa-f:.]+\])%s$" % (_HOSTNAME, _PORT))
DOMAIN_RE = re.compile(r"^%s%s$" % (_HOSTNAME, _PORT))  # HOST_RE without IPv6 literals
NAME_TOTAL_LENGTH_MAX = 255

DOCKER_HUB = "docker.io"
HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")
DEFAULT_TAG = "latest"


class Reference(object):
    """registry (host[:port]), repository (its path there), tag (or None), digest (or None).

    `str()` (also `full`) is the fully qualified reference; `familiar` is the name as it was
    written plus its tag, as docker prints it (`busybox:latest`).
    """

    def __init__(self, registry, repository, tag=None, digest=None, written=None):
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest
        self.written = self.name if written is None else written

    @property
    def name(self):
        return "%s/%s" % (self.registry, self.repository)

    @property
    def full(self):
        return str(self)

    @property
    def familiar(self):
        return self.written + self._suffix()

    def _suffix(self):
        return (":" + self.tag if self.tag else "") + ("@" + self.digest if self.digest else "")

    def __str__(self):
        return self.name + self._suffix()

    def __repr__(self):
        return "Reference(%r)" % str(self)


def split_tag(name_tag):
    """`name[:tag]` -> (name, tag or None): the tag follows the last ':' after the last '/'."""
    if ":" in name_tag.rsplit("/", 1)[-1]:
        name, tag = name_tag.rsplit(":", 1)
        return name, tag
    return name_tag, None


def _names_host(first, loading):
    """Whether a name's first component (followed by '/') is a registry host (module doc)."""
    if "." in first or ":" in first or first == "localhost":
        return True
    return first != first.lower() if loading else first.startswith("[")


def parse(ref, allow_tag=True, allow_digest=True):
    """Parses `[registry/]repo[:tag][@digest]` to pull or push; ValueError when bad."""
    if not isinstance(ref, str) or not ref or ref != ref.strip():
        raise ValueError("empty or malformed image reference")
    rest, digest = ref, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValueError("digest %r is not sha256:<64 lowercase hex digits>" % digest)
        if not allow_digest:
            raise ValueError("a digest is not allowed here")
    rest, tag = split_tag(rest)
    if tag is not None:
        if not TAG_RE.match(tag):
            raise ValueError("tag %r is not valid ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})" % tag)
        if not allow_tag:
            raise ValueError("a tag is not allowed here (give it separately)")
    first, slash, path = rest.partition("/")
    if slash and _names_host(first, loading=False):
        registry, repository = first, path
        if not HOST_RE.match(registry):
            raise ValueError("registry %r is not a host[:port]" % registry)
    else:
        registry, repository = DOCKER_HUB, rest
    if registry in HUB_ALIASES:
        registry = DOCKER_HUB
        if "/" not in repository:
            repository = "library/" + repository
    if not REPOSITORY_RE.match(repository):
        raise ValueError("repository %r is not valid (lowercase components [a-z0-9._-] separated by /)"
                         % repository)
    return Reference(registry, repository, tag, digest, written=rest)


def parse_tag(ref):
    """Parses `name[:tag]`, a name to load an image under; ValueError when bad (module doc)."""
    if not isinstance(ref, str) or not ref:
        raise ValueError("must be a non-empty image reference name[:tag]")
    if "@" in ref:
        raise ValueError("must be name[:tag]; digests cannot be loaded as tags")
    name, tag = split_tag(ref)
    if tag is None:
        tag = DEFAULT_TAG
    elif not TAG_RE.match(tag):
        raise ValueError("tag %r must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}" % tag)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise ValueError("repository name is longer than %d characters" % NAME_TOTAL_LENGTH_MAX)
    first, slash, path = name.partition("/")
    if slash and _names_host(first, loading=True):
        domain = first
        if not DOMAIN_RE.match(domain):
            if "." not in domain and ":" not in domain and NAME_COMPONENT_RE.match(domain.lower()):
                raise ValueError("repository name must be lowercase")
            raise ValueError("registry host %r is not a valid host[:port]" % domain)
    else:
        domain, path = None, name
    for c in path.split("/"):
        if not NAME_COMPONENT_RE.match(c):
            if c.lower() != c and NAME_COMPONENT_RE.match(c.lower()):
                raise ValueError("repository name must be lowercase")
            raise ValueError("repository name component %r must match [a-z0-9]+ joined by '.', '_', '__' or '-'"
                             % c)
    if domain is None:
        return Reference(DOCKER_HUB, ("" if slash else "library/") + path, tag, written=name)
    return Reference(domain, path, tag, written=name)
