"""Reading the audit trail: the filters, keyset pages and streamed exports.

The pages and the API share all of it. Who reads which records is the model's rule
(`AuditRecord.objects.visible_to`, investigations/models/audit.py): managers and admins (the model
permission `view_auditrecord`) read every record; an analyst the trails of their own
investigations: those of alerts they raised, those they decided an action in, and those granted
to them or their team (the django-guardian object permission `view_investigation`). Every read is itself recorded
(investigations.audit.chain.record_access) and a listing or an export stops just before its own record,
so the two agree.
"""

import csv
import io
import json
from datetime import UTC, datetime
from typing import Annotated, Literal

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q
from django.http import StreamingHttpResponse
from ninja import Field, Schema
from pydantic import ConfigDict, StringConstraints, field_validator

from core.inputs import FilterDateTime
from investigations.audit import chain as audit
from investigations.models import AuditRecord, Investigation, reads_whole_trail
from investigations.models.approvals import ACTOR_MAX
from toolserver.audit import Outcome, keyed_hash

PAGE_SIZE = 50
EXPORT_BATCH = 2000
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]


def _blank_is_allowed(schema: dict) -> None:
    """A blank filter is no filter (a page's empty field): the schema says so too."""
    for prop in schema.get("properties", {}).values():
        if "anyOf" in prop:  # an optional filter
            prop["anyOf"].append({"type": "string", "maxLength": 0})


class AuditFilter(Schema):
    """The filters of the list, the API and the export; every one is optional and they combine."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_blank_is_allowed)

    since: FilterDateTime | None = Field(default=None, description="From this time (UTC when no offset is given).")
    until: FilterDateTime | None = Field(default=None, description="Up to this time (UTC when no offset is given).")
    investigation: int | None = Field(default=None, ge=1, description="An investigation's id.")
    alert: Text | None = Field(default=None, description="An alert: its id, external id or `source:external_id`.")
    kind: Literal[tuple(AuditRecord.Kind.values)] | None = None
    server: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    tool: Annotated[str, StringConstraints(strip_whitespace=True, max_length=60)] | None = None
    outcome: Literal[tuple(Outcome)] | None = Field(default=None, description="e.g. `ok`, `error`, `denied`.")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, max_length=60)] | None = Field(
        default=None, description="A typed error's reason, e.g. `siem_timeout`."
    )
    actor: Annotated[str, StringConstraints(strip_whitespace=True, max_length=ACTOR_MAX)] | None = Field(
        default=None, description="`agent`, `system` or `user:<username>`."
    )
    idempotency_key: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = None
    q: Text | None = Field(
        default=None,
        description="Free text over the visible fields; also matches a sensitive value (an account name) by its keyed hash.",
    )

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_none(cls, value):
        return None if value == "" else value

    def active(self) -> dict:
        """The filters given, as strings: what the access record and the page's links carry."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else value
            for name, value in self.model_dump(exclude_none=True).items()
        }


def outcome_of_dispatch(record: AuditRecord, visible) -> AuditRecord | None:
    """What became of a dispatched write: the next record of its key among `visible` (the reader's:
    investigating an alert again shares its key) — its outcome, or a dispatch again.

    None: nothing was recorded after it left, so its outcome is unknown (the process stopped).
    """
    if record.outcome != Outcome.DISPATCHED:
        return None
    return (
        visible.filter(kind=AuditRecord.Kind.TOOL_CALL, idempotency_key=record.idempotency_key, seq__gt=record.seq)
        .order_by("seq")
        .first()
    )


# -- filters and pages -------------------------------------------------------------------------------
def filtered(records, filters: AuditFilter):
    exact = {
        name: getattr(filters, name)
        for name in ("kind", "server", "tool", "outcome", "reason", "actor", "idempotency_key")
    }
    records = records.filter(**{name: value for name, value in exact.items() if value is not None})
    if filters.since:
        records = records.filter(created_at__gte=filters.since)
    if filters.until:
        records = records.filter(created_at__lte=filters.until)
    if filters.investigation:
        records = records.filter(correlation_id=Investigation.correlation_id_of(filters.investigation))
    if filters.alert:
        records = records.filter(correlation_id__in=_alert_correlation_ids(filters.alert))
    if filters.q:
        # The search text is lower-cased; a sensitive value is kept only as its keyed hash, which it holds too.
        records = records.filter(Q(text__contains=filters.q.lower()) | Q(text__contains=keyed_hash(filters.q)))
    return records


def _alert_correlation_ids(alert: str) -> list[str]:
    source, _, external_id = alert.rpartition(":")
    match = Q(alert__external_id=alert) | (Q(alert__source=source, alert__external_id=external_id) if source else Q())
    if alert.isdigit():
        match |= Q(alert_id=int(alert))
    return [
        Investigation.correlation_id_of(pk) for pk in Investigation.objects.filter(match).values_list("pk", flat=True)
    ]


