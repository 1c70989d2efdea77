"""Turns Debian packages (.deb files pinned by a lock) into one tar for `image_layer(tars = ...)`.

Usage:
  deb.py --manifest=M.json --output=OUT.tar

No maintainer script is run; what an image needs from them is done here (see "Build-time
maintainer work"). On bad input it prints one line
`ERROR: <target>: attribute '<attr>': <value repr>: <problem>` on stderr, removes --output and
exits 1.

Manifest (JSON, written by Starlark: rules/private/deb.bzl)
============================================================
  {
    "target": "//pkg:name",
    "architecture": "amd64",
    "index": "external/<repo>/amd64/packages.json",   # the lock's entries for this architecture
    "debs": [{"name": "libc6", "src": "external/<repo>/amd64/libc6.deb"}, ...],
    "keep_docs": false,
    "basics": null | {                               # the distroless basics instead of packages
        "os_release": null | "NAME=...\\n",           # /etc/os-release content (null: see below)
        "has_base_files": true | false               # base-files is among the packages
    }
  }
`index` is {"architecture": A, "suites": [...], "packages": [lock entries]} (see deb_lock.py).

What goes into the tar
======================
- Each .deb is checked first: its sha256 must be the lock's (else an error naming the package:
  the file is not the locked one), its `control` must name the same package, version and an
  architecture that is `all` or the target's.
- The members of its `data.tar` (xz, zstd, gzip, bzip2 or plain), without the leading "./":
  modes, owners (numeric), symlinks (targets verbatim) and hardlinks are kept; mtimes are not
  (the layer tool sets them). Devices, FIFOs, absolute names and ".." are errors.
- Unless keep_docs: no /usr/share/doc (except each package's directory or symlink there and its
  `copyright` file: licences stay with the binaries), /usr/share/man, /usr/share/info,
  /usr/share/locale, /usr/share/lintian, /usr/share/linda, /usr/share/doc-base. A hardlink whose
  target was dropped becomes a regular file.
- `/var/lib/dpkg/status.d/<package>`: the package's control paragraph with
  `Status: install ok installed` after its `Package:` line, as distroless images carry it, so
  scanners (syft, trivy, grype) see the package and its version.
- Two packages of one tar shipping the same path: directories merge (first wins), identical
  symlinks or files are kept once, anything else is an error naming both packages.

Build-time maintainer work
==========================
- ca-certificates: /etc/ssl/certs/ca-certificates.crt is the concatenation (each ending with a
  newline) of every /usr/share/ca-certificates/**/*.crt, in bytewise path order, as
  update-ca-certificates writes it from the ca-certificates.conf its postinst generates; that
  /etc/ca-certificates.conf and the /etc/ssl/certs/<name>.pem symlinks are written too (not the
  OpenSSL subject-hash links: OpenSSL and Python load the bundle file).
- tzdata: /etc/localtime -> /usr/share/zoneinfo/Etc/UTC and /etc/timezone (`Etc/UTC`).
- base-files: /etc/nsswitch.conf from /usr/share/base-files/nsswitch.conf.

Basics (`basics` set, `debs` empty)
===================================
/etc/passwd and /etc/group with root (0) and nonroot (65532) (and nobody, 65534), /root (0700),
/home/nonroot (0700, owned 65532:65532), /tmp (1777). /etc/os-release: `os_release` when given;
else, without base-files (which ships one), a generated one (ID=debian and the codename of the
lock's first suite). /etc/nsswitch.conf (files, then dns for hosts) without base-files.

Output: a plain tar, members sorted by name, mtime 0, numeric owners only.
"""

import io
import lzma
import posixpath
import stat
import tarfile

from absl import app
from absl import flags

from python_tools import common

FLAGS = flags.FLAGS

flags.DEFINE_string("manifest", None, "JSON manifest written by Starlark (see the module docstring).")
flags.DEFINE_string("output", None, "Where to write the tar.")

DROPPED_TREES = (
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/linda",
    "usr/share/doc-base",
)

PASSWD = (
    "root:x:0:0:root:/root:/sbin/nologin\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
)
GROUP = (
    "root:x:0:\n"
    "nobody:x:65534:\n"
    "tty:x:5:\n"
    "staff:x:50:\n"
    "nonroot:x:65532:\n"
)
NSSWITCH = (
    "passwd:         files\n"
    "group:          files\n"
    "shadow:         files\n"
    "gshadow:        files\n"
    "\n"
    "hosts:          files dns\n"
    "networks:       files\n"
    "\n"
    "protocols:      db files\n"
    "services:       db files\n"
    "ethers:         db files\n"
    "rpc:            db files\n"
)
CA_CONF_HEADER = (
    "# This file lists certificates that you wish to use or to ignore to be\n"
    "# installed in /etc/ssl/certs.\n"
    "# update-ca-certificates(8) will update /etc/ssl/certs by reading this file.\n"
    "#\n"
    "# This is autogenerated by dpkg-reconfigure ca-certificates.\n"
    "# Certificates should be installed under /usr/share/ca-certificates\n"
    "# and files with extension '.crt' is recognized as a certificate.\n"
    "# Line begins with # is comment.\n"
    "# Line begins with ! is certificate filename to be deselected.\n"
    "#\n"
)


