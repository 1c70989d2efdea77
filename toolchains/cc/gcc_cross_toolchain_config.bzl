"""`gcc_cross_toolchain_config`: the CcToolchainConfigInfo of a Debian GNU cross compiler.

Debian ships cross compilers as `/usr/bin/<triple>-gcc` (package `gcc-<triple>`, e.g.
`gcc-aarch64-linux-gnu`) with the target's C library in `/usr/<triple>/` (e.g.
`libc6-dev-arm64-cross`). This rule describes such a compiler to Bazel: the tools' paths, the
directories its own headers live in, and the flags of each compilation mode. It is written with
`cc_common.create_cc_toolchain_config_info` and loads only from `@rules_cc`, so it works on Bazel
4.2.3 (through rules_shiko's offline @rules_cc shim) and on Bazel 7, 8 and 9.

The flags mirror what Bazel's auto-configured host toolchain (@local_config_cc) uses with gcc, so
a target compiles the same way for both architectures, including the flags that keep outputs
reproducible (no `__DATE__`/`__TIME__`, no absolute system header paths in the .d files).
Features a BUILD file can ask for: `fully_static_link` (links with `-static`, needs the static C
library of libc6-dev-<arch>-cross), plus Bazel's `dbg`/`opt`/`fastbuild` compilation modes.
"""

load("@rules_cc//cc:action_names.bzl", "ACTION_NAMES")
load(
    "@rules_cc//cc:cc_toolchain_config_lib.bzl",
    "feature",
    "flag_group",
    "flag_set",
    "tool_path",
    "with_feature_set",
)
load("@rules_cc//cc:defs.bzl", "CcToolchainConfigInfo", "cc_common")

# The tools Bazel may call, each found as `<tool_prefix><name>` (e.g. aarch64-linux-gnu-gcc).
_TOOLS = ["ar", "cpp", "dwp", "gcc", "gcov", "ld", "nm", "objcopy", "objdump", "strip"]

_C_COMPILE = [ACTION_NAMES.c_compile]

_CXX_COMPILE = [
    ACTION_NAMES.cpp_compile,
    ACTION_NAMES.linkstamp_compile,
    ACTION_NAMES.cpp_header_parsing,
    ACTION_NAMES.cpp_module_compile,
    ACTION_NAMES.cpp_module_codegen,
]

_ALL_COMPILE = _C_COMPILE + _CXX_COMPILE + [
    ACTION_NAMES.assemble,
    ACTION_NAMES.preprocess_assemble,
]

_LINK = [
    ACTION_NAMES.cpp_link_executable,
    ACTION_NAMES.cpp_link_dynamic_library,
    ACTION_NAMES.cpp_link_nodeps_dynamic_library,
]

# The same as @local_config_cc's gcc flags (Bazel's unix_cc_configure), by compilation mode.
_COMPILE_FLAGS = [
    "-U_FORTIFY_SOURCE",
    "-fstack-protector",
    "-Wall",
    "-Wunused-but-set-parameter",
    "-Wno-free-nonheap-object",
    "-fno-omit-frame-pointer",
]
_OPT_COMPILE_FLAGS = [
    "-g0",
    "-O2",
    "-D_FORTIFY_SOURCE=1",
    "-DNDEBUG",
    "-ffunction-sections",
    "-fdata-sections",
]
_DBG_COMPILE_FLAGS = ["-g"]

# Reproducible outputs: no build-time macros, and header paths in .d files as the compiler was
# given them (Bazel checks them against the declared inputs and builtin include directories).
_REPRODUCIBLE_COMPILE_FLAGS = [
    "-no-canonical-prefixes",
    "-fno-canonical-system-headers",
    "-Wno-builtin-macro-redefined",
    "-D__DATE__=\"redacted\"",
    "-D__TIMESTAMP__=\"redacted\"",
    "-D__TIME__=\"redacted\"",
]
_LINK_FLAGS = ["-no-canonical-prefixes", "-Wl,-no-as-needed", "-Wl,-z,relro,-z,now", "-pass-exit-codes"]
_OPT_LINK_FLAGS = ["-Wl,--gc-sections"]

# After the objects and libraries on the link line (static archives are searched in order).
_LINK_LIBS = ["-lstdc++", "-lm"]

