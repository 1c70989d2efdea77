"""pulled_image: the target `@base//:base` of a shallow `image_pull` repository.

The repository holds only the small files: oci-layout, index.json, the manifest(s) and the
config, `digest`, and source.json (where the layers live: {"image", "insecure", "ca_file",
"retries"}). This rule makes the base look like an `image` target (ImageInfo), so:

- an `image` on it reads only its manifest and config (the metadata action, rules/private/image/
  image.bzl `_base`): a CI build downloads a few kB of the base, never its layers;
- each layer is the output of its own ShikoPullBlob action (python_tools/pull.py `fetch`), run
  only when something needs its bytes: the `layout`/`tarball` output groups, image_test, a push
  or load from this machine's outputs. The action is tagged `requires-network` (it talks to the
  registry) and `no-remote-exec` (a remote executor may lack the network and the credentials),
  and its output is content-addressed and verified against its digest, so it is deterministic
  and remote-cacheable: a second CI machine gets it from the cache, or never at all;
- ImageInfo.layout is the whole layout (the small files and the layer blobs, hard-linked) built
  by one ShikoPulledLayout action, on request only;
- ImageInfo.layout_base.full is that whole layout, for the report (it reads the layers' bytes);
- ImageInfo.base_layouts holds only the small files (and source.json): image_push and image_load
  (rules/private/image/image_parts.bzl) mount or stream a layer from the source registry when
  this machine and the remote cache lack it (python_tools/shiko/registry/image_blobs.py).

Why not a second repository for the blobs: an `image` target must name the blobs as inputs of
its layout action, so analysing it would load (fetch) that repository, layers and all; and a
repository rule's downloads never reach the remote cache. Actions give both laziness and the
cache, at the price of Bazel's repository cache (see docs/performance.md).
"""

load("//rules/private/common:providers.bzl", "ImageInfo")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")

def _pulled_image_impl(ctx):
    small = ctx.files.layout_files
    oci_layout = [f for f in small if f.basename == "oci-layout"]
    if len(oci_layout) != 1:
        fail("%s: attribute 'layout_files': must hold one oci-layout file" % ctx.label)
    layout_dir = oci_layout[0].dirname
    ca = [f for f in small if f.basename == "source_ca.pem"]

    registry_args = ["--image", ctx.attr.image, "--retries", str(ctx.attr.retries)]
    if ctx.attr.insecure:
        registry_args.append("--insecure")
    if ca:
        registry_args += ["--ca_file", ca[0].path]

    blobs = []  # one per layer of the manifest, in order
    by_digest = {}  # a layer repeated in the manifest is downloaded once
    for spec in ctx.attr.layers:
        digest, _, size = spec.rpartition(":")
        if digest in by_digest:
            blobs.append(by_digest[digest])
            continue
        out = ctx.actions.declare_file("%s.layers/%s" % (ctx.label.name, digest[len("sha256:"):]))
        ctx.actions.run(
            executable = tool_executable(ctx, "_pull_tool"),
            tools = tool_inputs(ctx, "_pull_tool"),
            arguments = ["fetch"] + registry_args + ["--dir", out.dirname, "--blob", spec, "--jobs", "1"],
            inputs = ca,
            outputs = [out],
            mnemonic = "ShikoPullBlob",
            # PATH for credential helpers; HOME comes from the password database when unset,
            # other variables (DOCKER_CONFIG, REGISTRY_AUTH_FILE) through --action_env.
            use_default_shell_env = True,
            execution_requirements = {"requires-network": "1", "no-remote-exec": "1"},
            progress_message = "Pulling layer %s (%s bytes) of %s" % (digest[:19], size, ctx.attr.image),
        )
        by_digest[digest] = out
        blobs.append(out)

    layout = ctx.actions.declare_directory(ctx.label.name + ".layout")
    args = ctx.actions.args()
    args.add("assemble")
    args.add("--layout", layout_dir)
    args.add_all(by_digest.values(), before_each = "--blob_file")
    args.add("--output", layout.path)
    ctx.actions.run(
        executable = tool_executable(ctx, "_pull_tool"),
        tools = tool_inputs(ctx, "_pull_tool"),
        arguments = [args],
        inputs = small + by_digest.values(),
        outputs = [layout],
        mnemonic = "ShikoPulledLayout",
        progress_message = "Writing the OCI layout of the pulled base %s" % ctx.label,
    )

    platform = struct(os = ctx.attr.os, architecture = ctx.attr.architecture, variant = ctx.attr.variant)
    info = ImageInfo(
        layout = layout,
        digest = ctx.file.digest_file,
        config = ctx.file.config,
        manifest = ctx.file.manifest,
        layers = [],
        base = None,
        platform = platform,
        repo_tags = [],
        layer_files = [struct(descriptor = None, blob = b) for b in blobs],
        base_layouts = [small],
        layout_base = struct(label = str(ctx.label), layout = layout_dir, full = layout),
    )
    return [
        DefaultInfo(files = depset(small)),
        info,
        OutputGroupInfo(layout = depset([layout])),
    ]

pulled_image = rule(
    implementation = _pulled_image_impl,
    doc = "A base image pulled by image_pull, layers fetched by actions on demand. Generated by image_pull; not for direct use.",
    attrs = {
        "layout_files": attr.label_list(allow_files = True, mandatory = True, doc = "oci-layout, index.json, the manifest(s) and config blobs, source.json (and source_ca.pem)."),
        "manifest": attr.label(allow_single_file = True, mandatory = True, doc = "The platform's image manifest blob."),
        "config": attr.label(allow_single_file = True, mandatory = True, doc = "Its config blob."),
        "digest_file": attr.label(allow_single_file = True, mandatory = True, doc = "`sha256:<hex>` of the manifest."),
        "layers": attr.string_list(doc = "sha256:<hex>:<size> of each layer, bottom first."),
        "image": attr.string(mandatory = True, doc = "REGISTRY/REPO the layers are fetched from."),
        "insecure": attr.bool(doc = "As image_pull's."),
        "retries": attr.int(default = 6, doc = "As image_pull's."),
        "os": attr.string(mandatory = True, doc = "The config's os."),
        "architecture": attr.string(mandatory = True, doc = "The config's architecture."),
        "variant": attr.string(doc = "The config's variant."),
        "_pull_tool": attr.label(
            default = "//python_tools:pull",
            executable = True,
            cfg = "exec",
            doc = "Downloads a layer (fetch) and assembles the layout (assemble).",
        ),
    },
)
