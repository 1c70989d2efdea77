"""Public API of rules_shiko.

    load("@rules_shiko//rules:defs.bzl", "image", "image_layer")

- image_layer: files, directories, runfiles trees, symlinks, empty dirs and imported tars as one
  reproducible layer (gzip via ISA-L, zstd or none).
- image: an OCI image from a base (image target, OCI layout, or scratch) plus layers and config;
  outputs an OCI layout directory, `<name>.digest`, and the `tarball` output group.
- ImageInfo, LayerInfo: providers, for rules built on top.
"""

load("//rules/private:image.bzl", _image = "image")
load("//rules/private:layer.bzl", _image_layer = "image_layer")
load("//rules/private:providers.bzl", _ImageInfo = "ImageInfo", _LayerInfo = "LayerInfo")

image = _image
image_layer = _image_layer
ImageInfo = _ImageInfo
LayerInfo = _LayerInfo
