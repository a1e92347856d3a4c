"""The human gate in this process: requests, decisions, execution, resumption (real MCP servers and lab)."""

import threading

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone
from guardian.shortcuts import assign_perm

from investigations.approvals import services as approvals
from investigations.models import (
    ActionRequest,
    AuditRecord,
    Event,
    Investigation,
    ToolPolicy,
)
from investigations.runs import agent, services
from investigations.runs.events import LeaseLost
from investigations.tokens import create_api_token
from tests.support import set_rate_limit
from toolserver.gateway import Gateway
from toolserver.lab.models import LabWrite

pytestmark = pytest.mark.django_db(transaction=True)


def run(investigation: Investigation) -> Investigation:
    agent.run(investigation.pk)
    investigation.refresh_from_db()
    return investigation


def pending(investigation: Investigation) -> ActionRequest:
    return investigation.action_requests.get(state="pending")


def approve_and_execute(request: ActionRequest, user) -> ActionRequest:
    approvals.approve(request.pk, user)
    approvals.execute(request.pk)  # what the execute_action task does in a worker
    request.refresh_from_db()
    return request


def transcript(investigation: Investigation) -> str:
    return "".join(event.data["text"] for event in investigation.events.filter(kind=Event.Kind.TEXT))


def test_a_write_waits_for_approval_and_nothing_reaches_the_lab(received):
    _, investigation = received("LAB-SIEM-1001")
    investigation = run(investigation)
    assert investigation.status == "waiting"
    request = pending(investigation)
    assert (request.tool, request.target) == ("isolate_host", "host=ws-fin-07")
    assert "host role: workstation" in request.risk
    assert request.evidence and all(item["tool_use_id"].startswith("toolu_") for item in request.evidence)
    assert not LabWrite.objects.exists()
    assert AuditRecord.objects.filter(tool="isolate_host", outcome="pending_approval").count() == 1


def test_approved_it_fires_once_and_the_investigation_resumes_with_the_result(received, analyst):
    _, investigation = received("LAB-SIEM-1001")
    request = approve_and_execute(pending(run(investigation)), analyst)
    assert request.state == "succeeded" and request.outcome == "WS-FIN-07 isolated"
    assert LabWrite.objects.filter(action="isolate_host", outcome="performed").count() == 1
    investigation.refresh_from_db()
    assert investigation.status == "queued"
    investigation = run(investigation)
    assert "WS-FIN-07 is now isolated." in transcript(investigation)
    assert pending(investigation).tool == "disable_account"  # the next request


def test_rejected_the_model_is_told_why_and_the_lab_has_no_write(received, analyst):
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    approvals.reject(request.pk, analyst, "Finance server: isolate after month-end close.")
    investigation = run(investigation)
    assert (
        "The analyst rejected the isolation of WS-FIN-07: Finance server: isolate after month-end close"
        in transcript(investigation)
    )
    assert not LabWrite.objects.exists()
    assert list(request.transitions.values_list("from_state", "to_state", "actor")) == [
        ("", "pending", "agent"),
        ("pending", "rejected", "user:ana"),
    ]


@pytest.mark.parametrize("decided", ["rejected", "expired"])
def test_a_write_decided_against_stays_unmade_when_its_policy_stops_needing_approval_before_the_resume(
    received, analyst, decided
):
    """The decision stands for the call it was asked for: switching the tool's approval off later makes new
    calls without one, never a rejected or expired call."""
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    if decided == "rejected":
        approvals.reject(request.pk, analyst, "Finance server: isolate after month-end close.")
    else:
        ActionRequest.objects.filter(pk=request.pk).update(expires_at=timezone.now())
        assert approvals.expire_due() == [request.pk]
    ToolPolicy.objects.filter(tool="isolate_host").update(requires_approval=False)
    investigation = run(investigation)
    assert not LabWrite.objects.filter(action="isolate_host").exists()
    assert ActionRequest.objects.get(pk=request.pk).state == decided
    told = "rejected the isolation of WS-FIN-07" if decided == "rejected" else "expired before anyone decided"
    assert told in transcript(investigation)


