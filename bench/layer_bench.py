"""Benchmark (not a test) of python_tools/layer.py against tar pipelines and stdlib tarfile.

Generates a ~400 MB mixed tree in a temporary directory, then times, in one run, side by side:
  tar | gzip -6, tar | igzip -1, tar | zstd -3 -T2      (shell pipelines writing a file)
  Python stdlib tarfile + gzip level 6
  python_tools.layer with gzip (default level) and zstd (default level)
and prints a markdown table: tool, seconds, MB/s of the uncompressed tar, output size, ratio.

Run from the repository root with the tools' Python (stdlib + absl-py + isal + zstandard):
  /tmp/toolsenv/bin/python bench/layer_bench.py [--size_mb=400] [--repeat=2] [--keep=DIR]
Each tool runs --repeat times; the best time counts. The tree is read once before timing so
every tool reads from the page cache.
"""

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBDIR = "/usr/lib/x86_64-linux-gnu"
MB = 1000 * 1000

WORDS = ("layer image container digest manifest bazel build rule target config entry file "
         "directory symlink hardlink compress stream thread block sha256 gzip zstd tar "
         "deterministic output input source path mode owner group").split()


def _text(rng, n):
    out = []
    size = 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))
        line = "%s%s = %d  # %s\n" % ("    " * rng.randint(0, 3), rng.choice(WORDS),
                                       rng.randint(0, 99999), line)
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def generate(root, size_mb, seed=1234):
    """Builds the tree; returns a short description."""
    rng = random.Random(seed)
    budget = size_mb * MB
    total = 0
    # 1. Thousands of small text files: real Python sources, then synthetic text.
    n_text = 0
    src_dirs = ["/usr/lib/python3.11", "/usr/lib/python3/dist-packages"]
    for d in src_dirs:
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames.sort()
            for fn in sorted(filenames):
                if not fn.endswith(".py"):
                    continue
                p = os.path.join(dirpath, fn)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                dst = os.path.join(root, "src", os.path.relpath(p, "/usr/lib"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(p, dst)
                total += os.path.getsize(dst)
                n_text += 1
    for i in range(3000):
        d = os.path.join(root, "data", "d%02d" % (i % 40))
        os.makedirs(d, exist_ok=True)
        n = rng.randint(200, 12000)
        with open(os.path.join(d, "f%04d.txt" % i), "wb") as f:
            f.write(_text(rng, n))
        total += n
        n_text += 1
    # 2. Real shared libraries, up to ~45% of the budget.
    n_libs = 0
    libs = sorted(f for f in os.listdir(LIBDIR) if ".so" in f)
    libroot = os.path.join(root, "usr", "lib")
    os.makedirs(libroot, exist_ok=True)
    for f in libs:
        p = os.path.join(LIBDIR, f)
        if os.path.islink(p) or not os.path.isfile(p):
            continue
        if total + os.path.getsize(p) > budget * 0.55:
            continue
        shutil.copyfile(p, os.path.join(libroot, f))
        os.chmod(os.path.join(libroot, f), 0o755)
        total += os.path.getsize(p)
        n_libs += 1
    # 3. Symlinks (relative, inside the tree), like the .so version links.
    n_links = 0
    for f in sorted(os.listdir(libroot))[:300]:
        os.symlink(f, os.path.join(libroot, f + ".link"))
        n_links += 1
    os.symlink("../usr/lib", os.path.join(root, "data", "lib"))
    n_links += 1
    # 4. A few large files: incompressible-ish and compressible, to fill the budget.
    big = os.path.join(root, "big")
    os.makedirs(big)
    left = max(budget - total, 4 * MB)
    incompressible = left * 2 // 5
    for i in range(2):
        with open(os.path.join(big, "random%d.bin" % i), "wb") as f:
            n = incompressible // 2
            # Mostly random with some repetition: like already-compressed assets.
            chunk = 1 << 20
            while n > 0:
                b = rng.randbytes(min(chunk, n))
                f.write(b)
                n -= len(b)
    compressible = left - incompressible
    for i in range(2):
        with open(os.path.join(big, "log%d.txt" % i), "wb") as f:
            n = compressible // 2
            block = _text(rng, 1 << 20)
            while n > 0:
                f.write(block[: min(len(block), n)])
                n -= len(block)
    return ("%d text files, %d shared libraries, %d symlinks, 4 large files (2 random, "
            "2 text)" % (n_text, n_libs, n_links))


def tree_size(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def uncompressed_size(path):
    """Size of the tar inside a blob (gzip, zstd or plain), by streaming decompression."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] == b"\x1f\x8b":
        from isal import igzip
        opener = lambda: igzip.open(path, "rb")
    elif head == b"\x28\xb5\x2f\xfd":
        import zstandard
        opener = lambda: zstandard.open(path, "rb")
    else:
        return os.path.getsize(path)
    n = 0
    with opener() as r:
        while True:
            b = r.read(1 << 22)
            if not b:
                return n
            n += len(b)


def shell(cmd):
    def run(tree, out):
        subprocess.run(["bash", "-c", "set -o pipefail; " + cmd.format(tree=tree, out=out)],
                       check=True)
    return run


TAR = "tar -C {tree} --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -cf - ."


def stdlib_tarfile(tree, out):
    with tarfile.open(out, "w:gz", compresslevel=6) as tf:
        for name in sorted(os.listdir(tree)):
            tf.add(os.path.join(tree, name), arcname=name)


def ours(compression):
    def run(tree, out):
        manifest = {
            "target": "//bench:layer",
            "compression": compression,
            "compression_level": None,
            "mtime": 0,
            "defaults": {"file_mode": None, "dir_mode": "0755", "uid": 0, "gid": 0},
            "overrides": {},
            "entries": [{"kind": "tree", "dest": "", "src": tree,
                         "origin": {"attr": "files", "label": "//bench:tree"}}],
        }
        m = out + ".manifest.json"
        with open(m, "w") as f:
            json.dump(manifest, f)
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        subprocess.run([sys.executable, "-m", "python_tools.layer", "--manifest=" + m,
                        "--output=" + out, "--descriptor=" + out + ".json"],
                       check=True, cwd=REPO, env=env)
    return run


TOOLS = [
    ("`tar | gzip -6`", shell(TAR + " | gzip -6 > {out}")),
    ("`tar | igzip -1`", shell(TAR + " | igzip -1 -c > {out}")),
    ("`tar | zstd -3 -T2`", shell(TAR + " | zstd -q -3 -T2 -c > {out}")),
    ("stdlib tarfile + gzip 6", stdlib_tarfile),
    ("layer.py gzip (level 1)", ours("gzip")),
    ("layer.py zstd (level 3)", ours("zstd")),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size_mb", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", help="use/keep the tree in this directory")
    ap.add_argument("--only", help="comma-separated substrings of tool names to run")
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="layer-bench-")
    try:
        tree = args.keep or os.path.join(base, "tree")
        if not (args.keep and os.path.isdir(tree)):
            os.makedirs(tree, exist_ok=True)
            t = time.time()
            what = generate(tree, args.size_mb)
            print("generated %s in %.1f s" % (what, time.time() - t), file=sys.stderr)
        print("tree: %.1f MB of file content" % (tree_size(tree) / MB), file=sys.stderr)
        # Warm the page cache.
        subprocess.run(["bash", "-c", "tar -C %s -cf - . > /dev/null" % tree], check=True)

        tools = [(n, fn) for n, fn in TOOLS
                 if not args.only or any(s in n for s in args.only.split(","))]
        best = {}
        sizes = {}
        # Rounds over all tools (rather than all repeats of one tool, then the next), so that
        # a burst of load from elsewhere on the machine does not hit only one tool.
        for r in range(args.repeat):
            for name, fn in tools:
                out = os.path.join(base, "out.blob")
                if os.path.exists(out):
                    os.unlink(out)
                subprocess.run(["sync"], check=True)
                t = time.perf_counter()
                fn(tree, out)
                dt = time.perf_counter() - t
                best[name] = min(best.get(name, dt), dt)
                print("round %d: %-28s %6.2f s" % (r + 1, name, dt), file=sys.stderr)
                if name not in sizes:
                    sizes[name] = (os.path.getsize(out), uncompressed_size(out))
                os.unlink(out)
        rows = []
        for name, _ in tools:
            size, raw = sizes[name]
            rows.append((name, best[name], raw / MB / best[name], size, size / raw))

        cpu = "unknown"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        print("Date: %s; machine: nproc=%d, CPU %s; Python %s" % (
            datetime.date.today().isoformat(), os.cpu_count(), cpu, sys.version.split()[0]))
        print()
        print("| tool | seconds | MB/s (uncompressed tar) | output size (MB) | ratio |")
        print("|---|---:|---:|---:|---:|")
        for name, sec, mbps, size, ratio in rows:
            print("| %s | %.2f | %.0f | %.1f | %.3f |" % (name.replace("|", "\\|"), sec, mbps,
                                                       size / MB, ratio))
        speed = {r[0]: r[2] for r in rows}

        def pct(a, b):
            if a in speed and b in speed:
                return speed[a] / speed[b]
            return None

        checks = [
            ("layer.py gzip vs `tar | igzip -1`", pct("layer.py gzip (level 1)",
                                                    "`tar | igzip -1`"), 0.8),
            ("layer.py gzip vs stdlib tarfile + gzip 6", pct("layer.py gzip (level 1)",
                                                           "stdlib tarfile + gzip 6"), 8.0),
            ("layer.py zstd vs `tar | zstd -3 -T2`", pct("layer.py zstd (level 3)",
                                                       "`tar | zstd -3 -T2`"), 0.8),
        ]
        print()
        for label, value, target in checks:
            if value is None:
                continue
            print("- %s: %.2fx (target >= %.2fx): %s" % (
                label, value, target, "met" if value >= target else "NOT met"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
