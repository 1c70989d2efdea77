"""Unit tests of python_tools/shiko/cli.py: the one entry point of every tool.

Flag syntax, @params files, the JSON manifest, errors (one line, outputs removed, exit codes),
sub-commands, and the persistent-worker path against a real tool process.
"""

import io
import json
import os
import subprocess
import sys
import textwrap

import pytest

from python_tools.shiko import cli, protowire
from python_tools.shiko import worker as protocol
from python_tools.shiko.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FLAGS = [
    cli.string("name", default="anon", help="a string"),
    cli.string("output", help="an output file"),
    cli.integer("count", default=1, lower_bound=0),
    cli.floating("ratio", default=0.5),
    cli.boolean("verbose"),
    cli.boolean("color", default=True),
    cli.enum("engine", "auto", ["auto", "docker", "podman"]),
    cli.multi_string("tag"),
]


def parse(*argv, flags=FLAGS):
    return cli.parse(flags, list(argv))


def usage_error(*argv, flags=FLAGS):
    with pytest.raises(cli.UsageError) as e:
        parse(*argv, flags=flags)
    return str(e.value)


def run_main(argv, flags=FLAGS, run=None, **kwargs):
    """cli.main in this process: returns (exit code, the run's Args or None)."""
    seen = {}

    def default_run(args, *manifest):
        seen["args"] = args
        seen["manifest"] = manifest[0] if manifest else None
        return 0

    with pytest.raises(SystemExit) as e:
        cli.main(flags, run or default_run, argv=["tool.py"] + list(argv), **kwargs)
    return e.value.code, seen


# --- Flag syntax ------------------------------------------------------------------------------


def test_defaults():
    args = parse()
    assert (args.name, args.output, args.count, args.ratio) == ("anon", None, 1, 0.5)
    assert (args.verbose, args.color, args.engine, args.tag) == (False, True, "auto", [])


def test_equals_and_separate_values():
    args = parse("--name=a=b", "--count", "3", "--ratio=0.25", "--engine", "podman", "--output=")
    assert (args.name, args.count, args.ratio, args.engine, args.output) == ("a=b", 3, 0.25, "podman", "")


def test_a_dash_in_a_flag_name_is_an_underscore():
    """`--sign-key` is `--sign_key` (push documents the dashed spelling), with either form of value."""
    flags = [cli.string("sign_key"), cli.boolean("dry_run")]
    assert parse("--sign-key=k.pem", flags=flags).sign_key == "k.pem"
    assert parse("--sign-key", "k2.pem", "--dry-run", flags=flags).sign_key == "k2.pem"
    assert parse("--sign_key=k3.pem", flags=flags).sign_key == "k3.pem"
    assert parse("--nodry-run", flags=flags).dry_run is False
    assert "unknown flag --sign_keys" in usage_error("--sign-keys=x", flags=flags)


def test_booleans():
    assert parse("--verbose").verbose is True
    assert parse("--nocolor").color is False
    assert parse("--verbose=false", "--color=1").verbose is False
    assert parse("--verbose=TRUE").verbose is True
    for text in ("yes", "y", "t"):
        assert parse("--verbose=" + text).verbose is True
    for text in ("no", "n", "f", "0"):
        assert parse("--color=" + text).color is False
    assert usage_error("--verbose=maybe") == "--verbose: 'maybe' is not a boolean (true or false)"
    # A boolean takes no separate value: the next argument is not its value.
    assert usage_error("--verbose", "false") == "unexpected argument 'false' (flags look like --name=value)"
    assert usage_error("--noname") == "--noname: not a boolean flag"


def test_multi_flags_keep_order_and_defaults_are_not_shared():
    args = parse("--tag=a", "--tag", "b", "--tag=a")
    assert args.tag == ["a", "b", "a"]
    assert parse().tag == []
    assert FLAGS[-1].default == []


def test_last_value_wins():
    assert parse("--name=a", "--name=b").name == "b"


