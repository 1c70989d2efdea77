"""Signing: the user's key (keys.py, encrypted.py), cosign signatures (cosign.py), DSSE (dsse.py).

Third-party packages (cryptography, pynacl) are imported inside these modules, which are
themselves imported only when a signing flag is given: a push without one never loads them.
"""
