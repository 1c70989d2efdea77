"""The protobuf wire format, just enough for the messages rules_shiko speaks without a protobuf
runtime: Bazel's worker protocol (worker.py) and the REAPI ByteStream (registry/bytestream.py).

    encode_varint(n) -> bytes; decode_varint(data, pos) -> (n, pos)
    for field, value in fields(data): ...   # varints as int, length-delimited as bytes
    field_bytes(number, data), field_varint(number, n): one encoded field
"""


def decode_varint(data, pos):
    shift = 0
    result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def encode_varint(value):
    if value < 0:
        value += 1 << 64  # int32/int64 negatives are sign-extended to 64 bits on the wire
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def int32(value):
    """A decoded varint as the signed int32/int64 it encodes."""
    return value if value < (1 << 31) else value - (1 << 64)


def fields(data):
    """(field number, value) of each field of a message: int for varints, bytes for
    length-delimited fields; fixed32/fixed64 fields are skipped."""
    pos = 0
    while pos < len(data):
        key, pos = decode_varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = decode_varint(data, pos)
            yield field, value
        elif wire == 2:
            length, pos = decode_varint(data, pos)
            chunk = data[pos:pos + length]
            if len(chunk) != length:
                raise ValueError("truncated field %d" % field)
            pos += length
            yield field, chunk
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError("unsupported wire type %d" % wire)


def field_bytes(number, data):
    return encode_varint(number << 3 | 2) + encode_varint(len(data)) + data


def field_varint(number, value):
    return encode_varint(number << 3) + encode_varint(value)
