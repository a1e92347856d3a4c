"""The agent loop in this process, over real MCP server processes and the lab, with the offline
model inside the anthropic SDK: verdicts, typed errors, budgets and the saved conversation."""

import json

import pytest
from django.utils import timezone

from investigations.approvals import services as approvals
from investigations.models import AuditRecord, Budgets, Event, Investigation
from investigations.runs import agent, llm
from toolserver.lab import faults
from toolserver.lab.models import LabWrite

pytestmark = pytest.mark.django_db(transaction=True)


def run(investigation: Investigation) -> Investigation:
    agent.run(investigation.pk)
    investigation.refresh_from_db()
    return investigation


def run_rejecting(investigation: Investigation, analyst) -> Investigation:
    """Run it to the end, an analyst rejecting every action it asks for."""
    investigation = run(investigation)
    while investigation.status == "waiting":
        for request in investigation.action_requests.filter(state="pending"):
            approvals.reject(request.pk, analyst, "Not in this test.")
        investigation = run(investigation)
    return investigation


def transcript(investigation: Investigation) -> str:
    return "".join(event.data["text"] for event in investigation.events.filter(kind=Event.Kind.TEXT))


def calls_of(investigation: Investigation):
    return AuditRecord.objects.filter(correlation_id=investigation.correlation_id)


def test_the_phishing_story_ends_malicious_with_its_evidence_saved(received, analyst):
    _, investigation = received("LAB-SIEM-1001")
    investigation = run_rejecting(investigation, analyst)
    assert (investigation.status, investigation.verdict) == ("completed", "malicious")
    assert "185.220.101.47" in investigation.summary
    assert any("malicious" in item for item in investigation.evidence)
    assert list(investigation.events.values_list("kind", flat=True))[-2:] == ["verdict", "status"]
    assert investigation.tool_calls_used == investigation.events.filter(kind=Event.Kind.TOOL_RESULT).count() == 13
    assert investigation.tokens_used > 0
    assert investigation.model_name == "offline model"