def test_a_decision_whose_resume_was_lost_is_resumed_by_the_sweep(received, analyst):
    """The request's final state commits first, the investigation's resume after: the database away at that
    moment (or the process stopped) left it waiting for good, as nothing else queues a waiting investigation."""
    from django.db import OperationalError

    from investigations import tasks

    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))

    def database_away_at_the_resume(execute, sql, params, many, context):
        if sql.startswith('UPDATE "investigations_investigation"') and "queued" in (params or ()):
            raise OperationalError("the database went away")
        return execute(sql, params, many, context)

    with pytest.raises(OperationalError), connection.execute_wrapper(database_away_at_the_resume):
        approvals.reject(request.pk, analyst, "Finance server: isolate after month-end close.")
    assert ActionRequest.objects.get(pk=request.pk).state == "rejected"
    assert Investigation.objects.get(pk=investigation.pk).status == "waiting"

    assert tasks.sweep_investigations(queued_for_s=0) == [investigation.pk]
    investigation = run(investigation)
    assert "The analyst rejected the isolation of WS-FIN-07" in transcript(investigation)
    assert not LabWrite.objects.exists()


def test_a_rejection_needs_a_reason(received, analyst):
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    with pytest.raises(approvals.DecisionRefused):
        approvals.reject(request.pk, analyst, "  ")
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"


def test_undecided_it_expires_the_model_is_told_and_nothing_fires(received):
    ToolPolicy.objects.filter(tool="isolate_host").update(expiry_seconds=0)
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    assert approvals.expire_due() == [request.pk]
    request.refresh_from_db()
    assert (request.state, request.result["reason"]) == ("expired", "expired")
    investigation = run(investigation)
    assert "The request for the isolation of WS-FIN-07 expired before anyone decided." in transcript(investigation)
    assert not LabWrite.objects.exists()


def test_a_decision_after_the_expiry_is_refused_and_the_request_expires_then(received, analyst):
    ToolPolicy.objects.filter(tool="isolate_host").update(expiry_seconds=0)
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))  # the sweep has not run
    with pytest.raises(approvals.NotPending) as refused:
        approvals.approve(request.pk, analyst)
    assert refused.value.request.state == "expired" == ActionRequest.objects.get(pk=request.pk).state
    assert not LabWrite.objects.exists()


def test_after_a_decision_the_request_is_no_longer_pending(received, analyst, make_user):
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    approvals.reject(request.pk, analyst, "not now")
    other = make_user("second-analyst", "analyst")
    with pytest.raises(approvals.NotPending) as refused:
        approvals.approve(request.pk, other)
    assert refused.value.request.state == "rejected"


def test_four_eyes_needs_two_different_people(received, analyst, make_user):
    ToolPolicy.objects.filter(tool="isolate_host").update(approvals_needed=2)
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    approvals.approve(request.pk, analyst)
    with pytest.raises(approvals.DecisionRefused):
        approvals.approve(request.pk, analyst)  # the same person twice
    approvals.execute(request.pk)  # nothing to execute yet
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"
    assert not LabWrite.objects.exists()
    request = approve_and_execute(request, make_user("second-analyst", "analyst"))
    assert request.state == "succeeded"
    assert LabWrite.objects.filter(action="isolate_host").count() == 1


def test_people_with_the_longest_names_django_allows_approve_reject_and_are_named_in_full(received, make_user):
    """Two 150-character usernames (an SSO subject can be one) overflowed the trail's and the history's actor
    (150): the write's dispatch record failed, and the approved write was retried for ever, never sent."""
    ToolPolicy.objects.filter(tool="isolate_host").update(approvals_needed=2)
    first, second = (make_user(letter * 137 + "@corp.example", "analyst") for letter in "ab")
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    approvals.approve(request.pk, first)
    assert approve_and_execute(request, second).state == "succeeded"
    assert LabWrite.objects.filter(action="isolate_host").count() == 1
    sent = AuditRecord.objects.filter(tool="isolate_host", outcome__in=("dispatched", "ok"))
    both = f"user:{first.username},{second.username}"
    assert set(sent.values_list("actor", flat=True)) == {both}
    manager = make_user("boss", "manager")
    found = Client(headers={"Authorization": f"Bearer {create_api_token(manager, 'audit')[1]}"}).get(
        "/api/audit", {"actor": both}
    )
    assert found.status_code == 200 and {row["actor"] for row in found.json()["items"]} == {both}

    _, again = received("LAB-SIEM-1002")
    refused = pending(run(again))
    approvals.reject(refused.pk, first, "x" * 1000)
    refused.refresh_from_db()
    assert refused.state == "rejected" and refused.outcome.startswith(f"rejected by {first.username}: xxx")
    assert refused.transitions.filter(actor=f"user:{first.username}").exists()


