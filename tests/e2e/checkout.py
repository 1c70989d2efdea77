"""Copies of the checkout for tests that build elsewhere or edit sources (shared helpers).

A copy holds the git-tracked files plus the untracked-but-not-ignored ones (what a commit of
the work tree would hold), so edits made to the checkout meanwhile can't skew a test, and a
test may edit its copy freely. Build a copy with its own output base (`--output_base=`), and
remove it with remove_tree() (Bazel leaves read-only directories behind).
"""

import os
import shutil
import stat
import subprocess


def _fail(message):
    """A clean test failure under pytest; a RuntimeError elsewhere (benchmarks use this too)."""
    try:
        import pytest
    except ImportError:
        raise RuntimeError(message)
    pytest.fail(message, pytrace=False)


def checkout_files(repo_root):
    """Sorted paths (relative) of the tracked and untracked-but-not-ignored files of the checkout."""
    res = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=repo_root,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if res.returncode != 0:
        _fail("git ls-files failed in %s: %s" % (repo_root, res.stderr.decode()))
    names = sorted(set(n for n in res.stdout.decode().split("\0") if n))
    # Tracked files deleted in the work tree are listed by -c too: skip them.
    return [n for n in names if os.path.lexists(os.path.join(repo_root, n))]


def snapshot(repo_root, files, dest):
    """Copy the listed files keeping modes and mtimes (symlinks stay symlinks)."""
    for name in files:
        src = os.path.join(repo_root, name)
        dst = os.path.join(dest, name)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)
    # Some sources are read-only (e.g. third_party shims): keep that, but let us write dirs.
    os.chmod(dest, 0o755)


def copy_checkout(repo_root, dest):
    """A snapshot of the checkout at dest; returns dest."""
    files = checkout_files(repo_root)
    if "WORKSPACE" not in files or "bazelw" not in files:
        _fail("odd checkout at %s: %s" % (repo_root, files[:20]))
    snapshot(repo_root, files, dest)
    return dest


def remove_tree(path):
    """rm -rf that copes with the read-only directories Bazel's output bases hold."""
    if not os.path.lexists(path):
        return
    for root, dirs, files in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            if not os.path.islink(p):
                try:
                    os.chmod(p, os.stat(p).st_mode | stat.S_IRWXU)
                except OSError:
                    pass
    try:
        os.chmod(path, 0o700)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        subprocess.run(["chmod", "-R", "u+w", path], check=False)
        shutil.rmtree(path, ignore_errors=True)
