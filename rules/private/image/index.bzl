"""image_index: one multi-platform image (an OCI image index) from per-platform images.

    image_index(name = "index", images = [":image_amd64", ":image_arm64_v8"])
    image_index(name = "index", image = ":image", platforms = [
        "@rules_shiko//platforms:linux_amd64",
        "@rules_shiko//platforms:linux_arm64",
    ])

The second form builds `image` once per platform through a Starlark split transition on
`//command_line_option:platforms`: everything below the image (cc_binary, py_binary wheels,
Debian packages) follows the target platform; build tools stay on the exec platform.
Like `image`, the default outputs are metadata (`name.index.json`, `name.digest`); the OCI
layout is the `layout` output group.
"""

load("//rules/private/common:platforms.bzl", "platform_key", "platform_name")
load("//rules/private/common:providers.bzl", "ImageIndexInfo", "ImageInfo")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load("//rules/private/common:worker.bzl", "WORKER_REQUIREMENTS", "worker_args")
load(":image.bzl", "layout_ref_name")
load(":sbom.bzl", "SBOM_ATTRS", "index_sbom_outputs")

def _platforms_transition_impl(settings, attr):
    if not attr.platforms:
        # No split: the rule then fails with a clear message (a split must have a branch).
        return {"none": {"//command_line_option:platforms": settings["//command_line_option:platforms"]}}
    return {str(p): {"//command_line_option:platforms": str(p)} for p in attr.platforms}

platforms_transition = transition(
    implementation = _platforms_transition_impl,
    inputs = ["//command_line_option:platforms"],
    outputs = ["//command_line_option:platforms"],
)

def _children(ctx):
    """[(label string, ImageInfo)] in index order."""
    target = str(ctx.label)
    if ctx.attr.image and ctx.attr.images:
        fail("%s: attribute 'images': give either `images` or `image` with `platforms`, not both" % target)
    if ctx.attr.image:
        if not ctx.attr.platforms:
            fail("%s: attribute 'platforms': []: `image` needs the platforms to build it for" % target)
        out = []
        for p in ctx.attr.platforms:
            dep = ctx.split_attr.image[str(p.label)]
            out.append(("%s (%s)" % (dep.label, p.label), dep[ImageInfo]))
        return out
    if ctx.attr.platforms:
        fail("%s: attribute 'platforms': %s: only with `image` (the images of `images` are built as they are)" %
             (target, [str(p.label) for p in ctx.attr.platforms]))
    if not ctx.attr.images:
        fail("%s: attribute 'images': []: an index needs at least one image" % target)
    return [(str(dep.label), dep[ImageInfo]) for dep in ctx.attr.images]

def _check_platforms(target, children):
    """Two children for one platform: an error at analysis, naming both."""
    seen = {}
    for label, info in children:
        p = info.platform
        key = platform_key(p.os, p.architecture, p.variant)
        if key in seen:
            fail("%s: attribute 'images': %s and %s are both for %s: an index holds one image per platform" %
                 (target, seen[key], label, platform_name(p)))
        seen[key] = label

def _image_index_impl(ctx):
    target = str(ctx.label)
    children = _children(ctx)
    _check_platforms(target, children)
    index = ctx.actions.declare_file(ctx.label.name + ".index.json")
    digest = ctx.actions.declare_file(ctx.label.name + ".digest")
    spec = ctx.actions.declare_file(ctx.label.name + ".index_manifest.json")
    ctx.actions.write(spec, json.encode({
        "target": target,
        "images": [{"label": l, "manifest": i.manifest.path, "config": i.config.path} for l, i in children],
        "annotations": ctx.attr.annotations,
    }))
    args = worker_args(ctx)
    args.add("--manifest", spec)
    args.add("--output_index", index)
    args.add("--output_digest", digest)
    meta_inputs = [spec]
    for _, i in children:
        meta_inputs += [i.manifest, i.config]
    ctx.actions.run(
        executable = tool_executable(ctx, "_index_tool"),
        tools = tool_inputs(ctx, "_index_tool"),
        arguments = [args],
        inputs = depset(meta_inputs),
        outputs = [index, digest],
        mnemonic = "ShikoIndex",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = "Assembling image index %s (%d images)" % (ctx.label, len(children)),
    )

    layout = ctx.actions.declare_directory(ctx.label.name)
    lspec = ctx.actions.declare_file(ctx.label.name + ".index_layout_manifest.json")
    ctx.actions.write(lspec, json.encode({
        "target": target,
        "index": index.path,
        "ref_name": layout_ref_name(ctx.attr.repo_tags),
        "images": [
            {"label": l, "manifest": i.manifest.path, "config": i.config.path, "layout": i.layout.path}
            for l, i in children
        ],
    }))
    largs = worker_args(ctx)
    largs.add("--manifest", lspec)
    largs.add("--output_layout", layout.path)
    ctx.actions.run(
        executable = tool_executable(ctx, "_index_tool"),
        tools = tool_inputs(ctx, "_index_tool"),
        arguments = [largs],
        inputs = depset([lspec, index] + meta_inputs[1:] + [i.layout for _, i in children]),
        outputs = [layout],
        mnemonic = "ShikoIndexLayout",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = "Writing the OCI layout of image index %s" % ctx.label,
    )
    images = [i for _, i in children]
    return [
        DefaultInfo(files = depset([index, digest])),
        ImageIndexInfo(
            index = index,
            digest = digest,
            layout = layout,
            images = images,
            repo_tags = list(ctx.attr.repo_tags),
        ),
        OutputGroupInfo(
            layout = depset([layout]),
            digest = depset([digest]),
            # One SBOM over every child (each child's own is in its `sbom` group too).
            sbom = depset(index_sbom_outputs(ctx, digest, images)),
        ),
    ]

_INDEX_ATTRS = {
    "images": attr.label_list(
        providers = [ImageInfo],
        doc = "Images to list, one per platform, in index order (each built as it is).",
    ),
    "image": attr.label(
        providers = [ImageInfo],
        cfg = platforms_transition,
        doc = "One image target, built once for each of `platforms` (a split transition on --platforms).",
    ),
    "platforms": attr.label_list(
        doc = "Platforms to build `image` for, in index order, e.g. @rules_shiko//platforms:linux_amd64 and :linux_arm64.",
    ),
    "annotations": attr.string_dict(
        doc = "Annotations of the index.",
    ),
    "repo_tags": attr.string_list(
        doc = "Names of the index (the first one's tag names it in the layout's index.json; image_push tags it with `remote_tags`).",
    ),
    "_index_tool": attr.label(
        default = "//python_tools:index",
        executable = True,
        cfg = "exec",
        doc = "Writes the index blob and digest, and its layout on request.",
    ),
    "_allowlist_function_transition": attr.label(
        default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        doc = "Required by Bazel for rules with a Starlark transition.",
    ),
}
_INDEX_ATTRS.update(SBOM_ATTRS)

image_index = rule(
    implementation = _image_index_impl,
    doc = "An OCI image index: one image per platform. Give `images`, or `image` and `platforms`. Output groups: `layout`, `sbom` (one SPDX and one CycloneDX document over every child).",
    attrs = _INDEX_ATTRS,
)
