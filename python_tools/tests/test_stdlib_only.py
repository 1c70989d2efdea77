"""The tools that repository rules run with the host's bare python3 import the standard library only.

image_pull runs python_tools/pull.py and deb_repository runs python_tools/deb_lock.py
(`sources`, `probe`) with whatever python3 the machine has, outside any action and without
rules_shiko's pinned wheels: they must work under `python3 -I -S` (no site-packages, no
PYTHONPATH, no user site), importing nothing but the standard library and python_tools.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

# The directory holding python_tools/: the checkout, or the test's runfiles tree under Bazel.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = ["pull", "deb_lock", "tool_python"]


def host_python():
    """The interpreter repository rules would find: /usr/bin/python3, else python3 on PATH."""
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            return candidate
    return sys.executable


PYTHON = host_python()

# Runs in the bare interpreter: imports (or runs, as __main__) the tools, then reports every
# module loaded, with the interpreter's standard library names and directories.
REPORT = textwrap.dedent('''
    import json, os, runpy, sys, sysconfig
    root, out, script = sys.argv[1], sys.argv[2], sys.argv[3]
    code = None
    if script == "-":
        sys.path.insert(0, root)
        import python_tools.pull, python_tools.deb_lock
    else:
        sys.argv = [script] + sys.argv[4:]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            code = e.code
    modules = {name: getattr(m, "__file__", None) for name, m in sorted(sys.modules.items())}
    paths = sysconfig.get_paths()  # after the snapshot: it imports _sysconfigdata_<platform>
    report = {
        "code": code,
        "flags": [sys.flags.isolated, sys.flags.no_site],
        "stdlib_names": sorted(getattr(sys, "stdlib_module_names", [])),
        "stdlib_dirs": sorted({os.path.realpath(paths["stdlib"]), os.path.realpath(paths["platstdlib"])}),
        "modules": modules,
    }
    with open(out, "w") as f:
        json.dump(report, f)
''')


def bare_run(tmp_path, script="-", args=()):
    """Runs REPORT under `python3 -I -S`; returns (process, report)."""
    out = tmp_path / "report.json"
    proc = subprocess.run([PYTHON, "-I", "-S", "-c", REPORT, ROOT, str(out), script] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        return proc, json.load(f)


def outside_stdlib(report):
    """Modules that are neither standard library nor python_tools: {name: file}."""
    stdlib = set(report["stdlib_names"]) | {"__main__"}
    dirs = report["stdlib_dirs"]
    # Not realpath: under Bazel the runfiles tree's files are symlinks to the source tree.
    own = os.path.abspath(os.path.join(ROOT, "python_tools")) + os.sep
    bad = {}
    for name, path in report["modules"].items():
        top = name.split(".")[0]
        if top == "python_tools":
            if path and not os.path.abspath(path).startswith(own):
                bad[name] = path  # a python_tools from somewhere else
            continue
        if report["stdlib_names"] and top not in stdlib:
            bad[name] = path
        elif path and not any(os.path.realpath(path).startswith(d + os.sep) for d in dirs):
            bad[name] = path  # a module shadowing the standard library, or site-packages
    return bad


def test_import_with_the_bare_host_python(tmp_path):
    _, report = bare_run(tmp_path)
    assert report["flags"] == [1, 1]
    assert "python_tools.pull" in report["modules"] and "python_tools.deb_lock" in report["modules"]
    assert "python_tools.shiko.cli" in report["modules"]
    assert outside_stdlib(report) == {}


@pytest.mark.parametrize("tool", TOOLS)
def test_no_command_is_a_usage_error_not_an_import_error(tool):
    proc = subprocess.run([PYTHON, "-I", "-S", os.path.join(ROOT, "python_tools", tool + ".py")],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("ERROR: %s: give a command: " % tool), proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_pull_plan_runs_stdlib_only(tmp_path):
    """`pull.py plan` on an empty layout (no network): asks for the index or manifest first."""
    layout = tmp_path / "layout"
    layout.mkdir()
    digest = "sha256:" + "ab" * 32
    proc, report = bare_run(tmp_path, os.path.join(ROOT, "python_tools", "pull.py"), [
        "plan", "--layout", str(layout), "--digest", digest, "--platform", "linux/amd64"])
    assert report["code"] in (None, 0), proc.stderr
    assert json.loads(proc.stdout) == {"need": [digest]}
    assert outside_stdlib(report) == {}


def test_deb_lock_sources_runs_stdlib_only(tmp_path):
    """`deb_lock.py sources` as deb_repository runs it: the suites' URLs from apt sources."""
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text("deb http://deb.example/debian bookworm main\n")
    proc, report = bare_run(tmp_path, os.path.join(ROOT, "python_tools", "deb_lock.py"), [
        "sources", "--apt_dir", str(apt), "--target", "@debs", "--suite", "bookworm"])
    assert report["code"] in (None, 0), proc.stderr
    assert json.loads(proc.stdout) == {"bookworm": ["http://deb.example/debian"]}
    assert outside_stdlib(report) == {}


def test_deb_lock_probe_runs_stdlib_only(tmp_path):
    """`deb_lock.py probe` (after a failed download): a file:// URL, no network."""
    deb = tmp_path / "x.deb"
    deb.write_bytes(b"not really a deb\n")
    proc, report = bare_run(tmp_path, os.path.join(ROOT, "python_tools", "deb_lock.py"), [
        "probe", "--url=file://" + str(deb)])
    assert report["code"] in (None, 0), proc.stderr
    result = json.loads(proc.stdout)["tried"][0]
    assert result["size"] == deb.stat().st_size and len(result["sha256"]) == 64, result
    assert outside_stdlib(report) == {}
