import pytest

from core.roles import ANALYST
from toolserver.lab.models import Ticket

TICKET = {
    "title": "Phishing on WS-FIN-07",
    "body": "Encoded PowerShell after a click.",
    "severity": "high",
    "alert_ref": "LAB-SIEM-1001",
}


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


@pytest.mark.parametrize(
    "change",
    [
        {"severity": "urgent"},
        {"severity": None},
        {"title": ""},
        {"title": None},
        {"body": 7},
        {"priority": "p1"},
    ],
)
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


# -- the key a ticket carries (issue 13 item 3: exactly once must not rest on the backend deduplicating) ----
def test_a_ticket_and_a_comment_carry_the_writes_idempotency_key_and_are_found_by_it(estate, lab):
    lab.post("tickets", "ticketing", TICKET, idempotency_key="key-ticket")
    lab.post("tickets/4471/comments", "ticketing", {"body": "Host isolated."}, idempotency_key="key-comment")
    lab.post("tickets", "ticketing", {**TICKET, "alert_ref": "LAB-SIEM-1002"}, idempotency_key="key-other")

    found = lab.get("tickets/search", "ticketing", idempotency_key="key-ticket")
    assert found.status_code == 200
    assert found.json() == {"tickets": [{"ticket_id": "4471", "url": "/lab/tickets/4471"}], "comments": []}
    comment = Ticket.objects.get(number=4471).comments.get()
    assert lab.get("tickets/search", "ticketing", idempotency_key="key-comment").json() == {
        "tickets": [],
        "comments": [{"ticket_id": "4471", "comment_id": str(comment.pk)}],
    }
    assert lab.get("tickets/search", "ticketing", idempotency_key="never-sent").json() == {
        "tickets": [],
        "comments": [],
    }


def test_a_ticketing_system_that_does_not_deduplicate_still_carries_the_key(estate, lab):
    """As a real ticketing system's custom field: no deduplication on it, but what was written is findable."""
    from toolserver.lab import faults

    faults.inject("ticketing", "no_dedupe")
    lab.post("tickets", "ticketing", TICKET, idempotency_key="key-twice")
    lab.post("tickets", "ticketing", TICKET, idempotency_key="key-twice")  # not deduplicated: a second ticket
    found = lab.get("tickets/search", "ticketing", idempotency_key="key-twice").json()
    assert [ticket["ticket_id"] for ticket in found["tickets"]] == ["4471", "4472"]


@pytest.mark.parametrize("query", [{}, {"idempotency_key": ""}, {"idempotency_key": "k", "title": "x"}])
def test_a_search_needs_exactly_a_key(estate, lab, query):
    response = lab.get("tickets/search", "ticketing", **query)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"


def test_only_the_ticketing_key_may_search_tickets(estate, lab):
    assert lab.get("tickets/search", "siem", idempotency_key="k").status_code == 403
    assert lab.get("tickets/search", token="", idempotency_key="k").status_code == 401
