"""Analysis tests of py_image and runfiles_layers: which runfile goes in which layer, config."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")

def _written_json(env, suffix):
    for a in analysistest.target_actions(env):
        if a.mnemonic == "FileWrite" and a.outputs.to_list()[0].basename.endswith(suffix):
            return json.decode(a.content)
    asserts.true(env, False, "no FileWrite of *%s" % suffix)
    return None

def _entries(env):
    m = _written_json(env, ".layer_manifest.json")
    return {e["dest"]: e for e in m["entries"]}

def _assert_stable(env, ws, d):
    """No path segment of a stable-layout destination comes from Bazel's repository naming."""
    for seg in d.split("/"):
        asserts.false(env, "~" in seg or "+" in seg, "canonical repository name in %s" % d)
        asserts.false(env, seg in ("_main", "__main__", ws), "main repository name in %s" % d)

def _py_image_layer_test_impl(ctx):
    env = analysistest.begin(ctx)
    entries = _entries(env)
    dests = sorted(entries.keys())
    ws = ctx.workspace_name
    group = ctx.attr.group
    split = "app/external/python_app_pip/protobuf/"
    asserts.true(env, len(dests) > 0, "empty layer")
    for d in dests:
        _assert_stable(env, ws, d)
        if group == "protobuf":
            asserts.true(env, d.startswith(split), "not protobuf's: %s" % d)
        elif group == "deps":
            asserts.true(env, d.startswith("app/external/"), "first-party file in deps: %s" % d)
            asserts.false(env, d.startswith(split), "split package in deps: %s" % d)
        else:
            # First party: the main repository at its workspace-relative paths (and Bazel's
            # __init__.py files); never _repo_mapping (it names canonical repositories).
            asserts.false(env, d.startswith("app/external/"), "not first-party: %s" % d)
            asserts.false(env, d.endswith("_repo_mapping"), "_repo_mapping shipped: %s" % d)
    if group == "deps":
        asserts.true(env, len([d for d in dests if d.startswith("app/external/python_app_pip/absl_py/site-packages/absl/")]) > 0, "absl missing: %s" % dests[:5])
    if group == "app":
        pkg = "app/tests/py_image/"
        for name in ["app.py", "lib.py", "data.txt", "gen.txt", "helper.py", "helper"]:
            asserts.true(env, pkg + name in entries, "%s missing: %s" % (pkg + name, dests))
        asserts.false(env, pkg + "app" in entries, "the py_binary's own launcher is shipped")

        # Generated files: programs 0755, data 0644; source files keep their own bit (None).
        asserts.equals(env, True, entries[pkg + "helper"].get("executable"))
        asserts.equals(env, False, entries[pkg + "gen.txt"].get("executable"))
        asserts.equals(env, None, entries[pkg + "app.py"].get("executable"))
    return analysistest.end(env)

py_image_layer_test = analysistest.make(
    _py_image_layer_test_impl,
    attrs = {"group": attr.string(doc = "protobuf, deps or app: which layer is under test.")},
)

def _image_config(env):
    return _written_json(env, ".image_manifest.json")

def _py_image_config_test_impl(ctx):
    env = analysistest.begin(ctx)
    m = _image_config(env)
    cfg = m["config"]
    asserts.equals(env, ["/usr/bin/python3", "/app/tests/py_image/app.py"], cfg["entrypoint"])
    asserts.equals(env, ["--from-binary"], cfg["cmd"])  # the py_binary's own args
    path = cfg["env"]["PYTHONPATH"].split(":")
    asserts.equals(env, "/app", path[0])
    asserts.true(env, "/app/external/python_app_pip/protobuf/site-packages" in path, "protobuf import path: %s" % path)
    asserts.true(env, "/app/external/python_app_pip/absl_py/site-packages" in path, "absl import path: %s" % path)
    for p in path:
        _assert_stable(env, ctx.workspace_name, p)
    asserts.false(env, "RUNFILES_DIR" in cfg["env"], "RUNFILES_DIR set without a runfiles tree")
    labels = [l["label"] for l in m["layers"]]
    # str(Label) spells the main repository differently across Bazel versions (`//` vs `@@//`).
    want = [str(Label("//tests/py_image:img_" + g)) for g in ("protobuf", "deps", "app")]
    asserts.equals(env, want, labels)
    return analysistest.end(env)

py_image_config_test = analysistest.make(_py_image_config_test_impl)

def _py_image_args_test_impl(ctx):
    env = analysistest.begin(ctx)
    cfg = _image_config(env)["config"]
    asserts.equals(env, ["--x"], cfg["cmd"])
    asserts.equals(env, ["/usr/bin/python3", "/srv/app/tests/py_image/app.py"], cfg["entrypoint"])
    return analysistest.end(env)

py_image_args_test = analysistest.make(_py_image_args_test_impl)

def _py_image_runfiles_test_impl(ctx):
    env = analysistest.begin(ctx)
    cfg = _image_config(env)["config"]
    ws = ctx.workspace_name
    asserts.equals(env, ["/usr/bin/python3", "/app/%s/tests/py_image/app.py" % ws], cfg["entrypoint"])
    path = cfg["env"]["PYTHONPATH"].split(":")
    asserts.equals(env, "/app", path[0])
    asserts.equals(env, "/app/" + ws, path[-1])
    asserts.equals(env, "/app", cfg["env"]["RUNFILES_DIR"])
    return analysistest.end(env)

py_image_runfiles_test = analysistest.make(_py_image_runfiles_test_impl)

def _generic_layers_test_impl(ctx):
    env = analysistest.begin(ctx)
    dests = sorted(_entries(env).keys())
    pkg = "opt/%s/tests/py_image/" % ctx.workspace_name
    asserts.true(env, pkg + "app.py" in dests, "app.py under the root: %s" % dests)
    for d in dests:
        asserts.true(env, d.startswith("opt/%s/" % ctx.workspace_name) or d.count("/") == 1, "not first-party: %s" % d)
    return analysistest.end(env)

generic_layers_test = analysistest.make(_generic_layers_test_impl)

def _fake_binary_impl(ctx):
    out = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(out, "#!/bin/sh\n", is_executable = True)
    return [DefaultInfo(executable = out)]

fake_binary = rule(
    implementation = _fake_binary_impl,
    executable = True,
    doc = "An executable that is not a Python program (no PyInfo).",
)
