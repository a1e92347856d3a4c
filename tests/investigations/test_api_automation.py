"""The API a SOC automates against (issue 13 item 16): an investigation's state over HTTP, the actions of
one investigation, a request's idempotency key, approval policies, and investigating an alert again."""

import json

import pytest
from django.test import Client

from core.roles import MANAGER
from investigations.models import AuditRecord, Investigation, ToolPolicy
from investigations.tokens import create_api_token

pytestmark = pytest.mark.django_db(transaction=True)


def call(user, method: str, path: str, body=None):
    token = create_api_token(user, "automation")[1]
    data = "" if body is None else json.dumps(body)
    return Client().generic(
        method, f"/api{path}", data, content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )


def test_an_investigation_reads_as_json_with_its_requests_and_their_keys(waiting, analyst, make_user):
    investigation, request = waiting
    response = call(analyst, "GET", f"/investigations/{investigation.pk}")
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["status"], body["alert"]["external_id"]) == (investigation.pk, "waiting", "LAB-SIEM-1001")
    (shown,) = [r for r in body["requests"] if r["id"] == request.pk]
    assert shown["idempotency_key"] == request.idempotency_key and shown["state"] == "pending"
    assert call(make_user("nemo"), "GET", f"/investigations/{investigation.pk}").status_code == 404  # not theirs
    assert call(analyst, "GET", "/investigations/999999").json() == {"detail": "No such investigation."}


def test_the_actions_of_one_investigation(waiting, analyst, make_investigation):
    investigation, _ = waiting
    other = make_investigation("OTHER-1")
    mine = call(analyst, "GET", f"/actions?investigation={investigation.pk}").json()["items"]
    assert {item["id"] for item in mine} == set(investigation.action_requests.values_list("pk", flat=True))
    assert call(analyst, "GET", f"/actions?investigation={other.pk}").json()["items"] == []


def test_an_admin_sets_a_write_tools_approval_policy_over_the_api_and_it_is_recorded(admin_user):
    response = call(admin_user, "PATCH", "/manage/tools/isolate_host", {"approvals_needed": 2, "expiry_seconds": 600})
    assert response.status_code == 200, response.content
    assert response.json()["policy"] == {"requires_approval": True, "approvals_needed": 2, "expiry_seconds": 600}
    policy = ToolPolicy.objects.get(tool="isolate_host")
    assert (policy.approvals_needed, policy.expiry_seconds) == (2, 600)
    (record,) = AuditRecord.objects.filter(outcome="policy_changed")
    assert record.extra["after"] == {"approvals_needed": 2, "expiry_seconds": 600}

    read = call(admin_user, "PATCH", "/manage/tools/get_host", {"approvals_needed": 2})
    assert read.status_code == 400 and read.json()["detail"] == "get_host reads: it has no approval policy."
    assert call(admin_user, "PATCH", "/manage/tools/isolate_host", {"expiry_seconds": 5}).status_code == 400
    assert call(admin_user, "PATCH", "/manage/tools/isolate_host", {"approvers": "me"}).status_code == 400


def test_an_alert_is_investigated_again_once_the_last_investigation_ended(waiting, analyst, make_user):
    investigation, _ = waiting
    path = f"/investigations/{investigation.pk}/again"
    busy = call(analyst, "POST", path)
    assert busy.status_code == 409 and busy.json() == {"detail": "An investigation of this alert is still in progress."}
    assert call(make_user("max", MANAGER), "POST", path).status_code == 403

    Investigation.objects.filter(pk=investigation.pk).update(status="completed", verdict="malicious")
    again = call(analyst, "POST", path)
    assert again.status_code == 201, again.content
    body = again.json()
    assert (
        body["id"] != investigation.pk and body["status"] == "queued" and body["alert"]["id"] == investigation.alert_id
    )
    assert Investigation.objects.get(pk=body["id"]).requested_by == analyst
