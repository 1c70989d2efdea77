"""Signing: keys (shiko/sign/keys.py, encrypted.py), cosign payloads and `.sig` images
(shiko/sign/cosign.py), DSSE (dsse.py), and the signature push (shiko/registry/signatures.py).

Keys are made by the `openssl` CLI at test time (PKCS#8, SEC1, P-384, RSA, Ed25519); every
signature we make is verified by `openssl dgst -verify` too, an implementation that shares
nothing with ours. cosign's encrypted-key format is checked against published vectors:
go-securesystemslib's encrypted_test.go (reproduced byte for byte) and the encrypted keys of
cosign's pkg/cosign/keys_test.go (password "hello"). The push side runs against a real
docker-registry on 127.0.0.1.
"""

import base64
import hashlib
import json
import os
import subprocess

import pytest

from python_tools.shiko.oci import media_types
from python_tools.shiko.registry import attachments, signatures, tokens
from python_tools.shiko.registry.client import Client
from python_tools.shiko.registry.errors import RegistryError
from python_tools.shiko.sign import cosign, dsse, encrypted, gojson, keys
from python_tools.tests import registry_fixtures as rf
from python_tools.tests.sign_vectors import COSIGN_TEST_KEYS, COSIGN_TEST_PASSWORD

PASSWORD = "correct horse battery staple 7f3a"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def openssl(*args, input=None):
    return rf.openssl(*args, input=input)


def pem_body(path):
    """The base64 lines of a PEM file (what must never appear in a message)."""
    with open(path) as f:
        return [line for line in f.read().splitlines() if line and not line.startswith("-----")]


def pem(kind, der):
    b = base64.b64encode(der).decode()
    return ("-----BEGIN %s-----\n%s\n-----END %s-----\n"
            % (kind, "\n".join(b[i:i + 64] for i in range(0, len(b), 64)), kind)).encode()


