"""The SIEM over Elasticsearch: ECS documents found with `_search` on one index pattern.

Why not elasticsearch-py: its transport (elastic-transport, over urllib3 or aiohttp) opens its own
connections, which the egress guard (toolserver.egress checks every resolved address inside our
httpx client's network layer) never sees. A search is one POST, so the adapter speaks
Elasticsearch's REST API itself over HttpBackend (the guard, no redirects, the failure mapping,
Retry-After):

    POST {url}/{index}/_search   {"size": limit, "track_total_hits": limit + 1,
                                  "sort": [{"@timestamp": "desc"}], "_source": [...],
                                  "query": {"bool": {"filter": [the window, the subject, ...]}}}

The query is Query DSL built here as JSON (term filters on the validated arguments, a range
`now-<lookback_hours>h` to `now`), never query-string syntax, so no argument is parsed as a query.
`track_total_hits` counts one past `limit`: a total above the hits returned means truncated, as
does a document left out because it does not fit its shape (an event with no event.action,
event.category or event.kind).

What the searches read (Elastic Common Schema):

  logins   event.category authentication, event.outcome success / failure; user.name,
           host.name (else host.hostname, host.id), source.ip, source.geo.country_iso_code,
           event.action as the method
  events   event.action as the kind (else event.category, event.kind), user.name, host.name, message
           (its first 500 characters) as the summary; `kind` filters on event.action

Check connection searches the index pattern for nothing (`size` 0): it proves the key reads
it. (`GET /` would need the `monitor` cluster privilege, which a read-only key should not have.)

The credential is an API key, sent as `Authorization: ApiKey <encoded>` (the `encoded` value
Elasticsearch returns when the key is created), with `read` on the index pattern only. Failures
are HttpBackend's, named after Elastic (`elastic_forbidden`); a 400 carries Elasticsearch's
own reason. This module runs in the server process without Django.
"""

import re

from toolserver import schemas
from toolserver.adapters.base import BackendError, Page, Param, SiemBackend, page_of
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import Login, SiemEvent
from toolserver.envelope import BackendFailure

MAX_SUMMARY = 500
# One or more index names or patterns, comma-separated: lower case, digits, * . _ -; none begins with
# . _ or - (system indices, exclusions).
_INDEX_PART = r"[a-z0-9*][a-z0-9*._-]{0,99}"
LOGIN_FIELDS = [
    "@timestamp",
    "user.name",
    "host.name",
    "host.hostname",
    "host.id",
    "source.ip",
    "source.geo.country_iso_code",
    "event.outcome",
    "event.action",
]
EVENT_FIELDS = [
    "@timestamp",
    "event.action",
    "event.category",
    "user.name",
    "host.name",
    "host.hostname",
    "host.id",
    "message",
]


def _check_index(value: str) -> None:
    if not all(re.fullmatch(_INDEX_PART, part) for part in value.split(",")):
        raise ValueError(
            "Index pattern is index names or patterns, comma-separated: lower-case letters, digits, * . _ -, "
            "none beginning with . _ or - (e.g. logs-* or logs-auth-*,logs-endpoint-*)."
        )


def filters(args: schemas.SiemQuery) -> list[dict]:
    """The window and the subject as Query DSL filters (exact terms, nothing parsed)."""
    found: list[dict] = [{"range": {"@timestamp": {"gte": f"now-{args.lookback_hours}h", "lte": "now"}}}]
    if args.user is not None:
        found.append({"term": {"user.name": args.user}})
    if args.host is not None:
        hosts = [{"term": {field: args.host}} for field in ("host.name", "host.hostname", "host.id")]
        found.append({"bool": {"should": hosts, "minimum_should_match": 1}})
    return found


def search_body(query_filters: list[dict], fields: list[str], limit: int) -> dict:
    return {
        "size": limit,
        "track_total_hits": limit + 1,
        # unmapped_type: an index of the pattern without @timestamp sorts as empty instead of failing the search
        "sort": [{"@timestamp": {"order": "desc", "unmapped_type": "date"}}],
        "_source": fields,
        "query": {"bool": {"filter": query_filters}},
    }


def logins_body(args: schemas.SearchLogins) -> dict:
    authentication: list[dict] = [
        {"term": {"event.category": "authentication"}},
        {"terms": {"event.outcome": ["success", "failure"]}},
    ]
    return search_body(filters(args) + authentication, LOGIN_FIELDS, args.limit)


