"""Public API of rules_shiko.

    load("@rules_shiko//rules:defs.bzl", "image", "image_layer")

- image_layer: files, directories, runfiles trees, symlinks, empty dirs and imported tars as one
  reproducible layer (gzip via ISA-L, zstd or none).
- image: an OCI image from a base (image target, OCI layout, or scratch) plus layers and config;
  outputs an OCI layout directory, `<name>.digest`, and the `tarball` output group.
- image_index: a multi-platform image (OCI image index), from per-platform images or from one
  image built for several platforms (`platforms`, a split transition).
- image_load: `bazel run` target streaming an image into docker (DOCKER_HOST) or podman.
- image_test: a test checking an image's files, config and commands (docker, podman or no engine).
- image_push: `bazel run` target pushing an image to a registry (`-- --repository=R --tag=T`);
  `--sign-key=KEY` signs it (cosign format) and attaches its SBOM and signed SLSA provenance.
- image_verify: `bazel run` target checking a pushed image (`-- REF --key=PUB.pem`): signed,
  SBOM and provenance attached, and the digest this build made.
  Base images are pulled by digest with `image_pull` (//rules:repositories.bzl, or the `images`
  extension of //rules:extensions.bzl).
- distroless_base, deb_layer: bases and layers from Debian packages pinned by a lock file
  (`deb_lock`: `bazel run //pkg:<name>.update` writes the lock; `deb_repository` in
  //rules:repositories.bzl, or the `debs` extension, fetches it).
- py_image: a py_binary as an image run by the base's Python, its runfiles in layers by change
  rate (split packages, third-party, first-party); runfiles_layers: the same layering for any
  language's binary.
- py_proto_compile: `*_pb2.py` from .proto files with a pinned protoc; hashed_assets: static
  web assets with content-hashed names, a manifest and precompressed .gz/.br variants.
- ImageInfo, ImageIndexInfo, LayerInfo: providers, for rules built on top.
"""

load("//rules/private/web:assets.bzl", _hashed_assets = "hashed_assets")
load("//rules/private/debian:deb.bzl", _deb_layer = "deb_layer", _distroless_base = "distroless_base")
load("//rules/private/debian:deb_lock.bzl", _deb_lock = "deb_lock")
load("//rules/private/image:image.bzl", _image = "image")
load("//rules/private/image:image_test.bzl", _image_test = "image_test")
load("//rules/private/image:index.bzl", _image_index = "image_index")
load("//rules/private/layer:layer.bzl", _image_layer = "image_layer")
load("//rules/private/image:load.bzl", _image_load = "image_load")
load("//rules/private/common:providers.bzl", _ImageIndexInfo = "ImageIndexInfo", _ImageInfo = "ImageInfo", _LayerInfo = "LayerInfo")
load("//rules/private/image:push.bzl", _image_push = "image_push")
load("//rules/private/python:py_image.bzl", _py_image = "py_image")
load("//rules/private/image:verify.bzl", _image_verify = "image_verify")
load("//rules/private/python:py_proto.bzl", _py_proto_compile = "py_proto_compile")
load("//rules/private/layer:runfiles_layers.bzl", _runfiles_layers = "runfiles_layers")

image = _image
image_index = _image_index
image_layer = _image_layer
image_test = _image_test
image_load = _image_load
image_push = _image_push
image_verify = _image_verify
deb_lock = _deb_lock
deb_layer = _deb_layer
distroless_base = _distroless_base
py_image = _py_image
runfiles_layers = _runfiles_layers
py_proto_compile = _py_proto_compile
hashed_assets = _hashed_assets
ImageInfo = _ImageInfo
ImageIndexInfo = _ImageIndexInfo
LayerInfo = _LayerInfo
