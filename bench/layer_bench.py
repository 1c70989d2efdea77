"""Benchmark (not a test) of python_tools/layer.py against tar pipelines, with --check.

Generates a ~400 MB mixed tree and a ~60 MB tree of small files in a temporary directory, then
times, in rounds (every tool once per round, the order reversed every other round):
  400 MB tree: tar | igzip -1, tar | zstd -3 -T2 (shell pipelines writing a file) and
               `python -m python_tools.layer` with gzip (level 1) and zstd (level 3), a fresh
               process each time (start-up included);
               with --slow also tar | gzip -6 and Python's stdlib tarfile + gzip level 6;
  60 MB tree:  tar | igzip -1, and layer.py gzip through the persistent-worker protocol (one
               worker process started and warmed up before the rounds, as Bazel keeps it; each
               round is one WorkRequest -> WorkResponse), and as a fresh process.
Prints every round's seconds, CPU seconds and peak RSS, the load average at the start of each
round, a markdown table with the medians, the floor of this machine (`floor()`: the CPU seconds
that reading the tree, compressing it as layer.py does and both sha256 digests take on one thread
each, over the cores: what a writer that hashes can at best reach, to set against each pipeline),
and the targets (ratios of median times; layer.py also computes both sha256 digests, which the
pipelines do not):
  layer.py zstd >= 1.0x `tar | zstd -3 -T2`; layer.py gzip >= 1.3x `tar | igzip -1`;
  small layers, worker >= 1.0x `tar | igzip -1`; (--slow) layer.py gzip >= 8x stdlib tarfile.
With --check the exit status is 1 when a target is missed. --baseline=CHECKOUT also runs another
checkout's layer.py (fresh gzip and zstd, and a worker) in the same rounds, for before/after. It is a benchmark, not a test: run it
by hand before and after touching layer code (never in CI: timings depend on the machine's load).

Run from the repository root with the tools' Python (isal and zstandard installed):
  python bench/layer_bench.py [--size_mb=400] [--small_mb=60] [--repeat=3] [--keep=DIR]
                              [--only=SUBSTR,...] [--slow] [--check] [--baseline=CHECKOUT]
The trees are read once before timing so every tool reads from the page cache.
"""

import argparse
import datetime
import json
import os
import statistics
import random
import resource
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
    sys.path.insert(0, REPO)
    from python_tools.shiko.tar import compression
    fmt, r = compression.open_file(path)
    n = 0
    with r:
        while True:
            b = r.read(1 << 22)
            if not b:
                return n
            n += len(b)


def _wait(p):
    """Waits for a child; returns (peak RSS in MB of it and its waited-for children, CPU s)."""
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise subprocess.CalledProcessError(p.returncode, p.args)
    return ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


def shell(cmd):
    def run(tree, out):
        return _wait(subprocess.Popen(
            ["bash", "-c", "set -o pipefail; " + cmd.format(tree=tree, out=out)]))
    return run


TAR = "tar -C {tree} --sort=name --numeric-owner --owner=0 --group=0 --mtime=@0 -cf - ."


def stdlib_tarfile(tree, out):
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    with tarfile.open(out, "w:gz", compresslevel=6) as tf:
        for name in sorted(os.listdir(tree)):
            tf.add(os.path.join(tree, name), arcname=name)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return None, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime


def _manifest(tree, compression, out):
    m = out + ".manifest.json"
    with open(m, "w") as f:
        json.dump({
            "target": "//bench:layer",
            "compression": compression,
            "compression_level": None,
            "mtime": 0,
            "defaults": {"file_mode": None, "dir_mode": "0755", "uid": 0, "gid": 0},
            "overrides": {},
            "entries": [{"kind": "tree", "dest": "", "src": tree,
                         "origin": {"attr": "files", "label": "//bench:tree"}}],
        }, f)
    # --listing too: the layer rule always asks for it.
    return ["--manifest=" + m, "--output=" + out, "--descriptor=" + out + ".json",
            "--listing=" + out + ".listing.json"]


def _env(repo):
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    return env


