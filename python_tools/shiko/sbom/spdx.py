"""SPDX 2.3 JSON from an sbom.model.Image.

The document DESCRIBES the image (a CONTAINER package); the image CONTAINS every layer and every
component; each layer CONTAINS the components whose files it holds. Debian licences become SPDX
expressions (licenses.py); names that are not SPDX identifiers are declared in
hasExtractedLicensingInfos. Deterministic: ids and the namespace derive from the content.
"""

import hashlib
import re

from python_tools.shiko.sbom import licenses

CREATOR = "Tool: rules_shiko"


def _id(prefix, text):
    clean = re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-")[:60]
    return "SPDXRef-%s-%s-%s" % (prefix, clean, hashlib.sha256(text.encode()).hexdigest()[:8])


def _sha(hexdigest):
    return [{"algorithm": "SHA256", "checksumValue": hexdigest}] if hexdigest else []


def _purl_ref(p):
    return [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
             "referenceLocator": p}] if p else []


def _container(spdx_id, name, digest, comment=""):
    pkg = {
        "SPDXID": spdx_id,
        "name": name,
        "versionInfo": digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": _sha(digest.split(":", 1)[1]),
        "copyrightText": "NOASSERTION",
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
    }
    if comment:
        pkg["comment"] = comment
    return pkg


def _image_part(image, image_id, scope=""):
    """(packages, relationships, LicenseRef ids) of one image, its layers and components;
    `scope` prefixes the ids of an index's child (the same purl may be in two children)."""
    packages = [_container(image_id, image.target, image.digest,
                           "linux/" + "/".join(v for k, v in sorted(image.platform.items()) if k != "os")
                           if scope else "")]
    rels = []
    layer_ids = {}
    for i, layer in enumerate(image.layers):
        lid = "SPDXRef-%sLayer-%d-%s" % (scope, i, layer["digest"].split(":", 1)[1][:12])
        layer_ids[layer["digest"]] = lid
        packages.append({
            "SPDXID": lid,
            "name": "layer %d" % i,
            "versionInfo": layer["digest"],
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": "ARCHIVE",
            "checksums": _sha(layer["digest"].split(":", 1)[1]),
            "comment": "built by %s" % layer["label"] if layer["label"] else "",
            "copyrightText": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": "NOASSERTION",
        })
        rels.append({"spdxElementId": image_id, "relationshipType": "CONTAINS",
                     "relatedSpdxElement": lid})
    refs = set()
    for c in image.components:
        cid = _id(scope + c.kind, c.purl or c.label or c.name)
        declared = licenses.expression(c.licenses) if c.kind == "deb" else "NOASSERTION"
        refs.update(licenses.refs(declared))
        pkg = {
            "SPDXID": cid,
            "name": c.name,
            "versionInfo": c.version or "NOASSERTION",
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "checksums": _sha(c.sha256),
            "externalRefs": _purl_ref(c.purl),
            "copyrightText": "NOASSERTION",
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared,
            "primaryPackagePurpose": {"deb": "LIBRARY", "wheel": "LIBRARY", "oci": "CONTAINER",
                                      "target": "SOURCE"}[c.kind],
        }
        if c.kind == "deb":
            pkg["sourceInfo"] = "Debian source package %s; %s" % (c.extra["source"], c.extra["filename"])
            pkg["supplier"] = "Organization: Debian"
        elif c.kind == "wheel" and c.extra.get("filename"):
            pkg["packageFileName"] = c.extra["filename"]
        elif c.kind == "target":
            pkg["comment"] = "Bazel label; %d files, %d bytes" % (c.files, c.bytes)
        packages.append({k: v for k, v in pkg.items() if v != [] and v != ""})
        rels.append({"spdxElementId": image_id, "relationshipType": "CONTAINS",
                     "relatedSpdxElement": cid})
        for d in c.layers:
            rels.append({"spdxElementId": layer_ids[d], "relationshipType": "CONTAINS",
                         "relatedSpdxElement": cid})
    for p in packages:
        if not p.get("comment"):
            p.pop("comment", None)
        if not p.get("checksums"):
            p.pop("checksums", None)
    return packages, rels, refs


def _document(name, uuid, created, described, packages, rels, refs):
    doc = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": "urn:uuid:%s" % uuid,
        "creationInfo": {"created": created, "creators": [CREATOR]},
        "packages": packages,
        "relationships": [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                           "relatedSpdxElement": described}] + rels,
    }
    if refs:
        doc["hasExtractedLicensingInfos"] = [{
            "licenseId": r,
            "name": r[len("LicenseRef-Debian-"):],
            "extractedText": "A licence named %s in a Debian package's machine-readable "
                             "copyright file (/usr/share/doc/<package>/copyright)."
                             % r[len("LicenseRef-Debian-"):],
        } for r in sorted(refs)]
    return doc


def document(image):
    """The SPDX document of one image (it DESCRIBES SPDXRef-Image)."""
    packages, rels, refs = _image_part(image, "SPDXRef-Image")
    return _document("%s@%s" % (image.target, image.digest), _uuid(image), image.created,
                     "SPDXRef-Image", packages, rels, refs)


def index_document(index):
    """The SPDX document of an image index (model.Index): it DESCRIBES SPDXRef-Index, which
    CONTAINS each child image (SPDXRef-Image-<n>), each with its layers and components."""
    packages = [_container("SPDXRef-Index", index.target, index.digest, "OCI image index")]
    rels, refs = [], set()
    for n, image in enumerate(index.images):
        image_id = "SPDXRef-Image-%d" % n
        p, r, f = _image_part(image, image_id, "Image%d-" % n)
        packages += p
        rels.append({"spdxElementId": "SPDXRef-Index", "relationshipType": "CONTAINS",
                     "relatedSpdxElement": image_id})
        rels += r
        refs |= f
    return _document("%s@%s" % (index.target, index.digest), _uuid(index), index.created,
                     "SPDXRef-Index", packages, rels, refs)


def _uuid(image):
    """A name-based UUID of the image's target and digest: the same image, the same id."""
    h = hashlib.sha256(("rules_shiko sbom %s %s" % (image.target, image.digest)).encode()).hexdigest()
    h = h[:12] + "5" + h[13:16] + "%x" % (8 | (int(h[16], 16) & 3)) + h[17:32]
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])
