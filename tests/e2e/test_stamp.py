"""Stamping: {BUILD_*} placeholders expand only under --stamp (or stamp = 1); unstamped builds
stay reproducible."""

import json
import os
import re
import tarfile
import time


def _outputs(bazel, name):
    base = os.path.join(bazel.info("bazel-bin"), "tests", "stamp")
    cfg = json.load(open(os.path.join(base, name + ".config.json")))
    man = json.load(open(os.path.join(base, name + ".manifest.json")))
    digest = open(os.path.join(base, name + ".digest")).read().strip()
    return base, cfg, man, digest


def test_unstamped_then_stamped(bazel):
    bazel("build", "--nostamp", "--output_groups=+tarball", "//tests/stamp:stamped")
    base, cfg, man, digest1 = _outputs(bazel, "stamped")
    assert cfg["config"]["Labels"]["build.timestamp"] == "0"
    assert cfg["config"]["Labels"]["build.user"] == "unstamped"
    assert cfg["created"] == "1970-01-01T00:00:00Z"
    with tarfile.open(os.path.join(base, "stamped.tar")) as t:
        tags = json.load(t.extractfile("manifest.json"))[0]["RepoTags"]
    assert tags == ["docker.io/stamp/test:0"]

    before = int(time.time()) - 5
    bazel("build", "--stamp", "--output_groups=+tarball", "//tests/stamp:stamped")
    base, cfg, man, digest2 = _outputs(bazel, "stamped")
    ts = cfg["config"]["Labels"]["build.timestamp"]
    assert re.match(r"^\d+$", ts) and int(ts) >= before, ts
    assert cfg["config"]["Labels"]["build.user"] not in ("", "unstamped", "{BUILD_USER}")
    assert cfg["created"].startswith(time.strftime("%Y-", time.gmtime(int(ts)))), cfg["created"]
    assert man["annotations"]["org.opencontainers.image.created"] == ts
    with tarfile.open(os.path.join(base, "stamped.tar")) as t:
        tags = json.load(t.extractfile("manifest.json"))[0]["RepoTags"]
    assert tags == ["docker.io/stamp/test:%s" % ts]
    assert digest2 != digest1

    # Back to unstamped: the first digest again (cacheable, reproducible).
    bazel("build", "--nostamp", "//tests/stamp:stamped")
    assert _outputs(bazel, "stamped")[3] == digest1


def test_stamp_attribute_forces_stamping(bazel):
    bazel("build", "--nostamp", "//tests/stamp:always_stamped")
    cfg = _outputs(bazel, "always_stamped")[1]
    assert re.match(r"^\d+$", cfg["config"]["Labels"]["build.timestamp"])
    assert cfg["config"]["Labels"]["build.timestamp"] != "0"
