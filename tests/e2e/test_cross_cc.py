"""C/C++ cross-compilation for linux/arm64 (//toolchains/cc), checked by running the results.

`--platforms=//platforms:linux_arm64` must give static aarch64 ELF executables (C and C++) that
qemu-aarch64-static runs on this x86-64 machine; the host build must keep Bazel's own x86-64
compiler; a py_binary must build for arm64 (Bazel 4.2.3's native py_binary needs a C/C++
toolchain for its target platform); a platform no toolchain targets must fail, never fall back to
the host compiler; and the toolchain's builtin include directories must cover what the installed
cross compiler really searches.
"""

import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import run, tool

ARM64 = "--platforms=//platforms:linux_arm64"
EM_X86_64 = 62
EM_AARCH64 = 183
PT_INTERP = 3


def elf_header(path):
    """(e_machine, has PT_INTERP) of a 64-bit little-endian ELF file; fails on anything else."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"\x7fELF", "%s is not an ELF file" % path
    assert data[4] == 2 and data[5] == 1, "%s is not a 64-bit little-endian ELF" % path
    machine = int.from_bytes(data[18:20], "little")
    phoff = int.from_bytes(data[32:40], "little")
    phentsize = int.from_bytes(data[54:56], "little")
    phnum = int.from_bytes(data[56:58], "little")
    types = [int.from_bytes(data[phoff + i * phentsize:phoff + i * phentsize + 4], "little")
             for i in range(phnum)]
    return machine, PT_INTERP in types


def built(bazel, tmp_path, label, *flags):
    """Builds `label` with `flags` and returns a private copy of its executable.

    The bin directory comes from `bazel info bazel-bin` with the same flags (it takes build
    options), whatever the Bazel version names the configuration's output directory."""
    bazel("build", label, *flags)
    package, name = label.lstrip("/").split(":")
    bin_dir = bazel("info", "bazel-bin", *flags).stdout.strip()
    dst = tmp_path / name
    shutil.copyfile(os.path.join(bin_dir, package, name), dst)
    os.chmod(dst, 0o755)
    return dst


def qemu_run(binary):
    return run([tool("qemu-aarch64-static", "qemu-user-static"), binary]).stdout


def test_static_c_hello_is_a_static_aarch64_executable_that_runs_under_qemu(bazel, tmp_path):
    hello = built(bazel, tmp_path, "//examples/static_c:hello", ARM64)
    machine, dynamic = elf_header(hello)
    assert machine == EM_AARCH64, "e_machine %d, expected %d (aarch64)" % (machine, EM_AARCH64)
    assert not dynamic, "the arm64 hello has a PT_INTERP: it is not statically linked"
    # Not runnable natively (no binfmt_misc here): qemu runs it.
    with pytest.raises(OSError):
        subprocess.run([str(hello)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert qemu_run(hello) == "hello from rules_shiko\n"


def test_cxx_cross_compiles_with_libstdcxx_and_runs_under_qemu(bazel, tmp_path):
    hello = built(bazel, tmp_path, "//tests/cross_cc:hello_cxx", ARM64)
    machine, dynamic = elf_header(hello)
    assert (machine, dynamic) == (EM_AARCH64, False)
    assert qemu_run(hello) == "hello from rules_shiko in C++\n"


def test_host_build_keeps_the_host_compiler(bazel, tmp_path):
    hello = built(bazel, tmp_path, "//examples/static_c:hello")
    machine, dynamic = elf_header(hello)
    assert (machine, dynamic) == (EM_X86_64, False), "the host hello is not a static x86-64 ELF"
    assert run([hello]).stdout == "hello from rules_shiko\n"


def test_py_binary_builds_for_arm64_with_the_cross_toolchain(bazel):
    label = "//examples/python_app:python_app"
    res = bazel("build", ARM64, label)
    assert "Build completed successfully" in res.stderr
    # Bazel 4.2.3's native py_binary depends on the C/C++ toolchain of its target platform:
    # for arm64 that is ours, and for a platform with none the py_binary can't be built.
    deps = bazel("cquery", ARM64, "deps(%s, 1)" % label).stdout
    assert "//toolchains/cc:linux_arm64_gcc_cc_toolchain" in deps, deps
    assert "local_config_cc" not in deps, deps
    res = bazel("build", "--platforms=//tests/cross_cc:linux_riscv64", label, check=False)
    assert res.returncode != 0 and "No matching toolchains found" in res.stderr, res.stderr[-2000:]


def test_platform_without_toolchain_fails_instead_of_using_the_host_compiler(bazel):
    res = bazel("build", "--platforms=//tests/cross_cc:linux_riscv64", "//examples/static_c:hello",
                check=False)
    assert res.returncode != 0, "a cc_binary built for riscv64 with no riscv64 toolchain"
    assert "No matching toolchains found" in res.stderr, res.stderr[-2000:]
    assert "tools/cpp:toolchain_type" in res.stderr, res.stderr[-2000:]


def search_dirs(driver, language):
    """The `#include <...>` directories `driver -E -v` prints for `language`, normalized."""
    res = run([tool(driver, "g++-aarch64-linux-gnu"), "-x", language, "-E", "-v", "/dev/null"])
    m = re.search(r"#include <\.\.\.> search starts here:\n(.*?)End of search list", res.stderr, re.S)
    assert m, "no include search list in `%s -E -v`:\n%s" % (driver, res.stderr)
    return [os.path.normpath(line.strip()) for line in m.group(1).splitlines() if line.strip()]


def test_builtin_include_directories_cover_the_installed_cross_compiler(bazel):
    out = bazel("query", "--output=build", "//toolchains/cc:linux_arm64_gcc_config").stdout
    m = re.search(r"builtin_include_directories = \[(.*?)\]", out, re.S)
    assert m, out
    declared = re.findall(r'"([^"]+)"', m.group(1))
    assert declared, out
    dirs = search_dirs("aarch64-linux-gnu-gcc", "c") + search_dirs("aarch64-linux-gnu-g++", "c++")
    assert any(d.startswith("/usr/aarch64-linux-gnu/include") for d in dirs), dirs
    uncovered = [d for d in dirs
                 if not any(d == p or d.startswith(p.rstrip("/") + "/") for p in declared)]
    assert not uncovered, "the cross compiler searches %s, not under %s" % (uncovered, declared)
    for d in dirs:
        assert stat.S_ISDIR(os.stat(d).st_mode), d
