"""Unit tests of python_tools/shiko/worker.py: the proto worker protocol, against a real tool process."""

import io
import json
import os
import shutil
import subprocess
import sys

import pytest

from python_tools.shiko import cli, protowire
from python_tools.shiko import worker as protocol

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def request(args, request_id=0):
    """A WorkRequest, encoded by hand (field 1: arguments, field 3: request_id)."""
    out = b""
    for a in args:
        data = a.encode()
        out += b"\x0a" + protocol.encode_varint(len(data)) + data
    if request_id:
        out += b"\x18" + protocol.encode_varint(request_id)
    return protocol.encode_varint(len(out)) + out


def parse_response(data):
    """{exit_code, output, request_id} of one WorkResponse payload."""
    return protocol.parse_work_response(data)


def test_varints_round_trip():
    for v in (0, 1, 127, 128, 300, 2 ** 31 - 1, 2 ** 40):
        enc = protocol.encode_varint(v)
        assert protowire.decode_varint(enc, 0) == (v, len(enc))
        assert protocol._read_varint(io.BytesIO(enc)) == v
    assert protocol.encode_varint(300) == b"\xac\x02"
    assert protocol._read_varint(io.BytesIO(b"")) is None
    with pytest.raises(EOFError):
        protocol._read_varint(io.BytesIO(b"\x80"))


def test_client_helpers_against_hand_encodings():
    # The client side (bench/layer_bench.py drives a worker with it), against bytes written by
    # hand: arguments "--a=1", "b" and request_id 9; exit_code 1, output "é\n", request_id 5.
    body = protocol.encode_work_request(["--a=1", "b"], 9)
    assert body == b"\x0a\x05--a=1" + b"\x0a\x01b" + b"\x18\x09"
    assert protocol.encode_varint(len(body)) + body == request(["--a=1", "b"], 9)
    resp = b"\x08\x01" + b"\x12\x03\xc3\xa9\n" + b"\x18\x05"
    assert protocol.parse_work_response(resp) == {"exit_code": 1, "output": "é\n", "request_id": 5}
    assert protocol.parse_work_response(b"") == {"exit_code": 0, "output": "", "request_id": 0}
    for code, output, rid in ((0, "", 0), (1, "ERROR: x\n", 5), (2, "é", 2 ** 31 - 1)):
        enc = protocol.encode_work_response(code, output, rid)
        assert protocol.parse_work_response(enc) == {"exit_code": code, "output": output, "request_id": rid}


def test_parse_request_skips_unknown_fields():
    # arguments "a", "bc"; inputs (field 2, a nested message) skipped; request_id 7; verbosity 5.
    body = (b"\x0a\x01a" + b"\x0a\x02bc" + b"\x12\x04\x0a\x02xy" + b"\x18\x07" + b"\x28\x05")
    req = protocol.parse_work_request(body)
    assert req == {"arguments": ["a", "bc"], "request_id": 7, "cancel": False}


def test_response_encoding():
    assert protocol.encode_work_response(0, "", 0) == b""
    assert parse_response(protocol.encode_work_response(1, "ERROR: x\n", 5)) == {
        "exit_code": 1, "output": "ERROR: x\n", "request_id": 5}


def test_expand_params(tmp_path):
    p = tmp_path / "params"
    p.write_text("--manifest\nm.json\n--output=o\n")
    assert cli.expand_params(["@" + str(p), "--x"]) == ["--manifest", "m.json", "--output=o", "--x"]


def _layer_manifest(tmp_path, name, content, bad=False):
    src = tmp_path / (name + ".txt")
    src.write_bytes(content)
    m = {
        "target": "//pkg:" + name,
        "compression": "none",
        "compression_level": None,
        "mtime": 0,
        "defaults": {"file_mode": None, "dir_mode": "0755", "uid": 0, "gid": 0},
        "overrides": {},
        "entries": [{"kind": "file", "dest": "../escape" if bad else "data/" + name,
                     "src": str(src), "origin": {"attr": "files", "label": "//x:src"}}],
    }
    path = tmp_path / (name + ".json")
    path.write_text(json.dumps(m))
    return str(path)


def test_layer_tool_as_a_persistent_worker(tmp_path):
    """Three requests to one process: two layers (one from a params file) and one bad input."""
    good = _layer_manifest(tmp_path, "a", b"hello\n")
    other = _layer_manifest(tmp_path, "b", b"other\n")
    bad = _layer_manifest(tmp_path, "c", b"x", bad=True)
    params = tmp_path / "b.params"
    params.write_text("--manifest\n%s\n--output\n%s\n--descriptor\n%s\n" % (
        other, tmp_path / "b.tar", tmp_path / "b.layer.json"))
    reqs = (
        request(["--manifest", good, "--output", str(tmp_path / "a.tar"),
                 "--descriptor", str(tmp_path / "a.layer.json")], 1)
        + request(["@" + str(params)], 2)
        + request(["--manifest", bad, "--output", str(tmp_path / "c.tar"),
                   "--descriptor", str(tmp_path / "c.layer.json")], 3)
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "python_tools.layer", "--persistent_worker"],
                          cwd=REPO, env=env, input=reqs, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    stream = io.BytesIO(proc.stdout)
    responses = []
    while True:
        msg = protocol.read_message(stream)
        if msg is None:
            break
        responses.append(parse_response(msg))
    assert [r["request_id"] for r in responses] == [1, 2, 3]
    assert responses[0]["exit_code"] == 0 and responses[1]["exit_code"] == 0, responses
    assert responses[2]["exit_code"] == 1
    assert responses[2]["output"].startswith("ERROR: //pkg:c: attribute 'files': '/../escape'"), responses[2]
    assert len(responses[2]["output"].strip().splitlines()) == 1, responses[2]
    for name, content in (("a", b"hello\n"), ("b", b"other\n")):
        desc = json.loads((tmp_path / (name + ".layer.json")).read_text())
        assert desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
        assert content in (tmp_path / (name + ".tar")).read_bytes()
    assert not (tmp_path / "c.tar").exists() and not (tmp_path / "c.layer.json").exists()