def _flags_feature(name, actions, flags, by_mode = {}, enabled = True):
    """A feature adding `flags` to `actions`, plus per-mode flags (`{"opt": [...]}`)."""
    flag_sets = [flag_set(actions = actions, flag_groups = [flag_group(flags = flags)])] if flags else []
    for mode, mode_flags in sorted(by_mode.items()):
        flag_sets.append(flag_set(
            actions = actions,
            flag_groups = [flag_group(flags = mode_flags)],
            with_features = [with_feature_set(features = [mode])],
        ))
    return feature(name = name, enabled = enabled, flag_sets = flag_sets)

def _features(cxx_standard):
    return [
        # Compilation modes: Bazel enables the one named by --compilation_mode.
        feature(name = "dbg"),
        feature(name = "opt"),
        feature(name = "fastbuild"),
        feature(name = "supports_pic", enabled = True),
        feature(name = "supports_dynamic_linker", enabled = True),
        _flags_feature(
            "default_compile_flags",
            _ALL_COMPILE,
            _COMPILE_FLAGS,
            by_mode = {"dbg": _DBG_COMPILE_FLAGS, "opt": _OPT_COMPILE_FLAGS},
        ),
        _flags_feature("default_cxx_flags", _CXX_COMPILE, ["-std=" + cxx_standard]),
        _flags_feature("reproducible_compile_flags", _ALL_COMPILE, _REPRODUCIBLE_COMPILE_FLAGS),
        _flags_feature("default_link_flags", _LINK, _LINK_FLAGS, by_mode = {"opt": _OPT_LINK_FLAGS}),
        _flags_feature("default_link_libs", _LINK, _LINK_LIBS),
        # `features = ["fully_static_link"]` on a cc_binary: no dynamic loader, no shared libc.
        _flags_feature("fully_static_link", [ACTION_NAMES.cpp_link_executable], ["-static"], enabled = False),
    ]

def _gcc_cross_toolchain_config_impl(ctx):
    prefix = ctx.attr.tool_prefix
    if not prefix.startswith("/"):
        fail("ERROR: %s: attribute 'tool_prefix': %s: must be absolute (e.g. /usr/bin/aarch64-linux-gnu-)" % (ctx.label, prefix))
    for d in ctx.attr.builtin_include_directories:
        if not d.startswith("/"):
            fail("ERROR: %s: attribute 'builtin_include_directories': %s: must be absolute" % (ctx.label, d))
    return cc_common.create_cc_toolchain_config_info(
        ctx = ctx,
        toolchain_identifier = ctx.attr.target_triple + "-gcc",
        host_system_name = "x86_64-linux-gnu",
        target_system_name = ctx.attr.target_triple,
        target_cpu = ctx.attr.target_cpu,
        target_libc = "glibc",
        compiler = "gcc",
        abi_version = "gcc",
        abi_libc_version = "glibc",
        tool_paths = [tool_path(name = name, path = prefix + name) for name in _TOOLS],
        cxx_builtin_include_directories = ctx.attr.builtin_include_directories,
        features = _features(ctx.attr.cxx_standard),
    )

gcc_cross_toolchain_config = rule(
    implementation = _gcc_cross_toolchain_config_impl,
    doc = """The CcToolchainConfigInfo of a Debian GNU cross compiler (`<triple>-gcc`).

Pass it as `toolchain_config` of a `cc_toolchain`, and wrap that in a `toolchain()` whose
`target_compatible_with` names the target's @platforms constraints. See
//toolchains/cc:BUILD.bazel for the aarch64 one.
""",
    attrs = {
        "target_triple": attr.string(
            mandatory = True,
            doc = "The GNU triple, e.g. `aarch64-linux-gnu` (also the toolchain's identifier prefix).",
        ),
        "target_cpu": attr.string(
            mandatory = True,
            doc = "Bazel's name of the target CPU (`aarch64`): what `--cpu`-based select()s see.",
        ),
        "tool_prefix": attr.string(
            mandatory = True,
            doc = "Absolute path prefix of the tools: `/usr/bin/aarch64-linux-gnu-` + `gcc`, `ar`, ...",
        ),
        "builtin_include_directories": attr.string_list(
            mandatory = True,
            doc = "Directories of the compiler's own headers (what `<triple>-gcc -E -v -` lists " +
                  "under `#include <...> search starts here:`, normalized). Bazel accepts an " +
                  "included header under one of them (a prefix) without a declared input.",
        ),
        "cxx_standard": attr.string(
            default = "c++17",
            doc = "The `-std=` of C++ compilations.",
        ),
    },
    provides = [CcToolchainConfigInfo],
)
