"""Prometheus Alertmanager's webhook (webhook_config, payload version 4): one alert per firing entry.

Documented payload: https://prometheus.io/docs/alerting/latest/configuration/#webhook_config
(`version`, `groupKey`, `status`, `receiver`, `alerts[]` each with `status`, `labels`,
`annotations`, `startsAt`, `endsAt`, `generatorURL`, `fingerprint`).

An entry's external id is its `fingerprint` and its `startsAt`: Alertmanager sends the same group
again (every repeat_interval, and on each change of the group), and a resend is the same alert.
The same labels firing again after a resolve start a new `startsAt`: a new alert. A `resolved`
entry is no new alert: its id is returned in `Mapping.resolved`, to be noted on the open
investigation of the alert it ends.
"""

from datetime import UTC

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

NAME = "alertmanager"
SEVERITY = {
    "critical": "critical",
    "page": "critical",
    "emergency": "critical",
    "error": "high",
    "high": "high",
    "major": "high",
    "warning": "medium",
    "warn": "medium",
    "medium": "medium",
    "minor": "medium",
    "info": "low",
    "informational": "low",
    "low": "low",
    "none": "low",
}


def map(payload: dict, context: Context) -> Mapping:
    version = text(payload, "version")
    if version is not None and version != "4":
        raise FormatError("version", "must be 4 (Alertmanager's webhook payload version)")
    entries = get(payload, "alerts")
    if not isinstance(entries, list):
        raise FormatError("alerts", "is required" if entries is None else "must be a list")
    # Each alert keeps the notification as sent, less the other entries: its own is under "alert".
    group = {key: value for key, value in payload.items() if key != "alerts"}
    alerts, resolved = [], []
    for index, entry in enumerate(entries):
        at = f"alerts.{index}"
        if not isinstance(entry, dict):
            raise FormatError(at, "must be an object")
        status = text(payload, f"{at}.status", required=True)
        if status not in ("firing", "resolved"):
            raise FormatError(f"{at}.status", 'must be "firing" or "resolved"')
        fingerprint = text(payload, f"{at}.fingerprint", required=True)
        starts_at = time_of(text(payload, f"{at}.startsAt", required=True), f"{at}.startsAt")
        external_id = f"{fingerprint}/{starts_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
        if status == "resolved":
            resolved.append(external_id)
            continue
        labels = _strings(entry, "labels", at)
        annotations = _strings(entry, "annotations", at)
        name = labels.get("alertname") or "Alertmanager alert"
        summary = annotations.get("summary")
        alerts.append(
            Mapped(
                fields={
                    "external_id": external_id,
                    "title": title(f"{name}: {summary}" if summary else name),
                    "rule": rule(labels.get("alertname")),
                    "severity": context.severity(NAME, labels.get("severity"), SEVERITY),
                    "host": host(
                        labels.get("host") or labels.get("hostname") or labels.get("nodename") or labels.get("instance")
                    ),
                    "user": user(labels.get("user")),
                    "observed_at": starts_at,
                    "details": {"format": NAME, "raw": group | {"alert": entry}},
                },
                origins={
                    "external_id": f"{at}.fingerprint",
                    "title": f"{at}.labels.alertname",
                    "observed_at": f"{at}.startsAt",
                },
            )
        )
    return Mapping(alerts=alerts, resolved=resolved)


def _strings(entry: dict, key: str, at: str) -> dict[str, str]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormatError(f"{at}.{key}", "must be an object")
    return {name: str(item).strip() for name, item in value.items() if isinstance(item, (str, int, float))}
