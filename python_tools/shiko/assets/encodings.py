"""Precompressed variants of static assets: deterministic gzip, and brotli.

gzip: raw deflate of zlib level 9 in a gzip member whose header holds no file name, mtime 0,
XFL 2 and OS 255 (unknown), so the bytes depend only on the input and zlib's version. br: the
`brotli` package (pinned in requirements_lock.txt), quality 11, window 22, text mode for text
formats; imported only when a brotli variant is asked for.
"""

import struct
import zlib

# Extensions worth precompressing: text formats (and a few binary formats that are not
# compressed already). PNG, JPEG, GIF, WebP, AVIF and WOFF/WOFF2 are.
COMPRESSIBLE = (".css", ".js", ".mjs", ".map", ".json", ".html", ".htm", ".txt", ".xml", ".svg",
                ".ico", ".ttf", ".otf", ".wasm", ".webmanifest")
TEXT = (".css", ".js", ".mjs", ".map", ".json", ".html", ".htm", ".txt", ".xml", ".svg",
        ".webmanifest")

ENCODINGS = ("gzip", "br")
SUFFIXES = {"gzip": ".gz", "br": ".br"}

GZIP_LEVEL = 9
BROTLI_QUALITY = 11
BROTLI_LGWIN = 22


def gzip_bytes(data, level=GZIP_LEVEL):
    """A deterministic gzip member: no name, mtime 0, XFL 2 (max compression), OS 255."""
    co = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
    body = co.compress(data) + co.flush()
    header = b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\xff"
    trailer = struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data) & 0xFFFFFFFF)
    return header + body + trailer


def brotli_bytes(data, text):
    import brotli  # only when asked for: the tool works without it for gzip-only sets

    mode = brotli.MODE_TEXT if text else brotli.MODE_GENERIC
    return brotli.compress(data, mode=mode, quality=BROTLI_QUALITY, lgwin=BROTLI_LGWIN)
