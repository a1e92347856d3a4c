"""Credential references: where a server's secret lives, resolved only when its process starts.

  sealed:<token>                           a secret stored in the database, sealed with Fernet under
                                           GATEHOUSE_CREDENTIALS_KEY (which never enters the database)
  file:/run/gatehouse/credentials/edr-response.key
                                           a mounted secret file in the credentials folder

A file reference resolves only inside GATEHOUSE_CREDENTIALS_DIR, to the server's own file
(`<server>.key`) or a file in the server's own folder (`<server>/…`), with symlinks resolved and
`..` refused: whoever may set a reference cannot point one server at another's key, nor at any
other file the console can read. There is no reference to an environment variable: a variable of
the deployment sits in every process's environment, the worker that runs the model included.

The server's launcher (toolserver.launch) resolves the reference in the child process, so the
worker that runs the model never holds the secret in plain text. This module runs there without
Django: only fingerprint() reads the settings.
"""

import base64
import hashlib
import hmac
import itertools
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

KEY_VARIABLE = "GATEHOUSE_CREDENTIALS_KEY"  # comma-separated: the first seals, all unseal (key rotation)
DIR_VARIABLE = "GATEHOUSE_CREDENTIALS_DIR"
SERVER_VARIABLE = "GATEHOUSE_SERVER"


class CredentialError(Exception):
    """The reference cannot be resolved. The message names the reference, never a secret."""


def resolve(reference: str, environ=os.environ) -> str:
    scheme, _, rest = reference.partition(":")
    if scheme == "file":
        path = credential_file(rest, environ.get(SERVER_VARIABLE, ""), environ.get(DIR_VARIABLE, ""))
        try:
            secret = path.read_text().strip()
        except (OSError, UnicodeError):  # one message whatever the cause: no oracle of which files exist
            raise CredentialError(f"the credential file {rest} cannot be read") from None
    elif scheme == "env":
        raise CredentialError(
            "env: references are not accepted any more: set the secret, or a file in the credentials folder"
        )
    elif scheme == "sealed":
        secret = unseal(rest, environ.get(KEY_VARIABLE, ""))
    else:
        raise CredentialError(
            "no credential (the server's credential was revoked, never set, or set for another backend)"
        )
    if not secret:
        raise CredentialError(f"the credential at {describe(reference)} is empty")
    return secret


def credential_file(path: str, server: str, directory: str | os.PathLike) -> Path:
    """The file `path` names, if it is `server`'s own in the credentials folder; else CredentialError."""
    if not directory or not server:
        raise CredentialError(f"file: references need {DIR_VARIABLE}")
    folder = Path(os.path.abspath(directory))
    given = Path(path) if os.path.isabs(path) else folder / path
    if ".." in given.parts:
        raise CredentialError("a file: reference may not contain '..'")
    try:
        inside = given.relative_to(folder).parts
    except ValueError:
        inside = ()
    if not _own(inside, server):
        raise CredentialError(
            f"a file: reference names {server}.key or a file under {server}/ in the credentials folder ({folder})"
        )
    # Symlinks resolved: the file itself must be in the folder too, and the server's own there (a link from
    # its folder or file to another server's key is not).
    real, real_folder = Path(os.path.realpath(given)), Path(os.path.realpath(folder))
    if not real.is_relative_to(real_folder):
        raise CredentialError("a file: reference must stay inside the credentials folder")
    if not _own(real.relative_to(real_folder).parts, server, mounted=True):
        raise CredentialError(f"a file: reference must lead to {server}'s own file, not through a link to another's")
    return given


def _own(inside: tuple[str, ...], server: str, *, mounted: bool = False) -> bool:
    """`server`'s own place in the folder: its key file, or a file under its folder. `mounted`, where a link
    leads: under a mounted secret's data folders too (Kubernetes: <folder>/..2026_12_04/<server>.key, or
    .../..2026_12_04/<server>/key), whose names begin with "..", never a real path's parent."""
    if mounted:
        inside = tuple(itertools.dropwhile(lambda part: part.startswith(".."), inside))
    return inside == (f"{server}.key",) or (len(inside) > 1 and inside[0] == server)


def check_reference(reference: str, server: str, directory) -> str:
    """A reference an admin may set for `server`: file:<its own file in the credentials folder>.

    Returns it with an absolute path; raises ValueError naming the problem.
    """
    scheme, _, rest = reference.strip().partition(":")
    if scheme != "file" or not rest:
        raise ValueError(
            f"expected file:{server}.key (a file in the credentials folder); a secret itself goes in the secret field"
        )
    try:
        return f"file:{credential_file(rest, server, directory)}"
    except CredentialError as exc:
        raise ValueError(str(exc)) from None


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


def split_keys(keys: str) -> list[str]:
    """The keys of a rotation (`new,old,...`), as they seal and open: blanks and spaces around them dropped."""
    return [key.strip() for key in keys.split(",") if key.strip()]


def _fernet(keys: str) -> MultiFernet:
    # Any strong string is a key: each is stretched to Fernet's 32 bytes.
    derived = [
        Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"gatehouse-credentials:" + key.encode()).digest()))
        for key in split_keys(keys)
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
