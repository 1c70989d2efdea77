"""Records (or checks) the sha256 of the tools' Python layouts in layouts.json.

    python3 python_tools/interpreter/layouts.py --repository_cache="$(./bazelw info repository_cache)"
    python3 python_tools/interpreter/layouts.py --repository_cache=... --check

For each architecture of packages.lock.json, does what @rules_shiko_python_<arch> does
(rules/private/repo/tool_python.bzl): unpacks the locked .debs (taken from Bazel's repository
cache, by sha256: build or fetch @rules_shiko_python_<arch> once first), writes the standard
library's zip (with bytecode when the interpreter runs on this machine's CPU, else sources
only) and the deterministic tar of the layout, and records its sha256 under "<arch>/bytecode"
or "<arch>/sources". The repository rule keeps a layout whose sha256 is recorded in the
repository cache, so the next output base extracts it instead of unpacking and compiling.
--check exits 1 (naming the difference) when layouts.json is not what this machine computes.
Standard library only; run it with any python3.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from python_tools.shiko.files import sha256_file  # noqa: E402

TOOL = os.path.join(os.path.dirname(HERE), "tool_python.py")
TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
LOADERS = {"amd64": "ld-linux-x86-64.so.2", "arm64": "ld-linux-aarch64.so.1"}
HOST = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "")


def _run(argv):
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        sys.exit("layouts: %s failed: %s" % (argv[0], res.stderr.strip()))
    return res.stdout.strip()


def layout(lock, arch, cache, work):
    """(key, {sha256, python}) of one architecture's layout, made as the repository rule does."""
    debs = []
    for e in lock["architectures"][arch]["packages"]:
        path = os.path.join(cache, "content_addressable", "sha256", e["sha256"], "file")
        if not os.path.exists(path):
            sys.exit("layouts: %s %s (%s) is not in the repository cache %s: fetch "
                     "@rules_shiko_python_%s once first" % (e["name"], e["version"], arch, cache, arch))
        debs.append(path)
    out = os.path.join(work, arch)
    base = [sys.executable, "-I", "-S", TOOL]
    version = _run(base + ["assemble", "--out", out, "--triplet", TRIPLETS[arch]] + ["--deb=" + d for d in debs])
    zip_args = ["zip", "--out", out, "--version", version]
    if arch == HOST:
        kind = "bytecode"
        _run([os.path.join(out, "lib", LOADERS[arch]), "--library-path", os.path.join(out, "lib"),
              os.path.join(out, "bin", "python" + version), "-I", "-S", "-B", TOOL] + zip_args)
    else:
        kind = "sources"
        _run(base + zip_args + ["--no_pyc"])
    sha = _run(base + ["tar", "--out", out, "--output", os.path.join(work, arch + ".tar")])
    return "%s/%s" % (arch, kind), {"sha256": sha, "python": version}


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repository_cache", required=True)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--lock", default=os.path.join(HERE, "packages.lock.json"))
    ap.add_argument("--layouts", default=os.path.join(HERE, "layouts.json"))
    args = ap.parse_args(argv)
    with open(args.lock) as f:
        lock = json.load(f)
    work = tempfile.mkdtemp(prefix="shiko-layouts-")
    try:
        layouts = dict(layout(lock, arch, args.repository_cache, work) for arch in sorted(lock["architectures"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    want = {
        "_comment": ["The sha256 of the tools' Python layouts (python_tools/interpreter/README.md).",
                     "Rewrite after re-locking or changing the layout code: python3 python_tools/interpreter/layouts.py "
                     "--repository_cache=\"$(./bazelw info repository_cache)\""],
        "lock_sha256": sha256_file(args.lock)[0],
        "layouts": layouts,
    }
    text = json.dumps(want, indent=2, sort_keys=True) + "\n"
    if args.check:
        with open(args.layouts) as f:
            have = json.load(f)
        if have.get("lock_sha256") != want["lock_sha256"]:
            sys.exit("layouts: %s records lock %s, the lock is %s: rewrite it" % (
                args.layouts, have.get("lock_sha256"), want["lock_sha256"]))
        for key, value in layouts.items():
            if have.get("layouts", {}).get(key) != value:
                sys.exit("layouts: %s: %s records %s, this machine makes %s: rewrite it" % (
                    key, args.layouts, have.get("layouts", {}).get(key), value))
        print("layouts: %s matches (%s)" % (args.layouts, ", ".join(sorted(layouts))))
        return 0
    with open(args.layouts, "w") as f:
        f.write(text)
    print("layouts: wrote %s (%s)" % (args.layouts, ", ".join("%s %s" % (k, v["sha256"][:12]) for k, v in sorted(layouts.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
