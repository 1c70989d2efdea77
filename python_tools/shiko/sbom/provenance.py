"""SLSA v1 provenance of an image, as an in-toto statement (https://slsa.dev/spec/v1.0/provenance).

    predicate(image, build_info) -> dict      # at build time, from the SBOM model
    statement(predicate, name, digest) -> dict  # at push time: the subject is the pushed image

The predicate is deterministic (no times, no machine names): the Bazel target as the external
parameter, the Bazel version the build ran (@rules_shiko_build_info), and as resolved
dependencies the lock files (by label and sha256), the pulled base, every Debian package and
every wheel (by purl and sha256). At push the statement gets its subject, REGISTRY/REPO and the
manifest digest, and is signed in a DSSE envelope (shiko/sign/dsse.py) with the push's key.
"""

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://rules-shiko.github.io/provenance/bazel-image/v1"
BUILDER_ID = "https://rules-shiko.github.io/builder/bazel"


def predicate(image, build_info):
    deps = []
    for label in sorted(image.locks):
        d = {"uri": "bazel:" + label, "name": label}
        if image.locks[label]:
            d["digest"] = {"sha256": image.locks[label]}
        deps.append(d)
    for c in image.components:
        if c.kind in ("oci", "deb", "wheel") and c.purl:
            d = {"uri": c.purl, "name": c.name}
            if c.sha256:
                d["digest"] = {"sha256": c.sha256}
            deps.append(d)
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {"target": image.target},
            "internalParameters": {
                "bazelVersion": build_info.get("bazel_version", "unknown"),
                "bazelVersionSource": build_info.get("bazel_version_source", ""),
                "platform": image.platform,
            },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": BUILDER_ID},
            "byproducts": [{"name": "image config and layers", "digest": {
                "sha256": image.digest.split(":", 1)[1]}}],
        },
    }


def statement(pred, name, digest):
    """The in-toto statement naming the pushed image (`name` = REGISTRY/REPO) as its subject."""
    algo, hexd = digest.split(":", 1)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {algo: hexd}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": pred,
    }