class Entry:
    """One member of the output: kind file|dir|symlink|hardlink."""

    __slots__ = ("kind", "mode", "uid", "gid", "data", "target", "pkg")

    def __init__(self, kind, mode, uid=0, gid=0, data=b"", target="", pkg=""):
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.data = data
        self.target = target
        self.pkg = pkg


def _err(target, attr, value, problem):
    return common.UserError(problem, target, attr, value)


# --- reading a .deb ----------------------------------------------------------------------------

def read_ar(data, what):
    """{member name: bytes} of a Debian `ar` archive (common and GNU name formats)."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("%s is not a .deb (no ar archive header)" % what)
    pos = 8
    out = {}
    order = []
    while pos < len(data):
        if pos + 60 > len(data):
            raise ValueError("%s: truncated ar header at byte %d" % (what, pos))
        header = data[pos:pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError("%s: bad ar member header at byte %d" % (what, pos))
        name = header[0:16].decode("ascii", "replace").strip()
        if name.endswith("/"):
            name = name[:-1]
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise ValueError("%s: bad ar member size at byte %d" % (what, pos))
        start = pos + 60
        if start + size > len(data):
            raise ValueError("%s: truncated ar member %r" % (what, name))
        out[name] = data[start:start + size]
        order.append(name)
        pos = start + size + (size & 1)
    return out, order


def _decompress(name, blob, what):
    """The plain tar bytes of a control.tar.* / data.tar.* member."""
    if name.endswith(".xz") or name.endswith(".lzma"):
        return lzma.decompress(blob)
    if name.endswith(".gz"):
        import gzip
        return gzip.decompress(blob)
    if name.endswith(".zst"):
        import zstandard
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(blob)) as r:
            return r.read()
    if name.endswith(".bz2"):
        import bz2
        return bz2.decompress(blob)
    if name.endswith(".tar"):
        return blob
    raise ValueError("%s: unsupported member %r" % (what, name))


def _member(members, prefix, what):
    names = [n for n in members if n == prefix or n.startswith(prefix + ".")]
    if len(names) != 1:
        raise ValueError("%s: expected one %s.* member, found %s" % (what, prefix, names or "none"))
    return names[0]


def _norm(name):
    """Member name without "./" and trailing "/"; "" for the root; None if unsafe."""
    n = name
    while n.startswith("./"):
        n = n[2:]
    n = n.rstrip("/")
    if n in ("", "."):
        return ""
    if n.startswith("/") or ".." in n.split("/"):
        return None
    return posixpath.normpath(n)


def read_control(members, what):
    cname = _member(members, "control.tar", what)
    raw = _decompress(cname, members[cname], what)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for m in tf.getmembers():
            if _norm(m.name) == "control" and m.isfile():
                return tf.extractfile(m).read().decode("utf-8", "replace")
    raise ValueError("%s: control.tar has no control file" % what)


def parse_control(text):
    fields = {}
    key = None
    for line in text.split("\n"):
        if not line.strip():
            if fields:
                break
            continue
        if line[0] in " \t":
            if key:
                fields[key] += "\n" + line
            continue
        k, _, v = line.partition(":")
        key = k
        fields[k] = v.strip()
    return fields


def status_record(control_text):
    """The control paragraph with `Status: install ok installed` after its Package line."""
    lines = control_text.rstrip("\n").split("\n")
    out = []
    for line in lines:
        if not line.strip():
            break
        out.append(line)
        if line.startswith("Package:"):
            out.append("Status: install ok installed")
    return ("\n".join(out) + "\n").encode("utf-8")


def _dropped(path):
    for t in DROPPED_TREES:
        if path == t or path.startswith(t + "/"):
            return True
    if path.startswith("usr/share/doc/"):
        parts = path.split("/")
        if len(parts) == 4:
            return False  # usr/share/doc/<pkg> (directory or symlink)
        if len(parts) == 5 and parts[4] == "copyright":
            return False
        return True
    return False


def data_members(members, what, keep_docs):
    """[(path, Entry)] of a .deb's data.tar, in archive order."""
    dname = _member(members, "data.tar", what)
    raw = _decompress(dname, members[dname], what)
    out = []
    contents = {}  # path -> bytes of regular files (for hardlinks to dropped files)
    kept = set()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        for m in tf.getmembers():
            path = _norm(m.name)
            if path is None:
                raise ValueError("%s: unsafe member name %r in %s" % (what, m.name, dname))
            if path == "":
                continue
            mode = stat.S_IMODE(m.mode)
            if m.isdir():
                e = Entry("dir", mode, m.uid, m.gid)
            elif m.isreg():
                data = tf.extractfile(m).read()
                contents[path] = (data, mode, m.uid, m.gid)
                e = Entry("file", mode, m.uid, m.gid, data=data)
            elif m.issym():
                e = Entry("symlink", 0o777, m.uid, m.gid, target=m.linkname)
            elif m.islnk():
                target = _norm(m.linkname)
                if target is None or target not in contents:
                    raise ValueError("%s: hardlink %r -> %r whose target is not a file of the "
                                     "package" % (what, m.name, m.linkname))
                if target in kept or keep_docs or not _dropped(target):
                    e = Entry("hardlink", mode, m.uid, m.gid, target=target)
                else:
                    data, tmode, tuid, tgid = contents[target]
                    e = Entry("file", tmode, tuid, tgid, data=data)
                contents[path] = contents[target]
            else:
                raise ValueError("%s: member %r is a device, FIFO or another special file" %
                                 (what, m.name))
            if not keep_docs and _dropped(path):
                continue
            kept.add(path)
            out.append((path, e))
    return out


