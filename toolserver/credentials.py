"""Credential references: where a server's secret lives, resolved only when its process starts.

  sealed:<token>                  a secret stored in the database, sealed with Fernet under
                                  GATEHOUSE_CREDENTIALS_KEY (which never enters the database)
  env:EDR_ISOLATE_KEY             an environment variable of the deployment
  file:/run/secrets/edr_isolate   a mounted secret file

The server's launcher (toolserver.launch) resolves the reference in the child process, so the
worker that runs the model never holds the secret in plain text. This module runs there without
Django: only fingerprint() reads the settings.
"""

import base64
import hashlib
import hmac
import os

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_VARIABLE = "GATEHOUSE_CREDENTIALS_KEY"  # comma-separated: the first seals, all unseal (key rotation)


class CredentialError(Exception):
    """The reference cannot be resolved. The message names the reference, never a secret."""


def resolve(reference: str, environ=os.environ) -> str:
    scheme, _, rest = reference.partition(":")
    if scheme == "file":
        try:
            with open(rest) as handle:
                secret = handle.read().strip()
        except OSError as exc:
            raise CredentialError(f"cannot read credential file {rest} ({exc.strerror})") from None
    elif scheme == "env":
        if rest not in environ:
            raise CredentialError(f"the environment variable {rest} is not set")
        secret = environ[rest].strip()
    elif scheme == "sealed":
        secret = unseal(rest, environ.get(KEY_VARIABLE, ""))
    else:
        raise CredentialError("no credential (the server's credential was revoked or never set)")
    if not secret:
        raise CredentialError(f"the credential at {describe(reference)} is empty")
    return secret


def check_reference(reference: str) -> str:
    """A reference an admin may set: env:NAME or file:/absolute/path. Raises ValueError naming the problem."""
    reference = reference.strip()
    scheme, _, rest = reference.partition(":")
    if scheme == "env":
        if not rest or not all(c.isalnum() or c == "_" for c in rest) or rest[0].isdigit():
            raise ValueError("env: needs a variable name of letters, digits and underscores, e.g. env:EDR_ISOLATE_KEY")
        if rest.startswith("GATEHOUSE_") or rest in {"DATABASE_URL", "REDIS_URL", "ANTHROPIC_API_KEY"}:
            raise ValueError(f"{rest} is Gatehouse's own setting, not a backend credential")
    elif scheme == "file":
        if not rest.startswith("/"):
            raise ValueError("file: needs an absolute path, e.g. file:/run/secrets/edr_isolate")
    else:
        raise ValueError("expected env:NAME or file:/path (a secret itself goes in the secret field)")
    return reference


def describe(reference: str) -> str:
    """The reference for messages: a sealed token is never repeated."""
    scheme, _, rest = reference.partition(":")
    return "the sealed credential" if scheme == "sealed" else f"{scheme}:{rest}"


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


def _fernet(keys: str) -> MultiFernet:
    # Any strong string is a key: each is stretched to Fernet's 32 bytes.
    derived = [
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"gatehouse-credentials:" + key.strip().encode()).digest()))
        for key in keys.split(",")
        if key.strip()
    ]
    if not derived:
        raise CredentialError(f"{KEY_VARIABLE} is not set: sealed credentials cannot be used")
    return MultiFernet(derived)


def seal(secret: str, keys: str) -> str:
    return _fernet(keys).encrypt(secret.encode()).decode()


def unseal(token: str, keys: str) -> str:
    try:
        return _fernet(keys).decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialError(f"the sealed credential does not open with {KEY_VARIABLE}") from None


def reseal(token: str, keys: str) -> str:
    """The same secret sealed under the first key, so the keys after it can be retired."""
    try:
        return _fernet(keys).rotate(token.encode()).decode()
    except InvalidToken:
        raise CredentialError(f"the sealed credential does not open with {KEY_VARIABLE}") from None


def fingerprint(secret: str) -> str:
    """What a page or an audit record may show of a credential: enough to tell two apart, nothing to use.

    Keyed, so a short secret cannot be found by hashing guesses.
    """
    from django.conf import settings

    return hmac.new(settings.AUDIT_HASH_KEY.encode(), b"credential:" + secret.encode(), hashlib.sha256).hexdigest()[:12]
