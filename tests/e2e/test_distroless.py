"""//examples/distroless: a Python 3.11 base built from locked Debian packages.

The amd64 image runs in a real dockerd; syft (an independent SBOM scanner) must find the locked
Debian packages at their locked versions; the arm64 image is checked by the ELF headers of its
binaries and its config. The deb_repository rule is exercised against an archive served on
127.0.0.1 by this test: a tampered .deb and a vanished version must fail with clear errors.
"""

import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading

import pytest

from conftest import REPO_ROOT, BuiltImage, run
from conftest import syft as find_syft

PKG = "examples/distroless"
REPO_TAG = "rules_shiko/distroless_python3:latest"
LOCK = os.path.join(REPO_ROOT, PKG, "packages.lock.json")
MANIFEST = os.path.join(REPO_ROOT, PKG, "packages.json")
EM_X86_64 = 62
EM_AARCH64 = 183


def _lock():
    with open(LOCK) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def images(bazel):
    bazel("build", "//%s:python3" % PKG, "//%s:python3_arm64" % PKG, "--output_groups=+tarball")
    bazel_bin = bazel.info("bazel-bin")
    return {
        "amd64": BuiltImage(bazel_bin, PKG, "python3"),
        "arm64": BuiltImage(bazel_bin, PKG, "python3_arm64"),
    }


@pytest.fixture(scope="module")
def loaded(images, dockerd):
    out = dockerd.docker("load", "-i", images["amd64"].tarball).stdout
    assert "Loaded image: %s" % REPO_TAG in out, out
    return dockerd


def _py(dockerd, code, *docker_args):
    return dockerd.docker("run", "--rm", "--network", "none", *docker_args, REPO_TAG,
                          "python3", "-c", code)


