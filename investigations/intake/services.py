"""Alert intake: the one way an alert enters, from the API (an integration) or the console form (an analyst).

The same `source` + `external_id` from the same integration is the same alert: sending it again
returns the alert and investigation already made, and starts nothing new. An integration sends
only its own sources (a foreign one is refused and audited), at most settings.INTAKE_RATE alerts
per window, and while at most settings.INTAKE_MAX_QUEUED of its investigations wait for a worker.

Grouping: an integration's alert whose grouping key (`group_key`: its rule and host, or its rule
and user, as the integration says) is that of an open investigation of the same integration
started within its window joins that investigation as a related alert: a storm of one detection
on one host is one investigation. The first alert stays the investigation's alert, so the
idempotency keys of the writes it asks for stay those of the first alert (architecture rule 6).
Start cap: at most `starts_per_minute` investigations of an integration are handed to workers in
any minute; the rest are made at once but held queued, and released oldest first by the next
intake or the sweep (`release_held`) as the minute allows. Both are decided under the
integration's row lock, so two alerts of one key at once make one investigation, and none is
handed over twice.
"""

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from core.inputs import DateTime
from investigations.audit import chain as audit
from investigations.intake import details as alert_details
from investigations.intake import formats
from investigations.intake.formats.base import EXTERNAL_ID_MAX
from investigations.models import Alert, Event, Integration, Investigation
from investigations.runs import events
from investigations.runs.services import end_unstarted, release, start_investigation
from toolserver.ratelimit import Limit, get_rate_limiter

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@/#-]*$"  # identifiers: no spaces, nothing that reads as markup
# An integration's sources hold no ":": a write's key names its alert as "source:external_id" (Alert.trigger),
# and "siem:eu" + "4711" would be "siem" + "eu:4711", another integration's alert, its write already done.
SOURCE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@/#-]*$"
SOURCE_MAX = 64
CONSOLE_SOURCE = "console"  # alerts typed in by an analyst: no integration may send it
# A full queue drains as workers start investigations, at no time anyone can know: a hint.
QUEUE_FULL_RETRY_AFTER_S = 30


def _bounded_details(value: dict) -> dict:
    if (why := alert_details.problem(value)) is not None:
        raise ValueError(why)
    return value


def _not_in_future(value: datetime) -> datetime:
    if value > timezone.now() + timedelta(minutes=5):
        raise ValueError("must not be in the future")
    return value


class AlertIn(BaseModel):
    """An alert as a SIEM sends it. Unknown fields are refused, not dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    source: Annotated[
        str,
        Field(min_length=1, max_length=SOURCE_MAX, pattern=NAME, description="The sending system, e.g. `lab-siem`."),
    ]
    external_id: Annotated[
        str, Field(min_length=1, max_length=EXTERNAL_ID_MAX, pattern=NAME, description="The alert's id in that system.")
    ]
    title: Annotated[str, Field(min_length=1, max_length=300)]
    rule: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=300,
            description="What fired the alert, the same for each of its alerts (a rule or search name); by default "
            "its title. With the host or user, the key alerts are grouped by.",
        ),
    ] = None
    severity: Literal["low", "medium", "high", "critical"]
    host: Annotated[str | None, Field(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = None
    user: Annotated[str | None, Field(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@\\-]*$")] = None
    observed_at: Annotated[
        DateTime,
        AfterValidator(_not_in_future),
        Field(description="RFC 3339 with a time zone, e.g. `2026-11-25T09:30:00Z`."),
    ]
    details: Annotated[dict[str, Any], AfterValidator(_bounded_details)] = Field(
        default_factory=dict,
        description=f"Anything else the source knows: kept as data. At most {alert_details.MAX_DEPTH} levels deep and "
        f"{alert_details.MAX_NODES} values.",
    )


@dataclass(frozen=True)
class Received:
    alert: Alert
    investigation: Investigation
    created: bool
    joined: bool = False  # the alert joined an open investigation of its grouping key


class SourceNotAllowed(Exception):
    """The integration sent an alert of a source that is not one of its own (or was revoked meanwhile).
    `refusal`: what its audit record says, (integration, reason, details), to record it again when a
    caller's transaction rolled it back."""

    def __init__(self, message: str, refusal: tuple[str, str, dict]):
        super().__init__(message)
        self.refusal = refusal


