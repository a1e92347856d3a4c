"""A write whose outcome nobody can tell waits for a person (issue 13 item 3): `unconfirmed`, then the
person's word, in this process on the real lab and MCP servers.

How it gets there: a worker claimed the write's key and died with the write at the backend (the claim
taken with idempotency.claim and its lease run out, as the dead worker leaves it), so the next run asks
the backend whether it happened; the lab answers that question with a 503 (its injected error fault),
so nobody can tell, and the write is not sent again. tests/investigations/test_workers.py produces the
same state by SIGKILLing a real worker mid-write.
"""

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx2 as httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection
from django.utils import timezone

from core.roles import ANALYST
from investigations.approvals import services as approvals
from investigations.approvals.views import pending_count
from investigations.models import ActionRequest, AuditRecord, Event, Investigation
from investigations.runs import agent, services
from investigations.tokens import create_api_token
from tests.support import WAIT_S, ConsoleProcess, console_env, database_url_of
from tests.websockets import socket
from toolserver import idempotency
from toolserver.catalog import find_tool
from toolserver.gateway import Gateway
from toolserver.lab import faults
from toolserver.lab.models import LabWrite
from toolserver.models import IdempotencyRecord
from toolserver.schemas import parse_arguments

pytestmark = pytest.mark.django_db(transaction=True)

CHECKED = "Checked the EDR console: WS-FIN-07 shows isolated since 10:02."
NOT_THERE = "Checked the EDR console: WS-FIN-07 is not isolated, no isolation in its history."


def left_by_a_dead_worker(request: ActionRequest, *, lease_left_s: float = -1) -> None:
    """The write's key claimed by a worker that died with the write at the backend: running, its lease
    run out (or running out `lease_left_s` from now)."""
    server, tool = find_tool(request.tool)
    key = idempotency.write_key(
        tool, parse_arguments(tool.arguments, request.arguments), request.investigation.alert.trigger
    )
    assert key.key == request.idempotency_key
    assert isinstance(idempotency.claim(server, tool, key, request.investigation.alert.trigger), idempotency.Claimed)
    IdempotencyRecord.objects.filter(key=key.key).update(lease_until=timezone.now() + timedelta(seconds=lease_left_s))


@pytest.fixture
def unconfirmed(waiting, analyst):
    """The phishing story's isolation, approved and executed after its first worker died mid-write, on an
    EDR that cannot say whether it happened: (investigation, request)."""
    investigation, request = waiting
    approvals.approve(request.pk, analyst)
    left_by_a_dead_worker(request)
    faults.inject("edr", "error_5xx", remaining=1)  # the check's answer: the EDR cannot say
    approvals.execute(request.pk)  # what the execute_action task does in a worker
    request.refresh_from_db()
    return investigation, request


def test_a_rerun_waiting_for_a_dead_workers_claim_to_run_out_takes_it_over_and_sends_once(waiting, analyst, settings):
    """A restarted worker can reach an abandoned write before the dead worker's claim on its key has run
    out (the request's lease and the key's are renewed one after the other). It waits for the claim,
    renewing its own request's lease meanwhile: before, that renewal renewed the key's claim too,
    whoever held it, so the dead claim never ran out and the isolation stayed "in progress" at every
    try (a worker killed mid-isolation and restarted under load never finished it)."""
    settings.TOOLSERVER_WRITE_LEASE_S = 3  # renewed every second
    settings.TOOLSERVER_WRITE_WAIT_S = 8  # the dead claim runs out within it, unless renewed
    _, request = waiting
    approvals.approve(request.pk, analyst)
    left_by_a_dead_worker(request, lease_left_s=2)

    approvals.execute(request.pk)

    request.refresh_from_db()
    assert request.state == "succeeded", request.outcome
    assert LabWrite.objects.filter(action="isolate_host", outcome="performed").count() == 1
    record = IdempotencyRecord.objects.get(key=request.idempotency_key)
    assert (record.state, record.attempts) == ("succeeded", 2)  # taken over from the dead claim, then done


def run(investigation: Investigation) -> Investigation:
    agent.run(investigation.pk)
    investigation.refresh_from_db()
    return investigation


def tool_result(investigation: Investigation, tool_use_id: str) -> dict:
    return investigation.events.get(kind=Event.Kind.TOOL_RESULT, data__tool_use_id=tool_use_id).data["result"]


def transcript(investigation: Investigation) -> str:
    return "".join(event.data["text"] for event in investigation.events.filter(kind=Event.Kind.TEXT))


