"""Benchmark (not a test) of python_tools/push.py against `skopeo copy`, side by side.

Generates a ~400 MB OCI image layout (gzip layers of random data, so nobody recompresses
anything), then, in one run, for each round:
  cold push      a fresh docker-registry on 127.0.0.1 per tool; push.py (process start-up
                 included) vs `skopeo copy oci:LAYOUT docker://...`;
  HEAD-only      (after the rounds, --head_repeat times per tool, alternating) the same image
                 again to one registry that has it: every blob is HEADed and skipped, the
                 manifest is PUT again (start-up dominates);
  re-push        the same image with its smallest layer changed, to the registry each tool has
                 just filled: push.py vs skopeo, both through a counting proxy
                 (tests/e2e/fault_proxy.py, no faults) that measures the upload bytes.
It prints every round's times, a markdown table (best time of --repeat rounds, MB/s of the
image size, upload bytes; the median of the HEAD-only pushes) and checks the targets: cold
push.py at least as fast as skopeo; the HEAD-only push no slower than skopeo's (medians); the
re-push sends only the changed layer (plus the small config blob).

push.py runs with Python's bytecode cache, as it does by default (and under `bazel run`, whose
runfiles directories are writable): PYTHONDONTWRITEBYTECODE is removed from its environment.

Run from the repository root with the tools' Python (absl-py):
  /tmp/toolsenv/bin/python bench/push_bench.py [--size_mb=400] [--repeat=3] [--keep=DIR] [--jobs=4]
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

import services  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402

MB = 1000 * 1000
# Layer sizes as fractions of the image: a few big ones and the small one that changes.
SHARES = (0.40, 0.25, 0.15, 0.10, 0.06, 0.04)


def cj(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _layer(path, name, size):
    """A tar.gz (stored blocks: random data doesn't compress) holding one file of `size` random bytes."""
    diff = hashlib.sha256()
    blob = hashlib.sha256()

    class Tee(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def writable(self):
            return True

        def write(self, b):
            blob.update(b)
            self.f.write(b)
            return len(b)

    class Hashing(io.RawIOBase):
        def __init__(self, gz):
            self.gz = gz

        def writable(self):
            return True

        def write(self, b):
            diff.update(b)
            self.gz.write(b)
            return len(b)

    with open(path, "wb") as raw:
        tee = Tee(raw)
        with gzip.GzipFile(fileobj=tee, mode="wb", compresslevel=0, mtime=0) as gz:
            h = Hashing(gz)
            with tarfile.open(fileobj=h, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo(name)
                info.size = size
                info.mode = 0o644

                class Src(io.RawIOBase):
                    def __init__(self):
                        self.left = size
                        self.buf = b""

                    def readable(self):
                        return True

                    def readinto(self, b):
                        if self.left <= 0:
                            return 0
                        n = min(len(b), self.left, 1 << 20)
                        b[:n] = os.urandom(n)
                        self.left -= n
                        return n

                tar.addfile(info, io.BufferedReader(Src(), 1 << 20))
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + blob.hexdigest(),
            "size": os.path.getsize(path)}, "sha256:" + diff.hexdigest()


def write_layout(root, layers):
    """layers: [(descriptor, diff_id, path)]. Writes oci-layout, index.json, config, manifest."""
    blobs = os.path.join(root, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    for desc, _, path in layers:
        dst = os.path.join(blobs, desc["digest"][7:])
        if not os.path.exists(dst):
            os.link(path, dst)
    config = cj({"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
                 "config": {"Cmd": ["/bin/true"]},
                 "rootfs": {"type": "layers", "diff_ids": [d for _, d, _ in layers]}})
    cdig = "sha256:" + hashlib.sha256(config).hexdigest()
    with open(os.path.join(blobs, cdig[7:]), "wb") as f:
        f.write(config)
    manifest = cj({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig,
                              "size": len(config)},
                   "layers": [d for d, _, _ in layers]})
    mdig = "sha256:" + hashlib.sha256(manifest).hexdigest()
    with open(os.path.join(blobs, mdig[7:]), "wb") as f:
        f.write(manifest)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    with open(os.path.join(root, "index.json"), "wb") as f:
        f.write(cj({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                        "digest": mdig, "size": len(manifest)}]}))
    return mdig, len(config)


