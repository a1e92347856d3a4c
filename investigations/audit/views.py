"""The audit trail pages: the filtered list, one record, an investigation's timeline, exports, the digest.

Managers and admins read everything; analysts their own investigations' trails
(`AuditRecord.objects.visible_to`); anyone else gets 403. Every read is recorded before it is answered.
"""

import json

import pydantic
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.http import urlencode

from investigations.audit import chain as audit
from investigations.audit import trail as audit_trail
from investigations.models import (
    ActionRequest,
    AuditRecord,
    Event,
    Investigation,
    may_read_trail,
    reads_whole_trail,
    trails_visible_to,
)
from toolserver.audit import Outcome, result_digest
from toolserver.catalog import SERVERS

TIMELINE_WIDTH = 900  # the SVG's drawing width, in its own units


def _reader(view):
    """login_required, then 403 for anyone who may not read the trail at all."""

    @login_required
    def check(request, *args, **kwargs):
        if not may_read_trail(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    check.__name__ = view.__name__
    return check


def _filters_from(query) -> audit_trail.AuditFilter:
    names = audit_trail.AuditFilter.model_fields
    return audit_trail.AuditFilter(**{name: query.get(name) for name in names if query.get(name) not in (None, "")})


def _cursor(query, name: str) -> int | None:
    value = query.get(name, "")
    return int(value) if value.isdigit() else None


def _errors(exc: pydantic.ValidationError) -> list[str]:
    return [f"{'.'.join(str(part) for part in error['loc']) or 'filter'}: {error['msg']}" for error in exc.errors()]


@_reader
def audit_list(request):
    try:
        filters = _filters_from(request.GET)
    except pydantic.ValidationError as exc:
        return render(request, "audit/list.html", _list_context(request, None) | {"errors": _errors(exc)}, status=400)
    records = audit_trail.reading(request.user, "list", filters)
    rows, older, newer = audit_trail.page(
        records, before=_cursor(request.GET, "before"), after=_cursor(request.GET, "after")
    )
    return render(
        request,
        "audit/list.html",
        _list_context(request, filters)
        | {
            "rows": rows,
            "older": older,
            "newer": newer,
            "is_first_page": not (request.GET.get("before") or request.GET.get("after")),
        },
    )


def _list_context(request, filters) -> dict:
    query = urlencode(filters.active()) if filters else ""
    return {
        "filters": filters.active() if filters else request.GET.dict(),
        "query": query,
        "kinds": AuditRecord.Kind.choices,
        "outcomes": [outcome.value for outcome in Outcome],
        "servers": list(SERVERS),
        "tools": sorted(tool.name for server in SERVERS.values() for tool in server.tools),
        "reads_all": reads_whole_trail(request.user),
    }


@_reader
def audit_record(request, seq: int):
    visible = audit_trail.reading(request.user, "record", seq=seq)
    record = visible.filter(seq=seq).first()
    if record is None:
        raise Http404("No such audit record.")
    return render(
        request,
        "audit/record.html",
        {
            "record": record,
            "dispatch_outcome": audit_trail.outcome_of_dispatch(record, visible),
            "arguments_json": json.dumps(record.arguments, indent=2, ensure_ascii=False),
            "extra_json": json.dumps(record.extra, indent=2, ensure_ascii=False),
        },
    )


@_reader
def timeline(request, pk: int):
    investigation = get_object_or_404(Investigation.objects.select_related("alert"), pk=pk)
    if not trails_visible_to(request.user).contains(investigation):
        raise Http404("No such investigation trail.")
    records = list(
        audit_trail.reading(request.user, "timeline", investigation=pk)
        .filter(correlation_id=investigation.correlation_id)
        .order_by("seq")
    )
    return render(
        request,
        "audit/timeline.html",
        {
            "investigation": investigation,
            "alert": investigation.alert,
            "calls": _timeline_calls(investigation, records),
            "chart": _chart(records),
            "requests": ActionRequest.objects.filter(investigation=investigation).prefetch_related(
                "transitions", "approvals__user"
            ),
        },
    )


def _timeline_calls(investigation, records) -> list[dict]:
    """Each record with what the transcript holds of its call: the result the model was given."""
    results = {
        event.data.get("tool_use_id"): event.data.get("result")
        for event in Event.objects.filter(investigation=investigation, kind=Event.Kind.TOOL_RESULT)
    }
    calls = []
    for record in records:
        result = results.get(record.tool_use_id) if record.kind == AuditRecord.Kind.TOOL_CALL else None
        digest = record.extra.get("result_sha256")
        calls.append(
            {
                "record": record,
                "arguments_json": json.dumps(record.arguments, ensure_ascii=False, sort_keys=True),
                "result_json": json.dumps(result, indent=2, ensure_ascii=False) if result is not None else "",
                # Whether the transcript's copy of the result is the one the gateway returned.
                "result_matches": bool(digest and result is not None and result_digest(result) == digest),
            }
        )
    return calls


def _chart(records) -> dict:
    """Bars on a time axis: each call from its start to its end, coloured by outcome."""
    if not records:
        return {"bars": [], "height": 0, "span_ms": 0}
    start = min(record.started_at for record in records)
    end = max(record.created_at for record in records)
    span_ms = max((end - start).total_seconds() * 1000, 1.0)
    scale = TIMELINE_WIDTH / span_ms
    bars = []
    for row, record in enumerate(records):
        offset_ms = (record.started_at - start).total_seconds() * 1000
        bars.append(
            {
                "seq": record.seq,
                "x": round(offset_ms * scale, 1),
                "y": row * 22 + 4,
                "width": round(max(record.latency_ms * scale, 3), 1),
                "label": record.tool or record.kind,
                "outcome": record.outcome,
                "title": f"#{record.seq} {record.tool or record.kind} {record.outcome} {record.reason} "
                f"at +{offset_ms:.0f} ms, {record.latency_ms:.0f} ms",
            }
        )
    return {"bars": bars, "height": len(records) * 22 + 8, "span_ms": round(span_ms), "width": TIMELINE_WIDTH}


@_reader
def export(request):
    fmt = request.GET.get("format", "")
    if fmt not in audit_trail.FORMATS:
        return HttpResponse("Choose format=csv or format=jsonl.", status=400, content_type="text/plain")
    try:
        filters = _filters_from(request.GET)
    except pydantic.ValidationError as exc:
        return HttpResponse("\n".join(_errors(exc)), status=400, content_type="text/plain")
    return audit_trail.export_response(request, request.user, filters, fmt)


@_reader
def digest(request):
    if not reads_whole_trail(request.user):
        raise PermissionDenied
    audit_trail.reading(request.user, "digest")
    body = audit.signed_digest()
    response = HttpResponse(json.dumps(body, indent=2) + "\n", content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="gatehouse-audit-digest-{body["seq"]}.json"'
    return response
