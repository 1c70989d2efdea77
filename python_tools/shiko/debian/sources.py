"""Archive URLs of suites: `--archive SUITE=URL` overrides, else the machine's apt sources.

No host name is ever written in a manifest or a lock: each suite's archive URL comes from an
override (`*=URL` for every suite without its own), or else from the machine's apt sources
(`<apt_dir>/sources.list`, `sources.list.d/*.list` one-line entries and
`sources.list.d/*.sources` deb822 entries; `Types: deb` only, `Enabled: no` skipped).
"""

import glob
import os
import re

from python_tools.shiko.debian.deb822 import parse_stanzas
from python_tools.shiko.debian.errors import DebError

DEFAULT_APT_DIR = "/etc/apt"


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


def archive_urls(suites, overrides, apt_dir=DEFAULT_APT_DIR, optional=False):
    """{suite: [URL, ...]}: overrides ({suite or "*": URL}) first, else the apt sources.

    A suite no source lists is an error, or, with `optional` (snapshot archives will do), [].
    """
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
        if not urls and not optional:
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
