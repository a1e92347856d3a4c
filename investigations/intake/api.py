"""POST /api/alerts: how a SIEM (an integration, with its bearer token) hands Gatehouse an alert.

POST /api/alerts/{format}: the same, in the payload another system sends as it is (Splunk,
Alertmanager, Wazuh, OCSF), mapped on the server (investigations/intake/formats/) and received by
the same service. Splunk cannot send a header: POST /api/alerts/splunk/{token} takes its token in
the path, which the logs never print (console/logs.py RedactTokens).
"""

from functools import wraps
from typing import Any, Literal, get_args

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from ninja import Body, Field, Query, Router, Schema, Status
from ninja.decorators import decorate_view
from ninja.security import HttpBearer

from core.problems import InvalidInput, Problem, TokenRejected
from investigations.intake.formats import FORMATS
from investigations.intake.services import (
    AlertIn,
    InvalidPayload,
    SourceNotAllowed,
    admit,
    integration_for,
    read_format,
    receive_alert,
    receive_batch,
    source_for,
)

router = Router(tags=["alerts"])


class IntegrationToken(HttpBearer):
    """An integration's token, from `manage.py integrations create`."""

    openapi_bearerFormat = "ghi_..."  # shown in the OpenAPI security scheme
    openapi_description = "An integration token from `manage.py integrations create NAME`."

    def __call__(self, request):
        # Parsed here rather than by HttpBearer, which logs a malformed header (a token, maybe) in DEBUG.
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("Authentication required: send Authorization: Bearer <integration token>.")
        return self.authenticate(request, token.strip())

    def authenticate(self, request, token: str):
        integration = integration_for(token)
        if integration is None:
            raise TokenRejected("The token is unknown or revoked.", invalid_token=True)
        admit(integration)  # every request counts, a valid alert or not; past the rate: 429 (console/api.py)
        return integration


class PathToken:
    """Splunk's webhook sends no header: its integration token is the last segment of the URL.

    Judged like the header's (unknown or revoked: 401; counted against the rate) before the body is read.
    """

    def __call__(self, request):
        token = (request.resolver_match.kwargs.get("token") or "") if request.resolver_match else ""
        return IntegrationToken().authenticate(request, token.strip())


class AlertReceived(Schema):
    alert_id: int
    investigation_id: int
    created: bool = Field(
        description="False when this integration sent this source and external_id before: nothing new was started."
    )
    joined: bool = Field(
        False,
        description="True when the alert joined an open investigation of its grouping key (the integration's rule "
        "and host, or rule and user) instead of starting one: investigation_id is that investigation.",
    )
    status: str = Field(description="The investigation's status: queued, running, waiting, completed or failed.")
    investigation_url: str


