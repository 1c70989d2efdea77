"""Test-only rule: a tree artifact (directory output) to place in a layer."""

def _tree_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run(
        executable = ctx.executable._gen,
        arguments = ["tree", out.path],
        outputs = [out],
        mnemonic = "ShikoTestTree",
        progress_message = "Writing test directory %s" % ctx.label,
    )
    return [DefaultInfo(files = depset([out]))]

test_tree = rule(
    implementation = _tree_impl,
    doc = "A directory output with files, a subdirectory, an executable and symlinks.",
    attrs = {
        "_gen": attr.label(
            default = ":make_content",
            executable = True,
            cfg = "exec",
            doc = "The generator script.",
        ),
    },
)
