"""Tests of python_tools/image_test.py, shiko/image_test/ (spec, checks, drivers) and rootfs.py.

- rootfs: whiteouts (.wh. files and opaque directories), replacements, implicit and symlinked
  parents, hardlinks, the layer each path came from, gzip/zstd/plain layers, unpacking;
- the spec: normalization and one-line errors for bad specs (the build-time validation);
- structure checks on real images built by the image tool: each kind passes, and fails with
  expected vs actual and the layer;
- commands: the no-engine driver under bwrap and under unshare (user, workdir, env, exit codes,
  output, timeouts), and the docker and podman drivers against a private dockerd and podman.
Engines are real and fail (never skip) when they cannot start.
"""

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest

from python_tools.shiko.engines import discovery
from python_tools.shiko.image_test import sandbox
from python_tools.shiko.image_test.harness import run_test
from python_tools.shiko.image_test.spec import validate
from python_tools.shiko.tar import rootfs
from python_tools.tests import engines
from python_tools.tests.engines import build_image, image_manifest, write_json

GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"
PLAIN_LAYER = "application/vnd.oci.image.layer.v1.tar"


@pytest.fixture
def work(tmp_path):
    return str(tmp_path)


# --- Writing layers ----------------------------------------------------------------------------


def m(name, kind="file", data=b"", mode=None, uid=0, gid=0, target=None, dev=(0, 0)):
    """One tar member: kind file, dir, symlink, hardlink (target = member name), fifo, char
    (dev = (major, minor))."""
    ti = tarfile.TarInfo(name)
    ti.uid, ti.gid, ti.mtime = uid, gid, 0
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
               "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE}[kind]
    if kind == "file":
        ti.size = len(data)
    if target is not None:
        ti.linkname = target
    ti.devmajor, ti.devminor = dev
    ti.mode = mode if mode is not None else (0o755 if kind in ("dir", "symlink") else 0o644)
    return ti, (data if kind == "file" else None)


def tar_bytes(members):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in members:
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def write_layer(directory, name, members, compression="gzip", label=None):
    """Writes a layer blob and a layer-tool descriptor; returns the image manifest entry."""
    raw = tar_bytes(members)
    if compression == "gzip":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
            g.write(raw)
        blob, media = buf.getvalue(), GZIP_LAYER
    elif compression == "zstd":
        import zstandard

        blob, media = zstandard.ZstdCompressor().compress(raw), ZSTD_LAYER
    else:
        blob, media = raw, PLAIN_LAYER
    path = os.path.join(directory, name + ".blob")
    with open(path, "wb") as f:
        f.write(blob)
    desc = {"mediaType": media, "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob),
            "diff_id": "sha256:" + hashlib.sha256(raw).hexdigest(), "compression": compression,
            "compressor": "test", "members": len(members)}
    desc_path = write_json(os.path.join(directory, name + ".json"), desc)
    return {"blob": path, "descriptor": desc_path, "label": label or "//t:" + name, "desc": desc}


def tree_of(work, *layers):
    tree = rootfs.Tree()
    for i, members in enumerate(layers):
        tree.add_layer(write_layer(work, "l%d" % i, members)["blob"])
    return tree


# --- rootfs ------------------------------------------------------------------------------------


def test_whiteouts_remove_lower_paths_and_record_the_layer(work):
    tree = tree_of(
        work,
        [m("etc/", "dir"), m("etc/a", data=b"a"), m("etc/b", data=b"b"), m("etc/d/", "dir"), m("etc/d/x", data=b"x"),
         m("opt/o/1", data=b"1"), m("opt/o/sub/2", data=b"2"), m("keep", data=b"k")],
        [m("etc/.wh.a"), m("etc/d/y", data=b"y"), m("etc/d/.wh..wh..opq"), m("opt/.wh.o"), m("new", data=b"n")],
        [m("etc/b", data=b"B", mode=0o600)],
    )
    paths = sorted(tree.nodes)
    assert paths == ["/", "/etc", "/etc/b", "/etc/d", "/etc/d/y", "/keep", "/new", "/opt"]
    # The opaque marker hid the lower /etc/d/x but not /etc/d/y of its own layer (listed first).
    assert tree.nodes["/etc/d/y"].layer == 1 and tree.nodes["/etc/d"].layer == 0
    assert tree.nodes["/etc/b"].layer == 2 and tree.nodes["/etc/b"].mode == 0o600
    assert tree.nodes["/keep"].layer == 0 and tree.nodes["/new"].layer == 1
    assert tree.removal("/etc/a") == ("/etc/a", 1)
    assert tree.removal("/opt/o/sub/2") == ("/opt/o", 1)
    assert tree.removal("/etc/d/x") == ("/etc/d/x", 1)
    assert tree.removal("/keep") is None
    assert not any(".wh." in p for p in tree.nodes)
    assert tree.read_file("/etc/b") == b"B"


