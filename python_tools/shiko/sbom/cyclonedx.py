"""CycloneDX 1.5 JSON from an sbom.model.Image.

metadata.component is the image (type container); every component carries the layers holding
its files as `rules_shiko:layer` properties (and `rules_shiko:label` for Bazel labels); the
image dependsOn every component. Deterministic: the serial number derives from the content.
"""

from python_tools.shiko.sbom import licenses
from python_tools.shiko.sbom.spdx import _uuid


def _ref(c, scope=""):
    return scope + (c.purl or "bazel:" + (c.label or c.name))


def _licenses(c):
    if c.kind != "deb" or not c.licenses:
        return []
    expr = licenses.expression(c.licenses)
    return [{"expression": expr}]


def _components(image, scope=""):
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
            "bom-ref": _ref(c, scope),
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
    return comps


def _image_component(image, ref):
    props = [{"name": "rules_shiko:layer", "value": l["digest"]} for l in image.layers]
    props += [{"name": "rules_shiko:%s" % k, "value": v} for k, v in sorted(image.platform.items())]
    return {
        "type": "container",
        "bom-ref": ref,
        "name": image.target,
        "version": image.digest,
        "hashes": [{"alg": "SHA-256", "content": image.digest.split(":", 1)[1]}],
        "properties": props,
    }


def _bom(subject, created, uuid, components, dependencies):
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": "urn:uuid:" + uuid,
        "version": 1,
        "metadata": {
            "timestamp": created,
            "tools": {"components": [{"type": "application", "name": "rules_shiko"}]},
            "component": subject,
        },
        "components": components,
        "dependencies": dependencies,
    }


def document(image):
    image_ref = "image:" + image.digest
    comps = _components(image)
    deps = [{"ref": image_ref, "dependsOn": [c["bom-ref"] for c in comps]}]
    deps += [{"ref": c["bom-ref"]} for c in comps]
    return _bom(_image_component(image, image_ref), image.created, _uuid(image), comps, deps)


def index_document(index):
    """An image index: metadata.component is the index; each child image is a container
    component, its packages scoped by it (`image:<digest>/` in their bom-refs)."""
    index_ref = "index:" + index.digest
    comps, deps = [], []
    for image in index.images:
        image_ref = "image:" + image.digest
        own = _components(image, image_ref + "/")
        comps.append(dict(_image_component(image, image_ref), components=own))
        deps.append({"ref": image_ref, "dependsOn": [c["bom-ref"] for c in own]})
        deps += [{"ref": c["bom-ref"]} for c in own]
    deps.insert(0, {"ref": index_ref, "dependsOn": ["image:" + i.digest for i in index.images]})
    subject = {"type": "container", "bom-ref": index_ref, "name": index.target,
               "version": index.digest,
               "hashes": [{"alg": "SHA-256", "content": index.digest.split(":", 1)[1]}]}
    return _bom(subject, index.created, _uuid(index), comps, deps)
