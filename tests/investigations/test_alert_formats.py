"""POST /api/alerts/{format} through the real URLconf, with the vendors' documented payloads
(tests/investigations/fixtures/alerts/, each file's source in its README): the mapping, the same
intake (dedup, sources, the queue's cap, audit), resolves noted, malformed payloads refused whole."""

import copy
import json
from pathlib import Path

import pytest
from django.core.management import call_command

from investigations.intake.formats import base
from investigations.intake.services import create_integration
from investigations.models import Alert, AuditRecord, Event, Integration, Investigation

FIXTURES = Path(__file__).parent / "fixtures" / "alerts"
MARKER = "zq-attacker-text-7731"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture
def integration_token(fresh_rates):
    return fresh_rates("lab-siem")


def post(client, format_name: str, body, token: str | None = None, query: str = ""):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(f"/api/alerts/{format_name}{query}", data=data, content_type="application/json", headers=headers)


def fields(response) -> list:
    return [error["field"] for error in response.json()["errors"]]


# -- each format, its documented example -----------------------------------------------------


def test_splunk_documented_payload_becomes_one_alert_keeping_the_raw_payload(client, integration_token):
    integration, token = integration_token
    payload = fixture("splunk")
    response = post(client, "splunk", payload, token)
    assert response.status_code == 201, response.content
    (answer,) = response.json()["alerts"]
    alert = Alert.objects.get()
    assert answer["alert_id"] == alert.pk and answer["created"] is True
    assert alert.integration == integration and alert.source == "lab-siem"
    assert alert.external_id.startswith("scheduler_admin_search_W2_at_14232356_132#")
    assert alert.title == "Splunk alert scheduler_admin_search_W2_at_14232356_132"  # search_name is null
    assert alert.severity == "medium"  # no severity in the row: the default
    assert alert.details["raw"] == payload
    assert alert.details["results_link"] == payload["results_link"]
    assert Investigation.objects.get().alert == alert


def test_splunk_fields_of_the_row_are_mapped(client, integration_token):
    _, token = integration_token
    payload = fixture("splunk") | {"search_name": "Brute force on a domain account"}
    payload["result"] |= {"host": "dc-01", "user": "CORP\\j.doe", "urgency": "critical", "_time": "1733220000.000"}
    assert post(client, "splunk", payload, token).status_code == 201
    alert = Alert.objects.get()
    assert (alert.title, alert.severity, alert.host, alert.account) == (
        "Brute force on a domain account",
        "critical",
        "dc-01",
        "j.doe@corp",
    )
    assert alert.observed_at.timestamp() == 1733220000


def test_splunk_each_result_row_of_one_search_is_its_own_alert_and_a_resend_is_not(client, integration_token):
    _, token = integration_token
    first, second = fixture("splunk"), fixture("splunk")
    second["result"]["count"] = "9"
    assert post(client, "splunk", first, token).status_code == 201
    assert post(client, "splunk", second, token).status_code == 201
    again = post(client, "splunk", first, token)
    assert again.status_code == 200 and again.json()["alerts"][0]["created"] is False
    assert Alert.objects.count() == 2


def test_alertmanager_documented_payload_firing_entry_becomes_an_alert(client, integration_token):
    _, token = integration_token
    payload = fixture("alertmanager")
    response = post(client, "alertmanager", payload, token)
    assert response.status_code == 201, response.content
    alert = Alert.objects.get()
    assert alert.external_id == "1a30ba71cca2921f/2023-02-06T13:08:45.828000Z"
    assert alert.title == "ProbeFailure: BlackBox Probe Failure: https://server.example.org"
    assert (alert.severity, alert.host) == ("critical", "server.example.org")
    assert alert.observed_at.isoformat() == "2023-02-06T13:08:45.828000+00:00"
    assert alert.details["raw"]["alert"] == payload["alerts"][0]
    assert alert.details["raw"]["groupKey"] == payload["groupKey"]


