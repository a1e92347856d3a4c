"""POST /api/alerts through the real URLconf: tokens, idempotent intake, sources, throttles, 400/401/403/413/415/429, the schema."""

import asyncio
import json
from datetime import timedelta
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.management import call_command
from django.utils import timezone

from investigations.audit import chain as audit
from investigations.intake import services as intake
from investigations.intake.services import AlertIn, create_integration
from investigations.models import Alert, AuditRecord, Integration, Investigation
from toolserver.ratelimit import get_rate_limiter

URL = "/api/alerts"
MARKER = "zq-attacker-text-7731"  # a submitted value no answer may echo


@pytest.fixture
def integration_token(db):
    integration, token = create_integration("lab-siem")
    return integration, token


def an_alert(**overrides) -> dict:
    alert = {
        "source": "lab-siem",
        "external_id": "SIEM-42",
        "title": "Beacon to a known C2 address",
        "severity": "high",
        "host": "ws-0142",
        "user": "j.doe",
        "observed_at": (timezone.now() - timedelta(minutes=10)).isoformat(),
        "details": {"rule": "c2-beacon", "destination": "185.220.101.47"},
    }
    alert.update(overrides)
    return {key: value for key, value in alert.items() if value is not None}


def post(client, body, token=None, content_type="application/json", **headers):
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type=content_type, headers=headers)


# -- intake ----------------------------------------------------------------------------------


def test_a_new_alert_is_201_and_the_same_alert_again_is_200_with_the_same_ids(client, integration_token):
    integration, token = integration_token

    first = post(client, an_alert(), token)
    assert first.status_code == 201
    body = first.json()
    assert body["created"] is True and body["status"] == "queued"
    alert = Alert.objects.get()
    investigation = Investigation.objects.get()
    assert (body["alert_id"], body["investigation_id"]) == (alert.pk, investigation.pk)
    assert body["investigation_url"] == f"/investigations/{investigation.pk}/"
    assert alert.integration == integration and alert.account == "j.doe"

    again = post(client, an_alert(title="Sent a second time"), token)
    assert again.status_code == 200
    assert again.json() == body | {"created": False}
    assert (Alert.objects.count(), Investigation.objects.count()) == (1, 1)
    assert Alert.objects.get().title == "Beacon to a known C2 address"


def test_another_integration_cannot_pre_send_ids_of_a_source_it_does_not_own(client, integration_token):
    """The squatting: B sends A's next ids first; B is refused, and A's real alert is then investigated."""
    integration, token = integration_token
    _, squatter_token = create_integration("other-siem")

    squatted = post(client, an_alert(), squatter_token)
    assert squatted.status_code == 403
    assert not Alert.objects.exists() and not Investigation.objects.exists()

    real = post(client, an_alert(), token)
    assert real.status_code == 201
    assert real.json()["created"] is True
    alert = Alert.objects.get()
    assert alert.integration == integration
    investigation = alert.investigations.get()
    assert investigation.status == Investigation.Status.QUEUED
    assert real.json()["investigation_id"] == investigation.pk


@pytest.mark.parametrize("change", ["revoked", "source given to another"])
def test_an_integration_changed_between_its_token_check_and_its_intake_is_judged_as_it_is_now(
    integration_token, change
):
    """The token is checked, then the body read and mapped (up to 64 KB), then the intake takes the integration's
    lock: a revocation, or its source handed to another integration, in between must still count."""
    integration, token = integration_token
    checked = intake.integration_for(token)  # as the API found it
    if change == "revoked":
        Integration.objects.filter(pk=integration.pk).update(revoked_at=timezone.now())
    else:
        intake.set_sources(integration, ["lab-siem-old"], by="test")
        intake.set_sources(create_integration("new-siem")[0], ["lab-siem"], by="test")
    for receive in (
        lambda: intake.receive_alert(AlertIn(**an_alert()), integration=checked),
        lambda: intake.receive_batch([AlertIn(**an_alert())], integration=checked, source="lab-siem"),  # a format's
    ):
        before = AuditRecord.objects.filter(kind="intake").count()
        with pytest.raises(intake.SourceNotAllowed):
            receive()
        assert not Alert.objects.exists() and not Investigation.objects.exists()
        (record,) = AuditRecord.objects.filter(kind="intake")[before:]  # kept, once, though the batch rolled back
        assert record.reason == ("integration_revoked" if change == "revoked" else "source_not_allowed")