def test_a_path_whited_out_then_added_again_is_not_reported_removed(work):
    tree = tree_of(work, [m("a", data=b"1")], [m(".wh.a")], [m("a", data=b"3")])
    assert tree.removal("/a") is None and tree.read_file("/a") == b"3" and tree.nodes["/a"].layer == 2


def test_replacements_between_kinds(work):
    tree = tree_of(
        work,
        [m("d/", "dir"), m("d/child", data=b"c"), m("f", data=b"f"), m("keep/", "dir", mode=0o700),
         m("keep/inner", data=b"i")],
        [m("d", data=b"now a file"), m("f/", "dir"), m("f/x", data=b"x"), m("keep/", "dir", mode=0o750, uid=5)],
    )
    assert tree.nodes["/d"].kind == "file" and "/d/child" not in tree.nodes
    assert tree.nodes["/f"].kind == "dir" and tree.read_file("/f/x") == b"x"
    keep = tree.nodes["/keep"]
    assert (keep.kind, keep.mode, keep.uid, keep.layer) == ("dir", 0o750, 5, 1)
    assert tree.read_file("/keep/inner") == b"i"


def test_implicit_and_symlinked_parents(work):
    tree = tree_of(
        work,
        [m("usr/bin/", "dir"), m("bin", "symlink", target="usr/bin"), m("lib", "symlink", target="/usr/lib")],
        [m("bin/tool", data=b"t", mode=0o755), m("lib/x/y", data=b"y"), m("./deep/er/file", data=b"d")],
    )
    assert tree.nodes["/usr/bin/tool"].layer == 1
    assert "/bin/tool" not in tree.nodes
    real, node = tree.lookup("/bin/tool")
    assert real == "/usr/bin/tool" and node.mode == 0o755
    assert tree.nodes["/usr/lib"].implicit and tree.nodes["/usr/lib/x"].layer == 1
    assert tree.nodes["/deep"].implicit and tree.nodes["/deep"].mode == 0o755
    real, node = tree.lookup("/bin")
    assert node.kind == "symlink" and node.target == "usr/bin"
    real, node = tree.lookup("/bin", follow=True)
    assert real == "/usr/bin" and node.kind == "dir"
    with pytest.raises(rootfs.NotFound) as e:
        tree.lookup("/usr/bin/tool/more")
    assert e.value.reason == "not a directory"


def test_symlink_loops_and_dotdot(work):
    tree = tree_of(work, [m("a", "symlink", target="b"), m("b", "symlink", target="a"),
                          m("etc/up", "symlink", target="../../../etc")])
    with pytest.raises(rootfs.NotFound) as e:
        tree.lookup("/a", follow=True)
    assert "loop" in e.value.reason
    assert tree.lookup("/etc/up", follow=True)[0] == "/etc"
    with pytest.raises(rootfs.LayerError) as e:
        tree_of(work, [m("x/../../etc/passwd", data=b"")])
    assert "'..'" in str(e.value)


def test_hardlinks_share_content_and_metadata(work):
    tree = tree_of(work, [m("a", data=b"same", mode=0o640, uid=7)],
                   [m("b", "hardlink", target="a"), m("c", data=b"other"), m("d", "hardlink", target="c")])
    a, b = tree.nodes["/a"], tree.nodes["/b"]
    assert b.content == a.content and (b.mode, b.uid, b.layer) == (0o640, 7, 1)
    assert tree.read_file("/b") == b"same" and tree.read_file("/d") == b"other"
    with pytest.raises(rootfs.LayerError) as e:
        tree_of(work, [m("z", "hardlink", target="missing")])
    assert "does not exist" in str(e.value)


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_compressions(work, compression):
    tree = rootfs.Tree()
    tree.add_layer(write_layer(work, "l", [m("x", data=b"x" * 5000)], compression)["blob"])
    assert tree.read_file("/x") == b"x" * 5000


def test_empty_layer(work):
    empty = os.path.join(work, "empty")
    open(empty, "wb").close()
    tree = rootfs.Tree()
    tree.add_layer(empty)
    tree.add_layer(write_layer(work, "l", [])["blob"])
    assert list(tree.nodes) == ["/"]


