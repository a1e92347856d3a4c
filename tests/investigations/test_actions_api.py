"""/api/actions through the real URLconf: the approval queue, decisions, who may decide, both ways
of signing in (session with CSRF, a person's bearer token), `manage.py api_tokens`, the schema.

The pending requests are real: the agent runs the lab's phishing story in this process until it
asks to isolate WS-FIN-07. No worker runs here, so an approved request stays approved.
"""

import html
import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from investigations.approvals import services as approvals
from investigations.intake.services import create_integration
from investigations.live_messages import cards
from investigations.models import (
    ActionApproval,
    ActionRequest,
    ActionTransition,
    Alert,
    ApiToken,
    ToolPolicy,
)
from investigations.runs import agent
from investigations.tokens import create_api_token
from toolserver.lab.models import LabWrite

pytestmark = pytest.mark.django_db(transaction=True)

ISOLATE = "isolate_host"


@pytest.fixture
def pending(waiting):
    return waiting[1]


def token_of(user) -> str:
    """A token made to decide (a chat bot's): one not made to only reads."""
    return create_api_token(user, "tests", decide=True)[1]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def get(client, path: str, token: str | None = None, **params):
    return client.get(f"/api{path}", params, headers=bearer(token) if token else {})


def post(client, path: str, body=None, token: str | None = None, **headers):
    if token:
        headers |= bearer(token)
    data = "" if body is None else body if isinstance(body, str) else json.dumps(body)
    return client.post(f"/api{path}", data=data, content_type="application/json", headers=headers)


def approve(client, request: ActionRequest, token: str | None = None, body=None, **headers):
    return post(client, f"/actions/{request.pk}/approve", body, token, **headers)


def reject(client, request: ActionRequest, reason, token: str | None = None, **headers):
    return post(client, f"/actions/{request.pk}/reject", {"reason": reason}, token, **headers)


def state_of(request: ActionRequest) -> str:
    return ActionRequest.objects.get(pk=request.pk).state


def summary_now(request: ActionRequest) -> dict:
    return approvals.summary(ActionRequest.objects.get(pk=request.pk))


def api_tokens(*args: str) -> str:
    out = StringIO()
    call_command("api_tokens", *args, stdout=out)
    return out.getvalue()


def make_action(investigation, number: int, **fields) -> ActionRequest:
    """A request saved directly, for listing: it never reaches a decision or a backend."""
    isolation = {
        "tool": ISOLATE,
        "server": "edr-response",
        "arguments": {"host": f"ws-{number}", "reason": "test"},
        "target": f"host=ws-{number}",
    }
    return ActionRequest.objects.create(
        investigation=investigation,
        tool_use_id=f"toolu_test{number:08d}",
        idempotency_key=f"key-{number}",
        expires_at=timezone.now() + timedelta(hours=1),
        **isolation | fields,
    )


# -- the queue and one request ------------------------------------------------------------------


def test_the_pending_queue_lists_the_request_and_says_who_may_approve_it(client, pending, analyst, manager):
    response = get(client, "/actions", token_of(analyst), status="pending")
    assert response.status_code == 200, response.content
    page = response.json()
    assert page == {"items": [summary_now(pending) | {"may_approve": True}], "next_cursor": None}
    item = page["items"][0]
    assert (item["tool"], item["target"], item["state"]) == (ISOLATE, "host=ws-fin-07", "pending")

    as_manager = get(client, "/actions", token_of(manager), status="pending").json()["items"]
    assert [(item["id"], item["may_approve"]) for item in as_manager] == [(pending.pk, False)]
    assert get(client, "/actions", token_of(analyst), status="succeeded").json()["items"] == []


def test_a_status_that_is_no_state_is_a_400_naming_the_field(client, analyst, db):
    response = get(client, "/actions", token_of(analyst), status="done")
    assert response.status_code == 400
    assert response.json()["detail"] == "Invalid filter."
    assert [error["field"] for error in response.json()["errors"]] == ["status"]
    for limit in ("0", "201", "many"):
        assert get(client, "/actions", token_of(analyst), limit=limit).status_code == 400


