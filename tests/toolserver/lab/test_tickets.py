import pytest

from core.roles import ANALYST
from toolserver.lab.models import Ticket

TICKET = {"title": "Phishing on WS-FIN-07", "body": "Encoded PowerShell after a click.", "severity": "high", "alert_ref": "LAB-SIEM-1001"}


def test_tickets_are_numbered_from_4471(estate, lab):
    first = lab.post("tickets", "ticketing", TICKET)
    assert first.status_code == 201
    assert first.json() == {"ticket_id": "4471", "url": "/lab/tickets/4471"}
    second = lab.post("tickets", "ticketing", {**TICKET, "alert_ref": "LAB-SIEM-1002"})
    assert second.json()["ticket_id"] == "4472"
    ticket = Ticket.objects.get(number=4471)
    assert (ticket.severity, ticket.alert_ref, ticket.created_by) == ("high", "LAB-SIEM-1001", "ticketing")


def test_alert_ref_may_be_left_out(estate, lab):
    body = {key: value for key, value in TICKET.items() if key != "alert_ref"}
    assert lab.post("tickets", "ticketing", body).status_code == 201


@pytest.mark.parametrize("change", [
    {"severity": "urgent"}, {"severity": None}, {"title": ""}, {"title": None}, {"body": 7}, {"priority": "p1"},
])
def test_bad_tickets_are_400(estate, lab, change):
    body = {key: value for key, value in {**TICKET, **change}.items() if value is not None}
    response = lab.post("tickets", "ticketing", body)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert not Ticket.objects.exists()


def test_comment_on_a_ticket(estate, lab):
    lab.post("tickets", "ticketing", TICKET)
    response = lab.post("tickets/4471/comments", "ticketing", {"body": "Host isolated (ISO-1)."})
    assert response.status_code == 201
    assert response.json()["ticket_id"] == "4471" and response.json()["comment_id"]
    assert Ticket.objects.get(number=4471).comments.get().body == "Host isolated (ISO-1)."


@pytest.mark.parametrize("ticket_id", ["4471", "9999", "abc"])
def test_comment_on_an_unknown_ticket_is_404(estate, lab, ticket_id):
    response = lab.post(f"tickets/{ticket_id}/comments", "ticketing", {"body": "Hello"})
    assert response.status_code == 404 and response.json() == {"error": "not_found", "target": ticket_id}


def test_a_comment_needs_a_body(estate, lab):
    lab.post("tickets", "ticketing", TICKET)
    assert lab.post("tickets/4471/comments", "ticketing", {"body": ""}).status_code == 400


def test_the_ticket_page_shows_the_ticket_to_console_users(estate, lab, client, make_user):
    lab.post("tickets", "ticketing", TICKET)
    lab.post("tickets/4471/comments", "ticketing", {"body": "Host isolated."})
    client.force_login(make_user("rita", ANALYST))
    page = client.get("/lab/tickets/4471")
    assert page.status_code == 200
    assert b"Phishing on WS-FIN-07" in page.content and b"Host isolated." in page.content
    assert client.get("/lab/tickets/4999").status_code == 404


def test_the_ticket_page_needs_a_role(estate, lab, client, make_user):
    lab.post("tickets", "ticketing", TICKET)
    assert client.get("/lab/tickets/4471").status_code == 302  # to the sign-in page
    client.force_login(make_user("nobody"))
    assert client.get("/lab/tickets/4471").status_code == 403
