"""One layer written: manifest checked, members collected, tar streamed through a compression.

    desc, listing = build_layer(manifest_dict, "out/app.tar.gz")   # listing.json(): its bytes

The manifest contract, the output semantics and the descriptor and listing formats are
documented in python_tools/layer.py. The diff_id (sha256 of the tar) and digest (sha256 of the
blob) are computed while the tar is streamed, in one pass over the sources; the layer is never
held in memory.
"""

import gc
import os

from python_tools.shiko.files import canonical_json, write_file_atomic
from python_tools.shiko.layer.collect import Layer
from python_tools.shiko.layer.manifest import MEDIA_TYPES, Spec
from python_tools.shiko.layer.writer import TarStream, write_tar
from python_tools.shiko.tar import compression


def build_layer(manifest, output, _threads=None, packages=None):
    """Writes the blob of the layer described by `manifest` (a dict) to `output`.

    Returns (descriptor dict, writer.Listing: `.json()` the listing's bytes, `.entries()` its
    dicts). `packages`: where to write the inventory of the manifest's one `debs` entry. The
    compression thread count is for tests: it changes the speed, never the bytes."""
    spec = Spec(manifest)
    layer = Layer(spec, os.path.dirname(os.path.abspath(output)))
    backend = None
    sink = None
    # No cyclic garbage collection while the layer is built: its members (a few objects per
    # file, freed by reference counting) start a collection every few hundred files (22 young
    # and 2 middle-generation collections, ~16 ms per layer of the small bench tree on a loaded
    # machine, ~5% of the main thread). Restored as it was when the layer is written or fails.
    gc_on = gc.isenabled()
    gc.disable()
    try:
        layer.collect()
        if packages:
            if len(layer.inventories) != 1:
                raise spec.error("--packages needs exactly one `debs` entry, the manifest has %d" %
                                 len(layer.inventories), "entries")
            write_file_atomic(packages, canonical_json(layer.inventories[0]))
        members = layer.finalize()
        sink = compression.Sink(output)
        backend = compression.pipeline(spec.compression, sink, spec.level, _threads)
        entries = write_tar(members, TarStream(backend), spec.mtime, layer)
        backend.finish()
        diff = backend.diff
        tar_size = backend.length
        backend = None
    finally:
        if gc_on:
            gc.enable()
        if backend is not None:
            backend.abort()
        if sink is not None:
            sink.close()
        layer.close()
    desc = {
        "mediaType": MEDIA_TYPES[spec.compression],
        "digest": "sha256:" + sink.h.hexdigest(),
        "size": sink.size,
        "diff_id": "sha256:" + diff.hexdigest(),
        "compression": spec.compression,
        "compressor": compression.compressor_name(spec.compression, spec.level),
        "members": len(entries),
        "tar_size": tar_size,
    }
    return desc, entries
