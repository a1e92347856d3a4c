"""Bearer keys for /lab/api/: shown once when issued, kept only as a SHA-256, checked in constant time."""

import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from toolserver.lab.models import LabKey

SCOPES = (
    "siem:read",
    "edr:read",
    "edr:isolate",
    "identity:read",
    "identity:write",
    "tickets:write",
    "intel:read",
)

# One key per tool server, holding only the scopes that server needs (least privilege).
SERVER_SCOPES: dict[str, list[str]] = {
    "siem": ["siem:read"],
    "edr": ["edr:read"],
    "edr-response": ["edr:isolate"],
    "identity": ["identity:read", "identity:write"],
    "ticketing": ["tickets:write"],
    "intel": ["intel:read"],
}

KEY_PREFIX = "lab_"  # makes a leaked lab key recognisable to secret scanners


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def fingerprint(key: str) -> str:
    """What may be shown of a key: the first 8 hex digits of its SHA-256."""
    return hash_key(key)[:8]


def issue_key(name: str, scopes) -> str:
    """A new key for `name` (revoking its live one, if any). The plaintext is returned only here."""
    scopes = list(scopes)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes: {', '.join(unknown)}")
    if not name:
        raise ValueError("a key needs a name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        revoke_key(name)
        LabKey.objects.create(name=name, key_hash=hash_key(key), scopes=scopes)
    return key


def revoke_key(name: str) -> int:
    """Revoke the live key of `name`; the number revoked (0 or 1)."""
    return LabKey.objects.filter(name=name, revoked_at__isnull=True).update(revoked_at=timezone.now())


def key_for_header(authorization: str) -> LabKey | None:
    """The live key an `Authorization: Bearer <key>` header carries, or None."""
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    wanted = hash_key(key)
    found = None
    # Compare with every live key, each in constant time: the answer's timing says nothing
    # about how close a guess came, nor which key matched.
    for candidate in LabKey.objects.filter(revoked_at__isnull=True):
        if hmac.compare_digest(candidate.key_hash, wanted):
            found = candidate
    return found
