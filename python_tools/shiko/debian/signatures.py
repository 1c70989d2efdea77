"""OpenPGP signatures of Release files, checked with gpgv against a keyring.

The decision is apt's, made on gpgv's status lines (`--status-fd`), one verdict per signature:
a Release file is accepted when at least one of its signatures is good (GOODSIG and VALIDSIG,
by a key of the keyring that has neither expired nor been revoked, with a digest stronger
than SHA-1) and none is BAD. Debian signs each suite with two or three keys (the release key
and the archive keys of the current and previous releases): a keyring holding one of them must
do, although gpgv then exits 2 (NO_PUBKEY for the others) and prints EXPKEYSIG for old keys.
"""

import os
import subprocess
import tempfile

from python_tools.shiko.debian.errors import DebError

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

_RESULTS = {"GOODSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "BADSIG", "ERRSIG"}
# OpenPGP hash algorithm ids too weak to trust (RFC 4880 9.4): MD5, SHA-1, RIPEMD-160.
_WEAK_DIGESTS = {"1": "MD5", "2": "SHA-1", "3": "RIPEMD-160"}


def _signatures(status):
    """[{"result": keyword, "who": "keyid uid", "validsig": [fields], "no_pubkey": bool}], one
    per signature, from gpgv's status lines (a block starts at NEWSIG, or at a second result)."""
    blocks = []
    cur = None
    for line in status.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "[GNUPG:]":
            continue
        kw, rest = words[1], words[2:]
        if kw == "NEWSIG" or (kw in _RESULTS and (cur is None or "result" in cur)):
            cur = {}
            blocks.append(cur)
            if kw == "NEWSIG":
                continue
        if cur is None:
            continue
        if kw in _RESULTS:
            cur["result"] = kw
            cur["who"] = " ".join(rest[:1] if kw == "ERRSIG" else rest)
        elif kw == "VALIDSIG":
            cur["validsig"] = rest
        elif kw == "NO_PUBKEY":
            cur["no_pubkey"] = True
    return blocks


def verdict(status, keyring="the keyring"):
    """None when gpgv's status lines show a Release file to accept, else why not (one line)."""
    blocks = _signatures(status)
    if not blocks:
        return "no signature"
    for b in blocks:
        if b.get("result") == "BADSIG":
            return "BAD signature by %s (the file was modified after signing)" % b["who"]
    why = []
    for b in blocks:
        result, who = b.get("result"), b.get("who", "?")
        digest = (b.get("validsig") or [""] * 8)[7:8]
        if result == "GOODSIG" and b.get("validsig"):
            if digest and digest[0] in _WEAK_DIGESTS:
                why.append("weak digest algorithm %s by %s" % (_WEAK_DIGESTS[digest[0]], who))
                continue
            return None
        if result == "EXPKEYSIG":
            why.append("expired key %s" % who)
        elif result == "REVKEYSIG":
            why.append("revoked key %s" % who)
        elif result == "EXPSIG":
            why.append("expired signature by %s" % who)
        elif result == "ERRSIG" and b.get("no_pubkey"):
            why.append("no public key %s" % who)
        elif result == "ERRSIG":
            why.append("signature by %s could not be checked" % who)
        else:
            why.append("incomplete gpgv status for %s" % who)
    return "no valid signature by a key of the keyring %s (%s)" % (keyring, "; ".join(why))


def gpgv_verify(gpgv, keyring, signed, detached_sig=None):
    """Verifies `signed` (bytes: an InRelease, or a Release with `detached_sig`) with gpgv.

    Returns the signed content as gpgv saw it (for InRelease, the text inside the signature:
    never parse anything outside it). Raises DebError unless `verdict` accepts the signatures.
    """
    if not os.path.isfile(keyring):
        raise DebError("keyring %s does not exist (apt-get install debian-archive-keyring, or "
                       "set `keyring`)" % keyring)
    with tempfile.TemporaryDirectory(prefix="shiko-gpgv-") as tmp:
        data = os.path.join(tmp, "data")
        with open(data, "wb") as f:
            f.write(signed)
        argv = [gpgv, "--quiet", "--keyring", os.path.abspath(keyring), "--status-fd", "1"]
        out = os.path.join(tmp, "out")
        if detached_sig is not None:
            sig = os.path.join(tmp, "data.gpg")
            with open(sig, "wb") as f:
                f.write(detached_sig)
            argv += [sig, data]
        else:
            argv += ["--output", out, data]
        env = dict(os.environ, LC_ALL="C", GNUPGHOME=tmp)
        try:
            res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                 timeout=120)
        except FileNotFoundError:
            raise DebError("gpgv not found (%s): apt-get install gpgv" % gpgv)
        # The exit status is not the verdict: gpgv exits 2 when any signer's key is missing.
        why = verdict(res.stdout.decode("utf-8", "replace"), keyring)
        if why is not None:
            if why == "no signature":
                detail = " ".join(l.strip() for l in res.stderr.decode("utf-8", "replace").splitlines()
                                  if l.strip())
                why += " (gpgv exit %d%s)" % (res.returncode, ": " + detail if detail else "")
            raise DebError("bad signature: %s" % why)
        if detached_sig is not None:
            return signed
        if not os.path.isfile(out):
            raise DebError("bad signature: gpgv wrote no signed text (exit %d)" % res.returncode)
        with open(out, "rb") as f:
            return f.read()
