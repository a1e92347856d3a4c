"""Wazuh's alerts, as its integrator hands them to `integrations/wazuh/custom-gatehouse` (one per POST).

Documented alert: https://documentation.wazuh.com/current/user-manual/manager/integration-with-external-apis.html
(the alert JSON the integrator writes to a file for a `custom-` integration: `id`, `timestamp`,
`rule.level` 0-15, `rule.description`, `rule.id`, `agent.name`, `data.*`, `full_log`).

`rule.level` becomes the severity as Wazuh's own dashboard groups levels: 0-6 low, 7-11 medium,
12-14 high, 15 critical (an integration may map levels otherwise: `wazuh:LEVEL=SEVERITY`).
"""

import re

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

NAME = "wazuh"
SEVERITY = (
    {str(level): "low" for level in range(7)}
    | {str(level): "medium" for level in range(7, 12)}
    | {
        "12": "high",
        "13": "high",
        "14": "high",
        "15": "critical",
        "16": "critical",
    }
)


def map(payload: dict, context: Context) -> Mapping:
    external_id = text(payload, "id", required=True)
    level = get(payload, "rule.level")
    if level is None:
        raise FormatError("rule.level", "is required")
    if isinstance(level, str) and re.fullmatch(r"[0-9]{1,2}", level.strip()):  # not str.isdigit: "²" is one
        level = int(level)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 16:
        raise FormatError("rule.level", "must be a whole number from 0 to 16")
    description = text(payload, "rule.description", required=True)
    observed = time_of(text(payload, "timestamp", required=True), "timestamp")
    account = (
        user(text(payload, "data.win.eventdata.targetUserName"), text(payload, "data.win.eventdata.targetDomainName"))
        or user(text(payload, "data.dstuser"))
        or user(text(payload, "data.srcuser"))
    )
    return Mapping(
        alerts=[
            Mapped(
                fields={
                    "external_id": external_id,
                    "title": title(description),
                    "rule": rule(text(payload, "rule.id")),
                    "severity": context.severity(NAME, level, SEVERITY),
                    "host": host(text(payload, "agent.name")),
                    "user": account,
                    "observed_at": observed,
                    "details": {"format": NAME, "rule_id": text(payload, "rule.id"), "raw": payload},
                },
                origins={"external_id": "id", "title": "rule.description", "observed_at": "timestamp"},
            )
        ]
    )
