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


def probe(urls):
    """{"url", "sha256", "size"} of the first URL that answers, else {"error": why none did}."""
    errors = []
    for url in urls:
        try:
            data = fetch(url)
        except DebError as e:
            errors.append(str(e))
            continue
        return {"url": url, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return {"error": "; ".join(errors) or "no URL given"}
