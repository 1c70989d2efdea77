"""Resolves Debian packages against signed archive indexes and writes a lock file.

Python standard library only (argparse, no absl): `bazel run //pkg:<name>.update` (the `deb_lock`
rule, rules/private/deb_lock.bzl) runs it, and the `deb_repository` repository rule runs its
`sources` subcommand with the host's python3.

Subcommands
===========
  lock     --manifest=M.json --lock=OUT.json [--archive=SUITE=URL]... [--keyring=K]
           [--apt_dir=/etc/apt] [--gpgv=gpgv] [--target=LABEL] [--ignore_valid_until]
           For each suite of the manifest: fetches `dists/<suite>/InRelease` (or `Release` +
           `Release.gpg`), verifies its signature with `gpgv` against the keyring (default: the
           Debian archive keyring), checks `Valid-Until`, then fetches each architecture's
           `Packages.xz` (or .gz, or plain) and verifies its sha256 and size against the signed
           Release. Resolves the manifest's packages with their `Pre-Depends` and `Depends`
           and writes the lock (atomically). Prints what changed against the previous lock.
  sources  --suite=S... [--archive=SUITE=URL]... [--apt_dir=/etc/apt]
           prints JSON {suite: [archive URL, ...]}: the URLs the machine's apt sources give for
           each suite (overridden by --archive). Used by the `deb_repository` rule.
  probe    --url=URL...
           prints JSON {"url", "sha256", "size"} of the first URL that answers, or {"error"}:
           how `deb_repository` tells a changed .deb from a vanished one after Bazel's download
           failed.
Errors: one line `ERROR: <target>: <problem>` on stderr, exit 1; nothing is written.

Archive URLs
============
No host name is ever written in a manifest or a lock: each suite's archive URL comes from an
`--archive SUITE=URL` override (`*=URL` for every suite without its own), or else from the
machine's apt sources (`<apt_dir>/sources.list`, `sources.list.d/*.list` one-line entries and
`sources.list.d/*.sources` deb822 entries; `Types: deb` only, `Enabled: no` skipped).
`file://` URLs work too (tests use them).

Manifest (JSON, written by the user)
====================================
  {
    "suites": ["bookworm", "bookworm-updates", "bookworm-security"],
    "components": ["main"],                       # default ["main"]
    "architectures": ["amd64", "arm64"],
    "packages": ["python3.11-minimal", "ca-certificates", "libfoo=1.2-3"],
    "exclude": ["debconf", "debconf-2.0"]         # optional
  }
Keys starting with "_" are comments. `name=version` pins a version.

Resolution rules
================
- Candidates of a package are all its versions in all suites (binary-<arch> indexes, which hold
  the `Architecture: all` packages too); the highest version wins (Debian version order), the
  first suite in manifest order when two suites carry the same version.
- Every requested package is selected first; then each selected package's `Pre-Depends` and
  `Depends` are walked breadth-first. A dependency `a (>= 1) | b | v` is satisfied by the first
  of: an already selected package that satisfies any alternative (a real package of that name
  and a satisfying version, or one whose `Provides` names it with a satisfying version, or
  unversioned for an unversioned dependency); then, alternative by alternative, the highest
  satisfying version of a real package, or the single package providing it (several providers:
  an error asking to choose one in `packages`).
- A group naming an `exclude`d package is satisfied without installing anything (for packages
  only maintainer scripts need, e.g. debconf). Packages marked `Essential: yes` are only
  installed when requested: images have no shell, no dpkg, no perl (a dependency that resolves
  to one is recorded in the lock under "assumed" instead).
- `name:any` / `name:native` qualifiers are ignored (one architecture per resolution);
  `Recommends`, `Suggests`, `Conflicts` and `Breaks` are not considered.
- An unsatisfiable dependency is an error naming the chain of packages that needed it and
  what the archive offers instead.

Lock file (JSON, sorted keys, 2-space indent)
=============================================
  {
    "lock_version": 1,
    "manifest_sha256": "<sha256 of the manifest file>",
    "suites": ["bookworm", ...],
    "architectures": {
      "amd64": {
        "packages": [
          {"name": "libc6", "version": "2.36-9+deb12u10", "architecture": "amd64",
           "suite": "bookworm", "path": "pool/main/g/glibc/libc6_2.36-9+deb12u10_amd64.deb",
           "sha256": "<hex>", "size": 2757936, "depends": ["libgcc-s1"]},
          ...                                    # sorted by name
        ],
        "assumed": ["dpkg"]                      # Essential packages not installed
      },
      "arm64": {...}
    }
  }
A package's URL is `<archive URL of its suite>/<path>`.
"""

