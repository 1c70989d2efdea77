"""Bad input caught at execution time: each build fails with one clear line naming the target,
attribute and value, and leaves no output behind. (Analysis-time cases: tests/analysis.)"""

import os

import pytest

PKG = "//tests/bad_input"


CASES = [
    # (target, output files that must not exist, substrings of the one error line)
    ("conflict", ["conflict.tar.gz", "conflict.layer.json"],
     ["'/etc/app.conf'", "two different sources at one path",
      "//tests/bad_input:inputs/a.conf", "//tests/bad_input:inputs/b/app.conf"]),
    ("tar_device", ["tar_device.tar.gz", "tar_device.layer.json"],
     ["attribute 'tars'", "dev/sda"]),
    ("tar_absolute", ["tar_absolute.tar.gz"], ["attribute 'tars'", "/etc/shadow"]),
    ("tar_dotdot", ["tar_dotdot.tar.gz"], ["attribute 'tars'", "a/../../escape.txt"]),
    ("tar_dangling_hardlink", ["tar_dangling_hardlink.tar.gz"],
     ["attribute 'tars'", "b/link", "a/missing.txt"]),
    ("override_typo", ["override_typo.tar.gz"], ["attribute 'modes'", "/app/b.conf"]),
    ("corrupt_base", ["corrupt_base", "corrupt_base.digest"],
     ["attribute 'base'", "digest mismatch"]),
    ("base_not_layout", ["base_not_layout", "base_not_layout.digest"],
     ["attribute 'base'", "not an OCI image layout"]),
    ("base_plain_file", ["base_plain_file", "base_plain_file.digest"],
     ["attribute 'base'", "not an OCI image layout"]),
]


@pytest.mark.parametrize("name,outputs,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_clearly(bazel, name, outputs, expected):
    r = bazel("build", "--color=no", "--curses=no", "%s:%s" % (PKG, name), check=False)
    assert r.returncode != 0, "build of %s:%s should fail:\n%s" % (PKG, name, r.stderr[-3000:])
    lines = [l for l in r.stderr.splitlines() if l.startswith("ERROR: %s:%s: " % (PKG, name))]
    assert lines, "no 'ERROR: %s:%s: ...' line in:\n%s" % (PKG, name, r.stderr[-3000:])
    line = lines[0]
    for s in expected:
        assert s in line, "%r not in the error line %r" % (s, line)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    bin_dir = os.path.join(bazel.info("bazel-bin"), "tests", "bad_input")
    for o in outputs:
        path = os.path.join(bin_dir, o)
        if os.path.isdir(path) and not os.path.islink(path):
            # Bazel itself pre-creates a tree artifact's directory; the tool must leave it empty.
            assert os.listdir(path) == [], "%s left behind: %s" % (o, os.listdir(path))
        else:
            assert not os.path.lexists(path), "%s left behind" % o


def test_same_content_at_one_path_is_fine(bazel):
    bazel("build", PKG + ":same_content_ok")
