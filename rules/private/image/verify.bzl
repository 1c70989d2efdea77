"""image_verify: `bazel run //app:verify -- REF --key=cosign.pub`, for deploy pipelines.

Checks that REF (a tag or digest in a registry) is this target's image, signed with the key,
with its SBOM and signed provenance attached (python_tools/verify.py); exits non-zero on any
miss.
"""

load("//rules/private/common:launcher.bzl", "runfile_arg", "write_launcher")
load("//rules/private/common:providers.bzl", "ImageIndexInfo", "ImageInfo")

def _image_verify_impl(ctx):
    image = ctx.attr.image
    info = image[ImageIndexInfo] if ImageIndexInfo in image else image[ImageInfo]
    launcher = ctx.actions.declare_file(ctx.label.name)
    write_launcher(
        ctx,
        launcher,
        ctx.executable._verify_tool,
        ["--target=" + str(ctx.label), runfile_arg(info.digest, "--digest_file=")],
        what = "image_verify launcher (usage: -- REGISTRY/REPO[:TAG] --key=PUB.pem)",
        bzl = "rules/private/image/verify.bzl",
    )
    runfiles = ctx.runfiles(files = [info.digest]).merge(ctx.attr._verify_tool[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = launcher, runfiles = runfiles)]

image_verify = rule(
    implementation = _image_verify_impl,
    doc = "`bazel run //pkg:verify -- REF --key=PUB.pem`: REF must be this image (or index), signed with the key, with its SBOM and signed SLSA provenance attached as referrers.",
    executable = True,
    attrs = {
        "image": attr.label(
            mandatory = True,
            providers = [[ImageInfo], [ImageIndexInfo]],
            doc = "The `image` or `image_index` target whose pushed copy is checked (REF must resolve to its digest).",
        ),
        "_verify_tool": attr.label(
            default = "//python_tools:verify",
            executable = True,
            cfg = "target",
            doc = "The verify CLI (python_tools/verify.py), run by the launcher.",
        ),
    },
)