import argparse
import email.utils
import glob
import gzip
import hashlib
import json
import lzma
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

LOCK_VERSION = 1
DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DEFAULT_APT_DIR = "/etc/apt"
RELOCK_HINT = "bazel run //examples/distroless:lock.update"


class DebError(Exception):
    """A problem to report in one line (no traceback)."""


class NotFound(DebError):
    """The archive answered 404 (or the file:// path does not exist)."""


# --- Debian versions ---------------------------------------------------------------------------

_DIGITS = "0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _order(c):
    if c == "~":
        return -1
    if c in _DIGITS:
        return 0
    if c in _LETTERS:
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a, b):
    """dpkg's verrevcmp: compares upstream versions or revisions."""
    i = j = 0
    la, lb = len(a), len(b)
    while i < la or j < lb:
        first_diff = 0
        while (i < la and a[i] not in _DIGITS) or (j < lb and b[j] not in _DIGITS):
            ac = _order(a[i]) if i < la else 0
            bc = _order(b[j]) if j < lb else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < la and a[i] == "0":
            i += 1
        while j < lb and b[j] == "0":
            j += 1
        while i < la and a[i] in _DIGITS and j < lb and b[j] in _DIGITS:
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < la and a[i] in _DIGITS:
            return 1
        if j < lb and b[j] in _DIGITS:
            return -1
        if first_diff:
            return first_diff
    return 0


def parse_version(v):
    """(epoch, upstream, revision) of a Debian version string."""
    v = v.strip()
    epoch = 0
    if ":" in v:
        e, v = v.split(":", 1)
        if not e.isdigit():
            raise DebError("bad version epoch in %r" % v)
        epoch = int(e)
    if "-" in v:
        upstream, revision = v.rsplit("-", 1)
    else:
        upstream, revision = v, ""
    return epoch, upstream, revision


def version_compare(a, b):
    """<0, 0 or >0 as Debian version a sorts before, equal to or after b."""
    ea, ua, ra = parse_version(a)
    eb, ub, rb = parse_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    c = _verrevcmp(ua, ub)
    if c:
        return c
    return _verrevcmp(ra, rb)


def version_satisfies(version, op, wanted):
    """Whether `version` satisfies the relation `op wanted` (op None: any version)."""
    if op is None:
        return True
    c = version_compare(version, wanted)
    if op == "<<":
        return c < 0
    if op in ("<=", "<"):  # "<" and ">" are the obsolete spellings of "<=" and ">="
        return c <= 0
    if op == "=":
        return c == 0
    if op in (">=", ">"):
        return c >= 0
    if op == ">>":
        return c > 0
    raise DebError("unknown version relation %r" % op)


# --- deb822 stanzas and relations --------------------------------------------------------------

def parse_stanzas(text, fields=None):
    """Paragraphs of a deb822 file (Packages, Release, control) as dicts.

    `fields`: if given, a set of field names to keep (faster on big indexes). Continuation lines
    are joined with "\n" (multi-line fields such as SHA256 keep their lines).
    """
    out = []
    cur = {}
    key = None
    for line in text.split("\n"):
        if not line.strip():
            if cur:
                out.append(cur)
                cur = {}
            key = None
            continue
        if line[0] in " \t":
            if key is not None:
                cur[key] += "\n" + line.strip()
            continue
        if line[0] == "#":
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise DebError("malformed line in a control file: %r" % line[:80])
        if fields is not None and k not in fields:
            key = None
            continue
        key = k
        cur[k] = v.strip()
    if cur:
        out.append(cur)
    return out


