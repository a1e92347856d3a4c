"""What every format's mapper shares: its result, its errors and the helpers that read a sender's fields.

A mapper is a pure function `map(payload, context) -> Mapping`: from the JSON object a sender
posted to the alerts it means, in Gatehouse's native shape (the keyword arguments of
`investigations.intake.services.AlertIn`, less `source`, which the context gives). It reads only
the fields it knows and ignores any other (senders add fields release by release); it keeps the
raw payload in each alert's `details`; it never touches the database, the clock or the settings:
the time of receipt, the source and the integration's severity map come in `context`.

A required field that is missing or of the wrong type is a `FormatError` naming it as a dotted
path in the sender's payload (e.g. `alerts.0.startsAt`): the request is refused whole (400) and
nothing is stored. Each alert also says where its fields came from (`Mapped.origins`), so a value
the native shape refuses (an external id with a space) is reported under the sender's name too.
An alert's `rule` is what fired it, the same for every alert of one detection (Splunk's
search_name, Alertmanager's alertname, Wazuh's rule.id, OCSF's finding_info.analytic or title):
with the host or user it is the key alerts are grouped by; None leaves it to the title.
Optional enrichments (host, user) that do not fit the native shape are left out, not refused:
the raw payload in `details` still holds them.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("low", "medium", "high", "critical")
DEFAULT_SEVERITY = "medium"
TITLE_MAX = 300
EXTERNAL_ID_MAX = 128
HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@\\-]{0,63}\Z")
# RFC 3339, with up to nanoseconds (Alertmanager, Go) and an offset with or without its colon (Wazuh).
_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d+))?"
    r"(?P<offset>Z|z|[+-]\d{2}:?\d{2})\Z"
)


class FormatError(ValueError):
    """The payload lacks a field the format needs, or has it in the wrong type: `field` is its dotted path."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Context:
    """What a mapper may know besides the payload."""

    source: str  # the alerts' source: one of the integration's own
    received_at: datetime  # when the request arrived: the time of an alert that carries none
    severity_map: dict[str, str] = field(
        default_factory=dict
    )  # the integration's: "format:value" or "default" -> severity

    def severity(self, format_name: str, value: Any, defaults: dict[str, str]) -> str:
        """The integration's mapping of this sender's value, else the format's, else the integration's default."""
        key = "" if value is None else str(value).strip().lower()
        chosen = self.severity_map.get(f"{format_name}:{key}") or defaults.get(key) or self.severity_map.get("default")
        return chosen if chosen in SEVERITIES else DEFAULT_SEVERITY


@dataclass(frozen=True)
class Mapped:
    """One alert: `fields` for AlertIn (without `source`); `origins`: AlertIn field -> where it came from in the payload."""

    fields: dict[str, Any]
    origins: dict[str, str]


@dataclass(frozen=True)
class Mapping:
    """What a payload means: new alerts, and the external ids of alerts the sender says are over (resolved)."""

    alerts: list[Mapped]
    resolved: list[str] = field(default_factory=list)


# -- reading the payload ----------------------------------------------------------------------


def obj(payload: Any, path: str) -> dict:
    """The JSON object at `path` (dotted), required."""
    value = get(payload, path)
    if value is None:
        raise FormatError(path, "is required")
    if not isinstance(value, dict):
        raise FormatError(path, "must be an object")
    return value


def get(payload: Any, path: str) -> Any:
    """The value at a dotted path (a number steps into a list), or None where any step is missing."""
    value = payload
    for step in path.split("."):
        if isinstance(value, list) and step.isdigit():
            value = value[int(step)] if int(step) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(step)
        else:
            return None
    return value


def text(payload: Any, path: str, *, required: bool = False) -> str | None:
    """A string (or a number, written as one) at `path`; blank is absent."""
    value = get(payload, path)
    if isinstance(value, bool) or (value is not None and not isinstance(value, (str, int, float))):
        raise FormatError(path, "must be a string")
    value = None if value is None else str(value).strip()
    if not value:
        if required:
            raise FormatError(path, "is required")
        return None
    return value


def title(value: str) -> str:
    """One line, at most TITLE_MAX characters."""
    line = " ".join(value.split())
    return line if len(line) <= TITLE_MAX else line[: TITLE_MAX - 1] + "…"


def rule(value: str | None) -> str | None:
    """A rule's identity as a title is kept (one line, at most TITLE_MAX characters), or None."""
    return title(value) if value else None


def time_of(value: Any, path: str) -> datetime:
    """An RFC 3339 string (nanoseconds and `+0000` allowed) or a Unix time in seconds, as an aware datetime."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return epoch(value, path)
    if not isinstance(value, str):
        raise FormatError(path, "must be a date and time")
    match = _RFC3339.match(value.strip())
    if match is None:
        try:
            return epoch(float(value), path)
        except ValueError:
            raise FormatError(path, "must be a date and time with its time zone, like 2026-11-25T09:30:00Z") from None
    fraction = (match["fraction"] or "")[:6]
    offset = match["offset"].upper().replace("Z", "+00:00")
    if ":" not in offset:
        offset = offset[:3] + ":" + offset[3:]
    try:
        moment = datetime.fromisoformat(match["base"].replace(" ", "T") + (f".{fraction}" if fraction else "") + offset)
        moment.astimezone(UTC)  # year 1 an hour east of UTC is in no year datetime holds
    except (ValueError, OverflowError):
        raise FormatError(path, "is not a valid date and time") from None
    return moment


def epoch(value: float, path: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(value), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise FormatError(path, "is not a valid Unix time") from None


# -- host and user ----------------------------------------------------------------------------


def host(value: str | None) -> str | None:
    """A host name from what senders put there (`web-1`, `web-1:9100`, `https://web-1:443/x`), or None."""
    if not value:
        return None
    value = value.strip()
    if "://" in value:
        value = value.split("://", 1)[1].split("/", 1)[0]
    if value.count(":") == 1:  # host:port; an IPv6 address (more than one colon) is no host name
        value = value.split(":", 1)[0]
    return value if HOST.match(value) else None


def user(value: str | None, domain: str | None = None) -> str | None:
    """`DOMAIN\\user`, `user@domain` and (user, domain) as one form, `user@domain` (the domain in lower
    case, as both NetBIOS and DNS domains are case-insensitive), or the bare user; None when it does not fit."""
    if not value:
        return None
    name = value.strip()
    if "\\" in name:
        domain, name = name.split("\\", 1)
    elif "@" in name:
        name, domain = name.rsplit("@", 1)
    name, domain = name.strip(), (domain or "").strip().lower()
    if not name:
        return None
    normalised = f"{name}@{domain}" if domain else name
    return normalised if USER.match(normalised) else None
