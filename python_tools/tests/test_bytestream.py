"""shiko/registry/bytestream.py against a real gRPC server (grpcio's, in this process) serving
google.bytestream.ByteStream/Read from a dict, with hand-checked wire encodings."""

import hashlib
from concurrent import futures

import grpc
import pytest

from python_tools.shiko import protowire
from python_tools.shiko.registry import bytestream


def test_wire_encoding_round_trip():
    req = bytestream.encode_read_request("inst/blobs/ab/3", offset=5, limit=300)
    # field 1 (len 15), field 2 varint 5, field 3 varint 300 (0xac 0x02)
    assert req == b"\x0a\x0finst/blobs/ab/3\x10\x05\x18\xac\x02"
    # ReadResponse: an unknown varint field, then data (field 10).
    assert bytestream.decode_read_response(b"\x08\x01\x52\x03abc") == b"abc"
    assert bytestream.parse_url("grpc://127.0.0.1:9092/main") == ("127.0.0.1:9092", False, "main")
    assert bytestream.parse_url("grpcs://cache.example:443") == ("cache.example:443", True, "")
    with pytest.raises(ValueError):
        bytestream.parse_url("http://x/cas")


def _request_name(raw):
    return dict(protowire.fields(raw))[1].decode()


@pytest.fixture
def server():
    blobs = {}
    seen = []

    def read(request, context):
        name = _request_name(request)
        seen.append(name)
        if name not in blobs:
            context.abort(grpc.StatusCode.NOT_FOUND, "no blob " + name)
        data = blobs[name]
        for i in range(0, len(data), 1000):
            chunk = data[i:i + 1000]
            yield protowire.field_bytes(10, chunk)

    handler = grpc.method_handlers_generic_handler("google.bytestream.ByteStream", {
        "Read": grpc.unary_stream_rpc_method_handler(read, request_deserializer=lambda b: b,
                                                     response_serializer=lambda b: b)})
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    srv.add_generic_rpc_handlers((handler,))
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    try:
        yield blobs, seen, port
    finally:
        srv.stop(0)


def test_read_streams_the_blob_by_its_resource_name(server):
    blobs, seen, port = server
    data = bytes(range(256)) * 40
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs["main/blobs/%s/%d" % (digest[7:], len(data))] = data
    got = b"".join(bytestream.read("grpc://127.0.0.1:%d/main" % port, digest, len(data)))
    assert got == data and seen == ["main/blobs/%s/%d" % (digest[7:], len(data))]


def test_missing_blob_is_not_found(server):
    _, _, port = server
    with pytest.raises(bytestream.CacheError) as e:
        list(bytestream.read("grpc://127.0.0.1:%d" % port, "sha256:" + "0" * 64, 5))
    assert e.value.missing and "NOT_FOUND" in str(e.value)


def _read_all(stream):
    out = b""
    try:
        while True:
            b = stream.read(4096)
            if not b:
                return out
            out += b
    finally:
        stream.close()


def test_push_and_load_stream_a_layer_from_a_grpc_cache(server):
    """image_blobs: a grpc:// remote cache is an origin of a RemoteBlob; what it sends is
    verified as it passes; a blob it lacks is a clear error naming the cache."""
    from python_tools.shiko.errors import UserError
    from python_tools.shiko.registry import image_blobs
    blobs, _, port = server
    data = b"layer bytes " * 5000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs["blobs/%s/%d" % (digest[7:], len(data))] = data
    url = "grpc://127.0.0.1:%d" % port
    origin = image_blobs.cache_origin(url)
    assert isinstance(origin, image_blobs.GrpcCacheOrigin)
    assert isinstance(image_blobs.cache_origin("http://127.0.0.1:1"), image_blobs.CacheOrigin)
    assert _read_all(image_blobs.RemoteBlob(digest, len(data), [origin], "//x:push").open()) == data
    # Other bytes under that name: refused before the last byte is handed out.
    bad = b"L" + data[1:]
    blobs["blobs/%s/%d" % (digest[7:], len(data))] = bad
    with pytest.raises(UserError) as e:
        _read_all(image_blobs.RemoteBlob(digest, len(data), [origin], "//x:push").open())
    assert digest in str(e.value)
    missing = "sha256:" + "1" * 64
    with pytest.raises(UserError) as e:
        image_blobs.RemoteBlob(missing, 3, [origin], "//x:push").open()
    assert "not in the remote cache %s" % url in str(e.value)