def page(records, *, before: int | None = None, after: int | None = None, limit: int = PAGE_SIZE):
    """One keyset page, newest first: (rows, seq for an older page or None, seq for a newer page or None)."""
    if after is not None:  # going back towards the newest: read upwards, show downwards
        rows = list(records.filter(seq__gt=after).order_by("seq")[: limit + 1])
        newer = rows[limit - 1].seq if len(rows) > limit else None
        rows = rows[:limit][::-1]
        older = rows[-1].seq if rows else None
        return rows, older, newer
    if before is not None:
        records = records.filter(seq__lt=before)
    rows = list(records.order_by("-seq")[: limit + 1])
    older = rows[limit - 1].seq if len(rows) > limit else None
    rows = rows[:limit]
    newer = rows[0].seq if rows and before is not None else None
    return rows, older, newer


def as_row(record: AuditRecord) -> dict:
    """A record as the API and the exports give it: its hashed content, its investigation, the hashes."""
    return audit.content(record) | {
        "investigation": record.investigation_id,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


# -- exports -------------------------------------------------------------------------------------------
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
CSV_COLUMNS = [*audit.CONTENT_FIELDS, "investigation", "prev_hash", "hash"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def export_lines(records, fmt: str, size: int = 0, complete: bool = True):
    """The export in chain order (oldest first), one batch of text at a time.

    Batches are read by keyset on seq, so no cursor stays open between them. JSON Lines end with
    the signed head of the chain up to the export (records #1…#`size`); a filtered export's
    records each carry their inclusion proof against it, and the head signs which records it holds.
    """
    last, tree = 0, None
    if fmt == "csv":
        yield _csv_line(CSV_COLUMNS)
    else:
        wanted = [] if complete else list(records.order_by("seq").values_list("seq", flat=True))
        tree = audit.chain_tree(size, proofs=not complete)  # each proof read off it as its line is written
    while True:
        batch = list(records.filter(seq__gt=last).order_by("seq")[:EXPORT_BATCH])
        if not batch:
            break
        last = batch[-1].seq
        if fmt == "csv":
            yield "".join(_csv_line(_csv_cells(as_row(record))) for record in batch)
        else:
            yield "".join(
                json.dumps(as_row(record) | ({} if complete else {"proof": tree.proof(record.seq)}), ensure_ascii=False)
                + "\n"
                for record in batch
            )
    if fmt == "jsonl":
        head_hash = AuditRecord.objects.filter(seq=size).values_list("hash", flat=True).first() or audit.GENESIS
        held = {"export": "complete"} if complete else {"export": "filtered", "records": wanted}
        yield json.dumps({"signed_head": audit.sign_head(size, head_hash, tree.root, **held)}) + "\n"


def exporting(user, filters: AuditFilter, fmt: str):
    """Record the export and give its lines: complete (every record up to it) or filtered, with proofs."""
    records, access = _reading(user, "export", filters, format=fmt)
    return export_lines(records, fmt, size=access.seq - 1, complete=reads_whole_trail(user) and not filters.active())


async def aexport_lines(lines):
    """Export lines for an ASGI response (which would otherwise read a sync iterator whole)."""
    sentinel = object()
    while (chunk := await sync_to_async(next)(lines, sentinel)) is not sentinel:
        yield chunk


def _csv_cells(row: dict) -> list[str]:
    cells = []
    for name in CSV_COLUMNS:
        value = row[name]
        text = (
            json.dumps(value, ensure_ascii=False, sort_keys=True)
            if isinstance(value, dict)
            else ""
            if value is None
            else str(value)
        )
        # A spreadsheet runs a cell starting like a formula: agent-written text must not.
        cells.append("'" + text if text.startswith(FORMULA_START) else text)
    return cells


def _csv_line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


def export_response(request, user, filters: AuditFilter, fmt: str) -> StreamingHttpResponse:
    """The streamed export of the pages and the API: asynchronous under ASGI, so it is never read whole."""
    lines = exporting(user, filters, fmt)
    lines = aexport_lines(lines) if isinstance(request, ASGIRequest) else lines
    response = StreamingHttpResponse(lines, content_type=FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="gatehouse-audit-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response


def reading(user, what: str, filters: AuditFilter | None = None, **details):
    """Record that `user` reads the trail (`what`: list, record, timeline, export, digest) and
    return the records they may see under `filters`, up to just before that record."""
    return _reading(user, what, filters, **details)[0]


def _reading(user, what: str, filters: AuditFilter | None = None, **details):
    active = filters.active() if filters is not None else {}
    access = audit.record_access(user, what, **({"filters": active} if active else {}), **details)
    records = AuditRecord.objects.visible_to(user).filter(seq__lt=access.seq)
    return (filtered(records, filters) if filters is not None else records), access
