"""Splunk's webhook alert action: one alert per POST, the first result row of the search.

Documented payload: https://help.splunk.com/splunk-enterprise/alert-and-respond/alerting-manual/10.0/configure-alert-actions/use-a-webhook-alert-action
(`sid`, `search_name`, `result`, `results_link`, `owner`, `app`). Splunk sends no headers of its
own, so its token travels in the URL (POST /api/alerts/splunk/{token}).

An alert set to trigger "for each result" sends one POST per row with the same `sid`: the external
id is the sid and a digest of the row, so each row is its own alert and a resend of a row is the
same alert.
"""

import hashlib
import json

from investigations.intake.formats.base import (
    EXTERNAL_ID_MAX,
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

NAME = "splunk"
# `severity` (a saved search's custom field) or `urgency` (Splunk Enterprise Security) of the row.
SEVERITY = {
    "informational": "low",
    "info": "low",
    "low": "low",
    "1": "low",
    "2": "low",
    "medium": "medium",
    "3": "medium",
    "high": "high",
    "4": "high",
    "critical": "critical",
    "5": "critical",
}


def map(payload: dict, context: Context) -> Mapping:
    sid = text(payload, "sid", required=True)
    result = get(payload, "result")
    if result is None:
        result = {}
    elif not isinstance(result, dict):
        raise FormatError("result", "must be an object")
    digest = hashlib.sha256(json.dumps(result, sort_keys=True).encode()).hexdigest()[:12]
    external_id = f"{sid[: EXTERNAL_ID_MAX - len(digest) - 1]}#{digest}"
    name = text(payload, "search_name") or f"Splunk alert {sid}"
    observed = (
        time_of(result["_time"], "result._time") if result.get("_time") not in (None, "") else context.received_at
    )
    severity_value = text(result, "severity") or text(result, "urgency")
    return Mapping(
        alerts=[
            Mapped(
                fields={
                    "external_id": external_id,
                    "title": title(name),
                    "rule": rule(text(payload, "search_name")),
                    "severity": context.severity(NAME, severity_value, SEVERITY),
                    "host": host(text(result, "host") or text(result, "dest") or text(result, "src")),
                    "user": user(text(result, "user") or text(result, "src_user")),
                    "observed_at": observed,
                    "details": {"format": NAME, "results_link": text(payload, "results_link"), "raw": payload},
                },
                origins={"external_id": "sid", "title": "search_name", "observed_at": "result._time"},
            )
        ]
    )
