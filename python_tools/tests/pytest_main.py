"""Runs pytest on the test files given as arguments (the py_test entry point under Bazel)."""

import os
import sys

import pytest

if __name__ == "__main__":
    args = ["-p", "no:cacheprovider", "-q"] + sys.argv[1:]
    tmp = os.environ.get("TEST_TMPDIR")
    if tmp:
        args += ["--basetemp", os.path.join(tmp, "pytest")]
    sys.exit(pytest.main(args))