def test_unpack_writes_the_final_tree(work):
    tree = tree_of(
        work,
        [m("ro/", "dir", mode=0o555), m("ro/f", data=b"in a read-only dir", mode=0o444),
         m("gone", data=b"x"), m("bin/su", data=b"s", mode=0o4755), m("data/", "dir", uid=1000, gid=1001),
         m("data/own", data=b"o", uid=1000, gid=1001, mode=0o600)],
        [m(".wh.gone"), m("link", "symlink", target="/ro/f"), m("hard", "hardlink", target="ro/f"),
         m("pipe", "fifo"), m("mem", "char", mode=0o666, dev=(1, 1))],
    )
    dest = os.path.join(work, "root")
    os.mkdir(dest)
    # An image's device node is never created, even as root (it would name a host device).
    assert tree.unpack(dest) == ["/mem"]
    try:
        assert sorted(os.listdir(dest)) == ["bin", "data", "hard", "link", "pipe", "ro"]
        assert oct(os.stat(dest + "/ro").st_mode & 0o7777) == oct(0o555)
        assert oct(os.stat(dest + "/bin/su").st_mode & 0o7777) == oct(0o4755)
        assert open(dest + "/ro/f", "rb").read() == b"in a read-only dir"
        assert os.readlink(dest + "/link") == "/ro/f"
        assert os.stat(dest + "/hard").st_ino == os.stat(dest + "/ro/f").st_ino
        import stat as st

        assert st.S_ISFIFO(os.lstat(dest + "/pipe").st_mode)
        if os.geteuid() == 0:
            s = os.stat(dest + "/data/own")
            assert (s.st_uid, s.st_gid) == (1000, 1001)
    finally:
        rootfs.remove_tree(dest)
    assert not os.path.exists(dest)


# --- Images for the checks -----------------------------------------------------------------


def build_test_image(work, layers, **config):
    entries = [write_layer(work, name, members, label=label) for name, members, label in layers]
    layout, digest, _ = build_image(work, "layout", image_manifest(layers=entries, **config))
    return layout, [e["label"] for e in entries], entries


def rich_image(work, extra_members=()):
    busybox = engines.busybox_bytes()
    return build_test_image(
        work,
        [
            ("base", [m("bin/", "dir"), m("bin/busybox", data=busybox, mode=0o755),
                      m("bin/sh", "symlink", target="busybox"), m("etc/", "dir"),
                      m("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"),
                      m("etc/group", data=b"root:x:0:\napp:x:1000:\nstaff:x:50:\n"),
                      m("etc/old.conf", data=b"old"), m("var/cache/", "dir"), m("var/cache/c1", data=b"c")],
             "//t:base_layer"),
            ("app", [m("etc/.wh.old.conf"), m("var/cache/.wh..wh..opq"),
                     m("etc/app.conf", data=b"port = 8080\nmode = fast\n", mode=0o600, uid=1000, gid=1000),
                     m("srv/", "dir", mode=0o750, uid=1000, gid=1000),
                     m("usr/bin/app", "symlink", target="/bin/busybox")] + list(extra_members),
             "//t:app_layer"),
        ],
        entrypoint=["/bin/sh", "-c"], cmd=["echo hello from the image"],
        env={"PATH": "/bin", "GREETING": "hi"}, user="1000:1000", workdir="/srv",
        labels={"org.opencontainers.image.title": "rich"}, exposed_ports=["8080", "53/udp"],
        volumes=["/data"], stop_signal="SIGTERM",
    )


def spec_for(layout, labels, driver="none", **spec):
    manifest = {"target": "//t:test", "image": {"label": "//t:image", "layout": layout, "layers": labels},
                "driver": driver, "spec": spec}
    return validate(manifest)


def run(spec, driver=None):
    out = io.StringIO()
    code = run_test(spec, None, driver, out=out)
    return code, out.getvalue()


def fail_block(text, subject, what):
    """The FAIL line for subject/what and its indented detail lines."""
    lines = text.splitlines()
    head = "FAIL %s: %s" % (subject, what)
    assert head in lines, "no %r in:\n%s" % (head, text)
    i = lines.index(head)
    block = [lines[i]]
    for line in lines[i + 1:]:
        if not line.startswith("    "):
            break
        block.append(line)
    return "\n".join(block)


@pytest.fixture
def rich(work):
    return rich_image(work)


ALL_PASSING = dict(
    files={
        "/bin/busybox": {"type": "file", "mode": "0755", "uid": 0, "gid": 0, "content": "BusyBox"},
        "/bin/sh": {"type": "symlink", "link": "busybox"},
        "/etc/app.conf": {"mode": "0600", "uid": 1000, "gid": 1000, "content": ["^port = 8080$", "fast"],
                          "no_content": "password", "size": 24},
        "/srv": {"type": "dir", "mode": "0750"},
        "/usr/bin/app": {"link": "/bin/busybox", "content": "BusyBox"},
        "/var/cache": {"type": "dir"},
    },
    absent=["/etc/old.conf", "/var/cache/c1", "/bin/bash"],
    config={"entrypoint": ["/bin/sh", "-c"], "cmd": ["echo hello from the image"],
            "env": {"GREETING": "hi", "UNSET": None}, "user": "1000:1000", "workdir": "/srv",
            "exposed_ports": ["53/udp", "8080/tcp"], "labels": {"org.opencontainers.image.title": "rich"},
            "volumes": ["/data"], "stop_signal": "SIGTERM", "os": "linux", "architecture": "amd64"},
)