# --- build-time maintainer work ----------------------------------------------------------------

def _pem_name(crt_basename):
    base = crt_basename[:-len(".crt")]
    return base.replace(" ", "_").replace("(", "=").replace(")", "=").replace(",", "_") + ".pem"


def ca_certificates_files(entries):
    """What update-ca-certificates would write, from the certificates in `entries`."""
    prefix = "usr/share/ca-certificates/"
    certs = sorted(p for p, e in entries.items()
                   if p.startswith(prefix) and p.endswith(".crt") and e.kind in ("file", "hardlink"))
    bundle = []
    out = {}
    for p in certs:
        e = entries[p]
        data = entries[e.target].data if e.kind == "hardlink" else e.data
        if data and not data.endswith(b"\n"):
            data += b"\n"
        bundle.append(data)
        out["etc/ssl/certs/" + _pem_name(posixpath.basename(p))] = Entry(
            "symlink", 0o777, target="/" + p, pkg="ca-certificates")
    conf = CA_CONF_HEADER + "".join(p[len(prefix):] + "\n" for p in certs)
    out["etc/ca-certificates.conf"] = Entry("file", 0o644, data=conf.encode("utf-8"),
                                            pkg="ca-certificates")
    out["etc/ssl/certs/ca-certificates.crt"] = Entry("file", 0o644, data=b"".join(bundle),
                                                     pkg="ca-certificates")
    return out, len(certs)


# --- writing -----------------------------------------------------------------------------------

def _add(entries, path, e, target, what):
    old = entries.get(path)
    if old is None:
        entries[path] = e
        return
    if old.kind == "dir" and e.kind == "dir":
        return
    if old.kind == e.kind == "symlink" and old.target == e.target:
        return
    if old.kind == e.kind == "file" and old.data == e.data and old.mode == e.mode:
        return
    raise _err(target, "packages", "/" + path,
               "shipped by both %s and %s (%s vs %s): a file belongs to one package" % (
                   old.pkg or "the rules", e.pkg or "the rules", old.kind, e.kind))


def _ensure_parents(entries):
    for path in list(entries):
        parent = posixpath.dirname(path)
        while parent and parent not in entries:
            entries[parent] = Entry("dir", 0o755)
            parent = posixpath.dirname(parent)


def write_tar(entries, output):
    with open(output, "wb") as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for path in sorted(entries):
                e = entries[path]
                ti = tarfile.TarInfo(path)
                ti.mtime = 0
                ti.uid, ti.gid = e.uid, e.gid
                ti.uname = ti.gname = ""
                ti.mode = e.mode
                if e.kind == "dir":
                    ti.type = tarfile.DIRTYPE
                    tf.addfile(ti)
                elif e.kind == "symlink":
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = e.target
                    tf.addfile(ti)
                elif e.kind == "hardlink":
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = e.target
                    tf.addfile(ti)
                else:
                    ti.type = tarfile.REGTYPE
                    ti.size = len(e.data)
                    tf.addfile(ti, io.BytesIO(e.data))


