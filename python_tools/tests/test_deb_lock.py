"""Unit tests of python_tools/deb_lock.py and shiko/debian/: Debian versions (checked against dpkg
itself), relations, the resolver on real-format Packages data, and whole locks from file:// archives
whose Release files are signed at test time by a throwaway gpg key."""

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from python_tools import deb_lock
from python_tools.shiko import cli
from python_tools.shiko.debian import deb822, errors, indexes, lockfile, resolver, signatures, snapshots
from python_tools.shiko.debian import sources
from python_tools.shiko.debian import version as deb_version
from python_tools.tests import debian_fixtures as fx


def main(argv):
    """Runs the deb_lock command line as the script would; returns its exit code."""
    with pytest.raises(SystemExit) as e:
        cli.main(deb_lock.COMMANDS, argv=["deb_lock.py"] + list(argv))
    return e.value.code


# --- versions ----------------------------------------------------------------------------------

ORDERED = [
    "0~~", "0~", "0", "0.1~rc1", "0.1", "0.1-1", "0.1-1+b1", "0.1a", "0.1+dfsg", "0.9",
    "1.0~beta1", "1.0", "1.0-0.1", "1.0-1~deb12u1", "1.0-1", "1.0-1+deb12u1", "1.0-1+deb12u10",
    "1.0-2", "1.00.1", "1.10", "2.36-9+deb12u9", "2.36-9+deb12u14", "10", "1:0.1", "1:1.2.13",
    "2:0",
]


def test_version_order_is_total_and_matches_the_list():
    for i, a in enumerate(ORDERED):
        for j, b in enumerate(ORDERED):
            c = deb_version.version_compare(a, b)
            want = (i > j) - (i < j)
            assert (c > 0) - (c < 0) == want, (a, b, c)


def test_equal_spellings():
    assert deb_version.version_compare("1.0", "1.0-0") == 0
    assert deb_version.version_compare("0:1.0", "1.0") == 0
    assert deb_version.version_compare("1.001", "1.1") == 0


def test_version_compare_agrees_with_dpkg():
    dpkg = shutil.which("dpkg") or "/usr/bin/dpkg"
    assert os.path.exists(dpkg), "dpkg (the oracle) is missing"
    pairs = list(itertools.combinations(ORDERED[::2], 2)) + [
        ("3.0.15-1~deb12u1", "3.0.16-1~deb12u1"), ("2026a-0+deb12u1", "2025b-0+deb12u1"),
        ("1.2.3~rc1+dfsg-2", "1.2.3+dfsg-1"), ("5.3.28+dfsg2-1", "5.3.28+dfsg1-0.10"),
    ]
    for a, b in pairs:
        ours = deb_version.version_compare(a, b) < 0
        theirs = subprocess.run([dpkg, "--compare-versions", a, "lt", b]).returncode == 0
        assert ours == theirs, (a, b)


def test_version_relations():
    s = deb_version.version_satisfies
    assert s("1.0", "<<", "1.1") and not s("1.1", "<<", "1.1")
    assert s("1.1", "<=", "1.1") and s("1.1", "<", "1.1")  # obsolete "<" means "<="
    assert s("1.1", ">=", "1.1") and s("1.2", ">>", "1.1") and not s("1.1", ">>", "1.1")
    assert s("1:1.0", "=", "1:1.0") and not s("1.0", "=", "1:1.0")
    assert s("anything", None, None)


def test_parse_relations():
    r = deb822.parse_relations(
        "libc6 (>= 2.34), python3:any (<< 3.12) | python3.11, foo [amd64] <!nocheck>,bar (=1:2-3)")
    assert r == [
        [("libc6", ">=", "2.34")],
        [("python3", "<<", "3.12"), ("python3.11", None, None)],
        [("foo", None, None)],
        [("bar", "=", "1:2-3")],
    ]
    assert deb822.parse_relations("") == []
    with pytest.raises(errors.DebError, match="malformed relation"):
        deb822.parse_relations("libc6 (>= 2.34")


def test_parse_stanzas_keeps_multiline_fields():
    st = deb822.parse_stanzas("A: 1\nB: x\n y\n\n\nA: 2\n")
    assert st == [{"A": "1", "B": "x\ny"}, {"A": "2"}]


# --- the resolver ------------------------------------------------------------------------------

def universe(*suites):
    """suites: [(suite, "Packages text")] in preference order."""
    u = resolver.Universe()
    for suite, text in suites:
        u.add(deb822.parse_stanzas(text), suite)
    u.finish()
    return u


def pkg(name, version, **fields):
    return fx.packages_stanza(name, version, fields.pop("arch", "amd64"),
                              "pool/main/%s/%s_%s.deb" % (name[0], name, version), "0" * 64, 10,
                              **fields)


def names(res):
    return {n: st["Version"] for n, st in res.selected.items()}