class _Worker(object):
    """The layer tool as a persistent worker on a copy of python_tools/ (which a test edits),
    started with `python`; its stderr goes to worker.log."""

    def __init__(self, tmp_path, python=sys.executable):
        self.tmp_path = tmp_path
        self.root = tmp_path / "checkout"
        shutil.copytree(os.path.join(REPO, "python_tools"), str(self.root / "python_tools"),
                        ignore=shutil.ignore_patterns("tests", "__pycache__", "interpreter"))
        shutil.copytree(os.path.join(REPO, "python_tools", "interpreter"),
                        str(self.root / "python_tools" / "interpreter"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=os.pathsep.join(
            [str(self.root)] + [p for p in sys.path if p != REPO]))
        self.proc = subprocess.Popen(
            [str(python), "-m", "python_tools.layer", "--persistent_worker"],
            cwd=str(self.root), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(str(tmp_path / "worker.log"), "wb"), bufsize=0)

    def layer(self, i):
        """The response to request `i`: a layer of one file."""
        t = self.tmp_path
        m = _layer_manifest(t, "r%d" % i, b"request %d\n" % i)
        self.proc.stdin.write(request(["--manifest", m, "--output", str(t / ("r%d.tar" % i)),
                                       "--descriptor", str(t / ("r%d.layer.json" % i))], i))
        return parse_response(protocol.read_message(self.proc.stdout))

    def log(self):
        with open(str(self.tmp_path / "worker.log")) as f:
            return f.read()

    def change_the_code(self):
        main = self.root / "python_tools" / "layer.py"
        text = main.read_text()
        assert "def run(args, manifest):\n" in text
        main.write_text(text.replace("def run(args, manifest):\n",
                                     "def run(args, manifest):\n    print('new code')\n"))

    def stop(self):
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0, self.log()


def test_a_worker_whose_code_changed_never_answers_with_the_old_code(tmp_path):
    """The tool's source changes while its worker runs (a rules_shiko edit or upgrade with the
    Bazel server up, which Bazel 4.2.3 does not key workers on): the next request runs in a new
    process of the changed code, then the worker execs itself (same process, same pipes) and
    serves the requests after it with the new code; with no change, nothing restarts."""
    w = _Worker(tmp_path)
    try:
        first = w.layer(1)
        assert first["exit_code"] == 0 and "new code" not in first["output"], first
        second = w.layer(2)
        assert second["exit_code"] == 0 and "restarts" not in w.log()
        w.change_the_code()
        third = w.layer(3)
        assert third["exit_code"] == 0 and "new code" in third["output"], third
        assert (tmp_path / "r3.tar").exists()
        fourth = w.layer(4)
        assert fourth["exit_code"] == 0 and "new code" in fourth["output"], fourth
        assert w.proc.poll() is None  # the same process, serving on
        assert w.log().count("layer.py changed since this worker loaded it") == 1, w.log()
    finally:
        w.stop()


def test_a_worker_whose_python_was_replaced_restarts_from_its_path(tmp_path):
    """A new output base, or a rules_shiko upgrade, re-fetches the tools' Python under a running
    worker: the interpreter file the worker runs is deleted and written anew at the same path
    (/proc/<pid>/exe then names "<path> (deleted)"), and the tool's code changed too. The new
    process starts from the path the worker was started with (argv[0]): the request is answered
    by the new code, and the worker execs the new interpreter and serves on."""
    real = os.path.realpath(sys.executable)
    python = tmp_path / "bin" / os.path.basename(real)
    python.parent.mkdir()
    shutil.copy2(real, str(python))
    w = _Worker(tmp_path, python)
    try:
        first = w.layer(1)
        assert first["exit_code"] == 0, first
        os.unlink(str(python))  # the re-fetch: a new file at the same path
        shutil.copy2(real, str(python))
        assert os.readlink("/proc/%d/exe" % w.proc.pid).endswith(" (deleted)")
        w.change_the_code()
        second = w.layer(2)
        assert second["exit_code"] == 0 and "new code" in second["output"], second
        third = w.layer(3)
        assert third["exit_code"] == 0 and "new code" in third["output"], third
        assert w.proc.poll() is None
        assert os.readlink("/proc/%d/exe" % w.proc.pid) == str(python)  # exec'd the new file
    finally:
        w.stop()


def test_params_file_outside_a_worker_runs_once(tmp_path):
    good = _layer_manifest(tmp_path, "d", b"once\n")
    params = tmp_path / "d.params"
    params.write_text("--manifest\n%s\n--output\n%s\n--descriptor\n%s\n" % (
        good, tmp_path / "d.tar", tmp_path / "d.layer.json"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    subprocess.run([sys.executable, "-m", "python_tools.layer", "@" + str(params)], cwd=REPO,
                   env=env, check=True, timeout=120)
    assert b"once\n" in (tmp_path / "d.tar").read_bytes()
