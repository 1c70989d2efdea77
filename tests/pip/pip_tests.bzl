"""Unit tests of pip_lock_repository's helpers: lock hashes, which cached wheel pip would take."""

load("@bazel_skylib//lib:unittest.bzl", "asserts", "unittest")
load("//rules/private/repo:pip_repository.bzl", "lock_hashes", "wheel_file_name", "wheel_platform_ok", "wheel_python_ok")

_LOCK = """\
# comment
absl-py==2.5.1 \\
    --hash=sha256:aa
protobuf==6.33.6 \\
    --hash=sha256:bb \\
    --hash=sha256:cc
Zope.Interface==7.0 --hash=sha256:dd
"""

def _lock_test_impl(ctx):
    env = unittest.begin(ctx)
    asserts.equals(env, {"absl_py": ["aa"], "protobuf": ["bb", "cc"], "zope_interface": ["dd"]}, lock_hashes(_LOCK))
    return unittest.end(env)

lock_test = unittest.make(_lock_test_impl)

def _platform_test_impl(ctx):
    env = unittest.begin(ctx)
    want = ["manylinux2014_x86_64"]
    for plat, ok in [
        ("any", True),
        ("manylinux2014_x86_64", True),
        ("manylinux_2_17_x86_64", True),
        ("manylinux_2_5_x86_64", True),
        ("manylinux1_x86_64", True),
        ("manylinux_2_28_x86_64", False),  # needs a newer glibc than manylinux2014's 2.17
        ("manylinux2014_aarch64", False),
        ("musllinux_1_1_x86_64", False),
        ("macosx_11_0_arm64", False),
    ]:
        asserts.equals(env, ok, wheel_platform_ok(plat, want), plat)
    return unittest.end(env)

platform_test = unittest.make(_platform_test_impl)

def _python_test_impl(ctx):
    env = unittest.begin(ctx)
    for interp, abi, ok in [
        ("py3", "none", True),
        ("cp311", "cp311", True),
        ("cp310", "cp310", False),
        ("cp39", "abi3", True),
        ("cp312", "abi3", False),
        ("py2", "none", False),
    ]:
        asserts.equals(env, ok, wheel_python_ok(interp, abi, "3.11"), "%s-%s" % (interp, abi))
    return unittest.end(env)

python_test = unittest.make(_python_test_impl)

def _name_test_impl(ctx):
    env = unittest.begin(ctx)
    asserts.equals(env, "absl_py-2.5.1-py3-none-any.whl", wheel_file_name("absl_py-2.5.1", [("py3", "none", "any")]))
    asserts.equals(
        env,
        "isal-1.7.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        wheel_file_name("isal-1.7.2", [("cp311", "cp311", "manylinux_2_17_x86_64"), ("cp311", "cp311", "manylinux2014_x86_64")]),
    )
    return unittest.end(env)

name_test = unittest.make(_name_test_impl)

def pip_test_suite(name):
    unittest.suite(name, lock_test, platform_test, python_test, name_test)