def test_structure_checks_pass(rich):
    layout, labels, _ = rich
    code, out = run(spec_for(layout, labels, **ALL_PASSING))
    assert code == 0, out
    assert "FAIL" not in out
    assert "RESULT: PASSED" in out and "driver: none needed" in out
    assert "PASS file /etc/old.conf: absent" in out


APP = "//t:app_layer"
BASE = "//t:base_layer"


@pytest.mark.parametrize(
    "spec,subject,what,expected,actual,layer",
    [
        (dict(files={"/etc/app.conf": {"exists": True}, "/nope": {}}), "file /nope", "exists", "exists", "absent", None),
        (dict(files={"/etc/old.conf": {}}), "file /etc/old.conf", "exists", "exists",
         "absent: /etc/old.conf was removed by a whiteout in layer 2 of 2", APP),
        (dict(files={"/var/cache/c1": {}}), "file /var/cache/c1", "exists", "exists", "removed by a whiteout in layer 2", APP),
        (dict(absent=["/bin/sh"]), "file /bin/sh", "absent", "absent", "exists (symlink -> busybox)", BASE),
        (dict(files={"/srv": {"type": "file"}}), "file /srv", "type", "file", "dir", APP),
        (dict(files={"/etc/app.conf": {"mode": "0644"}}), "file /etc/app.conf", "mode", "0644", "0600", APP),
        (dict(files={"/etc/app.conf": {"uid": 0}}), "file /etc/app.conf", "uid", "0", "1000", APP),
        (dict(files={"/srv": {"gid": 0}}), "file /srv", "gid", "0", "1000", APP),
        (dict(files={"/bin/sh": {"link": "/bin/busybox"}}), "file /bin/sh", "link", "/bin/busybox", "busybox", BASE),
        (dict(files={"/etc/app.conf": {"content": "port = 9090"}}), "file /etc/app.conf", "content",
         "matches /port = 9090/", 'no match in "port = 8080\\nmode = fast\\n"', APP),
        (dict(files={"/etc/app.conf": {"no_content": "fa+st"}}), "file /etc/app.conf", "no_content",
         "does not match /fa+st/", 'matches "fast" at byte 19', APP),
        (dict(files={"/etc/app.conf": {"size": 1}}), "file /etc/app.conf", "size", "1", "24", APP),
        (dict(files={"/srv": {"content": "x"}}), "file /srv", "content", "a regular file", "/srv is a dir", APP),
        (dict(config={"entrypoint": ["/bin/bash"]}), "config", "entrypoint", '["/bin/bash"]', '["/bin/sh", "-c"]', None),
        (dict(config={"cmd": None}), "config", "cmd", "unset", '["echo hello from the image"]', None),
        (dict(config={"env": {"GREETING": "hello"}}), "config", "env[GREETING]", '"hello"', '"hi"', None),
        (dict(config={"env": {"GREETING": None}}), "config", "env[GREETING]", "unset", '"hi"', None),
        (dict(config={"env": {"MISSING": "x"}}), "config", "env[MISSING]", '"x"', "unset", None),
        (dict(config={"user": "0"}), "config", "user", '"0"', '"1000:1000"', None),
        (dict(config={"workdir": "/"}), "config", "workdir", '"/"', '"/srv"', None),
        (dict(config={"exposed_ports": ["8080"]}), "config", "exposed_ports", '["8080/tcp"]', '["53/udp", "8080/tcp"]', None),
        (dict(config={"labels": {"org.opencontainers.image.title": "other"}}), "config",
         "labels[org.opencontainers.image.title]", '"other"', '"rich"', None),
        (dict(config={"volumes": []}), "config", "volumes", "[]", '["/data"]', None),
        (dict(config={"stop_signal": "SIGKILL"}), "config", "stop_signal", '"SIGKILL"', '"SIGTERM"', None),
        (dict(config={"architecture": "arm64"}), "config", "architecture", '"arm64"', '"amd64"', None),
    ],
)
def test_each_structure_check_fails_showing_expected_actual_and_layer(rich, spec, subject, what, expected, actual, layer):
    layout, labels, entries = rich
    code, out = run(spec_for(layout, labels, **spec))
    assert code == 1, out
    block = fail_block(out, subject, what)
    assert "expected: %s" % expected in block, block
    assert actual in block, block
    if layer:
        want = entries[1 if layer == APP else 0]["desc"]["digest"]
        assert "layer:    %d of 2, %s (%s)" % (1 if layer == BASE else 2, want, layer) in block or \
            "layer 2 of 2, %s (%s)" % (want, layer) in block, block
    assert "RESULT: FAILED" in out