def test_a_source_name_holds_no_colon_so_that_an_alert_is_named_once(db):
    """A write's key names its alert "source:external_id": with sources "siem" and "siem:eu", alert "eu:4711" of
    one and "4711" of the other were one alert, and the second's approved isolation was answered "done"."""
    siem_eu, _ = create_integration("siem-eu")
    with pytest.raises(ValueError, match='"siem:eu" is not a source name'):
        intake.set_sources(siem_eu, ["siem:eu"], by="test")
    siem_eu.refresh_from_db()
    assert siem_eu.sources == ["siem-eu"]  # refused whole: nothing of it kept
    assert create_integration("siem:eu")[0].sources == []  # its name is no source: it is given its sources


def test_a_foreign_source_is_403_and_one_audit_record_naming_who_tried(client, integration_token):
    _, squatter_token = create_integration("other-siem")
    before = AuditRecord.objects.count()

    response = post(client, an_alert(external_id=f"SIEM-{MARKER}"), squatter_token)
    assert response.status_code == 403
    assert set(response.json()) == {"detail"} and "source" in response.json()["detail"]
    assert MARKER not in response.content.decode()

    (record,) = AuditRecord.objects.filter(seq__gt=before)
    assert (record.kind, record.outcome, record.reason) == ("intake", "denied", "source_not_allowed")
    assert record.actor == "integration:other-siem"
    assert record.extra == {"source": "lab-siem", "external_id": f"SIEM-{MARKER}"}
    assert audit.verify_database()[1] is None
    # Its own source is still welcome.
    assert post(client, an_alert(source="other-siem"), squatter_token).status_code == 201


def test_an_alert_is_unique_per_integration_not_across_them(client, integration_token):
    """A new integration given a revoked one's source (a rotated SIEM) sends the same ids as new alerts."""
    _, token = integration_token
    assert post(client, an_alert(), token).status_code == 201
    call_command("integrations", "revoke", "lab-siem", stdout=StringIO())
    _, new_token = create_integration("lab-siem-2")
    call_command("integrations", "sources", "lab-siem-2", "lab-siem", stdout=StringIO())

    response = post(client, an_alert(), new_token)
    assert response.status_code == 201 and response.json()["created"] is True
    assert Alert.objects.filter(source="lab-siem", external_id="SIEM-42").count() == 2
    assert Investigation.objects.count() == 2


def test_another_external_id_is_another_alert(client, integration_token):
    _, token = integration_token
    first = post(client, an_alert(external_id="SIEM-1"), token).json()
    second = post(client, an_alert(external_id="SIEM-2", host="ws-0143"), token)  # another host: not grouped
    assert second.status_code == 201 and second.json()["joined"] is False
    assert second.json()["investigation_id"] != first["investigation_id"]
    assert Investigation.objects.count() == 2


def test_a_token_in_use_is_recorded_as_used(client, integration_token):
    integration, token = integration_token
    assert integration.last_used_at is None
    post(client, an_alert(), token)
    integration.refresh_from_db()
    assert integration.last_used_at is not None


# -- throttles ------------------------------------------------------------------------------


@pytest.fixture
def fresh_rate(integration_token):
    """The integration's window starts empty (a production run's Redis outlives the test database and its ids)."""
    integration, _ = integration_token
    get_rate_limiter().reset(intake.rate_bucket(integration))
    yield
    get_rate_limiter().reset(intake.rate_bucket(integration))


def test_past_the_intake_rate_an_integration_gets_429_with_retry_after(client, integration_token, fresh_rate, settings):
    _, token = integration_token
    _, other_token = create_integration("other-siem")
    settings.INTAKE_RATE = (3, 60)

    answers = [post(client, an_alert(external_id=f"SIEM-{n}"), token).status_code for n in range(3)]
    assert answers == [201, 201, 201]
    throttled = post(client, an_alert(external_id="SIEM-3"), token)
    assert throttled.status_code == 429
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert "3 alerts in 60 s" in throttled.json()["detail"]
    assert post(client, "not json", token).status_code == 429  # counted before the body is read
    assert Alert.objects.count() == 3
    # Another integration has a window of its own.
    get_rate_limiter().reset(intake.rate_bucket(Integration.objects.get(name="other-siem")))
    assert post(client, an_alert(source="other-siem"), other_token).status_code == 201