def the_same_action_asked_again(investigation: Investigation, request: ActionRequest, analyst) -> ActionRequest:
    """The model asks for the same isolation again (a new tool call), an analyst approves it, a worker runs it."""
    use = {"id": "toolu_askedagain01", "name": request.tool, "input": dict(request.arguments)}
    again = approvals.request_action(investigation, use, owner=None, gateway=Gateway())
    assert again.idempotency_key == request.idempotency_key and again.state == "pending"  # through the gate again
    approvals.approve(again.pk, analyst)
    approvals.execute(again.pk)
    again.refresh_from_db()
    return again


# -- the state ---------------------------------------------------------------------------------------
def test_a_write_nobody_can_tell_about_waits_unconfirmed_and_its_investigation_keeps_waiting(unconfirmed, analyst):
    investigation, request = unconfirmed
    assert request.state == "unconfirmed"
    assert request.outcome.startswith("outcome unknown — check and confirm")
    assert list(request.transitions.values_list("to_state", flat=True)) == [
        "pending",
        "approved",
        "executing",
        "unconfirmed",
    ]
    assert not LabWrite.objects.filter(action="isolate_host").exists()  # never sent a second time
    assert IdempotencyRecord.objects.get(key=request.idempotency_key).result["reason"] == "outcome_unknown"

    investigation.refresh_from_db()
    assert investigation.status == "waiting"
    assert services.resume(investigation.pk) is False  # not final: nothing to resume with
    assert pending_count(analyst) == 1  # it needs a person: counted in the navigation


# -- the person's word -------------------------------------------------------------------------------
def test_confirmed_done_the_request_succeeds_the_key_holds_it_and_the_investigation_resumes_with_it(
    unconfirmed, analyst
):
    investigation, request = unconfirmed
    decided = approvals.confirm_outcome(request.pk, analyst, True, CHECKED)

    assert (decided.state, decided.outcome) == ("succeeded", f"confirmed done by ana: {CHECKED}")
    assert list(request.transitions.values_list("from_state", "to_state", "actor", "reason"))[-1] == (
        "unconfirmed",
        "succeeded",
        "user:ana",
        CHECKED,
    )
    [record] = AuditRecord.objects.filter(tool="isolate_host", outcome="confirmed_done")
    assert (record.actor, record.extra["happened"], record.extra["reason"], record.idempotency_key) == (
        "user:ana",
        True,
        CHECKED,
        request.idempotency_key,
    )
    key = IdempotencyRecord.objects.get(key=request.idempotency_key)
    assert (key.state, key.result) == ("succeeded", decided.result)

    investigation.refresh_from_db()
    assert investigation.status == "queued"
    investigation = run(investigation)
    result = tool_result(investigation, request.tool_use_id)
    assert result["status"] == "ok" and result["data"]["confirmed_by_person"] is True
    assert result["data"]["confirmed_by"] == "ana" and result["data"]["analyst_reason"] == CHECKED
    assert "WS-FIN-07 is now isolated." in transcript(investigation)
    assert investigation.action_requests.get(state="pending").tool == "disable_account"  # and it went on

    # A repeat of the action for the alert gets the confirmed result: nothing reaches the EDR.
    again = the_same_action_asked_again(investigation, request, analyst)
    assert again.state == "succeeded" and again.outcome.endswith("(already done for this alert: the first result)")
    assert again.result["data"]["confirmed_by_person"] is True
    assert not LabWrite.objects.filter(action="isolate_host").exists()


def test_confirmed_not_done_the_key_is_freed_and_the_action_asked_again_fires_once(unconfirmed, analyst):
    investigation, request = unconfirmed
    decided = approvals.confirm_outcome(request.pk, analyst, False, NOT_THERE)

    assert (decided.state, decided.outcome) == ("failed", f"confirmed not done by ana: {NOT_THERE}")
    assert AuditRecord.objects.get(tool="isolate_host", outcome="confirmed_not_done").extra["happened"] is False
    assert not IdempotencyRecord.objects.filter(key=request.idempotency_key).exists()

    investigation = run(investigation)
    result = tool_result(investigation, request.tool_use_id)
    assert (result["status"], result["reason"]) == ("error", "confirmed_not_done")
    assert "did not happen" in result["guidance"] and "request it again" in result["guidance"]
    assert result["analyst_reason"] == NOT_THERE

    again = the_same_action_asked_again(investigation, request, analyst)
    assert (again.state, again.outcome) == ("succeeded", "WS-FIN-07 isolated")
    assert list(LabWrite.objects.filter(action="isolate_host").values_list("outcome", flat=True)) == ["performed"]


