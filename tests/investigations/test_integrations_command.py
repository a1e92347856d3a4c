"""`manage.py integrations create|list|revoke`, and what its tokens then do at POST /api/alerts."""

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from investigations.audit import chain as audit
from investigations.models import AuditRecord, Integration

pytestmark = pytest.mark.django_db


def integrations(*args: str) -> str:
    out = StringIO()
    call_command("integrations", *args, stdout=out)
    return out.getvalue()


def token_in(output: str) -> str:
    tokens = re.findall(r"^ghi_\S+$", output, flags=re.MULTILINE)
    assert len(tokens) == 1, output
    return tokens[0]


def created_token(name: str) -> str:
    return token_in(integrations("create", name))


def shown(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def post_alert(client, token: str, external_id: str = "SIEM-1", source: str = "lab-siem"):
    alert = {
        "source": source,
        "external_id": external_id,
        "title": "Suspicious login",
        "severity": "medium",
        "observed_at": (timezone.now() - timedelta(minutes=5)).isoformat(),
    }
    return client.post(
        "/api/alerts", json.dumps(alert), content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def test_create_prints_a_working_token_once_and_keeps_only_its_hash(client):
    output = integrations("create", "lab-siem")
    assert "will not be shown again" in output
    token = token_in(output)

    integration = Integration.objects.get(name="lab-siem")
    assert integration.token_prefix == token[:10]
    assert token not in json.dumps(list(Integration.objects.values()), default=str)
    assert post_alert(client, token).status_code == 201


def test_create_refuses_a_name_already_taken():
    created_token("lab-siem")
    with pytest.raises(CommandError, match="already exists"):
        integrations("create", "lab-siem")
    assert Integration.objects.count() == 1


def test_create_refuses_a_blank_name():
    with pytest.raises(CommandError, match="name"):
        integrations("create", "  ")
    assert not Integration.objects.exists()


def test_list_shows_each_integration_and_its_use_but_never_its_token(client):
    assert "No integrations" in integrations("list")
    token = created_token("lab-siem")
    created_token("splunk")

    before = integrations("list")
    row = next(line for line in before.splitlines() if line.startswith("lab-siem"))
    assert token[:10] in row and "never" in row and row.rstrip().endswith("no")
    assert "splunk" in before and token not in before

    post_alert(client, token)
    integrations("revoke", "lab-siem")
    after = integrations("list")
    row = next(line for line in after.splitlines() if line.startswith("lab-siem"))
    integration = Integration.objects.get(name="lab-siem")
    assert row.split()[2:] == [
        *shown(integration.created_at).split(),
        *shown(integration.last_used_at).split(),
        *shown(integration.revoked_at).split(),
    ]
    assert token not in after


def test_revoke_stops_the_token_working(client):
    token = created_token("lab-siem")
    assert post_alert(client, token, "SIEM-1").status_code == 201

    assert "Revoked" in integrations("revoke", "lab-siem")
    assert Integration.objects.get(name="lab-siem").revoked_at is not None
    response = post_alert(client, token, "SIEM-2")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoking_twice_keeps_the_first_time():
    created_token("lab-siem")
    integrations("revoke", "lab-siem")
    first = Integration.objects.get(name="lab-siem").revoked_at
    assert "already revoked" in integrations("revoke", "lab-siem")
    assert Integration.objects.get(name="lab-siem").revoked_at == first


def test_revoke_refuses_an_unknown_name():
    created_token("lab-siem")
    with pytest.raises(CommandError, match="no integration named"):
        integrations("revoke", "lab-sie")
    assert Integration.objects.get(name="lab-siem").revoked_at is None


# -- sources --------------------------------------------------------------------------------


def sources_changes() -> list[AuditRecord]:
    return list(AuditRecord.objects.filter(kind="admin_change", outcome="integration_sources").order_by("seq"))


def test_a_new_integration_sends_its_own_name_as_source_and_list_shows_it(client):
    output = integrations("create", "lab-siem")
    assert "lab-siem" in output.splitlines()[-1]
    assert Integration.objects.get(name="lab-siem").sources == ["lab-siem"]
    listing = integrations("list").splitlines()
    row = next(index for index, line in enumerate(listing) if line.startswith("lab-siem"))
    assert listing[row + 1].split() == ["sources:", "lab-siem"]


def test_sources_sets_what_it_may_send_as_one_audited_change(client):
    token = created_token("lab-siem")
    assert "may send alerts of: splunk, zeek" in integrations("sources", "lab-siem", "zeek", "splunk")

    assert Integration.objects.get(name="lab-siem").sources == ["splunk", "zeek"]
    (change,) = sources_changes()
    assert change.actor == "manage.py integrations"
    assert change.extra == {
        "before": {"integration": "lab-siem", "sources": ["lab-siem"]},
        "after": {"integration": "lab-siem", "sources": ["splunk", "zeek"]},
    }
    assert post_alert(client, token, source="splunk").status_code == 201
    assert post_alert(client, token, "SIEM-2", source="lab-siem").status_code == 403

    assert "already sends" in integrations("sources", "lab-siem", "splunk", "zeek")
    assert len(sources_changes()) == 1  # nothing changed, nothing recorded
    assert audit.verify_database()[1] is None


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("other-siem", 'integration "other-siem"'),
        ("console", "typed in the console"),
        ("has space", "not a source name"),
    ],
)
def test_sources_refuses_another_integrations_source_the_consoles_and_a_bad_name(source, why):
    created_token("lab-siem")
    created_token("other-siem")
    with pytest.raises(CommandError, match=why):
        integrations("sources", "lab-siem", source)
    assert Integration.objects.get(name="lab-siem").sources == ["lab-siem"]
    assert not sources_changes()


def test_a_revoked_integrations_source_may_be_given_to_its_successor():
    created_token("lab-siem")
    integrations("revoke", "lab-siem")
    created_token("lab-siem-2")
    integrations("sources", "lab-siem-2", "lab-siem")
    assert Integration.objects.get(name="lab-siem-2").sources == ["lab-siem"]