@pytest.fixture(scope="module")
def key_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}

    def gen(name, *args):
        out[name] = str(d / name)
        openssl(args[0], "-out", out[name], *args[1:])

    gen("pkcs8.pem", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256")
    gen("sec1.pem", "ecparam", "-name", "prime256v1", "-genkey", "-noout")
    gen("p384.pem", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384")
    gen("rsa8.pem", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048")
    gen("rsa1.pem", "genrsa", "-traditional", "2048")
    gen("ed25519.pem", "genpkey", "-algorithm", "ed25519")
    for name in ("pkcs8.pem", "sec1.pem"):
        out[name + ".pub"] = str(d / (name + ".pub"))
        openssl("pkey", "-in", out[name], "-pubout", "-out", out[name + ".pub"])
    # A cosign key made with our encrypt(): the PKCS#8 DER of pkcs8.pem, encrypted.
    der = openssl("pkey", "-in", out["pkcs8.pem"], "-outform", "DER")
    out["cosign.key"] = str(d / "cosign.key")
    with open(out["cosign.key"], "wb") as f:
        f.write(pem("ENCRYPTED SIGSTORE PRIVATE KEY", encrypted.encrypt(der, PASSWORD.encode())))
    return out


def openssl_verifies(pub_path, signature, data, tmp_path):
    sig = tmp_path / "sig.der"
    sig.write_bytes(signature)
    res = subprocess.run(["openssl", "dgst", "-sha256", "-verify", pub_path, "-signature", str(sig)],
                         input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return res.returncode == 0 and b"Verified OK" in res.stdout


# --- Keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pkcs8.pem", "sec1.pem"])
def test_plain_keys_sign_what_openssl_verifies(key_files, name, tmp_path):
    key = keys.load_signing_key(key_files[name], env={})
    with open(key_files[name + ".pub"], "rb") as f:
        assert key.public_pem() == f.read()
    data = b"payload bytes"
    sig = key.sign(data)
    assert sig[0] == 0x30  # ASN.1 DER SEQUENCE, as cosign and skopeo write it
    assert openssl_verifies(key_files[name + ".pub"], sig, data, tmp_path)
    assert not openssl_verifies(key_files[name + ".pub"], sig, data + b"!", tmp_path)
    pub = keys.load_public_key(key_files[name + ".pub"])
    assert keys.verify(pub, sig, data) and not keys.verify(pub, sig, data + b"!")
    assert key.key_id.startswith("sha256:") and "PRIVATE" not in repr(key)


def test_encrypted_key_made_here(key_files):
    key = keys.load_signing_key(key_files["cosign.key"], env={"COSIGN_PASSWORD": PASSWORD})
    plain = keys.load_signing_key(key_files["pkcs8.pem"], env={})
    assert key.public_pem() == plain.public_pem()
    # Also under cosign's older PEM type.
    with open(key_files["cosign.key"], "rb") as f:
        old = f.read().replace(b"SIGSTORE", b"COSIGN")
    path = key_files["cosign.key"] + ".old"
    with open(path, "wb") as f:
        f.write(old)
    assert keys.load_signing_key(path, env={"COSIGN_PASSWORD": PASSWORD}).public_pem() == plain.public_pem()


# go-securesystemslib encrypted/encrypted_test.go: kdfVectors (Marshal of []byte("reallyimportant"),
# i.e. the JSON string of its base64) and TestDecrypt (Encrypt of the bytes), passphrase "supersecret".
SSL_VECTORS = [
    (b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},'
     b'"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},'
     b'"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}', b'"cmVhbGx5aW1wb3J0YW50"'),
    (b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},'
     b'"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},'
     b'"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}', b'"cmVhbGx5aW1wb3J0YW50"'),
    (b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"N9a7x5JFGbrtB2uBR81jPwp0eiLR4A7FV3mjVAQrg1g="},'
     b'"cipher":{"name":"nacl/secretbox","nonce":"2h8HxMmgRfuYdpswZBQaU3xJ1nkA/5Ik"},'
     b'"ciphertext":"SEW6sUh0jf2wfdjJGPNS9+bkk2uB+Cxamf32zR8XkQ=="}', b"reallyimportant"),
]


@pytest.mark.parametrize("vector,plaintext", SSL_VECTORS)
def test_published_secretbox_vectors(vector, plaintext):
    assert encrypted.decrypt(vector, b"supersecret") == plaintext
    doc = json.loads(vector)
    params = tuple(doc["kdf"]["params"][k] for k in ("N", "r", "p"))
    again = encrypted.encrypt(plaintext, b"supersecret", params, base64.b64decode(doc["kdf"]["salt"]),
                              base64.b64decode(doc["cipher"]["nonce"]))
    assert again == vector  # byte for byte what Go wrote
    with pytest.raises(encrypted.EncryptedKeyError, match="wrong password"):
        encrypted.decrypt(vector, b"supersecreT")
    doc["kdf"]["params"]["N"] = 1 << 30  # a file must not choose our memory and time
    with pytest.raises(encrypted.EncryptedKeyError, match="scrypt parameters N=1073741824 r=8 p=1"):
        encrypted.decrypt(json.dumps(doc).encode(), b"supersecret")
    doc["kdf"]["params"]["N"] = "65536"
    with pytest.raises(encrypted.EncryptedKeyError, match="scrypt parameters malformed"):
        encrypted.decrypt(json.dumps(doc).encode(), b"supersecret")


@pytest.mark.parametrize("label", sorted(COSIGN_TEST_KEYS))
def test_cosign_published_encrypted_keys(label, tmp_path):
    path = tmp_path / "cosign.key"
    path.write_text(COSIGN_TEST_KEYS[label])
    key = keys.load_signing_key(str(path), env={"COSIGN_PASSWORD": COSIGN_TEST_PASSWORD})
    # The decrypted key signs what openssl verifies with the public key we derive from it.
    pub = tmp_path / "cosign.pub"
    pub.write_bytes(key.public_pem())
    assert openssl_verifies(str(pub), key.sign(b"x"), b"x", tmp_path)
    with pytest.raises(keys.KeyFileError, match="wrong password"):
        keys.load_signing_key(str(path), env={"COSIGN_PASSWORD": "hellO"})


def bad_key_message(path, env=None):
    with pytest.raises(keys.KeyFileError) as e:
        keys.load_signing_key(path, env={} if env is None else env)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(path + ": "), msg
    return msg


def test_bad_keys_one_line_naming_the_file_never_its_content(key_files, tmp_path):
    cases = {
        "p384.pem": "wrong curve secp384r1",
        "rsa8.pem": "not an EC key (RSA)",
        "rsa1.pem": "an RSA key",
        "ed25519.pem": "not an EC key (Ed25519)",
        "sec1.pem.pub": "unsupported PEM block 'PUBLIC KEY'",
    }
    for name, problem in cases.items():
        msg = bad_key_message(key_files[name])
        assert problem in msg, msg
        for line in pem_body(key_files[name]):
            assert line not in msg and line[:16] not in msg
    assert "cannot read the key file: No such file or directory" in bad_key_message(str(tmp_path / "absent.pem"))
    assert "cannot read the key file: Is a directory" in bad_key_message(str(tmp_path))
    with pytest.raises(keys.KeyFileError, match="no key file given"):
        keys.load_signing_key("", env={})
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"MHcCAQEEIsecretsecretsecret\n")
    msg = bad_key_message(str(junk))
    assert "not a PEM file" in msg and "secret" not in msg
    junk.write_bytes(os.urandom(100) + b"\x00")
    assert "not a PEM file" in bad_key_message(str(junk))
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot*base64\n-----END PRIVATE KEY-----\n")
    assert "not base64" in bad_key_message(str(junk))
    junk.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert "does not hold a private key" in bad_key_message(str(junk))


