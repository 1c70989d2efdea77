"""shiko/files.py: sha256 of bytes and files (built-in for small data, OpenSSL's for the rest:
the same digests), canonical JSON."""

import hashlib
import os

import pytest

from python_tools.shiko import files


@pytest.mark.parametrize("size", [0, 1, 4095, files.SMALL - 1, files.SMALL, files.SMALL + 1, 3 * files.SMALL + 7])
def test_sha256_of_bytes_and_files_around_the_small_limit(tmp_path, size):
    data = os.urandom(size)
    want = hashlib.sha256(data).hexdigest()
    assert files.sha256_hex(data) == want
    path = tmp_path / "f"
    path.write_bytes(data)
    assert files.sha256_file(str(path)) == (want, size)
    h = files.new_sha256()
    h.update(data)
    assert h.hexdigest() == want


def test_canonical_json():
    assert files.canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'.encode("utf-8")
