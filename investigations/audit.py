"""The one place audit records are written."""

from investigations.models import AuditRecord
from toolserver.audit import ToolCallAudit


def record_tool_call(event: ToolCallAudit) -> AuditRecord:
    return AuditRecord.objects.create(
        kind=AuditRecord.Kind.TOOL_CALL,
        server=event.server,
        tool=event.tool,
        arguments=event.arguments,
        outcome=event.outcome,
        reason=event.reason,
        idempotency_key=event.idempotency_key,
        backend_status=event.backend_status,
        latency_ms=round(event.latency_ms, 3),
        correlation_id=event.correlation_id,
        actor=event.actor,
        source=event.source,
        extra=event.extra,
    )
