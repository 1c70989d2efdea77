"""Analysis tests of image_layer and image: providers, actions, manifests, and bad input."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")
load("//rules:defs.bzl", "ImageInfo", "LayerInfo")

def _action(env, mnemonic):
    for a in analysistest.target_actions(env):
        if a.mnemonic == mnemonic:
            return a
    asserts.true(env, False, "no %s action" % mnemonic)
    return None

def _written_json(env, suffix):
    for a in analysistest.target_actions(env):
        if a.mnemonic == "FileWrite" and a.outputs.to_list()[0].basename.endswith(suffix):
            return json.decode(a.content)
    asserts.true(env, False, "no FileWrite of *%s" % suffix)
    return None

# --- image_layer --------------------------------------------------------------------------

def _layer_test_impl(ctx):
    env = analysistest.begin(ctx)
    t = analysistest.target_under_test(env)
    info = t[LayerInfo]
    asserts.equals(env, "layer_subject.tar.gz", info.blob.basename)
    asserts.equals(env, "gzip", info.compression)
    a = _action(env, "ShikoLayer")
    outs = sorted([f.basename for f in a.outputs.to_list()])
    asserts.equals(env, ["layer_subject.layer.json", "layer_subject.listing.json", "layer_subject.tar.gz"], outs)
    m = _written_json(env, ".layer_manifest.json")
    kinds = {e["dest"]: e["kind"] for e in m["entries"]}
    asserts.equals(env, "file", kinds.get("app/data.txt"))
    asserts.equals(env, "file", kinds.get("etc/data.txt"))
    asserts.equals(env, "file", kinds.get("srv/sub/data.txt"))  # srcs under prefix, package-relative
    asserts.equals(env, "symlink", kinds.get("usr/bin/link"))
    asserts.equals(env, "dir", kinds.get("var/empty"))
    asserts.equals(env, {"mode": "0600", "uid": 7, "gid": 8}, m["overrides"]["etc/data.txt"])
    asserts.equals(env, 1234, m["mtime"])
    asserts.equals(env, None, m["compression_level"])
    asserts.equals(env, "0644", m["defaults"]["file_mode"])
    return analysistest.end(env)

layer_test = analysistest.make(_layer_test_impl)

def _zstd_layer_test_impl(ctx):
    env = analysistest.begin(ctx)
    info = analysistest.target_under_test(env)[LayerInfo]
    asserts.equals(env, "layer_zstd.tar.zst", info.blob.basename)
    m = _written_json(env, ".layer_manifest.json")
    asserts.equals(env, "zstd", m["compression"])
    asserts.equals(env, 9, m["compression_level"])
    return analysistest.end(env)

zstd_layer_test = analysistest.make(_zstd_layer_test_impl)

def _binary_layer_test_impl(ctx):
    env = analysistest.begin(ctx)
    m = _written_json(env, ".layer_manifest.json")
    dests = [e["dest"] for e in m["entries"]]
    asserts.true(env, "app/tool" in dests, "executable at its destination: %s" % dests)
    ws = ctx.workspace_name
    asserts.true(
        env,
        "app/tool.runfiles/%s/tests/analysis/data.txt" % ws in dests,
        "runfiles tree beside the executable: %s" % dests,
    )
    for d in dests:
        asserts.false(env, "/external/" in d, "no legacy external runfiles copy: %s" % d)
    return analysistest.end(env)

binary_layer_test = analysistest.make(_binary_layer_test_impl)

# --- image ---------------------------------------------------------------------------------

def _image_test_impl(ctx):
    env = analysistest.begin(ctx)
    t = analysistest.target_under_test(env)
    info = t[ImageInfo]
    asserts.equals(env, "image_subject", info.layout.basename)
    asserts.true(env, info.layout.is_directory)
    asserts.equals(env, "image_subject.digest", info.digest.basename)
    asserts.equals(env, "amd64", info.platform.architecture)
    asserts.equals(env, 1, len(info.layers))

    # Metadata only by default: digest, config, manifest. The assembly reads the layer's
    # descriptor, never its blob; the layout (with the blob) is another action, on request.
    defaults = sorted([f.basename for f in t[DefaultInfo].files.to_list()])
    asserts.equals(env, ["image_subject.config.json", "image_subject.digest", "image_subject.manifest.json"], defaults)
    layer = info.layers[0]
    assembly = _action(env, "ShikoImage")
    inputs = [f.path for f in assembly.inputs.to_list()]
    asserts.true(env, layer.descriptor.path in inputs, "descriptor not an input: %s" % inputs)
    asserts.false(env, layer.blob.path in inputs, "the assembly must not take the layer blob: %s" % inputs)
    layout_action = _action(env, "ShikoLayout")
    asserts.true(env, layer.blob.path in [f.path for f in layout_action.inputs.to_list()], "layout without the blob")
    asserts.equals(env, [info.layout], t[OutputGroupInfo].layout.to_list())
    tar = t[OutputGroupInfo].tarball.to_list()
    asserts.equals(env, ["image_subject.tar"], [f.basename for f in tar])
    m = _written_json(env, ".image_manifest.json")
    c = m["config"]
    asserts.equals(env, ["8080/tcp", "53/udp"], c["exposed_ports"])
    asserts.equals(env, ["/hello"], c["entrypoint"])
    asserts.equals(env, None, c["cmd"])  # not given: the macro says so explicitly
    asserts.equals(env, {"A": "1"}, c["env"])
    asserts.equals(env, None, m["base"])
    asserts.equals(env, None, m["stamp"])  # tests don't run with --stamp
    t2 = _written_json(env, ".tarball_manifest.json")
    asserts.equals(env, ["example/subject:1"], t2["repo_tags"])
    return analysistest.end(env)

image_test = analysistest.make(_image_test_impl)

def _based_image_test_impl(ctx):
    env = analysistest.begin(ctx)
    m = _written_json(env, ".image_manifest.json")

    # An image base reaches the assembly as its config and manifest; the layout action as its
    # layers' files (its chain was all built here), never as its layout: the base's layout is
    # not built for this image, and the layout action does not wait for it.
    asserts.true(env, m["base"] != None and m["base"]["manifest"].endswith("/image_subject.manifest.json"), "base: %s" % m["base"])
    asserts.true(env, m["base"]["config"].endswith("/image_subject.config.json"), "base: %s" % m["base"])
    lay = _written_json(env, ".layout_manifest.json")
    asserts.false(env, "layout" in lay["base"], "layout base: %s" % lay["base"])
    base_layers = lay["base"]["layers"]
    asserts.equals(env, 1, len(base_layers))
    asserts.true(env, base_layers[0]["blob"].endswith("/layer_subject.tar.gz"), "layout base: %s" % lay["base"])
    asserts.true(env, base_layers[0]["descriptor"].endswith("/layer_subject.layer.json"), "layout base: %s" % lay["base"])
    inputs = [f for f in _action(env, "ShikoLayout").inputs.to_list()]
    asserts.equals(env, [], [f.path for f in inputs if f.is_directory])
    asserts.true(env, base_layers[0]["blob"] in [f.path for f in inputs], "layout inputs: %s" % inputs)
    asserts.equals(env, [], m["config"]["cmd"])  # explicitly cleared
    asserts.equals(env, None, m["config"]["entrypoint"])  # inherited
    asserts.equals(env, {"os": "linux", "architecture": "amd64", "variant": ""}, m["platform"])
    return analysistest.end(env)

based_image_test = analysistest.make(_based_image_test_impl)

# --- a shallow pulled base (rules/private/image/pulled.bzl) ----------------------------------

def _pulled_image_test_impl(ctx):
    env = analysistest.begin(ctx)
    t = analysistest.target_under_test(env)
    info = t[ImageInfo]

    # Default outputs and base_layouts: the small files only, never a layer.
    small = sorted([f.basename for f in t[DefaultInfo].files.to_list()])
    asserts.equals(env, sorted(["1" * 64, "2" * 64, "index.json", "oci-layout", "source.json"]), small)
    asserts.equals(env, small, sorted([f.basename for f in info.base_layouts[0]]))

    # One download action per distinct layer (Bazel 4.2.3's Action has no execution_info to check
    # its requires-network tag), each writing the blob named by its digest.
    pulls = [a for a in analysistest.target_actions(env) if a.mnemonic == "ShikoPullBlob"]
    asserts.equals(env, 2, len(pulls))
    asserts.equals(env, ["a" * 64, "b" * 64], sorted([a.outputs.to_list()[0].basename for a in pulls]))
    # layer_files: one per manifest layer, in order (a repeated layer is the same file).
    names = [l.blob.basename for l in info.layer_files]
    asserts.equals(env, ["a" * 64, "b" * 64, "a" * 64], names)
    lay = _action(env, "ShikoPulledLayout")
    asserts.equals(env, [info.layout], lay.outputs.to_list())
    asserts.equals(env, "amd64", info.platform.architecture)
    return analysistest.end(env)

pulled_image_test = analysistest.make(_pulled_image_test_impl)

def _pulled_base_image_test_impl(ctx):
    env = analysistest.begin(ctx)
    m = _written_json(env, ".image_manifest.json")
    asserts.true(env, m["base"]["manifest"].endswith("pulled/blobs/sha256/" + "1" * 64), "base: %s" % m["base"])

    # The metadata action reads the base's manifest and config, no layer of it.
    inputs = [f.path for f in _action(env, "ShikoImage").inputs.to_list()]
    asserts.equals(env, [], [p for p in inputs if ".layers/" in p])
    lay = [f.path for f in _action(env, "ShikoLayout").inputs.to_list()]
    asserts.true(env, len([p for p in lay if p.endswith("pulled_subject.layout")]) == 1, "layout inputs: %s" % lay)
    return analysistest.end(env)

pulled_base_image_test = analysistest.make(_pulled_base_image_test_impl)

# --- bad input: each must fail analysis with a message naming target, attribute and value ---

def _failure_test_impl(ctx):
    env = analysistest.begin(ctx)
    asserts.expect_failure(env, ctx.attr.expected)
    return analysistest.end(env)

failure_test = analysistest.make(
    _failure_test_impl,
    expect_failure = True,
    attrs = {"expected": attr.string(doc = "Substring the failure message must contain.")},
)
