"""Test-only rules shared by the test packages."""

def _generated_directory_impl(ctx):
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run(
        executable = ctx.executable.generator,
        arguments = ctx.attr.args + [out.path],
        outputs = [out],
        mnemonic = "ShikoTestDirectory",
        progress_message = "Writing test directory %s" % ctx.label,
    )
    return [DefaultInfo(files = depset([out]))]

generated_directory = rule(
    implementation = _generated_directory_impl,
    doc = "A directory output (tree artifact) written by `generator ARGS... OUTPUT_DIR`.",
    attrs = {
        "generator": attr.label(
            mandatory = True,
            executable = True,
            cfg = "exec",
            doc = "The program that writes the directory (its last argument).",
        ),
        "args": attr.string_list(
            doc = "Arguments before the output directory.",
        ),
    },
)
