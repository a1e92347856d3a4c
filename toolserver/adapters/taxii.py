"""Threat intel over TAXII 2.1 / STIX 2.1: `lookup_indicator` answered from one collection of a feed.

Why not taxii2-client: it talks through `requests`, whose connections cannot pass the egress guard
(toolserver.egress checks every resolved address inside our httpx client's network layer;
`requests` would need a second guard, and one place per idea), and it would block the server's
event loop. The part of TAXII 2.1 a lookup needs is one paged GET, so the adapter speaks it itself
over HttpBackend (the guard, no redirects, the failure mapping, Retry-After) and uses `stix2` only
to validate each indicator (stix2 checks a STIX pattern with stix2-patterns' parser) and
stix2-patterns' parse tree to read what a pattern compares. Nothing from the feed is evaluated.

The index (IndicatorIndex): one per adapter, so per server process and collection; never shared
between credentials. Before each lookup it is refreshed with

    GET {url}/{api_root}/collections/{collection_id}/objects/
        ?match[type]=indicator&limit=1000&added_after=<the last X-TAXII-Date-Added-Last seen>
    Accept: application/taxii+json;version=2.1

following `next` (or, with `more` and no `next`, added_after again) until `more` is false. So the
first lookup pages the whole collection, and each later one fetches only what was added since (a
new version of an indicator, a revocation say, is added too and replaces the older one). A refresh
cut short keeps what it read: the pages come in date_added order and added_after moves per page.
A lookup whose refresh fails fails (a stale index could hide a revocation), and so does one whose
refresh stopped at MAX_PAGES_PER_REFRESH pages with more to read (UNAVAILABLE, retryable: the next
lookup goes on from there).

What a pattern contributes (strict, equality only): an indicator is indexed under the values its
pattern alone is enough to match, i.e. when the pattern has no AND, FOLLOWEDBY or qualifier
(WITHIN, REPEATS, START/STOP), each `=` comparison of a string to one of

    [domain-name:value = 'evil.example']          kind domain
    [ipv4-addr:value = '203.0.113.7'], ipv6-addr  kind ip (a CIDR value: every address in it)
    [file:hashes.'SHA-256' = '...'], MD5, SHA-1   kind hash (any algorithm; the hex value)

Any other pattern (other types, `pattern_type` other than stix, other operators) is read and not
indexed: a lookup of its values answers unknown, never a guess.

The verdict, over the indicators that match and are live (not revoked, valid_from passed,
valid_until not): none, unknown; otherwise the gravest of theirs by `indicator_types`: benign
alone, benign; only anomalous-activity, anonymization, unknown (or benign), suspicious; anything
else or none given, malicious. Confidence is the highest stated (0 and the tag
"confidence not stated" when none states one), tags are the indicators' names, types and labels,
first_seen the earliest valid_from.

Parameters: `collection_id`; `api_root`, the API root's path on the URL's server (blank: the URL is
the API root); `username`. The credential is the password of HTTP basic authentication with that
username, or, with no username, a bearer token. Failures are HttpBackend's (401/403 forbidden, 429
rate-limited with Retry-After, 5xx unavailable, 504 or no answer timeout, 404 not found), and an
answer that is not TAXII (not `application/taxii+json`, not an envelope) is MALFORMED. This module
runs in the server process without Django.
"""

import asyncio
import ipaddress
import re
from base64 import b64encode
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import stix2
import stix2.exceptions
from stix2patterns.exceptions import ParseException
from stix2patterns.v21.inspector import InspectionListener
from stix2patterns.v21.pattern import Pattern

from toolserver import schemas
from toolserver.adapters.base import BackendError, IntelBackend, Param, shaped
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.indicators import Key, Known, Network, answer, normalised
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import Indicator
from toolserver.envelope import BackendFailure

MEDIA_TYPE = "application/taxii+json;version=2.1"
PAGE_SIZE = 1000  # asked for; a server sends at most its own maximum
MAX_PAGES_PER_REFRESH = 1000  # a refresh stops there, its lookup fails; the next goes on from where it stopped