_REL = re.compile(
    r"^\s*([A-Za-z0-9][A-Za-z0-9+.\-]*)(?::([A-Za-z0-9\-]+))?\s*"
    r"(?:\(\s*(<<|<=|>=|>>|=|<|>)\s*([^)\s]+)\s*\))?\s*"
    r"(?:\[[^\]]*\]\s*)?(?:<[^>]*>\s*)*$")


def parse_relations(value):
    """`a (>= 1) | b, c:any` -> [[("a", ">=", "1"), ("b", None, None)], [("c", None, None)]]."""
    groups = []
    if not value or not value.strip():
        return groups
    for part in value.split(","):
        if not part.strip():
            continue
        alts = []
        for alt in part.split("|"):
            m = _REL.match(alt)
            if not m:
                raise DebError("malformed relation %r" % alt.strip())
            alts.append((m.group(1), m.group(3), m.group(4)))
        groups.append(alts)
    return groups


def format_group(group):
    return " | ".join(n if op is None else "%s (%s %s)" % (n, op, v) for n, op, v in group)


# --- apt sources -------------------------------------------------------------------------------

def read_apt_sources(apt_dir=DEFAULT_APT_DIR):
    """[(uri, suite, [components])] of the `deb` entries of the machine's apt sources."""
    entries = []
    files = []
    main = os.path.join(apt_dir, "sources.list")
    if os.path.isfile(main):
        files.append(main)
    files += sorted(glob.glob(os.path.join(apt_dir, "sources.list.d", "*.list")))
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            for raw in f:
                line = raw.split("#", 1)[0].strip()
                if not line:
                    continue
                words = line.split()
                if words[0] != "deb":
                    continue
                words = words[1:]
                if words and words[0].startswith("["):
                    # Options: "[arch=amd64 signed-by=...]" (may span several words).
                    while words and not words[0].endswith("]"):
                        words = words[1:]
                    words = words[1:]
                if len(words) >= 2:
                    entries.append((words[0], words[1], words[2:]))
    for path in sorted(glob.glob(os.path.join(apt_dir, "sources.list.d", "*.sources"))):
        with open(path, encoding="utf-8", errors="replace") as f:
            stanzas = parse_stanzas(f.read())
        for st in stanzas:
            if "deb" not in st.get("Types", "").split():
                continue
            if st.get("Enabled", "yes").strip().lower() == "no":
                continue
            for uri in st.get("URIs", "").split():
                for suite in st.get("Suites", "").split():
                    entries.append((uri, suite, st.get("Components", "").split()))
    return entries


def archive_urls(suites, overrides, apt_dir=DEFAULT_APT_DIR):
    """{suite: [URL, ...]}: overrides ({suite or "*": URL}) first, else the apt sources."""
    out = {}
    sources = None
    for suite in suites:
        if suite in overrides:
            out[suite] = [overrides[suite].rstrip("/")]
            continue
        if "*" in overrides:
            out[suite] = [overrides["*"].rstrip("/")]
            continue
        if sources is None:
            sources = read_apt_sources(apt_dir)
        urls = []
        for uri, s, _ in sources:
            if s != suite:
                continue
            if not re.match(r"^(https?|file)://", uri):
                continue  # mirror+file:, cdrom:, tor+http: ... are apt-only methods
            if uri.rstrip("/") not in urls:
                urls.append(uri.rstrip("/"))
        if not urls:
            raise DebError(
                "no apt source lists suite %r (read %s/sources.list and %s/sources.list.d/*.list, "
                "*.sources; http, https and file URIs only): add one, or give the archive URL "
                "(the `archives` attribute, or --archive=%s=URL)" % (suite, apt_dir, apt_dir, suite))
        out[suite] = urls
    return out


def parse_archive_overrides(values):
    out = {}
    for v in values or []:
        suite, sep, url = v.partition("=")
        if not sep or not suite or not url:
            raise DebError("--archive %r: expected SUITE=URL (or *=URL)" % v)
        out[suite] = url
    return out


# --- fetching ----------------------------------------------------------------------------------

