"""image_load: `bazel run //pkg:name` streams an image into docker or podman."""

load("//rules/private/common:launcher.bzl", "runfile_arg", "write_launcher")
load("//rules/private/common:providers.bzl", "ImageIndexInfo", "ImageInfo")
load("//rules/private/common:stamp.bzl", "STAMP_ATTRS", "stamp_inputs", "stamp_manifest")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load(":image_parts.bzl", "IMAGE_PARTS_ATTRS", "image_parts")

def _image_load_impl(ctx):
    target = str(ctx.label)
    is_index = ImageIndexInfo in ctx.attr.image
    info = ctx.attr.image[ImageIndexInfo] if is_index else ctx.attr.image[ImageInfo]
    stamp_files = stamp_inputs(ctx)

    # The tags are expanded (stamping) and checked at build time: a bad one fails the build.
    manifest_file = ctx.actions.declare_file(ctx.label.name + ".load_manifest.json")
    # No repo_tags of its own: the image's (a load never comes out untagged when the image
    # named itself).
    repo_tags = ctx.attr.repo_tags or getattr(info, "repo_tags", None) or []
    ctx.actions.write(manifest_file, json.encode({
        "target": target,
        "repo_tags": repo_tags,
        "stamp": stamp_manifest(stamp_files),
    }))
    run_manifest = ctx.actions.declare_file(ctx.label.name + ".load_run.json")
    args = ctx.actions.args()
    args.add("--manifest", manifest_file)
    args.add("--output_run_manifest", run_manifest)
    ctx.actions.run(
        executable = tool_executable(ctx, "_load_tool_exec"),
        tools = tool_inputs(ctx, "_load_tool_exec"),
        arguments = [args],
        inputs = depset([manifest_file] + stamp_files),
        outputs = [run_manifest],
        mnemonic = "ShikoLoadTags",
        progress_message = "Checking the repo_tags of %s" % ctx.label,
    )

    tool = ctx.executable._load_tool

    if is_index:
        # An index: its layout, from which the tool loads the image of --platform (default:
        # this machine's).
        parts_args, parts_files = [runfile_arg(info.layout, "--layout=")], [info.layout]
    else:
        # No layout in the runfiles (image_parts.bzl): a layer is read where it is, and only
        # when the engine lacks the image.
        parts_args, parts_files = image_parts(ctx, info)
    launcher = ctx.actions.declare_file(ctx.label.name)
    write_launcher(
        ctx,
        launcher,
        tool,
        [runfile_arg(run_manifest, "--run_manifest=")] + parts_args,
        what = "image_load launcher (flags: --engine=auto|docker|podman, --repo_tag=REF, --add_repo_tag=REF, --platform=OS/ARCH)",
        bzl = "rules/private/load.bzl",
    )
    runfiles = ctx.runfiles(files = [launcher, tool, run_manifest] + parts_files)
    runfiles = runfiles.merge(ctx.attr._load_tool[DefaultInfo].default_runfiles)
    return [DefaultInfo(
        executable = launcher,
        files = depset([launcher, run_manifest]),
        runfiles = runfiles,
    )]

_ATTRS = {
    "image": attr.label(
        mandatory = True,
        providers = [[ImageInfo], [ImageIndexInfo]],
        doc = "The `image` target to load, or an `image_index` (the image for `--platform=os/arch[/variant]` at run time, default this machine's).",
    ),
    "repo_tags": attr.string_list(
        doc = "References to tag the loaded image with, e.g. [\"app:latest\"] (`name[:tag]`, " +
              "`:latest` when the tag is missing). Default: the image's own `repo_tags`. " +
              "May hold {STAMP_KEY} placeholders. " +
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
_ATTRS.update(IMAGE_PARTS_ATTRS)

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