def generate(work, size_mb):
    layers_dir = os.path.join(work, "layers")
    os.makedirs(layers_dir, exist_ok=True)
    layers = []
    for i, share in enumerate(SHARES):
        path = os.path.join(layers_dir, "layer%d.tar.gz" % i)
        layers.append(_layer(path, "data/file%d.bin" % i, int(size_mb * MB * share)) + (path,))
    v1 = os.path.join(work, "v1")
    d1, _ = write_layout(v1, layers)
    # v2: the smallest layer replaced by new content.
    small = len(layers) - 1
    path = os.path.join(layers_dir, "layer%d-v2.tar.gz" % small)
    changed = _layer(path, "data/file%d.bin" % small, int(size_mb * MB * SHARES[small])) + (path,)
    v2 = os.path.join(work, "v2")
    d2, config_size = write_layout(v2, layers[:small] + [changed])
    total = sum(d["size"] for d, _, _ in layers)
    return {"v1": v1, "v2": v2, "digest1": d1, "digest2": d2, "total": total,
            "changed": changed[0]["size"], "config": config_size}


TOOL = [sys.executable, "-m", "python_tools.push"]


def ours(layout, host, jobs, env):
    argv = TOOL + ["--layout", layout, "--repository", host + "/bench/img",
            "--tag", "v", "--jobs", str(jobs), "--progress", "plain"]
    t = time.monotonic()
    res = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    el = time.monotonic() - t
    if res.returncode != 0:
        raise SystemExit("push.py failed:\n" + res.stderr)
    return el, res.stdout.strip().splitlines()[-1].split("@", 1)[1]