def test_layers_below_the_known_ones_are_base_layers(rich):
    layout, labels, entries = rich
    # Only the top layer's label is known (a base that is a plain OCI layout).
    code, out = run(spec_for(layout, labels[1:], absent=["/bin/busybox"]))
    assert code == 1
    assert "layer:    1 of 2, %s (base layer 1)" % entries[0]["desc"]["digest"] in out


def test_absent_parent_and_non_directory_parent(rich):
    layout, labels, _ = rich
    code, out = run(spec_for(layout, labels, files={"/etc/app.conf/x": {}, "/no/such/dir": {}}))
    assert code == 1
    assert "actual:   absent (/etc/app.conf is not a directory)" in out
    assert "actual:   absent (/no is missing)" in out


# --- The spec ---------------------------------------------------------------------------------


def test_validation_normalizes(rich):
    layout, labels, _ = rich
    spec = spec_for(layout, labels, files={"//etc/./app.conf": {"mode": "600", "content": "x"}},
                    absent=["/bin/bash/"], config={"exposed_ports": ["80", "80/tcp", "53/udp"], "cmd": None},
                    commands=[{"args": ["x"]}, {"name": "n", "command": ["/bin/true"], "stdout": ["a", "b"]}])
    assert spec["files"] == {"/etc/app.conf": {"exists": True, "mode": 0o600, "content": ["x"]},
                             "/bin/bash": {"exists": False}}
    assert spec["config"] == {"exposed_ports": ["53/udp", "80/tcp"], "cmd": []}
    assert spec["commands"] == [
        {"name": "command 1", "args": ["x"], "exit_code": 0, "timeout": 60, "env": {}},
        {"name": "n", "command": ["/bin/true"], "stdout": ["a", "b"], "exit_code": 0, "timeout": 60, "env": {}},
    ]


def _validate_cli(work, manifest):
    mpath = write_json(os.path.join(work, "m.json"), manifest)
    out = os.path.join(work, "spec.json")
    env = dict(os.environ)
    env["PYTHONPATH"] = engines.REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "python_tools.image_test", "--manifest=" + mpath, "--output=" + out],
                          capture_output=True, text=True, env=env)
    return proc, out


def test_cli_bad_flag_combinations_exit_2(work):
    env = dict(os.environ)
    env["PYTHONPATH"] = engines.REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for argv, problem in [
        (["--manifest=" + os.path.join(work, "m.json")], "--manifest needs --output"),
        (["--runfiles=" + work], "give --manifest and --output (validate) or --spec (test)"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "python_tools.image_test"] + argv, capture_output=True,
                              text=True, env=env)
        assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", "ERROR: image_test: %s\n" % problem)


def test_validation_cli_writes_the_spec(work):
    proc, out = _validate_cli(work, {"target": "//t:test", "image": {"label": "//t:i", "layout": "ws/t/i"},
                                     "driver": "none", "spec": {"absent": ["/bin/sh"]}})
    assert proc.returncode == 0, proc.stderr
    spec = json.load(open(out))
    assert spec["files"] == {"/bin/sh": {"exists": False}} and spec["driver"] == "none"
    assert spec["image"]["layout"] == "ws/t/i"


@pytest.mark.parametrize(
    "spec,attr,fragment",
    [
        ({"files": {"relative/path": {}}}, "files", "'relative/path': must be an absolute path"),
        ({"files": {"/a/../b": {}}}, "files", "must not contain '..'"),
        ({"files": {"/a": {"mod": "0644"}}}, "files", "'/a: mod': unknown check (known: exists, type, mode"),
        ({"files": {"/a": {"mode": "0999"}}}, "files", "'/a: mode': must be an octal string"),
        ({"files": {"/a": {"mode": 0o17777}}}, "files", "between 0000 and 7777"),
        ({"files": {"/a": {"uid": -1}}}, "files", "'/a: uid': must be an integer >= 0"),
        ({"files": {"/a": {"type": "directory"}}}, "files", "'directory' is not one of file, dir, symlink"),
        ({"files": {"/a": {"content": "("}}}, "files", "is not a valid regular expression"),
        ({"files": {"/a": {"exists": False, "mode": "0644"}}}, "files", "an absent path takes no other check"),
        ({"files": {"/a": {"link": "b", "type": "file"}}}, "files", "`link` needs type symlink"),
        ({"files": {"/a": {}}, "absent": ["/a"]}, "files", "is checked twice"),
        ({"absent": "/bin/sh"}, "absent", "must be a list of absolute paths"),
        ({"config": {"entrypoint": "/bin/sh"}}, "config", "'entrypoint': must be a list of strings"),
        ({"config": {"ports": []}}, "config", "'ports': unknown field"),
        ({"config": {"exposed_ports": ["http"]}}, "config", "a port must be N, N/tcp or N/udp"),
        ({"config": {"env": {"A": 1}}}, "config", "must be a dict of strings"),
        ({"commands": [{"command": ["a"], "args": ["b"]}]}, "commands", "not both"),
        ({"commands": [{"exit_code": 300}]}, "commands", "an exit code is 0..255"),
        ({"commands": [{"stdout": []}]}, "commands", "non-empty list"),
        ({"commands": [{"timeout": 0}]}, "commands", "must be an integer >= 1"),
        ({"commands": [{"name": "a"}, {"name": "a"}]}, "commands", "two commands have this name"),
        ({"commands": [{"cmd": ["x"]}]}, "commands", "unknown key"),
        ({}, "spec", "checks nothing"),
    ],
)
def test_bad_specs_fail_the_build_with_one_line(work, spec, attr, fragment):
    proc, out = _validate_cli(work, {"target": "//t:test", "image": {"label": "//t:i", "layout": "x"},
                                     "driver": "auto", "spec": spec})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ERROR: //t:test: attribute '%s': " % attr), lines[0]
    assert fragment in lines[0], lines[0]
    assert not os.path.exists(out)


