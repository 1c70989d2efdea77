"""The one entry point of every rules_shiko tool (standard library only).

A tool module (`python_tools/<verb>.py`) declares its flags and its `run` function and ends with

    if __name__ == "__main__":
        cli.main(FLAGS, run, outputs=["output", "descriptor"], manifest="manifest", worker=True)

`cli.main` then, in the same way for every tool:
- parses the command line (or each persistent-worker request, with `worker=True` and
  `--persistent_worker`): `--name=value`, `--name value`, `--bool`/`--nobool`, repeatable
  multi-flags, and Bazel's `@params` files (one argument per line); a '-' in a flag's name is
  taken for '_' (`--sign-key` is `--sign_key`);
- with `manifest="flag"`, reads that flag's JSON file (a missing or malformed manifest is the
  one-line error, never a traceback) and calls `run(args, manifest)`, else `run(args)`;
- turns a `UserError` into one line on stderr (`ERROR: <target>: attribute '<attr>': <value>:
  <problem>`), removes the files named by the `outputs` flags (a failed run writes nothing),
  and exits 1; a bad command line (a flag `parse` rejects, or a `UsageError` that `run` raises
  for a bad combination of flags) exits 2 with `ERROR: <tool>: <problem>`, outputs removed too.

Tools with sub-commands (`deb_lock.py lock|sources|probe`, `pull.py digest|fetch|…`) pass
`cli.main({"lock": cli.Command(FLAGS, run, …), …})` instead.

No absl and nothing outside the standard library is imported here: the tools that repository
rules run with the host's bare `python3 -I -S` (pull.py, deb_lock.py) use this entry point too,
and a fresh `bazel run` process starts fast.
"""

import io
import json
import os
import sys

from python_tools.shiko.errors import UserError, remove_outputs

_TRUE = ("1", "true", "t", "yes", "y")
_FALSE = ("0", "false", "f", "no", "n")


class UsageError(Exception):
    """A bad command line (exit 2): raised by `parse`, or by a tool's `run` for a bad combination
    of flags; printed as `ERROR: <tool>: <problem>`."""


class Flag:
    """One flag: name, kind (string|int|float|bool|enum|multi), default, help."""

    def __init__(self, name, kind, default, help, choices=None, lower_bound=None, required=False):
        self.name = name
        self.kind = kind
        self.default = default
        self.help = help
        self.choices = choices
        self.lower_bound = lower_bound
        self.required = required

    def convert(self, text):
        if self.kind in ("string", "multi"):
            return text
        if self.kind == "bool":
            low = text.lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise UsageError("--%s: %r is not a boolean (true or false)" % (self.name, text))
        if self.kind == "enum":
            if text not in self.choices:
                raise UsageError("--%s: %r is not one of %s" % (self.name, text, ", ".join(self.choices)))
            return text
        try:
            value = int(text) if self.kind == "int" else float(text)
        except ValueError:
            raise UsageError("--%s: %r is not %s" % (self.name, text, "an integer" if self.kind == "int" else "a number"))
        if self.lower_bound is not None and value < self.lower_bound:
            raise UsageError("--%s: %r is below %s" % (self.name, text, self.lower_bound))
        return value


def string(name, default=None, help="", required=False):
    return Flag(name, "string", default, help, required=required)


def integer(name, default=None, help="", lower_bound=None):
    return Flag(name, "int", default, help, lower_bound=lower_bound)


def floating(name, default=None, help="", lower_bound=None):
    return Flag(name, "float", default, help, lower_bound=lower_bound)


def boolean(name, default=False, help=""):
    return Flag(name, "bool", default, help)


def enum(name, default, choices, help=""):
    return Flag(name, "enum", default, help, choices=list(choices))


def multi_string(name, help=""):
    return Flag(name, "multi", [], help)


class Args:
    """Parsed flag values as attributes (`args.output`); `args.target` is set for messages."""

    def __init__(self, values):
        self.__dict__.update(values)

    def __repr__(self):
        return "Args(%r)" % self.__dict__


def _is_params_file(arg):
    return arg.startswith("@") and not arg.startswith("@@") and len(arg) > 1


def _read_params(path):
    with open(path, "r", encoding="utf-8") as f:
        return [line for line in f.read().split("\n") if line != ""]


def expand_params(argv):
    """Expands `@file` arguments (Bazel's "multiline" params files: one argument per line)."""
    out = []
    for a in argv:
        if _is_params_file(a):
            out.extend(_read_params(a[1:]))
        else:
            out.append(a)
    return out


def parse(flags, argv):
    """Parses argv (no program name) against `flags`; returns Args. UsageError on mistakes.

    An `@file` argument where a flag is expected is a params file, read in place; a flag's value
    is never one (`--target @repo` is the label @repo).
    """
    by_name = {f.name: f for f in flags}
    values = {f.name: (list(f.default) if f.kind == "multi" else f.default) for f in flags}
    seen = set()
    args = list(argv)
    from_file = 0  # args[:from_file] may come from params files: not expanded again
    i = 0
    while i < len(args):
        a = args[i]
        if i >= from_file and _is_params_file(a):
            lines = _read_params(a[1:])
            args[i:i + 1] = lines
            from_file = i + len(lines)
            continue
        i += 1
        if not a.startswith("--") or a == "--":
            raise UsageError("unexpected argument %r (flags look like --name=value)" % a)
        name, eq, text = a[2:].partition("=")
        name = name.replace("-", "_")  # --sign-key is --sign_key
        flag = by_name.get(name)
        if flag is None and name.startswith("no") and not eq and name[2:] in by_name:
            flag = by_name[name[2:]]
            if flag.kind != "bool":
                raise UsageError("--%s: not a boolean flag" % name)
            values[flag.name] = False
            seen.add(flag.name)
            continue
        if flag is None:
            raise UsageError("unknown flag --%s" % name)
        if not eq:
            if flag.kind == "bool":
                values[flag.name] = True
                seen.add(flag.name)
                continue
            if i >= len(args):
                raise UsageError("--%s needs a value" % name)
            text = args[i]
            i += 1
        value = flag.convert(text)
        if flag.kind == "multi":
            values[flag.name].append(value)
        else:
            values[flag.name] = value
        seen.add(flag.name)
    missing = [f.name for f in flags if f.required and not values[f.name]]
    if missing:
        raise UsageError("missing required flag%s: %s" % ("s" if len(missing) > 1 else "",
                                                         ", ".join("--" + m for m in missing)))
    return Args(values)