def test_alertmanager_a_resend_is_the_same_alert_and_each_firing_entry_its_own(client, integration_token):
    _, token = integration_token
    payload = fixture("alertmanager")
    first = post(client, "alertmanager", payload, token).json()

    resent = post(client, "alertmanager", payload, token)  # repeat_interval: the same group again
    assert resent.status_code == 200
    assert resent.json()["alerts"] == [first["alerts"][0] | {"created": False}]

    other = copy.deepcopy(payload["alerts"][0]) | {"fingerprint": "bc97ff14869b13e3"}
    other["labels"] |= {"instance": "db-2:9100", "severity": "warning"}
    payload["alerts"].append(other)
    grown = post(client, "alertmanager", payload, token)
    assert grown.status_code == 201
    assert [one["created"] for one in grown.json()["alerts"]] == [False, True]
    assert Alert.objects.count() == 2 and Investigation.objects.count() == 2
    added = Alert.objects.get(external_id__startswith="bc97ff14869b13e3/")
    assert (added.host, added.severity) == ("db-2", "medium")


def test_alertmanager_a_resolved_entry_is_noted_on_the_open_investigation_once_and_no_new_alert(
    client, integration_token
):
    _, token = integration_token
    payload = fixture("alertmanager")
    investigation_id = post(client, "alertmanager", payload, token).json()["alerts"][0]["investigation_id"]
    resolved = copy.deepcopy(payload) | {"status": "resolved"}
    resolved["alerts"][0] |= {"status": "resolved", "endsAt": "2023-02-06T13:18:45.828Z"}

    for _ in range(2):  # Alertmanager may send the resolve more than once
        response = post(client, "alertmanager", resolved, token)
        assert response.status_code == 200, response.content
        assert response.json() == {
            "alerts": [],
            "resolved": [
                {"external_id": "1a30ba71cca2921f/2023-02-06T13:08:45.828000Z", "investigation_id": investigation_id}
            ],
        }
    assert Alert.objects.count() == 1 and Investigation.objects.count() == 1
    (note,) = Event.objects.filter(investigation_id=investigation_id, data__resolved__isnull=False)
    assert note.kind == Event.Kind.STATUS and note.data["status"] == Investigation.objects.get().status
    assert "resolved" in note.data["message"]


def test_a_resolve_of_an_unknown_or_finished_alert_is_noted_nowhere(client, integration_token):
    _, token = integration_token
    resolved = fixture("alertmanager")
    resolved["alerts"][0]["status"] = "resolved"
    assert post(client, "alertmanager", resolved, token).json()["resolved"][0]["investigation_id"] is None
    assert not Alert.objects.exists()

    post(client, "alertmanager", fixture("alertmanager"), token)
    Investigation.objects.update(status=Investigation.Status.COMPLETED)
    assert post(client, "alertmanager", resolved, token).json()["resolved"][0]["investigation_id"] is None
    assert not Event.objects.filter(data__resolved__isnull=False).exists()


def test_wazuh_documented_alert_maps_level_host_and_user(client, integration_token):
    _, token = integration_token
    payload = fixture("wazuh")
    assert post(client, "wazuh", payload, token).status_code == 201
    alert = Alert.objects.get()
    assert (alert.external_id, alert.title) == ("1689175961.1157", "sshd: authentication failed.")
    assert (alert.severity, alert.host, alert.account) == ("low", "Centos", "root")  # level 5: low
    assert alert.observed_at.isoformat() == "2023-07-12T15:32:41.523000+00:00"  # "+0000" read
    assert alert.details["raw"] == payload and alert.details["rule_id"] == "5716"


@pytest.mark.parametrize(
    ("level", "severity"),
    [(0, "low"), (6, "low"), (7, "medium"), (11, "medium"), (12, "high"), (14, "high"), (15, "critical")],
)
def test_wazuh_rule_level_to_severity(client, integration_token, level, severity):
    _, token = integration_token
    payload = fixture("wazuh")
    payload["rule"]["level"] = level
    assert post(client, "wazuh", payload, token).status_code == 201
    assert Alert.objects.get().severity == severity


def test_ocsf_documented_detection_finding_maps_and_an_update_is_the_same_alert(client, integration_token):
    _, token = integration_token
    payload = fixture("ocsf")
    assert post(client, "ocsf", payload, token).status_code == 201
    alert = Alert.objects.get()
    assert (alert.external_id, alert.title, alert.severity) == (
        "finding-7f3c2a91",
        "Credential dumping tool executed",
        "high",
    )
    assert (alert.host, alert.account) == ("ws-0142", "j.doe@corp")
    assert alert.observed_at.timestamp() == 1733220000
    update = payload | {"activity_id": 2, "severity_id": 5}
    assert post(client, "ocsf", update, token).status_code == 200
    assert Alert.objects.count() == 1


