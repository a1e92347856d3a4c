"""The audit trail over HTTP: `GET /api/audit` (filtered, cursor pages), `/api/audit/export`, `/api/audit/digest`.

Same people, same filters and same recording of every read as the pages (investigations.audit.trail).
Authentication as for the actions API: the browser session or a person's API token.
"""

from typing import Literal

from ninja import Field, Query, Router, Schema

from core.problems import InvalidInput, Problem
from investigations.api_auth import auth_for
from investigations.audit import chain as audit
from investigations.audit import trail as audit_trail
from investigations.models import may_read_trail, reads_whole_trail

router = Router(tags=["audit"])


class AuditRow(Schema):
    seq: int = Field(description="Position in the hash chain.")
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    kind: str
    investigation: int | None
    correlation_id: str
    server: str
    tool: str
    tool_use_id: str
    outcome: str
    reason: str
    actor: str
    idempotency_key: str
    backend_status: str
    latency_ms: float
    source: str
    arguments: dict = Field(description="Validated arguments; sensitive values as `hmac-sha256:<hex>`.")
    extra: dict
    prev_hash: str
    hash: str


class AuditPage(Schema):
    items: list[AuditRow]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")


class AuditQuery(audit_trail.AuditFilter):
    limit: int = Field(default=50, ge=1, le=500)
    cursor: int | None = Field(default=None, ge=1, description="The `next_cursor` of the previous page.")


class ExportQuery(audit_trail.AuditFilter):
    format: Literal["csv", "jsonl"] = Field(description="CSV for spreadsheets; JSON Lines keeps every field and hash.")


class Digest(Schema):
    chain: str
    seq: int
    hash: str
    root: str = Field(
        description="The Merkle tree head (RFC 9162) of records #1 to #seq: proofs in filtered exports lead to it."
    )
    signed_at: str
    public_key: str = Field(description="Ed25519, base64: pin it to check digests offline.")
    signature: str


def _readers(request, user):
    return None if may_read_trail(user) else (403, "You may not read the audit trail.")


def _digest_readers(request, user):
    return None if reads_whole_trail(user) else (403, "Only managers and admins may export the digest.")


@router.get(
    "/audit",
    auth=auth_for(_readers),
    response={200: AuditPage, 400: InvalidInput, 401: Problem, 403: Problem},
    url_name="list_audit",
    operation_id="list_audit",
    summary="List audit records",
)
def list_audit(request, query: Query[AuditQuery]):
    """Audit records you may read, newest first, under the filters given."""
    records = audit_trail.reading(request.auth, "list", query)
    rows, older, _ = audit_trail.page(records, before=query.cursor, limit=query.limit)
    return {"items": [audit_trail.as_row(record) for record in rows], "next_cursor": older}


EXPORTED = {
    "200": {
        "description": "The records, streamed.",
        "content": {media.split(";")[0]: {"schema": {"type": "string"}} for media in audit_trail.FORMATS.values()},
    }
}


@router.get(
    "/audit/export",
    auth=auth_for(_readers),
    response={400: InvalidInput, 401: Problem, 403: Problem},
    url_name="export_audit",
    operation_id="export_audit",
    summary="Export audit records",
    openapi_extra={"responses": EXPORTED},
)
def export_audit(request, query: Query[ExportQuery]):
    """The filtered records, oldest first, streamed as CSV or JSON Lines (one object per line, with
    `prev_hash` and `hash`, so `manage.py verify_audit --export` can check it offline)."""
    filters = audit_trail.AuditFilter(**query.model_dump(exclude={"format"}))
    return audit_trail.export_response(request, request.auth, filters, query.format)


@router.get(
    "/audit/digest",
    auth=auth_for(_digest_readers),
    response={200: Digest, 401: Problem, 403: Problem},
    url_name="audit_digest",
    operation_id="audit_digest",
    summary="The signed digest of the chain head",
)
def audit_digest(request):
    """The chain's head (seq and hash), signed with the console's Ed25519 key. Managers and admins."""
    audit_trail.reading(request.auth, "digest")
    return audit.signed_digest()