@pytest.mark.parametrize("loses", ["deactivated", "role taken"])
def test_four_eyes_counts_only_approvals_of_people_still_allowed_to_approve(received, analyst, make_user, loses):
    ToolPolicy.objects.filter(tool="isolate_host").update(approvals_needed=2)
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    approvals.approve(request.pk, analyst)
    if loses == "deactivated":
        analyst.is_active = False
        analyst.save()
    else:
        analyst.groups.clear()
    second, third = make_user("second-analyst", "analyst"), make_user("third-analyst", "analyst")
    approvals.approve(request.pk, second)
    approvals.execute(request.pk)
    assert ActionRequest.objects.get(pk=request.pk).state == "pending"  # one approval of two still counts
    assert not LabWrite.objects.exists()
    assert approve_and_execute(request, third).state == "succeeded"
    assert LabWrite.objects.filter(action="isolate_host").count() == 1


def test_only_those_granted_the_tool_may_approve_it(received, manager, make_user):
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    with pytest.raises(approvals.NotAllowed):
        approvals.approve(request.pk, manager)
    responder = make_user("responder")  # no role: granted this one tool
    assign_perm("investigations.approve_tool", responder, ToolPolicy.objects.get(tool="isolate_host"))
    assert approve_and_execute(request, responder).state == "succeeded"


def test_the_same_alert_investigated_twice_isolates_once(received, analyst):
    alert, first = received("LAB-SIEM-1001")
    second = approvals.services.start_investigation(alert)
    first_request, second_request = pending(run(first)), pending(run(second))
    assert approve_and_execute(first_request, analyst).outcome == "WS-FIN-07 isolated"
    replay = approve_and_execute(second_request, analyst)
    assert replay.state == "succeeded"
    assert replay.outcome == "WS-FIN-07 isolated (already done for this alert: the first result)"
    assert LabWrite.objects.filter(action="isolate_host").count() == 1
    second = run(second)
    assert "WS-FIN-07 was already isolated." in transcript(second)


def test_an_approved_write_held_back_by_the_rate_limit_is_retried_not_failed(received, analyst, settings):
    from django.utils import timezone

    from toolserver.models import ToolServer
    from toolserver.ratelimit import get_rate_limiter, limit_of

    set_rate_limit("edr-response", 1)
    _, investigation = received("LAB-SIEM-1001")
    request = pending(run(investigation))
    assert (
        get_rate_limiter().acquire("edr-response", limit_of(ToolServer.objects.get(name="edr-response"))) is None
    )  # the window's one call
    request = approve_and_execute(request, analyst)
    assert request.state == "executing" and request.lease_expires_at > timezone.now()  # retried after the wait
    assert not LabWrite.objects.exists()

    get_rate_limiter().reset("edr-response")  # the window has passed
    ActionRequest.objects.filter(pk=request.pk).update(lease_expires_at=timezone.now())
    approvals.execute(request.pk)  # what the sweep hands to a worker
    request.refresh_from_db()
    assert request.state == "succeeded"
    assert LabWrite.objects.filter(action="isolate_host").count() == 1


def test_a_write_whose_policy_needs_no_approval_fires_without_a_request(received):
    ToolPolicy.objects.filter(tool="open_ticket").update(requires_approval=False)
    ToolPolicy.objects.filter(tool__in=["isolate_host", "disable_account"]).update(expiry_seconds=0)
    _, investigation = received("LAB-SIEM-1001")
    investigation = run(investigation)
    while investigation.status == "waiting":  # the two that still need approval expire undecided
        approvals.expire_due()
        investigation = run(investigation)
    assert not investigation.action_requests.filter(tool="open_ticket").exists()
    assert list(LabWrite.objects.values_list("action", "outcome")) == [("open_ticket", "performed")]
    assert "Ticket #" in transcript(investigation)


