"""CI machines for the e2e tests: each a fresh Bazel output user root on a shared copy of the
checkout, and what Bazel says about where its actions ran.

    m = Machine(Bazel(tree), "/tmp/x/first", ["--config=ci", "--remote_cache=" + url])
    res = m.build("//examples/...")          # res.seconds: the wall time of the command
    processes(res.stderr)                      # {"remote cache hit": 30, "internal": 12}
    m.read("examples/python_app/image.digest")
    m.shutdown()

Used by test_remote_cache.py, test_grpc_cache.py and test_remote_execution.py.
"""

import json
import os
import re
import time


class Machine:
    """One CI machine: its own output user root, `flags` on every build and run, and its own
    memory of where blobs were pushed (shiko/registry/sources.py): a fresh CI machine does not
    know another's pushes, so none of its pushes mounts from them."""

    def __init__(self, bazel, root, flags=()):
        self.bazel = bazel
        self.startup = ["--output_user_root=" + root]
        self.blob_sources = os.path.join(root, "blob_sources.json")
        self.flags = list(flags)

    def build(self, *args, check=True):
        started = time.monotonic()
        res = self.bazel("build", "--color=no", "--curses=no", *self.flags, *args,
                         startup=self.startup, check=check)
        res.seconds = time.monotonic() - started
        return res

    def run(self, *args, env=None, check=True):
        env = dict(os.environ if env is None else env)
        env.setdefault("SHIKO_BLOB_SOURCES", self.blob_sources)
        return self.bazel("run", "--color=no", "--curses=no", *self.flags, *args,
                          startup=self.startup, env=env, check=check)

    def bin(self, path=""):
        """A path under this machine's bazel-bin."""
        if not hasattr(self, "_bin"):
            self._bin = self.bazel.info("bazel-bin", startup=self.startup)
        return os.path.join(self._bin, path)

    def read(self, path):
        with open(self.bin(path), "rb") as f:
            return f.read()

    def shutdown(self):
        self.bazel("shutdown", startup=self.startup, check=False)


def processes(stderr):
    """{kind: count} of Bazel's `INFO: N processes: ...` summary line."""
    m = re.search(r"INFO: \d+ process(?:es)?: (.*)\.$", stderr, re.M)
    assert m, "no process summary in:\n" + stderr[-2000:]
    out = {}
    for part in m.group(1).split(", "):
        n, kind = part.split(" ", 1)
        out[kind] = int(n)
    return out


def local_mnemonics(log_path):
    """Mnemonics of the spawns that ran on this machine (not cache hits), sorted, from an
    `--execution_log_json_file`."""
    with open(log_path) as f:
        text = f.read().strip()
    spawns = json.loads("[" + re.sub(r"\}\s*\{", "},{", text) + "]") if text else []
    return sorted(s.get("mnemonic", "?") for s in spawns if not s.get("remoteCacheHit"))
