"""image_test: checks an image's files, config and commands inside `bazel test`."""

load("//rules/private/common:launcher.bzl", "runfile_arg", "runfiles_path", "write_launcher")
load("//rules/private/common:platforms.bzl", "platform_key", "platform_name")
load("//rules/private/common:providers.bzl", "ImageIndexInfo", "ImageInfo")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")

_DRIVERS = ["auto", "docker", "podman", "none"]

# How deep `base` chains of image targets are followed to name layers (Starlark has no recursion).
_MAX_BASE_DEPTH = 64

def _layer_labels(info):
    """Labels of the image's layers that came from image_layer targets, bottom first."""
    chain = []
    cur = info
    for _ in range(_MAX_BASE_DEPTH):
        if cur == None:
            break
        chain.append(cur)
        cur = cur.base
    labels = []
    for i in range(len(chain)):
        labels += [str(l.label) for l in chain[len(chain) - 1 - i].layers]
    return labels

def _index_child(ctx, info):
    """The ImageInfo of the index's image for the `platform` attribute."""
    names = [platform_name(i.platform) for i in info.images]
    parts = ctx.attr.platform.split("/")
    if not ctx.attr.platform or len(parts) not in (2, 3):
        fail("%s: attribute 'platform': %r: an image_index holds several images: name one as os/architecture[/variant] (%s)" %
             (ctx.label, ctx.attr.platform, ", ".join(names)))
    want = platform_key(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    for i in info.images:
        if platform_key(i.platform.os, i.platform.architecture, i.platform.variant) == want:
            return i
    fail("%s: attribute 'platform': %r: %s has no image for it (it has %s)" %
         (ctx.label, ctx.attr.platform, ctx.attr.image.label, ", ".join(names)))

def _image_layout(ctx):
    """(runfiles path of the layout directory, [files], [layer labels]) of the `image` attribute."""
    image = ctx.attr.image
    if ImageIndexInfo in image:
        info = image[ImageIndexInfo]
        return runfiles_path(ctx, info.layout), [info.layout], _layer_labels(_index_child(ctx, info))
    if ImageInfo in image:
        info = image[ImageInfo]
        return runfiles_path(ctx, info.layout), [info.layout], _layer_labels(info)
    files = image[DefaultInfo].files.to_list()
    if len(files) == 1:
        # A tree artifact or a source directory: the checker verifies that it is a layout.
        return runfiles_path(ctx, files[0]), files, []
    for f in files:
        if f.basename == "oci-layout":
            path = runfiles_path(ctx, f)
            return path[:len(path) - len("/oci-layout")], files, []
    fail(("%s: attribute 'image': %r: is neither an image target nor an OCI image layout " +
          "(a directory, or files including oci-layout and index.json); it gives %s") %
         (ctx.label, str(image.label), [f.short_path for f in files[:5]]))

def _image_test_impl(ctx):
    layout, layout_files, labels = _image_layout(ctx)
    manifest = ctx.actions.declare_file(ctx.label.name + ".image_test_manifest.json")
    spec_inputs = []
    spec_file = None
    if ctx.file.spec:
        spec_file = ctx.file.spec.path
        spec_inputs.append(ctx.file.spec)
    ctx.actions.write(manifest, json.encode({
        "target": str(ctx.label),
        "image": {
            "label": str(ctx.attr.image.label),
            "layout": layout,
            "layers": labels,
        },
        "platform": ctx.attr.platform,
        "driver": ctx.attr.driver,
        "spec": json.decode(ctx.attr.spec_json) if ctx.attr.spec_json else {},
        "spec_file": spec_file,
    }))

    spec = ctx.actions.declare_file(ctx.label.name + ".image_test.json")
    args = ctx.actions.args()
    args.add("--manifest", manifest)
    args.add("--output", spec)
    ctx.actions.run(
        executable = tool_executable(ctx, "_validator"),
        tools = tool_inputs(ctx, "_validator"),
        arguments = [args],
        inputs = [manifest] + spec_inputs,
        outputs = [spec],
        mnemonic = "ShikoImageTestSpec",
        progress_message = "Checking the image_test spec of %s" % ctx.label,
    )

    checker = ctx.attr._checker[DefaultInfo].files_to_run.executable
    launcher = ctx.actions.declare_file(ctx.label.name + ".image_test.sh")
    write_launcher(
        ctx,
        launcher,
        checker,
        [runfile_arg(spec, "--spec=")],
        what = "image_test launcher (the checker reads paths relative to $RUNFILES_DIR)",
        bzl = "rules/private/image_test.bzl",
        verb = "test",
    )
    runfiles = ctx.runfiles(files = [spec] + layout_files)
    runfiles = runfiles.merge(ctx.attr._checker[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = launcher, runfiles = runfiles)]

_image_test = rule(
    implementation = _image_test_impl,
    test = True,
    doc = "Checks an image's files, config and commands. Use the `image_test` macro.",
    attrs = {
        "image": attr.label(
            mandatory = True,
            allow_files = True,
            doc = "The image under test: an `image` target, an `image_index` (with `platform`), or an OCI image layout (a directory, or its files).",
        ),
        "spec_json": attr.string(
            doc = "Set by the `image_test` macro: JSON of {files, absent, config, commands}.",
        ),
        "spec": attr.label(
            allow_single_file = [".json"],
            doc = "A JSON file with the same keys as the macro's arguments (files, absent, config, commands); merged with them.",
        ),
        "driver": attr.string(
            default = "auto",
            values = _DRIVERS,
            doc = "How commands run: docker, podman, none (unpacked layers under bwrap/unshare) or auto (docker if a daemon answers, else podman if configured, else none).",
        ),
        "platform": attr.string(
            doc = "os/architecture[/variant] of the image to test in an image_index or a multi-platform layout; empty: the layout's only image. An image for another CPU runs its commands through qemu-user-static (driver none).",
        ),
        "_validator": attr.label(
            default = "//python_tools:image_test",
            executable = True,
            cfg = "exec",
            doc = "Validates the spec at build time.",
        ),
        "_checker": attr.label(
            default = "//python_tools:image_test",
            executable = True,
            cfg = "target",
            doc = "Runs the checks when the test runs.",
        ),
    },
)

def image_test(
        name,
        image,
        files = None,
        absent = None,
        config = None,
        commands = None,
        spec = None,
        driver = "auto",
        tags = None,
        auto_tags = True,
        **kwargs):
    """Checks an image's files, config and commands in `bazel test`.

    Args:
      name: target name.
      image: the `image` target (or an OCI layout directory) to test.
      files: {"/path": {check: value}}; checks: exists (bool), type ("file", "dir", "symlink",
        "fifo", "char", "block"), mode ("0755"), uid, gid, link (a symlink's target), content /
        no_content (regex or list of regexes over the file's bytes), size.
      absent: paths that must not exist (after whiteouts), e.g. ["/bin/sh"].
      config: {field: expected}; entrypoint, cmd (lists), user, workdir, stop_signal, os,
        architecture, variant (strings), exposed_ports, volumes (lists, compared as sets),
        env, labels (dicts; only the given names are checked, None = must be unset).
        None as a value means "unset".
      commands: list of {"name", "command" (replaces entrypoint+cmd) or "args" (replaces cmd),
        "env", "exit_code" (default 0), "stdout", "stderr", "no_stdout", "no_stderr" (regexes),
        "timeout" (seconds, default 60)}. No command/args: the image's entrypoint + cmd.
      spec: a JSON file with the same keys (files, absent, config, commands), merged in.
      driver: auto (default), docker, podman or none. See README `### image_test`.
      tags: the test's tags. Unless auto_tags is False, "local" is added when commands may run
        (engines and bwrap need no sandbox) and "exclusive" for the docker and podman drivers.
      auto_tags: set False to use `tags` exactly as given.
      **kwargs: common test attributes (size, timeout, flaky, visibility, platform, ...).
    """
    spec_dict = {}
    if files:
        spec_dict["files"] = files
    if absent:
        spec_dict["absent"] = absent
    if config:
        spec_dict["config"] = config
    if commands:
        spec_dict["commands"] = commands
    all_tags = list(tags or [])
    if auto_tags and (commands or spec != None):
        wanted = ["local"]
        if driver in ("docker", "podman"):
            wanted.append("exclusive")
        for t in wanted:
            if t not in all_tags:
                all_tags.append(t)
    _image_test(
        name = name,
        image = image,
        spec_json = json.encode(spec_dict),
        spec = spec,
        driver = driver,
        tags = all_tags,
        **kwargs
    )
