"""What repository rules read from the machine: the environment, a python3, their own name.

Repository rules run on the client, not on workers: they may use the host's python3 (standard
library only) and its pip/apt configuration.
"""

def label_name(rctx):
    """The repository's name as its user wrote it (module extensions give longer canonical names)."""
    return getattr(rctx.attr, "apparent_name", "") or rctx.name

def getenv(rctx, name, default = None):
    """An environment variable, declared as an input where Bazel can (rctx.getenv, Bazel 7.1+)."""
    if hasattr(rctx, "getenv"):
        return rctx.getenv(name, default)
    return rctx.os.environ.get(name, default)

def find_python(rctx, first = "", needs_pip = False):
    """(path, tried): the first of `first`, $SHIKO_PYTHON, python3 on PATH, /usr/bin/python3 that
    exists (and, with needs_pip, runs pip); path is None when none does."""
    candidates = [c for c in [first, getenv(rctx, "SHIKO_PYTHON", "")] if c]
    candidates += ["python3", "/usr/bin/python3"]
    tried = []
    for c in candidates:
        path = rctx.which(c) if not c.startswith("/") else rctx.path(c)
        if not path or not path.exists:
            tried.append(c + " (not found)")
            continue
        if needs_pip and rctx.execute([path, "-m", "pip", "--version"], quiet = True).return_code != 0:
            tried.append(c + " (no pip)")
            continue
        return path, tried
    return None, tried

def file_sha256(rctx, path, scratch):
    """The sha256 of a local file: coreutils' sha256sum, else Bazel itself (a file:// download
    with no expected hash reports the hash it computed, and logs it). `scratch` is a path in the
    repository that is removed afterwards."""
    res = rctx.execute(["sha256sum", str(path)])
    if res.return_code == 0 and len(res.stdout.split(" ")[0]) == 64:
        return res.stdout.split(" ")[0]
    res = rctx.download(["file://%s" % path], output = scratch)
    rctx.delete(scratch)
    return res.sha256

def host_arch(rctx):
    """(arch, raw): the client's CPU as Debian and OCI name it ("amd64", "arm64"; "" for any
    other), and as reported: rctx.os.arch where Bazel has it (5+), else `uname -m`."""
    raw = getattr(rctx.os, "arch", None)
    if not raw:
        res = rctx.execute(["uname", "-m"], quiet = True)
        raw = res.stdout.strip() if res.return_code == 0 else ""
    return {"amd64": "amd64", "x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(raw, ""), raw

def absolute_label(label):
    """A label of rules_shiko as a generated BUILD file must write it (main repo or external)."""
    s = str(label)
    return "@" + s if s.startswith("//") else s