def _layers(image):
    """[(layer digest, {path: TarInfo}, {path: bytes of regular files})] bottom first."""
    out = []
    for desc in image.manifest()["layers"]:
        data = image.blob(desc["digest"])
        members, contents = {}, {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tf:
            for m in tf.getmembers():
                name = m.name.rstrip("/")
                members[name] = m
                if m.isreg() and (name.startswith("usr/bin/") or name.startswith("var/lib/dpkg/")):
                    contents[name] = tf.extractfile(m).read()
        out.append((desc["digest"], members, contents))
    return out


def test_lock_is_up_to_date_with_the_manifest():
    with open(MANIFEST, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    assert _lock()["manifest_sha256"] == digest, (
        "packages.json changed since the lock was written: ./bazelw run //%s:lock.update" % PKG)


def test_python_runs_in_docker(images, loaded):
    res = _py(loaded, "import ssl, json, sqlite3, zlib; print('distroless ok')")
    assert res.stdout == "distroless ok\n"
    image_id = loaded.docker("image", "inspect", "--format", "{{.Id}}", REPO_TAG).stdout.strip()
    assert image_id == images["amd64"].config_digest


def test_no_shell_no_ls_no_package_manager(loaded):
    for cmd in (["/bin/sh", "-c", "true"], ["sh", "-c", "true"], ["ls", "/"], ["/bin/ls"],
                ["/usr/bin/ls"], ["apt-get", "--version"], ["dpkg", "--version"]):
        res = subprocess.run([loaded.docker_cli, "run", "--rm", "--network", "none", REPO_TAG] + cmd,
                             env=loaded.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, timeout=120)
        assert res.returncode != 0, "%s ran in the image: %s" % (cmd, res.stdout)
        assert "no such file" in res.stderr.lower() or "not found" in res.stderr.lower(), res.stderr
    res = _py(loaded, "import os, shutil; print([p for p in ('/bin/sh', '/bin/bash', '/bin/ls', "
                      "'/usr/bin/ls', '/usr/bin/apt', '/usr/bin/dpkg', '/var/lib/dpkg/status') "
                      "if os.path.lexists(p)], shutil.which('sh'), shutil.which('ls'))")
    assert res.stdout == "[] None None\n"


def test_ssl_finds_the_ca_bundle(loaded):
    res = _py(loaded, "import ssl; c = ssl.create_default_context(); "
                      "print(c.cert_store_stats()['x509_ca'])")
    n = int(res.stdout)
    assert n > 100, "only %d CA certificates loaded" % n
    # The bundle is what update-ca-certificates would write: every certificate of the package.
    res = _py(loaded, "import glob; print(len(glob.glob('/usr/share/ca-certificates/*/*.crt')), "
                      "open('/etc/ssl/certs/ca-certificates.crt').read().count('BEGIN CERTIFICATE'))")
    files, in_bundle = map(int, res.stdout.split())
    assert files == in_bundle == n


def test_users_tmp_and_config(images, loaded):
    code = ("import os, pwd, grp, json, tempfile; "
            "f = tempfile.NamedTemporaryFile(dir='/tmp'); "
            "print(json.dumps([os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name, "
            "pwd.getpwnam('root').pw_dir, grp.getgrgid(65532).gr_name, os.getcwd(), "
            "oct(os.stat('/tmp').st_mode & 0o7777), os.environ['PATH']]))")
    res = _py(loaded, code)
    assert json.loads(res.stdout) == [
        65532, 65532, "nonroot", "/root", "nonroot", "/home/nonroot", "0o1777",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    res = _py(loaded, "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name)", "--user", "0")
    assert res.stdout == "root\n"
    res = _py(loaded, "print(open('/etc/os-release').read())")
    assert "ID=debian" in res.stdout and "bookworm" in res.stdout
    config = json.loads(images["amd64"].blob(images["amd64"].config_digest))
    assert config["architecture"] == "amd64" and config["os"] == "linux"
    assert config["config"]["User"] == "65532:65532"


def test_syft_lists_the_locked_debian_packages(images, tmp_path):
    syft, env = find_syft(tmp_path)
    lock = _lock()
    for arch, image in sorted(images.items()):
        res = run([syft, "scan", "oci-dir:" + image.layout, "-o", "json", "-q"], env=env,
                  timeout=600)
        sbom = json.loads(res.stdout)
        found = {a["name"]: a["version"] for a in sbom["artifacts"] if a["type"] == "deb"}
        locked = {p["name"]: p["version"] for p in lock["architectures"][arch]["packages"]}
        assert found == locked, "%s: syft sees %s\nthe lock has %s" % (arch, found, locked)
        assert sbom["distro"]["id"] == "debian" and sbom["distro"]["versionID"] == "12"
        purls = [a["purl"] for a in sbom["artifacts"] if a["name"] == "libc6"]
        assert purls and "arch=%s" % arch in purls[0], purls


def test_arm64_image_has_aarch64_binaries_and_config(images):
    for arch, machine in (("arm64", EM_AARCH64), ("amd64", EM_X86_64)):
        image = images[arch]
        config = json.loads(image.blob(image.config_digest))
        assert config["architecture"] == arch and config["os"] == "linux"
        if arch == "arm64":
            assert config.get("variant") == "v8"
        seen = {}
        for _, members, contents in _layers(image):
            for path in ("usr/bin/python3.11",):
                if path in contents:
                    seen[path] = contents[path]
            for name, m in members.items():
                if name.endswith("/libc.so.6"):
                    seen["libc"] = name
        elf = seen["usr/bin/python3.11"]
        assert elf[:4] == b"\x7fELF" and elf[4] == 2 and elf[5] == 1  # 64-bit, little endian
        e_machine = int.from_bytes(elf[18:20], "little")
        assert e_machine == machine, "%s: /usr/bin/python3.11 is for machine %d" % (arch, e_machine)
        triplet = "aarch64-linux-gnu" if arch == "arm64" else "x86_64-linux-gnu"
        assert triplet in seen["libc"], seen["libc"]


def test_each_file_in_exactly_one_layer_and_packages_by_group(images):
    layers = _layers(images["amd64"])
    assert len(layers) == 4, "basics, libc, libs, python: %d layers" % len(layers)
    owner = {}
    for i, (_, members, _) in enumerate(layers):
        for name, m in members.items():
            if m.isdir():
                continue
            assert name not in owner, "%s is in layers %d and %d" % (name, owner[name], i)
            owner[name] = i
    status = lambda pkg: owner.get("var/lib/dpkg/status.d/" + pkg)  # noqa: E731
    assert owner["etc/passwd"] == 0 and owner["etc/group"] == 0
    assert status("libc6") == 1 and status("base-files") == 1
    assert status("libssl3") == 2 and status("tzdata") == 2 and status("ca-certificates") == 2
    assert status("python3.11-minimal") == 3 and status("libpython3.11-stdlib") == 3
    assert owner["etc/ssl/certs/ca-certificates.crt"] == 2
    locked = {p["name"] for p in _lock()["architectures"]["amd64"]["packages"]}
    recorded = {n[len("var/lib/dpkg/status.d/"):] for n in owner if n.startswith("var/lib/dpkg/status.d/")}
    assert recorded == locked
    # No docs but copyrights, no man pages.
    assert not [n for n in owner if n.startswith("usr/share/man/")]
    docs = [n for n in owner if n.startswith("usr/share/doc/")]
    assert docs and all(n.endswith("/copyright") or n.count("/") == 3 for n in docs), docs[:10]


# --- deb_repository against a local archive ----------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Archive:
    """An HTTP server on 127.0.0.1 serving a directory (stopped by close())."""

    def __init__(self, root):
        handler = functools.partial(_Quiet, directory=root)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d/debian" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(30)


_WORKSPACE = """workspace(name = "shiko_deb_test")

local_repository(name = "rules_shiko", path = "{root}")
local_repository(name = "rules_cc", path = "{root}/third_party/rules_cc_shim")
local_repository(name = "rules_python", path = "{root}/third_party/rules_python_shim")
local_repository(name = "rules_java", path = "/usr/share/bazel/rules/java")
local_repository(name = "remote_coverage_tools", path = "{root}/third_party/remote_coverage_tools_shim")
local_repository(name = "bazel_skylib", path = "/usr/share/bazel/tools/skylib")

load("@rules_shiko//rules:repositories.bzl", "deb_repository")

deb_repository(
    name = "debs",
    lock = "//:packages.lock.json",
    {archives},
    update_target = "//:lock.update",
)
"""

_MODULE = """module(name = "shiko_deb_test")

bazel_dep(name = "rules_shiko", version = "0.1.0")
local_path_override(module_name = "rules_shiko", path = "{root}")

debs = use_extension("@rules_shiko//rules:extensions.bzl", "debs")
debs.lock(
    name = "debs",
    lock = "//:packages.lock.json",
    {archives},
    update_target = "//:lock.update",
)
use_repo(debs, "debs")
"""


def _deb_bytes(name, version):
    """A small, real .deb (ar with debian-binary, control.tar.gz, data.tar.gz)."""
    def tar_gz(files):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tf:
            for path, data in files:
                ti = tarfile.TarInfo(path)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    control = tar_gz([("./control", ("Package: %s\nVersion: %s\nArchitecture: amd64\n"
                                    "Description: test\n" % (name, version)).encode())])
    data = tar_gz([("./usr/share/%s/hello" % name, b"hello\n")])
    out = [b"!<arch>\n"]
    for member, blob in (("debian-binary", b"2.0\n"), ("control.tar.gz", control),
                         ("data.tar.gz", data)):
        out.append(("%-16s%-12d%-6d%-6d%-8s%-10d`\n" % (member, 0, 0, 0, "100644", len(blob))).encode())
        out.append(blob + (b"\n" if len(blob) % 2 else b""))
    return b"".join(out)


def test_deb_repository_fetches_verifies_and_explains(bazel, tmp_path):
    work = tempfile.mkdtemp(prefix="shiko-debrepo-", dir="/tmp")
    archive_dir = os.path.join(work, "srv")
    ws = os.path.join(work, "ws")
    output_base = os.path.join(work, "ob")
    os.makedirs(os.path.join(archive_dir, "debian", "pool", "main"))
    os.makedirs(ws)
    server = _Archive(archive_dir)
    startup = ["--output_base=" + output_base, "--max_idle_secs=300"]
    try:
        good = {}
        for name in ("alpha", "beta"):
            blob = _deb_bytes(name, "1.0-1")
            path = "pool/main/%s_1.0-1_amd64.deb" % name
            with open(os.path.join(archive_dir, "debian", path), "wb") as f:
                f.write(blob)
            good[name] = {"name": name, "version": "1.0-1", "architecture": "amd64",
                          "suite": "bookworm", "path": path,
                          "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob),
                          "depends": []}
        def write_workspace(archives):
            for fname, text in (("WORKSPACE", _WORKSPACE), ("MODULE.bazel", _MODULE)):
                with open(os.path.join(ws, fname), "w") as f:
                    f.write(text.format(root=REPO_ROOT, archives=archives))

        write_workspace('archives = {"*": "%s"}' % server.url)
        with open(os.path.join(ws, ".bazelrc"), "w") as f:
            f.write("import %s/.bazelrc\n" % REPO_ROOT)
        with open(os.path.join(ws, "BUILD.bazel"), "w") as f:
            f.write("exports_files([\"packages.lock.json\"])\n")

        def build(entries, others=None):
            lock = {"lock_version": 1, "manifest_sha256": "0" * 64, "suites": ["bookworm"],
                    "architectures": {"amd64": {"packages": entries, "assumed": []}}}
            lock["architectures"].update(others or {})
            with open(os.path.join(ws, "packages.lock.json"), "w") as f:
                json.dump(lock, f)
            return bazel("build", "--repository_cache=" + os.path.join(work, "cache"),
                         "@debs//:amd64", startup=startup, cwd=ws, check=False, timeout=900)

        # 1. The archive serves other bytes than the locked ones: the package is named.
        tampered = dict(good["beta"], sha256=hashlib.sha256(b"the real beta").hexdigest())
        res = build([good["alpha"], tampered])
        assert res.returncode != 0
        assert "package 'beta' 1.0-1 (amd64): sha256 mismatch" in res.stderr, res.stderr[-3000:]
        assert "the lock says %s" % tampered["sha256"] in res.stderr
        assert good["beta"]["sha256"] in res.stderr  # what the archive serves

        # 2. A version the archive no longer has: how to re-lock.
        gone = dict(good["beta"], version="0.9-1", path="pool/main/beta_0.9-1_amd64.deb")
        res = build([good["alpha"], gone])
        assert res.returncode != 0
        assert "package 'beta' 0.9-1 (amd64) is no longer in the archive (" in res.stderr, res.stderr[-3000:]
        assert "HTTP 404" in res.stderr
        assert "Re-lock to the current versions: bazel run //:lock.update" in res.stderr

        # 3. The right lock: exactly the locked files, checked, in the architecture's own
        # repository (@debs//:amd64 is an alias to @debs__amd64//:amd64). The lock's arm64
        # package is not in the archive: fetching it would fail, and an amd64 build must not.
        arm64 = dict(good["alpha"], architecture="arm64", path="pool/main/alpha_1.0-1_arm64.deb",
                     sha256=hashlib.sha256(b"no such arm64 package").hexdigest())
        res = build([good["alpha"], good["beta"]], {"arm64": {"packages": [arm64], "assumed": []}})
        assert res.returncode == 0, res.stderr[-3000:]
        repo = os.path.join(output_base, "external", "debs__amd64")
        if not os.path.isdir(repo):  # bzlmod: a canonical name
            repo = [os.path.join(output_base, "external", d)
                    for d in os.listdir(os.path.join(output_base, "external"))
                    if d.endswith("debs__amd64") and os.path.isdir(os.path.join(output_base, "external", d))][0]
        for name, entry in good.items():
            with open(os.path.join(repo, "amd64", name + ".deb"), "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == entry["sha256"]
        with open(os.path.join(repo, "amd64", "packages.json")) as f:
            assert [p["name"] for p in json.load(f)["packages"]] == ["alpha", "beta"]
        assert not [d for d in os.listdir(os.path.join(output_base, "external")) if d.endswith("debs__arm64")]

        # 4. A new output base with those .debs in the repository cache needs no URL: with no
        # `archives` and no apt sources at all, the packages come from the cache by sha256.
        write_workspace('apt_dir = "%s"' % os.path.join(work, "no-apt"))
        bazel("shutdown", startup=startup, cwd=ws, check=False, timeout=120)
        shutil.rmtree(output_base, ignore_errors=True)
        res = build([good["alpha"], good["beta"]])
        assert res.returncode == 0, res.stderr[-3000:]
        assert os.path.exists(os.path.join(repo, "amd64", "beta.deb"))

        # 5. WORKSPACE declares a repository for each of Debian's release architectures: a lock
        # with another one says to list it in `architectures` (a module extension reads the lock).
        res = build([good["alpha"], good["beta"]], {"hurd-amd64": {"packages": [], "assumed": []}})
        if repo == os.path.join(output_base, "external", "debs__amd64"):  # WORKSPACE mode
            assert res.returncode != 0
            assert ("@debs: the lock has architecture \"hurd-amd64\", which has no repository: list the "
                    "lock's architectures you use in `architectures`") in res.stderr, res.stderr[-3000:]
        else:
            assert res.returncode == 0, res.stderr[-3000:]

        # 6. The tools' Python for an architecture the lock lacks: the error names that
        # repository's own attribute, `architecture` (WORKSPACE mode: the module extension
        # declares it from the lock).
        if repo == os.path.join(output_base, "external", "debs__amd64"):
            with open(os.path.join(ws, "WORKSPACE"), "a") as f:
                f.write('load("@rules_shiko//rules/private/repo:tool_python.bzl", '
                        '"tool_python_repository")\n'
                        'tool_python_repository(name = "tp", lock = "//:packages.lock.json", '
                        'architecture = "arm64", archives = {"*": "%s"})\n' % server.url)
            with open(os.path.join(ws, "packages.lock.json"), "w") as f:
                json.dump({"lock_version": 1, "manifest_sha256": "0" * 64, "suites": ["bookworm"],
                           "architectures": {"amd64": {"packages": [good["alpha"]], "assumed": []}}}, f)
            res = bazel("build", "--repository_cache=" + os.path.join(work, "cache"), "@tp//:python",
                        startup=startup, cwd=ws, check=False, timeout=900)
            assert res.returncode != 0
            assert "@tp: attribute 'architecture': \"arm64\": the lock has amd64 only" in res.stderr, \
                res.stderr[-3000:]
    finally:
        bazel("shutdown", startup=startup, cwd=ws, check=False, timeout=120)
        server.close()
        subprocess.run(["chmod", "-R", "u+w", work], check=False)
        shutil.rmtree(work, ignore_errors=True)
