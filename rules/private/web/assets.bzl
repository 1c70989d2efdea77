"""hashed_assets: static web assets with content-hashed names, a manifest and .gz/.br variants."""

load("//rules/private/common:paths.bzl", "package_relative_path")
load("//rules/private/common:tools.bzl", "tool_executable", "tool_inputs")
load("//rules/private/common:worker.bzl", "WORKER_REQUIREMENTS", "worker_args")

def _hashed_assets_impl(ctx):
    target = str(ctx.label)
    strip = ctx.attr.strip_prefix.strip("/")
    files = []
    for f in ctx.files.srcs:
        if f.is_directory:
            fail("%s: attribute 'srcs': %r: directories are not supported; list the files" % (target, f.short_path))
        rel = package_relative_path(f)
        if strip:
            if not rel.startswith(strip + "/"):
                fail("%s: attribute 'strip_prefix': %r: %s is not under it" % (target, ctx.attr.strip_prefix, f.short_path))
            rel = rel[len(strip) + 1:]
        files.append({"logical": rel, "src": f.path})
    for c in ctx.attr.compress:
        if c not in ("gzip", "br"):
            fail("%s: attribute 'compress': %r: must be \"gzip\" or \"br\"" % (target, c))

    manifest = ctx.actions.declare_file(ctx.label.name + ".assets_manifest.json")
    ctx.actions.write(manifest, json.encode({
        "target": target,
        "files": files,
        "hash_length": ctx.attr.hash_length,
        "compress": ctx.attr.compress,
        "compress_extensions": ctx.attr.compress_extensions or None,
        "min_saving": 0.05,
    }))
    out = ctx.actions.declare_directory(ctx.label.name)
    args = worker_args(ctx)
    args.add("--manifest", manifest)
    args.add("--output_dir", out.path)
    ctx.actions.run(
        executable = tool_executable(ctx, "_assets_tool"),
        tools = tool_inputs(ctx, "_assets_tool"),
        arguments = [args],
        inputs = [manifest] + ctx.files.srcs,
        outputs = [out],
        mnemonic = "ShikoAssets",
        execution_requirements = WORKER_REQUIREMENTS,
        progress_message = "Hashing and precompressing %d static assets of %s" % (len(files), ctx.label),
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

hashed_assets = rule(
    implementation = _hashed_assets_impl,
    doc = """Static web assets processed at build time, into a directory `<name>/`.

Each file is written as `<dir>/<stem>.<sha256 prefix>.<ext>` (CSS `url()`/`@import` references
to other assets of the set rewritten to their hashed names first), with precompressed `.gz`
(deterministic: no name, mtime 0) and `.br` variants for text formats when they save space,
and `manifest.json` mapping each logical name (path relative to the package, minus
`strip_prefix`) to its hashed path, size, sha256, SRI integrity, content type and encodings.
See python_tools/assets.py. Use it as `data` of the program that serves the files.""",
    attrs = {
        "srcs": attr.label_list(
            allow_files = True,
            mandatory = True,
            doc = "The asset files (CSS, JS, images, fonts, ...).",
        ),
        "strip_prefix": attr.string(
            doc = "Package-relative directory removed from each file's logical name (e.g. \"static\").",
        ),
        "compress": attr.string_list(
            default = ["gzip", "br"],
            doc = "Precompressed variants to write: \"gzip\" (.gz) and/or \"br\" (.br, brotli pinned in python_tools/requirements_lock.txt).",
        ),
        "compress_extensions": attr.string_list(
            doc = "Extensions to precompress (e.g. [\".css\", \".js\"]); default: text formats (CSS, JS, JSON, SVG, HTML, ...).",
        ),
        "hash_length": attr.int(
            default = 12,
            doc = "Hex digits of the sha256 in hashed names (8..64).",
        ),
        "_assets_tool": attr.label(
            default = "//python_tools:assets",
            executable = True,
            cfg = "exec",
            doc = "The asset processor (python_tools/assets.py).",
        ),
    },
)
