"""An alert's details are bounded in depth and size at intake, and shown in bounded size (issue 14, item 7)."""

import json

import pytest
from django.urls import reverse
from django.utils import timezone

from investigations.intake.details import MAX_DEPTH, MAX_NODES
from investigations.models import Alert, Investigation
from tests.investigations.test_alerts_api import an_alert, integration_token, post  # noqa: F401 (a fixture)
from tests.investigations.test_pages import form_data

pytestmark = pytest.mark.django_db


def nested(depth: int) -> dict:
    """An object `depth` levels deep, the object itself being the first: {"a": {"a": ... {}}}."""
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def deep_text(depth: int) -> str:
    """Details `depth` levels deep as JSON text, deeper than Python's json could build: {"x":[[...]]}."""
    return '{"x":' + "[" * (depth - 1) + "]" * (depth - 1) + "}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 200])  # deeper than the parser goes: the next test
def test_details_nested_too_deep_are_400_naming_the_field(client, integration_token, depth):
    _, token = integration_token
    response = post(client, an_alert(details=nested(depth)), token)
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "details", "message": f"Value error, nested deeper than {MAX_DEPTH} levels"}
    ]
    assert not Alert.objects.exists()


def test_details_nested_deeper_than_json_can_parse_are_400_not_an_error(client, integration_token):
    _, token = integration_token
    body = json.dumps(an_alert(details={})).replace('"details": {}', f'"details": {deep_text(5000)}')
    response = post(client, body, token)
    assert response.status_code == 400
    assert not Alert.objects.exists()


def test_details_with_too_many_values_are_400_naming_the_field(client, integration_token):
    _, token = integration_token
    response = post(client, an_alert(details={"events": [0] * MAX_NODES}), token)
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "details", "message": f"Value error, more than {MAX_NODES} values"}]


def test_details_at_the_limits_are_received(client, integration_token):
    _, token = integration_token
    assert post(client, an_alert(external_id="deep", details=nested(MAX_DEPTH)), token).status_code == 201
    assert post(client, an_alert(external_id="wide", details={"e": [0] * (MAX_NODES - 2)}), token).status_code == 201


@pytest.mark.parametrize("text", [json.dumps(nested(MAX_DEPTH + 1)), deep_text(5000)])
def test_the_form_refuses_details_nested_too_deep_on_the_field(client, analyst, text):
    client.force_login(analyst)
    response = client.post(reverse("investigations:new_alert"), form_data(details=text))
    assert response.status_code == 200
    assert list(response.context["form"].errors) == ["details"]
    assert f"deeper than {MAX_DEPTH} levels" in response.context["form"].errors["details"][0].lower()
    assert not Alert.objects.exists()


def show(client, details: dict) -> tuple[str, int]:
    """The investigation page of an alert stored with these details as they are (as a row from
    before the limits would be), and the size of the details as compact JSON."""
    alert = Alert.objects.create(
        source="t", external_id="big", title="Big", severity="low", observed_at=timezone.now(), details=details
    )
    investigation = Investigation.objects.create(
        alert=alert, model="gatehouse-offline-1", budget_tool_calls=1, budget_tokens=1000, budget_seconds=60
    )
    response = client.get(reverse("investigations:detail", args=[investigation.pk]))
    assert response.status_code == 200
    return response.content.decode(), len(json.dumps(details))


def test_the_page_of_a_large_nested_body_stays_small(client, analyst):
    client.force_login(analyst)
    body = {f"branch{n}": nested(400) for n in range(6)}  # about 17 KB of JSON
    page, size = show(client, body)
    assert 15_000 < size < 18_500
    assert len(page) < 100_000, len(page)  # indented at every level, it was over 3 MB
    assert "branch5" in page


def test_details_within_the_limits_are_shown_indented(client, analyst):
    client.force_login(analyst)
    page, _ = show(client, {"rule": "c2", "path": nested(3)})
    assert "\n  &quot;rule&quot;: &quot;c2&quot;" in page
