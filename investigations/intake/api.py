"""POST /api/alerts: how a SIEM (an integration, with its bearer token) hands Gatehouse an alert."""

from functools import wraps

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from ninja import Field, Router, Schema, Status
from ninja.decorators import decorate_view
from ninja.security import HttpBearer

from core.problems import InvalidInput, Problem, TokenRejected
from investigations.intake.services import (
    AlertIn,
    SourceNotAllowed,
    admit,
    integration_for,
    receive_alert,
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


class AlertReceived(Schema):
    alert_id: int
    investigation_id: int
    created: bool = Field(
        description="False when this integration sent this source and external_id before: nothing new was started."
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
        201: AlertReceived, 200: AlertReceived, 400: InvalidInput, 401: Problem, 403: Problem, 413: Problem,
        415: Problem, 429: Problem,
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
    investigation = received.investigation
    return Status(
        201 if received.created else 200,
        AlertReceived(
            alert_id=received.alert.pk,
            investigation_id=investigation.pk,
            created=received.created,
            status=investigation.status,
            investigation_url=f"/investigations/{investigation.pk}/",
        ),
    )
