"""The `sbom` output group of every image: SPDX 2.3 and CycloneDX 1.5 from the build graph.

python_tools/sbom.py reads the image's manifest, config and digest, and, for every layer this
ruleset built in the image's chain (bottom first), its descriptor, listing (each member's
origin label), Debian inventories (LayerInfo.packages) and wheel identity files
(LayerInfo.wheels); a pulled base counts as one pkg:oci component. No layer bytes are read.
"""

load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load("//rules/private/common:worker.bzl", "WORKER_REQUIREMENTS", "worker_args")

def chain_layers(info):
    """Every LayerInfo of an ImageInfo and its image bases, bottom first."""
    chain = []
    i = info
    for _ in range(1000):
        if i == None:
            break
        chain.insert(0, i)
        i = i.base
    return [layer for image in chain for layer in image.layers]

def wheel_origin(f):
    """The origin label a wheel's files carry in layer listings (runfiles_layers.bzl)."""
    return "@%s//%s" % (f.owner.workspace_name, f.owner.package)

def sbom_outputs(ctx, info):
    """Declares the SBOM action of an image target; returns struct(spdx, cyclonedx, provenance).

    Args:
      ctx: the image rule's context (IMAGE_ATTRS: `_sbom_tool`).
      info: the target's ImageInfo.
    """
    build_info = ctx.file._build_info
    inputs = [info.manifest, info.config, info.digest, build_info]
    layers = []
    for layer in chain_layers(info):
        layers.append({
            "label": str(layer.label),
            "descriptor": layer.descriptor.path,
            "listing": layer.listing.path,
            "packages": [f.path for f in layer.packages],
            "wheels": [{"path": f.path, "origin": wheel_origin(f)} for f in layer.wheels],
        })
        inputs += [layer.descriptor, layer.listing] + layer.packages + layer.wheels
    base = None
    if info.layout_base != None:
        base = {"label": info.layout_base.label, "layout": info.layout_base.layout}
        for files in info.base_layouts:
            inputs += files
    spec = {
        "target": str(ctx.label),
        "name": ctx.label.name,
        "manifest": info.manifest.path,
        "config": info.config.path,
        "digest": info.digest.path,
        "build_info": build_info.path,
        "base": base,
        "layers": layers,
    }
    spdx, cdx, prov = _run_sbom_tool(
        ctx,
        spec,
        depset(inputs),
        with_provenance = True,
        message = "Writing the SBOM and provenance of %s (SPDX, CycloneDX, SLSA)" % ctx.label,
    )
    # spec and inputs: for an image_index's SBOM over its children (index_sbom_outputs).
    return struct(spdx = spdx, cyclonedx = cdx, provenance = prov, spec = spec, inputs = depset(inputs))

def index_sbom_outputs(ctx, digest, images):
    """The SBOM files (SPDX, CycloneDX) of an image_index: one document over its children.

    Args:
      ctx: the image_index rule's context (`_sbom_tool`).
      digest: the index's .digest File.
      images: the children's ImageInfo, in index order.
    """
    spdx, cdx, _ = _run_sbom_tool(
        ctx,
        {
            "target": str(ctx.label),
            "digest": digest.path,
            "images": [i.supply_chain.spec for i in images],
        },
        depset([digest], transitive = [i.supply_chain.inputs for i in images]),
        with_provenance = False,
        message = "Writing the SBOM of image index %s (SPDX, CycloneDX)" % ctx.label,
    )
    return [spdx, cdx]

def _run_sbom_tool(ctx, spec, inputs, with_provenance, message):
    """Runs python_tools/sbom.py on `spec` (its manifest); returns (spdx, cdx, provenance or None)."""
    manifest = ctx.actions.declare_file(ctx.label.name + ".sbom_manifest.json")
    ctx.actions.write(manifest, json.encode(spec))
    spdx = ctx.actions.declare_file(ctx.label.name + ".spdx.json")
    cdx = ctx.actions.declare_file(ctx.label.name + ".cdx.json")
    outputs = [spdx, cdx]
    args = worker_args(ctx)
    args.add("--manifest", manifest)
    args.add("--spdx", spdx)
    args.add("--cyclonedx", cdx)
    prov = None
    if with_provenance:
        prov = ctx.actions.declare_file(ctx.label.name + ".provenance.json")
        args.add("--provenance", prov)
        outputs.append(prov)
    ctx.actions.run(
        executable = tool_executable(ctx, "_sbom_tool"),
        tools = tool_inputs(ctx, "_sbom_tool"),
        arguments = [args],
        inputs = depset([manifest], transitive = [inputs]),
        outputs = outputs,
        mnemonic = "ShikoSbom",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = message,
    )
    return spdx, cdx, prov

SBOM_ATTRS = {
    "_build_info": attr.label(
        default = "@rules_shiko_build_info//:info.json",
        allow_single_file = True,
        doc = "The Bazel version (rules_shiko_dependencies / the build_info extension) for provenance.",
    ),
    "_sbom_tool": attr.label(
        default = "//python_tools:sbom",
        executable = True,
        cfg = "exec",
        doc = "Writes the image's SBOM (SPDX 2.3, CycloneDX 1.5) from its layers' provenance.",
    ),
}
