"""The one envelope every tool returns, and the typed errors (architecture rules 4 and 5).

Success: {"status": "ok", "data": ..., "truncated": bool, "source": "lab:siem"}
Failure: {"status": "error", "reason": "siem_timeout", "retryable": true, "guidance": "..."}

`reason` is drawn from one vocabulary (Reason below, plus "<backend>_<failure>" for backend
failures) shared by the audit record, the events and the pages. Guidance is written for the
model: what happened, that it is not a finding, what to do next.
"""

from enum import StrEnum


class Reason(StrEnum):
    INVALID_ARGUMENTS = "invalid_arguments"
    UNKNOWN_TOOL = "unknown_tool"
    TOOL_DISABLED = "tool_disabled"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    IN_PROGRESS = "in_progress"
    TOOLSERVER_UNAVAILABLE = "toolserver_unavailable"
    INTERNAL_ERROR = "internal_error"
    APPROVAL_REQUIRED = "approval_required"
    REJECTED_BY_ANALYST = "rejected_by_analyst"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    # Refused by the agent loop before any check: the model's turn did not finish (cut at
    # max_tokens, a stream cut off), or the call's id is malformed or names an earlier call.
    INCOMPLETE_TURN = "incomplete_turn"
    INVALID_TOOL_USE_ID = "invalid_tool_use_id"
    OUTCOME_UNKNOWN = "outcome_unknown"  # a write that may have happened: a person checks the backend
    CONFIRMED_NOT_DONE = "confirmed_not_done"  # a person checked: that write did not happen; it may be asked again


class BackendFailure(StrEnum):
    """How a backend failed; the reason is "<backend>_<failure>", e.g. "siem_timeout"."""

    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    MALFORMED = "malformed_response"
    NOT_ALLOWED = "not_allowed"  # its address is not on the deployment's allow-list


# Transient failures may succeed on a retry; a write that failed transiently leaves its idempotency
# key to its retry (freed, or given up when it may have happened: toolserver.gateway._settled).
# Permanent ones are stored and returned again.
TRANSIENT_FAILURES = {BackendFailure.TIMEOUT, BackendFailure.UNAVAILABLE, BackendFailure.RATE_LIMITED}

BACKEND_GUIDANCE = {
    BackendFailure.TIMEOUT: "The {backend} did not answer in time. This is not evidence either way. "
    "Retry once with a narrower time window or fewer results; if it fails again, state that "
    "this could not be confirmed.",
    BackendFailure.UNAVAILABLE: "The {backend} is unavailable right now. This is not evidence either way. "
    "Retry later or continue without it and state that this could not be confirmed.",
    BackendFailure.RATE_LIMITED: "The {backend} is throttling requests. Wait the suggested time before "
    "retrying; meanwhile this is not evidence either way.",
    BackendFailure.FORBIDDEN: "Gatehouse is not permitted to use this {backend} function. Do not retry; "
    "state that this could not be checked.",
    BackendFailure.MALFORMED: "The {backend} returned data Gatehouse could not read. This is not "
    "evidence either way; state that this could not be confirmed.",
    BackendFailure.NOT_ALLOWED: "Gatehouse's configuration does not allow reaching this {backend}. Do not "
    "retry; state that this could not be checked.",
}


def invalid_arguments(exc) -> dict:
    """A pydantic ValidationError as guidance: field names and what is wrong, never the values."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in err["loc"]) or "arguments"
        if err["type"] == "extra_forbidden":
            problems.append(f"{where}: not an argument of this tool")
        else:
            problems.append(f"{where}: {err['msg']}")
    return error(
        Reason.INVALID_ARGUMENTS, retryable=False, guidance="Fix the arguments and call again. " + "; ".join(problems)
    )


BACKEND_NAMES = {
    "siem": "SIEM",
    "edr": "EDR",
    "identity": "identity provider",
    "ticketing": "ticketing system",
    "intel": "threat-intel service",
}


# Every tool's outputSchema: its structuredContent is one envelope or one typed error, nothing else.
OUTPUT_SCHEMA: dict = {
    "type": "object",
    "oneOf": [
        {
            "properties": {
                "status": {"const": "ok"},
                "data": {
                    "anyOf": [{"type": "object"}, {"type": "array"}],
                    "description": "The tool's result: one record, or a page of them.",
                },
                "truncated": {"type": "boolean", "description": "More results exist than were returned."},
                "source": {"type": "string", "description": "The backend that answered, e.g. lab:siem."},
            },
            "required": ["status", "data", "truncated", "source"],
            "additionalProperties": False,
        },
        {
            "properties": {
                "status": {"const": "error"},
                "reason": {"type": "string", "description": "A Reason, or <backend>_<failure>."},
                "retryable": {"type": "boolean"},
                "guidance": {"type": "string", "description": "What happened and what to do next."},
                "retry_after_s": {"type": "integer", "description": "When the backend throttled: wait this long."},
            },
            "required": ["status", "reason", "retryable", "guidance"],
            "additionalProperties": False,
        },
    ],
}


def ok(data, *, source: str, truncated: bool = False) -> dict:
    return {"status": "ok", "data": data, "truncated": truncated, "source": source}


def error(reason: str, *, retryable: bool, guidance: str, **details) -> dict:
    return {"status": "error", "reason": str(reason), "retryable": retryable, "guidance": guidance, **details}


def backend_error(backend: str, failure: BackendFailure, *, retry_after_s: int | None = None, vendor: str = "") -> dict:
    """`vendor`, when the adapter names one (Backend.vendor: "ldap", "taxii", "splunk"), names the reason
    ("ldap_unavailable"), so an analyst reading it knows which system failed; otherwise the server's
    backend does ("siem_timeout"). The guidance speaks of the capability either way."""
    details = {"retry_after_s": retry_after_s} if retry_after_s is not None else {}
    return error(
        f"{vendor or backend}_{failure}",
        retryable=failure in TRANSIENT_FAILURES,
        guidance=BACKEND_GUIDANCE[failure].format(backend=BACKEND_NAMES.get(backend, backend)),
        **details,
    )


def is_error(result: dict) -> bool:
    return result.get("status") == "error"


def is_transient(result: dict) -> bool:
    """A failure worth retrying: the envelope says so."""
    return is_error(result) and bool(result.get("retryable"))
