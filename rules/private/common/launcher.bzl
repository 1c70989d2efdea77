"""Launchers: the executables that `bazel run` / `bazel test` start for rules_shiko's rules.

One bash script shape for all of them: find the runfiles (a directory, or a manifest where
runfiles are not symlinked), resolve each runfile argument, and exec the tool. It works with
`bazel run` and `bazel test` in Bazel 4.2.3 and 7+, run directly as bazel-bin/pkg/name, or from
another target's runfiles.
"""

load(":runfiles.bzl", _runfiles_path = "runfiles_path")

def runfiles_path(ctx, f):
    """The path of File f below the runfiles root: `<workspace>/pkg/file` or `<repo>/pkg/file`."""
    return _runfiles_path(ctx.workspace_name, f.short_path)

def sh_quote(s):
    """Quotes a string for bash."""
    return "'" + s.replace("'", "'\\''") + "'"

def runfile_arg(f, prefix = ""):
    """A launcher argument: `prefix` + the absolute path of File f (file or directory) at run time."""
    return struct(prefix = prefix, file = f)

_HEADER = """#!/bin/bash
# {what} of {label}, written by rules_shiko ({bzl}).
set -euo pipefail

runfiles=""
if [[ -d "$0.runfiles" ]]; then
  runfiles="$0.runfiles"
elif [[ -n "${{RUNFILES_DIR:-}}" && -d "${{RUNFILES_DIR}}" ]]; then
  runfiles="$RUNFILES_DIR"
elif [[ -n "${{TEST_SRCDIR:-}}" && -d "${{TEST_SRCDIR}}" ]]; then
  runfiles="$TEST_SRCDIR"
elif [[ "$0" == *.runfiles/* ]]; then
  runfiles="${{0%%.runfiles/*}}.runfiles"
fi
if [[ -n "$runfiles" ]]; then
  runfiles="$(cd "$runfiles" && pwd)"  # absolute (builtins only: PATH may be empty)
fi
rf_manifest=""
for m in "${{RUNFILES_MANIFEST_FILE:-}}" "$0.runfiles_manifest" "$0.runfiles/MANIFEST"; do
  if [[ -n "$m" && -f "$m" ]]; then
    rf_manifest="$m"
    break
  fi
done

# Prints the absolute path of a runfile (file or directory), or fails. A manifest lists a
# directory (tree artifact) as one entry (Bazel 4) or file by file (Bazel 7+).
rlocation() {{
  if [[ -n "$runfiles" && -e "$runfiles/$1" ]]; then
    echo "$runfiles/$1"
    return 0
  fi
  if [[ -n "$rf_manifest" ]]; then
    local key value
    while IFS=" " read -r key value; do
      if [[ "$key" == "$1" ]]; then
        echo "$value"
        return 0
      fi
      if [[ "$key" == "$1/"* ]]; then
        echo "${{value%"${{key#"$1"}}"}}"
        return 0
      fi
    done <"$rf_manifest"
  fi
  return 1
}}

missing() {{
  echo "ERROR: {label}: cannot find $1 in the runfiles (run it with: bazel {verb} {label})" >&2
  exit 1
}}

if [[ -n "$runfiles" ]]; then
  export RUNFILES_DIR="$runfiles"
elif [[ -n "$rf_manifest" ]]; then
  export RUNFILES_MANIFEST_FILE="$rf_manifest"
fi
"""

def write_launcher(ctx, output, tool, args, what, bzl, verb = "run", preamble = ""):
    """Writes an executable bash launcher that runs `tool` (a File in the runfiles).

    Args:
      ctx: the rule context.
      output: the File to write (executable).
      tool: the executable File to run; it must be in the target's runfiles.
      args: list of literal strings and runfile_arg() structs, passed before the user's "$@".
      what: a few words for the header comment (e.g. "image_push launcher").
      bzl: the .bzl file that writes it (for the header comment).
      verb: "run" or "test", for the error message when runfiles are missing.
      preamble: extra bash lines run before the tool (e.g. checks).
    """
    label = str(ctx.label)
    lines = [_HEADER.format(what = what, label = label, bzl = bzl, verb = verb)]
    if preamble:
        lines.append(preamble)
    lines.append("args=()")
    for i, a in enumerate([runfile_arg(tool)] + args):
        if type(a) == "string":
            lines.append("args+=(%s)" % sh_quote(a))
        else:
            rpath = sh_quote(runfiles_path(ctx, a.file))
            lines.append('p%d="$(rlocation %s)" || missing %s' % (i, rpath, rpath))
            lines.append('args+=(%s"$p%d")' % (sh_quote(a.prefix) if a.prefix else "", i))
    lines.append('exec "${args[@]}" "$@"')
    ctx.actions.write(output, "\n".join(lines) + "\n", is_executable = True)