def ours(compression, repo=REPO):
    def run(tree, out):
        return _wait(subprocess.Popen(
            [sys.executable, "-m", "python_tools.layer"] + _manifest(tree, compression, out),
            cwd=repo, env=_env(repo)))
    return run


class Worker(object):
    """One `python_tools.layer --persistent_worker` process driven through the worker protocol
    (python_tools/shiko/worker.py), as Bazel drives it."""

    def __init__(self, repo=REPO):
        sys.path.insert(0, REPO)  # the protocol's client side: this checkout's (same wire format)
        from python_tools.shiko import worker as protocol
        self.protocol = protocol
        self.p = subprocess.Popen([sys.executable, "-m", "python_tools.layer",
                                   "--persistent_worker"], cwd=repo, env=_env(repo),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.n = 0

    def _cpu(self):
        with open("/proc/%d/stat" % self.p.pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")

    def _peak_rss(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return None

    def request(self, args):
        self.n += 1
        cpu = self._cpu()
        self.protocol.write_message(self.p.stdin, self.protocol.encode_work_request(args, self.n))
        res = self.protocol.parse_work_response(self.protocol.read_message(self.p.stdout))
        if res["exit_code"] or res["request_id"] != self.n:
            raise RuntimeError("worker request failed: %r" % res)
        return self._peak_rss(), self._cpu() - cpu

    def tool(self, compression):
        def run(tree, out):
            return self.request(_manifest(tree, compression, out))
        return run

    def close(self):
        self.p.stdin.close()
        self.p.wait()


# (name, which tree, kind); the functions are bound in main (the worker is a process).
PIPE_IGZIP = "`tar | igzip -1`"
PIPE_ZSTD = "`tar | zstd -3 -T2`"
OURS_GZIP = "layer.py gzip (level 1)"
OURS_ZSTD = "layer.py zstd (level 3)"
PIPE_GZIP6 = "`tar | gzip -6`"
STDLIB = "stdlib tarfile + gzip 6"
SMALL_PIPE = "small: `tar | igzip -1`"
SMALL_WORKER = "small: layer.py gzip, persistent worker"
SMALL_FRESH = "small: layer.py gzip, fresh process"

# (label, tool, baseline, target: median time of baseline / median time of tool)
TARGETS = [
    ("layer.py zstd vs `tar | zstd -3 -T2`", OURS_ZSTD, PIPE_ZSTD, 1.0),
    ("layer.py gzip vs `tar | igzip -1`", OURS_GZIP, PIPE_IGZIP, 1.3),
    ("small layers: worker vs `tar | igzip -1`", SMALL_WORKER, SMALL_PIPE, 1.0),
    ("layer.py gzip vs stdlib tarfile + gzip 6", OURS_GZIP, STDLIB, 8.0),
]


BASELINE = "baseline: "


def tools(args, worker, baseline_worker=None):
    large = [
        (PIPE_IGZIP, shell(TAR + " | igzip -1 -c > {out}")),
        (PIPE_ZSTD, shell(TAR + " | zstd -q -3 -T2 -c > {out}")),
        (OURS_GZIP, ours("gzip")),
        (OURS_ZSTD, ours("zstd")),
    ]
    if args.slow:
        large += [(PIPE_GZIP6, shell(TAR + " | gzip -6 > {out}")), (STDLIB, stdlib_tarfile)]
    small = [
        (SMALL_PIPE, shell(TAR + " | igzip -1 -c > {out}")),
        (SMALL_WORKER, worker.tool("gzip") if worker else None),
        (SMALL_FRESH, ours("gzip")),
    ]
    if args.baseline:
        b = os.path.abspath(args.baseline)
        large += [(BASELINE + OURS_GZIP, ours("gzip", b)), (BASELINE + OURS_ZSTD, ours("zstd", b))]
        small += [(BASELINE + SMALL_WORKER,
                   baseline_worker.tool("gzip") if baseline_worker else None)]
    out = [(n, fn, "large") for n, fn in large] + [(n, fn, "small") for n, fn in small]
    if args.only:
        out = [t for t in out if any(s in t[0] for s in args.only.split(","))]
    return out


def floor(tree):
    """The least work any layer writer must do on the large tree here, measured on one thread
    each: (seconds, {part: CPU seconds}) per compression, where seconds is the sum of the parts
    over the usable cores (perfect parallelism, no start-up, no hand-offs). The parts: reading
    the files (readinto a reused buffer), compressing the tar exactly as shiko/tar/compression.py
    does (zstd: level 3, 8 MiB frames with checksums; gzip: ISA-L level 1, 1 MiB blocks primed
    with 32 KiB and sync-flushed), and sha256 of the tar and of the blob (both digests). A
    pipeline that does not hash can be faster than this floor: then no layer writer that hashes
    can reach it on this machine."""
    sys.path.insert(0, REPO)
    import hashlib
    from python_tools.shiko.tar import compression as comp
    cores = comp._workers()
    buf = bytearray(1 << 20)
    t = time.process_time()
    for d, _, names in os.walk(tree):
        for n in names:
            p = os.path.join(d, n)
            if os.path.islink(p):
                continue
            with open(p, "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
    read = time.process_time() - t
    data = subprocess.run(["bash", "-c", TAR.format(tree=tree)], stdout=subprocess.PIPE,
                          check=True).stdout
    mv = memoryview(data)

    def cpu(fn):
        t = time.process_time()
        out = fn()
        return time.process_time() - t, out

    sha_tar, _ = cpu(lambda: hashlib.sha256(mv).digest())
    out = {}
    for name in ("zstd", "gzip"):
        sink = type("Sink", (), {"write": lambda self, b: None})()
        if name == "zstd":
            pipe = comp.ZstdPipeline(sink, 3, threads=1)
        else:
            pipe = comp.GzipPipeline(sink, 1, threads=1)
        size = pipe.block_size

        def compress():
            n = 0
            for i in range(0, len(mv), size):
                block = mv[i:i + size]
                n += len(pipe._compress(block, pipe._context(block)))  # freed as it goes
            return n
        c, blob_size = cpu(compress)
        pipe.abort()
        # sha256 takes the same time on any bytes: the blob's size of the tar stands for it.
        sha_blob, _ = cpu(lambda: hashlib.sha256(mv[:blob_size]).digest())
        parts = {"read": read, "compress": c, "sha256 tar": sha_tar, "sha256 blob": sha_blob}
        if name == "gzip":
            parts["crc32"], _ = cpu(lambda: pipe.zlib.crc32(mv))
        out[name] = (sum(parts.values()) / cores, parts, cores)
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size_mb", type=int, default=400)
    ap.add_argument("--small_mb", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", help="use/keep the trees in this directory")
    ap.add_argument("--only", help="comma-separated substrings of tool names to run")
    ap.add_argument("--slow", action="store_true",
                    help="also run `tar | gzip -6` and stdlib tarfile (~16 s each per round)")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 when a ratio of medians is under its target")
    ap.add_argument("--baseline", help="another checkout (e.g. a worktree of main): its layer.py "
                    "runs too, in the same rounds, as `baseline: ...` (not checked)")
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="layer-bench-")
    worker = baseline_worker = None
    try:
        trees = {}
        for kind, mb in (("large", args.size_mb), ("small", args.small_mb)):
            tree = os.path.join(args.keep or base, "tree" if kind == "large" else "small")
            if not os.path.isdir(tree):
                os.makedirs(tree)
                t = time.time()
                what = generate(tree, mb)
                print("generated %s in %.1f s" % (what, time.time() - t), file=sys.stderr)
            print("%s tree: %.1f MB of file content" % (kind, tree_size(tree) / MB),
                  file=sys.stderr)
            # Warm the page cache.
            subprocess.run(["bash", "-c", "tar -C %s -cf - . > /dev/null" % tree], check=True)
            trees[kind] = tree

        names = [n for n, _, _ in tools(args, None)]
        warm = os.path.join(base, "warm.blob")
        if SMALL_WORKER in names:
            worker = Worker()
            worker.request(_manifest(trees["small"], "gzip", warm))  # start-up, imports
        if BASELINE + SMALL_WORKER in names:
            baseline_worker = Worker(os.path.abspath(args.baseline))
            baseline_worker.request(_manifest(trees["small"], "gzip", warm))
        todo = tools(args, worker, baseline_worker)
        times = {n: [] for n, _, _ in todo}
        cpus = {n: [] for n, _, _ in todo}
        rss = {}
        sizes = {}
        loads = []
        print("Rounds (seconds wall / CPU seconds / peak RSS MB):")
        for r in range(args.repeat):
            load = loadavg()
            loads.append(load)
            print("round %d, load average %s:" % (r + 1, load))
            for name, fn, kind in (todo if r % 2 == 0 else todo[::-1]):
                out = os.path.join(base, "out.blob")
                if os.path.exists(out):
                    os.unlink(out)
                subprocess.run(["sync"], check=True)
                t = time.perf_counter()
                peak, cpu = fn(trees[kind], out)
                dt = time.perf_counter() - t
                times[name].append(dt)
                cpus[name].append(cpu)
                if peak is not None:
                    rss[name] = max(rss.get(name, 0), peak)
                print("  %-42s %6.2f s  cpu %5.2f s  rss %s" % (
                    name, dt, cpu, "%.0f MB" % peak if peak is not None else "-"), flush=True)
                if name not in sizes:
                    sizes[name] = (os.path.getsize(out), uncompressed_size(out))
                os.unlink(out)
            sys.stdout.flush()

        cpu = "unknown"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        print()
        print("Date: %s; machine: nproc=%d, CPU %s; Python %s; load average at the start of "
              "each round: %s" % (datetime.date.today().isoformat(), os.cpu_count(), cpu,
                                  sys.version.split()[0], " | ".join(loads)))
        print()
        print("| tool | %s | median (s) | MB/s (tar) | CPU s (median) | peak RSS (MB) | "
              "output (MB) | ratio |" % " | ".join("round %d (s)" % (i + 1)
                                                   for i in range(args.repeat)))
        print("|---|%s---:|---:|---:|---:|---:|---:|" % ("---:|" * args.repeat))
        med = {}
        for name, _, _ in todo:
            med[name] = statistics.median(times[name])
            size, raw = sizes[name]
            print("| %s | %s | %.2f | %.0f | %.2f | %s | %.1f | %.3f |" % (
                name.replace("|", "\\|"), " | ".join("%.2f" % t for t in times[name]),
                med[name], raw / MB / med[name], statistics.median(cpus[name]),
                "%.0f" % rss[name] if name in rss else "-", size / MB, size / raw))
        print()
        missed = []
        for label, tool, baseline, target in TARGETS:
            if tool not in med or baseline not in med:
                continue
            ratio = med[baseline] / med[tool]
            per_round = ", ".join("%.2f" % (b / t) for b, t in zip(times[baseline], times[tool]))
            ok = ratio >= target
            print("- %s: %.2fx on the medians (per round %s), target >= %.2fx: %s" % (
                label, ratio, per_round, target, "met" if ok else "NOT met"))
            if not ok:
                missed.append(label)
        if "large" in {k for _, _, k in todo}:
            print()
            print("Floor on this machine (the work both digests need, on one thread each, "
                  "summed over the cores):")
            floors = floor(trees["large"])
            for name, pipe_name in (("zstd", PIPE_ZSTD), ("gzip", PIPE_IGZIP)):
                secs, parts, cores = floors[name]
                line = "- %s: %.2f s = (%s) CPU s / %d cores" % (
                    name, secs, " + ".join("%s %.2f" % kv for kv in parts.items()), cores)
                if pipe_name in med:
                    line += "; `%s` median %.2f s: at most %.2fx for any writer that hashes" % (
                        pipe_name.strip("`"), med[pipe_name], med[pipe_name] / secs)
                print(line)
        if args.check and missed:
            print("CHECK FAILED: %s" % "; ".join(missed))
            return 1
        return 0
    finally:
        for w in (worker, baseline_worker):
            if w is not None:
                w.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