class Throttled(Exception):
    """Too much from one integration: try again after `retry_after` seconds (HTTP 429)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


def rate_bucket(integration: Integration) -> str:
    return f"intake:{integration.pk}"


def admit(integration: Integration) -> None:
    """Count one request of `integration` against its rate, shared by every web process (Redis in production)."""
    wait = get_rate_limiter().acquire(rate_bucket(integration), Limit(*settings.INTAKE_RATE))
    if wait is not None:
        calls, seconds = settings.INTAKE_RATE
        raise Throttled(f"More than {calls} alerts in {seconds} s from this integration.", wait)


def receive_alert(alert_in: AlertIn, *, integration: Integration | None = None, submitted_by=None) -> Received:
    """Save the alert and start its investigation; the same alert again returns the first ones.

    From an integration: refused (SourceNotAllowed, audited) when the source is not its own, and
    Throttled when a new alert would put more than INTAKE_MAX_QUEUED of its investigations in the queue.
    """
    if integration is not None:
        _check_source(integration, alert_in.source, alert_in.external_id)
    same = {"integration": integration, "source": alert_in.source, "external_id": alert_in.external_id}
    key, joined, hold = "", None, False
    try:
        with transaction.atomic():
            if integration is not None:
                # One intake at a time per integration, so two requests cannot both take the last queue
                # place, both start an investigation of one key, or both take the minute's last start.
                integration = Integration.objects.select_for_update().get(pk=integration.pk)
                if integration.revoked_at is not None or alert_in.source not in integration.sources:
                    raise _ChangedSinceChecked(integration)  # judged as it is now, outside this transaction
                alert = Alert.objects.filter(**same).first()
                if alert is not None:
                    return _first_received(alert)
                key = group_key(integration, alert_in)
                joined = open_investigation_of(integration, key)
                if joined is None:
                    _check_queue(integration)
                    hold = release_due(integration)[1] <= 0
            alert = Alert.objects.create(
                source=alert_in.source,
                external_id=alert_in.external_id,
                title=alert_in.title,
                rule=alert_in.rule or alert_in.title,
                severity=alert_in.severity,
                host=alert_in.host or "",
                account=alert_in.user or "",
                observed_at=alert_in.observed_at,
                details=alert_in.details,
                integration=integration,
                submitted_by=submitted_by,
                group_key=key,
                joined=joined,
            )
            if joined is not None:
                return Received(alert, joined, created=True, joined=True)
            investigation = start_investigation(alert, requested_by=submitted_by, hold=hold)
    except _ChangedSinceChecked as changed:
        _refuse_changed(changed.integration, alert_in)
    except IntegrityError:
        return _first_received(Alert.objects.get(**same))
    return Received(alert, investigation, created=True)


def _first_received(alert: Alert) -> Received:
    """The alert sent again: the investigation it started, or the one it joined."""
    investigation = alert.joined or alert.investigations.order_by("created_at").first()
    return Received(alert, investigation, created=False, joined=alert.joined_id is not None)


def group_key(integration: Integration, alert_in: AlertIn) -> str:
    """The key `integration` groups this alert by: its rule with its host or user; "" (never grouped)
    when the integration does not group or the alert names no such host or user."""
    value = {Integration.GroupBy.RULE_HOST: alert_in.host, Integration.GroupBy.RULE_USER: alert_in.user}.get(
        integration.group_by
    )
    if not value:
        return ""
    return f"{integration.group_by}:{value.lower()}:{alert_in.rule or alert_in.title}"


def open_investigation_of(integration: Integration, key: str) -> Investigation | None:
    """The open investigation of `integration` whose alert has this grouping key, started within its window.

    Locked until the caller's transaction ends, as the agent locks it to conclude (runs.agent): an alert
    joins before the model's last word and is told, or after it and starts an investigation of its own."""
    if not key:
        return None
    since = timezone.now() - timedelta(minutes=integration.group_window_minutes)
    return (
        Investigation.objects.select_for_update(of=("self",))
        .filter(alert__integration=integration, alert__group_key=key, created_at__gte=since)
        .exclude(status__in=Investigation.FINAL)
        .order_by("-created_at")
        .first()
    )


START_CAP_WINDOW = timedelta(minutes=1)
REVOKED_UNSTARTED = "Not started: its integration was revoked while it was held."