def fetch(url, retries=3, timeout=120):
    """The bytes at url (http, https or file). NotFound on 404 / a missing file."""
    last = None
    for attempt in range(retries):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "rules_shiko-deb_lock"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            if e.code in (404, 410):
                raise NotFound("%s: HTTP %d" % (url, e.code))
            last = "%s: HTTP %d %s" % (url, e.code, e.reason)
            if e.code < 500 and e.code != 429:
                break
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, FileNotFoundError) or (
                    url.startswith("file:") and isinstance(reason, OSError)):
                raise NotFound("%s: no such file" % url)
            last = "%s: %s" % (url, reason)
        except (OSError, ValueError) as e:
            last = "%s: %s" % (url, e)
        if attempt + 1 < retries:
            time.sleep(0.5 * (2 ** attempt))
    raise DebError("cannot fetch %s" % last)


# --- signed Release files ----------------------------------------------------------------------

def gpgv_verify(gpgv, keyring, signed, detached_sig=None):
    """Verifies `signed` (bytes: an InRelease, or a Release with `detached_sig`) with gpgv.

    Returns the signed content as gpgv saw it (for InRelease, the text inside the signature:
    never parse anything outside it). Raises DebError when the signature is bad or the key is
    not in the keyring.
    """
    if not os.path.isfile(keyring):
        raise DebError("keyring %s does not exist (apt-get install debian-archive-keyring, or "
                       "set `keyring`)" % keyring)
    with tempfile.TemporaryDirectory(prefix="shiko-gpgv-") as tmp:
        data = os.path.join(tmp, "data")
        with open(data, "wb") as f:
            f.write(signed)
        argv = [gpgv, "--quiet", "--keyring", os.path.abspath(keyring), "--status-fd", "1"]
        if detached_sig is not None:
            sig = os.path.join(tmp, "data.gpg")
            with open(sig, "wb") as f:
                f.write(detached_sig)
            argv += [sig, data]
        else:
            out = os.path.join(tmp, "out")
            argv += ["--output", out, data]
        env = dict(os.environ, LC_ALL="C", GNUPGHOME=tmp)
        try:
            res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                 timeout=120)
        except FileNotFoundError:
            raise DebError("gpgv not found (%s): apt-get install gpgv" % gpgv)
        status = res.stdout.decode("utf-8", "replace")
        good = any(line.startswith("[GNUPG:] VALIDSIG ") for line in status.splitlines())
        bad = any(line.split()[1:2] in (["BADSIG"], ["ERRSIG"], ["EXPKEYSIG"], ["REVKEYSIG"])
                  for line in status.splitlines() if line.startswith("[GNUPG:] "))
        if res.returncode != 0 or not good or bad:
            detail = " ".join(l for l in res.stderr.decode("utf-8", "replace").splitlines()
                              if l.strip())
            raise DebError("bad signature: %s" % (detail or status.strip() or "gpgv failed"))
        if detached_sig is not None:
            return signed
        with open(out, "rb") as f:
            return f.read()


def fetch_release(urls, suite, keyring, gpgv="gpgv", ignore_valid_until=False, now=None):
    """The verified Release of a suite: (fields dict, {path: (sha256, size)}, base URL)."""
    errors = []
    for base in urls:
        where = "%s/dists/%s" % (base, suite)
        try:
            signed = fetch(where + "/InRelease")
            try:
                content = gpgv_verify(gpgv, keyring, signed)
            except DebError as e:
                raise DebError("%s/InRelease: %s" % (where, e))
        except NotFound:
            try:
                release = fetch(where + "/Release")
                sig = fetch(where + "/Release.gpg")
            except NotFound as e:
                errors.append("%s: no InRelease, and %s" % (where, e))
                continue
            try:
                content = gpgv_verify(gpgv, keyring, release, detached_sig=sig)
            except DebError as e:
                raise DebError("%s/Release: %s" % (where, e))
        stanzas = parse_stanzas(content.decode("utf-8", "replace"))
        if not stanzas:
            raise DebError("%s: the signed Release file is empty" % where)
        fields = stanzas[0]
        if suite not in (fields.get("Suite"), fields.get("Codename")):
            raise DebError("%s: the Release file is for suite %r / codename %r, not %r" % (
                where, fields.get("Suite"), fields.get("Codename"), suite))
        valid_until = fields.get("Valid-Until")
        if valid_until and not ignore_valid_until:
            try:
                limit = email.utils.parsedate_to_datetime(valid_until).timestamp()
            except (TypeError, ValueError):
                raise DebError("%s: unreadable Valid-Until %r" % (where, valid_until))
            if (now if now is not None else time.time()) > limit:
                raise DebError("%s: the Release file expired (Valid-Until %s): the mirror is stale "
                               "(or pass --ignore_valid_until / ignore_valid_until = True)"
                               % (where, valid_until))
        files = {}
        for line in fields.get("SHA256", "").split("\n"):
            parts = line.split()
            if len(parts) == 3:
                files[parts[2]] = (parts[0], int(parts[1]))
        if not files:
            raise DebError("%s: the Release file lists no SHA256 checksums" % where)
        return fields, files, base
    raise DebError("suite %r not found: %s" % (suite, "; ".join(errors)))


