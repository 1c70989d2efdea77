"""image_push: `bazel run` pushes an image (or image index) to a registry."""

load("//rules/private/common:launcher.bzl", "runfile_arg", "runfiles_path", "write_launcher")
load("//rules/private/common:providers.bzl", "ImageIndexInfo", "ImageInfo")
load(":image_parts.bzl", "IMAGE_PARTS_ATTRS", "image_parts")

_TAG_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

def _check_tag(target, attr_name, tag):
    ok = len(tag) > 0 and len(tag) <= 128 and tag[0] not in ".-"
    for c in tag.elems():
        if c not in _TAG_CHARS:
            ok = False
    if not ok:
        fail("%s: attribute '%s': %r: not a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})" %
             (target, attr_name, tag))

def _check_repository(target, value):
    if value == "":
        return
    problem = None
    if "@" in value:
        problem = "must not hold a digest"
    elif value != value.strip() or " " in value:
        problem = "must not hold spaces"
    elif ":" in value.split("/")[-1]:
        problem = "must not hold a tag (use `remote_tags`)"
    elif "/" not in value:
        problem = "must be REGISTRY/REPOSITORY, e.g. 127.0.0.1:5000/app"
    if problem:
        fail("%s: attribute 'repository': %r: %s" % (target, value, problem))

def _image_push_impl(ctx):
    target = str(ctx.label)
    _check_repository(target, ctx.attr.repository)
    for t in ctx.attr.remote_tags:
        _check_tag(target, "remote_tags", t)
    if ImageIndexInfo in ctx.attr.image:
        # An index is pushed from its layout: every child's blobs, then the children's
        # manifests by digest, then the index under each tag.
        info = ctx.attr.image[ImageIndexInfo]
        parts_args, parts_files = [runfile_arg(info.layout, "--layout=")], [info.layout]
        images = info.images
    else:
        info = ctx.attr.image[ImageInfo]

        # No layout in the runfiles (image_parts.bzl): each layer is read where it is, only if needed.
        parts_args, parts_files = image_parts(ctx, info)
        images = [info]

    # The SBOM and provenance of each image, attached as referrers after the push.
    attachments = ctx.actions.declare_file(ctx.label.name + ".attachments.json")
    ctx.actions.write(attachments, json.encode({
        "self": runfiles_path(ctx, attachments),
        "images": [{
            "digest_file": runfiles_path(ctx, i.digest),
            "spdx": runfiles_path(ctx, i.supply_chain.spdx),
            "provenance": runfiles_path(ctx, i.supply_chain.provenance),
        } for i in images],
    }))
    parts_args = parts_args + [runfile_arg(attachments, "--attachments=")]
    for i in images:
        parts_files = parts_files + [i.digest, i.supply_chain.spdx, i.supply_chain.provenance]
    parts_files = parts_files + [attachments]
    args = [
        "--target=" + target,
        runfile_arg(info.digest, "--digest_file="),
    ] + parts_args
    if ctx.attr.repository:
        args.append("--default_repository=" + ctx.attr.repository)
    for t in ctx.attr.remote_tags:
        args.append("--default_tag=" + t)
    files = [info.digest] + parts_files
    if ctx.file.remote_tags_file:
        args.append(runfile_arg(ctx.file.remote_tags_file, "--default_tags_file="))
        files.append(ctx.file.remote_tags_file)

    launcher = ctx.actions.declare_file(ctx.label.name)
    write_launcher(
        ctx,
        launcher,
        ctx.executable._push_tool,
        args,
        what = "image_push launcher (arguments after `bazel run ... --` override the defaults)",
        bzl = "rules/private/push.bzl",
    )
    runfiles = ctx.runfiles(files = files).merge(ctx.attr._push_tool[DefaultInfo].default_runfiles)
    return [DefaultInfo(executable = launcher, runfiles = runfiles)]

image_push_rule = rule(
    implementation = _image_push_impl,
    doc = "Pushes an image with `bazel run`. Use the `image_push` macro.",
    executable = True,
    attrs = dict({
        "image": attr.label(
            mandatory = True,
            providers = [[ImageInfo], [ImageIndexInfo]],
            doc = "The `image` or `image_index` target to push (an index: every child, then the index, tagged).",
        ),
        "repository": attr.string(
            doc = "Default REGISTRY/REPOSITORY, e.g. `127.0.0.1:5000/rules_shiko/app`; `--repository` overrides it at run time.",
        ),
        "remote_tags": attr.string_list(
            doc = "Default remote tags; any `--tag` at run time replaces them and the tags file.",
        ),
        "remote_tags_file": attr.label(
            allow_single_file = True,
            doc = "A file of more default tags, one per line (e.g. written by a stamped genrule).",
        ),
        "_push_tool": attr.label(
            default = "//python_tools:push",
            executable = True,
            cfg = "target",
            doc = "The push CLI (python_tools/push.py), run by the launcher.",
        ),
    }, **IMAGE_PARTS_ATTRS),
)

def image_push(name, image, repository = "", remote_tags = None, remote_tags_file = None, bazel_tags = [], tags = None, **kwargs):
    """`bazel run //pkg:<name> [-- --repository=R --tag=T ...]` pushes `image`.

    The last line printed is `R@sha256:<hex>`, the pushed manifest digest (equal to the image's
    `.digest`). Run-time flags: see python_tools/push.py (--insecure, --ca_file, --jobs, ...).

    Args:
      name: target name.
      image: the `image` or `image_index` target to push.
      repository: default REGISTRY/REPOSITORY; `--repository` overrides it.
      remote_tags: default remote tags; `--tag` (repeatable) replaces them.
      remote_tags_file: a file of more default tags, one per line.
      bazel_tags: Bazel `tags` of the target (e.g. ["manual"]).
      tags: DEPRECATED alias of `remote_tags` (0.1 used `tags` for remote tags); it prints a
        warning, and a later release gives `tags` its usual Bazel meaning.
      **kwargs: common attributes (visibility, testonly, ...).
    """
    if tags != None:
        if remote_tags != None:
            fail("image_push %s: attribute 'tags': %r: give `remote_tags` only (`tags` is its deprecated alias)" % (name, tags))
        print(("WARNING: image_push %s: attribute 'tags' is deprecated: rename it to `remote_tags` " +
               "(a later release makes `tags` Bazel's target tags; use `bazel_tags` for those now)") % name)
        remote_tags = tags
    image_push_rule(
        name = name,
        image = image,
        repository = repository,
        remote_tags = remote_tags or [],
        remote_tags_file = remote_tags_file,
        tags = bazel_tags,
        **kwargs
    )