def events_body(args: schemas.SearchEvents) -> dict:
    kind = [{"term": {"event.action": args.kind}}] if args.kind is not None else []
    return search_body(filters(args) + kind, EVENT_FIELDS, args.limit)


def field(document: dict, path: str) -> str | None:
    """A field of an ECS document, nested ({"user": {"name": ...}}) or dotted ({"user.name": ...});
    a list's first value; absent or empty is None."""
    value = document.get(path)
    if value is None:
        value = document
        for part in path.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value in (None, "") or isinstance(value, dict) else str(value)


def _host(document: dict) -> str | None:
    return field(document, "host.name") or field(document, "host.hostname") or field(document, "host.id")


def login_of(document: dict) -> dict:
    return {
        "at": field(document, "@timestamp"),
        "user": field(document, "user.name") or "",
        "host": _host(document) or "",
        "source_ip": field(document, "source.ip") or "",
        "source_country": field(document, "source.geo.country_iso_code") or "",
        "result": field(document, "event.outcome"),
        "method": field(document, "event.action") or "",
    }


def event_of(document: dict) -> dict:
    return {
        "at": field(document, "@timestamp"),
        "kind": field(document, "event.action") or field(document, "event.category") or field(document, "event.kind"),
        "host": _host(document),
        "user": field(document, "user.name"),
        "summary": (field(document, "message") or "")[:MAX_SUMMARY],
    }


@register("siem", "elastic")
class ElasticSiem(HttpBackend, SiemBackend):
    source = "elastic:siem"
    vendor = "elastic"
    params = (
        Param(
            "index",
            "Index pattern",
            required=True,
            validator=_check_index,
            max_length=300,
            help="The indices searched, e.g. logs-*; the API key should read only these.",
        ),
    )

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"ApiKey {self._credential}"}

    async def health(self) -> str:
        body = await self._post({"size": 0, "track_total_hits": False, "query": {"match_all": {}}})
        shards = body.get("_shards")
        if not isinstance(shards, dict) or not isinstance(shards.get("total"), int):
            raise BackendError(BackendFailure.MALFORMED)
        return f"index pattern {self.param('index')} readable ({shards['total']} shards), the API key is valid"

    async def search_logins(self, args: schemas.SearchLogins) -> Page:
        documents, total = self._hits(await self._post(logins_body(args)))
        return self._page(Login, [login_of(document) for document in documents], total, args.limit)

    async def search_events(self, args: schemas.SearchEvents) -> Page:
        documents, total = self._hits(await self._post(events_body(args)))
        return self._page(SiemEvent, [event_of(document) for document in documents], total, args.limit)

    @staticmethod
    def _page(shape, items: list[dict], total: int, limit: int) -> Page:
        """At most `limit` items, whatever `size` the backend heeded; truncated when it had more."""
        return page_of(shape, items[:limit], truncated=max(total, len(items)) > limit)

    async def _post(self, body: dict) -> dict:
        index = self.param("index")
        return await self._request("POST", f"/{index}/_search", target=f"Elasticsearch index {index}", json=body)

    @staticmethod
    def _hits(body: dict) -> tuple[list[dict], int]:
        """The documents (each hit's _source) and the total counted; MALFORMED when not a search response."""
        hits = body.get("hits")
        if not isinstance(hits, dict):
            raise BackendError(BackendFailure.MALFORMED)
        found, total = hits.get("hits"), hits.get("total")
        if isinstance(total, dict):
            total = total.get("value")
        if not isinstance(found, list) or not isinstance(total, int):
            raise BackendError(BackendFailure.MALFORMED)
        if not all(isinstance(hit, dict) and isinstance(hit.get("_source"), dict) for hit in found):
            raise BackendError(BackendFailure.MALFORMED)
        return [hit["_source"] for hit in found], total

    @staticmethod
    def _detail(response) -> str:
        """Elasticsearch's reason for a 400 ({"error": {"type": ..., "reason": ...}, "status": 400})."""
        try:
            reason = response.json()["error"]["reason"]
        except (ValueError, KeyError, TypeError, AttributeError):
            return HttpBackend._detail(response)
        return str(reason)[:300]
