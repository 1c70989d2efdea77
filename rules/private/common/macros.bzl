"""What a macro passes on to the targets it creates.

A macro's main target takes every attribute the user gave. The helper targets it makes on the
way (a py_image's layers, a distroless_base's tars and layers, a deb_layer's tar) take only the
attributes every rule understands, and are tagged `manual`: `bazel build //...` then builds
them through the main target only, never on their own (as rules_oci does).
"""

# The attributes common to every rule (Bazel's "common definitions").
COMMON_ATTRS = [
    "compatible_with",
    "deprecation",
    "exec_compatible_with",
    "exec_properties",
    "features",
    "restricted_to",
    "tags",
    "target_compatible_with",
    "testonly",
    "visibility",
]

def common_kwargs(kwargs):
    """The common attributes found in a macro's kwargs (kwargs is left as it is)."""
    return {k: kwargs[k] for k in COMMON_ATTRS if k in kwargs}

def helper_kwargs(kwargs):
    """The common attributes for a macro's helper target: the main target's, plus tag `manual`."""
    out = common_kwargs(kwargs)
    tags = list(out.get("tags") or [])
    if "manual" not in tags:
        tags.append("manual")
    out["tags"] = tags
    return out