def test_alternatives_take_the_first_available_unless_one_is_selected():
    u = universe(("s", "\n".join([
        pkg("app", "1", Depends="mawk | gawk, libc6"),
        pkg("mawk", "1.3", Depends="libc6"),
        pkg("gawk", "5.2", Depends="libc6"),
        pkg("libc6", "2.36"),
    ])))
    assert names(resolver.resolve(u, ["app"])) == {"app": "1", "mawk": "1.3", "libc6": "2.36"}
    # gawk requested: it satisfies the group, mawk is not pulled in.
    assert names(resolver.resolve(u, ["app", "gawk"])) == {"app": "1", "gawk": "5.2", "libc6": "2.36"}
    # The first alternative missing from the archive: the second one.
    u2 = universe(("s", "\n".join([pkg("app", "1", Depends="nosuch | gawk"), pkg("gawk", "5.2")])))
    assert names(resolver.resolve(u2, ["app"])) == {"app": "1", "gawk": "5.2"}


def test_virtual_packages_via_provides():
    u = universe(("s", "\n".join([
        pkg("app", "1", Depends="mail-transport-agent, libfoo-abi (>= 2)"),
        pkg("exim", "4", Provides="mail-transport-agent"),
        pkg("foo2", "2.0", Provides="libfoo-abi (= 2.1)"),
        pkg("foo1", "1.0", Provides="libfoo-abi (= 1.0), libfoo-abi-old"),
    ])))
    res = resolver.resolve(u, ["app"])
    assert names(res) == {"app": "1", "exim": "4", "foo2": "2.0"}
    assert res.depends["app"] == ["exim", "foo2"]


def test_unversioned_provides_do_not_satisfy_a_versioned_dependency():
    u = universe(("s", "\n".join([
        pkg("app", "1", Depends="virt (>= 1)"),
        pkg("prov", "1", Provides="virt"),
    ])))
    with pytest.raises(errors.DebError, match=r"unsatisfiable dependency: app 1 .*virt \(>= 1\).*"
                                                r"virt: virtual, provided by prov"):
        resolver.resolve(u, ["app"], arch="amd64")


def test_several_providers_ask_for_a_choice():
    u = universe(("s", "\n".join([
        pkg("app", "1", Depends="awk"),
        pkg("mawk", "1", Provides="awk"),
        pkg("gawk", "1", Provides="awk"),
    ])))
    with pytest.raises(errors.DebError, match="virtual package provided by gawk, mawk"):
        resolver.resolve(u, ["app"])
    assert names(resolver.resolve(u, ["mawk", "app"])) == {"app": "1", "mawk": "1"}
    assert names(resolver.resolve(u, ["app"], exclude=["awk"])) == {"app": "1"}


def test_version_constraints_pick_an_older_version_from_another_suite():
    u = universe(
        ("bookworm-security", "\n".join([pkg("libfoo", "2.0-1+deb12u1"), pkg("app", "1.1",
                                                                        Depends="libfoo (>= 2)")])),
        ("bookworm", "\n".join([pkg("libfoo", "1.5-1"), pkg("app", "1.0", Depends="libfoo (<< 2)"),
                                pkg("tool", "1", Depends="libfoo (<< 1.6~)")])),
    )
    res = resolver.resolve(u, ["app"])
    assert names(res) == {"app": "1.1", "libfoo": "2.0-1+deb12u1"}
    assert res.selected["libfoo"]["_suite"] == "bookworm-security"
    res = resolver.resolve(u, ["app=1.0"])
    assert names(res) == {"app": "1.0", "libfoo": "1.5-1"}
    assert res.selected["libfoo"]["_suite"] == "bookworm"
    assert names(resolver.resolve(u, ["tool"])) == {"tool": "1", "libfoo": "1.5-1"}


def test_conflicting_constraints_are_an_error():
    u = universe(("s", "\n".join([
        pkg("a", "1", Depends="lib (>= 2)"),
        pkg("b", "1", Depends="lib (<< 2)"),
        pkg("lib", "2"), pkg("lib", "1"),
    ])))
    with pytest.raises(errors.DebError, match=r"b 1 .*lib \(<< 2\).*lib: 2 is already selected "
                                                r"\(needed by lib <- a\)"):
        resolver.resolve(u, ["a", "b"], arch="amd64")


def test_unsatisfiable_dependency_names_the_chain_and_what_exists():
    u = universe(("bookworm", "\n".join([
        pkg("python3", "3.11", Depends="libpython (= 3.11)"),
        pkg("libpython", "3.11", Pre_Depends="libc6 (>= 2.40)"),
        pkg("libc6", "2.36"),
    ])))
    with pytest.raises(errors.DebError) as e:
        resolver.resolve(u, ["python3"], arch="amd64")
    msg = str(e.value)
    assert "amd64: unsatisfiable dependency: libpython 3.11 (needed by libpython <- python3)" in msg
    assert "Pre-Depends 'libc6 (>= 2.40)'" in msg
    assert "libc6: the archive has 2.36 (bookworm)" in msg


def test_requests_that_cannot_be_met():
    u = universe(("s", "\n".join([pkg("a", "1", Provides="v"), pkg("b", "1", Provides="v")])))
    with pytest.raises(errors.DebError, match="'nosuch' is not in the archive"):
        resolver.resolve(u, ["nosuch"])
    with pytest.raises(errors.DebError, match="requested a=2, but the archive has 1 only"):
        resolver.resolve(u, ["a=2"])
    with pytest.raises(errors.DebError, match="'v' is virtual, provided by a, b"):
        resolver.resolve(u, ["v"])


