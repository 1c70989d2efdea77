"""The user's signing key: read, decrypt and check once, before anything is pushed.

Accepted (`load_signing_key`): one PEM block holding an ECDSA P-256 private key, as
- `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1, what `openssl ecparam -genkey` writes);
- `ENCRYPTED SIGSTORE PRIVATE KEY` or `ENCRYPTED COSIGN PRIVATE KEY` (what `cosign
  generate-key-pair` writes; encrypted.py), with the password in $COSIGN_PASSWORD (set, even
  empty, as cosign reads it).

Every problem is a `KeyFileError`: one line naming the key file and the problem (unreadable,
not PEM, encrypted without COSIGN_PASSWORD, wrong password, not EC, not P-256). Its message is
fixed text plus the file's path: never a byte of the file, never the password, never the
text of an exception raised while parsing them.

A `SigningKey` signs with ECDSA over SHA-256 (ASN.1 DER signatures, as cosign and skopeo
write them); its repr names only the file and the public key's id.
"""

import base64
import hashlib
import os

PASSWORD_ENV = "COSIGN_PASSWORD"
PLAIN_TYPES = ("PRIVATE KEY", "EC PRIVATE KEY")
ENCRYPTED_TYPES = ("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY")
MAX_KEY_FILE = 64 << 10


class KeyFileError(Exception):
    """A key that cannot be used; str() is one line naming the file (never its content)."""

    def __init__(self, path, problem):
        self.path = path
        self.problem = problem
        super().__init__("%s: %s" % (path, problem))


def _pem_block(data, path):
    """(type, DER bytes) of the one PEM block in data; KeyFileError when there is none."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(path, "not a PEM file (binary content)")
    begin = text.find("-----BEGIN ")
    if begin < 0:
        raise KeyFileError(path, "not a PEM file (no -----BEGIN line)")
    head_end = text.find("-----", begin + 11)
    if head_end < 0:
        raise KeyFileError(path, "not a PEM file (malformed -----BEGIN line)")
    kind = text[begin + 11:head_end]
    end_marker = "-----END %s-----" % kind
    end = text.find(end_marker, head_end)
    if end < 0:
        raise KeyFileError(path, "not a PEM file (no %s line)" % end_marker)
    body = text[head_end + 5:end]
    if ":" in body:
        raise KeyFileError(path, "PEM headers (legacy OpenSSL encryption) are not supported: "
                           "use PKCS#8, SEC1 or a cosign key")
    try:
        der = base64.b64decode("".join(body.split()), validate=True)
    except ValueError:
        raise KeyFileError(path, "not a PEM file (the %s block is not base64)" % _label(kind))
    return kind, der


def _read_pem(path, what):
    """(type, DER) of the PEM file at path; KeyFileError when unreadable or not PEM."""
    if not path:
        raise KeyFileError(path, "no %s given (empty path)" % what)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise KeyFileError(path, "cannot read the %s: %s" % (what, e.strerror or type(e).__name__))
    if len(data) > MAX_KEY_FILE:
        raise KeyFileError(path, "not a %s (larger than %d KiB)" % (what, MAX_KEY_FILE >> 10))
    return _pem_block(data, path)


def _label(kind):
    """A PEM type for a message: shown only when it looks like one (it is the file's text)."""
    if 0 < len(kind) <= 40 and all(c.isupper() or c.isdigit() or c == " " for c in kind):
        return repr(kind)
    return "(unrecognized type)"


def _password(path, env):
    value = env.get(PASSWORD_ENV)
    if value is None:
        raise KeyFileError(path, "the key is encrypted: set %s to its password" % PASSWORD_ENV)
    return value.encode("utf-8")


def load_signing_key(path, env=None):
    """The SigningKey in the PEM file at path (module doc); KeyFileError when unusable."""
    env = os.environ if env is None else env
    kind, der = _read_pem(path, "key file")
    if kind in ENCRYPTED_TYPES:
        from python_tools.shiko.sign import encrypted
        try:
            der = encrypted.decrypt(der, _password(path, env))
        except encrypted.EncryptedKeyError as e:
            raise KeyFileError(path, str(e))
    elif kind == "RSA PRIVATE KEY":
        raise KeyFileError(path, "an RSA key: only ECDSA P-256 keys are supported")
    elif kind not in PLAIN_TYPES:
        raise KeyFileError(path, "unsupported PEM block %s: expected PRIVATE KEY, EC PRIVATE KEY or "
                           "ENCRYPTED SIGSTORE PRIVATE KEY" % _label(kind))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    try:
        # DER of PKCS#8 or SEC1 (cryptography tells them apart); unencrypted here.
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError):
        # The parser's message is not shown: it could quote the bytes it choked on.
        raise KeyFileError(path, "the %s block does not hold a private key cryptography can read" % kind)
    except Exception as e:  # cryptography's UnsupportedAlgorithm and friends
        raise KeyFileError(path, "unsupported private key (%s)" % type(e).__name__)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyFileError(path, "not an EC key (%s): only ECDSA P-256 keys are supported"
                           % _key_kind(key))
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(path, "wrong curve %s: only ECDSA P-256 (prime256v1) keys are supported"
                           % key.curve.name)
    return SigningKey(key, path)


def _key_kind(key):
    name = type(key).__name__
    for prefix in ("RSA", "DSA", "Ed25519", "Ed448", "X25519", "X448", "DH"):
        if name.startswith(prefix) or name.startswith("_" + prefix):
            return prefix
    return name


class SigningKey(object):
    """An ECDSA P-256 private key: sign(data) -> DER signature; public_pem(); key_id."""

    def __init__(self, private_key, path="<memory>"):
        self._key = private_key
        self.path = path

    def sign(self, data):
        """ECDSA-SHA256 signature of data, ASN.1 DER (cosign's and skopeo's encoding)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    def public_key(self):
        return self._key.public_key()

    def public_pem(self):
        """The public key as PEM SubjectPublicKeyInfo (what cosign.pub holds)."""
        return public_pem(self.public_key())

    @property
    def key_id(self):
        """sha256 of the public key's DER: a name for the key that reveals nothing secret."""
        from cryptography.hazmat.primitives import serialization
        der = self.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def __repr__(self):
        return "SigningKey(%r, %s)" % (self.path, self.key_id)

    def __reduce__(self):
        raise TypeError("a SigningKey cannot be pickled")


def public_pem(public_key):
    from cryptography.hazmat.primitives import serialization
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_public_key(path):
    """An ECDSA P-256 public key from a PEM file (cosign.pub); KeyFileError when unusable."""
    kind, der = _read_pem(path, "public key file")
    if kind != "PUBLIC KEY":
        raise KeyFileError(path, "unsupported PEM block %s: expected PUBLIC KEY" % _label(kind))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise KeyFileError(path, "the PUBLIC KEY block does not hold a public key cryptography can read")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(path, "not an ECDSA P-256 public key")
    return key


def verify(public_key, signature, data):
    """Whether signature (DER) is a valid ECDSA-SHA256 signature of data under public_key."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False
