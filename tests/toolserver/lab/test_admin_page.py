import pytest
from django.conf import settings

from console.navigation import items_for
from toolserver.lab import faults
from toolserver.lab.models import LabFault

REASON = "Encoded PowerShell from Word and a payload intel rates malicious."


def test_the_admin_page_needs_a_sign_in(client, db):
    response = client.get("/lab/")
    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("who", ["analyst", "manager"])
def test_the_admin_page_is_for_admins_only(client, request, who):
    client.force_login(request.getfixturevalue(who))
    assert client.get("/lab/").status_code == 403
    assert client.post("/lab/", {"backend": "siem", "mode": "error_5xx"}).status_code == 403
    assert LabFault.objects.filter(mode="error_5xx").count() == 0


def test_the_admin_page_shows_faults_writes_and_keys_but_no_key(estate, lab, client, admin_user):
    lab.post("edr/hosts/H-1042/isolate", "edr-response", {"reason": REASON})
    faults.inject("edr", "timeout", delay_ms=1500, remaining=3)
    client.force_login(admin_user)
    response = client.get("/lab/")
    assert response.status_code == 200
    page = response.content.decode()
    for text in (
        "siem",
        "edr",
        "identity",
        "ticketing",
        "intel",
        "timeout",
        "1500 ms",
        "3 more requests",
        "isolate_host",
        "edr-response",
        "intel:read",
    ):
        assert text in page, text
    for key in lab.keys.values():
        assert key not in page


def test_a_fault_set_through_the_form_reaches_the_api(estate, lab, client, admin_user):
    client.force_login(admin_user)
    response = client.post("/lab/", {"backend": "siem", "mode": "rate_limit", "retry_after_s": "7", "remaining": "1"})
    assert response.status_code == 302 and response["Location"] == "/lab/"
    fault = LabFault.objects.get(backend="siem")
    assert (fault.mode, fault.retry_after_s, fault.remaining) == ("rate_limit", 7, 1)
    limited = lab.get("siem/logins", "siem")
    assert limited.status_code == 429 and limited["Retry-After"] == "7"
    assert lab.get("siem/logins", "siem").status_code == 200  # remaining=1: used up


def test_a_fault_cleared_through_the_form(estate, lab, client, admin_user):
    faults.inject("intel", "error_5xx")
    client.force_login(admin_user)
    client.post("/lab/", {"backend": "intel", "mode": "none"})
    assert lab.get("intel/lookup", "intel", kind="ip", value="192.0.2.1").status_code == 200
    faults.inject("siem", "error_5xx")
    faults.inject("edr", "error_5xx")
    client.post("/lab/", {"clear_all": "1"})
    assert {fault.mode for fault in faults.current().values()} == {"none"}


def test_an_invalid_fault_is_shown_not_set(estate, client, admin_user):
    client.force_login(admin_user)
    response = client.post("/lab/", {"backend": "siem", "mode": "error_5xx", "remaining": "0"})
    assert response.status_code == 400
    assert b"greater than or equal to 1" in response.content
    assert faults.current()["siem"].mode == "none"


def test_admins_see_the_lab_in_the_navigation(analyst, manager, admin_user):
    assert settings.LAB_ENABLED

    def labels(user):
        return [item["label"] for item in items_for(user)]

    assert "Lab" in labels(admin_user)
    assert "Lab" not in labels(analyst) and "Lab" not in labels(manager)
