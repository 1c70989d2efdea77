"""image: an OCI image (config, manifest and digest; the OCI layout and docker tarball on request)."""

load("//rules/private/common:providers.bzl", "ImageInfo", "LayerInfo")
load("//rules/private/common:stamp.bzl", "STAMP_ATTRS", "stamp_inputs", "stamp_manifest")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load("//rules/private/common:worker.bzl", "WORKER_REQUIREMENTS", "worker_args")
load(":report.bzl", "REPORT_ATTRS", "explain_target", "image_report")
load(":sbom.bzl", "SBOM_ATTRS", "sbom_outputs")

def _port(target, value):
    num, sep, proto = value.partition("/")
    if not sep:
        proto = "tcp"
    if proto not in ("tcp", "udp") or not num.isdigit() or int(num) < 1 or int(num) > 65535:
        fail("%s: attribute 'exposed_ports': %r: a port must be N, N/tcp or N/udp with 1 <= N <= 65535" %
             (target, value))
    return "%d/%s" % (int(num), proto)

def _check_env(target, env):
    for k in env:
        if k == "" or "=" in k:
            fail("%s: attribute 'env': %r: an environment variable name must be non-empty and contain no '='" %
                 (target, k))

def _check_abs(target, attr_name, values):
    for v in values:
        if not v.startswith("/"):
            fail("%s: attribute '%s': %r: must be an absolute path" % (target, attr_name, v))

def _base(ctx):
    """(metadata base, layout base, metadata inputs, layout inputs, ImageInfo or None) of `base`.

    An `image` target base is given to the metadata action by its config and manifest only (a
    few kB). Its layer bytes reach only the layout action: as the layers' own files when every
    layer of its chain was built here (so the base's layout is never built for it, and the
    layout action does not wait for it), else through the base's own layout (a pulled or
    plain-layout base at the bottom of the chain).
    """
    base = ctx.attr.base
    if base == None:
        return None, None, [], [], None
    label = str(base.label)
    if ImageInfo in base:
        info = base[ImageInfo]
        meta = {"config": info.config.path, "manifest": info.manifest.path, "label": label}
        if info.layout_base == None:
            files = info.layer_files
            lay = {"label": label, "layers": [
                {"blob": f.blob.path, "descriptor": f.descriptor.path}
                for f in files
            ]}
            lay_inputs = [f.descriptor for f in files] + [f.blob for f in files]
        else:
            lay = {"layout": info.layout.path, "label": label}
            lay_inputs = [info.layout]
        return meta, lay, [info.config, info.manifest], lay_inputs, info
    files = base[DefaultInfo].files.to_list()
    path = None
    if len(files) == 1:
        # A tree artifact or a source directory (Bazel can't tell the latter from a file at
        # analysis time): the image tool checks that it is a layout.
        path = files[0].path
    else:
        for f in files:
            if f.basename == "oci-layout":
                path = f.dirname
    if path == None:
        fail(("%s: attribute 'base': %r: is neither an image target nor an OCI image layout " +
              "(a directory, or files including oci-layout and index.json); it gives %s") %
             (str(ctx.label), label, [f.short_path for f in files[:5]]))
    lay = {"layout": path, "label": label}
    return lay, lay, files, files, None

def _platform(ctx, base_info):
    arch = ctx.attr.architecture
    if not arch:
        if base_info != None and base_info.platform.architecture:
            arch = base_info.platform.architecture
        elif ctx.target_platform_has_constraint(ctx.attr._arm64[platform_common.ConstraintValueInfo]):
            arch = "arm64"
        else:
            arch = "amd64"
    variant = ctx.attr.variant
    if not variant and arch == "arm64" and not ctx.attr.architecture:
        variant = "v8"
    return struct(os = ctx.attr.os, architecture = arch, variant = variant)