_SEGMENT = r"[A-Za-z0-9._~-]{1,100}"


def _check_api_root(value: str) -> None:
    parts = value.strip("/").split("/")
    if not all(re.fullmatch(_SEGMENT, part) and part not in (".", "..") for part in parts):
        raise ValueError("API root is a path on the server, e.g. api1 or taxii2/feeds (letters, digits, . _ ~ -).")


def _check_collection(value: str) -> None:
    if not re.fullmatch(_SEGMENT, value) or value in (".", ".."):
        raise ValueError("Collection ID is the collection's identifier, e.g. 91a7b528-80eb-42ed-a74d-c6fbd5a26116.")


def _check_username(value: str) -> None:
    if ":" in value or any(ord(char) < 32 for char in value):
        raise ValueError("Username takes no colon nor control characters (HTTP basic authentication).")


# -- reading indicators -----------------------------------------------------------------------------
class _PatternReader(InspectionListener):
    """stix2-patterns' inspection, plus whether comparisons are joined by AND anywhere."""

    def __init__(self):
        super().__init__()
        self.conjunction = False

    def exitComparisonExpressionAnd(self, ctx):  # the ANTLR listener's name
        if ctx.AND():
            self.conjunction = True


def pattern_keys(pattern: str) -> tuple[frozenset[Key], tuple[Network, ...]]:
    """The lookups a STIX 2.1 pattern alone is enough to match: keys, and networks of addresses.

    Only a disjunction (OR) of comparisons without qualifiers counts, and in it only `=` of a
    string literal on a path this adapter knows (module docstring); anything else adds nothing.
    """
    reader = _PatternReader()
    try:
        Pattern(pattern).walk(reader)
    except ParseException:
        return frozenset(), ()
    data = reader.pattern_data()
    if reader.conjunction or data.qualifiers or set(data.observation_ops) - {"OR"}:
        return frozenset(), ()
    keys: set[Key] = set()
    networks: list[Network] = []
    for object_type, comparisons in data.comparisons.items():
        for path, operator, literal in comparisons:
            if operator != "=" or len(literal) < 2 or not (literal[0] == literal[-1] == "'"):
                continue
            value = re.sub(r"\\(.)", r"\1", literal[1:-1])  # a STIX string literal escapes ' and \ only
            kind = _kind_of(object_type, path)
            if kind == "ip" and "/" in value:
                try:
                    network = ipaddress.ip_network(value, strict=False)
                except ValueError:
                    continue
                if network.num_addresses > 1:
                    networks.append(network)
                    continue
                value = str(network.network_address)
            normal = normalised(kind, value) if kind else None
            if kind and normal:
                keys.add((kind, normal))
    return frozenset(keys), tuple(networks)


def _kind_of(object_type: str, path: list) -> str | None:
    if object_type == "domain-name" and path == ["value"]:
        return "domain"
    if object_type in ("ipv4-addr", "ipv6-addr") and path == ["value"]:
        return "ip"
    if object_type in ("file", "artifact") and len(path) == 2 and path[0] == "hashes":
        return "hash"
    return None


_BENIGN = frozenset({"benign"})
_SUSPICIOUS = frozenset({"anomalous-activity", "anonymization", "unknown", "benign"})


def read_indicator(obj) -> Known | None:
    """A STIX 2.1 indicator as the index keeps it; None for anything that is not a valid one."""
    if not isinstance(obj, dict) or obj.get("type") != "indicator":
        return None
    try:
        indicator = stix2.parse(obj, allow_custom=True, version="2.1")
    except (stix2.exceptions.STIXError, ValueError, TypeError, KeyError):
        return None
    keys: frozenset[Key] = frozenset()
    networks: tuple[Network, ...] = ()
    if indicator.get("pattern_type") == "stix":
        keys, networks = pattern_keys(indicator.pattern)
    types = [str(kind) for kind in indicator.get("indicator_types", [])]
    labels = [str(label) for label in indicator.get("labels", [])]
    tags = [str(indicator["name"])] if indicator.get("name") else []
    return Known(
        id=indicator.id,
        modified=indicator.modified,
        revoked=bool(indicator.get("revoked", False)),
        valid_from=indicator.valid_from,
        valid_until=indicator.get("valid_until"),
        confidence=indicator.get("confidence"),
        verdict=_verdict_of(frozenset(types)),
        tags=tuple(tags + types + labels),
        keys=keys,
        networks=networks,
    )


