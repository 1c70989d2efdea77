"""How an action starts one of rules_shiko's tools (the executable attributes `_<verb>_tool`).

    ctx.actions.run(
        executable = tool_executable(ctx, "_layer_tool"),
        tools = tool_inputs(ctx, "_layer_tool"),
        ...
    )

A hermetic tool (ShikoToolInfo: rules/private/python/tool.bzl's py_tool, on Linux x86-64 and
arm64) starts from the execution root through its `.exec` launcher, with its files as the
action's tools, so Bazel builds no runfiles tree for it. Any other tool (the py_binary fallback
on other platforms) starts as its own executable, whose runfiles Bazel adds itself.
"""

load(":providers.bzl", "ShikoToolInfo")

def tool_executable(ctx, attr):
    """The program an action runs for the tool of executable attribute `attr`."""
    target = getattr(ctx.attr, attr)
    if ShikoToolInfo in target:
        return target[ShikoToolInfo].launcher
    return getattr(ctx.executable, attr)

def tool_inputs(ctx, attr):
    """The files that program needs (a depset; empty when Bazel adds a runfiles tree itself)."""
    target = getattr(ctx.attr, attr)
    if ShikoToolInfo in target:
        return target[ShikoToolInfo].inputs
    return depset()
