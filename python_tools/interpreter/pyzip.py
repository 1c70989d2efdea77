"""Python modules into one deterministic zip with their bytecode (standard library only).

    write(target, [(name in the zip, source path), ...], compile_pyc=True)

With compile_pyc, each module goes in as an unchecked-hash .pyc only (zipimport imports `x.pyc`
and never checks such a .pyc against a source, so no timestamp is involved), as in CPython's
own embeddable distribution: half the members of a zip that also held the sources, so the
interpreter, which reads the zip's whole directory when it starts (for `encodings`), starts
~2.3 ms sooner (every tool, every action). The price: a traceback through the standard library
shows no source lines there. Without compile_pyc (another CPU's interpreter, which can't run
here to make its bytecode), the sources. Sorted members, fixed times and modes, stored
uncompressed (nothing to inflate at import). Used for the tools' Python's standard library
(shiko/debian/interpreter.py).
"""

import importlib.util
import os
import zipfile
from importlib import _bootstrap_external

ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _add(z, name, data):
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_STORED
    z.writestr(info, data)


def write(target, members, compile_pyc=True):
    """Writes `target` (atomically) from `members`, [(name, path)] with names ending in .py."""
    tmp = target + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for name, path in sorted(members):
            with open(path, "rb") as f:
                source = f.read()
            if not compile_pyc:
                _add(z, name, source)
                continue
            try:
                code = compile(source, name, "exec", dont_inherit=True, optimize=0)
            except SyntaxError:
                _add(z, name, source)  # a module for another Python version (none in CPython's own)
                continue
            pyc = _bootstrap_external._code_to_hash_pyc(code, importlib.util.source_hash(source),
                                                         checked=False)
            _add(z, name[:-3] + ".pyc", bytes(pyc))
    os.replace(tmp, target)
    return target