def test_the_list_is_newest_first_in_pages_with_a_cursor(client, make_investigation, analyst):
    investigation = make_investigation()
    made = [make_action(investigation, number) for number in range(5)]
    made[1].state = "rejected"
    made[1].save()
    token = token_of(analyst)

    first = get(client, "/actions", token, limit=2).json()
    assert [item["id"] for item in first["items"]] == [made[4].pk, made[3].pk]
    second = get(client, "/actions", token, limit=2, cursor=first["next_cursor"]).json()
    assert [item["id"] for item in second["items"]] == [made[2].pk, made[1].pk]
    last = get(client, "/actions", token, limit=2, cursor=second["next_cursor"]).json()
    assert ([item["id"] for item in last["items"]], last["next_cursor"]) == ([made[0].pk], None)

    pending_only = get(client, "/actions", token, status="pending").json()["items"]
    assert [item["id"] for item in pending_only] == [made[4].pk, made[3].pk, made[2].pk, made[0].pk]


def test_one_request_shows_its_transitions_and_approvals(client, pending, analyst):
    token = token_of(analyst)
    before = get(client, f"/actions/{pending.pk}", token)
    assert before.status_code == 200
    assert before.json() == summary_now(pending) | {
        "may_approve": True,
        "transitions": [
            {
                "from_state": "",
                "to_state": "pending",
                "actor": "agent",
                "reason": pending.reason,
                "at": pending.transitions.get().at.isoformat(),
            },
        ],
        "approved_by": [],
    }

    assert approve(client, pending, token, {"reason": "phishing confirmed on WS-FIN-07"}).status_code == 200
    after = get(client, f"/actions/{pending.pk}", token).json()
    assert (after["state"], after["approvals"]) == ("approved", 1)
    assert [(t["from_state"], t["to_state"], t["actor"], t["reason"]) for t in after["transitions"]] == [
        ("", "pending", "agent", pending.reason),
        ("pending", "approved", "user:ana", "phishing confirmed on WS-FIN-07"),
    ]
    assert [(a["username"], a["reason"]) for a in after["approved_by"]] == [("ana", "phishing confirmed on WS-FIN-07")]


def test_what_a_write_is_sent_with_is_shown_whole_wherever_it_is_decided(client, make_investigation, analyst):
    """A ticket's target is the alert: its title and body, where findings could be carried off, are in
    the API's summary, the queue's card and the socket's card, exactly as the approval sends them."""
    body = "Findings for <b>ACME</b>: 'ws-fin-07' beaconed to 203.0.113.7 & exfiltrated payroll.xlsx"
    ticket = make_action(
        make_investigation(),
        1,
        tool="open_ticket",
        server="ticketing",
        target="alert",
        arguments={"title": "Phishing on WS-FIN-07", "body": body, "severity": "high"},
    )
    token = token_of(analyst)
    assert get(client, f"/actions/{ticket.pk}", token).json()["arguments"] == ticket.arguments
    assert get(client, "/actions", token).json()["items"][0]["arguments"] == ticket.arguments

    client.force_login(analyst)
    shown = html.unescape(client.get("/approvals/").content.decode())
    assert body in shown and "Phishing on WS-FIN-07" in shown
    assert "<b>ACME</b>" not in client.get("/approvals/").content.decode()  # escaped: untrusted text
    assert body in html.unescape(cards(ActionRequest.objects.get(pk=ticket.pk))["approver"])


def test_characters_that_change_how_text_reads_are_shown_as_their_escapes(client, make_investigation, analyst):
    """A right-to-left override makes "…exe.pdf" read as "…fdp.exe"; a zero-width space hides in a name."""
    body = "Attachment invoice\u202efdp.exe from ad\u200bmin"
    comment = make_action(  # a comment's target holds its text: shown in the card's head too
        make_investigation(),
        2,
        tool="add_comment",
        server="ticketing",
        target=f"ticket=4471 body={body.lower()}",
        arguments={"ticket_id": "4471", "body": body},
    )
    client.force_login(analyst)
    for page in ("/approvals/", f"/approvals/{comment.pk}/"):
        shown = html.unescape(client.get(page).content.decode())
        assert "invoice\\u202efdp.exe from ad\\u200bmin" in shown and "\u202e" not in shown, page
        assert "body=attachment invoice\\u202efdp.exe" in shown, page
    assert get(client, f"/actions/{comment.pk}", token_of(analyst)).json()["arguments"]["body"] == body  # as sent


