"""Providers of rules_shiko (all of them live here)."""

LayerInfo = provider(
    doc = "One image layer: a compressed tar blob and what the layer tool measured about it.",
    fields = {
        "blob": "File: the layer blob (tar, tar+gzip or tar+zstd).",
        "descriptor": "File: JSON {mediaType, digest, size, diff_id, compression, compressor, members}.",
        "listing": "File: JSON list of the layer's members (path, type, mode, uid, gid, size, target).",
        "compression": "string: gzip, zstd or none.",
        "label": "Label of the image_layer target.",
        "packages": "list of File: the DebPackagesInfo inventories of the Debian tars this layer imports at its root (which package put each file there); empty for other layers.",
        "wheels": "list of File: identity JSON files ({name, version, filename, sha256, lock}) of the Python wheels whose files this layer holds (py_image layers); empty for other layers.",
    },
)

DebPackagesInfo = provider(
    doc = "What a deb_tar holds, package by package (python_tools/shiko/debian/inventory.py).",
    fields = {
        "inventory": "File: JSON {architecture, suites, packages: [{name, version, source, sha256, licenses, ...}], files: {path: package}}.",
    },
)

DebTarInfo = provider(
    doc = "How a deb_tar's tar is made, so that an image_layer importing it can unpack the packages " +
          "in its own action (no intermediate tar for Bazel to write and hash): the manifest of " +
          "python_tools/deb.py and the files it reads.",
    fields = {
        "manifest": "File: the deb tool's JSON manifest (python_tools/deb.py).",
        "inputs": "depset of File: the manifest, packages.json and the .deb (and plain data.tar) files.",
    },
)

ImageInfo = provider(
    doc = "An OCI image built by `image`, or a base pulled by `image_pull` (rules/private/image/pulled.bzl: no layers of its own, its layout built on request).",
    fields = {
        "layout": "File (directory): the OCI image layout (oci-layout, index.json, blobs/sha256/...).",
        "digest": "File: `sha256:<hex>` of the image manifest, one line.",
        "config": "File: the image config JSON (None for a wrapped base layout).",
        "manifest": "File: the image manifest JSON (None for a wrapped base layout).",
        "layers": "list of LayerInfo this image added on top of its base, in order.",
        "base": "ImageInfo of the base, or None (scratch or a plain layout).",
        "platform": "struct(os, architecture, variant) the image was built for.",
        "repo_tags": "list of strings: the image's `repo_tags` as written (stamp placeholders unexpanded); image_load's default.",
        "layer_files": "list of struct(descriptor, blob) Files of every layer this image and its image bases built, or downloaded for a pulled base (descriptor None; bottom first): where a layer's bytes are, without the layout.",
        "base_layouts": "list of list of Files: the OCI layout(s) of a base that is not an image target, anywhere in the chain; for a pulled base, its small files only (index.json, manifest, config, source.json: no layer).",
        "supply_chain": "struct(spdx, cyclonedx, provenance) Files: the image's SBOMs and SLSA provenance predicate (output groups `sbom`, `provenance`).",
        "layout_base": "struct(label, layout[, full]) of that base (its label and the path of its layout directory; for a shallow pulled base, `full`: the File of its whole layout, layers included, built on request) at the bottom of the chain, or None.",
    },
)

ImageIndexInfo = provider(
    doc = "An OCI image index (a multi-platform image) built by `image_index`.",
    fields = {
        "index": "File: the index blob (JSON).",
        "digest": "File: `sha256:<hex>` of the index, one line.",
        "layout": "File (directory): the OCI layout of the index and every child's blobs.",
        "images": "list of ImageInfo: the children, in the index's order.",
        "repo_tags": "list of strings: the index's `repo_tags` as written.",
    },
)

StampSettingInfo = provider(
    doc = "Whether the build runs with --stamp.",
    fields = {"value": "bool"},
)

PyMainInfo = provider(
    doc = "What a py_binary runs, read from its attributes by py_image's aspect.",
    fields = {
        "main": "File: the main .py file (None when `main_module` is set).",
        "main_module": "string: the module run as `python -m <module>` (rules_python's main_module), or \"\".",
        "args": "list of strings: the binary's own `args` attribute, as written.",
    },
)

ExecutablesInfo = provider(
    doc = "The executables of a target and everything it depends on (executables_aspect of image_layer's `binaries` and runfiles_layers' `binary`): generated files not in it are data, stored 0644 instead of Bazel's 0555 (source files are judged by content).",
    fields = {
        "files": "depset of File: files that are some target's executable.",
    },
)

ShikoToolInfo = provider(
    doc = "How an action starts one of rules_shiko's hermetic tools (rules/private/python/tool.bzl's py_tool): from the execution root, with the tool's files as the action's tools, so Bazel makes no runfiles tree for it.",
    fields = {
        "launcher": "File: a /bin/sh script that starts the tool with paths below the action's working directory (the execution root).",
        "inputs": "depset of File: everything the launcher starts (the interpreter and its libraries, boot.py, the tool's sources and wheels).",
    },
)

ToolPythonInfo = provider(
    doc = "The tools' own Python (@rules_shiko_python_<arch>, rules/private/repo/tool_python.bzl): CPython from locked Debian packages, started through its own dynamic loader.",
    fields = {
        "loader": "File: the dynamic loader (lib/ld-linux-*.so.*), the program an action starts.",
        "interpreter": "File: bin/python3.X, the loader's first argument.",
        "version": "string: the Python version, e.g. \"3.11\".",
        "files": "depset of File: everything the interpreter needs (its lib/ directory: libraries, extension modules, the standard library's zip).",
    },
)
