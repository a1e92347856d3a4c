"""Threat intel from a MISP instance: `lookup_indicator` answered by MISP's attribute search.

Why not PyMISP: it talks through `requests`, whose connections cannot pass the egress guard
(toolserver.egress checks every resolved address inside our httpx client's network layer), and it
would block the server's event loop. A lookup is one documented call, so the adapter speaks it
itself over HttpBackend (the guard, no redirects, the failure mapping, Retry-After), as taxii.py does.

    POST {url}/attributes/restSearch
    Authorization: <the API key>
    Accept: application/json
    {"value": "203.0.113.7", "type": ["ip-src", "ip-dst", ...], "returnFormat": "json",
     "limit": 50, "includeEventTags": true}

MISP answers `{"response": {"Attribute": [...]}}`, each attribute with its `to_ids`, `Tag`s (the
event's included) and its `Event` (`info`, and `threat_level_id` where the instance sends it). The
search's `value` matches either half of a composite attribute (`domain|ip`, `filename|sha256`);
an attribute counts only when one of its halves equals the lookup, so nothing is matched by
pattern (MISP's `%` wildcards never reach it: the tool's schema refuses them anyway).

The verdict, over the matching attributes that are not deleted: none, unknown; otherwise the
gravest of theirs: flagged for detection (`to_ids`) in an event whose threat level is not Low (3),
with no `false-positive:risk="high"` tag, malicious; anything else MISP knows of, suspicious. MISP
says nothing is benign, so this adapter never answers benign. Confidence comes from MISP's own
taxonomy tag `misp:confidence-level` (completely-confident 100 ... unconfident 0; 0 and the tag
"confidence not stated" without one); tags are the events' titles and the tags' names; first_seen
the earliest of the attributes' `first_seen` (or, without one, when the attribute was last
changed). The answer is built as taxii.py builds its (`indicators.answer`), so both feeds read alike.

The credential is a MISP API key of a user with the read-only role (an auth key may also be
limited to the addresses of the intel server). Health is `GET /servers/getVersion`, which needs the
key. Failures are HttpBackend's (403 forbidden, 429 rate-limited, 5xx unavailable, 504 or no
answer timeout, 404 not found, 400 refused); an answer that is not MISP's shape is MALFORMED. This
module runs in the server process without Django.
"""

from datetime import UTC, datetime

from toolserver import schemas
from toolserver.adapters.base import BackendError, IntelBackend, shaped
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.indicators import Known, answer, normalised
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import Indicator
from toolserver.envelope import BackendFailure

SEARCH_LIMIT = 50  # attributes read per lookup; the gravest verdict rarely needs more than a few
# The MISP attribute types a lookup of each kind searches (composites: either half may be the value).
TYPES = {
    "ip": ["ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain|ip"],
    "domain": ["domain", "hostname", "domain|ip"],
    "hash": ["md5", "sha1", "sha256", "filename|md5", "filename|sha1", "filename|sha256"],
}
LOW_THREAT = "3"  # MISP's threat levels: 1 high, 2 medium, 3 low, 4 undefined
FALSE_POSITIVE = 'false-positive:risk="high"'
CONFIDENCE = {  # MISP's taxonomy `misp`, predicate `confidence-level`, with its numerical values
    'misp:confidence-level="completely-confident"': 100,
    'misp:confidence-level="usually-confident"': 75,
    'misp:confidence-level="fairly-confident"': 50,
    'misp:confidence-level="rarely-confident"': 25,
    'misp:confidence-level="unconfident"': 0,
}


def read_attribute(attribute, kind: str, value: str) -> Known | None:
    """A MISP attribute that matches the lookup, as indicators.answer() reads one; None when it does not match.

    Raises BackendError(MALFORMED) for something that is not an attribute at all.
    """
    if not isinstance(attribute, dict) or not isinstance(attribute.get("value"), str):
        raise BackendError(BackendFailure.MALFORMED)
    if attribute.get("deleted") in (True, "1", 1):
        return None
    halves = attribute["value"].split("|") if "|" in str(attribute.get("type", "")) else [attribute["value"]]
    if value not in {normalised(kind, half) for half in halves}:
        return None
    names = [tag.get("name") for tag in attribute.get("Tag") or [] if isinstance(tag, dict)]
    tags: list[str] = [name for name in names if isinstance(name, str) and name]
    event: dict = attribute["Event"] if isinstance(attribute.get("Event"), dict) else {}
    title = event.get("info")
    to_ids = attribute.get("to_ids") in (True, "1", 1)
    grave = to_ids and str(event.get("threat_level_id", "")) != LOW_THREAT and FALSE_POSITIVE not in tags
    stated = [CONFIDENCE[tag] for tag in tags if tag in CONFIDENCE]
    changed = _epoch(attribute.get("timestamp"))
    return Known(
        id=f"misp:{attribute.get('uuid') or attribute.get('id')}",
        modified=changed,
        revoked=False,
        valid_from=_first_seen(attribute.get("first_seen")) or changed,
        valid_until=None,
        confidence=max(stated) if stated else None,
        verdict="malicious" if grave else "suspicious",
        tags=tuple(([title] if isinstance(title, str) and title else []) + tags),
        keys=frozenset(),
        networks=(),
    )


def _epoch(value) -> datetime:
    try:
        return datetime.fromtimestamp(int(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise BackendError(BackendFailure.MALFORMED) from None


def _first_seen(value) -> datetime | None:
    """first_seen: ISO 8601 as MISP sends it, or microseconds since the epoch as its API document gives it."""
    if not isinstance(value, str) or not value:
        return None
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value[:20]) / 1_000_000, UTC)
        seen = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return None
    return seen.astimezone(UTC) if seen.tzinfo else seen.replace(tzinfo=UTC)


@register("intel", "misp")
class MispIntel(HttpBackend, IntelBackend):
    source = "misp:intel"
    vendor = "misp"

    plain_headers = {"Accept": "application/json"}

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": self._credential}  # MISP's own scheme: the bare key

    async def health(self) -> str:
        """MISP's version, which only a valid API key may read."""
        body = await self._request("GET", "/servers/getVersion", target="MISP version")
        if not isinstance(body.get("version"), str):
            raise BackendError(BackendFailure.MALFORMED)
        return f"MISP {body['version'][:40]}, API key accepted"

    async def lookup_indicator(self, args: schemas.LookupIndicator) -> dict:
        value = normalised(args.kind, args.value) or args.value
        body = await self._request(
            "POST",
            "/attributes/restSearch",
            target="MISP attributes",
            json={
                "value": value,
                "type": TYPES[args.kind],
                "returnFormat": "json",
                "limit": SEARCH_LIMIT,
                "includeEventTags": True,
            },
        )
        response = body.get("response")
        attributes = response.get("Attribute") if isinstance(response, dict) else None
        if not isinstance(attributes, list):
            raise BackendError(BackendFailure.MALFORMED)
        found = [known for item in attributes if (known := read_attribute(item, args.kind, value)) is not None]
        return shaped(Indicator, answer(args.kind, value, found, "misp"))