def test_ocsf_a_close_is_noted_on_the_open_investigation(client, integration_token):
    _, token = integration_token
    investigation_id = post(client, "ocsf", fixture("ocsf"), token).json()["alerts"][0]["investigation_id"]
    response = post(client, "ocsf", fixture("ocsf") | {"activity_id": 3}, token)
    assert response.json()["resolved"] == [{"external_id": "finding-7f3c2a91", "investigation_id": investigation_id}]
    assert Event.objects.filter(investigation_id=investigation_id, data__resolved="finding-7f3c2a91").count() == 1


@pytest.mark.parametrize("format_name", ["splunk", "alertmanager", "wazuh", "ocsf"])
def test_fields_a_format_does_not_use_are_ignored_and_kept(client, integration_token, format_name):
    _, token = integration_token
    payload = fixture(format_name) | {"x_vendor_added_in_a_later_release": {"nested": [1, 2]}}
    assert post(client, format_name, payload, token).status_code == 201
    assert Alert.objects.get().details["raw"]["x_vendor_added_in_a_later_release"] == {"nested": [1, 2]}


# -- user names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "domain", "expected"),
    [
        ("CORP\\j.doe", None, "j.doe@corp"),
        ("j.doe@Corp.Example.com", None, "j.doe@corp.example.com"),
        ("j.doe", "CORP", "j.doe@corp"),
        ("root", None, "root"),
        ("  ", None, None),
        ("CORP\\", None, None),
        ("j doe", None, None),  # does not fit: left out, the raw payload keeps it
    ],
)
def test_domain_user_and_user_at_domain_are_one_form_the_domain_kept(value, domain, expected):
    assert base.user(value, domain) == expected


# -- the same intake --------------------------------------------------------------------------


def test_a_source_the_integration_does_not_own_is_403_audited_and_nothing_stored(client, integration_token):
    _, token = integration_token
    create_integration("other-siem")
    before = AuditRecord.objects.count()
    response = post(client, "wazuh", fixture("wazuh"), token, query="?source=other-siem")
    assert response.status_code == 403
    (record,) = AuditRecord.objects.filter(seq__gt=before)
    assert (record.kind, record.reason, record.actor) == ("intake", "source_not_allowed", "integration:lab-siem")
    assert not Alert.objects.exists()


def test_an_integration_with_several_sources_names_one(client, integration_token):
    _, token = integration_token
    call_command("integrations", "sources", "lab-siem", "lab-siem", "wazuh-eu", stdout=None)
    assert post(client, "wazuh", fixture("wazuh"), token, query="?source=wazuh-eu").status_code == 201
    assert Alert.objects.get().source == "wazuh-eu"


def test_past_the_queued_cap_a_batch_is_refused_whole(client, integration_token, settings):
    _, token = integration_token
    settings.INTAKE_MAX_QUEUED = 1
    payload = fixture("alertmanager")
    other = copy.deepcopy(payload["alerts"][0]) | {"fingerprint": "bc97ff14869b13e3"}
    other["labels"]["instance"] = "https://other.example.org"  # another host: its own investigation, not grouped
    payload["alerts"].append(other)
    response = post(client, "alertmanager", payload, token)
    assert response.status_code == 429
    assert not Alert.objects.exists() and not Investigation.objects.exists()


def test_the_integration_severity_map_overrides_the_format_and_sets_the_default(client, integration_token):
    integration, token = integration_token
    call_command("integrations", "severity", "lab-siem", "wazuh:5=critical", "default=high", stdout=None)
    integration.refresh_from_db()
    assert integration.severity_map == {"wazuh:5": "critical", "default": "high"}
    (record,) = AuditRecord.objects.filter(outcome="integration_severity")
    assert record.actor == "manage.py integrations"
    assert record.extra["after"] == {
        "integration": "lab-siem",
        "severity_map": {"wazuh:5": "critical", "default": "high"},
    }

    assert post(client, "wazuh", fixture("wazuh"), token).status_code == 201  # level 5: low, mapped to critical here
    assert post(client, "splunk", fixture("splunk"), token).status_code == 201  # no severity: the integration's default
    assert list(Alert.objects.order_by("pk").values_list("severity", flat=True)) == ["critical", "high"]


