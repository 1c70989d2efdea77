"""Analysis tests of image_push: what its launcher passes to the push tool."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")

def _launcher_args_test_impl(ctx):
    env = analysistest.begin(ctx)
    launchers = [
        a.content
        for a in analysistest.target_actions(env)
        if a.mnemonic == "FileWrite" and "--default_repository=" in (a.content or "")
    ]
    asserts.equals(env, 1, len(launchers), "one launcher written")
    for want in ctx.attr.expected:
        asserts.true(env, want in launchers[0], "%r not in the launcher:\n%s" % (want, launchers[0]))
    return analysistest.end(env)

launcher_args_test = analysistest.make(
    _launcher_args_test_impl,
    attrs = {"expected": attr.string_list(doc = "Strings the launcher script must contain.")},
)