_PACKAGE_FIELDS = {"Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides",
                   "Filename", "SHA256", "Size", "Essential"}


def fetch_packages(base, suite, component, arch, release_fields, release_files):
    """Stanzas of `<component>/binary-<arch>/Packages` of a suite, checked against the Release."""
    stem = "%s/binary-%s/Packages" % (component, arch)
    where = "%s/dists/%s" % (base, suite)
    for ext, decompress in ((".xz", lzma.decompress), (".gz", gzip.decompress), ("", None)):
        if stem + ext not in release_files:
            continue
        sha, size = release_files[stem + ext]
        data = None
        if release_fields.get("Acquire-By-Hash", "").lower() == "yes":
            try:
                data = fetch("%s/%s/binary-%s/by-hash/SHA256/%s" % (where, component, arch, sha))
            except NotFound:
                data = None
        if data is None:
            data = fetch("%s/%s" % (where, stem + ext))
        got = hashlib.sha256(data).hexdigest()
        if got != sha or len(data) != size:
            raise DebError("%s/%s: sha256 %s (%d bytes) does not match the signed Release file "
                           "(%s, %d bytes)" % (where, stem + ext, got, len(data), sha, size))
        text = (decompress(data) if decompress else data).decode("utf-8", "replace")
        return parse_stanzas(text, _PACKAGE_FIELDS)
    raise DebError("%s: the Release file lists no %s(.xz|.gz) (is %r a component, %r an "
                   "architecture of this suite?)" % (where, stem, component, arch))


# --- the resolver ------------------------------------------------------------------------------

class Universe:
    """All candidate packages of one architecture, from the suites in preference order."""

    def __init__(self):
        self.by_name = {}      # name -> [stanza], highest version first
        self.providers = {}    # virtual name -> [(provider stanza, version or None)]
        self._seen = set()

    def add(self, stanzas, suite):
        for st in stanzas:
            name, version = st.get("Package"), st.get("Version")
            if not name or not version or "Filename" not in st or "SHA256" not in st:
                continue
            key = (name, version)
            if key in self._seen:
                continue  # the same version from an earlier suite wins
            self._seen.add(key)
            st = dict(st)
            st["_suite"] = suite
            self.by_name.setdefault(name, []).append(st)
            for group in parse_relations(st.get("Provides", "")):
                for pname, op, pver in group:
                    self.providers.setdefault(pname, []).append((st, pver if op == "=" else None))

    def finish(self):
        import functools
        key = functools.cmp_to_key(lambda a, b: version_compare(b["Version"], a["Version"]))
        for name in self.by_name:
            self.by_name[name].sort(key=key)

    def candidates(self, name, op=None, version=None):
        return [st for st in self.by_name.get(name, []) if version_satisfies(st["Version"], op, version)]


def _provides_match(pversion, op, version):
    if op is None:
        return True
    return pversion is not None and version_satisfies(pversion, op, version)


class Resolution:
    def __init__(self, selected, depends, assumed, reasons):
        self.selected = selected    # name -> stanza
        self.depends = depends      # name -> [names]
        self.assumed = assumed      # sorted names of Essential packages not installed
        self.reasons = reasons


