"""Blobs from a gRPC remote cache (REAPI CAS) through the ByteStream API, for push and load.

    for chunk in read(cache_url, digest, size):   # grpc://host:port[/instance] or grpcs://
        ...

Bazel keys a file in the CAS by its sha256 and size, which for a layer are its OCI digest and
size: the resource name is `[<instance>/]blobs/<hex>/<size>` (REAPI's ByteStream read form).
The two messages are encoded here by hand (ReadRequest: 1 resource_name, 2 read_offset,
3 read_limit; ReadResponse: 10 data), so no protobuf runtime or generated code is needed: grpcio
alone, imported only when a grpc:// cache is used. Errors are CacheError (NOT_FOUND: `missing`).
"""

from python_tools.shiko import protowire

READ_METHOD = "/google.bytestream.ByteStream/Read"


class CacheError(Exception):
    """A ByteStream read failed (`missing` when the cache does not hold the blob)."""

    def __init__(self, message, missing=False):
        Exception.__init__(self, message)
        self.missing = missing


def parse_url(url):
    """(target host:port, secure, instance name) of grpc://HOST:PORT[/INSTANCE] or grpcs://."""
    for scheme, secure in (("grpc://", False), ("grpcs://", True)):
        if url.startswith(scheme):
            rest = url[len(scheme):]
            host, _, instance = rest.partition("/")
            if not host:
                break
            return host, secure, instance.strip("/")
    raise ValueError("%r is not a grpc:// or grpcs:// cache URL" % url)


def encode_read_request(resource_name, offset=0, limit=0):
    out = protowire.field_bytes(1, resource_name.encode("utf-8"))
    if offset:
        out += protowire.field_varint(2, offset)
    if limit:
        out += protowire.field_varint(3, limit)
    return out


def decode_read_response(buf):
    """The `data` (field 10) of a ReadResponse; other fields are skipped."""
    data = b""
    for field, value in protowire.fields(bytes(buf)):
        if field == 10 and isinstance(value, bytes):
            data = value
    return data


def resource_name(instance, digest, size):
    hexd = digest.split(":", 1)[1]
    name = "blobs/%s/%d" % (hexd, size)
    return "%s/%s" % (instance, name) if instance else name


def read(url, digest, size, timeout=120):
    """Yields the blob's bytes in the chunks the cache sends (not verified here: the caller
    hashes them, as for the HTTP cache)."""
    import grpc  # lazily: only for grpc:// caches
    target, secure, instance = parse_url(url)
    channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) if secure else grpc.insecure_channel(target)
    try:
        call = channel.unary_stream(READ_METHOD, request_serializer=lambda r: r,
                                    response_deserializer=decode_read_response)
        try:
            for data in call(encode_read_request(resource_name(instance, digest, size)), timeout=timeout):
                yield data
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            missing = code == grpc.StatusCode.NOT_FOUND
            raise CacheError("ByteStream.Read of %s from %s: %s%s" % (
                digest, url, code.name if code else "error",
                (": " + e.details()) if hasattr(e, "details") and e.details() else ""), missing)
    finally:
        channel.close()