def test_characters_drawn_as_nothing_are_shown_as_their_escapes_on_every_card(client, make_investigation, analyst):
    """Variation selectors (256: a byte each) hide a secret in a one-line comment; a combining grapheme
    joiner or a Mongolian selector hides in a name. Not format characters, yet drawn as nothing."""
    smuggled = "".join(chr(0xFE00 + byte) if byte < 16 else chr(0xE0100 + byte - 16) for byte in b"pw: Winter2024!")
    body = f"Contained; closing.{smuggled} ad\u034fm\u180bin\u2028"
    comment = make_action(
        make_investigation(),
        3,
        tool="add_comment",
        server="ticketing",
        target=f"ticket=4471 body={body.lower()}",
        arguments={"ticket_id": "4471", "body": body},
        reason=body,  # the agent's words, shown as "Why"
        outcome=body,
    )
    Alert.objects.filter(pk=comment.investigation.alert_id).update(title=body)  # the SIEM's words
    client.force_login(analyst)
    shown = [html.unescape(client.get(page).content.decode()) for page in ("/approvals/", f"/approvals/{comment.pk}/")]
    shown.append(html.unescape(cards(ActionRequest.objects.get(pk=comment.pk))["approver"]))
    hidden = {"\u034f", "\u180b", "\u2028", *smuggled}
    for text in shown:
        assert not hidden & set(text)
        assert "closing.\\U000e0160\\U000e0167" in text and "ad\\u034fm\\u180bin\\u2028" in text


def test_an_unknown_request_is_404(client, analyst, db):
    token = token_of(analyst)
    assert get(client, "/actions/999999", token).status_code == 404
    response = post(client, "/actions/999999/approve", None, token)
    assert (response.status_code, response.json()) == (404, {"detail": "No such action request."})
    assert post(client, "/actions/999999/reject", {"reason": "no"}, token).status_code == 404


# -- deciding ---------------------------------------------------------------------------------


def test_approved_once_the_second_approval_is_told_what_happened(client, pending, analyst, make_user):
    response = approve(client, pending, token_of(analyst))
    assert response.status_code == 200, response.content
    assert response.json() == summary_now(pending)
    assert (response.json()["state"], response.json()["approvals"]) == ("approved", 1)

    late = approve(client, pending, token_of(make_user("second-analyst", "analyst")))
    assert late.status_code == 409
    body = late.json()
    assert body["state"] == "approved" and body["request"] == summary_now(pending)
    assert "approved already" in body["detail"]
    assert ActionApproval.objects.filter(request=pending).count() == 1
    assert ActionTransition.objects.filter(request=pending, from_state="pending", to_state="approved").count() == 1
    assert not LabWrite.objects.exists()  # no worker runs in this process: approval alone reaches no backend


def test_a_rejection_needs_a_reason_and_then_stops_the_request(client, pending, analyst):
    token = token_of(analyst)
    for reason in ("", "   ", "x" * 1001):
        response = reject(client, pending, reason, token)
        assert response.status_code == 400, (reason[:5], response.content)
        assert response.json()["detail"] == "Invalid decision."
        assert [error["field"] for error in response.json()["errors"]] == ["reason"]
    assert post(client, f"/actions/{pending.pk}/reject", None, token).status_code == 400  # no body at all
    assert state_of(pending) == "pending"

    response = reject(client, pending, "  Finance server: isolate after month-end close.  ", token)
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "rejected"
    assert response.json()["outcome"] == "rejected by ana: Finance server: isolate after month-end close."
    assert (
        ActionRequest.objects.get(pk=pending.pk).result["analyst_reason"]
        == "Finance server: isolate after month-end close."
    )

    again = approve(client, pending, token)
    assert (again.status_code, again.json()["state"]) == (409, "rejected")


def test_unknown_fields_in_a_decision_are_refused(client, pending, analyst):
    token = token_of(analyst)
    response = approve(client, pending, token, {"reason": "ok", "approvals_needed": 0})
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["approvals_needed"]
    response = post(client, f"/actions/{pending.pk}/reject", {"reason": "no", "state": "approved"}, token)
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["errors"]] == ["state"]
    assert post(client, f"/actions/{pending.pk}/approve", "[1, 2]", token).status_code == 400
    assert post(client, f"/actions/{pending.pk}/approve", "{not json", token).status_code == 400
    assert state_of(pending) == "pending" and not ActionApproval.objects.exists()


def test_a_manager_may_not_approve_and_the_request_stays_pending(client, pending, manager):
    response = approve(client, pending, token_of(manager))
    assert response.status_code == 403
    assert response.json() == {"detail": "You are not allowed to approve isolate_host."}
    response = reject(client, pending, "not my call", token_of(manager))
    assert response.status_code == 403
    assert state_of(pending) == "pending"
    assert not ActionApproval.objects.filter(request=pending).exists()


