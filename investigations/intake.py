"""Alert intake: the one way an alert enters, from the API (an integration) or the console form (an analyst).

The same `source` + `external_id` is the same alert: sending it again returns the alert and
investigation already made, and starts nothing new.
"""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from django.db import IntegrityError, transaction
from django.utils import timezone
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from investigations import details as alert_details
from investigations.models import Alert, Integration, Investigation
from investigations.services import start_investigation

NAME = r"^[A-Za-z0-9][A-Za-z0-9._:@/#-]*$"  # identifiers: no spaces, nothing that reads as markup


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

    source: Annotated[str, Field(min_length=1, max_length=64, pattern=NAME, description="The sending system, e.g. `lab-siem`.")]
    external_id: Annotated[str, Field(min_length=1, max_length=128, pattern=NAME, description="The alert's id in that system.")]
    title: Annotated[str, Field(min_length=1, max_length=300)]
    severity: Literal["low", "medium", "high", "critical"]
    host: Annotated[str | None, Field(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = None
    user: Annotated[str | None, Field(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@\\-]*$")] = None
    observed_at: Annotated[AwareDatetime, AfterValidator(_not_in_future), Field(description="ISO-8601 with a time zone.")]
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


def receive_alert(alert_in: AlertIn, *, integration: Integration | None = None, submitted_by=None) -> Received:
    """Save the alert and start its investigation; the same alert again returns the first ones."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                source=alert_in.source,
                external_id=alert_in.external_id,
                title=alert_in.title,
                severity=alert_in.severity,
                host=alert_in.host or "",
                account=alert_in.user or "",
                observed_at=alert_in.observed_at,
                details=alert_in.details,
                integration=integration,
                submitted_by=submitted_by,
            )
            investigation = start_investigation(alert, requested_by=submitted_by)
    except IntegrityError:
        alert = Alert.objects.get(source=alert_in.source, external_id=alert_in.external_id)
        return Received(alert, alert.investigations.order_by("created_at").first(), created=False)
    return Received(alert, investigation, created=True)


# -- integration tokens ---------------------------------------------------------------------
TOKEN_PREFIX = "ghi_"  # Gatehouse integration: recognisable in a leaked-secret scan


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_integration(name: str, *, created_by=None) -> tuple[Integration, str]:
    """A new integration and its token. The token is returned once and stored only as a hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    integration = Integration.objects.create(
        name=name, token_prefix=token[:10], token_hash=hash_token(token), created_by=created_by
    )
    return integration, token


def integration_for(token: str) -> Integration | None:
    """The live integration a bearer token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    integration = Integration.objects.filter(token_hash=hash_token(token), revoked_at__isnull=True).first()
    if integration is not None:
        Integration.objects.filter(pk=integration.pk).update(last_used_at=timezone.now())
    return integration
