"""Image platforms (`{"os", "architecture", "variant"}`): parsing, comparing, printing."""

# The variant a platform without one means (as containerd and docker match them).
DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


def parse(value):
    """`os/architecture[/variant]` -> {"os", "architecture", "variant" ("" when absent)}."""
    parts = (value or "").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError("platform %r is not os/architecture[/variant], e.g. linux/amd64" % value)
    return {"os": parts[0], "architecture": parts[1], "variant": parts[2] if len(parts) == 3 else ""}


def key(p):
    """(os, architecture, variant) to compare platforms: a missing variant is the default one."""
    arch = p.get("architecture") or ""
    variant = p.get("variant") or DEFAULT_VARIANTS.get(arch, "")
    return (p.get("os") or "", arch, variant)


def to_str(p):
    """`os/architecture[/variant]`, with `?` for a missing os or architecture."""
    parts = [p.get("os") or "?", p.get("architecture") or "?"]
    if p.get("variant"):
        parts.append(p["variant"])
    return "/".join(parts)


# uname -m -> OCI architecture.
_MACHINES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
             "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def host(machine=None):
    """This machine's platform, e.g. {"os": "linux", "architecture": "amd64", "variant": ""}."""
    import platform as _platform
    m = machine or _platform.machine()
    return {"os": "linux", "architecture": _MACHINES.get(m, m), "variant": ""}