def test_a_user_granted_the_tool_through_guardian_may_approve_it(client, waiting, make_user):
    investigation, pending = waiting
    responder = make_user("responder")  # no role at all
    token = token_of(responder)
    assign_perm("investigations.approve_tool", responder, ToolPolicy.objects.get(tool=ISOLATE))
    # Granted the tool but not the investigation: the request is hidden, as if it did not exist.
    assert approve(client, pending, token).status_code == 404
    assert get(client, "/actions", token).json()["items"] == []

    assign_perm("investigations.view_investigation", responder, investigation)  # a team's object permission
    assert [(item["id"], item["may_approve"]) for item in get(client, "/actions", token).json()["items"]] == [
        (pending.pk, True)
    ]
    response = approve(client, pending, token)
    assert (response.status_code, response.json()["state"]) == (200, "approved")
    assert list(ActionApproval.objects.filter(request=pending).values_list("user__username", flat=True)) == [
        "responder"
    ]


def test_a_permission_withdrawn_after_the_page_loaded_is_checked_at_the_decision(client, pending, make_user):
    from guardian.shortcuts import remove_perm

    responder = make_user("responder", "manager")  # sees every investigation, approves only what is granted
    policy = ToolPolicy.objects.get(tool=ISOLATE)
    assign_perm("investigations.approve_tool", responder, policy)
    token = token_of(responder)
    assert get(client, f"/actions/{pending.pk}", token).json()["may_approve"] is True
    remove_perm("investigations.approve_tool", responder, policy)
    assert approve(client, pending, token).status_code == 403
    assert state_of(pending) == "pending"


def test_four_eyes_through_the_api(client, make_user, analyst, received):
    ToolPolicy.objects.filter(tool=ISOLATE).update(approvals_needed=2)
    _, investigation = received("LAB-SIEM-1001")
    agent.run(investigation.pk)
    pending = investigation.action_requests.get(state="pending")
    token = token_of(analyst)

    first = approve(client, pending, token)
    assert (first.status_code, first.json()["state"], first.json()["approvals"]) == (200, "pending", 1)
    twice = approve(client, pending, token)
    assert twice.status_code == 409 and set(twice.json()) == {"detail"}  # still pending: another person must approve
    second = approve(client, pending, token_of(make_user("second-analyst", "analyst")))
    assert (second.status_code, second.json()["state"], second.json()["approvals"]) == (200, "approved", 2)


# -- who is asking ------------------------------------------------------------------------------


def test_a_session_post_needs_the_csrf_token(pending, analyst):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(analyst)
    assert browser.get("/api/actions", {"status": "pending"}).status_code == 200  # a GET needs none

    refused = approve(browser, pending)
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    assert state_of(pending) == "pending"

    page = browser.get("/investigations/")  # a page the analyst has open carries the token
    csrf_token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    response = approve(browser, pending, **{"X-CSRFToken": csrf_token})
    assert (response.status_code, response.json()["state"]) == (200, "approved")


def test_a_token_not_made_to_decide_only_reads_even_with_step_up_off(client, pending, analyst, settings):
    """Its scope is a right, not only a proof of presence: turning step-up off does not let a dashboard's
    read token approve writes."""
    settings.STEP_UP_MINUTES = 0
    _, reader = create_api_token(analyst, "dashboard")
    assert get(client, f"/actions/{pending.pk}", reader).status_code == 200
    for refused in (approve(client, pending, reader), reject(client, pending, "no", reader)):
        assert refused.status_code == 403 and "This token only reads" in refused.json()["detail"]
    assert state_of(pending) == "pending"


def test_a_bearer_token_needs_no_csrf_token(pending, analyst):
    script = Client(enforce_csrf_checks=True)
    response = approve(script, pending, token_of(analyst))
    assert (response.status_code, response.json()["state"]) == (200, "approved")
    assert ApiToken.objects.get(user=analyst).last_used_at is not None


def test_anonymous_callers_and_integration_tokens_are_401(client, pending):
    _, integration_token = create_integration("lab-siem")
    for token in (None, integration_token, "ghu_not-a-real-token"):
        for response in (
            get(client, "/actions", token),
            get(client, f"/actions/{pending.pk}", token),
            approve(client, pending, token),
            reject(client, pending, "no", token),
        ):
            assert response.status_code == 401, (token, response.content)
            assert response["WWW-Authenticate"].startswith("Bearer")
    assert "integration token" in approve(client, pending, integration_token).json()["detail"]
    assert state_of(pending) == "pending"


