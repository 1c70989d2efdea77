"""Bazel's persistent-worker protocol (proto wire format), standard library only.

`shiko/cli.py` starts `serve` when a tool that supports workers is given `--persistent_worker`:
each WorkRequest's arguments go to the tool's own command line handling, and a WorkResponse
carries the exit code and everything the tool printed. The process, its imports and the
interpreter stay warm between actions, which saves the ~0.1-0.2 s of Python start-up each
action otherwise pays, plus the sandbox set-up (workers are not sandboxed unless
--worker_sandboxing).

The protocol (bazel's worker_protocol.proto) is length-delimited protobuf messages; only the
fields used here are encoded/decoded, with a small varint codec, so no protobuf package is
needed:
  WorkRequest  { repeated string arguments = 1; repeated Input inputs = 2; int32 request_id = 3;
                 bool cancel = 4; int32 verbosity = 5; string sandbox_dir = 6; }
  WorkResponse { int32 exit_code = 1; string output = 2; int32 request_id = 3;
                 bool was_cancelled = 4; }
Singleplex: one request at a time.

A worker runs the code it loaded when it started. Bazel 4.2.3 keeps sending requests to it
after the tool's sources change (a rules_shiko upgrade or edit with the server running: it does
not key its workers on them), so `serve` checks, before each request, that none of the tool's
loaded modules changed on disk (stat: mtime, size, inode). If one did, that request runs in a
new process of the same command (the new code; its exit code and output are the response),
then the worker replaces itself (exec, the same pipes) with a fresh one: stale code never
answers, and Bazel never sees a worker die.
"""

import os
import sys

from python_tools.shiko import protowire

encode_varint = protowire.encode_varint


def _read_varint(stream):
    """Reads a varint from a binary stream; None at EOF before the first byte."""
    shift = 0
    result = 0
    while True:
        b = stream.read(1)
        if not b:
            if shift == 0:
                return None
            raise EOFError("truncated varint")
        byte = b[0]
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def parse_work_request(data):
    """Returns {"arguments": [str], "request_id": int, "cancel": bool} of a WorkRequest."""
    req = {"arguments": [], "request_id": 0, "cancel": False}
    for field, value in protowire.fields(data):
        if field == 1 and isinstance(value, bytes):
            req["arguments"].append(value.decode("utf-8"))
        elif field == 3 and isinstance(value, int):
            req["request_id"] = protowire.int32(value)
        elif field == 4 and isinstance(value, int):
            req["cancel"] = bool(value)
    return req


def encode_work_response(exit_code, output, request_id):
    out = bytearray()
    if exit_code:
        out += protowire.field_varint(1, exit_code)
    text = output.encode("utf-8")
    if text:
        out += protowire.field_bytes(2, text)
    if request_id:
        out += protowire.field_varint(3, request_id)
    return bytes(out)


def encode_work_request(arguments, request_id=0):
    """A WorkRequest payload (the client side: bench/layer_bench.py drives a worker with it)."""
    out = bytearray()
    for a in arguments:
        out += protowire.field_bytes(1, a.encode("utf-8"))
    if request_id:
        out += protowire.field_varint(3, request_id)
    return bytes(out)


def parse_work_response(data):
    """Returns {"exit_code": int, "output": str, "request_id": int} of a WorkResponse."""
    res = {"exit_code": 0, "output": "", "request_id": 0}
    for field, value in protowire.fields(data):
        if field in (1, 3) and isinstance(value, int):
            res["exit_code" if field == 1 else "request_id"] = protowire.int32(value)
        elif field == 2 and isinstance(value, bytes):
            res["output"] = value.decode("utf-8")
    return res


def read_message(stream):
    length = _read_varint(stream)
    if length is None:
        return None
    data = stream.read(length)
    if len(data) != length:
        raise EOFError("truncated message")
    return data


def write_message(stream, payload):
    stream.write(encode_varint(len(payload)) + payload)
    stream.flush()


class CodeWatch(object):
    """The tool's own modules (python_tools/**.py) this process has loaded, as they were on
    disk then: `changed()` names one that is not any more (None while all are the same)."""

    def __init__(self, package=None):
        here = os.path.dirname(os.path.abspath(__file__))  # <package>/shiko
        self.package = (package or os.path.dirname(here)) + os.sep
        self.seen = {}

    @staticmethod
    def _stamp(path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def note(self):
        """Remembers the modules loaded since the last call."""
        for m in list(sys.modules.values()):
            f = getattr(m, "__file__", None)
            if not f or not f.endswith(".py"):
                continue
            f = os.path.abspath(f)
            if f not in self.seen and f.startswith(self.package):
                self.seen[f] = self._stamp(f)

    def changed(self):
        for f, stamp in self.seen.items():
            if self._stamp(f) != stamp:
                return f
        return None


def own_command():
    """(program, argv) that started this process, without --persistent_worker. The program is
    the path argv[0] names (not /proc/self/exe: after a re-fetch of the tools' Python that
    names the deleted file)."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "surrogateescape") for a in f.read().split(b"\0")[:-1]]
    except OSError:
        argv = [sys.executable] + sys.orig_argv[1:]
    program = argv[0] if os.sep in argv[0] else sys.executable
    return os.path.abspath(program), [a for a in argv if a != "--persistent_worker"]


def _in_a_new_process(arguments):
    """(exit code, output) of one request run by a new process of this tool."""
    import subprocess  # only when the code changed under a running worker

    program, argv = own_command()
    try:
        res = subprocess.run(argv + list(arguments), executable=program, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:  # answered, not a dead worker: Bazel then retries the action
        return 1, "ERROR: the tool changed under its worker, and %s could not start: %s\n" % (program, e)
    return res.returncode, res.stdout.decode("utf-8", "replace")


def serve(handle, stdin=None, stdout=None, watch=None):
    """The worker loop: WorkRequests in, WorkResponses out, until stdin closes.

    handle(arguments) -> (exit code, printed text) runs one request. When the tool's code
    changed on disk (CodeWatch), the request runs in a new process instead, and this process
    then execs itself again (see the module docstring).
    """
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    watch = watch or CodeWatch()
    # Nothing but responses may reach stdout: stray prints go to the worker's log (stderr).
    sys.stdout = sys.stderr
    watch.note()
    while True:
        data = read_message(stdin)
        if data is None:
            return
        req = parse_work_request(data)
        if req["cancel"]:
            continue  # singleplex: a request is answered before the next is read
        stale = watch.changed()
        if stale:
            sys.stderr.write("rules_shiko worker: %s changed since this worker loaded it: this "
                             "request runs in a new process, then the worker restarts\n" % stale)
            code, output = _in_a_new_process(req["arguments"])
            write_message(stdout, encode_work_response(code, output, req["request_id"]))
            sys.stderr.flush()
            program, argv = own_command()
            os.execv(program, argv + ["--persistent_worker"])
        code, output = handle(req["arguments"])
        write_message(stdout, encode_work_response(code, output, req["request_id"]))
        watch.note()
