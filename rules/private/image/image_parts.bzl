"""An image handed to a `bazel run` tool without its OCI layout (image_push, image_load).

With Build without the Bytes, a layout in a run target's runfiles makes Bazel download every
layer before the tool starts. Instead the tool gets the image's manifest, config and digest and
a blob map: the exec paths of the layers the image (and its bases) built or downloaded, and the
runfiles paths of pulled bases' (shallow) layouts and their source.json. At run time it reads
each layer from this machine's output when it is there, else from a base layout, else streams
it from the remote cache (`//settings:remote_cache`) or a pulled base's registry, only when it
needs the bytes; a push to that registry mounts it (python_tools/shiko/registry/image_blobs.py).
"""

load("@bazel_skylib//rules:common_settings.bzl", "BuildSettingInfo")
load("//rules/private/common:launcher.bzl", "runfile_arg", "runfiles_path")

IMAGE_PARTS_ATTRS = {
    "_remote_cache": attr.label(
        default = "//settings:remote_cache",
        providers = [BuildSettingInfo],
        doc = "The Bazel HTTP remote cache layer blobs are fetched from when this machine lacks them.",
    ),
}

def image_parts(ctx, info):
    """(launcher args, runfiles Files) giving a tool the image of ImageInfo `info`."""
    blob_map = ctx.actions.declare_file(ctx.label.name + ".blobs.json")
    layouts = []
    sources = []
    layout_files = []
    for files in info.base_layouts:
        layout_files += files
        d = files[0] if len(files) == 1 else [f for f in files if f.basename == "oci-layout"][0]
        rpath = runfiles_path(ctx, d)
        layouts.append(rpath if len(files) == 1 else rpath[:-len("/oci-layout")])

        # A shallow pulled base (rules/private/image/pulled.bzl): where its layers live.
        source = [f for f in files if f.basename == "source.json" and f.dirname == d.dirname]
        sources.append(runfiles_path(ctx, source[0]) if source else None)
    ctx.actions.write(blob_map, json.encode({
        "self": runfiles_path(ctx, blob_map),
        # Exec paths only: a File in the runfiles (even a layer's descriptor) would make Bazel
        # 4.2.3 download its action's outputs, the blob included. They are the manifest's last
        # len(blobs) layers, in order.
        "blobs": [l.blob.path for l in info.layer_files],
        "layouts": layouts,
        "sources": sources,
    }))
    args = [
        runfile_arg(info.manifest, "--image_manifest="),
        runfile_arg(info.config, "--image_config="),
        runfile_arg(blob_map, "--blob_map="),
    ]
    cache = ctx.attr._remote_cache[BuildSettingInfo].value
    if cache:
        args.append("--remote_cache=" + cache)
    return args, [info.manifest, info.config, blob_map] + layout_files
