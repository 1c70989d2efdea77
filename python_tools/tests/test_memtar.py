"""Unit tests of python_tools/shiko/tar/memtar.py: the fast reader answers exactly what tarfile
answers, or declines (None) and leaves the tar to tarfile.

Compared member by member (name, link target, type, mode, owner, size, where the data is, the
data): crafted GNU and ustar tars (long names and link targets, the ustar prefix, V7
directories, non-UTF-8 names, hardlinks), the tars it must decline (pax, sparse, devices,
FIFOs, base-256 numbers, bad checksums, cut short), and every control.tar and data.tar of the
example's locked Debian packages (@distroless_python3_debs//:amd64 in the runfiles; outside
Bazel, the checkout's bazel-<workspace>/external), all of which it must read itself.
"""

import glob
import io
import os
import tarfile

import pytest

from python_tools.shiko.tar import memtar

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tarfile_view(raw):
    tf = tarfile.open(fileobj=io.BytesIO(raw), mode="r:")
    out = []
    for m in tf.getmembers():
        data = tf.extractfile(m).read() if m.isreg() else None
        out.append((m.name, m.linkname, m.type, m.mode, m.uid, m.gid, m.size, m.offset_data,
                    m.isdir(), m.isreg(), m.issym(), m.islnk(), data))
    return out


def _fast_view(raw):
    infos = memtar.members(raw)
    if infos is None:
        return None
    return [(m.name, m.linkname, m.type, m.mode, m.uid, m.gid, m.size, m.offset_data,
             m.isdir(), m.isreg(), m.issym(), m.islnk(),
             raw[m.offset_data:m.offset_data + m.size] if m.isreg() else None)
            for m in infos]


def _tar(members, fmt=tarfile.GNU_FORMAT):
    """A tar of [(TarInfo, data or None)] written by tarfile."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, encoding="utf-8",
                      errors="surrogateescape") as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name, type=tarfile.REGTYPE, data=b"", linkname="", mode=0o644, uid=0, gid=0):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.linkname = linkname
    ti.size = len(data) if type == tarfile.REGTYPE else 0
    ti.mtime = 1234567890
    return ti, (data if type == tarfile.REGTYPE else None)


LONG = "./usr/lib/" + "/".join(["d%02d-%s" % (i, "x" * 20) for i in range(8)]) + "/file.txt"

ACCEPTED = {
    "plain": [_info("./"), _info("./usr/", tarfile.DIRTYPE, mode=0o755),
              _info("./usr/a", data=b"hello\n"), _info("./usr/empty"),
              _info("./usr/b", data=b"x" * 1000, mode=0o4755, uid=5, gid=6)],
    "links": [_info("./a", data=b"content"), _info("./h", tarfile.LNKTYPE, linkname="./a"),
              _info("./s", tarfile.SYMTYPE, linkname="a", mode=0o777)],
    "long names and targets": [_info(LONG, data=b"deep"),
                               _info(LONG + ".lnk", tarfile.LNKTYPE, linkname=LONG),
                               _info(LONG + "-dir/", tarfile.DIRTYPE),
                               _info("./sym", tarfile.SYMTYPE, linkname="/" + LONG * 2)],
    "utf-8 and undecodable names": [_info("./usr/share/zoneinfo/Am\u00e9rica", data=b"z"),
                                    _info("./bad-\udcff-name", data=b"b")],
    "large sizes and owners": [_info("./big", data=os.urandom(70000), uid=65534, gid=0o7777777)],
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_reads_what_tarfile_reads(case):
    raw = _tar(ACCEPTED[case])
    fast = _fast_view(raw)
    assert fast is not None, "the fast reader declined %s" % case
    assert fast == _tarfile_view(raw)


def test_ustar_prefix_and_v7_directories():
    raw = _tar([_info(LONG, data=b"p")], fmt=tarfile.USTAR_FORMAT)  # the name split at a "/"
    assert raw[345:350] != bytes(5)
    assert _fast_view(raw) == _tarfile_view(raw)
    # A V7 directory: AREGTYPE with a trailing "/" (and its checksum made again).
    hdr = bytearray(_tar([_info("./olddir/", data=b"")])[:512])
    hdr[156:157] = b"\0"
    hdr[148:156] = b" " * 8
    hdr[148:156] = b"%06o\0 " % (sum(hdr))
    raw = bytes(hdr) + bytes(1024)
    fast = _fast_view(raw)
    assert fast == _tarfile_view(raw) and fast[0][8], fast


def _declined(raw):
    assert memtar.members(raw) is None


def test_declines_pax_sparse_devices_fifos_and_base256():
    _declined(_tar([_info(LONG, data=b"p")], fmt=tarfile.PAX_FORMAT))
    for t in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.GNUTYPE_SPARSE):
        _declined(_tar([_info("./a", data=b"1"), _info("./dev", t)]))
    _declined(_tar([_info("./huge-owner", uid=1 << 30)]))  # GNU writes base-256


def test_declines_damage_and_the_empty():
    good = _tar(ACCEPTED["plain"])
    bad = bytearray(good)
    bad[600] ^= 0x01  # the second header's name: its checksum no longer fits
    _declined(bytes(bad))
    _declined(good[:700])  # a header cut short
    _declined(_tar([_info("./b", data=b"x" * 4000)])[:1024])  # data cut short
    _declined(b"")
    _declined(bytes(1024))  # only the end-of-archive blocks
    long_only = _tar([_info(LONG, data=b"d")])[:1024]  # the long name with nothing after it
    _declined(long_only)
    # Whatever tarfile then makes of them, the caller gets tarfile's own answer or error.


def test_stops_at_the_end_block_like_tarfile():
    raw = _tar(ACCEPTED["plain"]) + b"garbage after the end" * 50
    assert _fast_view(raw) == _tarfile_view(raw)
    raw = _tar(ACCEPTED["plain"]).rstrip(b"\0")  # no end-of-archive block at all
    raw += bytes(-len(raw) % 512)
    assert _fast_view(raw) == _tarfile_view(raw)


def _package_tars():
    roots = []
    if os.environ.get("TEST_SRCDIR"):
        roots.append(os.path.join(os.environ["TEST_SRCDIR"], "distroless_python3_debs__amd64"))
    roots += glob.glob(os.path.join(REPO, "bazel-*", "external", "distroless_python3_debs__amd64"))
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "amd64", "*.tar")))
        if found:
            return found
    pytest.fail("no control.tar/data.tar of @distroless_python3_debs__amd64 in %s: build "
                "//examples/distroless:python3 first (outside Bazel)" % roots)


def test_every_locked_package_is_read_fast_and_alike():
    tars = _package_tars()
    assert len(tars) >= 60, tars  # 36 packages, a control.tar and a data.tar each
    members = 0
    for path in tars:
        with open(path, "rb") as f:
            raw = f.read()
        fast = _fast_view(raw)
        assert fast is not None, "the fast reader declined %s" % path
        assert fast == _tarfile_view(raw), path
        members += len(fast)
    assert members > 3000
