"""Audit emission at the tool layer (architecture rule 8).

Every call through the gateway — valid, rejected, rate-limited, failed — becomes one
ToolCallAudit, handed to the sink named by settings.TOOLSERVER_AUDIT_SINK (the audit trail of
investigations/). Sensitive argument values are replaced by a keyed hash before they leave
this module, so the sink never sees them; a manager can still find "every call about j.doe" by
hashing the query value with keyed_hash().
"""

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from enum import StrEnum

from django.conf import settings
from django.utils.module_loading import import_string

from toolserver.catalog import ToolSpec


class Outcome(StrEnum):
    OK = "ok"
    ERROR = "error"
    RATE_LIMITED = "rate_limited"
    REPLAYED = "replayed"
    # A write on its way to its backend: recorded before it leaves, so a crash leaves this
    # ("outcome unknown") rather than nothing; the outcome is a later record with its key.
    DISPATCHED = "dispatched"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    DENIED = "denied"  # someone not allowed to approve the tool tried to decide
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    # A person checked the backend for a write whose outcome was unknown, and said what they found.
    CONFIRMED_DONE = "confirmed_done"
    CONFIRMED_NOT_DONE = "confirmed_not_done"


@dataclass(frozen=True)
class ToolCallAudit:
    server: str
    tool: str
    arguments: dict
    outcome: Outcome
    reason: str = ""
    idempotency_key: str = ""
    backend_status: str = ""
    latency_ms: float = 0.0
    correlation_id: str = ""
    tool_use_id: str = ""
    actor: str = "agent"
    source: str = ""
    extra: dict = field(default_factory=dict)


def keyed_hash(value: str) -> str:
    digest = hmac.new(settings.AUDIT_HASH_KEY.encode(), str(value).lower().encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest}"


def redact(tool: ToolSpec | None, arguments: dict) -> dict:
    """The arguments as the audit keeps them: sensitive values hashed, everything else as given."""
    sensitive = set(tool.sensitive) if tool else set()
    return {
        name: keyed_hash(value) if name in sensitive and value is not None else value
        for name, value in arguments.items()
    }


def canonical_json(value) -> bytes:
    """One byte string per value, whatever its key order: what the audit's hashes are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def result_digest(result: dict) -> str:
    """The SHA-256 of a result as the caller got it, so the record vouches for the transcript's copy."""
    return hashlib.sha256(canonical_json(result)).hexdigest()


def emit(event: ToolCallAudit) -> None:
    import_string(settings.TOOLSERVER_AUDIT_SINK)(event)