def test_encrypted_key_without_or_with_a_wrong_password(key_files):
    path = key_files["cosign.key"]
    assert "set COSIGN_PASSWORD" in bad_key_message(path)
    for wrong in ("", PASSWORD + " ", PASSWORD[:-1]):
        msg = bad_key_message(path, {"COSIGN_PASSWORD": wrong})
        assert "wrong password" in msg and (not wrong or wrong not in msg)
    assert PASSWORD not in bad_key_message(path, {"COSIGN_PASSWORD": "x"})


# --- cosign payloads and .sig images --------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def test_payload_is_cosigns_bytes():
    # sigstore/pkg/signature/payload: json.Marshal of SimpleContainerImage, no newline.
    assert cosign.payload("127.0.0.1:5000/team/app", DIGEST) == (
        b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/team/app"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}')
    assert cosign.signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
    with pytest.raises(ValueError):
        cosign.signature_tag("sha512:00")
    assert cosign.check_payload(cosign.payload("r/a", DIGEST), DIGEST, "r/a") is None
    assert "not sha256:" in cosign.check_payload(cosign.payload("r/a", DIGEST), "sha256:" + "cd" * 32)
    assert "names r/a" in cosign.check_payload(cosign.payload("r/a", DIGEST), DIGEST, "r/b")
    assert gojson.marshal({"a": "<&>"}) == b'{"a":"\\u003c\\u0026\\u003e"}'


def test_sig_image_like_go_containerregistry_and_appended():
    p1 = cosign.payload("r/a", DIGEST)
    l1 = cosign.layer(p1, "c2lnMQ==")
    first = cosign.append(None, None, l1)
    cfg = json.loads(first.config)
    assert first.config == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],'
        b'"os":"","rootfs":{"type":"layers","diff_ids":["' + sha(p1).encode() + b'"]},"config":{}}')
    m = json.loads(first.manifest)
    assert list(m) == ["schemaVersion", "mediaType", "config", "layers"]
    assert m["mediaType"] == media_types.OCI_MANIFEST == first.media_type
    assert m["config"] == {"mediaType": media_types.OCI_CONFIG, "size": len(first.config), "digest": sha(first.config)}
    assert m["layers"] == [{"mediaType": cosign.SIMPLESIGNING_MEDIA_TYPE, "size": len(p1), "digest": sha(p1),
                            "annotations": {cosign.SIGNATURE_ANNOTATION: "c2lnMQ=="}}]
    assert first.count == 1
    # The same layer again: nothing to do. Another signature: appended, the first kept.
    assert cosign.append(m, cfg, dict(l1)) is None
    l2 = cosign.layer(p1, "c2lnMg==")
    second = cosign.append(m, cfg, l2)
    m2, cfg2 = json.loads(second.manifest), json.loads(second.config)
    assert m2["layers"] == m["layers"] + [l2] and second.count == 2
    assert cfg2["rootfs"]["diff_ids"] == [sha(p1), sha(p1)] and len(cfg2["history"]) == 2
    # A .sig image another tool wrote (skopeo's config is a bare OCI image config): kept, extended.
    other_cfg = {"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "11" * 32]}, "config": {}}
    other = {"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST,
             "config": {"mediaType": media_types.OCI_CONFIG, "digest": "sha256:" + "22" * 32, "size": 1},
             "layers": [{"mediaType": cosign.SIMPLESIGNING_MEDIA_TYPE, "digest": "sha256:" + "11" * 32, "size": 9,
                         "annotations": {cosign.SIGNATURE_ANNOTATION: "b3RoZXI=", "dev.sigstore.cosign/bundle": "{}"}}]}
    third = cosign.append(other, other_cfg, l1)
    m3 = json.loads(third.manifest)
    assert m3["layers"][0] == {"mediaType": cosign.SIMPLESIGNING_MEDIA_TYPE, "size": 9, "digest": "sha256:" + "11" * 32,
                               "annotations": {"dev.cosignproject.cosign/signature": "b3RoZXI=",
                                               "dev.sigstore.cosign/bundle": "{}"}}
    assert json.loads(third.config)["rootfs"]["diff_ids"] == ["sha256:" + "11" * 32, sha(p1)]
    assert [s for _, s in cosign.signatures(m3)] == ["b3RoZXI=", "c2lnMQ=="]


# --- DSSE -------------------------------------------------------------------------------------------


def test_dsse_pae_and_envelopes(key_files, tmp_path):
    # The DSSE spec's example (protocol.md).
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == \
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    key = keys.load_signing_key(key_files["pkcs8.pem"], env={})
    body = b'{"_type":"https://in-toto.io/Statement/v1"}'
    env = dsse.sign_envelope(key, dsse.IN_TOTO_PAYLOAD_TYPE, body)
    doc = json.loads(env)
    assert list(doc) == ["payloadType", "payload", "signatures"]
    assert base64.b64decode(doc["payload"]) == body
    sig = base64.b64decode(doc["signatures"][0]["sig"])
    assert openssl_verifies(key_files["pkcs8.pem.pub"], sig, dsse.pae(dsse.IN_TOTO_PAYLOAD_TYPE, body), tmp_path)
    pub = keys.load_public_key(key_files["pkcs8.pem.pub"])
    assert dsse.verify_envelope(env, pub, dsse.IN_TOTO_PAYLOAD_TYPE) == (dsse.IN_TOTO_PAYLOAD_TYPE, body)
    other = keys.load_public_key(key_files["sec1.pem.pub"])
    with pytest.raises(dsse.EnvelopeError, match="no signature"):
        dsse.verify_envelope(env, other)
    doc["payload"] = base64.b64encode(body + b" ").decode()
    with pytest.raises(dsse.EnvelopeError, match="no signature"):
        dsse.verify_envelope(json.dumps(doc).encode(), pub)
    with pytest.raises(dsse.EnvelopeError, match="payload type"):
        dsse.verify_envelope(env, pub, "text/plain")


# --- The signature push, against a real registry -----------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with rf.LocalRegistry(str(tmp_path_factory.mktemp("signreg"))) as reg:
        yield reg


def push_image(client, repo, scopes, tag="v1"):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                      "config": {}, "nonce": os.urandom(8).hex()}).encode()
    attachments.upload_bytes(client, repo, sha(cfg), cfg, scopes)
    man = json.dumps({"schemaVersion": 2, "mediaType": media_types.OCI_MANIFEST,
                      "config": {"mediaType": media_types.OCI_CONFIG, "digest": sha(cfg), "size": len(cfg)},
                      "layers": []}).encode()
    return client.put_manifest(repo, tag, man, media_types.OCI_MANIFEST, scopes)