def test_a_severity_map_of_an_unknown_format_or_severity_is_refused(integration_token):
    from django.core.management.base import CommandError

    for entry in ("nosuch:5=high", "wazuh:5=urgent", "wazuh5=high"):
        with pytest.raises(CommandError):
            call_command("integrations", "severity", "lab-siem", entry, stdout=None)
    assert Integration.objects.get().severity_map == {}


# -- malformed and partial payloads: 400 naming the field, nothing stored ----------------------


def _without(payload: dict, path: str) -> dict:
    payload = copy.deepcopy(payload)
    *parents, last = path.split(".")
    inner = payload
    for step in parents:
        inner = inner[int(step)] if isinstance(inner, list) else inner[step]
    if isinstance(inner, list):
        del inner[int(last)]
    else:
        del inner[last]
    return payload


def _with(payload: dict, path: str, value) -> dict:
    payload = copy.deepcopy(payload)
    *parents, last = path.split(".")
    inner = payload
    for step in parents:
        inner = inner[int(step)] if isinstance(inner, list) else inner[step]
    inner[last] = value
    return payload


MALFORMED = [
    ("splunk", _without(fixture("splunk"), "sid"), "sid"),
    ("splunk", _with(fixture("splunk"), "result", MARKER), "result"),
    ("splunk", _with(fixture("splunk"), "result._time", MARKER), "result._time"),
    ("splunk", _with(fixture("splunk"), "sid", f"two words {MARKER}"), "sid"),
    ("alertmanager", _without(fixture("alertmanager"), "alerts"), "alerts"),
    ("alertmanager", _with(fixture("alertmanager"), "alerts", MARKER), "alerts"),
    ("alertmanager", _with(fixture("alertmanager"), "version", "3"), "version"),
    ("alertmanager", _without(fixture("alertmanager"), "alerts.0.fingerprint"), "alerts.0.fingerprint"),
    ("alertmanager", _without(fixture("alertmanager"), "alerts.0.startsAt"), "alerts.0.startsAt"),
    ("alertmanager", _with(fixture("alertmanager"), "alerts.0.startsAt", MARKER), "alerts.0.startsAt"),
    ("alertmanager", _with(fixture("alertmanager"), "alerts.0.status", MARKER), "alerts.0.status"),
    ("alertmanager", _with(fixture("alertmanager"), "alerts.0.labels", [MARKER]), "alerts.0.labels"),
    ("wazuh", _without(fixture("wazuh"), "id"), "id"),
    ("wazuh", _without(fixture("wazuh"), "rule.level"), "rule.level"),
    ("wazuh", _with(fixture("wazuh"), "rule.level", 99), "rule.level"),
    ("wazuh", _without(fixture("wazuh"), "rule.description"), "rule.description"),
    ("wazuh", _without(fixture("wazuh"), "timestamp"), "timestamp"),
    ("wazuh", _with(fixture("wazuh"), "timestamp", "2999-01-01T00:00:00+0000"), "timestamp"),  # in the future
    ("wazuh", _with(fixture("wazuh"), "rule.level", "²"), "rule.level"),  # a digit to str.isdigit, not to int()
    ("wazuh", _with(fixture("wazuh"), "rule.level", "9" * 5000), "rule.level"),
    (
        "alertmanager",
        _with(fixture("alertmanager"), "alerts.0.startsAt", "0001-01-01T00:00:00+01:00"),
        "alerts.0.startsAt",
    ),
    ("ocsf", _with(fixture("ocsf"), "time", 10**400), "time"),  # past a float, in milliseconds
    ("ocsf", _with(fixture("ocsf"), "class_uid", 2003), "class_uid"),
    ("ocsf", _without(fixture("ocsf"), "severity_id"), "severity_id"),
    ("ocsf", _without(fixture("ocsf"), "finding_info.uid"), "finding_info.uid"),
    ("ocsf", _without(fixture("ocsf"), "finding_info.title"), "finding_info.title"),
    ("ocsf", _without(fixture("ocsf"), "time"), "time"),
    ("ocsf", _with(fixture("ocsf"), "time", MARKER), "time"),
]


