"""Benchmark (not a test) of python_tools/load.py: streaming into an engine vs tarball + `load -i`.

Builds an image whose one gzip layer holds ~--size_mb of real files (shared libraries from
/usr/lib/x86_64-linux-gnu, then random bytes), then per round, each against a fresh private
engine (dockerd on a private socket; podman with private storage when --podman):
  A. tarball tool writes image.tar, then `docker load -i image.tar`      (two steps, disk)
  B. load tool streams the same archive into the engine                  (one step, no disk)
  C. load tool again, the image being present                            (re-tag only)
and prints a markdown table: step, seconds (best of --repeat), bytes written to disk, peak RSS
of the tool.

Run from the repository root, as root, with the tools' Python (absl-py, isal):
  /tmp/toolsenv/bin/python bench/load_bench.py [--size_mb=300] [--repeat=3] [--podman]
"""

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from python_tools.tests import engines  # noqa: E402

LIBDIR = "/usr/lib/x86_64-linux-gnu"
MB = 1000 * 1000


def make_layer(work, size_mb):
    from isal import igzip

    raw = os.path.join(work, "layer.tar")
    budget = size_mb * MB
    total = 0
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as t:
        for fn in sorted(os.listdir(LIBDIR)):
            p = os.path.join(LIBDIR, fn)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            size = os.path.getsize(p)
            if total + size > budget * 0.7:
                continue
            ti = t.gettarinfo(p, "usr/lib/" + fn)
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = 0
            with open(p, "rb") as f:
                t.addfile(ti, f)
            total += size
        rnd = random.Random(1).randbytes(budget - total)
        ti = tarfile.TarInfo("data/random.bin")
        ti.size = len(rnd)
        t.addfile(ti, io.BytesIO(rnd))
    blob = os.path.join(work, "layer.tgz")
    with open(raw, "rb") as src, igzip.open(blob, "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    import hashlib

    def sha(path):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
        return "sha256:" + h.hexdigest()

    desc = {"mediaType": engines.GZIP_LAYER, "digest": sha(blob), "size": os.path.getsize(blob),
            "diff_id": sha(raw), "compression": "gzip", "compressor": "isal level 1"}
    os.unlink(raw)
    os.chmod(blob, 0o444)
    return {"blob": blob, "descriptor": engines.write_json(os.path.join(work, "layer.json"), desc), "label": "//bench:layer"}


# Runs argv[2:] and writes its peak RSS (KiB) to argv[1], forked from a small interpreter (Linux
# keeps the highest RSS across exec: forking from this big process would count its memory).
RSS_WRAPPER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def timed(argv, env, cwd):
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in sys.path if p])
    rss_file = os.path.join(cwd, "maxrss")
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-c", RSS_WRAPPER, rss_file] + argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.monotonic() - start
    if p.returncode != 0:
        raise SystemExit("%s failed:\n%s%s" % (argv, p.stdout, p.stderr))
    with open(rss_file) as f:
        return elapsed, int(f.read())


def round_once(work, layout, engine):
    tags = engines.write_json(os.path.join(work, "run.json"), {"target": "//bench:load", "repo_tags": ["bench/app:1"]})
    tar_manifest = engines.write_json(os.path.join(work, "tar.json"), {"target": "//bench:tar", "layout": layout,
                                                                     "repo_tags": ["bench/app:1"], "stamp": None})
    tar = os.path.join(work, "image.tar")
    py = sys.executable
    res = {}

    def fresh():
        return engines.Dockerd(work) if engine == "docker" else engines.Podman(work)

    def cli(e):
        return ([e.cli] if engine == "docker" else [e.podman]), e.env()

    with fresh() as e:
        argv, env = cli(e)
        t1, rss1 = timed([py, "-m", "python_tools.tarball", "--manifest=" + tar_manifest, "--output=" + tar], env, work)
        t2, _ = timed(argv + ["load", "-i", tar], env, work)
        res["A"] = (t1 + t2, os.path.getsize(tar), rss1, "tarball %.2fs + load -i %.2fs" % (t1, t2))
        os.unlink(tar)
    with fresh() as e:
        _, env = cli(e)
        flags = ["--engine=" + engine]
        t, rss = timed([py, "-m", "python_tools.load", "--run_manifest=" + tags, "--layout=" + layout] + flags, env, work)
        res["B"] = (t, 0, rss, "")
        t, rss = timed([py, "-m", "python_tools.load", "--run_manifest=" + tags, "--layout=" + layout] + flags, env, work)
        res["C"] = (t, 0, rss, "")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size_mb", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--podman", action="store_true", help="also measure podman")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="shiko-loadbench-")
    try:
        layer = make_layer(work, args.size_mb)
        layout, _, _ = engines.build_image(work, "layout", engines.image_manifest(layers=[layer], cmd=["/x"]))
        print("layer: %.1f MB gzip (%d MB of files)" % (os.path.getsize(layer["blob"]) / MB, args.size_mb))
        for engine in ["docker"] + (["podman"] if args.podman else []):
            best = {}
            for i in range(args.repeat):
                r = round_once(work, layout, engine)
                sys.stderr.write("%s round %d: %s\n" % (engine, i + 1, {k: round(v[0], 2) for k, v in r.items()}))
                for k, v in r.items():
                    if k not in best or v[0] < best[k][0]:
                        best[k] = v
            names = {
                "A": "tarball.py → image.tar, then `%s load -i`" % engine,
                "B": "load.py --engine=%s (streamed)" % engine,
                "C": "load.py again (image present: re-tag)",
            }
            print("\n| %s: step | seconds | bytes written to disk | tool peak RSS (MB) |" % engine)
            print("|---|---:|---:|---:|")
            for k in "ABC":
                t, disk, rss, note = best[k]
                print("| %s%s | %.2f | %d | %.0f |" % (names[k], (" (%s)" % note) if note else "", t, disk, rss / 1024))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
