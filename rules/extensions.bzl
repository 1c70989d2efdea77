"""Module extensions of rules_shiko (MODULE.bazel, Bazel 7+).

    images = use_extension("@rules_shiko//rules:extensions.bzl", "images")
    images.pull(
        name = "base",
        image = "registry.example/team/base",
        digest = "sha256:…",
        platform = "linux/amd64",
    )
    use_repo(images, "base")

Then `image(base = "@base", ...)` as in WORKSPACE mode (see rules/private/pull.bzl).
WORKSPACE users load `image_pull` from `//rules:repositories.bzl` instead.

Debian packages pinned by a deb_lock lock file (rules/private/deb_repository.bzl):

    debs = use_extension("@rules_shiko//rules:extensions.bzl", "debs")
    debs.lock(name = "my_debs", lock = "//pkg:packages.lock.json")
    use_repo(debs, "my_debs")
"""

load("//rules/private:deb_repository.bzl", "DEB_REPOSITORY_ATTRS", "deb_repository_rule")
load("//rules/private:pull.bzl", "PULL_ATTRS", "image_pull_rule")

_pull = tag_class(
    doc = "One base image pinned by digest: the repository `@<name>` holds its OCI layout.",
    attrs = dict(PULL_ATTRS, name = attr.string(
        mandatory = True,
        doc = "Repository name (`@<name>`; its default target `@<name>//:<name>` is the layout).",
    )),
)

def _images_impl(mctx):
    seen = {}
    for mod in mctx.modules:
        for tag in mod.tags.pull:
            if tag.name in seen:
                fail("images.pull: name %r is declared twice (modules %s and %s)" %
                     (tag.name, seen[tag.name], mod.name))
            seen[tag.name] = mod.name
            image_pull_rule(
                name = tag.name,
                apparent_name = tag.name,
                image = tag.image,
                digest = tag.digest,
                platform = tag.platform,
                insecure = tag.insecure,
                ca_file = tag.ca_file,
                retries = tag.retries,
                timeout = tag.timeout,
            )

images = module_extension(
    implementation = _images_impl,
    doc = "Base images pulled by digest (`images.pull`), the MODULE.bazel form of image_pull.",
    tag_classes = {"pull": _pull},
)

_deb_lock_tag = tag_class(
    doc = "The Debian packages of one deb_lock lock file: `@<name>//:<architecture>`.",
    attrs = dict(DEB_REPOSITORY_ATTRS, name = attr.string(
        mandatory = True,
        doc = "Repository name (`@<name>//:amd64`, `@<name>//:arm64`, ...).",
    )),
)

def _debs_impl(mctx):
    seen = {}
    for mod in mctx.modules:
        for tag in mod.tags.lock:
            if tag.name in seen:
                fail("debs.lock: name %r is declared twice (modules %s and %s)" %
                     (tag.name, seen[tag.name], mod.name))
            seen[tag.name] = mod.name
            deb_repository_rule(
                name = tag.name,
                apparent_name = tag.name,
                lock = tag.lock,
                archives = tag.archives,
                architectures = tag.architectures,
                apt_dir = tag.apt_dir,
                update_target = tag.update_target,
            )

debs = module_extension(
    implementation = _debs_impl,
    doc = "Debian packages pinned by deb_lock lock files (`debs.lock`), the MODULE.bazel form of deb_repository.",
    tag_classes = {"lock": _deb_lock_tag},
)
