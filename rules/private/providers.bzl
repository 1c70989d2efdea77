"""Providers of rules_shiko (all of them live here)."""

LayerInfo = provider(
    doc = "One image layer: a compressed tar blob and what the layer tool measured about it.",
    fields = {
        "blob": "File: the layer blob (tar, tar+gzip or tar+zstd).",
        "descriptor": "File: JSON {mediaType, digest, size, diff_id, compression, compressor, members}.",
        "listing": "File: JSON list of the layer's members (path, type, mode, uid, gid, size, target).",
        "compression": "string: gzip, zstd or none.",
        "label": "Label of the image_layer target.",
    },
)

ImageInfo = provider(
    doc = "An OCI image built by `image` (or a base layout wrapped as one).",
    fields = {
        "layout": "File (directory): the OCI image layout (oci-layout, index.json, blobs/sha256/...).",
        "digest": "File: `sha256:<hex>` of the image manifest, one line.",
        "config": "File: the image config JSON (None for a wrapped base layout).",
        "manifest": "File: the image manifest JSON (None for a wrapped base layout).",
        "layers": "list of LayerInfo this image added on top of its base, in order.",
        "base": "ImageInfo of the base, or None (scratch or a plain layout).",
        "platform": "struct(os, architecture, variant) the image was built for.",
    },
)

StampSettingInfo = provider(
    doc = "Whether the build runs with --stamp.",
    fields = {"value": "bool"},
)
