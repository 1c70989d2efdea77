"""The image under test: its manifest and config from the layout, its layers named by label,
and its final filesystem (shiko/tar/rootfs.py: the layers applied in order, whiteouts included)."""

import os

from python_tools.shiko.errors import UserError
from python_tools.shiko.oci import layout as oci_layout
from python_tools.shiko.oci import platform as oci_platform
from python_tools.shiko.tar import rootfs


def _manifest_descriptor(layout, manifest):
    """The index descriptor (mediaType, digest, size) of the selected manifest."""
    candidates = []
    layout._walk(layout.check_layout(), candidates, 0)
    for _, desc, m, _ in candidates:
        if m is None:
            m = layout.read_json_blob(desc)
        if m == manifest:
            return desc
    raise layout.error("the selected manifest is not in the index")


class Image(object):
    """The image under test: config, layers (with names), and its final filesystem."""

    def __init__(self, spec, runfiles):
        image = spec["image"]
        layout_path = image["layout"]
        if runfiles and not os.path.isabs(layout_path):
            layout_path = os.path.join(runfiles, layout_path)
        self.label = image.get("label") or layout_path
        layout = oci_layout.Layout(layout_path, spec["target"], "image", self.label)
        if spec.get("platform"):
            plat = oci_platform.parse(spec["platform"])
            self.manifest, self.config, self.descs, self.paths = layout.select(plat)
        else:
            self.manifest, self.config, self.descs, self.paths = layout.single()
        self.config_digest = self.manifest["config"]["digest"]
        self.manifest_desc = _manifest_descriptor(layout, self.manifest)
        self.layout = layout_path
        known = list(image.get("layers") or [])
        n = len(self.descs)
        if len(known) > n:
            known = known[len(known) - n:]
        self.names = ["base layer %d" % (i + 1) for i in range(n - len(known))] + known
        self._tree = None

    def layer(self, index):
        if index < 0:
            return None
        return "%d of %d, %s (%s)" % (index + 1, len(self.descs), self.descs[index]["digest"], self.names[index])

    @property
    def tree(self):
        if self._tree is None:
            tree = rootfs.Tree()
            for i, p in enumerate(self.paths):
                try:
                    tree.add_layer(p)
                except rootfs.LayerError as e:
                    raise UserError("layer %s: %s" % (self.layer(i), e), None, "image", self.label)
            self._tree = tree
        return self._tree

    @property
    def cfg(self):
        return self.config.get("config") or {}
