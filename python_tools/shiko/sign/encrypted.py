"""cosign's encrypted private keys: scrypt + NaCl secretbox, JSON inside a PEM block.

The format is go-securesystemslib's `encrypted` package, which cosign (`cosign generate-key-pair`,
sigstore/pkg/cryptoutils) uses for `ENCRYPTED SIGSTORE PRIVATE KEY` (and the older
`ENCRYPTED COSIGN PRIVATE KEY`) PEM blocks. The block's bytes are the JSON document

    {"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"<base64, 32 bytes>"},
     "cipher":{"name":"nacl/secretbox","nonce":"<base64, 24 bytes>"},
     "ciphertext":"<base64: 16-byte Poly1305 tag, then the XSalsa20 ciphertext>"}

and the plaintext is the key's PKCS#8 DER. The 32-byte secretbox key is scrypt(password, salt,
N, r, p). Only the three parameter sets go-securesystemslib writes are accepted (2^15, 2^16,
2^17 with r=8, p=1), as it does: a file cannot make us spend unbounded memory or time.

scrypt is the standard library's (hashlib, OpenSSL); secretbox is libsodium's through PyNaCl,
imported only here. Errors are `EncryptedKeyError` with a fixed message: never the password,
never key material.
"""

import base64
import binascii
import hashlib
import json
import os

KDF_SCRYPT = "scrypt"
CIPHER_SECRETBOX = "nacl/secretbox"
# go-securesystemslib's Legacy, Standard (its default, cosign's) and OWASP parameters.
SCRYPT_PARAMS = ((32768, 8, 1), (65536, 8, 1), (131072, 8, 1))
DEFAULT_PARAMS = (65536, 8, 1)
SALT_SIZE = 32
NONCE_SIZE = 24
KEY_SIZE = 32


class EncryptedKeyError(Exception):
    """The document is malformed, or the password is wrong (message safe to print)."""


def _scrypt(password, salt, n, r, p):
    # 128 * r * n bytes of working memory (128 MiB at N=2^17), above hashlib's 32 MiB default.
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=129 * r * n + (1 << 20), dklen=KEY_SIZE)


def _b64(obj, key, size=None):
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        raise EncryptedKeyError("malformed encrypted key: no %s" % key)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EncryptedKeyError("malformed encrypted key: %s is not base64" % key)
    if size is not None and len(raw) != size:
        raise EncryptedKeyError("malformed encrypted key: %s is not %d bytes" % (key, size))
    return raw


def decrypt(document, password):
    """The plaintext of an encrypted document (bytes) under password (bytes)."""
    try:
        doc = json.loads(document.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EncryptedKeyError("malformed encrypted key: not JSON")
    if not isinstance(doc, dict):
        raise EncryptedKeyError("malformed encrypted key: not a JSON object")
    kdf, cipher = doc.get("kdf"), doc.get("cipher")
    if not isinstance(kdf, dict) or kdf.get("name") != KDF_SCRYPT:
        raise EncryptedKeyError("unsupported encrypted key: the KDF is not scrypt")
    if not isinstance(cipher, dict) or cipher.get("name") != CIPHER_SECRETBOX:
        raise EncryptedKeyError("unsupported encrypted key: the cipher is not nacl/secretbox")
    params = kdf.get("params")
    triple = tuple(params.get(k) for k in ("N", "r", "p")) if isinstance(params, dict) else None
    if triple not in SCRYPT_PARAMS:
        shown = "N=%d r=%d p=%d" % triple if triple and all(type(v) is int for v in triple) else "malformed"
        raise EncryptedKeyError("unsupported encrypted key: scrypt parameters %s (cosign writes N=65536 r=8 p=1)"
                                % shown)
    salt = _b64(kdf, "salt")
    nonce = _b64(cipher, "nonce", NONCE_SIZE)
    sealed = _b64(doc, "ciphertext")
    key = _scrypt(password, salt, *triple)
    import nacl.exceptions  # lazily: only encrypted keys need libsodium
    import nacl.secret
    try:
        return nacl.secret.SecretBox(key).decrypt(sealed, nonce)
    except nacl.exceptions.CryptoError:
        raise EncryptedKeyError("wrong password (COSIGN_PASSWORD), or the encrypted key is corrupt")


def encrypt(plaintext, password, params=DEFAULT_PARAMS, salt=None, nonce=None):
    """The encrypted document (bytes, Go's json.Marshal form) of plaintext under password.

    salt and nonce are random unless given (tests give them to reproduce published vectors).
    """
    if tuple(params) not in SCRYPT_PARAMS:
        raise ValueError("unsupported scrypt parameters %r" % (params,))
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
    n, r, p = params
    import nacl.secret
    sealed = nacl.secret.SecretBox(_scrypt(password, salt, n, r, p)).encrypt(plaintext, nonce).ciphertext
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    # Go marshals struct fields in declaration order, without spaces.
    return ('{"kdf":{"name":"%s","params":{"N":%d,"r":%d,"p":%d},"salt":"%s"},'
            '"cipher":{"name":"%s","nonce":"%s"},"ciphertext":"%s"}'
            % (KDF_SCRYPT, n, r, p, b64(salt), CIPHER_SECRETBOX, b64(nonce), b64(sealed))).encode("ascii")