def resolve(universe, requests, exclude=(), arch=""):
    """Selects packages for `requests` ([name or name=version]); returns a Resolution."""
    exclude = set(exclude)
    selected = {}
    parent = {}
    depends = {}
    assumed = set()
    queue = []

    def chain(name):
        out = [name]
        while out[-1] in parent and parent[out[-1]] is not None and len(out) < 50:
            out.append(parent[out[-1]])
        return " <- ".join(out)

    for req in requests:
        name, _, pinned = req.partition("=")
        name = name.strip()
        pinned = pinned.strip() or None
        cands = universe.candidates(name, "=" if pinned else None, pinned)
        if not cands:
            avail = [st["Version"] for st in universe.by_name.get(name, [])]
            if avail:
                raise DebError("%s: requested %s, but the archive has %s only" % (
                    arch, req, ", ".join(avail)))
            provs = sorted({st["Package"] for st, _ in universe.providers.get(name, [])})
            if provs:
                raise DebError("%s: requested package %r is virtual, provided by %s: request "
                               "one of them" % (arch, name, ", ".join(provs)))
            raise DebError("%s: requested package %r is not in the archive" % (arch, name))
        if name in selected:
            if selected[name]["Version"] != cands[0]["Version"]:
                raise DebError("%s: %r is requested twice with different versions" % (arch, name))
            continue
        selected[name] = cands[0]
        parent[name] = None
        queue.append(name)

    def satisfied_by_selected(group):
        for n, op, v in group:
            st = selected.get(n)
            if st is not None and version_satisfies(st["Version"], op, v):
                return True
            for pst, pver in universe.providers.get(n, []):
                if pst["Package"] in selected and selected[pst["Package"]] is pst and \
                        _provides_match(pver, op, v):
                    return True
        return False

    def explain(group):
        parts = []
        for n, op, v in group:
            avail = universe.by_name.get(n, [])
            provs = universe.providers.get(n, [])
            if n in selected:
                parts.append("%s: %s is already selected (needed by %s)" % (
                    n, selected[n]["Version"], chain(n)))
            elif avail:
                parts.append("%s: the archive has %s" % (n, ", ".join(
                    "%s (%s)" % (st["Version"], st["_suite"]) for st in avail)))
            elif provs:
                parts.append("%s: virtual, provided by %s" % (n, ", ".join(
                    "%s%s" % (st["Package"], " = " + pv if pv else "") for st, pv in provs)))
            else:
                parts.append("%s: no such package" % n)
        return "; ".join(parts)

    i = 0
    while i < len(queue):
        name = queue[i]
        i += 1
        st = selected[name]
        deps = []
        for field in ("Pre-Depends", "Depends"):
            try:
                groups = parse_relations(st.get(field, ""))
            except DebError as e:
                raise DebError("%s: %s %s: %s: %s" % (arch, name, st["Version"], field, e))
            for group in groups:
                if any(n in exclude for n, _, _ in group):
                    continue
                if satisfied_by_selected(group):
                    for n, op, v in group:
                        if n in selected and version_satisfies(selected[n]["Version"], op, v):
                            deps.append(n)
                            break
                        hit = [p for p, pv in universe.providers.get(n, [])
                               if p["Package"] in selected and selected[p["Package"]] is p and
                               _provides_match(pv, op, v)]
                        if hit:
                            deps.append(hit[0]["Package"])
                            break
                    continue
                choice = None
                for n, op, v in group:
                    if n in selected:
                        continue  # selected with a version that doesn't satisfy: next alternative
                    cands = universe.candidates(n, op, v)
                    if cands:
                        choice = cands[0]
                        break
                    provs = [p for p, pv in universe.providers.get(n, []) if _provides_match(pv, op, v)]
                    names = sorted({p["Package"] for p in provs})
                    if len(names) == 1:
                        choice = provs[0]
                        break
                    if len(names) > 1:
                        raise DebError(
                            "%s: %s %s depends on %r, a virtual package provided by %s: add the "
                            "one you want to `packages` (or to `exclude`)" % (
                                arch, name, st["Version"], format_group(group), ", ".join(names)))
                if choice is None:
                    raise DebError("%s: unsatisfiable dependency: %s %s (needed by %s) %s %r: %s" % (
                        arch, name, st["Version"], chain(name) if parent.get(name) else "the manifest",
                        field, format_group(group), explain(group)))
                cname = choice["Package"]
                if choice.get("Essential", "").lower() == "yes":
                    assumed.add(cname)
                    continue
                if cname in selected:
                    # A provider version different from the selected one.
                    raise DebError("%s: %s %s needs %r, satisfied only by %s %s, but %s %s is "
                                   "selected (needed by %s)" % (
                                       arch, name, st["Version"], format_group(group), cname,
                                       choice["Version"], cname, selected[cname]["Version"],
                                       chain(cname)))
                selected[cname] = choice
                parent[cname] = name
                queue.append(cname)
                deps.append(cname)
        depends[name] = sorted(set(deps) - {name})
    return Resolution(selected, depends, sorted(assumed - set(selected)), parent)


