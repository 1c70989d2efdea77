"""Module extensions of rules_shiko (MODULE.bazel, Bazel 7+).

    images = use_extension("@rules_shiko//rules:extensions.bzl", "images")
    images.pull(
        name = "base",
        image = "registry.example/team/base",
        digest = "sha256:…",
        platform = "linux/amd64",
    )
    use_repo(images, "base")

Then `image(base = "@base", ...)` as in WORKSPACE mode (see rules/private/repo/pull.bzl).
WORKSPACE users load `image_pull` from `//rules:repositories.bzl` instead.

Debian packages pinned by a deb_lock lock file (rules/private/repo/deb_repository.bzl):

    debs = use_extension("@rules_shiko//rules:extensions.bzl", "debs")
    debs.lock(name = "my_debs", lock = "//pkg:packages.lock.json")
    use_repo(debs, "my_debs")

Python wheels pinned with hashes in a requirements lock (rules/private/repo/pip_repository.bzl), for
the host or for an image's platform; the same labels as `pip_lock_repository` in WORKSPACE mode
(`@<name>//<package>`):

    wheels = use_extension("@rules_shiko//rules:extensions.bzl", "wheels")
    wheels.lock(name = "app_pip", requirements_lock = "//app:requirements_lock.txt",
                platforms = ["manylinux2014_x86_64"])
    use_repo(wheels, "app_pip")
"""

load("//rules/private/repo:dependencies.bzl", "TOOL_PYTHON_ARCHITECTURES", "build_info_repository")
load("//rules/private/repo:deb_repository.bzl", "DEB_REPOSITORY_ATTRS", "arch_repository_name", "deb_arch_repository_rule", "deb_repository_rule")
load("//rules/private/repo:pip_hub.bzl", "PIP_HUB_ATTRS", "pip_hub_repository")
load("//rules/private/repo:pip_repository.bzl", "PIP_LOCK_ATTRS", "pip_lock_repository")
load("//rules/private/repo:pull.bzl", "PULL_ATTRS", "image_pull_rule")
load("//rules/private/repo:tool_python.bzl", "tool_python_repository_rule")

def _declare(mctx, extension, tag_class_name, repository_rule, attr_names):
    """Declares one repository per tag of every module; a name used twice is an error."""
    seen = {}
    for mod in mctx.modules:
        for tag in getattr(mod.tags, tag_class_name):
            if tag.name in seen:
                fail("%s.%s: name %r is declared twice (modules %s and %s)" %
                     (extension, tag_class_name, tag.name, seen[tag.name], mod.name))
            seen[tag.name] = mod.name
            kwargs = {a: getattr(tag, a) for a in attr_names}
            repository_rule(name = tag.name, apparent_name = tag.name, **kwargs)

_pull = tag_class(
    doc = "One base image pinned by digest: the repository `@<name>` holds its OCI layout.",
    attrs = dict(PULL_ATTRS, name = attr.string(
        mandatory = True,
        doc = "Repository name (`@<name>`; its default target `@<name>//:<name>` is the layout).",
    )),
)

def _images_impl(mctx):
    _declare(mctx, "images", "pull", image_pull_rule, PULL_ATTRS.keys())

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
    # The lock names the architectures: one repository each (fetched only when used) and the hub.
    seen = {}
    for mod in mctx.modules:
        for tag in mod.tags.lock:
            if tag.name in seen:
                fail("debs.lock: name %r is declared twice (modules %s and %s)" % (tag.name, seen[tag.name], mod.name))
            seen[tag.name] = mod.name
            kwargs = {a: getattr(tag, a) for a in DEB_REPOSITORY_ATTRS.keys()}
            archs = tag.architectures
            if not archs:
                lock = json.decode(mctx.read(mctx.path(tag.lock)))
                ok = type(lock) == "dict" and type(lock.get("architectures")) == "dict"
                archs = sorted(lock["architectures"].keys()) if ok else []  # else @<name> says what is wrong
            for arch in archs:
                deb_arch_repository_rule(name = arch_repository_name(tag.name, arch), apparent_name = tag.name, architecture = arch, **kwargs)
            deb_repository_rule(name = tag.name, apparent_name = tag.name, declared = archs, **kwargs)

debs = module_extension(
    implementation = _debs_impl,
    doc = "Debian packages pinned by deb_lock lock files (`debs.lock`), the MODULE.bazel form of deb_repository.",
    tag_classes = {"lock": _deb_lock_tag},
)

_wheels_lock_tag = tag_class(
    doc = "The wheels of one requirements lock (pinned with hashes): `@<name>//<package>` py_libraries.",
    attrs = dict(PIP_LOCK_ATTRS, name = attr.string(
        mandatory = True,
        doc = "Repository name (`@<name>//absl_py`, `@<name>//:requirements.bzl`, ...).",
    )),
)

_wheels_hub_tag = tag_class(
    doc = "One set of labels for per-platform locks (`wheels.lock` repositories of this extension), by target platform.",
    attrs = dict(PIP_HUB_ATTRS, name = attr.string(
        mandatory = True,
        doc = "Repository name (`@<name>//absl_py` selects the platform's repository).",
    )),
)

def _wheels_impl(mctx):
    _declare(mctx, "wheels", "lock", pip_lock_repository, PIP_LOCK_ATTRS.keys())
    _declare(mctx, "wheels", "hub", pip_hub_repository, PIP_HUB_ATTRS.keys())

wheels = module_extension(
    implementation = _wheels_impl,
    doc = "Python wheels pinned by hashed requirements locks (`wheels.lock`; `wheels.hub` selects among per-platform locks), the MODULE.bazel form of pip_lock_repository and pip_hub_repository.",
    tag_classes = {"lock": _wheels_lock_tag, "hub": _wheels_hub_tag},
)

def _build_info_impl(mctx):
    build_info_repository(name = "rules_shiko_build_info")

build_info = module_extension(
    implementation = _build_info_impl,
    doc = "@rules_shiko_build_info: the Bazel version recorded in image provenance (used by rules_shiko's own MODULE.bazel).",
)

def _tool_python_impl(mctx):
    for arch in TOOL_PYTHON_ARCHITECTURES:
        name = "rules_shiko_python_" + arch
        tool_python_repository_rule(
            name = name,
            apparent_name = name,
            architecture = arch,
            lock = Label("//python_tools/interpreter:packages.lock.json"),
            layouts = Label("//python_tools/interpreter:layouts.json"),
        )

tool_python = module_extension(
    implementation = _tool_python_impl,
    doc = "@rules_shiko_python_amd64 / _arm64: the tools' own Python from locked Debian packages (used by rules_shiko's own MODULE.bazel).",
)
