"""Analysis tests of C/C++ toolchain resolution: which compiler links a cc_binary per platform."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")

def _link_argv(env):
    for a in analysistest.target_actions(env):
        if a.mnemonic == "CppLink":
            return a.argv
    asserts.true(env, False, "no CppLink action")
    return []

def _check_linker(ctx):
    env = analysistest.begin(ctx)
    argv = _link_argv(env)
    asserts.true(env, len(argv) > 0, "the CppLink action has no command line")
    if argv:
        if ctx.attr.linker:
            asserts.equals(env, ctx.attr.linker, argv[0], "the link's compiler driver")
        if ctx.attr.not_linker:
            asserts.false(env, ctx.attr.not_linker in argv[0], "the host link runs %s" % argv[0])
        for flag in ctx.attr.flags:
            asserts.true(env, flag in argv, "%s missing from the link: %s" % (flag, argv))
    return analysistest.end(env)

_ATTRS = {
    "linker": attr.string(doc = "The expected argv[0] of the CppLink action."),
    "not_linker": attr.string(doc = "A string the CppLink action's argv[0] must not contain."),
    "flags": attr.string_list(doc = "Flags the link must carry."),
}

# Under --platforms=//platforms:linux_arm64: //toolchains/cc's aarch64 gcc, static.
arm64_link_test = analysistest.make(
    _check_linker,
    attrs = _ATTRS,
    config_settings = {"//command_line_option:platforms": "//platforms:linux_arm64"},
)

# With no --platforms (the host), Bazel's auto-configured gcc, as before the cross toolchain.
host_link_test = analysistest.make(_check_linker, attrs = _ATTRS)
