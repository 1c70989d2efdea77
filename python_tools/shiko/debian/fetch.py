"""Fetching archive files over http, https or file:// with bounded retries."""

import hashlib
import time
import urllib.error
import urllib.request

from python_tools.shiko.debian.errors import DebError, NotFound


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


def probe(urls, sha256=None):
    """What each URL serves, in order, stopping at the first that serves `sha256`.

    {"match": that URL or None, "tried": [{"url", "sha256", "size"} or {"url", "error",
    "missing"}]}: "missing" is true for a 404/410 or a missing file (the archive dropped the
    file), false for any other failure (network, server).
    """
    tried = []
    for url in urls:
        try:
            data = fetch(url)
        except NotFound as e:
            tried.append({"url": url, "error": str(e), "missing": True})
            continue
        except DebError as e:
            tried.append({"url": url, "error": str(e), "missing": False})
            continue
        digest = hashlib.sha256(data).hexdigest()
        tried.append({"url": url, "sha256": digest, "size": len(data)})
        if sha256 and digest == sha256:
            return {"match": url, "tried": tried}
    return {"match": None, "tried": tried}