def test_spec_file_errors_name_the_file(work):
    path = write_json(os.path.join(work, "spec_in.json"), {"files": {"/a": {"mode": "rwx"}}})
    proc, _ = _validate_cli(work, {"target": "//t:test", "image": {"layout": "x"}, "spec_file": path})
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("ERROR: //t:test: attribute 'spec': '%s: /a: mode': must be an octal string "
                                   "such as \"0755\"" % path)


def test_spec_file_merges_with_inline_spec(work):
    path = write_json(os.path.join(work, "spec_in.json"), {"files": {"/b": {}}, "commands": [{"name": "x"}]})
    proc, out = _validate_cli(work, {"target": "//t:test", "image": {"layout": "x"}, "spec_file": path,
                                     "spec": {"files": {"/a": {}}}})
    assert proc.returncode == 0, proc.stderr
    spec = json.load(open(out))
    assert sorted(spec["files"]) == ["/a", "/b"] and [c["name"] for c in spec["commands"]] == ["x"]


# --- Commands without an engine ----------------------------------------------------------------

PROBE = ("id -u; id -g; pwd; echo \"greeting=$GREETING extra=$EXTRA home=$HOME path=$PATH\"; "
         "echo to-stderr >&2; exit 3")


def probe_commands():
    return [{"name": "probe", "args": [PROBE], "env": {"EXTRA": "e"}, "exit_code": 3,
             "stdout": ["^1000$", "^/srv$", "greeting=hi extra=e home=/home/app path=/bin$"],
             "stderr": "^to-stderr$", "no_stdout": "root"},
            {"name": "default", "stdout": "^hello from the image$"},
            {"name": "writes", "command": ["/bin/sh", "-c", "echo x > /srv/new && cat /srv/new && ls /srv"],
             "stdout": "^x\nnew$"},
            {"name": "fresh root per command", "command": ["/bin/sh", "-c", "ls -A /srv | wc -l"], "stdout": "^0$"},
            {"name": "missing", "command": ["/bin/nothere"], "exit_code": 127}]


def _force_backend(monkeypatch, backend):
    """Makes NoEngine use only `backend` ("bwrap" or "unshare", the fallback when bwrap is
    missing or cannot make its namespaces)."""
    real_init = sandbox.NoEngine.__init__

    def init(self, image, tmp, log, backend_=None):
        real_init(self, image, tmp, log, backend=backend)

    monkeypatch.setattr(sandbox.NoEngine, "__init__", init)


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_none_driver_runs_commands_as_the_image_says(rich, work, backend, monkeypatch):
    layout, labels, _ = rich
    _force_backend(monkeypatch, backend)
    code, out = run(spec_for(layout, labels, commands=probe_commands()))
    assert code == 0, out
    assert "driver: none (%s" % backend in out and "user 1000:1000, workdir /srv" in out
    assert "FAIL" not in out


