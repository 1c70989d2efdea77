"""shiko/image_test/emulation.py: which images need qemu, and the argv that runs them."""

import os

import pytest

from python_tools.shiko.image_test import emulation
from python_tools.shiko.image_test.driver import DriverError


@pytest.mark.parametrize("arch,machine,want", [
    ("amd64", "x86_64", False),
    ("arm64", "x86_64", True),
    ("arm64", "aarch64", False),
    ("amd64", "aarch64", True),
    ("arm", "aarch64", False),  # arm64 CPUs run 32-bit arm code
    ("", "x86_64", False),      # unknown: run as it is
])
def test_foreign(arch, machine, want):
    assert emulation.foreign(arch, machine) is want


def test_missing_emulator_names_the_package(tmp_path):
    with pytest.raises(DriverError) as e:
        emulation.find("riscv64", {"PATH": str(tmp_path)})
    assert "qemu-riscv64-static" in str(e.value) and "qemu-user-static" in str(e.value)


def test_wrap_copies_the_emulator_and_resolves_the_program_in_the_image(tmp_path):
    root = tmp_path / "root"
    (root / "usr" / "bin").mkdir(parents=True)
    os.symlink("python3.11", str(root / "usr" / "bin" / "python3"))  # dangling on the host: fine
    emu = tmp_path / "qemu-aarch64-static"
    emu.write_bytes(b"\x7fELF fake emulator")
    env = [("PATH", "/usr/local/bin:/usr/bin")]
    argv = emulation.wrap(str(root), ["python3", "-c", "x"], env, str(emu))
    assert argv == [emulation.IN_ROOT, "/usr/bin/python3", "-c", "x"]
    copied = root / emulation.IN_ROOT.lstrip("/")
    assert copied.read_bytes() == emu.read_bytes() and os.access(str(copied), os.X_OK)
    # An absolute program is kept; an unknown one is left for exec to fail on.
    assert emulation.wrap(str(root), ["/bin/x"], env, str(emu))[1] == "/bin/x"
    assert emulation.wrap(str(root), ["nope"], env, str(emu))[1] == "nope"
