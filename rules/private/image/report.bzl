"""The image report: the `report` output group of every image, and `<name>.explain`.

`bazel build //pkg:image --output_groups=report` writes `image.report.json` (every layer's
files traced to the label, Debian package, wheel or pulled base that put them there; dive's
wasted bytes and efficiency; duplicates, largest files, findings) and `image.report.html` (the
same as one self-contained page). `bazel run //pkg:image.explain` prints it as a table, and
`-- --diff=OLD.report.json` what changed since an older build. See docs/explain.md.
"""

load("//rules/private/common:launcher.bzl", "runfile_arg", "write_launcher")
load("//rules/private/common:macros.bzl", "helper_kwargs")
load("//rules/private/common:providers.bzl", "ImageInfo")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load("//rules/private/common:worker.bzl", "WORKER_REQUIREMENTS", "worker_args")
load(":sbom.bzl", "chain_layers", "wheel_origin")

REPORT_ATTRS = {
    "_report_tool": attr.label(
        default = "//python_tools:report",
        executable = True,
        cfg = "exec",
        doc = "Writes the report JSON and HTML page (the `report` output group).",
    ),
}

def image_report(ctx, info):
    """Declares the report action of the image whose ImageInfo is `info`.

    Args:
      ctx: the image rule's context (its attributes include REPORT_ATTRS).
      info: the image's ImageInfo.

    Returns:
      depset of the report files: `<name>.report.json` and `<name>.report.html`.
    """
    layers = chain_layers(info)
    inputs = [info.manifest, info.config, info.digest]
    specs = []
    for layer in layers:
        packages = layer.packages
        wheels = layer.wheels
        specs.append({
            "label": str(layer.label),
            "descriptor": layer.descriptor.path,
            "listing": layer.listing.path,
            "packages": [p.path for p in packages],
            "wheels": [{"identity": w.path, "origin": wheel_origin(w)} for w in wheels],
            # The files' content hashes (for --diff and same-content findings) are read from
            # the blob here, on demand, not by every layer build.
            "blob": layer.blob.path,
            "source": None,
        })
        inputs += [layer.descriptor, layer.listing, layer.blob] + packages + wheels
    base_layout = None
    full = getattr(info.layout_base, "full", None) if info.layout_base != None else None
    if full != None:
        # A shallow pulled base (rules/private/image/pulled.bzl): its layers are read from its
        # whole layout, built (layers downloaded) only when a report is asked for.
        base_layout = {"path": full.path, "source": str(info.layout_base.label)}
        inputs.append(full)
    elif info.layout_base != None:
        # A layout base at the bottom of the chain: its layers are read from its layout.
        base_layout = {"path": info.layout_base.layout, "source": str(info.layout_base.label)}
        for files in info.base_layouts:
            inputs += files

    out_json = ctx.actions.declare_file(ctx.label.name + ".report.json")
    out_html = ctx.actions.declare_file(ctx.label.name + ".report.html")
    manifest = ctx.actions.declare_file(ctx.label.name + ".report_manifest.json")
    ctx.actions.write(manifest, json.encode({
        "target": str(ctx.label),
        "manifest": info.manifest.path,
        "config": info.config.path,
        "digest": info.digest.path,
        "base_layout": base_layout,
        "layers": specs,
        "json": out_json.path,
        "html": out_html.path,
    }))
    args = worker_args(ctx)
    args.add("--manifest", manifest)
    ctx.actions.run(
        executable = tool_executable(ctx, "_report_tool"),
        tools = tool_inputs(ctx, "_report_tool"),
        arguments = [args],
        inputs = depset([manifest] + inputs),
        outputs = [out_json, out_html],
        mnemonic = "ShikoReport",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = "Explaining image %s (%d layers)" % (ctx.label, len(layers)),
    )
    return depset([out_json, out_html])

def _image_explain_impl(ctx):
    files = ctx.attr.image[OutputGroupInfo].report.to_list()
    report_json = [f for f in files if f.basename.endswith(".report.json")][0]
    report_html = [f for f in files if f.basename.endswith(".report.html")][0]
    tool = ctx.executable._explain_tool
    launcher = ctx.actions.declare_file(ctx.label.name)
    write_launcher(
        ctx,
        launcher,
        tool,
        [runfile_arg(report_json, "--report="), runfile_arg(report_html, "--html=")],
        what = "image explain launcher (flags: --diff=OLD.report.json)",
        bzl = "rules/private/image/report.bzl",
    )
    runfiles = ctx.runfiles(files = [launcher, tool, report_json, report_html])
    runfiles = runfiles.merge(ctx.attr._explain_tool[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = launcher, files = depset([launcher]), runfiles = runfiles)]

image_explain = rule(
    implementation = _image_explain_impl,
    executable = True,
    doc = """Prints an image's report as a table: `bazel run //pkg:image.explain [-- --diff=OLD.report.json]`.

Created by the `image` and `py_image` macros as `<name>.explain`. With `--diff` (an older
build's `<name>.report.json`; a relative path is taken from where `bazel run` started) it
prints which layers changed and, in each, the files added, removed or changed and the label
each came from.
""",
    attrs = {
        "image": attr.label(
            mandatory = True,
            providers = [ImageInfo],
            doc = "The image target (its `report` output group is read).",
        ),
        "_explain_tool": attr.label(
            default = "//python_tools:explain",
            executable = True,
            cfg = "target",
            doc = "The explain tool, run by the launcher from the runfiles.",
        ),
    },
)

def explain_target(name, kwargs):
    """Declares `<name>.explain` for the image `name` (from an image macro's kwargs: the common
    attributes, tagged manual so `bazel build //...` does not build every report)."""
    image_explain(
        name = name + ".explain",
        image = ":" + name,
        **helper_kwargs(kwargs)
    )
