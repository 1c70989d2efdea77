"""The report tool's inputs (python_tools/report.py's manifest) read into model.build_report's
layer dicts: one per layer of the image manifest, bottom first, each with its listing entries
and their origins.
"""

import os

from python_tools.shiko.errors import UserError
from python_tools.shiko.explain import listing
from python_tools.shiko.files import read_json
from python_tools.shiko.tar.stream import LayerError


def _read(target, attr, path, what):
    try:
        return read_json(path)
    except OSError as e:
        raise UserError("cannot read the %s: %s" % (what, e.strerror or e), target, attr, path)
    except ValueError as e:
        raise UserError("the %s is not valid JSON: %s" % (what, e), target, attr, path)


def _layout_blob(layout, digest):
    algo, _, hexdigest = digest.partition(":")
    return os.path.join(layout, "blobs", algo, hexdigest)


def _with_origins(entries, default, debs):
    """Entries with "origin": a deb package's for its files, else the listing's, else `default`
    (implicit parent directories have none)."""
    out = []
    for e in entries:
        e = dict(e)
        origin = debs.get(e["path"]) if e["type"] != "dir" else None
        e["origin"] = origin or e.get("origin") or default
        out.append(e)
    return out


def _spec_layers(target, manifest, image_manifest):
    """The manifest's layer specs lined up with the image manifest's layers (see report.py)."""
    specs = list(manifest.get("layers") or [])
    descs = image_manifest.get("layers") or []
    base = manifest.get("base_layout")
    missing = len(descs) - len(specs)
    if missing < 0:
        raise UserError("the image manifest has %d layers, fewer than the %d layers given" %
                        (len(descs), len(specs)), target, "layers", len(specs))
    if missing and not base:
        raise UserError("the image manifest has %d layers below the %d built ones, and no "
                        "base_layout holds them" % (missing, len(specs)), target, "base_layout", None)
    pulled = [{"label": None, "descriptor": None, "listing": None, "packages": [],
               "blob": _layout_blob(base["path"], d["digest"]), "source": base.get("source")}
              for d in descs[:missing]]
    return list(zip(descs, pulled + specs))


def load_layers(manifest):
    """[layer dict for model.build_report] of a report manifest (dict)."""
    target = manifest.get("target") or "report"
    image_manifest = _read(target, "manifest", manifest["manifest"], "image manifest")
    layers = []
    for i, (desc, spec) in enumerate(_spec_layers(target, manifest, image_manifest)):
        digest = desc["digest"]
        if spec.get("digest") and spec["digest"] != digest:
            raise UserError("layer %d is %s in the image manifest" % (i, digest), target,
                            "layers", spec["digest"])
        tar_size = None
        if spec.get("descriptor"):
            d = _read(target, "layers", spec["descriptor"], "layer descriptor")
            if d.get("digest") != digest:
                raise UserError("layer %d of the image manifest is %s, its descriptor says %s" %
                                (i, digest, d.get("digest")), target, "layers", spec["descriptor"])
            tar_size = d.get("tar_size")
        default = spec.get("label") or spec.get("source") or "layer %d" % i
        if spec.get("listing"):
            entries = _read(target, "layers", spec["listing"], "layer listing")
        elif spec.get("blob"):
            try:
                entries, tar_size = listing.list_blob(spec["blob"], default)
            except (OSError, LayerError) as e:
                raise UserError("cannot list layer %d (%s): %s" % (i, digest, e), target,
                                "layers", spec["blob"])
        else:
            raise UserError("layer %d (%s) has neither a listing nor a blob" % (i, digest),
                            target, "layers", spec.get("label"))
        debs = listing.deb_origins([_read(target, "layers", p, "packages inventory")
                                    for p in spec.get("packages") or []])
        wheels = {}
        for w in spec.get("wheels") or []:
            ident = _read(target, "layers", w["identity"], "wheel identity")
            wheels[w["origin"]] = "%s %s" % (ident.get("name"), ident.get("version"))
        layers.append({
            "wheels": wheels,
            "digest": digest,
            "size": desc.get("size", 0),
            "tar_size": tar_size,
            "label": spec.get("label"),
            "source": spec.get("source"),
            "entries": _with_origins(entries, default, debs),
        })
    return image_manifest, layers
