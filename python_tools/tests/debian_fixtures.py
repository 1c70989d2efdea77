"""Real-format Debian test data made at test time: .deb files, signed archives, gpg keys.

- make_deb(path, name, version, arch, members, ...) writes a .deb (ar: debian-binary,
  control.tar.xz, data.tar.{xz,zst,gz}) the way dpkg-deb lays it out.
- GpgKey: a fresh OpenPGP signing key in a temporary GNUPGHOME (short path, for gpg-agent's
  socket), its public keyring file for gpgv, clearsign/detach-sign; add_key() makes more keys
  in the same home (an archive signed by several keys, as Debian's is), `faked_time` makes keys
  and signatures in the past (a key that has expired since); close() stops the agent this key
  started (gpgconf --kill, scoped to that GNUPGHOME) and removes the directory.
- write_archive(root, suite, packages_by_arch, key, ...) writes dists/<suite>/ (Packages.xz
  per architecture, Release with SHA256, InRelease or Release + Release.gpg) and returns the
  file:// URL of the archive.
"""

import gzip
import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile


def _tar_bytes(members, compression):
    """members: [(name, kind, payload, mode)] with kind file|dir|symlink|hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, kind, payload, mode in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1700000000
            ti.uname = ti.gname = "root"
            ti.mode = mode
            if kind == "dir":
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            elif kind == "symlink":
                ti.type = tarfile.SYMTYPE
                ti.linkname = payload
                tf.addfile(ti)
            elif kind == "hardlink":
                ti.type = tarfile.LNKTYPE
                ti.linkname = payload
                tf.addfile(ti)
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
                tf.addfile(ti)
            else:
                data = payload if isinstance(payload, bytes) else payload.encode()
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    if compression == "xz":
        return raw, ".xz", lzma.compress(raw)
    if compression == "gz":
        return raw, ".gz", gzip.compress(raw, mtime=0)
    if compression == "zst":
        import zstandard
        return raw, ".zst", zstandard.ZstdCompressor().compress(raw)
    return raw, "", raw


def _ar(members):
    out = [b"!<arch>\n"]
    for name, data in members:
        header = "%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (name, 0, 0, 0, "100644", len(data))
        out.append(header.encode("ascii"))
        out.append(data)
        if len(data) % 2:
            out.append(b"\n")
    return b"".join(out)


def control_text(name, version, arch, extra=None):
    fields = [("Package", name), ("Version", version), ("Architecture", arch),
              ("Maintainer", "Test <test@example.invalid>"), ("Installed-Size", "1")]
    for k, v in (extra or {}).items():
        fields.append((k, v))
    fields.append(("Description", "test package %s\n a package made by the tests" % name))
    return "".join("%s: %s\n" % kv for kv in fields)


def make_deb(path, name, version, arch="amd64", members=(), data_compression="xz", extra=None):
    """Writes a .deb; members are [(name like "./usr/bin/x", kind, payload, mode)]."""
    _, cext, control = _tar_bytes(
        [("./", "dir", None, 0o755), ("./control", "file", control_text(name, version, arch, extra), 0o644)],
        "xz")
    dirs = set()
    full = []
    for m in members:
        parts = m[0].lstrip("./").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "./" + "/".join(parts[:i]) + "/"
            if d not in dirs and not any(x[0].rstrip("/") == d.rstrip("/") for x in members):
                dirs.add(d)
                full.append((d, "dir", None, 0o755))
        full.append(m)  # archive order as given: a hardlink after its target
    _, dext, data = _tar_bytes([("./", "dir", None, 0o755)] + full, data_compression)
    blob = _ar([("debian-binary", b"2.0\n"), ("control.tar" + cext, control),
                ("data.tar" + dext, data)])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)
    return hashlib.sha256(blob).hexdigest(), len(blob)


class GpgKey:
    """A throwaway signing key. Use as a context manager.

    `faked_time` ("20200101T000000"): the keys are made, and everything is signed, at that time
    (gpg --faked-system-time); `expires` ("never", "1y") is the key's lifetime from then.
    """

    def __init__(self, uid="rules_shiko test archive <archive@example.invalid>", faked_time=None,
                 expires="never"):
        self.home = tempfile.mkdtemp(prefix="shiko-gpg-", dir="/tmp")
        os.chmod(self.home, 0o700)
        self.env = dict(os.environ, GNUPGHOME=self.home, LC_ALL="C")
        self.faked_time = faked_time
        self.uid = uid
        self.add_key(uid, expires)
        self.keyring = self.export(os.path.join(self.home, "pub.gpg"), uid)

    def _gpg(self, *args, input=None):
        time_args = ["--faked-system-time", self.faked_time] if self.faked_time else []
        res = subprocess.run(["gpg", "--batch", "--yes", "--no-tty", "--pinentry-mode", "loopback",
                              "--passphrase", ""] + time_args + list(args),
                             env=self.env, input=input, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, timeout=120)
        if res.returncode != 0:
            raise RuntimeError("gpg %s failed: %s" % (" ".join(args), res.stderr.decode()))
        return res

    def add_key(self, uid, expires="never"):
        """Makes another signing key in this home (sign with it: signers=[uid]); returns uid."""
        self._gpg("--quick-generate-key", uid, "ed25519", "sign", expires)
        return uid

    def export(self, path, *uids):
        """Writes the public keys of `uids` (default: all of this home's) to a keyring file."""
        with open(path, "wb") as f:
            f.write(self._gpg("--export", *uids).stdout)
        return path

    def _signers(self, signers):
        out = []
        for uid in signers or [self.uid]:
            out += ["--local-user", uid]
        return out

    def clearsign(self, data, signers=None):
        """An InRelease: `data` clear-signed by each uid of `signers` (default: the first key)."""
        return self._gpg("--clearsign", "--digest-algo", "SHA256", *self._signers(signers),
                         input=data).stdout

    def detach_sign(self, data, signers=None):
        return self._gpg("--detach-sign", "--digest-algo", "SHA256", *self._signers(signers),
                         input=data).stdout

    def close(self):
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def packages_stanza(name, version, arch, filename, sha256, size, **fields):
    lines = ["Package: %s" % name, "Version: %s" % version, "Architecture: %s" % arch]
    for k, v in fields.items():
        lines.append("%s: %s" % (k.replace("_", "-"), v))
    lines += ["Filename: %s" % filename, "Size: %d" % size, "SHA256: %s" % sha256]
    return "\n".join(lines) + "\n"


def write_archive(root, suite, stanzas_by_arch, key, inrelease=True, codename=None,
                  valid_until=None, components=("main",), signers=None, date=None):
    """Writes dists/<suite>/ under root; stanzas_by_arch = {arch: [stanza text]}.

    `signers`: uids of `key`'s home signing the Release (default: the key itself).
    """
    dist = os.path.join(root, "dists", suite)
    files = {}
    for comp in components:
        for arch, stanzas in stanzas_by_arch.items():
            text = "\n".join(stanzas).encode()
            rel = "%s/binary-%s/Packages" % (comp, arch)
            os.makedirs(os.path.join(dist, os.path.dirname(rel)), exist_ok=True)
            xz = lzma.compress(text)
            for r, data in ((rel, text), (rel + ".xz", xz)):
                with open(os.path.join(dist, r), "wb") as f:
                    f.write(data)
                files[r] = data
    lines = ["Origin: Test", "Label: Test", "Suite: %s" % suite,
             "Codename: %s" % (codename or suite),
             "Date: %s" % (date or "Sat, 01 Jan 2000 00:00:00 UTC")]
    if valid_until:
        lines.append("Valid-Until: %s" % valid_until)
    lines += ["Architectures: %s" % " ".join(sorted(stanzas_by_arch)),
              "Components: %s" % " ".join(components), "SHA256:"]
    for r in sorted(files):
        lines.append(" %s %8d %s" % (hashlib.sha256(files[r]).hexdigest(), len(files[r]), r))
    release = ("\n".join(lines) + "\n").encode()
    with open(os.path.join(dist, "Release"), "wb") as f:
        f.write(release)
    if inrelease:
        with open(os.path.join(dist, "InRelease"), "wb") as f:
            f.write(key.clearsign(release, signers))
    else:
        with open(os.path.join(dist, "Release.gpg"), "wb") as f:
            f.write(key.detach_sign(release, signers))
    return "file://" + os.path.abspath(root)