def test_push_signature_appends_and_verifies(registry, key_files, tmp_path):
    c = Client(registry.host, env={})
    repo = "unit/signed"
    scopes = tokens.push_scopes(repo)
    digest = push_image(c, repo, scopes)
    key = keys.load_signing_key(key_files["sec1.pem"], env={})
    payload = cosign.payload("%s/%s" % (registry.host, repo), digest)
    b64 = [cosign.sign(key, payload), cosign.sign(key, payload)]
    r1 = signatures.push_signature(c, repo, digest, payload, b64[0], scopes)
    assert (r1.tag, r1.count, r1.added) == (cosign.signature_tag(digest), 1, True)
    r2 = signatures.push_signature(c, repo, digest, payload, b64[1], scopes)
    assert (r2.count, r2.added) == (2, True)
    again = signatures.push_signature(c, repo, digest, payload, b64[1], scopes)
    assert (again.count, again.added, again.digest) == (2, False, r2.digest)
    # Read back as a verifier would: tag -> manifest -> payload blobs -> openssl.
    body, _, got = c.get_manifest(repo, r2.tag, scopes)
    assert got == r2.digest
    m = json.loads(body)
    assert [s for _, s in cosign.signatures(m)] == b64
    for layer, s in cosign.signatures(m):
        out = tmp_path / "payload"
        c.get_blob(repo, layer["digest"], str(out), scopes, size=layer["size"])
        assert out.read_bytes() == payload
        assert openssl_verifies(key_files["sec1.pem.pub"], base64.b64decode(s), payload, tmp_path)
    cfg = attachments.read_json_blob(c, repo, m["config"], scopes)
    assert cfg["rootfs"]["diff_ids"] == [sha(payload)] * 2
    assert c.manifest_digest(repo, "v1", scopes) == digest  # the image's tag is untouched


