"""Snapshot archives: a timestamped root holding an archive as it was at that time.

A snapshot archive (Debian's snapshot service, or a copy of its layout) is a root URL under
which `<root>/<TIMESTAMP>/` is a whole archive as it was at TIMESTAMP (`YYYYMMDDTHHMMSSZ`, UTC):
the same `dists/<suite>/` and `pool/` paths as a mirror, old versions included. The service
answers any timestamp with its last snapshot taken at or before it.

The roots are given by the user (`snapshots` of deb_lock and deb_repository); the lock records
only the timestamp it was resolved against (`"snapshot"`), never a URL. A pinned .deb is then
`<root>/<snapshot>/<path>` for every root, tried after the mirrors, verified by sha256.
"""

import calendar
import re
import time

from python_tools.shiko.debian.errors import DebError

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP = re.compile(r"^[0-9]{8}T[0-9]{6}Z$")
_ROOT = re.compile(r"^(https?|file)://[^\s?#]+$")


def check_timestamp(ts, what="snapshot timestamp"):
    """`ts` if it is a valid `YYYYMMDDTHHMMSSZ` time, else DebError naming `what`."""
    ok = isinstance(ts, str) and bool(_TIMESTAMP.match(ts))
    if ok:
        try:
            time.strptime(ts, TIMESTAMP_FORMAT)
        except ValueError:
            ok = False
    if not ok:
        raise DebError("%s %r: expected YYYYMMDDTHHMMSSZ (UTC), e.g. 20250520T000000Z" % (what, ts))
    return ts


def epoch(ts):
    """Seconds since the epoch of a checked timestamp."""
    return calendar.timegm(time.strptime(check_timestamp(ts), TIMESTAMP_FORMAT))


def now_timestamp(now=None):
    """The timestamp of `now` (seconds; default: the current time), to the second."""
    return time.strftime(TIMESTAMP_FORMAT, time.gmtime(time.time() if now is None else now))


def check_roots(roots):
    """The snapshot roots without a trailing slash; DebError for one that is not a URL."""
    out = []
    for r in roots or []:
        if not _ROOT.match(r or ""):
            raise DebError("snapshot archive %r: expected an http, https or file URL (the root "
                           "holding <TIMESTAMP>/dists and <TIMESTAMP>/pool)" % r)
        if _TIMESTAMP.match(r.rstrip("/").rsplit("/", 1)[-1]):
            raise DebError("snapshot archive %r: give the root without the timestamp (the lock "
                           "records the timestamp)" % r)
        if r.rstrip("/") not in out:
            out.append(r.rstrip("/"))
    return out


def snapshot_urls(roots, ts):
    """The archive URLs of the snapshot at `ts` of each root, in order."""
    check_timestamp(ts)
    return ["%s/%s" % (r, ts) for r in check_roots(roots)]
