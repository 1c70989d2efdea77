"""image_load: `bazel run //pkg:name` streams an image into docker or podman."""

load(":providers.bzl", "ImageInfo")
load(":stamp.bzl", "STAMP_ATTRS", "stamp_inputs", "stamp_manifest")

def _runfiles_path(ctx, f):
    """The path of f below the runfiles root (`<workspace>/pkg/file` or `<repo>/pkg/file`)."""
    if f.short_path.startswith("../"):
        return f.short_path[3:]
    return ctx.workspace_name + "/" + f.short_path

def _sh_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"

# Finds the runfiles (a directory, or a manifest where runfiles are not symlinked) and runs the
# load tool on the image's layout. Works with `bazel run` in Bazel 4.2.3 and 7+ and when the
# launcher is run directly (bazel-bin/pkg/name) or from another target's runfiles.
_LAUNCHER = """#!/bin/bash
# image_load launcher of {label}, written by rules_shiko (rules/private/load.bzl).
# Streams the image into docker (default; honours DOCKER_HOST) or podman. Flags:
#   --engine=auto|docker|podman   --repo_tag=REF (replaces repo_tags)   --add_repo_tag=REF
set -euo pipefail

tool_rpath={tool}
layout_rpath={layout}
run_manifest_rpath={run_manifest}

runfiles=""
if [[ -d "$0.runfiles" ]]; then
  runfiles="$0.runfiles"
elif [[ -n "${{RUNFILES_DIR:-}}" && -d "${{RUNFILES_DIR}}" ]]; then
  runfiles="$RUNFILES_DIR"
elif [[ "$0" == *.runfiles/* ]]; then
  runfiles="${{0%%.runfiles/*}}.runfiles"
fi
manifest=""
for m in "${{RUNFILES_MANIFEST_FILE:-}}" "$0.runfiles_manifest" "$0.runfiles/MANIFEST"; do
  if [[ -n "$m" && -f "$m" ]]; then
    manifest="$m"
    break
  fi
done

# Prints the absolute path of a runfile (file or directory), or fails.
rlocation() {{
  if [[ -n "$runfiles" && -e "$runfiles/$1" ]]; then
    echo "$runfiles/$1"
    return 0
  fi
  if [[ -n "$manifest" ]]; then
    local key value
    while IFS=" " read -r key value; do
      if [[ "$key" == "$1" ]]; then
        echo "$value"
        return 0
      fi
    done <"$manifest"
  fi
  return 1
}}

missing() {{
  echo "ERROR: {label}: cannot find $1 in the runfiles (run it with: bazel run {label})" >&2
  exit 1
}}

tool="$(rlocation "$tool_rpath")" || missing "$tool_rpath"
run_manifest="$(rlocation "$run_manifest_rpath")" || missing "$run_manifest_rpath"
# A manifest lists a tree artifact as one directory (Bazel 4) or file by file (Bazel 7+).
if ! layout="$(rlocation "$layout_rpath")"; then
  layout="$(rlocation "$layout_rpath/oci-layout")" || missing "$layout_rpath"
  layout="${{layout%/*}}"
fi
if [[ -n "$runfiles" ]]; then
  export RUNFILES_DIR="$runfiles"
elif [[ -n "$manifest" ]]; then
  export RUNFILES_MANIFEST_FILE="$manifest"
fi
exec "$tool" --run_manifest="$run_manifest" --layout="$layout" "$@"
"""

def _image_load_impl(ctx):
    target = str(ctx.label)
    info = ctx.attr.image[ImageInfo]
    stamp_files = stamp_inputs(ctx)

    # The tags are expanded (stamping) and checked at build time: a bad one fails the build.
    manifest_file = ctx.actions.declare_file(ctx.label.name + ".load_manifest.json")
    ctx.actions.write(manifest_file, json.encode({
        "target": target,
        "repo_tags": ctx.attr.repo_tags,
        "stamp": stamp_manifest(stamp_files),
    }))
    run_manifest = ctx.actions.declare_file(ctx.label.name + ".load_run.json")
    args = ctx.actions.args()
    args.add("--manifest", manifest_file)
    args.add("--output_run_manifest", run_manifest)
    ctx.actions.run(
        executable = ctx.executable._load_tool_exec,
        arguments = [args],
        inputs = depset([manifest_file] + stamp_files),
        outputs = [run_manifest],
        mnemonic = "ShikoLoadTags",
        progress_message = "Checking the repo_tags of %s" % ctx.label,
    )

    tool = ctx.executable._load_tool
    launcher = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.write(
        launcher,
        _LAUNCHER.format(
            label = target,
            tool = _sh_quote(_runfiles_path(ctx, tool)),
            layout = _sh_quote(_runfiles_path(ctx, info.layout)),
            run_manifest = _sh_quote(_runfiles_path(ctx, run_manifest)),
        ),
        is_executable = True,
    )
    runfiles = ctx.runfiles(files = [launcher, tool, info.layout, run_manifest])
    runfiles = runfiles.merge(ctx.attr._load_tool[DefaultInfo].default_runfiles)
    return [DefaultInfo(
        executable = launcher,
        files = depset([launcher, run_manifest]),
        runfiles = runfiles,
    )]

_ATTRS = {
    "image": attr.label(
        mandatory = True,
        providers = [ImageInfo],
        doc = "The `image` target to load.",
    ),
    "repo_tags": attr.string_list(
        doc = "References to tag the loaded image with, e.g. [\"app:latest\"] (`name[:tag]`, " +
              "`:latest` when the tag is missing). May hold {STAMP_KEY} placeholders. " +
              "At run time `--repo_tag=REF` replaces them and `--add_repo_tag=REF` adds to them.",
    ),
    "_load_tool": attr.label(
        default = "//python_tools:load",
        executable = True,
        cfg = "target",
        doc = "The load tool, run by the launcher from the runfiles.",
    ),
    "_load_tool_exec": attr.label(
        default = "//python_tools:load",
        executable = True,
        cfg = "exec",
        doc = "The load tool as a build action: expands and checks repo_tags.",
    ),
}

_ATTRS.update(STAMP_ATTRS)

image_load = rule(
    implementation = _image_load_impl,
    executable = True,
    doc = """Loads an image into docker or podman: `bazel run //pkg:name [-- FLAGS]`.

Streams the image (OCI layout + Docker manifest.json, the same archive as the image's `tarball`
output group, generated on the fly: no tarball is written) into the Docker Engine API at
DOCKER_HOST (default unix:///var/run/docker.sock), or into `podman load` with `--engine=podman`
(or when no Docker daemon is found and podman is on PATH). When the engine already holds an
image with this config digest it only re-tags it. Prints each `Loaded image: <ref>`, the
`Image ID` and what was transferred.

Run-time flags: --engine=auto|docker|podman, --repo_tag=REF (replaces repo_tags; repeatable),
--add_repo_tag=REF (adds a tag; repeatable).
""",
    attrs = _ATTRS,
)
