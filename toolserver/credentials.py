"""Credential references: where a server's secret lives, resolved only when its process starts.

  file:/run/secrets/edr_isolate   a mounted secret file (read by the server's launcher)
  value:<secret>                  the secret itself, handed over by the supervisor
"""

import hashlib
import os


class CredentialError(Exception):
    """The reference cannot be resolved. The message names the reference, never a secret."""


def resolve(reference: str) -> str:
    scheme, _, rest = reference.partition(":")
    if scheme == "file":
        try:
            with open(rest) as handle:
                secret = handle.read().strip()
        except OSError as exc:
            raise CredentialError(f"cannot read credential file {rest} ({exc.strerror})") from None
    elif scheme == "value":
        secret = rest
    else:
        raise CredentialError("no credential reference (expected file:/path)")
    if not secret:
        raise CredentialError(f"the credential at {scheme}:{rest if scheme == 'file' else '…'} is empty")
    return secret


def version(reference: str) -> str:
    """Changes when the credential behind the reference changes, without reading it."""
    scheme, _, rest = reference.partition(":")
    if scheme == "file":
        try:
            stat = os.stat(rest)
        except OSError:
            return "missing"
        return f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"
    return hashlib.sha256(reference.encode()).hexdigest()[:16]


def fingerprint(secret: str) -> str:
    """What a page may show of a credential: enough to tell two apart, nothing to use."""
    return hashlib.sha256(secret.encode()).hexdigest()[:12]
