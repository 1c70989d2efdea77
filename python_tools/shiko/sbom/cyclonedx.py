"""CycloneDX 1.5 JSON from an sbom.model.Image.

metadata.component is the image (type container); every component carries the layers holding
its files as `rules_shiko:layer` properties (and `rules_shiko:label` for Bazel labels); the
image dependsOn every component. Deterministic: the serial number derives from the content.
"""

from python_tools.shiko.sbom import licenses
from python_tools.shiko.sbom.spdx import _uuid


def _ref(c):
    return c.purl or "bazel:" + (c.label or c.name)


def _licenses(c):
    if c.kind != "deb" or not c.licenses:
        return []
    expr = licenses.expression(c.licenses)
    return [{"expression": expr}]


def document(image):
    comps = []
    for c in image.components:
        props = [{"name": "rules_shiko:layer", "value": d} for d in c.layers]
        if c.label:
            props.append({"name": "rules_shiko:label", "value": c.label})
        if c.kind == "target":
            props += [{"name": "rules_shiko:files", "value": str(c.files)},
                      {"name": "rules_shiko:bytes", "value": str(c.bytes)}]
        if c.kind == "deb":
            props += [{"name": "rules_shiko:deb:source", "value": c.extra["source"]},
                      {"name": "rules_shiko:deb:filename", "value": c.extra["filename"]}]
        comp = {
            "type": {"oci": "container", "target": "file"}.get(c.kind, "library"),
            "bom-ref": _ref(c),
            "name": c.name,
            "version": c.version,
            "purl": c.purl,
            "hashes": [{"alg": "SHA-256", "content": c.sha256}] if c.sha256 else [],
            "licenses": _licenses(c),
            "properties": props,
        }
        if c.kind == "deb":
            comp["publisher"] = "Debian"
        comps.append({k: v for k, v in comp.items() if v not in ("", [])})
    image_ref = "image:" + image.digest
    props = [{"name": "rules_shiko:layer", "value": l["digest"]} for l in image.layers]
    props += [{"name": "rules_shiko:%s" % k, "value": v} for k, v in sorted(image.platform.items())]
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:" + _uuid(image),
        "version": 1,
        "metadata": {
            "timestamp": image.created,
            "tools": {"components": [{"type": "application", "name": "rules_shiko"}]},
            "component": {
                "type": "container",
                "bom-ref": image_ref,
                "name": image.target,
                "version": image.digest,
                "hashes": [{"alg": "SHA-256", "content": image.digest.split(":", 1)[1]}],
                "properties": props,
            },
        },
        "components": comps,
        "dependencies": [{"ref": image_ref, "dependsOn": [_ref(c) for c in image.components]}]
        + [{"ref": _ref(c)} for c in image.components],
    }