def layout_ref_name(repo_tags):
    """The tag that names the manifest in the layout's index.json (umoci, skopeo `oci:DIR:TAG`):
    the first repo_tag's, `latest` without one; None (the tool's default, `latest`) when the
    tag holds a stamp placeholder (the layout action reads no stamp files)."""
    if not repo_tags:
        return None
    last = repo_tags[0].split("/")[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    if "{" in tag:
        return None
    return tag

def _image_impl(ctx):
    return image_impl(ctx)

def image_impl(ctx, computed = None):
    """The implementation of `image`, for rules that add to it (py_image) with IMAGE_ATTRS.

    Args:
      ctx: the rule context (its attributes include IMAGE_ATTRS).
      computed: optional {"entrypoint": list, "cmd": list, "env": dict} worked out by the
        calling rule: entrypoint/cmd apply unless the rule's own are set; env goes under the
        rule's `env` (which wins per name).

    Returns:
      The providers of an image target (DefaultInfo, ImageInfo, OutputGroupInfo).
    """
    target = str(ctx.label)
    computed = computed or {}
    env = dict(computed.get("env", {}))
    env.update(ctx.attr.env)
    _check_env(target, env)
    ports = [_port(target, p) for p in ctx.attr.exposed_ports]
    _check_abs(target, "volumes", ctx.attr.volumes)
    if ctx.attr.workdir:
        _check_abs(target, "workdir", [ctx.attr.workdir])

    base_meta, base_lay, base_meta_inputs, base_lay_inputs, base_info = _base(ctx)
    platform = _platform(ctx, base_info)
    stamp_files = stamp_inputs(ctx)

    layers = []
    descriptors = []
    blobs = []
    for dep in ctx.attr.layers:
        info = dep[LayerInfo]
        layers.append({"blob": info.blob.path, "descriptor": info.descriptor.path, "label": str(info.label)})
        descriptors.append(info.descriptor)
        blobs.append(info.blob)
    platform_dict = {"os": platform.os, "architecture": platform.architecture, "variant": platform.variant}

    manifest = {
        "target": target,
        "base": base_meta,
        "platform": platform_dict,
        "layers": layers,
        "config": {
            "entrypoint": ctx.attr.entrypoint if ctx.attr.entrypoint_set else computed.get("entrypoint"),
            "cmd": ctx.attr.cmd if ctx.attr.cmd_set else computed.get("cmd"),
            "env": env,
            "user": ctx.attr.user or None,
            "workdir": ctx.attr.workdir or None,
            "labels": ctx.attr.labels,
            "exposed_ports": ports,
            "volumes": ctx.attr.volumes,
            "stop_signal": ctx.attr.stop_signal or None,
            "created": ctx.attr.created or None,
        },
        "annotations": ctx.attr.annotations,
        "stamp": stamp_manifest(stamp_files),
    }
    manifest_file = ctx.actions.declare_file(ctx.label.name + ".image_manifest.json")
    ctx.actions.write(manifest_file, json.encode(manifest))

    digest = ctx.actions.declare_file(ctx.label.name + ".digest")
    config = ctx.actions.declare_file(ctx.label.name + ".config.json")
    image_manifest = ctx.actions.declare_file(ctx.label.name + ".manifest.json")
    base_desc = "scratch" if base_meta == None else ctx.attr.base.label

    # Metadata only: the layers' descriptors and the base's config and manifest, never layer
    # bytes (Build without the Bytes downloads nothing to assemble an image).
    args = worker_args(ctx)
    args.add("--manifest", manifest_file)
    args.add("--output_digest", digest)
    args.add("--output_config", config)
    args.add("--output_manifest", image_manifest)
    ctx.actions.run(
        executable = tool_executable(ctx, "_image_tool"),
        tools = tool_inputs(ctx, "_image_tool"),
        arguments = [args],
        inputs = depset([manifest_file] + base_meta_inputs + descriptors + stamp_files),
        outputs = [digest, config, image_manifest],
        mnemonic = "ShikoImage",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = "Assembling image %s (%d layers on %s)" % (ctx.label, len(layers), base_desc),
    )

    # The OCI layout (the bytes), built only when something needs it: the `layout` and
    # `tarball` output groups, image_push, image_load, image_test.
    layout = ctx.actions.declare_directory(ctx.label.name)
    layout_spec = ctx.actions.declare_file(ctx.label.name + ".layout_manifest.json")
    ctx.actions.write(layout_spec, json.encode({
        "target": target,
        "ref_name": layout_ref_name(ctx.attr.repo_tags),
        "platform": platform_dict,
        "config": config.path,
        "manifest": image_manifest.path,
        "base": base_lay,
        "layers": layers,
    }))
    largs = worker_args(ctx)
    largs.add("--manifest", layout_spec)
    largs.add("--output_layout", layout.path)
    ctx.actions.run(
        executable = tool_executable(ctx, "_image_tool"),
        tools = tool_inputs(ctx, "_image_tool"),
        arguments = [largs],
        inputs = depset([layout_spec, config, image_manifest] + base_lay_inputs + descriptors + blobs),
        outputs = [layout],
        mnemonic = "ShikoLayout",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = "Writing the OCI layout of %s (%d layers on %s)" % (ctx.label, len(layers), base_desc),
    )

    # The docker/podman tarball is built only when its output group is requested.
    tarball = ctx.actions.declare_file(ctx.label.name + ".tar")
    tar_manifest = ctx.actions.declare_file(ctx.label.name + ".tarball_manifest.json")
    ctx.actions.write(tar_manifest, json.encode({
        "target": target,
        "layout": layout.path,
        "repo_tags": ctx.attr.repo_tags,
        "stamp": stamp_manifest(stamp_files),
    }))
    targs = worker_args(ctx)
    targs.add("--manifest", tar_manifest)
    targs.add("--output", tarball)
    ctx.actions.run(
        executable = tool_executable(ctx, "_tarball_tool"),
        tools = tool_inputs(ctx, "_tarball_tool"),
        arguments = [targs],
        inputs = depset([tar_manifest, layout] + stamp_files),
        outputs = [tarball],
        mnemonic = "ShikoTarball",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = "Writing docker/podman tarball of %s" % ctx.label,
    )

    fields = dict(
        layout = layout,
        digest = digest,
        config = config,
        manifest = image_manifest,
        layers = [dep[LayerInfo] for dep in ctx.attr.layers],
        base = base_info,
        platform = platform,
        repo_tags = list(ctx.attr.repo_tags),
        layer_files = (base_info.layer_files if base_info else []) + [
            struct(descriptor = dep[LayerInfo].descriptor, blob = dep[LayerInfo].blob)
            for dep in ctx.attr.layers
        ],
        base_layouts = base_info.base_layouts if base_info else ([base_lay_inputs] if base_lay != None else []),
        layout_base = base_info.layout_base if base_info else (
            struct(label = base_lay["label"], layout = base_lay["layout"]) if base_lay != None else None
        ),
    )

    # SBOM (SPDX, CycloneDX) and SLSA provenance predicate: output groups, and image_push
    # attaches them as referrers.
    supply_chain = sbom_outputs(ctx, struct(**fields))
    info = ImageInfo(supply_chain = supply_chain, **fields)
    return [
        # Metadata only by default (a few kB): the layout, tarball, SBOM and report are output groups.
        DefaultInfo(files = depset([digest, config, image_manifest])),
        info,
        OutputGroupInfo(
            layout = depset([layout]),
            tarball = depset([tarball]),
            digest = depset([digest]),
            config = depset([config, image_manifest]),
            sbom = depset([supply_chain.spdx, supply_chain.cyclonedx]),
            provenance = depset([supply_chain.provenance]),
            # rules/private/image/report.bzl: where every byte comes from (JSON and HTML).
            report = image_report(ctx, info),
        ),
    ]

IMAGE_ATTRS = {
    "base": attr.label(
        allow_files = True,
        doc = "Base image: an `image` target, or an OCI image layout (directory or its files, e.g. from image_pull). None: scratch.",
    ),
    "layers": attr.label_list(
        providers = [LayerInfo],
        doc = "image_layer targets, in order (bottom first), added on top of the base's layers.",
    ),
    "entrypoint": attr.string_list(doc = "ENTRYPOINT; replaces the base's (and then resets CMD, as Docker does)."),
    "entrypoint_set": attr.bool(doc = "Set by the `image` macro: whether `entrypoint` was given."),
    "cmd": attr.string_list(doc = "CMD; replaces the base's."),
    "cmd_set": attr.bool(doc = "Set by the `image` macro: whether `cmd` was given."),
    "env": attr.string_dict(doc = "Environment, merged over the base's. Values may use ${NAME} of the base's environment."),
    "user": attr.string(doc = "USER (name or uid[:gid]); empty: the base's."),
    "workdir": attr.string(doc = "Working directory (absolute); empty: the base's."),
    "labels": attr.string_dict(doc = "Config labels, merged over the base's. Values may hold {STAMP_KEY} placeholders."),
    "annotations": attr.string_dict(doc = "Manifest annotations. Values may hold {STAMP_KEY} placeholders."),
    "exposed_ports": attr.string_list(doc = "Ports: N, N/tcp or N/udp; added to the base's."),
    "volumes": attr.string_list(doc = "Volume mount points (absolute); added to the base's."),
    "stop_signal": attr.string(doc = "STOPSIGNAL, e.g. SIGTERM; empty: the base's."),
    "os": attr.string(default = "linux", doc = "Config os."),
    "architecture": attr.string(doc = "Config architecture (amd64, arm64, ...). Default: the target platform's."),
    "variant": attr.string(doc = "Config variant (e.g. v8 for arm64)."),
    "created": attr.string(doc = "Creation time, RFC 3339, or {BUILD_TIMESTAMP} (stamped). Default: 1970-01-01T00:00:00Z."),
    "repo_tags": attr.string_list(doc = "Names for the tarball output group (docker/podman load), e.g. [\"app:latest\"]. May hold {STAMP_KEY}."),
    "_image_tool": attr.label(
        default = "//python_tools:image",
        executable = True,
        cfg = "exec",
        doc = "Writes config, manifest and digest (metadata), and the layout on request.",
    ),
    "_tarball_tool": attr.label(
        default = "//python_tools:tarball",
        executable = True,
        cfg = "exec",
        doc = "Writes the docker/podman loadable tarball.",
    ),
    "_arm64": attr.label(
        default = "@platforms//cpu:arm64",
        doc = "To detect an arm64 target platform.",
    ),
}

IMAGE_ATTRS.update(STAMP_ATTRS)
IMAGE_ATTRS.update(REPORT_ATTRS)
IMAGE_ATTRS.update(SBOM_ATTRS)

image_rule = rule(
    implementation = _image_impl,
    doc = "An OCI image. Use the `image` macro.",
    attrs = IMAGE_ATTRS,
)

def image(name, entrypoint = None, cmd = None, **kwargs):
    """An OCI image: base layers, then `layers`, with the given config.

    Default outputs for //pkg:name (metadata only, a few kB): `name.digest` (`sha256:<hex>` of
    the manifest), `name.config.json` and `name.manifest.json`. Output groups: `layout`
    (`bazel-bin/pkg/name/`, the OCI image layout with every blob) and `tarball` (`name.tar`,
    loadable by `docker load` and `podman load`, named by `repo_tags`) and `report`
    (`name.report.json` and `name.report.html`: which label put which bytes in which layer,
    see docs/explain.md). The layers' bytes live once, in the layer targets' outputs; they are
    copied (hard-linked) only into a layout or tarball that something asks for.

    Also declares `name.explain`: `bazel run //pkg:name.explain [-- --diff=OLD.report.json]`
    prints the report as a table, or what changed since an older report.

    Args:
      name: target name.
      entrypoint: list of strings; None keeps the base's. Setting it resets CMD (Docker semantics).
      cmd: list of strings; None keeps the base's (unless entrypoint is set).
      **kwargs: every other attribute of image_rule (base, layers, env, user, workdir, labels,
        annotations, exposed_ports, volumes, stop_signal, os, architecture, variant, created,
        repo_tags, stamp) and the common ones.
    """
    image_rule(
        name = name,
        entrypoint = entrypoint or [],
        entrypoint_set = entrypoint != None,
        cmd = cmd or [],
        cmd_set = cmd != None,
        **kwargs
    )
    explain_target(name, kwargs)