def release_due(integration: Integration) -> tuple[list[int], int]:
    """Hand `integration`'s held investigations to workers, oldest first, as far as its start cap allows
    this minute: their ids, and the starts left in the minute after them. The caller holds the
    integration's row lock. A revoked integration's are never started (its token leaked, maybe): they end,
    failed, and an analyst investigates an alert again if it is real."""
    if integration.revoked_at is not None:
        held = Investigation.objects.filter(alert__integration=integration, status=Investigation.Status.QUEUED)
        end_unstarted(list(held.filter(released_at__isnull=True).values_list("pk", flat=True)), REVOKED_UNSTARTED)
        return [], 0
    started = Investigation.objects.filter(
        alert__integration=integration, released_at__gte=timezone.now() - START_CAP_WINDOW
    ).count()
    room = integration.starts_per_minute - started
    released = []
    if room > 0:
        held = Investigation.objects.filter(
            alert__integration=integration, status=Investigation.Status.QUEUED, released_at__isnull=True
        ).order_by("created_at", "pk")
        released = release(list(held.values_list("pk", flat=True)[:room]))
    return released, room - len(released)


def release_held() -> list[int]:
    """The sweep's part of the start cap: every integration's held investigations that its minute allows now."""
    held = Investigation.objects.filter(status=Investigation.Status.QUEUED, released_at__isnull=True)
    released = []
    for integration_id in set(held.values_list("alert__integration", flat=True)):
        with transaction.atomic():
            integration = Integration.objects.select_for_update().filter(pk=integration_id).first()
            if integration is not None:
                released += release_due(integration)[0]
    return released


class _ChangedSinceChecked(Exception):
    """Revoked, or its sources changed, between the token's check and the intake's lock on it."""

    def __init__(self, integration: Integration):
        super().__init__(integration.name)
        self.integration = integration


def _refuse_changed(integration: Integration, alert_in: AlertIn) -> None:
    if integration.revoked_at is not None:
        said = {"source": alert_in.source, "external_id": alert_in.external_id}
        raise _refused(
            integration, "integration_revoked", "This integration was revoked: its alerts are refused.", said
        )
    _check_source(integration, alert_in.source, alert_in.external_id)


def _check_source(integration: Integration, source: str, external_id: str) -> None:
    if source not in integration.sources:
        said = {"source": source, "external_id": external_id}
        raise _refused(integration, "source_not_allowed", "This integration may not send alerts of this source.", said)


def _refused(integration: Integration, reason: str, message: str, details: dict) -> SourceNotAllowed:
    audit.record_intake_refused(integration.name, reason, **details)
    return SourceNotAllowed(message, (integration.name, reason, details))


class InvalidPayload(Exception):
    """A sender's payload that is not its format (400): `errors`, one {field, message} per problem,
    each field a dotted path in the sender's payload (None: the payload as a whole), never a value."""

    def __init__(self, errors: list[dict]):
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


def source_for(integration: Integration, requested: str | None) -> str:
    """The source of a format's alerts: the one asked for (`?source=`), else the integration's only
    source, else its name (refused later, audited, if it is not one of its sources)."""
    if requested:
        return requested
    return integration.sources[0] if len(integration.sources) == 1 else integration.name


def read_format(name: str, payload: dict, *, integration: Integration, source: str) -> tuple[list[AlertIn], list[str]]:
    """The alerts (as AlertIn, validated like POST /api/alerts) and the resolved external ids of a
    payload in the format `name` (investigations/intake/formats/); InvalidPayload when it is not one."""
    if not (len(source) <= SOURCE_MAX and re.match(NAME, source)):
        raise InvalidPayload([{"field": "source", "message": "is not a source name"}])
    context = formats.Context(source=source, received_at=timezone.now(), severity_map=integration.severity_map or {})
    try:
        mapping = formats.FORMATS[name](payload, context)
    except formats.FormatError as error:
        raise InvalidPayload([{"field": error.field, "message": error.message}]) from None
    alerts, errors = [], []
    for mapped in mapping.alerts:
        try:
            alerts.append(AlertIn(source=source, **mapped.fields))
        except ValidationError as invalid:
            for error in invalid.errors():
                field = str(error["loc"][0]) if error.get("loc") else None
                where = "source" if field == "source" else mapped.origins.get(field)
                errors.append({"field": where, "message": error.get("msg", "Invalid value.")})
    for external_id in mapping.resolved:
        if not (len(external_id) <= EXTERNAL_ID_MAX and re.match(NAME, external_id)):
            errors.append({"field": None, "message": "a resolved alert's id is not an external id"})
    if errors:
        raise InvalidPayload(errors)
    return alerts, mapping.resolved