# Docker's default capability set (moby oci/caps/defaults.go) as /proc/self/status shows it.
DOCKER_CAP_EFF = "00000000a80425fb"


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_a_root_image_is_confined_like_in_docker(work, backend, monkeypatch):
    """A root image gets Docker's default capabilities only, its own device nodes are never
    created, and a device node it makes cannot be opened (the root is nodev): under bwrap and
    under the unshare fallback alike."""
    layout, labels, _ = build_test_image(
        work,
        [("l", [m("bin/", "dir"), m("bin/busybox", data=engines.busybox_bytes(), mode=0o755),
                m("bin/sh", "symlink", target="busybox"), m("tmp/", "dir", mode=0o1777),
                m("hostdev", "char", mode=0o666, dev=(1, 3))], None)],
        entrypoint=["/bin/sh", "-c"],
    )
    _force_backend(monkeypatch, backend)
    commands = [
        {"name": "caps", "args": ["grep -E '^Cap(Eff|Prm):' /proc/self/status"],
         "stdout": ["^CapEff:\t%s$" % DOCKER_CAP_EFF, "^CapPrm:\t%s$" % DOCKER_CAP_EFF]},
        {"name": "no device from the image", "args": ["ls -l /hostdev || echo absent"], "stdout": "^absent$"},
        # /dev/null's numbers: a root that is not nodev would let this write reach the host device.
        {"name": "mknod is useless", "args": ["mknod /tmp/n c 1 3 && echo made; echo x > /tmp/n && echo wrote"],
         "exit_code": 1, "stdout": "^made$", "stderr": "Permission denied"},
        {"name": "no admin", "args": ["mount -t tmpfs none /tmp && echo mounted || echo refused"],
         "stdout": "^refused$"},
        {"name": "dev works", "args": ["echo x > /dev/null && head -c 4 /dev/zero | wc -c"], "stdout": "^4$"},
        {"name": "own pid namespace", "args": ["ls /proc | grep -c '^[0-9]*$'"], "stdout": "^[1-4]$"},
    ]
    code, out = run(spec_for(layout, labels, commands=commands))
    assert "driver: none (%s" % backend in out, out
    assert code == 0, out
    assert "FAIL" not in out


def test_unshare_setup_failure_is_the_drivers_not_the_commands(rich, monkeypatch):
    layout, labels, _ = rich
    _force_backend(monkeypatch, "unshare")
    monkeypatch.setattr(sandbox, "UNSHARE_SETUP", "echo 'mount: cannot remount' >&2; exit 32")
    code, out = run(spec_for(layout, labels, commands=[{"name": "c", "args": ["exit 32"], "exit_code": 32}]))
    assert code == 1, out
    assert ('ERROR: //t:test: command "c" could not be run by driver none: unshare could not set up the '
            "sandbox (exit 32): mount: cannot remount") in out, out


def test_none_driver_failures_show_expected_and_actual(rich):
    layout, labels, _ = rich
    commands = [{"name": "code", "args": ["exit 4"], "exit_code": 0},
                {"name": "out", "args": ["echo actual-out"], "stdout": "^expected-out$"},
                {"name": "err", "args": ["echo actual-err >&2"], "stderr": "expected-err", "no_stderr": "actual"},
                {"name": "slow", "args": ["sleep 30"], "timeout": 1}]
    code, out = run(spec_for(layout, labels, commands=commands))
    assert code == 1
    block = fail_block(out, 'command "code"', "exit code")
    assert "expected: 0" in block and "actual:   4" in block
    block = fail_block(out, 'command "out"', "stdout")
    assert "expected: matches /^expected-out$/" in block and 'actual:   "actual-out\\n"' in block
    block = fail_block(out, 'command "err"', "stderr")
    assert "expected: matches /expected-err/" in block and 'actual:   "actual-err\\n"' in block
    block = fail_block(out, 'command "err"', "no_stderr")
    assert 'matched "actual"' in block
    block = fail_block(out, 'command "slow"', "exit code")
    assert "actual:   timed out after 1s" in block


def test_user_names_resolve_in_the_image(work):
    layout, labels, _ = build_test_image(
        work,
        [("l", [m("bin/busybox", data=engines.busybox_bytes(), mode=0o755),
                m("etc/passwd", data=b"svc:x:4242:4343:svc:/var/svc:/bin/sh\n"),
                m("etc/group", data=b"svc:x:4343:\nother:x:77:\n")], None)],
        entrypoint=["/bin/busybox", "sh", "-c"], user="svc:other",
    )
    code, out = run(spec_for(layout, labels, commands=[
        {"args": ["id -u; id -g; echo $HOME $PATH; pwd"],
         "stdout": "^4242\n77\n/var/svc /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n/$"}]))
    assert code == 0, out


def test_unknown_user_fails_the_test(work):
    layout, labels, _ = build_test_image(work, [("l", [m("bin/x", data=b"x")], None)], cmd=["/bin/x"], user="nobody")
    code, out = run(spec_for(layout, labels, commands=[{"name": "c"}]))
    assert code == 1
    assert "cannot run the command checks: unable to find user nobody" in out
    assert "RESULT: FAILED" in out and "could not be run" in out


def test_image_without_command_fails_the_test(work):
    layout, labels, _ = build_test_image(work, [("l", [m("bin/x", data=b"x")], None)])
    code, out = run(spec_for(layout, labels, commands=[{"name": "c"}]))
    assert code == 1 and "has no entrypoint or cmd" in out