@pytest.mark.parametrize(
    ("format_name", "payload", "field"),
    MALFORMED,
    ids=[f"{f}-{field}-{n}" for n, (f, _, field) in enumerate(MALFORMED)],
)
def test_a_malformed_or_partial_payload_is_400_naming_the_field_and_nothing_is_stored(
    client, integration_token, format_name, payload, field
):
    _, token = integration_token
    response = post(client, format_name, payload, token)
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == "Invalid alert."
    assert fields(response) == [field]
    assert MARKER not in response.content.decode()
    assert not Alert.objects.exists() and not Investigation.objects.exists()


def test_one_bad_entry_refuses_the_whole_notification(client, integration_token):
    _, token = integration_token
    payload = fixture("alertmanager")
    payload["alerts"].append(_without(payload, "alerts.0.fingerprint")["alerts"][0])
    response = post(client, "alertmanager", payload, token)
    assert response.status_code == 400 and fields(response) == ["alerts.1.fingerprint"]
    assert not Alert.objects.exists()


@pytest.mark.parametrize("body", ["[1, 2]", "not json", '{"sid": '])
def test_a_body_that_is_no_json_object_is_400(client, integration_token, body):
    _, token = integration_token
    assert post(client, "splunk", body, token).status_code == 400
    assert not Alert.objects.exists()


def test_a_payload_nested_past_the_details_limit_is_400(client, integration_token):
    _, token = integration_token
    deep: dict = {}
    inner = deep
    for _ in range(20):
        inner["x"] = {}
        inner = inner["x"]
    response = post(client, "wazuh", fixture("wazuh") | {"deep": deep}, token)
    assert response.status_code == 400 and fields(response) == [None]
    assert not Alert.objects.exists()


def test_a_source_that_is_no_source_name_is_400_naming_it(client, integration_token):
    _, token = integration_token
    response = post(client, "wazuh", fixture("wazuh"), token, query="?source=two%20words")
    assert response.status_code == 400 and fields(response) == ["source"]
    assert not Alert.objects.exists()


@pytest.mark.parametrize("unstorable", ["\u0000", "\udc00"])  # NUL, and a lone surrogate (jsonb holds neither)
def test_a_nul_character_or_a_lone_surrogate_anywhere_in_the_payload_is_400(client, integration_token, unstorable):
    _, token = integration_token
    payload = fixture("wazuh")
    payload["full_log"] = f"before{unstorable}after"  # kept only in the alert's details
    response = post(client, "wazuh", payload, token)
    assert response.status_code == 400, response.content
    assert not Alert.objects.exists()


def test_an_unknown_format_is_400_naming_it(client, integration_token):
    _, token = integration_token
    response = post(client, "qradar", fixture("wazuh"), token)
    assert response.status_code == 400 and fields(response) == ["format"]


# -- who is asking ----------------------------------------------------------------------------


@pytest.mark.parametrize("format_name", ["splunk", "alertmanager", "wazuh", "ocsf"])
def test_without_a_valid_token_it_is_401_before_the_body_is_read(client, integration_token, format_name):
    assert post(client, format_name, "not json").status_code == 401
    assert post(client, format_name, "not json", "ghi_not-a-token-of-ours-0123456789").status_code == 401
    assert not Alert.objects.exists()


def test_splunk_token_in_the_path(client, integration_token):
    integration, token = integration_token
    response = client.post(
        f"/api/alerts/splunk/{token}", json.dumps(fixture("splunk")), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert token not in response.content.decode()
    assert Alert.objects.get().integration == integration

    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    refused = client.post(f"/api/alerts/splunk/{wrong}", "not json", content_type="application/json")
    assert refused.status_code == 401 and wrong not in refused.content.decode()
    Integration.objects.update(revoked_at=Integration.objects.get().created_at)
    assert (
        client.post(
            f"/api/alerts/splunk/{token}", json.dumps(fixture("splunk")), content_type="application/json"
        ).status_code
        == 401
    )


def test_the_openapi_schema_describes_the_format_routes(client, db):
    schema = client.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/alerts/{format}"]["post"]
    (format_param,) = [param for param in operation["parameters"] if param["name"] == "format"]
    assert format_param["schema"]["enum"] == ["splunk", "alertmanager", "wazuh", "ocsf"]
    assert operation["security"] == [{"IntegrationToken": []}]
    assert {"200", "201", "400", "401", "403", "413", "429"} <= set(operation["responses"])
    splunk = schema["paths"]["/api/alerts/splunk/{token}"]["post"]
    assert [param["name"] for param in splunk["parameters"] if param["in"] == "path"] == ["token"]