def _verdict_of(types: frozenset[str]) -> str:
    if types and types <= _BENIGN:
        return "benign"
    if types and types <= _SUSPICIOUS:
        return "suspicious"
    return "malicious"


@dataclass
class Refresh:
    """What one refresh cost: requests sent and objects received."""

    requests: int = 0
    objects: int = 0


@dataclass
class IndicatorIndex:
    """The indicators of one collection, by what they match. Pure: the adapter feeds it pages."""

    added_after: str | None = None  # the newest date_added read so far (X-TAXII-Date-Added-Last)
    last_refresh: Refresh = field(default_factory=Refresh)
    skipped: int = 0  # objects received that are not valid STIX 2.1 indicators
    _known: dict[str, Known] = field(default_factory=dict)
    _by_key: dict[Key, set[str]] = field(default_factory=dict)
    _networks: dict[str, tuple[Network, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._known)

    def add(self, objects: Iterable) -> None:
        """Read a page's objects: a newer version of a known indicator replaces it, an older one is ignored."""
        for obj in objects:
            known = read_indicator(obj)
            if known is None:
                self.skipped += 1
                continue
            before = self._known.get(known.id)
            if before is not None:
                if known.modified <= before.modified:
                    continue
                self._forget(before)
            self._known[known.id] = known
            for key in known.keys:
                self._by_key.setdefault(key, set()).add(known.id)
            if known.networks:
                self._networks[known.id] = known.networks

    def _forget(self, known: Known) -> None:
        for key in known.keys:
            ids = self._by_key.get(key, set())
            ids.discard(known.id)
            if not ids:
                self._by_key.pop(key, None)
        self._networks.pop(known.id, None)

    def matches(self, kind: str, value: str, now: datetime) -> list[Known]:
        """The live indicators that match the lookup (value already normalised)."""
        ids = set(self._by_key.get((kind, value), ()))
        if kind == "ip":
            address = ipaddress.ip_address(value)
            ids |= {id_ for id_, networks in self._networks.items() if any(address in network for network in networks)}
        return [known for id_ in sorted(ids) if (known := self._known[id_]).live(now)]


# -- the adapter ------------------------------------------------------------------------------------
@register("intel", "taxii")
class TaxiiIntel(HttpBackend, IntelBackend):
    source = "taxii:intel"
    vendor = "taxii"
    params = (
        Param(
            "collection_id",
            "Collection ID",
            required=True,
            validator=_check_collection,
            max_length=100,
            help="The collection's identifier, as the feed's discovery lists it.",
        ),
        Param(
            "api_root",
            "API root",
            validator=_check_api_root,
            max_length=300,
            help="The API root's path on the URL's server, e.g. api1; blank when the URL is the API root.",
        ),
        Param(
            "username",
            "Username",
            validator=_check_username,
            max_length=200,
            help="The feed account (HTTP basic, the credential its password); blank: the credential is a bearer token.",
        ),
    )

    def __init__(self, *, url: str, credential: str, timeout_s: float, params=None):
        super().__init__(url=url, credential=credential, timeout_s=timeout_s, params=params)
        root = self.param("api_root").strip("/")
        self._root = f"/{root}" if root else ""
        self._collection = f"{self._root}/collections/{self.param('collection_id')}"
        self.index = IndicatorIndex()
        self._refreshing = asyncio.Lock()

    def auth_headers(self) -> dict[str, str]:
        username = self.param("username")
        if not username:
            return super().auth_headers()
        return {"Authorization": "Basic " + b64encode(f"{username}:{self._credential}".encode()).decode("ascii")}

    async def health(self) -> str:
        """The API root's information and the collection's: the credential may read it."""
        root = await self._get(f"{self._root}/", target=f"TAXII API root {self.param('api_root') or self.url}")
        versions = root.get("versions")
        if not isinstance(root.get("title"), str) or not isinstance(versions, list):
            raise BackendError(BackendFailure.MALFORMED)
        if not any(str(version).replace(" ", "").startswith(MEDIA_TYPE) for version in versions):
            raise BackendError(BackendFailure.MALFORMED)  # not a TAXII 2.1 API root
        collection = await self._get(f"{self._collection}/", target=self._target)
        if collection.get("id") != self.param("collection_id") or not isinstance(collection.get("can_read"), bool):
            raise BackendError(BackendFailure.MALFORMED)
        if not collection["can_read"]:
            raise BackendError(BackendFailure.FORBIDDEN, status=403)  # as its objects would answer
        return f"TAXII 2.1 API root {root['title']!r}, collection {collection.get('title', '')!r} readable"

    async def lookup_indicator(self, args: schemas.LookupIndicator) -> dict:
        await self.refresh()
        value = normalised(args.kind, args.value) or args.value
        found = self.index.matches(args.kind, value, datetime.now(UTC))
        return shaped(Indicator, answer(args.kind, value, found, f"taxii:{self.param('collection_id')}"))

    async def refresh(self) -> Refresh:
        """Fetch what the collection gained since the last refresh (everything, the first time)."""
        async with self._refreshing:  # concurrent lookups wait for one refresh, not send their own
            spent = Refresh()
            try:
                query = {"match[type]": "indicator", "limit": str(PAGE_SIZE), "added_after": self.index.added_after}
                following: str | None = None
                for _ in range(MAX_PAGES_PER_REFRESH):
                    envelope, last = await self._page({**query, "next": following})
                    spent.requests += 1
                    spent.objects += len(envelope["objects"])
                    self.index.add(envelope["objects"])
                    if last is not None:
                        self.index.added_after = last
                    if not envelope["more"]:
                        break
                    following = envelope["next"]
                    if following is None:  # paging by added_after alone: it must move on
                        if last is None or last == query["added_after"]:
                            raise BackendError(BackendFailure.MALFORMED)
                        query["added_after"] = last
                else:  # stopped with more to read: the index is not the collection yet
                    raise BackendError(BackendFailure.UNAVAILABLE)
            finally:
                self.index.last_refresh = spent
            return spent

    @property
    def _target(self) -> str:
        return f"TAXII collection {self.param('collection_id')}"

    async def _page(self, query: dict) -> tuple[dict, str | None]:
        """One page of the collection's objects: the envelope (objects, more, next) and its X-TAXII-Date-Added-Last."""
        response = await self._response(
            "GET", f"{self._collection}/objects/", target=self._target, params=query, headers={"Accept": MEDIA_TYPE}
        )
        body = self._taxii_json(response)
        objects, more, following = body.get("objects", []), body.get("more", False), body.get("next")
        if not isinstance(objects, list) or not isinstance(more, bool) or not isinstance(following, str | None):
            raise BackendError(BackendFailure.MALFORMED)
        last = response.headers.get("X-TAXII-Date-Added-Last")
        if last is not None and not _is_timestamp(last):
            raise BackendError(BackendFailure.MALFORMED)
        return {"objects": objects, "more": more, "next": following or None}, last

    async def _get(self, path: str, *, target: str) -> dict:
        response = await self._response("GET", path, target=target, headers={"Accept": MEDIA_TYPE})
        return self._taxii_json(response)

    def _taxii_json(self, response) -> dict:
        """The body of a TAXII answer; MALFORMED unless it is a JSON object sent as application/taxii+json."""
        media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/taxii+json":
            raise BackendError(BackendFailure.MALFORMED, status=response.status_code)
        return self._json_object(response)


def _is_timestamp(text: str) -> bool:
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return text.endswith("Z") and len(text) <= 40
