"""The lab's HTTP API at /lab/api/: JSON in and out, a scoped bearer key on every request.

Each endpoint is a small sync handler (parse, call a selector or service) wrapped by
endpoint(), which does what every request shares, in this order: method, key (401), scope
(403), the backend's injected fault, then the handler: one hop to a thread (a fault's delay,
awaited on the loop, adds a second). The views are async so that a "timeout" fault can hang one
request for 30 seconds without holding up any other.
"""

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import wraps

from asgiref.sync import sync_to_async
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from toolserver.lab import faults, keys, params, selectors, services
from toolserver.lab.errors import LabError
from toolserver.lab.models import LabWrite, Ticket
from toolserver.lab.services import Answer, WriteRequest

log = logging.getLogger(__name__)

UNAUTHORIZED = {"error": "unauthorized"}
MAX_IDEMPOTENCY_KEY = 200
REASON_MAX = 1000
TEXT_MAX = 20_000


def _json(status: int, body, headers: dict | None = None) -> JsonResponse:
    return JsonResponse(body, status=status, headers=headers or {})


def _fault_answer(fault: faults.Fault) -> HttpResponse:
    if fault.mode == "timeout":
        return _json(504, {"error": "timeout"})
    if fault.mode == "error_5xx":
        return _json(503, {"error": "unavailable"})
    if fault.mode == "rate_limit":
        return _json(
            429,
            {"error": "rate_limited", "retry_after_s": fault.retry_after_s},
            {"Retry-After": str(fault.retry_after_s)},
        )
    return HttpResponse(faults.malformed_body(fault), status=200, content_type="application/json")


def _logged_body(response: HttpResponse):
    try:
        return json.loads(response.content)
    except ValueError:
        return {"malformed_body": response.content.decode("utf-8", "replace")}


@dataclass(frozen=True)
class _Wait:
    """A fault's delay, awaited on the event loop (no thread held), then the answer: the handler's (slow)
    or the one already logged (timeout)."""

    seconds: float
    then: Callable[[], HttpResponse]


def endpoint(
    method: str,
    *,
    backend: str | None = None,
    scope: str | None = None,
    action: str | None = None,
    target: str | None = None,
):
    """Make an API view of a sync handler(request, key, **url_kwargs) returning a dict or an Answer.

    For a write (`action` given) the handler also gets `write`, the WriteRequest to pass to
    its service, and every refusal on the way (401, 403, fault, 400, 404) is logged as a LabWrite.
    """

    if action and not backend:
        raise ValueError(f"{action}: a write names its backend")
    written_to = backend or ""  # a write's backend, named whenever `action` is (just checked)

    def decorate(handler):
        @csrf_exempt
        @wraps(handler)
        async def view(request, **kwargs):
            if request.method != method:
                return _json(405, {"error": "method_not_allowed", "detail": f"use {method}"}, {"Allow": method})
            # One hop to a thread for all the database work, the common case's cost; a fault's wait is
            # awaited here, holding no thread.
            answer = await sync_to_async(serve)(request, kwargs)
            if isinstance(answer, _Wait):
                await asyncio.sleep(answer.seconds)
                answer = await sync_to_async(answer.then)()
            return answer

        def serve(request, kwargs) -> HttpResponse | _Wait:
            write = None
            if action:
                sent_key = request.headers.get("Idempotency-Key", "").strip()[:MAX_IDEMPOTENCY_KEY]
                write = WriteRequest(
                    backend=written_to,
                    action=action,
                    target=kwargs.get(target, "") if target else "",
                    key_name="",
                    idempotency_key=sent_key,
                    payload=params.recorded_payload(request),
                    received_at=timezone.now(),
                    sent_key=sent_key,
                )

            def refuse(response: HttpResponse, outcome: str = LabWrite.Outcome.REJECTED) -> HttpResponse:
                if write is not None:
                    services.record(write, response.status_code, _logged_body(response), outcome)
                return response

            key = keys.key_for_header(request.headers.get("Authorization", ""))
            if key is None:
                return refuse(_json(401, UNAUTHORIZED, {"WWW-Authenticate": 'Bearer realm="lab"'}))
            if write is not None:
                write = replace(write, key_name=key.name)
            if scope and scope not in key.scopes:
                return refuse(_json(403, {"error": "forbidden", "needed_scope": scope}))
            if len(request.headers.get("Idempotency-Key", "").strip()) > MAX_IDEMPOTENCY_KEY:
                return refuse(
                    _json(
                        400,
                        {
                            "error": "bad_request",
                            "detail": f"Idempotency-Key: at most {MAX_IDEMPOTENCY_KEY} characters",
                        },
                    )
                )

            def handle() -> HttpResponse:
                try:
                    extra = {"write": write} if write is not None else {}
                    result = handler(request, key, **extra, **kwargs)
                except LabError as error:
                    return refuse(_json(error.status, error.body))
                except Exception:
                    log.exception("lab api: %s %s failed", request.method, request.path)
                    return refuse(_json(500, {"error": "internal_error"}))
                if isinstance(result, Answer):
                    return _json(result.status, result.body, result.headers)
                return _json(200, result)

            fault = faults.take(backend) if backend else None
            if fault is not None and fault.mode == "slow":
                return _Wait((fault.delay_ms or 0) / 1000, handle)  # then answer as usual
            if fault is not None and fault.mode == "no_dedupe":
                write = write and replace(write, idempotency_key="")  # then act as a backend without the header
            elif fault is not None:
                # Logged on arrival, before a timeout's wait: the caller may give up first.
                answer = refuse(_fault_answer(fault), LabWrite.Outcome.FAULT)
                if fault.mode == "timeout":
                    return _Wait((fault.delay_ms or 0) / 1000, lambda: answer)
                return answer
            return handle()

        return view

    return decorate


