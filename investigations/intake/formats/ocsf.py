"""OCSF 1.x Detection Finding (class_uid 2004): one finding per POST.

Documented class: https://schema.ocsf.io/1.3.0/classes/detection_finding (`class_uid`,
`activity_id` 1 Create / 2 Update / 3 Close, `severity_id` 0-6 and 99, `time` in milliseconds,
`finding_info.uid` and `.title`, `device.hostname`, `actor.user.name` and `.domain`).

The finding's `finding_info.uid` is its external id, so an Update (activity 2) of a finding already
received is the same alert; a Close (activity 3) is no new alert but the end of that one, noted on
its open investigation.
"""

from investigations.intake.formats.base import (
    Context,
    FormatError,
    Mapped,
    Mapping,
    get,
    host,
    rule,
    text,
    time_of,
    title,
    user,
)

NAME = "ocsf"
CLASS_UID = 2004
CLOSE = 3
# severity_id: 0 Unknown, 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical, 6 Fatal, 99 Other.
SEVERITY = {"1": "low", "2": "low", "3": "medium", "4": "high", "5": "critical", "6": "critical"}


def map(payload: dict, context: Context) -> Mapping:
    class_uid = _integer(payload, "class_uid")
    if class_uid != CLASS_UID:
        raise FormatError("class_uid", f"must be {CLASS_UID} (Detection Finding)")
    severity_id = _integer(payload, "severity_id")
    external_id = text(payload, "finding_info.uid", required=True)
    if get(payload, "activity_id") is not None and _integer(payload, "activity_id") == CLOSE:
        return Mapping(alerts=[], resolved=[external_id])
    name = text(payload, "finding_info.title", required=True)
    time = get(payload, "time")
    if time is None:
        raise FormatError("time", "is required")
    if isinstance(time, bool) or not isinstance(time, (int, float, str)):
        raise FormatError("time", "must be a time in milliseconds since 1970")
    try:
        seconds = time / 1000 if isinstance(time, (int, float)) else time
    except OverflowError:  # an integer past any float
        raise FormatError("time", "must be a time in milliseconds since 1970") from None
    observed = time_of(seconds, "time")
    return Mapping(
        alerts=[
            Mapped(
                fields={
                    "external_id": external_id,
                    "title": title(name),
                    "rule": rule(
                        text(payload, "finding_info.analytic.uid")
                        or text(payload, "finding_info.analytic.name")
                        or name
                    ),
                    "severity": context.severity(NAME, severity_id, SEVERITY),
                    "host": host(text(payload, "device.hostname") or text(payload, "device.name")),
                    "user": user(text(payload, "actor.user.name"), text(payload, "actor.user.domain")),
                    "observed_at": observed,
                    "details": {"format": NAME, "raw": payload},
                },
                origins={"external_id": "finding_info.uid", "title": "finding_info.title", "observed_at": "time"},
            )
        ]
    )


def _integer(payload: dict, path: str) -> int:
    value = get(payload, path)
    if value is None:
        raise FormatError(path, "is required")
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(path, "must be an integer")
    return value