def test_int_float_enum_errors():
    assert usage_error("--count=x") == "--count: 'x' is not an integer"
    assert usage_error("--count=1.5") == "--count: '1.5' is not an integer"
    assert usage_error("--count=-1") == "--count: '-1' is below 0"
    assert usage_error("--ratio=abc") == "--ratio: 'abc' is not a number"
    assert usage_error("--engine=lxc") == "--engine: 'lxc' is not one of auto, docker, podman"


def test_unknown_positional_and_missing_value():
    assert usage_error("--nope=1") == "unknown flag --nope"
    assert usage_error("input.txt") == "unexpected argument 'input.txt' (flags look like --name=value)"
    assert usage_error("-v") == "unexpected argument '-v' (flags look like --name=value)"
    assert usage_error("--") == "unexpected argument '--' (flags look like --name=value)"
    assert usage_error("--name") == "--name needs a value"


def test_required_flags():
    flags = [cli.string("manifest", required=True), cli.string("output", required=True), cli.string("x")]
    assert usage_error("--x=1", flags=flags) == "missing required flags: --manifest, --output"
    assert usage_error("--output=o", "--manifest=", flags=flags) == "missing required flag: --manifest"
    assert parse("--manifest=m", "--output=o", flags=flags).manifest == "m"


def test_bad_command_line_exits_2_with_one_line(capsys):
    for argv, message in [
        (["--nope"], "unknown flag --nope"),
        (["positional"], "unexpected argument 'positional' (flags look like --name=value)"),
        (["--engine=lxc"], "--engine: 'lxc' is not one of auto, docker, podman"),
        (["--count=x"], "--count: 'x' is not an integer"),
    ]:
        code, seen = run_main(argv)
        assert code == 2 and not seen
        assert capsys.readouterr().err == "ERROR: tool: %s\n" % message
    code, _ = run_main([], flags=[cli.string("manifest", required=True)])
    assert code == 2
    assert capsys.readouterr().err == "ERROR: tool: missing required flag: --manifest\n"


def test_usage_error_raised_by_run_exits_2_and_removes_outputs(tmp_path, capsys):
    out = tmp_path / "out"

    def run(args):
        out.write_text("partial")
        if not args.name:
            raise cli.UsageError("--output needs --name")
        return 0

    flags = [cli.string("name"), cli.string("output")]
    code, _ = run_main(["--output", str(out)], flags=flags, run=run, outputs=["output"])
    assert code == 2
    assert capsys.readouterr().err == "ERROR: tool: --output needs --name\n"
    assert not out.exists()
    with pytest.raises(SystemExit) as e:
        cli.main({"lock": cli.Command(flags, run, outputs=["output"])},
                 argv=["deb_lock.py", "lock", "--output=" + str(out)])
    assert e.value.code == 2
    assert capsys.readouterr().err == "ERROR: deb_lock lock: --output needs --name\n"
    assert not out.exists()