def test_only_a_person_who_may_approve_the_tool_may_confirm_and_a_refusal_is_recorded(unconfirmed, manager):
    _, request = unconfirmed
    with pytest.raises(approvals.NotAllowed):
        approvals.confirm_outcome(request.pk, manager, True, CHECKED)  # a manager sees it, may not approve it
    request.refresh_from_db()
    assert request.state == "unconfirmed"
    assert AuditRecord.objects.filter(tool="isolate_host", outcome="denied", actor="user:max").count() == 1
    assert IdempotencyRecord.objects.get(key=request.idempotency_key).state == "failed"


def test_a_confirmation_needs_a_reason_and_an_unknown_outcome(unconfirmed, waiting, analyst):
    _, request = unconfirmed
    with pytest.raises(approvals.DecisionRefused, match="Say what you checked"):
        approvals.confirm_outcome(request.pk, analyst, True, "   ")
    approvals.confirm_outcome(request.pk, analyst, True, CHECKED)
    with pytest.raises(approvals.NotPending) as second:
        approvals.confirm_outcome(request.pk, analyst, False, NOT_THERE)
    assert second.value.request.state == "succeeded"
    assert AuditRecord.objects.filter(tool="isolate_host", outcome__startswith="confirmed").count() == 1


def test_approve_and_reject_do_not_apply_to_an_unknown_outcome(unconfirmed, analyst):
    _, request = unconfirmed
    for decide in (lambda: approvals.approve(request.pk, analyst), lambda: approvals.reject(request.pk, analyst, "no")):
        with pytest.raises(approvals.NotPending) as refused:
            decide()
        assert refused.value.request.state == "unconfirmed"


# -- over HTTP: the API and the page -----------------------------------------------------------------
def confirm_api(client, request_id: int, user, body) -> object:
    token = create_api_token(user, "tests", decide=True)[1]
    return client.post(
        f"/api/actions/{request_id}/confirm",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_the_api_confirms_an_unknown_outcome(unconfirmed, analyst, client):
    _, request = unconfirmed
    response = confirm_api(client, request.pk, analyst, {"happened": True, "reason": CHECKED})
    assert response.status_code == 200, response.content
    assert (response.json()["state"], response.json()["outcome"]) == ("succeeded", f"confirmed done by ana: {CHECKED}")

    again = confirm_api(client, request.pk, analyst, {"happened": False, "reason": NOT_THERE})
    assert again.status_code == 409
    assert again.json()["state"] == "succeeded" and again.json()["request"]["id"] == request.pk


@pytest.mark.parametrize(
    "body",
    [
        {"happened": "yes", "reason": CHECKED},  # a boolean, not a word
        {"happened": 1, "reason": CHECKED},
        {"happened": True},
        {"happened": True, "reason": "   "},
        {"happened": True, "reason": "x" * 1001},
        {"happened": True, "reason": CHECKED, "ticket": "4471"},
    ],
)
def test_the_api_refuses_a_malformed_confirmation_with_400(unconfirmed, analyst, client, body):
    _, request = unconfirmed
    assert confirm_api(client, request.pk, analyst, body).status_code == 400
    request.refresh_from_db()
    assert request.state == "unconfirmed"


def test_the_api_answers_404_to_those_who_may_not_see_it_and_409_when_the_outcome_is_known(
    waiting, analyst, make_user, client
):
    _, request = waiting  # pending: its outcome is not unknown
    response = confirm_api(client, request.pk, analyst, {"happened": True, "reason": CHECKED})
    assert response.status_code == 409 and response.json()["state"] == "pending"
    nobody = make_user("nemo")
    assert confirm_api(client, request.pk, nobody, {"happened": True, "reason": CHECKED}).status_code == 404
    assert confirm_api(client, 999_999, analyst, {"happened": True, "reason": CHECKED}).status_code == 404


def test_the_openapi_schema_has_the_confirmation(client):
    schema = client.get("/api/openapi.json").json()
    operation = schema["paths"]["/api/actions/{id}/confirm"]["post"]
    assert operation["operationId"] == "confirm_action"
    assert {"200", "400", "401", "403", "404", "409"} <= set(operation["responses"])
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]] if "$ref" in body else body
    assert set(body["required"]) == {"happened", "reason"} and body["properties"]["happened"]["type"] == "boolean"
    assert "unconfirmed" in schema["components"]["schemas"]["ActionSummary"]["properties"]["state"]["enum"]


