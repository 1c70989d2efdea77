"""OCI platforms (os/architecture[/variant]) as the rules name and compare them."""

# A platform without a variant means the default one (as skopeo and containerd match them).
DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": "v1"}

def platform_name(p):
    """`os/architecture[/variant]` of a platform struct (os, architecture, variant)."""
    return "%s/%s%s" % (p.os, p.architecture, "/" + p.variant if p.variant else "")

def platform_key(os, architecture, variant):
    """What two platforms must share to be the same: the variant defaulted per architecture."""
    return (os, architecture, variant or DEFAULT_VARIANTS.get(architecture, ""))
