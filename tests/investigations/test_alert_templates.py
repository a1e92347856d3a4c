"""Elastic and Sentinel build their own bodies: the templates the README documents
(integrations/elastic/webhook-body.mustache, integrations/sentinel/http-body.json), rendered as
their senders render them with a documented example, emit an alert POST /api/alerts takes."""

import json
import re
from pathlib import Path

import chevron
import chevron.renderer
import pytest

from investigations.models import Alert
from tests.support import ROOT

FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
ELASTIC = ROOT / "integrations" / "elastic" / "webhook-body.mustache"
SENTINEL = ROOT / "integrations" / "sentinel" / "http-body.json"


# -- Kibana's rendering of a webhook body ------------------------------------------------------
class _JsonList(list):
    def __str__(self):  # Kibana renders an array or object variable as its JSON
        return json.dumps(self)


class _JsonDict(dict):
    def __str__(self):
        return json.dumps(self)


def _as_kibana(value):
    if isinstance(value, dict):
        return _JsonDict({key: _as_kibana(item) for key, item in value.items()})
    if isinstance(value, list):
        return _JsonList(_as_kibana(item) for item in value)
    return value


def render_as_kibana(template: str, variables: dict, monkeypatch) -> str:
    """Mustache as Kibana renders a webhook connector's body: `{{x}}` escaped for a JSON string
    (not for HTML), `{{{x}}}` as it is, an object or array as its JSON."""
    monkeypatch.setattr(chevron.renderer, "_html_escape", lambda text: json.dumps(text)[1:-1])
    return chevron.render(template, _as_kibana(variables))


# -- Logic Apps' evaluation of whole-value expressions (the subset the template uses) ---------
TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z]+)\(|(?P<string>'[^']*')|(?P<access>\?\['[^']*'\])|(?P<close>\))|(?P<comma>,))"
)


def evaluate(expression: str, trigger_body: dict):
    """`@triggerBody()?['a']?['b']`, `toLower(x)`, `equals(x, y)`, `if(c, a, b)`: as Logic Apps evaluates them."""
    tokens = [match for match in TOKEN.finditer(expression[1:]) if match.group().strip()]
    position = 0

    def take():
        nonlocal position
        token = tokens[position]
        position += 1
        return token

    def parse():
        token = take()
        if token["string"]:
            value = token["string"][1:-1]
        else:
            name, arguments = token["name"], []
            while not tokens[position]["close"]:
                arguments.append(parse())
                if tokens[position]["comma"]:
                    take()
            take()
            value = {
                "triggerBody": lambda: trigger_body,
                "toLower": lambda text: text.lower(),
                "equals": lambda left, right: left == right,
                "if": lambda condition, then, otherwise: then if condition else otherwise,
            }[name](*arguments)
        while position < len(tokens) and tokens[position]["access"]:
            key = take()["access"][3:-2]
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return parse()


def render_as_logic_apps(template: dict, trigger_body: dict):
    if isinstance(template, dict):
        return {key: render_as_logic_apps(value, trigger_body) for key, value in template.items()}
    if isinstance(template, str) and template.startswith("@"):
        return evaluate(template, trigger_body)
    return template


# -- the tests ----------------------------------------------------------------------------------


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_documents_the_templates_as_shipped():
    assert ELASTIC.read_text().strip() in readme()
    assert SENTINEL.read_text().strip() in readme()


def test_the_elastic_template_rendered_with_a_documented_alert_is_an_alert_gatehouse_takes(
    client, fresh_rates, monkeypatch
):
    integration, token = fresh_rates("elastic")
    variables = json.loads((FIXTURES / "elastic_alert.json").read_text())
    body = render_as_kibana(ELASTIC.read_text(), variables, monkeypatch)
    response = client.post(
        "/api/alerts", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, (response.content, body)
    alert = Alert.objects.get()
    assert (alert.integration, alert.external_id) == (integration, variables["alert"]["id"])
    assert (alert.title, alert.severity) == (
        'Suspicious PowerShell "EncodedCommand"',
        "high",
    )  # a quote, escaped for JSON
    assert (alert.host, alert.account) == ("ws-0142", "j.doe")
    assert alert.details["alerts"][0]["process"]["name"] == "powershell.exe"
    assert alert.observed_at.isoformat() == "2026-11-25T09:30:12.345000+00:00"


def test_the_elastic_template_without_a_host_or_user_leaves_them_out(client, fresh_rates, monkeypatch):
    _, token = fresh_rates("elastic")
    variables = json.loads((FIXTURES / "elastic_alert.json").read_text())
    del variables["context"]["alerts"][0]["host"], variables["context"]["alerts"][0]["user"]
    body = render_as_kibana(ELASTIC.read_text(), variables, monkeypatch)
    response = client.post(
        "/api/alerts", body, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, (response.content, body)
    assert (Alert.objects.get().host, Alert.objects.get().account) == ("", "")


@pytest.mark.parametrize(("severity", "expected"), [("Informational", "low"), ("High", "high")])
def test_the_sentinel_template_evaluated_with_a_documented_incident_is_an_alert_gatehouse_takes(
    client, fresh_rates, severity, expected
):
    integration, token = fresh_rates("sentinel")
    incident = json.loads((FIXTURES / "sentinel_incident.json").read_text())
    incident["object"]["properties"]["severity"] = severity
    body = render_as_logic_apps(json.loads(SENTINEL.read_text()), incident)
    response = client.post(
        "/api/alerts", json.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, (response.content, body)
    alert = Alert.objects.get()
    assert (alert.integration, alert.external_id) == (integration, "6e7a4d1c-2b3f-4a5e-8c9d-0f1e2d3c4b5a")
    assert (alert.title, alert.severity) == ("Impossible travel activity", expected)
    assert alert.details["incident_number"] == 4211
