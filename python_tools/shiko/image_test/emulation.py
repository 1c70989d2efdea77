"""Commands of an image built for another CPU: run through qemu user-mode emulation.

The no-engine driver runs an arm64 image on an amd64 host (and the other way round) by copying
the static emulator (`qemu-aarch64-static`, Debian's qemu-user-static) into the unpacked root
and starting the command through it: binfmt_misc is not needed (it is often unavailable in CI
containers). docker and podman need binfmt_misc for that, so `auto` picks no engine for a
foreign image, and asking for an engine is an error naming the fix.
"""

import os
import platform
import shutil

from python_tools.shiko.image_test.driver import DriverError

# OCI architecture -> the CPU name in qemu's and the kernel's (uname -m) spelling.
CPUS = {
    "amd64": "x86_64",
    "arm64": "aarch64",
    "arm": "arm",
    "386": "i386",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}

# Where the emulator goes inside the unpacked root.
IN_ROOT = "/.shiko-qemu-static"


def foreign(architecture, machine=None):
    """True when an image of `architecture` cannot run natively on this host's CPU."""
    machine = machine or platform.machine()
    cpu = CPUS.get(architecture or "", architecture)
    return bool(architecture) and cpu != machine and not (cpu == "arm" and machine == "aarch64")


def find(architecture, env):
    """The path of the qemu-<cpu>-static that runs `architecture` on this host; DriverError
    naming the package when it is missing."""
    cpu = CPUS.get(architecture, architecture)
    name = "qemu-%s-static" % cpu
    path = shutil.which(name, path=env.get("PATH"))
    if not path:
        raise DriverError("the image is linux/%s and this host is %s: %s is needed to run its "
                          "commands (apt-get install qemu-user-static)" % (
                              architecture, platform.machine(), name))
    return path


def _resolve(root, argv0, env):
    """argv[0] as a path in the image (qemu does no PATH lookup), like execvp would find it."""
    if "/" in argv0:
        return argv0
    path = dict(env).get("PATH") or ""
    for d in path.split(":"):
        if d and os.path.lexists(os.path.join(root, d.lstrip("/"), argv0)):
            return d.rstrip("/") + "/" + argv0
    return argv0  # not found: the emulator fails as exec would (exit 127 from the driver)


def wrap(root, argv, env, emulator):
    """The argv that runs `argv` inside `root` through the emulator (copied into the root)."""
    dst = os.path.join(root, IN_ROOT.lstrip("/"))
    shutil.copyfile(emulator, dst)
    os.chmod(dst, 0o755)
    return [IN_ROOT, _resolve(root, argv[0], env)] + list(argv[1:])
