"""Check (not a test): this checkout's layer.py writes the same bytes as another checkout's.

For changes to the layer writer that must not change any output (speed work): every layer
blob, descriptor and listing is compared byte for byte between this checkout and
`--baseline` (e.g. a `git worktree` or `git archive` of main), on
  - the trees of bench/layer_bench.py (`--keep=DIR`: DIR/small and DIR/tree, when present),
  - a generated tree of edge cases (scripts, ELF heads, empty and 1-byte files, sizes around
    the 512-byte blocks and the 1 MiB / 8 MiB buffers, names over 100 bytes, names that are
    not UTF-8, symlinks kept and followed, a file at two paths (hardlinks), overrides,
    executable hints, an imported tar),
each with gzip, zstd and none, every layer.py run as a fresh process; and with `--tests`,
the layers the unit tests build (python_tools/tests/test_layer.py and test_report.py of the
baseline, run once on each checkout's code with this module as a pytest plugin that records
the sha256 of every output build_layer writes).

  python bench/layer_compare.py --baseline=/var/tmp/main [--keep=/var/tmp/lb] [--tests]

Prints one line per case and `SAME` or `DIFFERENT`; exits 1 on any difference.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.dirname(os.path.abspath(__file__))


def _write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def edge_tree(root, seed=7):
    """Writes the tree of edge cases under root/t; returns the extra sources (files, a tar)."""
    rng = random.Random(seed)
    t = os.path.join(root, "t")
    heads = [b"#!/bin/sh\n", b"\x7fELF\x02\x01", b"#", b"#!", b"\x7fEL", b"\x7fELF", b"plain",
             b"", b"x"]
    for i, h in enumerate(heads):
        _write(os.path.join(t, "heads", "h%02d" % i), h + b"tail" * (i % 3), 0o755 if i % 2 else 0o644)
    # Sizes around the 512-byte blocks and the 1 MiB (gzip) / 8 MiB (zstd) buffers.
    sizes = [0, 1, 2, 3, 4, 5, 511, 512, 513, 1023, 1024, 1025, (1 << 20) - 1024, (1 << 20) - 512,
             (1 << 20) - 511, 1 << 20, (1 << 20) + 1, 3 << 19, (8 << 20) - 512, (8 << 20) + 7]
    sizes += [rng.randint(0, 40000) for _ in range(300)] + [rng.randint(0, 3 << 20) for _ in range(12)]
    for i, n in enumerate(sizes):
        head = rng.choice([b"#!/usr/bin/env python3\n", b"\x7fELF", b"data ", b""])
        body = (head + rng.randbytes(n // 3) + b"text " * (n // 5))[:n]
        body += b"z" * (n - len(body))
        _write(os.path.join(t, "sizes", "d%d" % (i % 7), "s%04d.bin" % i), body)
    long_dir = os.path.join(t, "long", "d" * 60, "e" * 60)
    _write(os.path.join(long_dir, "f" * 90), b"#!/bin/sh\nlong\n")
    _write(os.path.join(t, "long", "n" * 100), b"exactly one hundred\n")
    os.symlink("../" + "n" * 100, os.path.join(t, "long", "d" * 60, "l" * 99))
    raw = os.fsencode(t) + b"/utf8/caf\xe9"
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    with open(raw, "wb") as f:
        f.write(b"#!latin-1 name\n")
    _write(os.path.join(t, "utf8", "caf\u00e9", "\u65e5\u672c"), b"unicode\n")
    _write(os.path.join(t, "utf8", "back\\slash"), b"\\\n")
    _write(os.path.join(t, "a-b", "x"), b"sorting: '-' < '/'\n")
    _write(os.path.join(t, "a", "b"), b"a/b\n")
    _write(os.path.join(t, "a.b"), b"a.b\n")
    os.symlink("../heads/h00", os.path.join(t, "a", "inside"))          # kept
    os.symlink(os.path.join(t, "a.b"), os.path.join(t, "a", "absolute"))  # followed
    os.symlink("../a-b", os.path.join(t, "a", "dirlink"))               # kept (a directory)
    os.link(os.path.join(t, "heads", "h00"), os.path.join(t, "heads", "hardlinked"))
    ext = os.path.join(root, "ext")
    _write(os.path.join(ext, "script"), b"#!/bin/sh\necho hi\n")
    _write(os.path.join(ext, "data"), b"data\n" * 1000)
    _write(os.path.join(ext, "big"), rng.randbytes(3 << 20))
    tar_path = os.path.join(root, "base.tar.gz")
    with tarfile.open(tar_path, "w:gz") as tf:
        for name, data, mode in (("etc/passwd", b"root:x:0:0\n", 0o644),
                                 ("usr/bin/tool", b"\x7fELF...", 0o755),
                                 ("usr/share/doc/readme", b"doc\n" * 500, 0o600)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid = len(data), mode, 1000, 1000
            tf.addfile(info, __import__("io").BytesIO(data))
    return t, ext, tar_path


def _origin(label, attr="files"):
    return {"attr": attr, "label": label}


def manifests(bench_trees, root):
    """(name, manifest without compression) for every case."""
    out = [("bench " + os.path.basename(tree), [{"kind": "tree", "dest": "", "src": tree,
                                                 "origin": _origin("//bench:tree")}], {}, {})
           for tree in bench_trees]
    t, ext, tar_path = edge_tree(root)
    tree = {"kind": "tree", "dest": "opt/t", "src": t, "origin": _origin("//edge:tree")}
    files = [
        {"kind": "file", "dest": "bin/script", "src": os.path.join(ext, "script"), "origin": _origin("//edge:script")},
        {"kind": "file", "dest": "bin/script2", "src": os.path.join(ext, "script"), "origin": _origin("//edge:script")},
        {"kind": "file", "dest": "bin/script3", "src": os.path.join(ext, "script"), "executable": False,
         "origin": _origin("//edge:hinted")},
        {"kind": "file", "dest": "share/data", "src": os.path.join(ext, "data"), "executable": True,
         "origin": _origin("//edge:data")},
        {"kind": "file", "dest": "share/data2", "src": os.path.join(ext, "data"), "origin": _origin("//edge:data")},
        {"kind": "file", "dest": "share/big", "src": os.path.join(ext, "big"), "origin": _origin("//edge:big")},
        {"kind": "file", "dest": "aa/big", "src": os.path.join(ext, "big"), "origin": _origin("//edge:big")},
        {"kind": "symlink", "dest": "bin/sh", "target": "busybox", "origin": _origin("//edge:links", "symlinks")},
        {"kind": "dir", "dest": "var/log/app", "origin": _origin("//edge:dirs", "dirs")},
        {"kind": "tar", "dest": "", "src": tar_path, "origin": _origin("//edge:base.tar", "tars")},
        {"kind": "tree", "dest": "opt/t2/heads", "src": os.path.join(t, "heads"), "origin": _origin("//edge:heads")},
    ]
    out.append(("edge tree", [tree], {}, {}))
    out.append(("edge tree + files", [tree] + files, {}, {}))
    out.append(("edge, overrides", [tree] + files, {}, {
        "bin/script2": {"mode": "0700"}, "opt/t/heads/h00": {"mode": "0755"},
        "opt/t2/heads/h00": {"mode": "0644"}, "share/data2": {"mode": "0755"},
        "usr/bin/tool": {"uid": 0, "gid": 0}, "opt/t/a": {"mode": "0700", "uid": 5}}))
    out.append(("edge, file_mode 0640 uid 65532", [tree] + files,
                {"file_mode": "0640", "uid": 65532, "gid": 65532, "dir_mode": "0750"}, {}))
    out.append(("edge, pax ids and mtime", [tree] + files,
                {"uid": (1 << 21) + 5, "gid": 7}, {"opt/t/a.b": {"gid": 1 << 22}}))
    return out


def run_layer(repo, python, m, out):
    mp = out + ".manifest.json"
    with open(mp, "w") as f:
        json.dump(m, f)
    env = dict(os.environ, PYTHONPATH=repo)
    subprocess.run([python, "-m", "python_tools.layer", "--manifest=" + mp, "--output=" + out,
                    "--descriptor=" + out + ".json", "--listing=" + out + ".listing.json"],
                   cwd=repo, env=env, check=True)
    got = []
    for p in (out, out + ".json", out + ".listing.json"):
        with open(p, "rb") as f:
            got.append(hashlib.sha256(f.read()).hexdigest())
        os.unlink(p)
    return got


def compare_layers(args, work):
    bench_trees = [os.path.join(args.keep, n) for n in ("small", "tree")
                   if args.keep and os.path.isdir(os.path.join(args.keep, n))]
    bad = 0
    for name, entries, defaults, overrides in manifests(bench_trees, work):
        for comp in ("gzip", "zstd", "none"):
            d = {"file_mode": None, "dir_mode": "0755", "uid": 0, "gid": 0}
            d.update(defaults)
            m = {"target": "//edge:layer", "compression": comp, "compression_level": None,
                 "mtime": {"edge, overrides": 1700000000, "edge, pax ids and mtime": 1 << 34}.get(name, 0), "defaults": d,
                 "overrides": overrides, "entries": entries}
            old = run_layer(os.path.abspath(args.baseline), args.python, m, os.path.join(work, "old"))
            new = run_layer(REPO, args.python, m, os.path.join(work, "new"))
            same = old == new
            bad += not same
            print("%-34s %-5s blob %s  %s" % (name, comp, new[0][:12], "SAME" if same else
                                                "DIFFERENT (blob, descriptor, listing: %s)" % (
                                                    ["same" if a == b else "differ"
                                                     for a, b in zip(old, new)])), flush=True)
    return bad


# ---------------------------------------------------------------------------------------------
# pytest plugin (`-p layer_compare`): records every build_layer output of a test run.

_current = {"test": None, "n": 0}
_records = []


def pytest_configure(config):
    from python_tools.shiko.files import canonical_json
    from python_tools.shiko.layer import build

    real = build.build_layer

    def recording(manifest, output, *a, **kw):
        desc, listing = real(manifest, output, *a, **kw)
        with open(output, "rb") as f:
            blob = hashlib.sha256(f.read()).hexdigest()
        lst = listing.json() if hasattr(listing, "json") else canonical_json(listing)
        _current["n"] += 1
        _records.append([_current["test"], _current["n"], manifest.get("compression"), blob,
                         hashlib.sha256(canonical_json(desc)).hexdigest(),
                         hashlib.sha256(lst).hexdigest()])
        # The baseline's tests take the listing as a list of dicts.
        return desc, (listing.entries() if hasattr(listing, "entries") else listing)

    build.build_layer = recording


def pytest_runtest_setup(item):
    _current["test"] = item.nodeid
    _current["n"] = 0
    # Tests that write os.urandom bytes get the same bytes in both runs.
    rng = random.Random(item.nodeid)
    os.urandom = lambda n: rng.randbytes(n)


def pytest_unconfigure(config):
    with open(os.environ["LAYER_COMPARE_RECORD"], "w") as f:
        json.dump(_records, f, indent=0)


def compare_tests(args, work):
    base = os.path.abspath(args.baseline)
    tests = ("test_layer.py", "test_report.py")
    recs = {}
    for name, repo in (("baseline", base), ("this checkout", REPO)):
        # The baseline's tests on this checkout's code: a copy of its python_tools/ with the
        # baseline's test files (pytest puts the copy's root first on sys.path).
        run = os.path.join(work, name.replace(" ", "_"))
        shutil.copytree(os.path.join(repo, "python_tools"), os.path.join(run, "python_tools"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for t in tests:
            shutil.copy(os.path.join(base, "python_tools", "tests", t),
                        os.path.join(run, "python_tools", "tests", t))
        rec = os.path.join(work, name.replace(" ", "_") + ".json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([run, BENCH]), LAYER_COMPARE_RECORD=rec,
                   PYTHONDONTWRITEBYTECODE="1")
        r = subprocess.run([args.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                            "layer_compare"] + [os.path.join("python_tools", "tests", t) for t in tests],
                           cwd=run, env=env, stdout=subprocess.PIPE, universal_newlines=True)
        print("%s code, baseline tests: %s" % (name, (r.stdout.strip().splitlines() or ["?"])[-1]))
        with open(rec) as f:
            recs[name] = {(r[0], r[1]): r[2:] for r in json.load(f)}
    old, new = recs["baseline"], recs["this checkout"]
    bad = 0
    for k in sorted(set(old) | set(new)):
        if k not in old or k not in new:
            # A test that fails on one side (e.g. one that counts reads) stops before its next
            # build_layer call: nothing to compare, but shown.
            print("NOT COMPARED (only on the %s side): %s call %d" % (
                "baseline" if k in old else "new", k[0], k[1]))
        elif old[k] != new[k]:
            bad += 1
            print("DIFFERENT: %s call %d: %s vs %s" % (k[0], k[1], old[k], new[k]))
    both = len(set(old) & set(new))
    print("unit tests' layers: %d build_layer calls compared, %d different: %s" % (
        both, bad, "SAME" if not bad and both else "DIFFERENT"))
    return bad + (not both)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="the checkout to compare with")
    ap.add_argument("--keep", help="bench/layer_bench.py's --keep directory (its trees)")
    ap.add_argument("--tests", action="store_true", help="also compare the unit tests' layers")
    ap.add_argument("--python", default=sys.executable)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="layer-compare-")
    try:
        bad = compare_layers(args, work)
        if args.tests:
            bad += compare_tests(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("ALL SAME" if not bad else "DIFFERENCES: %d" % bad)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
