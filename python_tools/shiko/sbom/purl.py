"""Package URLs (https://github.com/package-url/purl-spec) for what rules_shiko puts in images."""

from urllib.parse import quote

# Debian codename -> the version syft and Trivy put in `distro=debian-<N>`.
DEBIAN_VERSIONS = {
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
    "forky": "14",
}


def _q(s):
    return quote(s, safe="")


def _qualifiers(pairs):
    items = sorted((k, v) for k, v in pairs.items() if v)
    return ("?" + "&".join("%s=%s" % (k, _q(v)) for k, v in items)) if items else ""


def debian_distro(suites):
    """`debian-12` from the lock's suites (["bookworm", "bookworm-updates", ...]), else the
    codename, else ""."""
    for s in suites or []:
        codename = s.split("-", 1)[0].split("/", 1)[0]
        if codename:
            return "debian-" + DEBIAN_VERSIONS[codename] if codename in DEBIAN_VERSIONS else codename
    return ""


def deb(name, version, arch, distro="", source=""):
    """pkg:deb/debian/NAME@VERSION?arch=...&distro=...[&upstream=SOURCE]"""
    return "pkg:deb/debian/%s@%s%s" % (_q(name), _q(version), _qualifiers({
        "arch": arch, "distro": distro, "upstream": source if source and source != name else ""}))


def pypi_name(name):
    """The purl form of a Python distribution name: lower case, `_` and `.` runs as `-`."""
    out = []
    for c in name.lower():
        if c in "_.-":
            if not out or out[-1] != "-":
                out.append("-")
        else:
            out.append(c)
    return "".join(out)


def pypi(name, version):
    return "pkg:pypi/%s@%s" % (_q(pypi_name(name)), _q(version))


def oci(name, digest, repository_url="", arch=""):
    """pkg:oci/NAME@sha256%3A...[?arch=...&repository_url=...]"""
    return "pkg:oci/%s@%s%s" % (_q(name.rsplit("/", 1)[-1].lower()), _q(digest), _qualifiers({
        "arch": arch, "repository_url": repository_url}))
