"""Checks an image inside `bazel test`: its files, its config, and commands run in it.

Two modes (the `image_test` rule uses both):

  image_test.py --manifest=M.json --output=SPEC.json       build action: validates the spec
  image_test.py --spec=SPEC.json --runfiles=DIR [--driver=D] the test (run by the launcher)

The libraries: python_tools/shiko/image_test/ (spec.py validates, image.py reads the image,
checks.py and report.py check and print, harness.py runs a spec, run.py picks the driver).

Manifest (M.json, written by Starlark)
======================================
  {
    "target": "//pkg:test",
    "image": {"label": "//pkg:image",
              "layout": "ws/pkg/image",            # runfiles path of the OCI layout directory
              "layers": ["//pkg:base_layer", "//pkg:app_layer"]},   # labels known, bottom first
    "platform": "" | "linux/arm64",                # which image of a multi-platform layout
    "driver": "auto" | "docker" | "podman" | "none",
    "spec": {"files": {...}, "absent": [...], "config": {...}, "commands": [...]},
    "spec_file": null | "path/to/spec.json"        # the same keys; merged with "spec"
  }
  `layers` holds the labels of the image's own layers (and of image bases, recursively) in
  order; they name the top len(layers) layers of the image, the ones below are "base layer N".

The spec (what users write; see README `### image_test`)
========================================================
  files: {"/abs/path": {check: value, ...}}, checks:
    exists (bool, default true; false: the path must be absent, no other check allowed),
    type ("file", "dir", "symlink", "fifo", "char", "block"), mode ("0755" or an int),
    uid, gid (ints), link (a symlink's target, exactly as stored),
    content / no_content (a regex or a list: each must match / none may match the bytes of the
    file, Python `re.search` with MULTILINE), size (bytes).
    Parent directories are resolved through symlinks as the kernel would; type, mode, uid,
    gid and link are those of the path itself (lstat), content and size those of the file it
    leads to (stat).
  absent: ["/bin/sh", ...] — shorthand for {"exists": false}.
  config: {field: expected}; fields: entrypoint, cmd (lists; null or [] = unset), user,
    workdir, stop_signal, os, architecture, variant (strings; null or "" = unset),
    exposed_ports, volumes (lists compared as sets; "80" means "80/tcp"),
    env, labels (dicts: each given name must have that value; a null value: must be unset;
    names not given are not checked).
  commands: [{"name": "...", "command": [...] | "args": [...], "env": {...}, "exit_code": 0,
    "stdout": regex(es), "stderr": regex(es), "no_stdout": ..., "no_stderr": ...,
    "timeout": 60}]
    Without command/args the image's entrypoint + cmd run; `args` replaces cmd (like
    `docker run IMAGE args...`); `command` replaces entrypoint and cmd. Output regexes are
    Python `re.search` with MULTILINE on the output decoded as UTF-8.

The output SPEC.json is the manifest with the spec merged and normalized (modes as ints,
ports as N/proto, regexes as lists), the one file the test reads. Bad specs fail the build
with one line `ERROR: <target>: attribute '<attr>': <value>: <problem>`.

The test
========
It prints the image, the driver used for commands, then one line per check: `PASS ...`, or
`FAIL ...` followed by `expected:`, `actual:` and, for files, the layer (index, digest and
image_layer label, or "base layer N") the path came from or was removed by. It exits 1 when a
check fails, and when the commands cannot be run at all (no usable driver, engine errors):
a test never passes without running what it was asked to run.

Drivers (python_tools/shiko/image_test/run.py): docker (DOCKER_HOST, else /var/run/docker.sock
or $XDG_RUNTIME_DIR/docker.sock: shiko/engines/discovery.py), podman (CONTAINERS_CONF /
CONTAINERS_STORAGE_CONF / CONTAINER_HOST as given to the test), none (the layers unpacked in a
temporary root, run under bwrap, or unshare as root). `auto` picks docker
when a daemon answers, else podman when its configuration was passed to the test and
`podman info` works, else none. The environment variable SHIKO_IMAGE_TEST_DRIVER overrides
`auto` (e.g. `bazel test --test_env=SHIKO_IMAGE_TEST_DRIVER=podman`).
"""

import json
import os
import signal
import sys

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError
from python_tools.shiko.files import read_json, write_file_atomic
from python_tools.shiko.image_test import harness, spec

FLAGS = [
    cli.string("manifest", help="Validate: the JSON manifest written by Starlark."),
    cli.string("output", help="Validate: the normalized spec to write."),
    cli.string("spec", help="Test: the normalized spec (from the validation action)."),
    cli.string("runfiles", help="Test: the runfiles root the spec's paths are relative to."),
    cli.enum("driver", None, spec.DRIVERS, help="Test: override the spec's driver."),
]


def _terminated(signum, frame):
    sys.stdout.write("ERROR: terminated (signal %d), probably by Bazel's test timeout\n" % signum)
    sys.stdout.flush()
    sys.exit(128 + signum)


def validate(args):
    """Build action: the manifest's spec, validated and normalized, written to --output."""
    try:
        manifest = read_json(args.manifest)
    except (OSError, ValueError) as e:
        raise UserError("cannot read the tool manifest %s: %s" % (args.manifest, e))
    write_file_atomic(args.output, json.dumps(spec.validate(manifest), indent=1, sort_keys=True).encode("utf-8"))
    return 0


def test(args):
    """The test: everything printed on stdout, the exit code the test's."""
    normalized = read_json(args.spec)
    # Bazel stops a test that runs too long with SIGTERM: clean up the temporary roots first.
    signal.signal(signal.SIGTERM, _terminated)
    try:
        runfiles = args.runfiles or os.environ.get("RUNFILES_DIR") or os.environ.get("TEST_SRCDIR")
        code = harness.run_test(normalized, runfiles, args.driver)
    except UserError as e:
        sys.stdout.write("ERROR: %s\n" % e.render())
        code = 1
    sys.stdout.flush()
    return code


def run(args):
    if args.manifest:
        if not args.output:
            raise cli.UsageError("--manifest needs --output")
        return validate(args)
    if not args.spec:
        raise cli.UsageError("give --manifest and --output (validate) or --spec (test)")
    return test(args)


if __name__ == "__main__":
    cli.main(FLAGS, run, outputs=["output"])