def test_essential_packages_are_assumed_not_installed():
    u = universe(("s", "\n".join([
        pkg("readline-common", "8", Depends="dpkg (>= 1.15) | install-info"),
        pkg("dpkg", "1.21", Essential="yes", Depends="tar"),
        pkg("tar", "1.34", Essential="yes"),
        pkg("install-info", "7"),
    ])))
    res = resolver.resolve(u, ["readline-common"])
    assert names(res) == {"readline-common": "8"}
    assert res.assumed == ["dpkg"]
    # Requested explicitly, an Essential package is installed (with its dependencies).
    res = resolver.resolve(u, ["dpkg"])
    assert names(res) == {"dpkg": "1.21"}
    assert res.assumed == ["tar"]


def test_same_version_in_two_suites_comes_from_the_first():
    u = universe(("bookworm", pkg("a", "1")), ("bookworm-updates", pkg("a", "1")))
    assert resolver.resolve(u, ["a"]).selected["a"]["_suite"] == "bookworm"


# --- apt sources -------------------------------------------------------------------------------

def test_apt_sources_deb822_and_one_line(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# comment\ndeb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian/ bookworm-backports main\n")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# http://old.example\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n")
    (apt / "sources.list.d" / "x.list.disabled").write_text("deb http://nope.example/ bookworm main\n")
    urls = sources.archive_urls(["bookworm", "bookworm-security", "bookworm-backports"], {},
                                 str(apt))
    assert urls == {
        "bookworm": ["http://mirror.example/debian"],
        "bookworm-security": ["http://mirror.example/debian-security"],
        "bookworm-backports": ["http://one.example/debian"],
    }
    assert sources.archive_urls(["bookworm", "x"], {"*": "file:///a/", "bookworm": "http://b"},
                                 str(apt)) == {"bookworm": ["http://b"], "x": ["file:///a"]}
    with pytest.raises(errors.DebError, match="no apt source lists suite 'trixie'"):
        sources.archive_urls(["trixie"], {}, str(apt))


# --- whole locks from signed file:// archives --------------------------------------------------

@pytest.fixture(scope="module")
def key():
    with fx.GpgKey() as k:
        yield k


@pytest.fixture(scope="module")
def other_key():
    with fx.GpgKey("someone else <else@example.invalid>") as k:
        yield k


def _pool_deb(root, name, version, arch="amd64", **extra):
    rel = "pool/main/%s/%s/%s_%s_%s.deb" % (name[0], name, name, version.split(":")[-1], arch)
    sha, size = fx.make_deb(os.path.join(root, rel), name, version, arch,
                            [("./usr/share/%s/README" % name, "file", b"hi", 0o644)])
    return fx.packages_stanza(name, version, arch, rel, sha, size, **extra), rel, sha


def _archive(tmp_path, key, inrelease=True, valid_until=None, root=None, sec_root=None,
             libc="2.36-9+deb12u1"):
    """A main archive (app, libc6, tzdata) and a security archive (a newer libc6): at `root` and
    `sec_root` (default: tmp_path/archive and tmp_path/security). ({suite: [URL]}, shas)."""
    root = root or str(tmp_path / "archive")
    stanzas = {}
    shas = {}
    for arch in ("amd64", "arm64"):
        out = []
        for name, version, extra in (("app", "1.0-1", {"Depends": "libc6 (>= 2.36), tzdata"}),
                                     ("libc6", "2.36-9", {}),
                                     ("tzdata", "2024a-1", {"Depends": "debconf | debconf-2.0"})):
            a = "all" if name == "tzdata" else arch
            st, rel, sha = _pool_deb(root, name, version, a, **extra)
            out.append(st)
            shas[(arch, name)] = (rel, sha)
        stanzas[arch] = out
    url = fx.write_archive(root, "bookworm", stanzas, key, inrelease=inrelease,
                           valid_until=valid_until)
    sec_root = sec_root or str(tmp_path / "security")
    sec = {}
    for arch in ("amd64", "arm64"):
        st, rel, sha = _pool_deb(sec_root, "libc6", libc, arch)
        sec[arch] = [st]
        shas[(arch, "libc6")] = (rel, sha)
    sec_url = fx.write_archive(sec_root, "bookworm-security", sec, key)
    return {"bookworm": [url], "bookworm-security": [sec_url]}, shas


MANIFEST = {
    "suites": ["bookworm", "bookworm-security"],
    "architectures": ["amd64", "arm64"],
    "packages": ["app"],
    "exclude": ["debconf", "debconf-2.0"],
}


def _manifest(tmp_path, data=None):
    p = tmp_path / "packages.json"
    p.write_text(json.dumps(data or MANIFEST))
    return str(p)


def test_lock_from_signed_archives(tmp_path, key):
    urls, shas = _archive(tmp_path, key)
    manifest, digest = lockfile.read_manifest(_manifest(tmp_path))
    lock = lockfile.build_lock(manifest, digest, urls, key.keyring)
    assert lock["lock_version"] == 1 and lock["suites"] == ["bookworm", "bookworm-security"]
    for arch in ("amd64", "arm64"):
        pkgs = {p["name"]: p for p in lock["architectures"][arch]["packages"]}
        assert sorted(pkgs) == ["app", "libc6", "tzdata"]
        assert pkgs["libc6"]["version"] == "2.36-9+deb12u1"
        assert pkgs["libc6"]["suite"] == "bookworm-security"
        assert pkgs["tzdata"]["architecture"] == "all"
        assert pkgs["app"]["depends"] == ["libc6", "tzdata"]
        for name, p in pkgs.items():
            rel, sha = shas[(arch, name)]
            assert (p["path"], p["sha256"]) == (rel, sha)
            base = urls[p["suite"]][0][len("file://"):]
            with open(os.path.join(base, p["path"]), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == p["sha256"]
    data = lockfile.encode_lock(lock)
    assert data == lockfile.encode_lock(json.loads(data))  # stable encoding


def test_release_and_detached_signature(tmp_path, key):
    urls, _ = _archive(tmp_path, key, inrelease=False)
    assert not os.path.exists(urls["bookworm"][0][len("file://"):] + "/dists/bookworm/InRelease")
    fields, files, _ = indexes.fetch_release(urls["bookworm"], "bookworm", key.keyring)
    assert fields["Codename"] == "bookworm" and "main/binary-amd64/Packages.xz" in files


def test_tampered_inrelease_is_a_bad_signature(tmp_path, key):
    urls, _ = _archive(tmp_path, key)
    path = urls["bookworm"][0][len("file://"):] + "/dists/bookworm/InRelease"
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"Label: Test", b"Label: Evil"))
    with pytest.raises(errors.DebError, match=r"dists/bookworm/InRelease: bad signature"):
        indexes.fetch_release(urls["bookworm"], "bookworm", key.keyring)