def test_never_signs_a_manifest_the_registry_lacks(registry):
    c = Client(registry.host, env={})
    repo = "unit/absent"
    scopes = tokens.push_scopes(repo)
    push_image(c, repo, scopes)
    missing = "sha256:" + "0f" * 32
    with pytest.raises(RegistryError, match="is not in unit/absent: nothing attached"):
        signatures.push_signature(c, repo, missing, cosign.payload("r/x", missing), "c2ln", scopes)
    assert c.tags(repo, scopes) == ["v1"]


def test_a_sig_tag_holding_something_else_is_not_replaced(registry):
    c = Client(registry.host, env={})
    repo = "unit/odd"
    scopes = tokens.push_scopes(repo)
    digest = push_image(c, repo, scopes)
    index = json.dumps({"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": []}).encode()
    c.put_manifest(repo, cosign.signature_tag(digest), index, media_types.OCI_INDEX, scopes)
    with pytest.raises(RegistryError, match="not replacing it"):
        signatures.push_signature(c, repo, digest, cosign.payload("r/x", digest), "c2ln", scopes)
    assert c.get_manifest(repo, cosign.signature_tag(digest), scopes)[0] == index


# --- push.py's flag ----------------------------------------------------------------------------------


def test_push_sign_key_flag_is_relative_to_the_working_directory(key_files):
    from python_tools import push
    from python_tools.shiko.errors import UserError
    d, name = os.path.split(key_files["sec1.pem"])
    assert push.load_sign_key(name, "//t:push", d).public_pem() == \
        keys.load_signing_key(key_files["sec1.pem"], env={}).public_pem()
    with pytest.raises(UserError) as e:
        push.load_sign_key("p384.pem", "//t:push", d)
    assert str(e.value) == ("//t:push: attribute '--sign-key': %r: wrong curve secp384r1: only ECDSA P-256 "
                            "(prime256v1) keys are supported" % os.path.join(d, "p384.pem"))
