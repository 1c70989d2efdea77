"""Runs an image_test spec: structure checks, config checks and commands; prints the report.

    code = run_test(spec, runfiles, driver=None, out=sys.stdout)   # 0: every check passed

It prints the image, the driver used for commands, then one line per check (report.py) and a
RESULT line. It returns 1 when a check fails, and when the commands cannot be run at all (no
usable driver, engine errors): a test never passes without running what it was asked to run.
"""

import os
import sys
import tempfile

from python_tools.shiko.image_test.checks import check_command, check_config, check_files
from python_tools.shiko.image_test.driver import DriverError
from python_tools.shiko.image_test.image import Image
from python_tools.shiko.image_test.report import shown
from python_tools.shiko.image_test.run import select
from python_tools.shiko.image_test.spec import DRIVERS
from python_tools.shiko.tar import rootfs


def run_commands(image, spec, driver_name, tmp, log):
    """The command checks' results, or None when the commands could not be run (logged)."""
    try:
        driver = select(driver_name, image, tmp, log)
    except (DriverError, OSError) as e:
        log("ERROR: %s: cannot run the command checks: %s" % (spec["target"], e))
        return None
    results = []
    try:
        for command in spec["commands"]:
            try:
                outcome = driver.run(command)
            except (DriverError, OSError) as e:
                log("ERROR: %s: command %s could not be run by driver %s: %s" % (
                    spec["target"], shown(command["name"]), driver.name, e))
                return None
            results.extend(check_command(command, outcome))
    finally:
        driver.close()
    return results


def run_test(spec, runfiles, driver=None, out=sys.stdout):
    """Runs every check; returns the process exit code (0: all passed)."""

    def log(line):
        out.write(line + "\n")
        out.flush()

    image = Image(spec, runfiles)
    log("image_test %s" % spec["target"])
    log("image: %s (%s, config %s, %d layers)" % (
        image.label, image.manifest.get("mediaType") or "manifest", image.config_digest, len(image.descs)))
    results = []
    if spec["files"]:
        results += check_files(image, spec["files"])
    if spec["config"]:
        results += check_config(image, spec["config"])
    broken = False
    driver_name = driver or spec["driver"]
    if spec["commands"]:
        if driver_name == "auto" and os.environ.get("SHIKO_IMAGE_TEST_DRIVER"):
            driver_name = os.environ["SHIKO_IMAGE_TEST_DRIVER"]
            if driver_name not in DRIVERS:
                log("ERROR: %s: SHIKO_IMAGE_TEST_DRIVER=%s is not one of %s" % (
                    spec["target"], driver_name, ", ".join(DRIVERS)))
                return 1
            log("driver: %s (from SHIKO_IMAGE_TEST_DRIVER)" % driver_name)
        base = os.environ.get("TEST_TMPDIR") or None
        tmp = tempfile.mkdtemp(prefix="image_test-", dir=base)
        try:
            command_results = run_commands(image, spec, driver_name, tmp, log)
        finally:
            rootfs.remove_tree(tmp)
        if command_results is None:
            broken = True
        else:
            results += command_results
    else:
        log("driver: none needed (no command checks)")
    failed = [r for r in results if not r.ok]
    for r in results:
        log(r.render())
    summary = "%d check%s, %d passed, %d failed" % (
        len(results), "" if len(results) == 1 else "s", len(results) - len(failed), len(failed))
    if broken:
        log("RESULT: FAILED (%s; the commands could not be run)" % summary)
        return 1
    log("RESULT: %s (%s)" % ("PASSED" if not failed else "FAILED", summary))
    return 0 if not failed else 1