def _refused(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


def limit_body(run):
    """Refuse a body that is too large, not JSON or empty before ninja parses it.

    It wraps the whole operation, so it runs before the token lookup too: none of this needs the database.
    """

    @wraps(run)
    def checked(request, *args, **kwargs):
        limit = settings.ALERT_MAX_BYTES
        too_large = f"The alert is larger than {limit} bytes."
        if int(request.META.get("CONTENT_LENGTH") or 0) > limit:
            return _refused(413, too_large)
        if request.content_type != "application/json":
            return _refused(415, "Send the alert as JSON, with Content-Type: application/json.")
        try:
            # A chunked request has no Content-Length: measure what came. Django refuses to
            # read past DATA_UPLOAD_MAX_MEMORY_SIZE, so this never holds more than that.
            body = request.body
        except RequestDataTooBig:
            return _refused(413, too_large)
        if len(body) > limit:
            return _refused(413, too_large)
        if not body.strip():
            return _refused(400, "The body is empty: send the alert as a JSON object.")
        return run(request, *args, **kwargs)

    return checked


@router.post(
    "/alerts",
    auth=IntegrationToken(),
    response={
        201: AlertReceived,
        200: AlertReceived,
        400: InvalidInput,
        401: Problem,
        403: Problem,
        413: Problem,
        415: Problem,
        429: Problem,
    },
    url_name="receive_alert",
    operation_id="receive_alert",
    summary="Receive an alert",
)
@decorate_view(limit_body)
def receive(request, alert: AlertIn):
    """Save the alert and start its investigation (201). The same `source` and `external_id` again
    from this integration returns the alert and investigation made the first time (200) and starts
    nothing; another integration's alerts never count as this one's.

    A `source` that is not one of this integration's (`manage.py integrations sources`) is refused
    (403) and recorded in the audit trail. Past the integration's rate (GATEHOUSE_INTAKE_RATE) or
    with too many of its investigations queued (GATEHOUSE_INTAKE_MAX_QUEUED): 429 with Retry-After.
    Invalid input is answered 400 with one error per field, never echoing what was sent.
    """
    try:
        received = receive_alert(alert, integration=request.auth)
    except SourceNotAllowed as refused:
        return Status(403, Problem(detail=str(refused)))
    return Status(201 if received.created else 200, _answer(received))


def _answer(received) -> AlertReceived:
    investigation = received.investigation
    return AlertReceived(
        alert_id=received.alert.pk,
        investigation_id=investigation.pk,
        created=received.created,
        joined=received.joined,
        status=investigation.status,
        investigation_url=f"/investigations/{investigation.pk}/",
    )


Format = Literal["splunk", "alertmanager", "wazuh", "ocsf"]
assert set(get_args(Format)) == set(FORMATS), "the route's formats are the registry's"  # noqa: S101 - at import


class ResolvedNoted(Schema):
    external_id: str
    investigation_id: int | None = Field(
        description="The open investigation the resolve was noted on; null when none is open or the alert is unknown."
    )


class FormatReceived(Schema):
    alerts: list[AlertReceived] = Field(description="One per alert the payload holds (Alertmanager: per firing entry).")
    resolved: list[ResolvedNoted] = Field(
        description="Alerts the sender reports over (Alertmanager: resolved entries; OCSF: Close)."
    )


class SourceQuery(Schema):
    source: str | None = Field(
        None,
        max_length=64,
        description="The alerts' source, one of the integration's; by default its only source (or its name).",
    )


FORMAT_RESPONSES = {
    201: FormatReceived,
    200: FormatReceived,
    400: InvalidInput,
    401: Problem,
    403: Problem,
    413: Problem,
    415: Problem,
    429: Problem,
}


@router.post(
    "/alerts/{format}",
    auth=IntegrationToken(),
    response=FORMAT_RESPONSES,
    url_name="receive_formatted_alert",
    operation_id="receive_formatted_alert",
    summary="Receive alerts in a sender's own format",
)
@decorate_view(limit_body)
def receive_formatted(request, format: Format, payload: Body[dict[str, Any]], query: Query[SourceQuery]):
    """The payload another system sends, as it sends it: `splunk` (webhook alert action), `alertmanager`
    (webhook_config, version 4), `wazuh` (an alert, as integrations/wazuh/custom-gatehouse posts it) or
    `ocsf` (a Detection Finding, class 2004). Each alert it holds is received as POST /api/alerts receives
    one (the integration's sources, deduplication, limits, audit), all or none: 201 when any is new,
    else 200. Fields the format does not use are ignored; the payload is kept in each alert's details.
    A payload that lacks what its format needs is 400 naming the field as a path in that payload, and
    nothing is stored.
    """
    return _receive(request, format, payload, query.source)


@router.post(
    "/alerts/splunk/{token}",
    auth=PathToken(),
    response=FORMAT_RESPONSES,
    url_name="receive_splunk_alert",
    operation_id="receive_splunk_alert",
    summary="Receive a Splunk webhook alert, the token in the URL",
)
@decorate_view(limit_body)
def receive_splunk(request, token: str, payload: Body[dict[str, Any]], query: Query[SourceQuery]):
    """POST /api/alerts/splunk, for Splunk's webhook alert action, which cannot send an Authorization
    header: the integration token is the URL's last segment (`token`). Never printed in the logs."""
    return _receive(request, "splunk", payload, query.source)


def _receive(request, format_name: str, payload: dict, requested_source: str | None):
    integration = request.auth
    source = source_for(integration, requested_source)
    try:
        alerts, resolved = read_format(format_name, payload, integration=integration, source=source)
        received, noted = receive_batch(alerts, integration=integration, source=source, resolved=resolved)
    except InvalidPayload as invalid:
        return Status(400, InvalidInput(detail="Invalid alert.", errors=invalid.errors))
    except SourceNotAllowed as refused:
        return Status(403, Problem(detail=str(refused)))
    return Status(
        201 if any(one.created for one in received) else 200,
        FormatReceived(
            alerts=[_answer(one) for one in received],
            resolved=[
                ResolvedNoted(external_id=one.external_id, investigation_id=one.investigation and one.investigation.pk)
                for one in noted
            ],
        ),
    )