# --- the lock ----------------------------------------------------------------------------------

def read_manifest(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = json.loads(raw.decode("utf-8"))
    except OSError as e:
        raise DebError("cannot read the manifest %s: %s" % (path, e.strerror))
    except ValueError as e:
        raise DebError("manifest %s is not valid JSON: %s" % (path, e))
    if not isinstance(data, dict):
        raise DebError("manifest %s: expected a JSON object" % path)
    known = {"suites", "components", "architectures", "packages", "exclude"}
    for k in data:
        if k not in known and not k.startswith("_"):
            raise DebError("manifest %s: unknown key %r (known: %s)" % (path, k, ", ".join(sorted(known))))

    def strings(key, required, default=None):
        v = data.get(key, default)
        if v is None:
            if required:
                raise DebError("manifest %s: %r is required (a list of strings)" % (path, key))
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise DebError("manifest %s: %r must be a list of non-empty strings" % (path, key))
        return [x.strip() for x in v]

    manifest = {
        "suites": strings("suites", True),
        "components": strings("components", False, ["main"]),
        "architectures": strings("architectures", True),
        "packages": strings("packages", True),
        "exclude": strings("exclude", False),
    }
    for key in ("suites", "architectures", "packages"):
        if not manifest[key]:
            raise DebError("manifest %s: %r is empty" % (path, key))
    return manifest, hashlib.sha256(raw).hexdigest()


def build_lock(manifest, manifest_sha256, urls, keyring, gpgv="gpgv", ignore_valid_until=False,
               log=None):
    """Fetches and verifies the indexes, resolves every architecture, returns the lock dict."""
    releases = {}
    for suite in manifest["suites"]:
        releases[suite] = fetch_release(urls[suite], suite, keyring, gpgv, ignore_valid_until)
        if log:
            log("verified %s/dists/%s (%s)" % (releases[suite][2], suite,
                                              releases[suite][0].get("Date", "no date")))
    lock = {
        "lock_version": LOCK_VERSION,
        "manifest_sha256": manifest_sha256,
        "suites": manifest["suites"],
        "architectures": {},
    }
    for arch in manifest["architectures"]:
        universe = Universe()
        for suite in manifest["suites"]:
            fields, files, base = releases[suite]
            for comp in manifest["components"]:
                universe.add(fetch_packages(base, suite, comp, arch, fields, files), suite)
        universe.finish()
        res = resolve(universe, manifest["packages"], manifest["exclude"], arch)
        pkgs = []
        for name in sorted(res.selected):
            st = res.selected[name]
            path = st["Filename"]
            if path.startswith("/") or ".." in path.split("/"):
                raise DebError("%s: %s: suspicious Filename %r in the index" % (arch, name, path))
            pkgs.append({
                "name": name,
                "version": st["Version"],
                "architecture": st.get("Architecture", arch),
                "suite": st["_suite"],
                "path": path,
                "sha256": st["SHA256"],
                "size": int(st.get("Size", "0") or 0),
                "depends": res.depends.get(name, []),
            })
        lock["architectures"][arch] = {"packages": pkgs, "assumed": res.assumed}
        if log:
            log("%s: %d packages, %.1f MB of .deb files" % (
                arch, len(pkgs), sum(p["size"] for p in pkgs) / 1e6))
    return lock


def encode_lock(lock):
    return (json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def lock_changes(old, new):
    """Human-readable lines of what changed between two locks."""
    lines = []
    for arch in sorted(set(old.get("architectures", {})) | set(new.get("architectures", {}))):
        a = {p["name"]: p["version"] for p in old.get("architectures", {}).get(arch, {}).get("packages", [])}
        b = {p["name"]: p["version"] for p in new.get("architectures", {}).get(arch, {}).get("packages", [])}
        for n in sorted(set(a) | set(b)):
            if n not in a:
                lines.append("%s: + %s %s" % (arch, n, b[n]))
            elif n not in b:
                lines.append("%s: - %s %s" % (arch, n, a[n]))
            elif a[n] != b[n]:
                lines.append("%s: %s %s -> %s" % (arch, n, a[n], b[n]))
    return lines


# --- CLI ---------------------------------------------------------------------------------------

def _cmd_lock(args):
    manifest, digest = read_manifest(args.manifest)
    overrides = parse_archive_overrides(args.archive)
    urls = archive_urls(manifest["suites"], overrides, args.apt_dir)

    def log(msg):
        sys.stderr.write("deb_lock: %s\n" % msg)

    lock = build_lock(manifest, digest, urls, args.keyring, args.gpgv, args.ignore_valid_until, log)
    data = encode_lock(lock)
    old = {}
    if os.path.isfile(args.lock):
        try:
            with open(args.lock, "rb") as f:
                old = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError):
            old = {}
    os.makedirs(os.path.dirname(os.path.abspath(args.lock)), exist_ok=True)
    tmp = args.lock + ".tmp-shiko"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, args.lock)
    changes = lock_changes(old, lock)
    for line in changes:
        print(line)
    print("Wrote %s (%s; %s)" % (args.lock, ", ".join(
        "%s: %d packages" % (a, len(v["packages"])) for a, v in sorted(lock["architectures"].items())),
        "%d change(s)" % len(changes) if old else "new lock"))