def test_program_name_from_argv0(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(FLAGS, lambda args: 0, argv=["/runfiles/_main/python_tools/layer.py", "--nope"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "ERROR: layer: unknown flag --nope\n"


def test_run_result_is_the_exit_code():
    assert run_main([], run=lambda args: 3)[0] == 3
    assert run_main([], run=lambda args: None)[0] == 0
    assert run_main([], run=lambda args: "not a code")[0] == 0


# --- @params files ----------------------------------------------------------------------------


def test_params_file(tmp_path):
    params = tmp_path / "params"
    params.write_text("--name\nfrom file\n--tag=a\n\n--verbose\n")
    args = parse("--count=2", "@" + str(params), "--tag=b")
    assert (args.name, args.count, args.tag, args.verbose) == ("from file", 2, ["a", "b"], True)
    assert cli.expand_params(["@" + str(params), "x"]) == ["--name", "from file", "--tag=a", "--verbose", "x"]


def test_missing_params_file_exits_2(tmp_path, capsys):
    code, seen = run_main(["@" + str(tmp_path / "missing")])
    assert code == 2 and not seen
    err = capsys.readouterr().err
    assert err.startswith("ERROR: tool: cannot read a params file: ") and err.count("\n") == 1


def test_a_flag_value_starting_with_at_is_not_a_params_file(tmp_path):
    # deb_repository passes `--target @<repository>`: a value, never a params file.
    args = parse("--name", "@repo", "--tag", "@x")
    assert (args.name, args.tag) == ("@repo", ["@x"])
    params = tmp_path / "params"
    params.write_text("--name\n@inside\n")
    assert parse("--tag", "@t", "@" + str(params)).name == "@inside"


# --- Manifest -----------------------------------------------------------------------------------


def test_manifest_is_read_and_names_the_target(tmp_path):
    m = tmp_path / "m.json"
    m.write_text(json.dumps({"target": "//pkg:x", "n": 1}))
    code, seen = run_main(["--name=" + str(m)], manifest="name")
    assert code == 0
    assert seen["manifest"] == {"target": "//pkg:x", "n": 1}
    assert seen["args"].target == "//pkg:x"


def test_target_falls_back_to_the_target_flag_then_the_program(tmp_path):
    m = tmp_path / "m.json"
    m.write_text("[]")
    flags = FLAGS + [cli.string("target")]
    code, seen = run_main(["--name=" + str(m), "--target=//a:b"], flags=flags, manifest="name")
    assert code == 0 and seen["args"].target == "//a:b"
    code, seen = run_main([])
    assert code == 0 and seen["args"].target == "tool"
    code, seen = run_main([], target=lambda args, manifest: "custom")
    assert seen["args"].target == "custom"


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read the manifest: No such file or directory"),
    ("{not json", "the manifest is not valid JSON: "),
    (b"\xff\xfe", "the manifest is not valid JSON: "),
])
def test_bad_manifest_is_one_line_and_removes_outputs(tmp_path, capsys, content, problem):
    m = tmp_path / "m.json"
    if isinstance(content, str):
        m.write_text(content)
    elif content is not None:
        m.write_bytes(content)
    out = tmp_path / "out"
    out.write_text("stale")
    flags = [cli.string("manifest"), cli.string("output")]
    code, seen = run_main(["--manifest", str(m), "--output", str(out)], flags=flags,
                          manifest="manifest", outputs=["output"])
    assert code == 1 and not seen
    err = capsys.readouterr().err
    assert err.startswith("ERROR: tool: attribute '--manifest': %r: %s" % (str(m), problem)), err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


# --- Errors and outputs ---------------------------------------------------------------------------


def test_user_error_is_one_line_and_removes_file_and_directory_outputs(tmp_path, capsys):
    out_file = tmp_path / "out.tar"
    out_dir = tmp_path / "layout"
    extra = [tmp_path / "a", tmp_path / "b"]
    kept = tmp_path / "kept"
    kept.write_text("not an output")

    def run(args):
        out_file.write_text("partial")
        (out_dir / "blobs").mkdir(parents=True)
        (out_dir / "blobs" / "x").write_text("x")
        for p in extra:
            p.write_text("x")
        raise UserError("is not allowed", target="//pkg:img", attr="env", value="A=B")

    flags = [cli.string("output"), cli.string("output_layout"), cli.multi_string("extra"), cli.string("keep")]
    argv = ["--output", str(out_file), "--output_layout=" + str(out_dir), "--keep", str(kept)]
    argv += ["--extra=" + str(p) for p in extra]
    code, _ = run_main(argv, flags=flags, run=run, outputs=["output", "output_layout", "extra"])
    assert code == 1
    assert capsys.readouterr().err == "ERROR: //pkg:img: attribute 'env': 'A=B': is not allowed\n"
    assert not out_file.exists() and not out_dir.exists() and not any(p.exists() for p in extra)
    assert kept.read_text() == "not an output"


def test_unset_outputs_are_fine(capsys):
    def run(args):
        raise UserError("bad")

    code, _ = run_main([], flags=[cli.string("output")], run=run, outputs=["output"])
    assert code == 1
    assert capsys.readouterr().err == "ERROR: bad\n"


def test_crash_removes_outputs_and_propagates(tmp_path):
    out = tmp_path / "out"

    def run(args):
        out.write_text("partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        cli.main([cli.string("output")], run, outputs=["output"], argv=["tool.py", "--output=" + str(out)])
    assert not out.exists()


@pytest.mark.parametrize("code,kept", [(0, True), (None, True), (3, False)])
def test_sys_exit_in_run_keeps_outputs_only_on_success(tmp_path, code, kept):
    out = tmp_path / "out"

    def run(args):
        out.write_text("done")
        sys.exit(code)

    with pytest.raises(SystemExit) as e:
        cli.main([cli.string("output")], run, outputs=["output"], argv=["tool.py", "--output=" + str(out)])
    assert e.value.code == code
    assert out.exists() == kept


# --- Sub-commands ---------------------------------------------------------------------------------


def _commands(calls):
    def lock(args):
        calls.append(("lock", args.manifest))
        return 0

    def probe(args):
        calls.append(("probe", args.url))
        return 4

    return {
        "lock": cli.Command([cli.string("manifest", required=True)], lock),
        "probe": cli.Command([cli.multi_string("url")], probe),
    }


def test_sub_commands(capsys):
    calls = []
    for argv, code in [(["lock", "--manifest=m"], 0), (["probe", "--url=a", "--url=b"], 4)]:
        with pytest.raises(SystemExit) as e:
            cli.main(_commands(calls), argv=["deb_lock.py"] + argv)
        assert e.value.code == code
    assert calls == [("lock", "m"), ("probe", ["a", "b"])]
    for argv, message in [
        ([], "ERROR: deb_lock: give a command: lock | probe\n"),
        (["--manifest=m"], "ERROR: deb_lock: give a command: lock | probe\n"),
        (["nope"], "ERROR: deb_lock: give a command: lock | probe\n"),
        (["lock"], "ERROR: deb_lock lock: missing required flag: --manifest\n"),
        (["probe", "--manifest=m"], "ERROR: deb_lock probe: unknown flag --manifest\n"),
    ]:
        with pytest.raises(SystemExit) as e:
            cli.main(_commands(calls), argv=["deb_lock.py"] + argv)
        assert e.value.code == 2
        assert capsys.readouterr().err == message


# --- As a process: crash, and the persistent-worker protocol ------------------------------------

TOOL = '''
"""A tiny tool on cli.main, for the tests."""

import sys

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError

FLAGS = [
    cli.string("output", required=True),
    cli.boolean("fail"),
    cli.boolean("crash"),
]


def run(args):
    with open(args.output, "w") as f:
        f.write("partial")
    print("writing", args.output)
    sys.stderr.write("to stderr\\n")
    if args.fail:
        raise UserError("it failed", target="//pkg:t", attr="fail", value=True)
    if args.crash:
        raise ValueError("crashed on purpose")
    return 0


if __name__ == "__main__":
    cli.main(FLAGS, run, outputs=["output"], worker=True)
'''


@pytest.fixture
def tool(tmp_path):
    path = tmp_path / "tiny_tool.py"
    path.write_text(textwrap.dedent(TOOL))
    return str(path)


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([REPO] + sys.path))


def test_crash_as_a_process_prints_a_traceback(tool, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, tool, "--output", str(out), "--crash"], env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "ValueError: crashed on purpose" in proc.stderr
    assert not out.exists()


def test_user_error_as_a_process(tool, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, tool, "--output", str(out), "--fail"], env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == "writing %s\n" % out
    assert proc.stderr == "to stderr\nERROR: //pkg:t: attribute 'fail': True: it failed\n"
    assert not out.exists()


def _request(arguments, request_id=0):
    """One length-delimited WorkRequest (field 1: arguments, field 3: request_id)."""
    body = b""
    for a in arguments:
        data = a.encode("utf-8")
        body += protocol.encode_varint(1 << 3 | 2) + protocol.encode_varint(len(data)) + data
    if request_id:
        body += protocol.encode_varint(3 << 3 | 0) + protocol.encode_varint(request_id)
    return protocol.encode_varint(len(body)) + body


def _response(data):
    """{exit_code, output, request_id} of one WorkResponse payload."""
    res = {"exit_code": 0, "output": "", "request_id": 0}
    pos = 0
    while pos < len(data):
        key, pos = protowire.decode_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = protowire.decode_varint(data, pos)
            res[{1: "exit_code", 3: "request_id"}[field]] = value
        else:
            assert (field, wire) == (2, 2)
            n, pos = protowire.decode_varint(data, pos)
            res["output"] = data[pos:pos + n].decode("utf-8")
            pos += n
    return res


def test_persistent_worker(tool, tmp_path):
    """Four requests to one process: success, UserError, crash, then success again."""
    outs = [tmp_path / ("out%d" % i) for i in range(4)]
    params = tmp_path / "params"
    params.write_text("--output\n%s\n" % outs[3])
    stdin = (_request(["--output", str(outs[0])], 1)
             + _request(["--output=" + str(outs[1]), "--fail"], 2)
             + _request(["--output", str(outs[2]), "--crash"], 3)
             + _request(["@" + str(params)], 4))
    proc = subprocess.run([sys.executable, tool, "--persistent_worker"], env=_env(), input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    stream = io.BytesIO(proc.stdout)
    responses = []
    while True:
        msg = protocol.read_message(stream)
        if msg is None:
            break
        responses.append(_response(msg))
    assert [r["request_id"] for r in responses] == [1, 2, 3, 4]
    assert [r["exit_code"] for r in responses] == [0, 1, 1, 0], responses
    assert responses[0]["output"] == "writing %s\nto stderr\n" % outs[0]
    assert responses[1]["output"] == (
        "writing %s\nto stderr\nERROR: //pkg:t: attribute 'fail': True: it failed\n" % outs[1])
    assert "Traceback (most recent call last)" in responses[2]["output"]
    assert "ValueError: crashed on purpose" in responses[2]["output"]
    assert responses[3]["output"] == "writing %s\nto stderr\n" % outs[3]
    assert outs[0].read_text() == "partial" and outs[3].read_text() == "partial"
    assert not outs[1].exists() and not outs[2].exists()


def test_persistent_worker_bad_flags_answer_exit_2(tool):
    proc = subprocess.run([sys.executable, tool, "--persistent_worker"], env=_env(),
                          input=_request(["--nope"], 9), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    res = _response(protocol.read_message(io.BytesIO(proc.stdout)))
    assert res == {"exit_code": 2, "output": "ERROR: tiny_tool: unknown flag --nope\n", "request_id": 9}


def test_persistent_worker_flag_only_for_worker_tools():
    with pytest.raises(SystemExit) as e:
        cli.main(FLAGS, lambda args: 0, argv=["tool.py", "--persistent_worker"])
    assert e.value.code == 2


FAST_TOOL = '''
import atexit
import sys

from python_tools.shiko import cli
from python_tools.shiko.errors import UserError

FLAGS = [cli.string("output", required=True), cli.boolean("fail")]


def run(args):
    atexit.register(lambda: sys.stderr.write("teardown ran\\\\n"))
    with open(args.output, "w") as f:
        f.write("done")
    sys.stdout.write("x" * 100000)  # more than a pipe holds: it must all arrive
    sys.stderr.write("to stderr")
    if args.fail:
        raise UserError("it failed", target="//pkg:t", attr="fail", value=True)
    return 0


if __name__ == "__main__":
    cli.main(FLAGS, run, outputs=["output"], fast_exit=True)
'''


@pytest.mark.parametrize("fail", [False, True])
def test_fast_exit_flushes_everything_and_keeps_the_exit_code(tmp_path, fail):
    tool = tmp_path / "fast_tool.py"
    tool.write_text(FAST_TOOL)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(tool), "--output", str(out)] + (["--fail"] if fail else []),
                          env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.stdout == "x" * 100000
    assert proc.returncode == (1 if fail else 0)
    # The interpreter is not torn down (no atexit handlers): what the tool wrote is complete.
    assert "teardown ran" not in proc.stderr
    if fail:
        assert proc.stderr == "to stderrERROR: //pkg:t: attribute 'fail': True: it failed\n"
        assert not out.exists()
    else:
        assert proc.stderr == "to stderr" and out.read_text() == "done"
