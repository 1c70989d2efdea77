"""Size of //examples/distroless:python3 beside a debootstrap minbase root with python3.

    sudo /usr/bin/python3 bench/distroless_size.py [--keep=DIR] [--suite=bookworm]

Run from the repository root, as root (debootstrap needs it; apt-get install debootstrap).
It builds the image with ./bazelw, then measures, for the image and for
`debootstrap --variant=minbase --include=python3 <suite> DIR <mirror>` (the mirror is the
machine's apt source for the suite, read at run time by python_tools/deb_lock.py):

- the uncompressed size: the bytes of an uncompressed tar of the filesystem (for the image, the
  sum of its layers' uncompressed tars); for the root, `tar -cf - .` without /proc, /sys and
  /dev contents, as debootstrap leaves it, and again without apt's package lists and caches
  (/var/lib/apt/lists, /var/cache/apt: debootstrap keeps the .debs it installed there);
- the bytes of regular files (sum of st_size, hardlinks counted once) and the number of files.

Prints a markdown table and the ratio (target: the image at most one third of the root).
"""

import argparse
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from python_tools.shiko.debian import sources as deb_sources  # noqa: E402

TARGET = "//examples/distroless:python3"


def image_sizes():
    subprocess.run([os.path.join(ROOT, "bazelw"), "build", "--output_groups=+layout", TARGET], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    bazel_bin = subprocess.run([os.path.join(ROOT, "bazelw"), "info", "bazel-bin"], cwd=ROOT,
                               check=True, stdout=subprocess.PIPE, text=True,
                               stderr=subprocess.DEVNULL).stdout.strip()
    layout = os.path.join(bazel_bin, "examples", "distroless", "python3")

    def blob(digest):
        with open(os.path.join(layout, "blobs", *digest.split(":")), "rb") as f:
            return f.read()

    index = json.loads(blob_of_index(layout))
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    tar_bytes = compressed = files = file_bytes = 0
    for desc in manifest["layers"]:
        data = blob(desc["digest"])
        compressed += len(data)
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        tar_bytes += len(raw)
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            for m in tf.getmembers():
                if m.isreg():
                    files += 1
                    file_bytes += m.size
    return {"tar": tar_bytes, "compressed": compressed, "files": files, "file_bytes": file_bytes,
            "layers": len(manifest["layers"])}


def blob_of_index(layout):
    with open(os.path.join(layout, "index.json"), "rb") as f:
        return f.read()


def debootstrap_sizes(suite, keep):
    mirror = deb_sources.archive_urls([suite], {})[suite][0]
    target = keep or tempfile.mkdtemp(prefix="shiko-debootstrap-", dir="/var/tmp")
    started = time.monotonic()
    if not os.path.exists(os.path.join(target, "usr", "bin", "python3")):
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", suite, target, mirror],
                       check=True, stdout=subprocess.DEVNULL)
    took = time.monotonic() - started
    # Count like a container image would be: no /proc, /sys, /dev contents. "slim": also without
    # apt's package lists and caches (what Debian's own slim images drop).
    base = ["tar", "-C", target, "--numeric-owner", "--exclude=./proc/*", "--exclude=./sys/*",
            "--exclude=./dev/*"]
    tar = subprocess.run(base + ["-cf", "-", "."], check=True, stdout=subprocess.PIPE).stdout
    slim = subprocess.run(base + ["--exclude=./var/lib/apt/lists/*", "--exclude=./var/cache/apt/*",
                                  "-cf", "-", "."], check=True, stdout=subprocess.PIPE).stdout
    files = file_bytes = 0
    seen = set()
    for d, dirs, names in os.walk(target):
        rel = os.path.relpath(d, target)
        if rel.split(os.sep)[0] in ("proc", "sys", "dev"):
            dirs[:] = []
            continue
        for n in names:
            st = os.lstat(os.path.join(d, n))
            if not os.path.stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            files += 1
            file_bytes += st.st_size
    version = subprocess.run(["chroot", target, "python3", "--version"], stdout=subprocess.PIPE,
                             text=True).stdout.strip()
    if not keep:
        shutil.rmtree(target, ignore_errors=True)
    return {"tar": len(tar), "slim": len(slim), "files": files, "file_bytes": file_bytes, "seconds": took,
            "python": version}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", help="debootstrap into (and reuse) this directory")
    ap.add_argument("--suite", default="bookworm")
    args = ap.parse_args()
    img = image_sizes()
    root = debootstrap_sizes(args.suite, args.keep)
    mb = lambda n: "%.1f" % (n / 1e6)  # noqa: E731
    print("| filesystem | uncompressed tar (MB) | regular files | file bytes (MB) |")
    print("|---|---:|---:|---:|")
    print("| `%s` (%d layers, %s MB gzip) | %s | %d | %s |" % (
        TARGET, img["layers"], mb(img["compressed"]), mb(img["tar"]), img["files"],
        mb(img["file_bytes"])))
    print("| `debootstrap --variant=minbase --include=python3 %s` (%s) | %s | %d | %s |" % (
        args.suite, root["python"], mb(root["tar"]), root["files"], mb(root["file_bytes"])))
    print("| the same root without apt lists and caches (`/var/lib/apt/lists/*`, `/var/cache/apt/*`) "
          "| %s | | |" % mb(root["slim"]))
    for what, size in (("debootstrap root", root["tar"]), ("root without apt lists/caches", root["slim"])):
        ratio = img["tar"] / size
        print("\nimage / %s: %.3f (1/%.1f); target <= 1/3: %s" % (
            what, ratio, 1 / ratio, "met" if ratio <= 1 / 3 else "NOT met"))
    print("(debootstrap took %.0f s)" % root["seconds"], file=sys.stderr)


if __name__ == "__main__":
    main()