@dataclass(frozen=True)
class Resolved:
    """A sender's word that an alert is over: noted on its open investigation, if it has one."""

    external_id: str
    investigation: Investigation | None  # the investigation it was noted on; None: no open one (or no such alert)


def receive_batch(
    alerts: list[AlertIn], *, integration: Integration, source: str, resolved: list[str] = ()
) -> tuple[list[Received], list[Resolved]]:
    """Several alerts of one request (POST /api/alerts/{format}), all or none: each as receive_alert
    takes it (its own integration's source, deduplicated, the queue's cap), in one transaction, so a
    refusal part-way (429) stores nothing and the sender's retry is judged whole. `resolved`: the
    external ids the sender says are over, noted on their alerts' open investigations.

    Sources are checked before the transaction: a refusal's audit record is not rolled back with it.
    """
    for alert_in in alerts:
        _check_source(integration, alert_in.source, alert_in.external_id)
    for external_id in resolved:
        _check_source(integration, source, external_id)
    try:
        with transaction.atomic():
            received = [receive_alert(alert_in, integration=integration) for alert_in in alerts]
            noted = [Resolved(external_id, note_resolved(integration, source, external_id)) for external_id in resolved]
    except SourceNotAllowed as refused:  # judged again under the integration's lock: its record went with the batch
        integration_name, reason, details = refused.refusal
        audit.record_intake_refused(integration_name, reason, **details)
        raise
    return received, noted


def note_resolved(integration: Integration, source: str, external_id: str) -> Investigation | None:
    """Say on the open investigation of this integration's alert (the one it started, or joined) that
    its sender resolved it: one status event (the investigation's status unchanged), once however
    often the sender repeats it. Returns that investigation; None when the alert is unknown or none
    of its investigations is open."""
    alert = Alert.objects.filter(integration=integration, source=source, external_id=external_id).first()
    if alert is None:
        return None
    with transaction.atomic():
        investigation = (
            Investigation.objects.select_for_update()  # its status cannot move while it is read and written
            .filter(Q(alert=alert) | Q(pk=alert.joined_id))
            .exclude(status__in=Investigation.FINAL)
            .order_by("-created_at")
            .first()
        )
        if investigation is None:
            return None
        if not investigation.events.filter(kind=Event.Kind.STATUS, data__resolved=external_id).exists():
            events.record_event(
                investigation.pk,
                Event.Kind.STATUS,
                {
                    "status": investigation.status,
                    "message": f"The source ({source}) reports this alert resolved.",
                    "resolved": external_id,
                },
            )
    return investigation


def _check_queue(integration: Integration) -> None:
    queued = Investigation.objects.filter(alert__integration=integration, status=Investigation.Status.QUEUED).count()
    if queued >= settings.INTAKE_MAX_QUEUED:
        raise Throttled(
            f"{queued} investigations of this integration are waiting for a worker already.", QUEUE_FULL_RETRY_AFTER_S
        )


# -- integration tokens ---------------------------------------------------------------------
TOKEN_PREFIX = "ghi_"  # noqa: S105 - a prefix. Gatehouse integration: recognisable in a leaked-secret scan


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@transaction.atomic
def create_integration(name: str, *, created_by=None, by: str = "system") -> tuple[Integration, str]:
    """A new integration and its token. The token is returned once and stored only as a hash.

    Its source is its own name, when that is a source name no other live integration holds.
    """
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    try:
        sources = _checked_sources([name], _locked_live_integrations())
    except ValueError:
        sources = []
    integration = Integration.objects.create(
        name=name, sources=sources, token_prefix=token[:10], token_hash=hash_token(token), created_by=created_by
    )
    audit.record_admin_change(by, "integration_created", before={}, after={"integration": name, "sources": sources})
    return integration, token


@transaction.atomic
def set_sources(integration: Integration, sources: list[str], *, by: str) -> bool:
    """Give `integration` exactly these sources (ValueError says why not). Returns whether they changed."""
    others = [other for other in _locked_live_integrations() if other.pk != integration.pk]
    sources = _checked_sources(sources, others)
    return _changed(integration, "sources", sources, what="integration_sources", by=by)


SEVERITY_KEY = re.compile(r"^(default|[a-z]+:[^\s=]{1,64})$")