def test_unreachable_docker_fails_the_test(rich, monkeypatch, work):
    layout, labels, _ = rich
    monkeypatch.setenv("DOCKER_HOST", "unix://%s/no.sock" % work)
    code, out = run(spec_for(layout, labels, driver="docker", commands=[{"name": "c"}]))
    assert code == 1
    assert "cannot run the command checks: driver docker: the daemon at unix://" in out


def test_auto_falls_back_to_no_engine_and_the_env_var_overrides(rich, monkeypatch, work):
    layout, labels, _ = rich
    for k in ("DOCKER_HOST", "XDG_RUNTIME_DIR") + discovery.PODMAN_ENV:
        monkeypatch.delenv(k, raising=False)
    if os.path.exists("/var/run/docker.sock"):
        pytest.fail("a docker daemon socket exists at /var/run/docker.sock; this test needs a machine without one")
    spec = spec_for(layout, labels, driver="auto", commands=[{"name": "c", "stdout": "hello"}])
    code, out = run(spec)
    assert code == 0, out
    assert "driver auto: docker: DOCKER_HOST is unset" in out and "driver: none (bwrap" in out
    monkeypatch.setenv("SHIKO_IMAGE_TEST_DRIVER", "docker")
    code, out = run(spec)
    assert code == 1 and "driver: docker (from SHIKO_IMAGE_TEST_DRIVER)" in out


# --- Engines --------------------------------------------------------------------------------------


def test_docker_driver(rich, work, monkeypatch):
    layout, labels, _ = rich
    with engines.Dockerd(work) as d:
        for k, v in d.env().items():
            if k in ("DOCKER_HOST", "DOCKER_CONFIG", "PATH"):
                monkeypatch.setenv(k, v)
        spec = spec_for(layout, labels, driver="docker", commands=probe_commands())
        code, out = run(spec)
        assert code == 0, out
        assert "driver: docker (server " in out and "image: loaded into docker as sha256:" in out
        code, out = run(spec)
        assert code == 0, out
        assert "image: already in docker" in out  # the second run transfers nothing
        code, out = run(spec_for(layout, labels, driver="auto",
                                 commands=[{"name": "fail", "args": ["echo oops; exit 2"], "stdout": "^fine$"}]))
        assert code == 1 and "driver: docker (" in out
        assert 'actual:   "oops\\n"' in fail_block(out, 'command "fail"', "stdout")
        assert "actual:   2" in fail_block(out, 'command "fail"', "exit code")


def test_podman_driver(rich, work, monkeypatch):
    layout, labels, _ = rich
    with engines.Podman(work) as p:
        for k, v in p.env().items():
            if k.startswith("CONTAINERS_") or k == "PATH":
                monkeypatch.setenv(k, v)
        monkeypatch.delenv("DOCKER_HOST", raising=False)
        spec = spec_for(layout, labels, driver="podman", commands=probe_commands())
        code, out = run(spec)
        assert code == 0, out
        assert "driver: podman (podman " in out and "image: loaded into podman as " in out
        code, out = run(spec_for(layout, labels, driver="auto", commands=[{"name": "c", "stdout": "hello"}]))
        assert code == 0, out
        assert "driver: podman (" in out and "image: already in podman" in out


def test_sigterm_stops_the_command_and_cleans_up(rich, work):
    """Bazel ends a test that runs too long with SIGTERM: nothing may keep running or stay behind."""
    import glob
    import signal
    import time

    layout, labels, _ = rich
    spec = spec_for(layout, labels, commands=[{"name": "slow", "args": ["echo started; sleep 300"], "timeout": 600}])
    spec_path = write_json(os.path.join(work, "spec.json"), spec)
    tmpdir = os.path.join(work, "testtmp")
    os.mkdir(tmpdir)
    before = set(glob.glob("/tmp/image_test-root-*"))
    env = dict(os.environ, TEST_TMPDIR=tmpdir)
    env["PYTHONPATH"] = engines.REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-m", "python_tools.image_test", "--spec=" + spec_path],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not glob.glob(os.path.join(tmpdir, "image_test-*")):
        time.sleep(0.1)
    time.sleep(1.5)  # the command is running by now
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "terminated (signal 15)" in out, out
    assert os.listdir(tmpdir) == [], os.listdir(tmpdir)
    assert set(glob.glob("/tmp/image_test-root-*")) == before
    # No sandboxed `sleep 300` left running (the kernel reaps a killed pid namespace
    # asynchronously: give it a few seconds on a loaded machine).
    deadline = time.monotonic() + 10
    while True:
        left = subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True, text=True).stdout.split()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == [], left
