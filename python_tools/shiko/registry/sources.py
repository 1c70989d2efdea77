"""Where blobs were seen: a memory of (registry, digest) -> repositories, for cross-repository mounts.

push and pull record each blob's repository in `~/.cache/rules_shiko/blob_sources.json`
(`$SHIKO_BLOB_SOURCES`, or under `$XDG_CACHE_HOME`): a push to another repository of the same
registry then mounts those blobs instead of uploading them. Best effort: an unreadable or
unwritable file is an empty memory, never an error. At most MAX_REMEMBERED digests per registry
(the oldest are forgotten first) and five repositories per digest (most recent first).
"""

import json
import os

MAX_REMEMBERED = 20000


def _sources_path(env=None):
    env = os.environ if env is None else env
    if env.get("SHIKO_BLOB_SOURCES"):
        return env["SHIKO_BLOB_SOURCES"]
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rules_shiko", "blob_sources.json")


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