@transaction.atomic
def set_severity_map(integration: Integration, severity_map: dict[str, str], *, by: str) -> bool:
    """Give `integration` exactly this severity map (ValueError says why not). Returns whether it changed.

    Keys: "default" (a sender's severity no mapping knows) or "FORMAT:VALUE", e.g. "wazuh:10" or
    "alertmanager:warning" (values in lower case, as the formats compare them); each maps to one of
    low, medium, high, critical. Recorded in the trail like the integration's sources (architecture rule 11).
    """
    checked = {}
    for key, severity in severity_map.items():
        key = key.strip().lower()
        if not SEVERITY_KEY.match(key) or (key != "default" and key.split(":", 1)[0] not in formats.FORMATS):
            raise ValueError(
                f'"{key}" is not "default" or FORMAT:VALUE with a format of {", ".join(sorted(formats.FORMATS))}'
            )
        if severity not in Alert.Severity.values:
            raise ValueError(f'"{severity}" is not a severity ({", ".join(Alert.Severity.values)})')
        checked[key] = severity
    return _changed(integration, "severity_map", checked, what="integration_severity", by=by)


WINDOW_MAX_MINUTES = 24 * 60
STARTS_MAX_PER_MINUTE = 10_000


@transaction.atomic
def set_grouping(integration: Integration, group_by: str, window_minutes: int, *, by: str) -> bool:
    """How `integration`'s alerts are grouped: `group_by` one of Integration.GroupBy ("rule+host",
    "rule+user", "none") and the window an open investigation gathers its key's alerts in, in minutes
    (ValueError says why not). Recorded like its sources (architecture rule 11). Whether it changed."""
    if group_by not in Integration.GroupBy.values:
        raise ValueError(f'"{group_by}" is not a grouping ({", ".join(Integration.GroupBy.values)})')
    if not 1 <= window_minutes <= WINDOW_MAX_MINUTES:
        raise ValueError(f"the window is 1 to {WINDOW_MAX_MINUTES} minutes")
    changed = _changed(integration, "group_by", group_by, what="integration_grouping", by=by)
    return _changed(integration, "group_window_minutes", window_minutes, what="integration_grouping", by=by) or changed


@transaction.atomic
def set_start_cap(integration: Integration, per_minute: int, *, by: str) -> bool:
    """At most `per_minute` of `integration`'s investigations handed to workers a minute (ValueError
    says why not); recorded (architecture rule 11). Whether it changed."""
    if not 1 <= per_minute <= STARTS_MAX_PER_MINUTE:
        raise ValueError(f"the start cap is 1 to {STARTS_MAX_PER_MINUTE} a minute")
    return _changed(integration, "starts_per_minute", per_minute, what="integration_cap", by=by)


def _changed(integration: Integration, field: str, value, *, what: str, by: str) -> bool:
    """Set one field of `integration` under its row lock, recorded in the trail (architecture rule 11)
    when it changed; whether it did."""
    integration = Integration.objects.select_for_update().get(pk=integration.pk)
    before = getattr(integration, field)
    if value == before:
        return False
    Integration.objects.filter(pk=integration.pk).update(**{field: value})
    audit.record_admin_change(
        by,
        what,
        before={"integration": integration.name, field: before},
        after={"integration": integration.name, field: value},
    )
    return True


def _locked_live_integrations() -> list[Integration]:
    """Every live integration, locked: what a source may not be taken from while it is given."""
    return list(Integration.objects.select_for_update().filter(revoked_at__isnull=True))


def _checked_sources(sources: list[str], others: list[Integration]) -> list[str]:
    checked = sorted({source.strip() for source in sources})
    for source in checked:
        if not (len(source) <= SOURCE_MAX and re.fullmatch(SOURCE_NAME, source)):
            raise ValueError(f'"{source}" is not a source name (1 to {SOURCE_MAX} letters, digits and ._@/#-)')
        if source == CONSOLE_SOURCE:
            raise ValueError(f'"{source}" is the source of alerts typed in the console')
        holder = next((other.name for other in others if source in other.sources), None)
        if holder is not None:
            raise ValueError(
                f'"{source}" is a source of the integration "{holder}" (revoke it, or change its sources, first)'
            )
    return checked


def integration_for(token: str) -> Integration | None:
    """The live integration a bearer token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    integration = Integration.objects.filter(token_hash=hash_token(token), revoked_at__isnull=True).first()
    if integration is not None:
        Integration.objects.filter(pk=integration.pk).update(last_used_at=timezone.now())
    return integration
