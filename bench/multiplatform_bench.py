"""Benchmark (not a test): a cold build of one platform next to two (issue #13).

Each round, in a fresh copy of the checkout with a fresh output base (the repository cache is
shared, as on a CI machine that keeps it: no .deb or wheel is downloaded again), builds:
  - one platform:  `./bazelw build //examples/python_app:image`
  - two platforms: `./bazelw build //examples/python_app:index` (linux/amd64 + linux/arm64,
    the arm64 side cross-compiled / picked per platform)
and the same for //examples/static_c (a cross-compiled C binary). Prints every round's wall
times, the load average, and a markdown table of the medians (docs/performance.md).

Run from the repository root:  /usr/bin/python3 bench/multiplatform_bench.py [--rounds=3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))

from checkout import copy_checkout, remove_tree  # noqa: E402

CASES = [
    ("python_app, linux/amd64 (:image)", "//examples/python_app:image"),
    ("python_app, linux/amd64 + linux/arm64 (:index)", "//examples/python_app:index"),
    ("static_c, linux/amd64 (:image)", "//examples/static_c:image"),
    ("static_c, linux/amd64 + linux/arm64 (:index)", "//examples/static_c:index"),
]


def cold_build(target):
    """Wall seconds of a cold `bazel build target` (fresh checkout copy and output base)."""
    work = tempfile.mkdtemp(prefix="shiko-mp-bench-")
    try:
        tree = copy_checkout(REPO, os.path.join(work, "rules_shiko"))
        startup = ["--output_base=" + os.path.join(work, "ob")]
        start = time.monotonic()
        subprocess.run(["./bazelw"] + startup + ["build", target], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.monotonic() - start
        subprocess.run(["./bazelw"] + startup + ["shutdown"], cwd=tree, check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return elapsed
    finally:
        remove_tree(work)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times = {name: [] for name, _ in CASES}
    for r in range(args.rounds):
        for name, target in CASES:
            t = cold_build(target)
            times[name].append(t)
            with open("/proc/loadavg") as f:
                load = f.read().split()[0]
            print("round %d: %s: %.1f s (load %s)" % (r + 1, name, t, load), file=sys.stderr)
    print("| cold build (fresh output base, warm repository cache) | median (s) | rounds (s) |")
    print("|---|---:|---|")
    for name, _ in CASES:
        print("| %s | %.1f | %s |" % (name, statistics.median(times[name]),
                                      " / ".join("%.1f" % t for t in times[name])))


if __name__ == "__main__":
    main()