def test_past_the_queued_cap_an_integration_gets_429_until_one_starts(client, integration_token, fresh_rate, settings):
    _, token = integration_token
    settings.INTAKE_MAX_QUEUED = 2

    # Each on its own host: alerts of one rule on one host would join one investigation (grouping).
    assert [post(client, an_alert(external_id=f"SIEM-{n}", host=f"ws-{n}"), token).status_code for n in range(2)] == [
        201,
        201,
    ]
    full = post(client, an_alert(external_id="SIEM-2", host="ws-2"), token)
    assert full.status_code == 429
    assert int(full["Retry-After"]) >= 1
    assert Investigation.objects.count() == 2
    assert (
        post(client, an_alert(external_id="SIEM-0", host="ws-0"), token).status_code == 200
    )  # a repeat starts nothing: not refused

    Investigation.objects.filter(alert__external_id="SIEM-0").update(status=Investigation.Status.RUNNING)
    assert post(client, an_alert(external_id="SIEM-2", host="ws-2"), token).status_code == 201


# -- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer",
        "Basic bGFiLXNpZW06c2VjcmV0",
        "Bearer ghi_not-a-token-of-ours-0123456789",
        "Bearer something-else-entirely",
    ],
)
def test_no_token_or_a_wrong_token_is_401_with_a_bearer_challenge(client, integration_token, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = post(client, an_alert(), **headers)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["detail"]
    presented = (authorization or "").partition(" ")[2]
    if presented:
        assert presented not in response.content.decode()
    assert not Alert.objects.exists()


def test_a_presented_but_unknown_token_is_named_invalid_in_the_challenge(client, integration_token):
    _, token = integration_token
    response = post(client, an_alert(), token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert token[:-1] not in response.content.decode()


def test_a_revoked_token_is_401(client, integration_token):
    integration, token = integration_token
    Integration.objects.filter(pk=integration.pk).update(revoked_at=timezone.now())
    response = post(client, an_alert(), token)
    assert response.status_code == 401
    assert token not in response.content.decode()
    assert not Alert.objects.exists()


def test_the_token_is_stored_only_as_a_hash_and_a_prefix(client, integration_token):
    integration, token = integration_token
    assert post(client, an_alert(), token).status_code == 201

    row = Integration.objects.values().get(pk=integration.pk)
    assert row["token_prefix"] == token[:10] and len(row["token_hash"]) == 64
    assert token not in row["token_hash"]
    # Nowhere in the database: every table, as dumpdata sees it, after the token was used.
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert token[:10] in dump.getvalue()  # the dump does hold the integration row...
    assert token not in dump.getvalue()  # ...but never the token itself


# -- invalid input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert", "field"),
    [
        (an_alert(title=None), "title"),
        (an_alert(title="   "), "title"),
        (an_alert(severity=MARKER), "severity"),
        (an_alert(colour=MARKER), "colour"),
        (an_alert(**{f"<script>{MARKER}</script>": 1}), "?"),  # a made-up key is attacker text too
        (an_alert(observed_at=(timezone.now() - timedelta(hours=1)).replace(tzinfo=None).isoformat()), "observed_at"),
        (an_alert(observed_at=(timezone.now() + timedelta(days=1)).isoformat()), "observed_at"),
        (an_alert(observed_at=MARKER), "observed_at"),
        (an_alert(details=MARKER), "details"),
        (an_alert(host=f"ws 0142 {MARKER}"), "host"),
    ],
    ids=[
        "no-title",
        "blank-title",
        "bad-severity",
        "unknown-field",
        "unknown-odd-key",
        "naive-time",
        "future-time",
        "not-a-time",
        "details-not-object",
        "host-pattern",
    ],
)
def test_invalid_alert_is_400_naming_the_field_and_never_the_value(client, integration_token, alert, field):
    _, token = integration_token
    response = post(client, alert, token)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Invalid alert."
    assert [error["field"] for error in body["errors"]] == [field]
    assert body["errors"][0]["message"]
    assert MARKER not in response.content.decode()
    assert "script" not in response.content.decode()
    assert not Alert.objects.exists()


def test_a_naive_time_is_refused_for_lacking_its_time_zone(client, integration_token):
    _, token = integration_token
    naive = "2026-01-01T10:00:00"
    response = post(client, an_alert(observed_at=naive), token)
    assert response.status_code == 400
    assert "time zone" in response.json()["errors"][0]["message"]
    assert naive not in response.content.decode()


def test_several_invalid_fields_are_all_reported(client, integration_token):
    _, token = integration_token
    response = post(client, an_alert(title=None, severity="urgent", extra=1), token)
    assert response.status_code == 400
    assert sorted(error["field"] for error in response.json()["errors"]) == ["extra", "severity", "title"]


@pytest.mark.parametrize(
    "raw",
    ['{"source": "lab-siem", "title": "' + MARKER, "not json " + MARKER, "   "],
    ids=["truncated", "not-json", "blank"],
)
def test_a_body_that_is_not_json_is_400(client, integration_token, raw):
    _, token = integration_token
    response = post(client, raw, token)
    assert response.status_code == 400
    assert response.json()["detail"]
    assert MARKER not in response.content.decode()


def test_an_empty_json_body_is_400(client, integration_token):
    _, token = integration_token
    # The test client sends no Content-Type without data: set it, as `curl -H` would.
    response = client.generic(
        "POST", URL, b"", headers={"Authorization": f"Bearer {token}"}, CONTENT_TYPE="application/json"
    )
    assert response.status_code == 400
    assert "empty" in response.json()["detail"]


def test_json_that_is_not_an_object_is_400_for_the_whole_body(client, integration_token):
    _, token = integration_token
    response = post(client, [MARKER], token)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == [None]
    assert MARKER not in response.content.decode()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_declared_json_is_415(client, integration_token, content_type):
    _, token = integration_token
    response = post(client, an_alert(), token, content_type=content_type)
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]
    assert not Alert.objects.exists()


