"""An image's final filesystem from its layers' listing entries: what `docker run` would see."""

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


def final_files(report):
    """The image's final filesystem: {path: (layer index, entry)} after every layer is applied
    in order (whiteouts and opaque markers remove what is below them)."""
    final = {}
    for layer in report["layers"]:
        i = layer["index"]
        for e in layer["entries"]:
            path = e["path"]
            parent, _, name = path.rpartition("/")
            if name == OPAQUE:
                _remove_below(final, parent, keep_layer=i)
                continue
            if name.startswith(WHITEOUT):
                gone = parent + "/" + name[len(WHITEOUT):]
                final.pop(gone, None)
                _remove_below(final, gone)
                continue
            old = final.get(path)
            if old is not None and old[1]["type"] == "dir" and e["type"] != "dir":
                _remove_below(final, path)
            final[path] = (i, e)
    return final


def _remove_below(final, directory, keep_layer=None):
    prefix = directory + "/"
    for p in [p for p, (li, _) in final.items() if p.startswith(prefix) and li != keep_layer]:
        del final[p]
