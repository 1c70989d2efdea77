"""Build stamping: is --stamp on? (rules read it through a private attribute)."""

load(":providers.bzl", "StampSettingInfo")

def _stamp_detect_impl(ctx):
    return [StampSettingInfo(value = ctx.attr.enabled)]

stamp_detect = rule(
    implementation = _stamp_detect_impl,
    doc = "Carries the value of --stamp (selected by a config_setting) to rules.",
    attrs = {
        "enabled": attr.bool(doc = "True when the build runs with --stamp."),
    },
)

STAMP_ATTRS = {
    "stamp": attr.int(
        default = -1,
        values = [-1, 0, 1],
        doc = "1: always expand {BUILD_*} / {STABLE_*} placeholders from the workspace status; 0: never; -1: only under --stamp.",
    ),
    "_stamp_detect": attr.label(
        default = "//rules/private/common:stamp_detect",
        providers = [StampSettingInfo],
        doc = "Whether --stamp is on.",
    ),
}

def stamp_inputs(ctx):
    """Returns [info_file, version_file] when this target stamps, else []."""
    stamp = ctx.attr.stamp
    if stamp == 1 or (stamp == -1 and ctx.attr._stamp_detect[StampSettingInfo].value):
        return [ctx.info_file, ctx.version_file]
    return []

def stamp_manifest(files):
    """The `stamp` member of a tool manifest for stamp_inputs()' result."""
    if not files:
        return None
    return {"info_file": files[0].path, "version_file": files[1].path}