def skopeo(layout, host):
    argv = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:" + layout,
            "docker://%s/bench/img:v" % host]
    t = time.monotonic()
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    el = time.monotonic() - t
    if res.returncode != 0:
        raise SystemExit("skopeo failed:\n" + res.stderr)
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "docker://%s/bench/img:v" % host],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    return el, json.loads(out)["Digest"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size_mb", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--head_repeat", type=int, default=9, help="HEAD-only pushes per tool")
    ap.add_argument("--tool", default=None,
                    help="the push command to time instead of `python -m python_tools.push`, e.g. "
                         "bazel-bin/python_tools/push_hermetic (the tools' own Python, as `bazel run` starts it)")
    ap.add_argument("--keep", default=None, help="generate the layouts in (or reuse them from) this directory")
    args = ap.parse_args()
    if args.tool:
        TOOL[:] = [os.path.abspath(args.tool)]

    work = args.keep or tempfile.mkdtemp(prefix="shiko-push-bench-")
    meta_path = os.path.join(work, "meta.json")
    if args.keep and os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
    else:
        t = time.monotonic()
        meta = generate(work, args.size_mb)
        with open(meta_path, "w") as f:
            json.dump(meta, f)
        sys.stderr.write("generated %.1f MB image in %.1f s\n" % (meta["total"] / MB, time.monotonic() - t))
    # Warm the page cache.
    for layout in (meta["v1"], meta["v2"]):
        for dp, _, fns in os.walk(layout):
            for fn in fns:
                with open(os.path.join(dp, fn), "rb") as f:
                    while f.read(1 << 22):
                        pass

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if args.tool:
        # What `bazel run` sets: the launcher's boot.py then keeps the tools' bytecode in
        # ~/.cache/rules_shiko/pycache (written by the first push below, before any HEAD-only one).
        env["BUILD_WORKSPACE_DIRECTORY"] = env["BUILD_WORKING_DIRECTORY"] = REPO
    results = {"ours_cold": [], "skopeo_cold": [], "ours_re": [], "skopeo_re": [], "ours_head": [],
               "skopeo_head": []}
    loads = []
    # Bytecode cache written once, before timing (as a second `bazel run` finds it).
    subprocess.run([sys.executable, "-c", "import python_tools.push"], cwd=REPO, env=env, check=True)
    bytes_re = {}
    try:
        for rnd in range(args.repeat):
            with open("/proc/loadavg") as f:
                loads.append(" ".join(f.read().split()[:3]))
            for tool in ("skopeo", "ours") if rnd % 2 else ("ours", "skopeo"):
                env["SHIKO_BLOB_SOURCES"] = os.path.join(work, "sources-%d-%s.json" % (rnd, tool))
                with services.Registry() as reg:
                    if tool == "ours":
                        el, dig = ours(meta["v1"], reg.host, args.jobs, env)
                    else:
                        el, dig = skopeo(meta["v1"], reg.host)
                    assert dig == meta["digest1"], (tool, dig)
                    results[tool + "_cold"].append(el)
                    with FaultProxy(reg.port) as proxy:
                        if tool == "ours":
                            el, dig = ours(meta["v2"], proxy.host, args.jobs, env)
                        else:
                            el, dig = skopeo(meta["v2"], proxy.host)
                        assert dig == meta["digest2"], (tool, dig)
                        results[tool + "_re"].append(el)
                        bytes_re[tool] = proxy.upload_bytes
                print("round %d (load average %s) %s: cold %.2f s, re-push %.2f s (%d upload bytes)"
                      % (rnd + 1, loads[-1], tool, results[tool + "_cold"][-1], results[tool + "_re"][-1],
                         bytes_re[tool]), flush=True)
        # HEAD-only pushes: short (start-up dominates) and noisy, so many of them, alternating
        # who goes first, both tools against the same registry that already has the image.
        with services.Registry() as reg:
            ours(meta["v1"], reg.host, args.jobs, env)
            for i in range(args.head_repeat):
                for tool in ("skopeo", "ours") if i % 2 else ("ours", "skopeo"):
                    if tool == "ours":
                        el, dig = ours(meta["v1"], reg.host, args.jobs, env)
                    else:
                        el, dig = skopeo(meta["v1"], reg.host)
                    assert dig == meta["digest1"], (tool, dig)
                    results[tool + "_head"].append(el)
            with open("/proc/loadavg") as f:
                head_load = " ".join(f.read().split()[:3])
            print("HEAD-only pushes (load average %s at the end): push.py %s; skopeo %s" % (
                head_load, " ".join("%.3f" % x for x in results["ours_head"]),
                " ".join("%.3f" % x for x in results["skopeo_head"])))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    total = meta["total"]
    print("Image: %.1f MB in %d gzip layers (random data), re-push with the %.1f MB layer changed; %s; "
          "%d cores" % (total / MB, len(SHARES), meta["changed"] / MB,
                        datetime.date.today().isoformat(), os.cpu_count()))
    print()
    print("| tool | cold push (s) | MB/s | HEAD-only push (s, median) | re-push (s) | re-push upload bytes |")
    print("|---|---:|---:|---:|---:|---:|")
    for tool, name in (("ours", "push.py (jobs=%d)" % args.jobs), ("skopeo", "skopeo copy")):
        cold = min(results[tool + "_cold"])
        print("| %s | %.2f | %.0f | %.3f | %.2f | %d |" % (
            name, cold, total / MB / cold, statistics.median(results[tool + "_head"]),
            min(results[tool + "_re"]), bytes_re[tool]))
    print()
    ratio = min(results["skopeo_cold"]) / min(results["ours_cold"])
    print("- cold push at least as fast as skopeo: %s (%.2fx; per round push.py %s, skopeo %s)" % (
        "met" if ratio >= 1 else "NOT met", ratio,
        "/".join("%.2f" % x for x in results["ours_cold"]), "/".join("%.2f" % x for x in results["skopeo_cold"])))
    head = statistics.median(results["skopeo_head"]) / statistics.median(results["ours_head"])
    print("- HEAD-only push no slower than skopeo's: %s (%.2fx on the medians; per round push.py %s, "
          "skopeo %s)" % ("met" if head >= 1 else "NOT met", head,
                          "/".join("%.3f" % x for x in results["ours_head"]),
                          "/".join("%.3f" % x for x in results["skopeo_head"])))
    print("- load average at the start of each round: %s" % " | ".join(loads))
    want = meta["changed"] + meta["config"]
    print("- re-push sends only the changed layer (+ config, %d bytes): %s (push.py sent %d, skopeo %d)" % (
        want, "met" if bytes_re["ours"] == want else "NOT met", bytes_re["ours"], bytes_re["skopeo"]))


if __name__ == "__main__":
    main()