def read_manifest(path, flag="manifest", target=None):
    """Reads a tool's JSON manifest; a missing or malformed file is a UserError (one line) naming
    `target` (the entry point passes the tool's name), the flag and the path."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise UserError("cannot read the manifest: %s" % (e.strerror or e), target=target, attr="--" + flag,
                        value=path)
    except ValueError as e:
        raise UserError("the manifest is not valid JSON: %s" % e, target=target, attr="--" + flag, value=path)


class Command:
    """One (sub-)command: its flags, its run function and how the entry point calls it.

    run:       run(args) or, with `manifest`, run(args, manifest); its int result is the exit code;
               it raises UserError for bad input (exit 1), UsageError for bad flags (exit 2).
    outputs:   names of flags whose paths are removed when run fails (files or directories).
    manifest:  name of the flag holding the JSON manifest to read before calling run.
    target:    a callable(args, manifest) giving the label for messages (default: the manifest's
               "target" entry, else the `--target` flag, else the tool's name).
    """

    def __init__(self, flags, run, outputs=(), manifest=None, target=None):
        self.flags = list(flags)
        self.run = run
        self.outputs = list(outputs)
        self.manifest = manifest
        self.target = target

    def execute(self, prog, argv):
        """Parses argv and runs; returns the exit code. Messages go to sys.stderr."""
        try:
            args = parse(self.flags, argv)
        except UsageError as e:
            sys.stderr.write("ERROR: %s: %s\n" % (prog, e))
            return 2
        except OSError as e:
            sys.stderr.write("ERROR: %s: cannot read a params file: %s\n" % (prog, e))
            return 2
        outputs = [getattr(args, o) for o in self.outputs]
        outputs = [p for v in outputs for p in (v if isinstance(v, list) else [v]) if p]
        try:
            if self.manifest:
                manifest = read_manifest(getattr(args, self.manifest), self.manifest, target=prog)
                args.target = self._target(args, manifest, prog)
                code = self.run(args, manifest)
            else:
                args.target = self._target(args, None, prog)
                code = self.run(args)
        except UserError as e:
            remove_outputs(outputs)
            sys.stderr.write("ERROR: %s\n" % e.render())
            return 1
        except UsageError as e:
            remove_outputs(outputs)
            sys.stderr.write("ERROR: %s: %s\n" % (prog, e))
            return 2
        except SystemExit as e:
            if e.code not in (None, 0):  # a tool that exits 0 on its own has succeeded
                remove_outputs(outputs)
            raise
        except BaseException:
            remove_outputs(outputs)
            raise
        return code if isinstance(code, int) else 0

    def _target(self, args, manifest, prog):
        if self.target is not None:
            return self.target(args, manifest)
        if isinstance(manifest, dict) and manifest.get("target"):
            return manifest["target"]
        return getattr(args, "target", None) or prog


def _dispatch(commands, prog, argv):
    if isinstance(commands, Command):
        return commands.execute(prog, argv)
    if not argv or argv[0] not in commands:
        sys.stderr.write("ERROR: %s: give a command: %s\n" % (prog, " | ".join(sorted(commands))))
        return 2
    return commands[argv[0]].execute(prog + " " + argv[0], argv[1:])


def run_captured(commands, prog, argv):
    """Runs one request with everything printed captured; returns (exit code, text)."""
    buf = io.StringIO()
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = buf
    try:
        try:
            code = _dispatch(commands, prog, argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if e.code is not None and not isinstance(e.code, int):
                buf.write("%s\n" % e.code)
        except Exception:  # the tool crashed: report it as an uncaught exception would
            import traceback

            traceback.print_exc(file=buf)
            code = 1
        return code, buf.getvalue()
    finally:
        sys.stdout, sys.stderr = old_out, old_err


def main(flags_or_commands, run=None, outputs=(), manifest=None, worker=False, target=None, argv=None,
         fast_exit=False):
    """Runs a tool: `main(FLAGS, run, ...)` or `main({"cmd": Command(...), ...})`; exits.

    fast_exit: for the commands `bazel run` starts (push, load), which close what they open:
    once the tool has returned and stdout and stderr are flushed, the process ends without
    tearing the interpreter down (freeing every module and object is ~5-25 ms of a 0.1 s push)."""
    if isinstance(flags_or_commands, dict):
        commands = flags_or_commands
    else:
        commands = Command(flags_or_commands, run, outputs=outputs, manifest=manifest, target=target)
    argv = list(sys.argv if argv is None else argv)
    prog = os.path.basename(argv[0]) if argv else "tool"
    if prog.endswith(".py"):
        prog = prog[:-3]
    if worker and "--persistent_worker" in argv[1:]:
        from python_tools.shiko import worker as worker_protocol  # only workers need it

        worker_protocol.serve(lambda args: run_captured(commands, prog, args))
        sys.exit(0)
    code = _dispatch(commands, prog, argv[1:])
    if fast_exit:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            sys.exit(code)  # let the usual exit report a closed or broken stream
        os._exit(code or 0)
    sys.exit(code)