def _cmd_sources(args):
    overrides = parse_archive_overrides(args.archive)
    print(json.dumps(archive_urls(args.suite, overrides, args.apt_dir), sort_keys=True))


def _cmd_probe(args):
    errors = []
    for url in args.url:
        try:
            data = fetch(url)
        except DebError as e:
            errors.append(str(e))
            continue
        print(json.dumps({"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}))
        return
    print(json.dumps({"error": "; ".join(errors) or "no URL given"}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("lock", help="resolve a manifest and write its lock")
    p.add_argument("--manifest", required=True)
    p.add_argument("--lock", required=True, help="lock file to write (relative paths: to "
                   "$BUILD_WORKSPACE_DIRECTORY under `bazel run`)")
    p.add_argument("--archive", action="append", default=[], help="SUITE=URL or *=URL")
    p.add_argument("--keyring", default=DEFAULT_KEYRING)
    p.add_argument("--gpgv", default="gpgv")
    p.add_argument("--apt_dir", default=DEFAULT_APT_DIR)
    p.add_argument("--ignore_valid_until", action="store_true")
    p.add_argument("--target", default="deb_lock")
    s = sub.add_parser("sources", help="print the archive URL of each suite (JSON)")
    s.add_argument("--suite", action="append", default=[])
    s.add_argument("--archive", action="append", default=[])
    s.add_argument("--apt_dir", default=DEFAULT_APT_DIR)
    s.add_argument("--target", default="deb_repository")
    pr = sub.add_parser("probe", help="fetch a URL, print its sha256 (JSON)")
    pr.add_argument("--url", action="append", default=[])
    pr.add_argument("--target", default="deb_repository")
    args = parser.parse_args(argv)
    if args.command == "lock":
        ws = os.environ.get("BUILD_WORKSPACE_DIRECTORY")
        if ws and not os.path.isabs(args.lock):
            args.lock = os.path.join(ws, args.lock)
        if ws and not os.path.isabs(args.keyring):
            args.keyring = os.path.join(ws, args.keyring)
    try:
        if args.command == "lock":
            _cmd_lock(args)
        elif args.command == "probe":
            _cmd_probe(args)
        else:
            _cmd_sources(args)
    except DebError as e:
        sys.stderr.write("ERROR: %s: %s\n" % (args.target, e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
