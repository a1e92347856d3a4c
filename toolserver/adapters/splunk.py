"""The SIEM over Splunk's REST API: `search_logins` and `search_events` as one oneshot search job each.

Why not splunk-sdk: it opens its own connections (urllib/http.client), which the egress guard
(toolserver.egress checks every resolved address inside our httpx client's network layer) never
sees, and it would block the server's event loop. A search needs one POST, so the adapter speaks
Splunk's REST API itself over HttpBackend (the guard, no redirects, the failure mapping,
Retry-After):

    POST {url}/services/search/jobs   (form)  search=<SPL> exec_mode=oneshot output_mode=json
                                              earliest_time=-<lookback_hours>h latest_time=now count=<limit+1>
    GET  {url}/services/server/info?output_mode=json       Check connection

The SPL is built here, only from the tool's validated arguments (toolserver.schemas: a user name,
a host, a bounded kind, two integers) and the admin's `index` parameter (a strict pattern); every
value is an SPL quoted string (spl_string: `"` and `\\` escaped, so a pipe or a bracket inside is
text, never a command), and one that holds a wildcard or a control character is refused, as the
schemas already refuse it. No text of the model's reaches the search otherwise.

What the searches read (Splunk's Common Information Model):

  logins   tag=authentication, action success / failure / blocked (blocked is a failure; of a
           multivalue action, the first of these);
           user, dest (else host), src, app as the method; `iplocation src` gives the country
  events   the event's eventtype as its kind (name your eventtypes after Gatehouse's kinds:
           email_click, av_alert, dns_query, ...; else the sourcetype), user, dest (else host),
           _raw (its first 500 characters) as the summary

At most `limit` results, newest first (`head limit+1`: one more says the answer is truncated); a
result that does not fit its shape is left out, and the page said to be truncated.

The credential is a Splunk authentication token (`Authorization: Bearer`), of a user whose role
has the `search` capability and reads only the index. Failures are HttpBackend's (401/403
forbidden, 429 rate-limited with Retry-After, 5xx unavailable, 504 or no answer timeout), named
after Splunk (`splunk_forbidden`); a 400 carries Splunk's own message. This module runs in the
server process without Django.
"""

import re

from toolserver import schemas
from toolserver.adapters.base import BackendError, BackendRefused, Page, Param, SiemBackend, page_of
from toolserver.adapters.http import HttpBackend
from toolserver.adapters.registry import register
from toolserver.adapters.shapes import Login, SiemEvent
from toolserver.envelope import BackendFailure

SEARCH_PATH = "/services/search/jobs"
INFO_PATH = "/services/server/info"
MAX_SUMMARY = 500
# A Splunk index name: lower-case letters, digits, _ and -, not beginning with _ or - (internal indexes do).
INDEX_PATTERN = r"[a-z0-9][a-z0-9_-]{0,79}"
_UNSAFE = re.compile(r"[*\x00-\x1f\x7f]")  # a wildcard would widen a search; control characters end it


def _check_index(value: str) -> None:
    if not re.fullmatch(INDEX_PATTERN, value):
        raise ValueError(
            "Index is one Splunk index name: lower-case letters, digits, _ and -, not beginning with _ or - "
            "(e.g. main or security)."
        )