def test_the_page_shows_the_unknown_outcome_and_the_form_to_those_who_may_confirm(
    unconfirmed, analyst, manager, client
):
    _, request = unconfirmed
    client.force_login(manager)
    page = client.get(f"/approvals/{request.pk}/").content.decode()
    assert "Outcome unknown: check and confirm" in page and 'class="confirm-form"' not in page
    assert "you cannot confirm its outcome" in page
    assert client.post(f"/approvals/{request.pk}/confirm", {"happened": "yes", "reason": CHECKED}).status_code == 403

    client.force_login(analyst)
    page = client.get(f"/approvals/{request.pk}/").content.decode()
    assert 'class="confirm-form"' in page and f'action="/approvals/{request.pk}/confirm"' in page
    queue = client.get("/approvals/").content.decode()
    waiting_list = queue[queue.index('id="approval-queue"') : queue.index('id="recent-heading"')]
    assert f'id="action-{request.pk}"' in waiting_list  # the queue shows it as needing a person
    assert 'id="nav-approvals-count" class="badge" data-count="1"' in queue

    refused = client.post(f"/approvals/{request.pk}/confirm", {"happened": "no", "reason": " "}, follow=True)
    assert "Say what you checked" in refused.content.decode()
    assert client.post(f"/approvals/{request.pk}/confirm", {"reason": NOT_THERE}).status_code == 302
    request.refresh_from_db()
    assert request.state == "unconfirmed"  # neither changed it

    done = client.post(f"/approvals/{request.pk}/confirm", {"happened": "no", "reason": NOT_THERE})
    assert done.status_code == 302 and done["Location"] == f"/approvals/{request.pk}/"
    request.refresh_from_db()
    assert (request.state, request.outcome) == ("failed", f"confirmed not done by ana: {NOT_THERE}")
    assert 'class="confirm-form"' not in client.get(f"/approvals/{request.pk}/").content.decode()


async def test_the_queue_socket_counts_an_unknown_outcome_as_waiting_and_sends_its_confirmation(unconfirmed, analyst):
    _, request = unconfirmed
    communicator = await socket("/ws/approvals/?queue=1", analyst)
    assert (await communicator.connect())[0]
    snapshot = await communicator.receive_json_from(timeout=WAIT_S)
    assert (snapshot["pending"], snapshot["pending_ids"]) == (1, [request.pk])
    assert [entry["request"]["state"] for entry in snapshot["requests"]] == ["unconfirmed"]

    await database_sync_to_async(approvals.confirm_outcome)(request.pk, analyst, False, NOT_THERE)
    message = await communicator.receive_json_from(timeout=WAIT_S)
    assert (message["type"], message["request"]["state"], message["pending"]) == ("request", "failed", 0)
    await communicator.disconnect()


# -- a race ------------------------------------------------------------------------------------------
PEOPLE = 6


def test_people_confirming_at_once_get_one_decision_and_409s(unconfirmed, lab):
    """Six analysts answer at once, half "happened", half "did not": one answer stands, whichever it
    is; every other gets 409 with the state that answer left."""
    _, request = unconfirmed
    group = Group.objects.get(name=ANALYST)
    tokens = {}
    for number in range(PEOPLE):
        user = get_user_model().objects.create_user(f"checker-{number}")
        user.groups.add(group)
        tokens[user.username] = create_api_token(user, "tests", decide=True)[1]
    start = threading.Barrier(PEOPLE)

    def confirm_as(number: int, console_url: str) -> httpx.Response:
        with httpx.Client(timeout=60) as http:
            start.wait(timeout=WAIT_S)
            return http.post(
                f"{console_url}/api/actions/{request.pk}/confirm",
                json={"happened": number % 2 == 0, "reason": f"checked by checker-{number}"},
                headers={"Authorization": f"Bearer {tokens[f'checker-{number}']}"},
            )

    # A console of its own, stopped with this test: on the embedded default the investigation the confirmation
    # resumes runs in its in-process worker, which the session's console would keep running past the test.
    env = console_env(DATABASE_URL=database_url_of(connection.settings_dict), **lab.environment())
    with ConsoleProcess(env) as console, ThreadPoolExecutor(PEOPLE) as pool:
        answers = list(pool.map(lambda number: confirm_as(number, console.url), range(PEOPLE)))

    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {200: 1, 409: PEOPLE - 1}, [(answer.status_code, answer.text) for answer in answers]
    request.refresh_from_db()
    assert request.state in ("succeeded", "failed")
    assert {answer.json()["state"] for answer in answers if answer.status_code == 409} == {request.state}
    assert AuditRecord.objects.filter(tool="isolate_host", outcome__startswith="confirmed").count() == 1
    assert request.transitions.filter(from_state="unconfirmed").count() == 1