def test_tampered_release_with_detached_signature(tmp_path, key):
    urls, _ = _archive(tmp_path, key, inrelease=False)
    path = urls["bookworm"][0][len("file://"):] + "/dists/bookworm/Release"
    with open(path, "ab") as f:
        f.write(b"Evil: yes\n")
    with pytest.raises(errors.DebError, match=r"dists/bookworm/Release: bad signature"):
        indexes.fetch_release(urls["bookworm"], "bookworm", key.keyring)


def test_signature_by_a_key_outside_the_keyring(tmp_path, key, other_key):
    urls, _ = _archive(tmp_path, other_key)
    with pytest.raises(errors.DebError, match="bad signature"):
        indexes.fetch_release(urls["bookworm"], "bookworm", key.keyring)
    # ... and against the Debian archive keyring.
    if os.path.exists(signatures.DEFAULT_KEYRING):
        with pytest.raises(errors.DebError, match="bad signature"):
            indexes.fetch_release(urls["bookworm"], "bookworm", signatures.DEFAULT_KEYRING)


@pytest.fixture(scope="module")
def debian_like_key():
    """A home with the keys of a Debian-like archive, made in 2020: `current` (no expiry),
    `expired` (expired in 2021) and `absent` (valid, never in the verifying keyring).
    Everything is signed in 2020, while all three keys were valid, as Debian signs a suite
    with its release key and the archive keys of the current and previous releases."""
    with fx.GpgKey("current archive key <current@example.invalid>",
                   faked_time="20200101T000000") as k:
        k.expired = k.add_key("old archive key <old@example.invalid>", "1y")
        k.absent = k.add_key("unknown key <unknown@example.invalid>")
        k.faked_time = "20200601T000000"
        yield k


def _signed_suite(tmp_path, key, signers, inrelease=True):
    root = str(tmp_path / "signed")
    st, _, _ = _pool_deb(root, "app", "1.0-1")
    return fx.write_archive(root, "bookworm", {"amd64": [st]}, key, inrelease=inrelease,
                            signers=signers)


@pytest.mark.parametrize("inrelease", [True, False], ids=["InRelease", "Release.gpg"])
def test_one_valid_signature_from_the_keyring_is_enough(tmp_path, debian_like_key, inrelease):
    """Like apt: other signers whose key is absent (NO_PUBKEY) or expired (EXPKEYSIG) are
    ignored when one signature is valid from a key of the keyring (gpgv exits 2 then)."""
    k = debian_like_key
    keyring = k.export(str(tmp_path / "keyring.gpg"), k.uid, k.expired)
    url = _signed_suite(tmp_path, k, [k.expired, k.uid, k.absent], inrelease)
    fields, files, _ = indexes.fetch_release([url], "bookworm", keyring)
    assert fields["Suite"] == "bookworm" and "main/binary-amd64/Packages.xz" in files


def test_no_valid_signature_from_the_keyring_is_rejected(tmp_path, debian_like_key):
    k = debian_like_key
    keyring = k.export(str(tmp_path / "keyring.gpg"), k.uid, k.expired)
    # Only the expired key (gpgv prints VALIDSIG for it and exits 0) and a key not in the keyring.
    url = _signed_suite(tmp_path, k, [k.expired, k.absent])
    with pytest.raises(errors.DebError, match=r"InRelease: bad signature: no valid signature by a "
                                                r"key of the keyring .*expired key"):
        indexes.fetch_release([url], "bookworm", keyring)


