"""What both threat-intel feeds share (taxii.py, misp.py): a lookup's value as both key it, what is
kept of one known indicator, and the Indicator answer built from the ones that match. No STIX here:
a MISP server process does not load stix2 (toolserver.adapters.MODULES imports only its adapter)."""

import ipaddress
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from toolserver import schemas

MAX_TAGS, MAX_TAG_LENGTH = 20, 100  # what of a feed's free text reaches the model
Key = tuple[str, str]  # (kind, value) as a lookup has them: ("domain", "evil.example")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_GRAVITY = {"malicious": 3, "suspicious": 2, "benign": 1}


def normalised(kind: str, value: str) -> str | None:
    """`value` as the index and a lookup both key it, or None when it is not a `kind` (schemas.LookupIndicator)."""
    value = value.strip().lower()
    if kind == "domain":
        value = value.rstrip(".")
    try:
        schemas.LookupIndicator(kind=kind, value=value)  # type: ignore[arg-type]
    except ValidationError:
        return None
    if kind != "ip":
        return value
    address = ipaddress.ip_address(value)
    # ::ffff:203.0.113.7 is 203.0.113.7 (an IPv6 socket's view of an IPv4 peer): keyed as the IPv4 address.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return str(mapped or address)


@dataclass(frozen=True)
class Known:
    """What the index keeps of one indicator (its newest version), not the object itself."""

    id: str
    modified: datetime
    revoked: bool
    valid_from: datetime
    valid_until: datetime | None
    confidence: int | None
    verdict: str
    tags: tuple[str, ...]
    keys: frozenset[Key]
    networks: tuple[Network, ...]

    def live(self, now: datetime) -> bool:
        return not self.revoked and self.valid_from <= now and (self.valid_until is None or now < self.valid_until)


def answer(kind: str, value: str, found: list[Known], source: str) -> dict:
    """The Indicator shape for a lookup, from the live indicators that match it."""
    if not found:
        return {
            "kind": kind,
            "value": value,
            "verdict": "unknown",
            "confidence": 0,
            "tags": [],
            "first_seen": None,
            "source": source,
        }
    found = sorted(found, key=lambda known: (-(known.confidence or 0), known.id))
    stated = [known.confidence for known in found if known.confidence is not None]
    tags: list[str] = []
    for tag in [tag for known in found for tag in known.tags] + ([] if stated else ["confidence not stated"]):
        tag = tag[:MAX_TAG_LENGTH]
        if tag not in tags and len(tags) < MAX_TAGS:
            tags.append(tag)
    return {
        "kind": kind,
        "value": value,
        "verdict": max((known.verdict for known in found), key=_GRAVITY.__getitem__),
        "confidence": max(stated, default=0),
        "tags": tags,
        "first_seen": min(known.valid_from for known in found).isoformat().replace("+00:00", "Z"),
        "source": source,
    }
