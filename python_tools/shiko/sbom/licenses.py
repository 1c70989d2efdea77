"""Debian copyright-format licence names as SPDX licence expressions.

A DEP-5 `License:` short name is mostly SPDX-like ("GPL-2+", "LGPL-2.1+", "BSD-3-clause",
"Expat"); the names below map to SPDX identifiers. Any other name becomes a
`LicenseRef-Debian-<name>` (SPDX documents must declare those: see `refs()`), so an expression
is always valid SPDX, and nothing is guessed.
"""

import re

_SPDX = {
    "apache-2.0": "Apache-2.0",
    "artistic": "Artistic-1.0-Perl",
    "artistic-1.0": "Artistic-1.0",
    "artistic-2.0": "Artistic-2.0",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "cc0-1.0": "CC0-1.0",
    "expat": "MIT",
    "mit": "MIT",
    "isc": "ISC",
    "zlib": "Zlib",
    "mpl-1.1": "MPL-1.1",
    "mpl-2.0": "MPL-2.0",
    "psf-2": "PSF-2.0",
    "python": "Python-2.0",
    "openssl": "OpenSSL",
    "public-domain": None,  # not a licence: a LicenseRef
    "x11": "X11",
    "curl": "curl",
    "bzip2-1.0.6": "bzip2-1.0.6",
    "gfdl-1.2+": "GFDL-1.2-or-later",
    "gfdl-1.3+": "GFDL-1.3-or-later",
}
for _v in ("1", "2", "3"):
    _SPDX["gpl-%s" % _v] = "GPL-%s.0-only" % _v
    _SPDX["gpl-%s+" % _v] = "GPL-%s.0-or-later" % _v
    _SPDX["gpl-%s.0" % _v] = "GPL-%s.0-only" % _v
    _SPDX["gpl-%s.0+" % _v] = "GPL-%s.0-or-later" % _v
for _v in ("2", "2.1", "3"):
    _SPDX["lgpl-%s" % _v] = "LGPL-%s-only" % (_v if "." in _v else _v + ".0")
    _SPDX["lgpl-%s+" % _v] = "LGPL-%s-or-later" % (_v if "." in _v else _v + ".0")
_SPDX["lgpl-2.0"] = "LGPL-2.0-only"
_SPDX["lgpl-2.0+"] = "LGPL-2.0-or-later"
_SPDX["gpl-2.0-with-openssl-exception"] = "GPL-2.0-only"

_SPLIT = re.compile(r"\s+(or|and)\s+|\s*([|,])\s*", re.IGNORECASE)


def ref_id(name):
    """The LicenseRef id of a licence name that is not an SPDX identifier."""
    return "LicenseRef-Debian-" + (re.sub(r"[^A-Za-z0-9.\-]+", "-", name).strip("-") or "unknown")


def _one(name):
    spdx = _SPDX.get(name.strip().lower(), "")
    if spdx:
        return spdx
    return ref_id(name.strip())


def expression(names):
    """An SPDX licence expression for a package's DEP-5 licence names (the licences of its
    files: all of them apply, so AND), or "NOASSERTION" when there are none."""
    terms = []
    for name in names:
        parts = []
        ops = []
        pos = 0
        for m in _SPLIT.finditer(name):
            parts.append(name[pos:m.start()])
            ops.append("AND" if (m.group(1) or "").lower() == "and" or m.group(2) == "," else "OR")
            pos = m.end()
        parts.append(name[pos:])
        parts = [p for p in parts if p.strip()]
        if not parts:
            continue
        ids = [_one(p) for p in parts]
        expr = ids[0]
        for op, i in zip(ops, ids[1:]):
            expr += " %s %s" % (op, i)
        terms.append("(%s)" % expr if len(ids) > 1 and len(names) > 1 else expr)
    uniq = []
    for t in terms:
        if t not in uniq:
            uniq.append(t)
    return " AND ".join(uniq) if uniq else "NOASSERTION"


def refs(expr):
    """The LicenseRef ids an expression uses (sorted)."""
    return sorted(set(re.findall(r"LicenseRef-[A-Za-z0-9.\-]+", expr)))
