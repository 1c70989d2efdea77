"""OpenPGP signatures of Release files, checked with gpgv against a keyring."""

import os
import subprocess
import tempfile

from python_tools.shiko.debian.errors import DebError

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


def gpgv_verify(gpgv, keyring, signed, detached_sig=None):
    """Verifies `signed` (bytes: an InRelease, or a Release with `detached_sig`) with gpgv.

    Returns the signed content as gpgv saw it (for InRelease, the text inside the signature:
    never parse anything outside it). Raises DebError when the signature is bad or the key is
    not in the keyring.
    """
    if not os.path.isfile(keyring):
        raise DebError("keyring %s does not exist (apt-get install debian-archive-keyring, or "
                       "set `keyring`)" % keyring)
    with tempfile.TemporaryDirectory(prefix="shiko-gpgv-") as tmp:
        data = os.path.join(tmp, "data")
        with open(data, "wb") as f:
            f.write(signed)
        argv = [gpgv, "--quiet", "--keyring", os.path.abspath(keyring), "--status-fd", "1"]
        if detached_sig is not None:
            sig = os.path.join(tmp, "data.gpg")
            with open(sig, "wb") as f:
                f.write(detached_sig)
            argv += [sig, data]
        else:
            out = os.path.join(tmp, "out")
            argv += ["--output", out, data]
        env = dict(os.environ, LC_ALL="C", GNUPGHOME=tmp)
        try:
            res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                 timeout=120)
        except FileNotFoundError:
            raise DebError("gpgv not found (%s): apt-get install gpgv" % gpgv)
        status = res.stdout.decode("utf-8", "replace")
        good = any(line.startswith("[GNUPG:] VALIDSIG ") for line in status.splitlines())
        bad = any(line.split()[1:2] in (["BADSIG"], ["ERRSIG"], ["EXPKEYSIG"], ["REVKEYSIG"])
                  for line in status.splitlines() if line.startswith("[GNUPG:] "))
        if res.returncode != 0 or not good or bad:
            detail = " ".join(l for l in res.stderr.decode("utf-8", "replace").splitlines()
                              if l.strip())
            raise DebError("bad signature: %s" % (detail or status.strip() or "gpgv failed"))
        if detached_sig is not None:
            return signed
        with open(out, "rb") as f:
            return f.read()
