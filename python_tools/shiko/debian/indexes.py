"""Verified archive indexes: a suite's signed Release, and Packages files checked against it."""

import email.utils
import hashlib
import time

from python_tools.shiko.debian.deb822 import parse_stanzas
from python_tools.shiko.debian.errors import DebError, NotFound
from python_tools.shiko.debian.fetch import fetch
from python_tools.shiko.debian.signatures import gpgv_verify
from python_tools.shiko.tar import compression


def fetch_release(urls, suite, keyring, gpgv="gpgv", ignore_valid_until=False, now=None):
    """The verified Release of a suite: (fields dict, {path: (sha256, size)}, base URL).

    `urls` are tried in order (the first that has the suite); NotFound when none has it.
    `Valid-Until` is checked against `now` (seconds; default: the current time).
    """
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
    raise NotFound("suite %r not found: %s" % (suite, "; ".join(errors)))


_PACKAGE_FIELDS = {"Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides",
                   "Filename", "SHA256", "Size", "Essential"}


def fetch_packages(base, suite, component, arch, release_fields, release_files):
    """Stanzas of `<component>/binary-<arch>/Packages` of a suite, checked against the Release."""
    stem = "%s/binary-%s/Packages" % (component, arch)
    where = "%s/dists/%s" % (base, suite)
    for ext, fmt in ((".xz", "xz"), (".gz", "gzip"), ("", "plain")):
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
        text = compression.decompress(data, fmt, stem + ext).decode("utf-8", "replace")
        return parse_stanzas(text, _PACKAGE_FIELDS)
    raise DebError("%s: the Release file lists no %s(.xz|.gz) (is %r a component, %r an "
                   "architecture of this suite?)" % (where, stem, component, arch))
