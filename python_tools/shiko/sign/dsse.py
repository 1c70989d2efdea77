"""DSSE envelopes (github.com/secure-systems-lab/dsse, v1): what in-toto attestations are signed in.

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    (LEN: the byte length in ASCII decimal, no leading zeros; SP: one space)

The signature is over PAE(payloadType, payload), never over the payload alone. An envelope is
`{"payloadType": T, "payload": base64(body), "signatures": [{"keyid": "", "sig": base64(sig)}]}`
(standard base64 with padding; cosign leaves keyid empty). Keys are keys.SigningKey (sign) and
a public key from keys.load_public_key (verify).
"""

import base64
import json

from python_tools.shiko.sign import gojson

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"


class EnvelopeError(Exception):
    """A malformed envelope, or no signature that verifies (one line)."""


def pae(payload_type, body):
    """Pre-authentication encoding of (payload_type: str, body: bytes)."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def sign_envelope(key, payload_type, body, keyid=""):
    """The envelope (bytes, Go-marshalled JSON) of body signed by key."""
    sig = key.sign(pae(payload_type, body))
    return gojson.marshal({
        "payloadType": payload_type,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode("ascii")}],
    })


def verify_envelope(envelope_bytes, public_key, payload_type=None):
    """(payload type, body) of an envelope with at least one signature by public_key; else
    EnvelopeError. With payload_type, the envelope must carry that type."""
    from python_tools.shiko.sign import keys
    try:
        env = json.loads(envelope_bytes.decode("utf-8"))
        ptype = env["payloadType"]
        body = base64.b64decode(env["payload"], validate=True)
        sigs = env["signatures"]
        if not isinstance(ptype, str) or not isinstance(sigs, list):
            raise TypeError
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise EnvelopeError("not a DSSE envelope")
    if payload_type is not None and ptype != payload_type:
        raise EnvelopeError("payload type %r is not %r" % (ptype, payload_type))
    message = pae(ptype, body)
    for s in sigs:
        try:
            raw = base64.b64decode(s["sig"], validate=True)
        except (ValueError, KeyError, TypeError):
            continue
        if keys.verify(public_key, raw, message):
            return ptype, body
    raise EnvelopeError("no signature of the envelope verifies with the given key")