def test_a_bad_signature_among_valid_ones_is_rejected(tmp_path, debian_like_key):
    """A tampered InRelease: the signature of the keyring's key is BAD (the absent key's too)."""
    k = debian_like_key
    keyring = k.export(str(tmp_path / "keyring.gpg"), k.uid)
    url = _signed_suite(tmp_path, k, [k.uid, k.absent])
    path = url[len("file://"):] + "/dists/bookworm/InRelease"
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data.replace(b"Label: Test", b"Label: Evil"))
    with pytest.raises(errors.DebError, match=r"InRelease: bad signature: BAD signature"):
        indexes.fetch_release([url], "bookworm", keyring)


def test_status_lines_one_verdict_per_signature():
    """The decision on gpgv's status lines (`--status-fd`), one NEWSIG block per signature."""
    fpr = "A" * 40
    good = ["[GNUPG:] NEWSIG", "[GNUPG:] GOODSIG 1234 k", "[GNUPG:] VALIDSIG %s 2020-01-01 0 0 4 0 "
            "22 10 01 %s" % (fpr, fpr)]
    missing = ["[GNUPG:] NEWSIG", "[GNUPG:] ERRSIG 99 22 8 01 0 9 %s" % ("B" * 40),
               "[GNUPG:] NO_PUBKEY 99"]
    expired = ["[GNUPG:] NEWSIG", "[GNUPG:] EXPKEYSIG 77 old", "[GNUPG:] VALIDSIG %s 2020-01-01 0 "
               "0 4 0 22 8 01 %s" % ("C" * 40, "C" * 40)]
    sha1 = [l.replace(" 22 10 01 ", " 22 2 01 ") for l in good]
    assert signatures.verdict("\n".join(good + missing + expired)) is None
    assert "expired key" in signatures.verdict("\n".join(expired + missing))
    assert "no public key" in signatures.verdict("\n".join(missing))
    assert "weak digest" in signatures.verdict("\n".join(sha1))
    assert "BAD signature" in signatures.verdict("\n".join(good + ["[GNUPG:] NEWSIG",
                                                                    "[GNUPG:] BADSIG 9 x"]))
    assert signatures.verdict("") == "no signature"


def test_packages_index_must_match_the_release(tmp_path, key):
    urls, _ = _archive(tmp_path, key)
    path = urls["bookworm"][0][len("file://"):] + "/dists/bookworm/main/binary-arm64/Packages.xz"
    import lzma
    with open(path, "wb") as f:
        f.write(lzma.compress(b"Package: evil\nVersion: 1\n"))
    manifest, digest = lockfile.read_manifest(_manifest(tmp_path))
    with pytest.raises(errors.DebError, match=r"binary-arm64/Packages.xz: sha256 .* does not match "
                                                r"the signed Release file"):
        lockfile.build_lock(manifest, digest, urls, key.keyring)


def test_expired_release(tmp_path, key):
    urls, _ = _archive(tmp_path, key, valid_until="Sat, 08 Jan 2000 00:00:00 UTC")
    with pytest.raises(errors.DebError, match="expired"):
        indexes.fetch_release(urls["bookworm"], "bookworm", key.keyring)
    indexes.fetch_release(urls["bookworm"], "bookworm", key.keyring, ignore_valid_until=True)


def test_missing_suite(tmp_path, key):
    urls, _ = _archive(tmp_path, key)
    with pytest.raises(errors.DebError, match="suite 'trixie' not found"):
        indexes.fetch_release(urls["bookworm"], "trixie", key.keyring)


def test_manifest_errors(tmp_path):
    with pytest.raises(errors.DebError, match="'suites' is required"):
        lockfile.read_manifest(_manifest(tmp_path, {"architectures": ["amd64"], "packages": ["a"]}))
    with pytest.raises(errors.DebError, match="unknown key 'pakages'"):
        lockfile.read_manifest(_manifest(tmp_path, dict(MANIFEST, pakages=[])))
    p = tmp_path / "bad.json"
    p.write_text("{")
    with pytest.raises(errors.DebError, match="not valid JSON"):
        lockfile.read_manifest(str(p))


def test_cli_writes_the_lock_and_reports_changes(tmp_path, key, capsys):
    urls, _ = _archive(tmp_path, key)
    manifest = _manifest(tmp_path)
    out = str(tmp_path / "lock" / "packages.lock.json")
    argv = ["lock", "--manifest", manifest, "--lock", out, "--keyring", key.keyring,
            "--archive", "bookworm=" + urls["bookworm"][0],
            "--archive", "bookworm-security=" + urls["bookworm-security"][0]]
    assert main(argv) == 0
    first = open(out, "rb").read()
    assert "new lock" in capsys.readouterr().out
    lock = json.loads(first)
    assert lock["manifest_sha256"] == hashlib.sha256(open(manifest, "rb").read()).hexdigest()
    # Unchanged archive: the same bytes, no change reported.
    assert main(argv) == 0
    assert open(out, "rb").read() == first
    assert "0 change(s)" in capsys.readouterr().out
    # An older lock: the changes are listed.
    lock["architectures"]["amd64"]["packages"][1]["version"] = "2.36-8"
    with open(out, "w") as f:
        json.dump(lock, f)
    assert main(argv) == 0
    assert "amd64: libc6 2.36-8 -> 2.36-9+deb12u1" in capsys.readouterr().out


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, key, other_key, capsys):
    urls, _ = _archive(tmp_path, other_key)
    out = str(tmp_path / "packages.lock.json")
    rc = main(["lock", "--manifest", _manifest(tmp_path), "--lock", out, "--keyring",
                        key.keyring, "--archive", "*=" + urls["bookworm"][0],
                        "--target", "//x:lock.update"])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: //x:lock.update: ") and "bad signature" in err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(out)