def test_every_tool_call_is_shown_with_its_result_in_order(received, analyst):
    _, investigation = received("LAB-SIEM-1001")
    investigation = run_rejecting(investigation, analyst)
    calls = list(investigation.events.filter(kind=Event.Kind.TOOL_CALL))
    results = {event.data["tool_use_id"]: event for event in investigation.events.filter(kind=Event.Kind.TOOL_RESULT)}
    assert calls and len(results) == len(calls)
    for call in calls:
        assert results[call.data["tool_use_id"]].seq > call.seq
    seqs = list(investigation.events.values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert investigation.last_seq == seqs[-1]


def test_the_benign_story_ends_benign(received):
    _, investigation = received("LAB-SIEM-1003")
    investigation = run(investigation)
    assert (investigation.status, investigation.verdict) == ("completed", "benign")


def test_each_write_waits_for_a_decision_and_the_investigation_is_released_meanwhile(received, analyst):
    _, investigation = received("LAB-SIEM-1001")
    investigation = run(investigation)
    assert (investigation.status, investigation.lease_owner) == ("waiting", "")
    asked = []
    while investigation.status == "waiting":
        (request,) = investigation.action_requests.filter(state="pending")
        asked.append(request.tool)
        approvals.reject(request.pk, analyst, "Not in this test.")
        investigation = run(investigation)
    assert asked == ["isolate_host", "disable_account", "open_ticket"]
    assert not LabWrite.objects.exists()
    for what in ("the isolation of WS-FIN-07", "disabling j.doe", "the incident ticket"):
        assert f"The analyst rejected {what}: Not in this test." in transcript(investigation)


def test_a_siem_timeout_is_reported_as_unconfirmed_and_the_verdict_is_not_benign(received):
    faults.inject("siem", "timeout")
    _, investigation = received("LAB-SIEM-1003")  # benign when every check answers
    investigation = run(investigation)
    text = transcript(investigation)
    assert "I could not confirm the login history (siem_timeout)" in text
    assert "no malicious" not in text.lower()
    assert investigation.verdict == "inconclusive"
    assert "could not confirm the login history" in investigation.summary
    assert calls_of(investigation).filter(tool="search_logins", reason="siem_timeout").count() == 2  # one retry


def set_budgets(**values) -> None:
    """As an admin sets them (console/manage/administration.py), for investigations started from now on."""
    Budgets.current()
    Budgets.objects.filter(pk=1).update(**values)


def test_the_tool_call_budget_ends_the_investigation_as_inconclusive(received):
    set_budgets(tool_calls=2)
    _, investigation = received("LAB-SIEM-1001")
    investigation = run(investigation)
    assert (investigation.status, investigation.verdict) == ("completed", "inconclusive")
    assert investigation.end_reason == "The tool-call budget (2 calls) is exhausted."
    assert calls_of(investigation).count() == 2
    verdict = investigation.events.get(kind=Event.Kind.VERDICT)
    assert verdict.data["end_reason"] == investigation.end_reason


def test_the_token_budget_ends_the_investigation_as_inconclusive(received):
    set_budgets(tokens=6000)
    _, investigation = received("LAB-SIEM-1001")
    investigation = run(investigation)
    assert investigation.verdict == "inconclusive"
    assert investigation.end_reason == "The token budget (6000 tokens) is exhausted."
    assert investigation.tokens_used >= 6000
    assert 0 < calls_of(investigation).count() < 13  # the whole story makes 13
    assert not investigation.action_requests.exists()  # stopped before it asked for containment


def test_the_time_budget_is_enforced_before_each_step(received):
    _, investigation = received("LAB-SIEM-1001")
    Investigation.objects.filter(pk=investigation.pk).update(budget_seconds=0)  # already spent when it starts
    investigation = run(investigation)
    assert investigation.verdict == "inconclusive"
    assert investigation.end_reason == "The time budget (0 s) is exhausted."
    assert not calls_of(investigation).exists()


def test_resuming_repeats_no_tool_call_that_had_completed(received):
    """A turn asked for two calls; one completed before the worker died. The next worker makes only the other."""
    _, investigation = received("LAB-SIEM-1003")
    investigation = run(investigation)
    messages = investigation.messages
    turn = next(i for i, message in enumerate(messages) if message["role"] == "assistant")
    first_use = next(block for block in messages[turn]["content"] if block["type"] == "tool_use")
    second_use = {**first_use, "id": "toolu_second", "input": {**first_use["input"], "lookback_hours": 6}}
    first_result = messages[turn + 1]["content"][0]
    # The saved state of a worker that died after the first call: the turn, and one result of two.
    Investigation.objects.filter(pk=investigation.pk).update(
        status="running",
        verdict="",
        messages=[*messages[:turn], {**messages[turn], "content": [*messages[turn]["content"], second_use]}],
        tool_results={first_use["id"]: json.loads(first_result["content"])},
        lease_owner="dead-worker",
        lease_expires_at=None,
        finished_at=None,
    )
    before = calls_of(investigation).filter(tool=first_use["name"]).count()
    investigation = run(investigation)
    after = calls_of(investigation).filter(tool=first_use["name"])
    assert after.count() == before + 1  # only the call that had not completed
    assert after.order_by("-id").first().arguments["lookback_hours"] == 6
    assert investigation.status == "completed"
    assert investigation.events.filter(kind="status", data__message="Resumed from the last saved step.").exists()


def test_a_finished_investigation_is_not_run_again(received):
    _, investigation = received("LAB-SIEM-1003")
    investigation = run(investigation)
    calls, seq = calls_of(investigation).count(), investigation.last_seq
    investigation = run(investigation)
    assert (calls_of(investigation).count(), investigation.last_seq) == (calls, seq)


def test_the_model_receives_no_credential(received, lab):
    _, investigation = received("LAB-SIEM-1001")
    run(investigation)
    requests = "".join(str(body) for body in llm.offline_model().requests)
    assert "185.220.101.47" in requests  # the requests did carry the tool results
    for key in lab.keys.values():
        assert key not in requests


@pytest.mark.parametrize("tries_left", [False, True])
def test_an_error_other_than_the_database_s_fails_the_investigation_even_with_tries_left(
    make_investigation, tries_left
):
    """Only the database being away (agent.DATABASE_AWAY) hands an investigation back for another try;
    a saved turn the loop cannot read (no content: a KeyError) is the investigation's own fault."""
    investigation = make_investigation(status="queued", started_at=timezone.now(), messages=[{"role": "assistant"}])
    agent.run(investigation.pk, retry_database_errors=tries_left)
    investigation.refresh_from_db()
    assert (investigation.status, investigation.end_reason) == (
        "failed",
        "Internal error (KeyError); see the worker log.",
    )
    assert investigation.lease_owner == ""