def test_json_with_a_charset_parameter_is_accepted(client, integration_token):
    _, token = integration_token
    assert post(client, an_alert(), token, content_type="application/json; charset=utf-8").status_code == 201


# -- size -----------------------------------------------------------------------------------


def padded_alert(size: int) -> bytes:
    """A valid alert whose JSON body is exactly `size` bytes."""
    empty = json.dumps(an_alert(details={"padding": ""})).encode()
    body = json.dumps(an_alert(details={"padding": "x" * (size - len(empty))})).encode()
    assert len(body) == size
    return body


def test_an_alert_of_exactly_the_limit_is_accepted(client, integration_token):
    _, token = integration_token
    assert post(client, padded_alert(settings.ALERT_MAX_BYTES), token).status_code == 201


@pytest.mark.parametrize("size", [settings.ALERT_MAX_BYTES + 1, settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1])
def test_a_larger_alert_is_413(client, integration_token, size):
    _, token = integration_token
    response = post(client, padded_alert(size), token)
    assert response.status_code == 413
    assert response.json() == {"detail": f"The alert is larger than {settings.ALERT_MAX_BYTES} bytes."}
    assert not Alert.objects.exists()


def asgi_post(body: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict]:
    """POST through Django's ASGI handler as uvicorn would pass a chunked request: no Content-Length."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"transfer-encoding", b"chunked"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    sent: list[dict] = []

    async def receive():
        if chunks:
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}
        await asyncio.get_running_loop().create_future()  # the client stays connected

    async def send(message):
        sent.append(message)

    async_to_sync(get_asgi_application())(scope, receive, send)
    status = sent[0]["status"]
    content = b"".join(message.get("body", b"") for message in sent[1:])
    return status, json.loads(content)


@pytest.mark.django_db(transaction=True)  # the ASGI handler's own request handling closes connections
@pytest.mark.parametrize("size", [settings.ALERT_MAX_BYTES + 1, settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1])
def test_a_larger_chunked_alert_without_content_length_is_413(size):
    _, token = create_integration("chunked-siem")
    headers = [(b"content-type", b"application/json"), (b"authorization", f"Bearer {token}".encode())]

    # A small chunked body does reach validation (so the 413 below is about its size).
    status, body = asgi_post(json.dumps(an_alert(severity="urgent")).encode(), headers)
    assert (status, [error["field"] for error in body["errors"]]) == (400, ["severity"])

    status, body = asgi_post(padded_alert(size), headers)
    assert status == 413
    assert body == {"detail": f"The alert is larger than {settings.ALERT_MAX_BYTES} bytes."}
    assert not Alert.objects.exists()


# -- OpenAPI --------------------------------------------------------------------------------


def test_the_openapi_schema_describes_the_endpoint(client, db):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    operation = schema["paths"][URL]["post"]
    assert {"200", "201", "400", "401", "403", "413", "429"} <= set(operation["responses"])
    assert operation["security"] == [{"IntegrationToken": []}]
    scheme = schema["components"]["securitySchemes"]["IntegrationToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")

    body_ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    alert_in = schema["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert set(alert_in["properties"]) == set(AlertIn.model_fields)
    assert alert_in["additionalProperties"] is False
    assert alert_in["properties"]["severity"]["enum"] == ["low", "medium", "high", "critical"]
    received_ref = operation["responses"]["201"]["content"]["application/json"]["schema"]["$ref"]
    received = schema["components"]["schemas"][received_ref.rsplit("/", 1)[1]]
    assert set(received["properties"]) == {
        "alert_id",
        "investigation_id",
        "created",
        "joined",
        "status",
        "investigation_url",
    }