# Every endpoint ------------------------------------------------------------------------
@endpoint("GET")
def health(request, key):
    params.query(request, set())
    return {"status": "ok", "key": key.name, "scopes": list(key.scopes)}


@endpoint("GET", backend="siem", scope="siem:read")
def siem_logins(request, key):
    query = params.query(request, {"user", "host", "since", "until", "limit"})
    since, until = params.window(query)
    return selectors.logins(
        user=query.get("user", ""), host=query.get("host", ""), since=since, until=until, limit=params.limit(query)
    )


@endpoint("GET", backend="siem", scope="siem:read")
def siem_events(request, key):
    query = params.query(request, {"host", "user", "kind", "since", "until", "limit"})
    since, until = params.window(query)
    return selectors.events(
        host=query.get("host", ""),
        user=query.get("user", ""),
        kind=query.get("kind", ""),
        since=since,
        until=until,
        limit=params.limit(query),
    )


@endpoint("GET", backend="edr", scope="edr:read")
def edr_host(request, key, host_ref):
    params.query(request, set())
    return selectors.host(host_ref)


@endpoint("GET", backend="edr", scope="edr:read")
def edr_processes(request, key, host_ref):
    query = params.query(request, {"since", "limit"})
    return selectors.processes(host_ref, since=params.timestamp(query, "since"), limit=params.limit(query))


@endpoint("GET", backend="edr", scope="edr:read")
def edr_connections(request, key, host_ref):
    query = params.query(request, {"since", "limit"})
    return selectors.connections(host_ref, since=params.timestamp(query, "since"), limit=params.limit(query))


def _reason(request) -> None:
    params.text(params.body(request, {"reason"}), "reason", max_length=REASON_MAX)


@endpoint("GET", backend="edr", scope="edr:isolate")
def edr_isolation(request, key, host_ref):
    """Whether a host is isolated now: what the response key may read (to tell whether a write happened)."""
    params.query(request, set())
    host = selectors.host(host_ref)
    return {"host_id": host["host_id"], "hostname": host["hostname"], "isolated": host["isolated"]}


@endpoint("POST", backend="edr", scope="edr:isolate", action="isolate_host", target="host_ref")
def edr_isolate(request, key, write, host_ref):
    _reason(request)
    return services.isolate_host(write)


@endpoint("POST", backend="edr", scope="edr:isolate", action="release_host", target="host_ref")
def edr_release(request, key, write, host_ref):
    _reason(request)
    return services.release_host(write)


@endpoint("GET", backend="identity", scope="identity:read")
def identity_user(request, key, username):
    params.query(request, set())
    return selectors.account(username)


@endpoint("POST", backend="identity", scope="identity:write", action="disable_account", target="username")
def identity_disable(request, key, write, username):
    _reason(request)
    return services.disable_account(write)


@endpoint("POST", backend="identity", scope="identity:write", action="enable_account", target="username")
def identity_enable(request, key, write, username):
    _reason(request)
    return services.enable_account(write)


@endpoint("POST", backend="ticketing", scope="tickets:write", action="open_ticket")
def tickets_open(request, key, write):
    data = params.body(request, {"title", "body", "severity", "alert_ref"})
    title = params.text(data, "title", max_length=200)
    body = params.text(data, "body", max_length=TEXT_MAX)
    severity = params.choice(data, "severity", Ticket.SEVERITIES)
    alert_ref = params.text(data, "alert_ref", max_length=200, required=False)
    return services.open_ticket(replace(write, target=alert_ref), title=title, body=body, severity=severity)


@endpoint("GET", backend="ticketing", scope="tickets:write")
def tickets_search(request, key):
    """The tickets and comments a write under this Idempotency-Key created: what the ticketing key may read
    (to tell whether a write happened), whether or not the lab deduplicates on the key."""
    query = params.query(request, {"idempotency_key"})
    written = params.text(query, "idempotency_key", max_length=MAX_IDEMPOTENCY_KEY)
    return selectors.written_under(written)


@endpoint("POST", backend="ticketing", scope="tickets:write", action="add_comment", target="ticket_id")
def tickets_comment(request, key, write, ticket_id):
    body = params.text(params.body(request, {"body"}), "body", max_length=TEXT_MAX)
    return services.add_comment(write, body=body)


@endpoint("GET", backend="intel", scope="intel:read")
def intel_lookup(request, key):
    query = params.query(request, {"kind", "value"})
    return selectors.indicator(query.get("kind", ""), query.get("value", ""))


@csrf_exempt
def not_found(request, rest=""):
    return _json(404, {"error": "not_found", "detail": "no such endpoint under /lab/api/"})