def test_a_malformed_authorization_header_is_401_not_a_fallback_to_the_session(pending, analyst):
    browser = Client()
    browser.force_login(analyst)
    assert browser.get("/api/actions", headers={"Authorization": "Basic YW5hOnB3"}).status_code == 401
    assert browser.get("/api/actions").status_code == 200


def test_a_user_who_may_not_view_the_investigation_sees_nothing_of_it(client, waiting, make_user, make_investigation):
    _, pending = waiting
    outsider = make_user("outsider")  # no role
    own = make_investigation("TEAM-1")
    visible = make_action(own, 1)
    assign_perm("investigations.view_investigation", outsider, own)
    token = token_of(outsider)

    assert get(client, f"/actions/{pending.pk}", token).status_code == 404
    assert [item["id"] for item in get(client, "/actions", token).json()["items"]] == [visible.pk]
    assert get(client, f"/actions/{visible.pk}", token).status_code == 200
    assert reject(client, pending, "not mine", token).status_code == 404
    assert state_of(pending) == "pending"


# -- manage.py api_tokens -------------------------------------------------------------------------


def test_api_tokens_create_list_and_revoke(client, pending, analyst, make_user):
    output = api_tokens("create", "ana", "--name", "chatops bot")
    tokens = re.findall(r"^ghu_\S+$", output, flags=re.MULTILINE)
    assert len(tokens) == 1, output
    token = tokens[0]
    api_token = ApiToken.objects.get(user=analyst)
    assert token not in (api_token.token_hash, api_token.token_prefix) and api_token.name == "chatops bot"
    assert get(client, "/actions", token).status_code == 200

    make_user("bob", "analyst")
    api_tokens("create", "bob", "--name", "bob's script")
    listed = api_tokens("list")
    assert token not in listed and api_token.token_prefix in listed
    assert "chatops bot" in listed and "bob's script" in listed
    only_ana = api_tokens("list", "ana")
    assert "chatops bot" in only_ana and "bob's script" not in only_ana

    assert "Revoked" in api_tokens("revoke", str(api_token.pk))
    assert "already revoked" in api_tokens("revoke", str(api_token.pk))
    response = approve(client, pending, token)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert state_of(pending) == "pending"


def test_api_tokens_refuses_unknown_users_and_tokens(make_user, db):
    with pytest.raises(CommandError, match="no user"):
        api_tokens("create", "nobody", "--name", "x")
    make_user("gone", "analyst", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        api_tokens("create", "gone", "--name", "x")
    with pytest.raises(CommandError, match="no API token"):
        api_tokens("revoke", "424242")
    assert not ApiToken.objects.exists()


def test_a_token_acts_with_its_user_now_an_inactive_user_is_refused(client, pending, analyst):
    token = token_of(analyst)
    analyst.is_active = False
    analyst.save()
    assert approve(client, pending, token).status_code == 401
    assert state_of(pending) == "pending"


# -- the schema -------------------------------------------------------------------------------------


def test_the_openapi_schema_shows_both_ways_of_signing_in(client, db):
    schema = client.get("/api/openapi.json").json()
    operations = {
        ("/api/actions", "get"): "list_actions",
        ("/api/actions/{id}", "get"): "action_detail",
        ("/api/actions/{id}/approve", "post"): "approve_action",
        ("/api/actions/{id}/reject", "post"): "reject_action",
    }
    for (path, method), operation_id in operations.items():
        operation = schema["paths"][path][method]
        assert operation["operationId"] == operation_id
        assert operation["security"] == [{"UserToken": []}, {"BrowserSession": []}]
        assert "401" in operation["responses"]
    schemes = schema["components"]["securitySchemes"]
    assert (schemes["UserToken"]["type"], schemes["UserToken"]["scheme"]) == ("http", "bearer")
    assert (schemes["BrowserSession"]["type"], schemes["BrowserSession"]["in"]) == ("apiKey", "cookie")
    reject_body = schema["paths"]["/api/actions/{id}/reject"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    reject_in = schema["components"]["schemas"][reject_body["$ref"].rsplit("/", 1)[1]]
    assert reject_in["additionalProperties"] is False and reject_in["required"] == ["reason"]
    assert reject_in["properties"]["reason"]["maxLength"] == 1000
    assert {"403", "404", "409"} <= set(schema["paths"]["/api/actions/{id}/approve"]["post"]["responses"])