def packages_entries(manifest):
    """{path: Entry} of the manifest's packages, with status records and maintainer work."""
    target = manifest["target"]
    arch = manifest["architecture"]
    keep_docs = bool(manifest.get("keep_docs"))
    index = common.read_json(manifest["index"])
    if index.get("architecture") != arch:
        raise _err(target, "packages", manifest["index"],
                   "holds packages for %r, not %r" % (index.get("architecture"), arch))
    locked = {p["name"]: p for p in index.get("packages", [])}
    entries = {}
    names = []
    for deb in manifest["debs"]:
        name = deb["name"]
        names.append(name)
        lock = locked.get(name)
        if lock is None:
            raise _err(target, "packages", name, "is not in the lock for %s" % arch)
        got, size = common.sha256_file(deb["src"])
        if got != lock["sha256"]:
            raise _err(target, "packages", name,
                       "%s has sha256 %s (%d bytes), the lock says %s (%s): the file is not the "
                       "locked package (tampered or corrupt); fetch it again" % (
                           posixpath.basename(deb["src"]), got, size, lock["sha256"], lock["path"]))
        with open(deb["src"], "rb") as f:
            data = f.read()
        what = "%s %s" % (name, lock["version"])
        try:
            members, _ = read_ar(data, what)
            control = read_control(members, what)
            fields = parse_control(control)
            if fields.get("Package") != name or fields.get("Version") != lock["version"]:
                raise ValueError("%s: the .deb is %s %s" % (what, fields.get("Package"),
                                                            fields.get("Version")))
            if fields.get("Architecture") not in (arch, "all"):
                raise ValueError("%s: built for %s, the image is %s" % (
                    what, fields.get("Architecture"), arch))
            members_list = data_members(members, what, keep_docs)
        except (ValueError, tarfile.TarError, lzma.LZMAError, EOFError, OSError) as e:
            raise _err(target, "packages", name, str(e))
        for path, e in members_list:
            e.pkg = name
            _add(entries, path, e, target, what)
        _add(entries, "var/lib/dpkg/status.d/" + name,
             Entry("file", 0o644, data=status_record(control), pkg=name), target, what)

    if "ca-certificates" in names:
        files, count = ca_certificates_files(entries)
        if not count:
            raise _err(target, "packages", "ca-certificates",
                       "ships no certificates under /usr/share/ca-certificates")
        for path, e in sorted(files.items()):
            _add(entries, path, e, target, "ca-certificates")
    if "tzdata" in names and "usr/share/zoneinfo/Etc/UTC" in entries:
        _add(entries, "etc/localtime", Entry("symlink", 0o777, target="/usr/share/zoneinfo/Etc/UTC",
                                             pkg="tzdata"), target, "tzdata")
        _add(entries, "etc/timezone", Entry("file", 0o644, data=b"Etc/UTC\n", pkg="tzdata"),
             target, "tzdata")
    ns = entries.get("usr/share/base-files/nsswitch.conf")
    if "base-files" in names and ns is not None and ns.kind == "file" and "etc/nsswitch.conf" not in entries:
        _add(entries, "etc/nsswitch.conf", Entry("file", 0o644, data=ns.data, pkg="base-files"),
             target, "base-files")
    return entries


def _generated_os_release(index):
    suites = index.get("suites") or []
    codename = suites[0].split("-")[0] if suites else ""
    lines = [
        'PRETTY_NAME="Distroless (Debian%s packages)"' % (" " + codename if codename else ""),
        'NAME="Debian GNU/Linux"',
        "ID=debian",
    ]
    if codename:
        lines.append("VERSION_CODENAME=%s" % codename)
    return "\n".join(lines) + "\n"


def basics_entries(basics, index):
    entries = {
        "etc": Entry("dir", 0o755),
        "etc/passwd": Entry("file", 0o644, data=PASSWD.encode()),
        "etc/group": Entry("file", 0o644, data=GROUP.encode()),
        "home": Entry("dir", 0o755),
        "home/nonroot": Entry("dir", 0o700, 65532, 65532),
        "root": Entry("dir", 0o700),
        "tmp": Entry("dir", 0o1777),
    }
    os_release = basics.get("os_release")
    if os_release is None and not basics.get("has_base_files"):
        os_release = _generated_os_release(index)
    if os_release is not None:
        entries["etc/os-release"] = Entry("file", 0o644, data=os_release.encode("utf-8"))
    if not basics.get("has_base_files"):
        entries["etc/nsswitch.conf"] = Entry("file", 0o644, data=NSSWITCH.encode())
    return entries


def run(manifest, output):
    if manifest.get("basics") is not None:
        index = common.read_json(manifest["index"]) if manifest.get("index") else {}
        entries = basics_entries(manifest["basics"], index)
    else:
        entries = packages_entries(manifest)
    _ensure_parents(entries)
    write_tar(entries, output)


def main(argv):
    del argv
    manifest = common.read_json(FLAGS.manifest)
    common.run_tool(lambda: run(manifest, FLAGS.output), [FLAGS.output])


if __name__ == "__main__":
    flags.mark_flags_as_required(["manifest", "output"])
    app.run(main)
