"""Argument models of every tool: strict, bounded, no unknown keys (architecture rule 3).

These models are the boundary. The MCP servers validate every call against them, the
gateway validates before it spends a rate-limit token or an idempotency key, and their JSON
schemas (with the field descriptions below, written for the model) are what the model sees.
"""

import ipaddress
import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_LOOKBACK_HOURS = 168  # seven days: the SIEM and EDR keep a week hot
MAX_RESULTS = 200

HostRef = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", strict=True),
    Field(description="The host's id (e.g. H-1042) or hostname (e.g. WS-FIN-07), exactly as in the alert."),
]
Username = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$", strict=True),
    Field(description="The account name (e.g. j.doe), exactly as in the alert or a previous result."),
]
LookbackHours = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=MAX_LOOKBACK_HOURS,
        description=f"How far back to search, in hours (1-{MAX_LOOKBACK_HOURS}). Start narrow (24) around the alert.",
    ),
]
Limit = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=MAX_RESULTS,
        description=f"Most results to return (1-{MAX_RESULTS}); newest first. The result says when it was truncated.",
    ),
]
Reason = Annotated[
    str,
    StringConstraints(min_length=10, max_length=500, strict=True),
    Field(description="Why, in one or two sentences citing the evidence; shown to the analyst who approves."),
]
TicketId = Annotated[
    str, StringConstraints(pattern=r"^[0-9]{1,10}$", strict=True), Field(description="The ticket number, e.g. 4471.")
]
Severity = Literal["low", "medium", "high", "critical"]


class StrictArgs(BaseModel):
    """Unknown keys are refused and nothing is coerced ("3" is not 3)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def parse_arguments(model: type[StrictArgs], raw) -> StrictArgs:
    """Validate arguments as they arrive on the wire (JSON): strict, unknown keys refused.

    JSON mode keeps strictness ("3" is not 3, true is not 1) while still accepting what JSON
    can only express as strings (enum values). Raises pydantic.ValidationError.
    """
    if not isinstance(raw, dict):
        raw = {"__root__": raw}  # refused as an unknown key: the arguments must be an object
    return model.model_validate_json(json.dumps(raw))


# siem ---------------------------------------------------------------------------------
class SiemQuery(StrictArgs):
    """A SIEM search about a user, a host, or both, in a bounded window."""

    user: Username | None = Field(default=None, description="The account name (e.g. j.doe).")
    host: HostRef | None = Field(default=None, description="The host's id or hostname (e.g. WS-FIN-07).")
    lookback_hours: LookbackHours = 24
    limit: Limit = 50

    @model_validator(mode="after")
    def needs_a_subject(self):
        if self.user is None and self.host is None:
            raise ValueError("give a user, a host, or both")
        return self


class SearchLogins(SiemQuery):
    pass


EventKind = Literal["email_click", "av_alert", "dns_query", "vpn_login", "process_start", "password_change", "mfa_push"]


class SearchEvents(SiemQuery):
    kind: EventKind | None = Field(default=None, description="Only events of this kind.")


# edr ----------------------------------------------------------------------------------
class GetHost(StrictArgs):
    host: HostRef


class HostActivity(StrictArgs):
    host: HostRef
    lookback_hours: LookbackHours = 24
    limit: Limit = 50


# edr-response -------------------------------------------------------------------------
class HostAction(StrictArgs):
    host: HostRef
    reason: Reason


# identity -----------------------------------------------------------------------------
class GetUser(StrictArgs):
    username: Username


class AccountAction(StrictArgs):
    username: Username
    reason: Reason


# ticketing ----------------------------------------------------------------------------
class OpenTicket(StrictArgs):
    title: Annotated[
        str,
        StringConstraints(min_length=5, max_length=200, strict=True),
        Field(description="One line: what happened, where."),
    ]
    body: Annotated[
        str,
        StringConstraints(min_length=10, max_length=5000, strict=True),
        Field(description="Findings so far, with the evidence."),
    ]
    severity: Severity = Field(description="low, medium, high or critical.")


class AddComment(StrictArgs):
    ticket_id: TicketId
    body: Annotated[
        str, StringConstraints(min_length=2, max_length=5000, strict=True), Field(description="The comment.")
    ]


# intel --------------------------------------------------------------------------------
_HASH = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{64})$")
MAX_IP_LENGTH = 45  # the longest IPv6 text: 0000:0000:0000:0000:0000:ffff:255.255.255.255
_DOMAIN = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class LookupIndicator(StrictArgs):
    kind: Literal["hash", "ip", "domain"] = Field(
        description="hash (md5, sha1 or sha256 hex), ip (v4 or v6) or domain."
    )
    value: Annotated[
        str,
        StringConstraints(min_length=1, max_length=253, strict=True),
        Field(description="The indicator, lower-case."),
    ]

    @model_validator(mode="after")
    def value_matches_kind(self):
        if self.kind == "hash" and not _HASH.match(self.value):
            raise ValueError("value is not an md5, sha1 or sha256 in lower-case hex")
        if self.kind == "domain" and not _DOMAIN.match(self.value):
            raise ValueError("value is not a lower-case domain name")
        if self.kind == "ip":
            # ip_address() takes an IPv6 zone id, any text after "%": no feed keys one.
            if "%" in self.value or len(self.value) > MAX_IP_LENGTH:
                raise ValueError("value is not an IP address (no zone id)")
            try:
                ipaddress.ip_address(self.value)
            except ValueError:
                raise ValueError("value is not an IP address") from None
        return self
