"""Test-only rule: a generated OCI layout directory whose layer blob is corrupt."""

def _corrupt_layout_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run(
        executable = ctx.executable._gen,
        arguments = ["layout", out.path],
        outputs = [out],
        mnemonic = "ShikoTestLayout",
        progress_message = "Writing corrupt test layout %s" % ctx.label,
    )
    return [DefaultInfo(files = depset([out]))]

corrupt_layout = rule(
    implementation = _corrupt_layout_impl,
    doc = "An OCI layout (directory) whose layer blob's bytes do not match its digest.",
    attrs = {
        "_gen": attr.label(
            default = ":make_inputs",
            executable = True,
            cfg = "exec",
            doc = "The generator script.",
        ),
    },
)
