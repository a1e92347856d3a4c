"""Parsing what callers send the lab API: query strings and JSON bodies. Anything off is a 400."""

import json
from collections.abc import Collection
from datetime import UTC, datetime

from toolserver.lab.errors import BadRequest

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def query(request, allowed: set[str]) -> dict[str, str]:
    """The query parameters, refusing names the endpoint does not know (a typo would widen a search)."""
    unknown = sorted(set(request.GET) - allowed)
    if unknown:
        raise BadRequest(f"unknown query parameter(s): {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    return {name: request.GET[name].strip() for name in request.GET}


def timestamp(params: dict, name: str) -> datetime | None:
    raw = params.get(name, "")
    if not raw:
        return None
    # An unencoded "+00:00" arrives as " 00:00": put the plus back rather than refuse it.
    if len(raw) > 6 and raw[-6] == " " and raw[-3] == ":":
        raw = raw[:-6] + "+" + raw[-5:]
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(
            f"{name}: expected an ISO-8601 UTC timestamp such as 2025-01-31T09:30:00Z, got {raw[:40]!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def window(params: dict) -> tuple[datetime | None, datetime | None]:
    since, until = timestamp(params, "since"), timestamp(params, "until")
    if since and until and since > until:
        raise BadRequest("since is after until")
    return since, until


def limit(params: dict) -> int:
    raw = params.get("limit", "")
    if not raw:
        return DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"limit: expected a whole number from 1 to {MAX_LIMIT}") from None
    if not 1 <= value <= MAX_LIMIT:
        raise BadRequest(f"limit: expected a whole number from 1 to {MAX_LIMIT}, got {value}")
    return value


def body(request, allowed: set[str]) -> dict:
    """The JSON object in the request body, refusing anything else and any unknown field."""
    try:
        data = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}; expected {', '.join(sorted(allowed))}")
    return data


def text(data: dict, name: str, *, max_length: int, required: bool = True) -> str:
    value = data.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadRequest(f"{name}: required, a non-empty string")
    if len(value) > max_length:
        raise BadRequest(f"{name}: at most {max_length} characters")
    return value.strip()


def choice(data: dict, name: str, choices: Collection[str]) -> str:
    value = data.get(name)
    if not isinstance(value, str) or value not in choices:
        raise BadRequest(f"{name}: one of {', '.join(choices)}")
    return value


def recorded_payload(request):
    """What a write's request carried, for the write log: its JSON, or the start of its raw text."""
    try:
        return json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return {"unparsed_body": request.body[:1000].decode("utf-8", "replace")}
