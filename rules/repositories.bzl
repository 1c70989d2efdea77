"""WORKSPACE-mode setup of rules_shiko (MODULE.bazel users need none of this).

    load("@rules_shiko//rules:repositories.bzl", "rules_shiko_dependencies")
    rules_shiko_dependencies()

`pip_lock_repository` is public too: it fetches an app's own pinned wheels the same way, for the
host or one image platform; `pip_hub_repository` gives per-platform locks one set of labels
(`select` on the target platform), for image_index.
`image_pull(name, image, digest, platform)` fetches a base image pinned by digest (MODULE.bazel:
the `images` extension of `//rules:extensions.bzl`).
`deb_repository(name, lock)` fetches the Debian packages pinned by a deb_lock lock file
(MODULE.bazel: the `debs` extension).
`rules_shiko_register_cc_toolchains()` registers the C/C++ cross toolchains of
//toolchains/cc (arm64 Linux from x86-64 Linux; MODULE.bazel: `register_toolchains(
"@rules_shiko//toolchains/cc:linux_arm64_gcc")`).
"""

load(
    "//rules/private/repo:dependencies.bzl",
    _rules_shiko_dependencies = "rules_shiko_dependencies",
    _rules_shiko_register_cc_toolchains = "rules_shiko_register_cc_toolchains",
)
load("//rules/private/repo:deb_repository.bzl", _deb_repository = "deb_repository")
load("//rules/private/repo:pip_hub.bzl", _pip_hub_repository = "pip_hub_repository")
load("//rules/private/repo:pip_repository.bzl", _pip_lock_repository = "pip_lock_repository")
load("//rules/private/repo:pull.bzl", _image_pull = "image_pull")

pip_lock_repository = _pip_lock_repository
pip_hub_repository = _pip_hub_repository
image_pull = _image_pull
deb_repository = _deb_repository
rules_shiko_dependencies = _rules_shiko_dependencies
rules_shiko_register_cc_toolchains = _rules_shiko_register_cc_toolchains
