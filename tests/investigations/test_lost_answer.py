"""An approved write whose answer was lost (a 5xx, a timeout, its server gone mid-call) may have happened: its
request does not end `failed`, it stays executing, and a lease later the backend is asked whether it happened
before anything is sent again (the sweep runs it, as it runs a dead worker's). On the real lab and MCP servers.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from investigations.approvals import services as approvals
from investigations.models import ActionRequest, AuditRecord
from toolserver.gateway import Gateway
from toolserver.lab import faults
from toolserver.lab.models import Host, LabWrite
from toolserver.models import IdempotencyRecord

pytestmark = pytest.mark.django_db(transaction=True)


def a_lease_later(request: ActionRequest) -> None:
    """The lease it was left with has run out: the sweep's stalled_executions finds it and runs execute again."""
    ActionRequest.objects.filter(pk=request.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert request.pk in approvals.stalled_executions(approved_for_s=60)


def isolations() -> list[str]:
    return list(LabWrite.objects.filter(action="isolate_host").order_by("pk").values_list("outcome", flat=True))


def approved_and_its_answer_lost(request: ActionRequest, analyst) -> None:
    """Approved and run; the EDR answered its one try with a 503."""
    approvals.approve(request.pk, analyst)
    faults.inject("edr", "error_5xx", remaining=1)
    approvals.execute(request.pk)  # what the execute_action task does in a worker
    request.refresh_from_db()


@pytest.fixture
def answer_lost(waiting, analyst):
    """The phishing story's isolation, its answer lost."""
    investigation, request = waiting
    approved_and_its_answer_lost(request, analyst)
    return investigation, request


def test_an_isolation_whose_answer_was_lost_is_not_failed_but_asked_about_a_lease_later(answer_lost):
    investigation, request = answer_lost

    # Before: "failed: edr_unavailable", though it may have happened.
    assert request.state == "executing", request.outcome
    assert request.outcome.startswith("no answer from the EDR (edr_unavailable)"), request.outcome
    assert request.lease_expires_at > timezone.now()  # the EDR has a lease to finish what it may still be doing
    assert list(request.transitions.values_list("to_state", flat=True)) == [
        "pending",
        "approved",
        "executing",
        "executing",
    ]
    assert request.transitions.last().reason == request.outcome
    investigation.refresh_from_db()
    assert investigation.status == "waiting"  # nothing to resume with yet
    assert IdempotencyRecord.objects.get(key=request.idempotency_key).state == "running"  # given up, not settled
    assert isolations() == ["fault"]


def test_a_short_write_lease_does_not_ask_the_backend_sooner_than_the_worker_waited_for_its_answer(
    waiting, analyst, settings
):
    """GATEHOUSE_WRITE_LEASE_S may be short (it only has to outlive a dead worker); a backend that took longer than
    GATEHOUSE_BACKEND_TIMEOUT_S may still be doing the write when a lease runs out, and answer "not done"."""
    settings.TOOLSERVER_WRITE_LEASE_S = 2
    settings.BACKEND_TIMEOUT_S = 60
    _, request = waiting

    approved_and_its_answer_lost(request, analyst)

    assert request.state == "executing", request.outcome
    assert request.lease_expires_at >= timezone.now() + timedelta(seconds=50)


def test_asked_a_lease_later_the_edr_says_it_did_not_happen_and_it_is_sent_once(answer_lost):
    investigation, request = answer_lost
    a_lease_later(request)

    approvals.execute(request.pk)

    request.refresh_from_db()
    assert (request.state, request.outcome) == ("succeeded", "WS-FIN-07 isolated")
    assert isolations() == ["fault", "performed"]
    assert IdempotencyRecord.objects.get(key=request.idempotency_key).attempts == 2
    investigation.refresh_from_db()
    assert investigation.status == "queued"  # handed back to a worker with the result


def test_asked_a_lease_later_the_edr_says_it_happened_and_nothing_is_sent_again(answer_lost):
    _, request = answer_lost
    Host.objects.filter(hostname="WS-FIN-07").update(isolated=True)  # the EDR isolated it after all, its answer lost
    a_lease_later(request)

    approvals.execute(request.pk)

    request.refresh_from_db()
    assert request.state == "succeeded", request.outcome
    assert request.result["data"]["found_done"] is True
    assert isolations() == ["fault"]  # asked, not sent
    checked = AuditRecord.objects.filter(tool="isolate_host", kind="tool_call").order_by("seq").last()
    assert (checked.outcome, checked.backend_status) == ("ok", "checked")


def test_once_enough_runs_lost_their_answers_the_request_waits_for_a_person(waiting, analyst, settings):
    """Not tried forever: once as many runs as TOOLSERVER_ANSWERS_LOST_BEFORE_A_PERSON lost their answers, the
    request waits `unconfirmed`, and a person's word ends it, as for any write nobody can tell about."""
    settings.TOOLSERVER_ANSWERS_LOST_BEFORE_A_PERSON = 1
    _, request = waiting

    approved_and_its_answer_lost(request, analyst)

    assert request.state == "unconfirmed", request.outcome
    assert request.outcome.startswith("outcome unknown — check and confirm")
    assert request.result["reason"] == "outcome_unknown"
    assert "runs that sent it: 1" in request.result["guidance"]
    key = IdempotencyRecord.objects.get(key=request.idempotency_key)
    assert (key.state, key.result["reason"]) == ("failed", "outcome_unknown")  # a person's word changes it
    settled = AuditRecord.objects.filter(tool="isolate_host", kind="tool_call").order_by("seq").last()
    assert (settled.outcome, settled.reason, settled.backend_status, settled.actor) == (
        "error",
        "outcome_unknown",
        "settled",
        "system",
    )

    approvals.confirm_outcome(request.pk, analyst, happened=False, reason="Checked the EDR: not isolated.")

    request.refresh_from_db()
    assert request.state == "failed"
    assert not IdempotencyRecord.objects.filter(key=request.idempotency_key).exists()  # freed for a fresh request
    assert isolations() == ["fault"]


def test_a_release_whose_answer_was_lost_but_happened_frees_the_isolation_for_a_later_one(waiting, analyst):
    """The host was isolated, then released, the EDR's answer to the release lost. Asked a lease later, the EDR
    says it is released: the release succeeds, and the isolation's key no longer replays "isolated" (the
    host is not), so isolating it again would be sent."""
    investigation, isolation = waiting
    approvals.approve(isolation.pk, analyst)
    approvals.execute(isolation.pk)
    use = {
        "id": "toolu_releaselost01",
        "name": "release_host",
        "input": {"host": "WS-FIN-07", "reason": "Cleared by the analyst."},
    }
    release = approvals.request_action(investigation, use, owner=None, gateway=Gateway())
    assert isinstance(release, ActionRequest), release
    approvals.approve(release.pk, analyst)
    faults.inject("edr", "error_5xx", remaining=1)
    approvals.execute(release.pk)
    release.refresh_from_db()
    assert release.state == "executing", release.outcome
    assert IdempotencyRecord.objects.filter(key=isolation.idempotency_key, state="succeeded").exists()

    Host.objects.filter(hostname="WS-FIN-07").update(isolated=False)  # the EDR released it, its answer lost
    a_lease_later(release)
    approvals.execute(release.pk)

    release.refresh_from_db()
    assert release.state == "succeeded", release.outcome
    assert release.result["data"]["found_done"] is True
    assert not IdempotencyRecord.objects.filter(key=isolation.idempotency_key).exists()  # not replayed as done
    assert LabWrite.objects.filter(action="release_host").count() == 1  # the one whose answer was lost


def test_a_tool_an_admin_switched_off_while_its_answer_was_lost_goes_to_a_person_rather_than_waiting_forever(
    answer_lost, admin_user
):
    """The backend cannot be asked through a tool that is switched off: not a lost answer again and again, each
    lease, with "no answer from the EDR (tool_disabled)" for a line, but a write nobody can tell about."""
    from console.manage import administration
    from toolserver.models import Tool

    investigation, request = answer_lost
    administration.update_tool(Tool.objects.get(name="isolate_host"), admin_user, enabled=False)
    a_lease_later(request)

    approvals.execute(request.pk)

    request.refresh_from_db()
    assert request.state == "unconfirmed", request.outcome  # before: executing, "no answer ... (tool_disabled)"
    assert request.outcome.startswith("outcome unknown — check and confirm")
    assert request.pk not in approvals.stalled_executions(approved_for_s=60)
    key = IdempotencyRecord.objects.get(key=request.idempotency_key)
    assert (key.state, key.result["reason"]) == ("failed", "outcome_unknown")  # for a person's word
    assert list(request.transitions.values_list("to_state", flat=True))[-2:] == ["executing", "unconfirmed"]
    investigation.refresh_from_db()
    assert investigation.status == "waiting"
    assert isolations() == ["fault"]


def test_an_edr_that_still_does_not_answer_when_asked_a_lease_later_sends_it_to_a_person_then(answer_lost):
    """Asking is no write: but an unanswered question is a backend that cannot say, so the second run settles it
    for a person (before TOOLSERVER_ANSWERS_LOST_BEFORE_A_PERSON runs), and never sends it blind."""
    _, request = answer_lost
    faults.inject("edr", "error_5xx", remaining=1)  # the EDR is still down when asked
    a_lease_later(request)

    approvals.execute(request.pk)

    request.refresh_from_db()
    assert request.state == "unconfirmed", request.outcome
    assert request.result["reason"] == "outcome_unknown"
    assert isolations() == ["fault"]  # asked, and the question unanswered: not sent again


def test_the_line_of_an_account_whose_answer_was_lost_names_the_identity_provider_as_people_say_it(waiting, analyst):
    """The outcome line is read by analysts: "no answer from the identity provider", not "from the identity"."""
    from investigations.runs import agent

    investigation, isolation = waiting
    approvals.approve(isolation.pk, analyst)
    approvals.execute(isolation.pk)
    agent.run(investigation.pk)  # resumed with the isolation: the next request
    request = investigation.action_requests.get(state="pending")
    assert request.tool == "disable_account"
    approvals.approve(request.pk, analyst)
    faults.inject("identity", "error_5xx", remaining=1)

    approvals.execute(request.pk)

    request.refresh_from_db()
    assert request.state == "executing", request.outcome
    assert request.outcome.startswith("no answer from the identity provider (identity_unavailable): "), request.outcome