def test_cli_sources(tmp_path, capsys):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "d.sources").write_text(
        "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\n")
    assert main(["sources", "--apt_dir", str(apt), "--suite", "bookworm"]) == 0
    assert json.loads(capsys.readouterr().out) == {"bookworm": ["http://m.example/debian"]}
    assert main(["sources", "--apt_dir", str(apt), "--suite", "sid"]) == 1
    assert "no apt source lists suite 'sid'" in capsys.readouterr().err


def test_cli_as_deb_repository_runs_it(tmp_path):
    """The host's python3 on the script itself, `--flag value` pairs, a label starting with @."""
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "d.sources").write_text(
        "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm\nComponents: main\n")
    argv = [sys.executable, "-B", "-I", "-S", deb_lock.__file__, "sources", "--apt_dir", str(apt),
            "--target", "@debs"]
    r = subprocess.run(argv + ["--suite", "bookworm"], capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"bookworm": ["http://m.example/debian"]}
    r = subprocess.run(argv + ["--suite", "sid"], capture_output=True, text=True, cwd=str(tmp_path))
    assert r.returncode == 1
    assert r.stderr.startswith("ERROR: @debs: no apt source lists suite 'sid'"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def _plain_sha256(path, member="data"):
    """The sha256 of a .deb's control.tar or data.tar, decompressed by the ar and xz programs
    (not our reader)."""
    work = os.path.join(os.path.dirname(path), "_ar_" + os.path.basename(path))
    os.makedirs(work)
    subprocess.run(["ar", "x", os.path.abspath(path)], cwd=work, check=True)
    name = [n for n in os.listdir(work) if n.startswith(member + ".tar")][0]
    raw = subprocess.run(["xz", "-dc", os.path.join(work, name)], check=True,
                         stdout=subprocess.PIPE).stdout
    shutil.rmtree(work)
    return hashlib.sha256(raw).hexdigest()


def test_lock_pins_each_member_and_a_relock_reuses_the_digests(tmp_path, key, monkeypatch):
    """Each package's control_sha256 and data_sha256 are its control.tar's and data.tar's,
    decompressed (checked with ar + xz); a re-lock keeps them for the files the previous lock
    pinned (no .deb fetched), reads only a changed one, and an archive serving a .deb its index
    does not describe is an error."""
    urls, shas = _archive(tmp_path, key)
    manifest, digest = lockfile.read_manifest(_manifest(tmp_path))
    lock = lockfile.build_lock(manifest, digest, urls, key.keyring)
    for arch in ("amd64", "arm64"):
        for p in lock["architectures"][arch]["packages"]:
            base = urls[p["suite"]][0][len("file://"):]
            deb = os.path.join(base, p["path"])
            assert p["data_sha256"] == _plain_sha256(deb), p["name"]
            assert p["control_sha256"] == _plain_sha256(deb, "control"), p["name"]

    fetched = []
    real = lockfile.fetch
    monkeypatch.setattr(lockfile, "fetch", lambda url, *a: fetched.append(url) or real(url, *a))
    again = lockfile.build_lock(manifest, digest, urls, key.keyring, previous=lock)
    assert again == lock
    assert not [u for u in fetched if u.endswith(".deb")]

    # A new libc6 in the security archive: only its two .debs are read.
    urls2, _ = _archive(tmp_path, key, sec_root=str(tmp_path / "security2"), libc="2.36-9+deb12u2",
                        root=str(tmp_path / "archive"))
    newer = lockfile.build_lock(manifest, digest, urls2, key.keyring, previous=lock)
    assert sorted(u.rsplit("/", 1)[-1] for u in fetched if u.endswith(".deb")) == [
        "libc6_2.36-9+deb12u2_amd64.deb", "libc6_2.36-9+deb12u2_arm64.deb"]
    libc = newer["architectures"]["amd64"]["packages"][1]
    assert libc["version"] == "2.36-9+deb12u2"
    assert libc["data_sha256"] == _plain_sha256(os.path.join(str(tmp_path / "security2"), libc["path"]))
    assert libc["control_sha256"] == _plain_sha256(os.path.join(str(tmp_path / "security2"), libc["path"]), "control")

    # The archive serves other bytes than its index says: an error naming the package.
    rel = shas[("amd64", "app")][0]
    with open(os.path.join(str(tmp_path / "archive"), rel), "ab") as f:
        f.write(b"!")
    with pytest.raises(errors.DebError, match=r"app 1.0-1 \(%s\): the archive serves a .deb with "
                       r"sha256 [0-9a-f]{64}, its index says %s" % (re.escape(rel), shas[("amd64", "app")][1])):
        lockfile.build_lock(manifest, digest, urls, key.keyring)


def test_cli_data_writes_each_plain_member(tmp_path, capsys):
    """`data` (deb_repository, once per machine): each .deb's control.tar and data.tar,
    decompressed; a .deb with another sha256 than the lock's is one line, and nothing is
    written for it."""
    jobs = []
    for name in ("one", "two", "three"):
        deb = str(tmp_path / (name + ".deb"))
        sha, _ = fx.make_deb(deb, name, "1", "amd64", [("./usr/share/%s" % name, "file", name.encode() * 999, 0o644)])
        jobs.append({"deb": deb, "sha256": sha, "control": deb + ".control.tar", "data": deb + ".data.tar",
                     "what": "package '%s' 1" % name})
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    assert main(["data", "--jobs", str(tmp_path / "jobs.json")]) == 0
    for job in jobs:
        for member in ("control", "data"):
            with open(job[member], "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == _plain_sha256(job["deb"], member)
            os.remove(job[member])
    jobs[1]["sha256"] = "0" * 64
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    assert main(["data", "--jobs", str(tmp_path / "jobs.json"), "--target", "@debs__amd64"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: @debs__amd64: package 'two' 1: %s has sha256 " % jobs[1]["deb"]), err
    assert err.strip().endswith("the lock says " + "0" * 64)
    assert not os.path.exists(jobs[1]["control"]) and not os.path.exists(jobs[1]["data"])


def test_cli_probe(tmp_path, capsys):
    f = tmp_path / "x.deb"
    f.write_bytes(b"deb bytes")
    g = tmp_path / "y.deb"
    g.write_bytes(b"other bytes")
    sha = hashlib.sha256(b"deb bytes").hexdigest()
    missing = "file://%s/nope.deb" % tmp_path
    urls = [missing, "file://%s" % g, "file://%s" % f, "file://%s/never-read.deb" % tmp_path]
    assert main(["probe", "--sha256", sha] + ["--url=" + u for u in urls]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["match"] == urls[2]
    assert [t["url"] for t in got["tried"]] == urls[:3]  # stops at the match
    assert got["tried"][0]["missing"] is True and "no such file" in got["tried"][0]["error"]
    assert got["tried"][1] == {"url": urls[1], "sha256": hashlib.sha256(b"other bytes").hexdigest(),
                               "size": 11}
    assert got["tried"][2] == {"url": urls[2], "sha256": sha, "size": 9}
    assert main(["probe", "--url", missing]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "match": None, "tried": [{"url": missing, "missing": True,
                                  "error": "%s: no such file" % missing}]}


def test_cli_sources_optional(tmp_path, capsys):
    """With snapshot archives, a suite the machine's apt sources don't list is no error."""
    apt = tmp_path / "apt"
    apt.mkdir()
    assert main(["sources", "--apt_dir", str(apt), "--suite", "bookworm", "--optional"]) == 0
    assert json.loads(capsys.readouterr().out) == {"bookworm": []}
    assert main(["sources", "--apt_dir", str(apt), "--suite", "bookworm"]) == 1
    assert "no apt source lists suite 'bookworm'" in capsys.readouterr().err


# --- snapshot archives -------------------------------------------------------------------------

T1 = "20000105T000000Z"
T2 = "20000110T120000Z"


def _snapshot(tmp_path, key, ts, **kw):
    """The main and security archives as snapshot archives: <snap>/debian/<ts>/ and
    <snap>/debian-security/<ts>/. Returns (the two roots, shas)."""
    snap = tmp_path / "snap"
    _, shas = _archive(tmp_path, key, root=str(snap / "debian" / ts),
                       sec_root=str(snap / "debian-security" / ts), **kw)
    return ["file://%s/debian" % snap, "file://%s/debian-security/" % snap], shas


def test_snapshot_timestamps_and_roots():
    assert snapshots.check_timestamp(T1) == T1
    assert snapshots.epoch("20000101T000000Z") == 946684800
    assert snapshots.now_timestamp(946684800.7) == "20000101T000000Z"
    for bad in ("2000-01-05", "20000105T000000", "20001305T000000Z", "", None):
        with pytest.raises(errors.DebError, match="expected YYYYMMDDTHHMMSSZ"):
            snapshots.check_timestamp(bad)
    assert snapshots.snapshot_urls(["http://s.example/a/", "file:///b"], T1) == [
        "http://s.example/a/" + T1, "file:///b/" + T1]
    with pytest.raises(errors.DebError, match="without the timestamp"):
        snapshots.check_roots(["http://s.example/archive/debian/" + T1])
    with pytest.raises(errors.DebError, match="expected an http, https or file URL"):
        snapshots.check_roots(["s.example/archive/debian"])


def test_lock_from_snapshot_archives_records_the_timestamp(tmp_path, key, capsys):
    roots, shas = _snapshot(tmp_path, key, T1)
    out = str(tmp_path / "packages.lock.json")
    argv = ["lock", "--manifest", _manifest(tmp_path), "--lock", out, "--keyring", key.keyring,
            "--apt_dir", str(tmp_path / "no-apt")] + ["--snapshot_archive=" + r for r in roots]
    assert main(argv + ["--snapshot", T1]) == 0
    assert "snapshot %s" % T1 in capsys.readouterr().out
    lock = json.loads(open(out).read())
    assert lock["snapshot"] == T1
    pkgs = {p["name"]: p for p in lock["architectures"]["amd64"]["packages"]}
    assert (pkgs["libc6"]["suite"], pkgs["libc6"]["sha256"]) == (
        "bookworm-security", shas[("amd64", "libc6")][1])
    # Every pinned file is at <root>/<snapshot>/<path> of one of the roots.
    for p in pkgs.values():
        found = [r for r in roots if os.path.isfile(os.path.join(
            r[len("file://"):], T1, p["path"]))]
        assert len(found) == 1, p
    assert "file:" not in open(out).read()  # no URL in the lock, only the timestamp


def test_relock_keeps_the_snapshot_timestamp_unless_something_changed(tmp_path, key, capsys,
                                                                       monkeypatch):
    roots, _ = _snapshot(tmp_path, key, T1)
    out = str(tmp_path / "packages.lock.json")
    argv = ["lock", "--manifest", _manifest(tmp_path), "--lock", out, "--keyring", key.keyring,
            "--apt_dir", str(tmp_path / "no-apt")] + ["--snapshot_archive=" + r for r in roots]
    monkeypatch.setattr(snapshots, "now_timestamp", lambda now=None: T1)
    assert main(argv) == 0  # default timestamp: now
    first = open(out, "rb").read()
    assert json.loads(first)["snapshot"] == T1
    # Later, the same packages: the previous timestamp is kept, the lock does not change.
    for root in roots:
        os.symlink(os.path.join(root[len("file://"):], T1), os.path.join(root[len("file://"):], T2))
    monkeypatch.setattr(snapshots, "now_timestamp", lambda now=None: T2)
    capsys.readouterr()
    assert main(argv) == 0
    assert open(out, "rb").read() == first
    assert "0 change(s)" in capsys.readouterr().out
    # A security update in the newer snapshot: the new timestamp, and it is reported.
    for root in roots:
        os.unlink(os.path.join(root[len("file://"):], T2))
    shutil.rmtree(str(tmp_path / "archive"), ignore_errors=True)
    _snapshot(tmp_path, key, T2, libc="2.36-9+deb12u2")
    assert main(argv) == 0
    lock = json.loads(open(out).read())
    assert lock["snapshot"] == T2
    report = capsys.readouterr().out
    assert "snapshot: %s -> %s" % (T1, T2) in report
    assert "amd64: libc6 2.36-9+deb12u1 -> 2.36-9+deb12u2" in report


def test_snapshot_valid_until_is_checked_at_the_snapshot_time(tmp_path, key):
    """A snapshot's Release expired long ago, but was valid at the snapshot's time."""
    roots, _ = _snapshot(tmp_path, key, T1, valid_until="Sat, 08 Jan 2000 00:00:00 UTC")
    manifest, digest = lockfile.read_manifest(_manifest(tmp_path))
    urls = {s: snapshots.snapshot_urls(roots, T1) for s in manifest["suites"]}
    lock = lockfile.build_lock(manifest, digest, urls, key.keyring, snapshot=T1)
    assert lock["snapshot"] == T1
    late = "20000109T000000Z"
    os.symlink(os.path.join(roots[0][len("file://"):], T1), os.path.join(roots[0][len("file://"):], late))
    urls = {s: snapshots.snapshot_urls(roots, late) for s in manifest["suites"]}
    with pytest.raises(errors.DebError, match="expired"):
        lockfile.build_lock(manifest, digest, urls, key.keyring, snapshot=late)


def test_snapshot_errors_are_one_line(tmp_path, key, capsys):
    roots, _ = _snapshot(tmp_path, key, T1)
    out = str(tmp_path / "packages.lock.json")
    base = ["lock", "--manifest", _manifest(tmp_path), "--lock", out, "--keyring", key.keyring,
            "--target", "//x:lock.update"]
    cases = [
        (["--snapshot_archive=" + roots[0], "--snapshot", T1],
         r"suite 'bookworm-security' not found: .*no snapshot archive has it at %s: add the archive "
         r"holding 'bookworm-security' to `snapshots`" % T1),
        (["--snapshot_archive=" + roots[0], "--snapshot_archive=" + roots[1], "--snapshot", "2000-01-05"],
         r"snapshot timestamp '2000-01-05': expected YYYYMMDDTHHMMSSZ"),
        (["--snapshot", T1], r"--snapshot %s: no snapshot archive" % T1),
        (["--snapshot_archive=%s/%s" % (roots[0], T1)], r"give the root without the timestamp"),
    ]
    for extra, pattern in cases:
        assert main(base + extra) == 1
        err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress lines
        assert err.startswith("ERROR: //x:lock.update: "), err
        assert re.search(pattern, err), (pattern, err)
        assert not os.path.exists(out)


def test_lock_changes_and_keep_previous_snapshot():
    a = {"lock_version": 1, "snapshot": T1, "architectures": {}}
    assert lockfile.keep_previous_snapshot(a, dict(a, snapshot=T2)) == a
    b = dict(a, snapshot=T2, suites=["x"])
    assert lockfile.keep_previous_snapshot(a, b) == b
    assert lockfile.keep_previous_snapshot({}, b) == b
    assert lockfile.lock_changes(a, b) == ["snapshot: %s -> %s" % (T1, T2)]
    assert lockfile.lock_changes({"architectures": {}}, b) == ["snapshot: none -> %s" % T2]
