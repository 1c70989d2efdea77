"""JSON bytes as Go's encoding/json.Marshal writes them (what cosign and go-containerregistry hash).

Objects keep the order they are built in (Go writes struct fields in declaration order; build
dicts in that order), maps given as dicts with `sort_maps` are written with sorted keys (Go
sorts map keys), no spaces, UTF-8, and Go's HTML-safe escapes (<, >, & and U+2028/U+2029).
"""

import json

_GO_ESCAPES = (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
               ("\u2029", "\\u2029"))


def marshal(obj):
    """Go's json.Marshal of obj (dict order kept): compact UTF-8 bytes."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    for raw, esc in _GO_ESCAPES:
        text = text.replace(raw, esc)
    return text.encode("utf-8")


def sorted_map(d):
    """A Go map[string]...: its keys sorted (how Go marshals maps)."""
    return {k: d[k] for k in sorted(d)}
