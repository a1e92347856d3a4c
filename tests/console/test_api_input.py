"""Hostile input to the API: 400 naming the field or 2xx, never 500, on both databases; the OpenAPI
schema says what each endpoint accepts. Last, schemathesis fuzzes every operation of the real API."""

import json
from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks

from core.roles import ADMIN, ANALYST, MANAGER
from investigations.intake.services import create_integration, rate_bucket
from investigations.tokens import create_api_token
from toolserver.models import ToolServer
from toolserver.ratelimit import get_rate_limiter


@pytest.fixture
def tokens(make_user, settings):
    """An integration's token and an API token of a person holding every role: every operation is reachable."""
    settings.INTAKE_RATE = (100_000, 60)  # the fuzzing sends far more than a SIEM may
    settings.INTAKE_MAX_QUEUED = 100_000
    integration, token = create_integration("lab-siem")
    _, person = create_api_token(make_user("root", ANALYST, MANAGER, ADMIN, is_staff=True), "fuzz", decide=True)
    yield token, person
    get_rate_limiter().reset(rate_bucket(integration))  # the next test's integration may get this id


def an_alert(**overrides) -> dict:
    return {
        "source": "lab-siem",
        "external_id": "SIEM-1",
        "title": "Beacon",
        "severity": "high",
        "observed_at": (timezone.now() - timedelta(minutes=10)).isoformat(),
        "details": {},
    } | overrides


def post_alert(client, token, body):
    return client.post(
        "/api/alerts", json.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def fields_of(response) -> list:
    return [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"observed_at": "2026-01-01T00:00:00+16:00"}, "observed_at"),  # PostgreSQL stores up to ±15:59
        ({"observed_at": "2026-01-01T00:00:00-23:59"}, "observed_at"),
        ({"observed_at": "0001-01-01T00:00:00+01:00"}, "observed_at"),  # out of range once in UTC
        ({"observed_at": 1767225600}, "observed_at"),  # the schema says a date-time string
        ({"observed_at": "1767225600"}, "observed_at"),
        ({"title": "Beacon\x00"}, "title"),
        ({"details": {"note": "a\x00b"}}, "details"),
        ({"details": {"k\x00": 1}}, "details"),
        ({"details": {"list": [1, "\x00"]}}, "details"),
    ],
)
def test_an_alert_postgresql_cannot_store_is_400_naming_the_field(client, tokens, overrides, field):
    response = post_alert(client, tokens[0], an_alert(**overrides))
    assert response.status_code == 400, response.content
    assert fields_of(response) == [field]


def test_an_offset_within_15_59_is_stored(client, tokens):
    response = post_alert(client, tokens[0], an_alert(observed_at="2026-01-01T00:00:00+15:59"))
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "query, field",
    [
        ("until=2026-01-01T00:00:00%2B23:00", "until"),
        ("until=0001-01-01T00:00:00%2B01:00", "until"),
        ("until=9999-12-31T23:59:59-01:00", "until"),
        ("until=12345678901234567890", "until"),
        ("since=true", "since"),
        ("tool=isolate%00host", "tool"),
        ("q=%00", "q"),
    ],
)
def test_an_audit_filter_of_the_wrong_type_is_400_naming_it(client, tokens, query, field):
    response = client.get(f"/api/audit?{query}", headers={"Authorization": f"Bearer {tokens[1]}"})
    assert response.status_code == 400, response.content
    assert fields_of(response) == [field]


@pytest.mark.parametrize(
    "path, field",
    [
        ("/api/audit/export?actor=ana&actor=bob&format=csv", "actor"),  # found by the negative fuzzing
        ("/api/audit?tool=isolate_host&tool=disable_account", "tool"),
        ("/api/actions?investigation=1&investigation=2", "investigation"),
    ],
)
def test_a_query_field_given_twice_is_400_naming_it_not_its_last_value(client, tokens, path, field):
    response = client.get(path, headers={"Authorization": f"Bearer {tokens[1]}"})
    assert response.status_code == 400, response.content
    assert fields_of(response) == [field]


def test_a_query_field_given_twice_by_a_stranger_is_401_first(client):
    assert client.get("/api/audit/export?actor=ana&actor=bob&format=csv").status_code == 401


def test_the_audit_filter_still_takes_what_the_pages_send(client, tokens):
    response = client.get(
        "/api/audit?since=2026-01-01T10:00&until=2026-01-02T10:00:00Z", headers={"Authorization": f"Bearer {tokens[1]}"}
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "body, status",
    [
        ({}, 400),
        ({"secret": "s", "reference": "file:edr-response.key"}, 400),
        ({"secret": None}, 400),
        ({"secret": "   "}, 400),
        ({"secret": "s\x00"}, 400),
        ({"secret": "a-new-secret-value"}, 200),
    ],
)
def test_a_credential_is_a_secret_or_a_reference_and_the_schema_says_so(client, tokens, settings, body, status):
    settings.CREDENTIALS_KEY = "test-only-credentials-key-0123456789-0123456789-0123"
    seen = ToolServer.objects.get(name="edr-response").pointed_at()
    response = client.put(
        "/api/manage/servers/edr-response/credential",
        json.dumps({**body, "seen": seen}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {tokens[1]}"},
    )
    assert response.status_code == status, response.content
    schema = client.get("/api/openapi.json").json()["components"]["schemas"]["CredentialIn"]
    assert schema["oneOf"] == [{"required": ["secret"]}, {"required": ["reference"]}]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["seen"]  # where the credential is meant for, always


def test_a_nul_in_a_path_parameter_is_400(client, tokens):
    response = client.patch(
        "/api/manage/tools/isolate%00host",
        json.dumps({"enabled": True}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {tokens[1]}"},
    )
    assert response.status_code == 400, response.content
    assert fields_of(response) == ["name"]


# -- the fuzzing -------------------------------------------------------------------------------
# Bounded: a fixed number of examples per operation and mode, each request within a deadline.
EXAMPLES = 25
DEADLINE_MS = 5000
CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,  # what the schema refuses is refused: no integer taken for a date-time
]


@pytest.fixture
def wsgi_app():
    """The console's WSGI application on this test's database connection: like Django's test client,
    it must not close the connection (and with it the test's transaction) after each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzing_every_operation_finds_no_500_and_no_schema_mismatch(tokens, wsgi_app, mode):
    integration, person = tokens
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", wsgi_app)
    for result in schema.get_all_operations():
        operation = result.ok()
        token = integration if operation.path.startswith("/api/alerts") else person

        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=DEADLINE_MS,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def fuzz(case):
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)  # noqa: B023 - run at once

        fuzz()
