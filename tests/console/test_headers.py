"""The headers every answer the console renders carries (issue 14, item 7): pages and API answers."""

import pytest
from django.test import Client
from django.utils import timezone

from investigations.audit import chain as audit
from investigations.intake.services import AlertIn, create_integration, receive_alert
from investigations.tokens import create_api_token
from tests.support import page_urls

pytestmark = pytest.mark.django_db


def cache_directives(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part.strip()}


@pytest.fixture
def answers(analyst, manager, admin_user):
    """Every page each role reaches, with one object of each kind there is to show."""
    alert = {
        "source": "lab-siem",
        "external_id": "H-1",
        "title": "Headers",
        "severity": "low",
        "observed_at": timezone.now(),
    }
    receive_alert(AlertIn(**alert))
    audit.record_access(analyst, "headers test")
    answered = []
    for user in (admin_user, manager, analyst):
        client = Client()
        client.force_login(user)
        for url in page_urls():
            answered.append((user.username, url, client.get(url)))
    assert len(answered) > 60
    return answered


def test_every_page_and_api_answer_is_no_store_and_private(answers):
    cached = [
        (who, url, response.get("Cache-Control"))
        for who, url, response in answers
        if not {"no-store", "private"} <= cache_directives(response)
    ]
    assert cached == []


def csp_directives(response) -> dict[str, set[str]]:
    header = response.get("Content-Security-Policy", "")
    return {name: set(values) for name, *values in (part.split() for part in header.split(";") if part.strip())}


def test_every_page_and_api_answer_has_the_content_security_policy(answers):
    expected = {
        "default-src": {"'self'"},
        "script-src": {"'self'"},
        "object-src": {"'none'"},
        "frame-ancestors": {"'none'"},
        "base-uri": {"'none'"},
        "form-action": {"'self'"},
    }
    wrong = [
        (who, url, response.get("Content-Security-Policy"))
        for who, url, response in answers
        if any(csp_directives(response).get(name) != values for name, values in expected.items())
    ]
    assert wrong == []
    # Nothing inline is allowed anywhere, for scripts or styles.
    directives = csp_directives(answers[0][2])
    assert not any("unsafe" in value for values in directives.values() for value in values)


def test_connect_src_names_the_consoles_own_websocket_origin(client, analyst):
    client.force_login(analyst)
    assert csp_directives(client.get("/investigations/"))["connect-src"] == {"'self'", "ws://testserver"}
    secure = csp_directives(client.get("/investigations/", secure=True, headers={"Host": "localhost"}))
    assert secure["connect-src"] == {"'self'", "wss://localhost"}


def test_every_page_and_api_answer_has_a_permissions_policy(answers):
    missing = [
        (who, url)
        for who, url, response in answers
        if not {"camera=()", "microphone=()", "geolocation=()", "usb=()", "payment=()"}
        <= {part.strip() for part in response.get("Permissions-Policy", "").split(",")}
    ]
    assert missing == []


def test_api_answers_to_a_bearer_token_and_an_integration_are_no_store(client, analyst):
    _, token = create_api_token(analyst, "script")
    response = client.get("/api/actions", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert {"no-store", "private"} <= cache_directives(response)

    _, integration_token = create_integration("siem-h")
    alert = {
        "source": "siem-h",
        "external_id": "H-2",
        "title": "Headers",
        "severity": "low",
        "observed_at": timezone.now().isoformat(),
    }
    response = client.post(
        "/api/alerts", alert, content_type="application/json", headers={"Authorization": f"Bearer {integration_token}"}
    )
    assert response.status_code == 201
    assert {"no-store", "private"} <= cache_directives(response)


def test_the_sign_in_page_is_no_store_too(client):
    assert {"no-store", "private"} <= cache_directives(client.get("/login/"))


def test_static_files_stay_cacheable(client):
    response = client.get("/static/css/console.css")
    assert response.status_code == 200
    assert "no-store" not in cache_directives(response)