def spl_string(value: str) -> str:
    """`value` as an SPL quoted string; BackendRefused for a wildcard or a control character."""
    if _UNSAFE.search(value):
        raise BackendRefused("a search value may not hold a wildcard or a control character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def subject_terms(args: schemas.SiemQuery) -> list[str]:
    """The search terms for the query's user and host (a host is the event's dest, else its host)."""
    terms = []
    if args.user is not None:
        terms.append(f"user={spl_string(args.user)}")
    if args.host is not None:
        host = spl_string(args.host)
        terms.append(f"(dest={host} OR host={host})")
    return terms


def logins_spl(index: str, args: schemas.SearchLogins) -> str:
    terms = [
        f"index={spl_string(index)}",
        "tag=authentication",
        '(action="success" OR action="failure" OR action="blocked")',
        *subject_terms(args),
    ]
    return f"search {' '.join(terms)} | head {args.limit + 1} | iplocation src | fields _time user dest host src Country action app"


def events_spl(index: str, args: schemas.SearchEvents) -> str:
    terms = [f"index={spl_string(index)}", *subject_terms(args)]
    if args.kind is not None:
        terms.append(f"eventtype={spl_string(args.kind)}")
    return f"search {' '.join(terms)} | head {args.limit + 1} | fields _time eventtype sourcetype user dest host _raw"


def _first(value) -> str | None:
    """A result field's value: Splunk sends a multivalue field as a list; absent or empty is None."""
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value in (None, "") else str(value)


def _matched(value, allowed: tuple[str, ...]) -> str | None:
    """A field the search matched on: of a multivalue one, its first value among `allowed` (else its first)."""
    if isinstance(value, list):
        value = next((item for item in value if item in allowed), value[0] if value else None)
    return _first(value)


def login_of(result: dict) -> dict:
    action = _matched(result.get("action"), ("success", "failure", "blocked"))
    return {
        "at": _first(result.get("_time")),
        "user": _first(result.get("user")) or "",
        "host": _first(result.get("dest")) or _first(result.get("host")) or "",
        "source_ip": _first(result.get("src")) or "",
        "source_country": _first(result.get("Country")) or "",
        "result": "success" if action == "success" else "failure" if action in ("failure", "blocked") else action,
        "method": _first(result.get("app")) or "",
    }


def event_of(result: dict) -> dict:
    return {
        "at": _first(result.get("_time")),
        "kind": _first(result.get("eventtype")) or _first(result.get("sourcetype")),
        "host": _first(result.get("dest")) or _first(result.get("host")),
        "user": _first(result.get("user")),
        "summary": (_first(result.get("_raw")) or "")[:MAX_SUMMARY],
    }


@register("siem", "splunk")
class SplunkSiem(HttpBackend, SiemBackend):
    source = "splunk:siem"
    vendor = "splunk"
    params = (
        Param(
            "index",
            "Index",
            required=True,
            validator=_check_index,
            max_length=80,
            help="The one Splunk index searched, e.g. main; the token's role should read only it.",
        ),
    )

    async def health(self) -> str:
        """server/info with the token: Splunk's version and the server's name."""
        body = await self._request("GET", INFO_PATH, target="Splunk server info", params={"output_mode": "json"})
        entries = body.get("entry")
        content = (
            entries[0].get("content")
            if isinstance(entries, list) and entries and isinstance(entries[0], dict)
            else None
        )
        if not isinstance(content, dict) or not isinstance(content.get("version"), str):
            raise BackendError(BackendFailure.MALFORMED)
        return f"Splunk {content['version']} ({content.get('serverName', 'unnamed')}), the token is valid"

    async def search_logins(self, args: schemas.SearchLogins) -> Page:
        results = await self._search(logins_spl(self.param("index"), args), args)
        return self._page(Login, [login_of(result) for result in results], args.limit)

    async def search_events(self, args: schemas.SearchEvents) -> Page:
        results = await self._search(events_spl(self.param("index"), args), args)
        return self._page(SiemEvent, [event_of(result) for result in results], args.limit)

    async def _search(self, spl: str, args: schemas.SiemQuery) -> list[dict]:
        """One oneshot search job over the window; its results (each a JSON object)."""
        form = {
            "search": spl,
            "exec_mode": "oneshot",
            "output_mode": "json",
            "earliest_time": f"-{args.lookback_hours}h",
            "latest_time": "now",
            "count": str(args.limit + 1),
        }
        body = await self._request("POST", SEARCH_PATH, target=f"Splunk index {self.param('index')}", data=form)
        messages = body.get("messages", [])
        if isinstance(messages, list) and any(
            isinstance(message, dict) and message.get("type") in ("FATAL", "ERROR") for message in messages
        ):
            raise BackendError(BackendFailure.UNAVAILABLE)  # the search did not run: no results is not "none found"
        results = body.get("results")
        if not isinstance(results, list) or not all(isinstance(result, dict) for result in results):
            raise BackendError(BackendFailure.MALFORMED)
        return results

    @staticmethod
    def _page(shape, items: list[dict], limit: int) -> Page:
        return page_of(shape, items[:limit], truncated=len(items) > limit)

    @staticmethod
    def _detail(response) -> str:
        """Splunk's own message for a 400 ({"messages": [{"type": "FATAL", "text": ...}]})."""
        try:
            body = response.json()
            text = body["messages"][0]["text"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return HttpBackend._detail(response)
        return str(text)[:300]