def test_a_write_whose_policy_needs_no_approval_keeps_its_result_in_its_audit_records_transaction(received):
    """As a read's is: a worker killed between the record's commit and a later save of the result would
    leave a call that no saved step holds, and the worker resuming would make it again (a second record)."""
    ToolPolicy.objects.filter(tool="open_ticket").update(requires_approval=False)
    ToolPolicy.objects.filter(tool__in=["isolate_host", "disable_account"]).update(expiry_seconds=0)
    _, investigation = received("LAB-SIEM-1001")
    statements, records = [], []  # records: (the final record's insert, the statement count at its commit)

    def observe(execute, sql, params, many, context):
        done = execute(sql, params, many, context)
        statements.append(sql)
        if sql.startswith('INSERT INTO "investigations_auditrecord"') and "open_ticket" in map(str, params or ()):
            inserted = len(statements)
            transaction.on_commit(lambda: records.append((inserted, len(statements))))
        return done

    with connection.execute_wrapper(observe):
        investigation = run(investigation)
        while investigation.status == "waiting":  # the two that still need approval expire undecided
            approvals.expire_due()
            investigation = run(investigation)
    assert LabWrite.objects.filter(action="open_ticket").count() == 1
    inserted, committed = records[-1]  # the first is the record made before the send (dispatched)
    saves = [i for i, sql in enumerate(statements, 1) if sql.startswith('UPDATE "investigations_investigation"')]
    assert any(inserted < save <= committed for save in saves), "the result was saved after the record's commit"


def test_a_write_tool_an_admin_disabled_makes_no_request_and_the_model_is_told(received, admin_user):
    from console.manage import administration
    from toolserver.models import Tool

    administration.update_tool(Tool.objects.get(name="isolate_host"), admin_user, enabled=False)
    _, investigation = received("LAB-SIEM-1001")
    investigation = run(investigation)
    assert not investigation.action_requests.filter(tool="isolate_host").exists()
    (refused,) = AuditRecord.objects.filter(kind="tool_call", tool="isolate_host")
    assert (refused.outcome, refused.reason) == ("error", "tool_disabled")
    result = investigation.events.get(kind=Event.Kind.TOOL_RESULT, data__name="isolate_host").data["result"]
    assert result["reason"] == "tool_disabled"


def test_an_investigation_that_fails_with_a_request_pending_cancels_it(waiting, analyst):
    investigation, request = waiting
    Investigation.objects.filter(pk=investigation.pk).update(status="running", lease_owner="worker-1")
    services.finish(investigation.pk, "worker-1", status="failed", end_reason="Internal error (RuntimeError).")
    request.refresh_from_db()
    assert request.state == "cancelled"
    assert request.result["reason"] == "cancelled"
    assert request.outcome == "cancelled: the investigation failed: Internal error (RuntimeError)."
    assert AuditRecord.objects.filter(tool="isolate_host", outcome="cancelled").count() == 1
    with pytest.raises(approvals.NotPending, match="was cancelled"):
        approvals.approve(request.pk, analyst)


def test_two_runs_asking_for_the_same_call_at_once_share_its_one_request(make_investigation, monkeypatch):
    """A worker stalled past its lease and the successor that resumed the same turn both found no request
    for the tool_use_id and both inserted one: the second insert's IntegrityError (action_unique_tool_use)
    escaped to agent.run, which failed the live worker's investigation and cancelled the request."""
    investigation = make_investigation("TWICE-1", status="running", lease_owner="successor")
    use = {
        "type": "tool_use",
        "id": "toolu_twice0000001",
        "name": "open_ticket",
        "input": {"title": "Phishing on WS-FIN-07", "body": "Evidence: toolu_x beaconing.", "severity": "high"},
    }
    both_checked, stalled_done = threading.Barrier(2, timeout=10), threading.Event()
    real_look_up = approvals._look_up_target

    def look_up(*args, **kwargs):  # called after the check for an existing request, before the insert
        both_checked.wait()
        if threading.current_thread().name == "successor":  # the stalled run's insert commits first
            assert stalled_done.wait(timeout=10)
        return real_look_up(*args, **kwargs)

    monkeypatch.setattr(approvals, "_look_up_target", look_up)
    results, raised = {}, {}

    def ask(owner):
        try:
            results[owner] = approvals.request_action(investigation, use, owner=owner, gateway=Gateway())
        except Exception as exc:  # noqa: BLE001 - what each run was told, for the asserts below
            raised[owner] = exc
        finally:
            if owner == "stalled":
                stalled_done.set()
            connection.close()

    threads = [threading.Thread(target=ask, args=(owner,), name=owner) for owner in ("stalled", "successor")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    request = ActionRequest.objects.get(investigation=investigation)
    assert isinstance(raised.get("stalled"), LeaseLost)  # its request stands; its event is fenced out
    assert "successor" not in raised, f"the live run's request_action raised {raised['successor']!r}"
    assert results["successor"].pk == request.pk
    # Asked once: one first step, one audit record.
    assert list(request.transitions.values_list("from_state", "to_state")) == [("", "pending")]
    assert AuditRecord.objects.filter(tool_use_id=use["id"], outcome="pending_approval").count() == 1
