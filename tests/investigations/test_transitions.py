"""The state machines written once as data (ActionRequest.TRANSITIONS, Investigation.TRANSITIONS),
walked: every (from, to) pair is refused or allowed exactly as its table says, every move the table
names is made by some service call, and no service call makes a move it does not name."""

from datetime import timedelta
from itertools import product

import pytest
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from core import transitions
from core.roles import ANALYST
from core.transitions import IllegalTransition
from investigations.approvals import services as approvals
from investigations.models import ActionRequest, ActionTransition, Investigation
from investigations.runs import agent
from investigations.runs import services as runs
from toolserver import idempotency
from toolserver.catalog import find_tool
from toolserver.lab import faults
from toolserver.models import IdempotencyRecord
from toolserver.schemas import parse_arguments

State, Status = ActionRequest.State, Investigation.Status


def pairs(table) -> set[tuple[str, str]]:
    return {(str(a), str(b)) for a, moves in table.items() for b in moves}


def new_request(investigation, state=State.PENDING, **fields) -> ActionRequest:
    """A request row saved in `state`, as a move there would have left it (setup, not a move)."""
    number = ActionRequest.objects.count() + 1
    return ActionRequest.objects.create(
        investigation=investigation,
        tool_use_id=f"toolu_walk{number:08d}",
        tool="isolate_host",
        server="edr-response",
        arguments={"host": "ws-fin-07", "reason": "walk"},
        target="host=ws-fin-07",
        idempotency_key=f"walk-{number}",
        state=state,
        expires_at=timezone.now() + timedelta(hours=1),
        **fields,
    )


def left_unconfirmable(investigation, host: str) -> ActionRequest:
    """An isolation of `host` being executed by a worker that died with it at the backend: the request
    executing past its lease, its key claimed and abandoned (setup, not a move)."""
    arguments = {"host": host, "reason": "Beaconing to a known C2 address."}
    server, tool = find_tool("isolate_host")
    key = idempotency.write_key(tool, parse_arguments(tool.arguments, arguments), investigation.alert.trigger)
    request = new_request(investigation, State.EXECUTING, lease_expires_at=timezone.now() - timedelta(seconds=1))
    ActionRequest.objects.filter(pk=request.pk).update(
        arguments=arguments, target=f"host={host}", idempotency_key=key.key
    )
    assert isinstance(idempotency.claim(server, tool, key, investigation.alert.trigger), idempotency.Claimed)
    IdempotencyRecord.objects.filter(key=key.key).update(lease_until=timezone.now() - timedelta(seconds=1))
    return request


def test_the_tables_name_every_state_and_their_final_states_are_those_nothing_leaves():
    assert set(ActionRequest.TRANSITIONS) == set(State.values)
    assert set(Investigation.TRANSITIONS) == set(Status.values)
    assert set(ActionRequest.FINAL) == {State.SUCCEEDED, State.FAILED, State.REJECTED, State.EXPIRED, State.CANCELLED}
    assert set(Investigation.FINAL) == {Status.COMPLETED, Status.FAILED}
    every = set(State.values)  # each state is reachable from the first one
    assert {ActionRequest.INITIAL, *transitions.reachable(ActionRequest.TRANSITIONS, ActionRequest.INITIAL)} == every


@pytest.mark.django_db
def test_a_request_moves_exactly_as_its_table_says_and_an_unlisted_move_leaves_the_row_untouched(make_investigation):
    investigation = make_investigation()
    allowed = pairs(ActionRequest.TRANSITIONS)
    for from_state, to_state in product(State.values, repeat=2):
        request = new_request(investigation, from_state)
        before = ActionRequest.objects.values("state", "updated_at").get(pk=request.pk)
        with transaction.atomic():
            if (from_state, to_state) in allowed:
                approvals._move(request, from_state, to_state, "system", "walk")
            else:
                with pytest.raises(IllegalTransition, match=f"from {from_state} to {to_state}"):
                    approvals._move(request, from_state, to_state, "system", "walk")
        after = ActionRequest.objects.values("state", "updated_at").get(pk=request.pk)
        if (from_state, to_state) in allowed:
            assert after["state"] == to_state
            assert request.transitions.filter(from_state=from_state, to_state=to_state).count() == 1
        else:
            assert after == before, (from_state, to_state)
            assert not request.transitions.exists()


def test_an_investigation_moves_exactly_as_its_table_says():
    allowed = pairs(Investigation.TRANSITIONS)
    for from_status, to_status in product(Status.values, repeat=2):
        if (from_status, to_status) in allowed:
            runs._check(from_status, to_status)
        else:
            with pytest.raises(IllegalTransition):
                runs._check(from_status, to_status)


@pytest.mark.django_db
def test_a_lease_holder_cannot_save_a_status_its_table_does_not_allow(make_investigation):
    investigation = make_investigation(status=Status.RUNNING, lease_owner="worker-1")
    with pytest.raises(IllegalTransition, match="from running to nonsense"):
        runs.save(investigation.pk, "worker-1", status="nonsense")
    investigation.refresh_from_db()
    assert (investigation.status, investigation.lease_owner) == (Status.RUNNING, "worker-1")


@pytest.mark.django_db
def test_the_investigation_services_make_every_move_of_the_table_and_no_other(make_investigation):
    seen = set()

    def status(pk):
        return Investigation.objects.values_list("status", flat=True).get(pk=pk)

    def step(pk, call, *args, **kwargs):
        before = status(pk)
        result = call(*args, **kwargs)
        seen.add((before, status(pk)))
        return result

    investigation = make_investigation()  # queued, as start_investigation leaves it
    pk = investigation.pk
    owner = step(pk, runs.claim, pk)
    Investigation.objects.filter(pk=pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )  # its worker died
    owner = step(pk, runs.claim, pk)
    undecided = new_request(investigation)  # what it waits for
    step(pk, runs.suspend, pk, owner, waiting_for="walk")
    ActionRequest.objects.filter(pk=undecided.pk).update(state=State.REJECTED)  # decided
    step(pk, runs.resume, pk)
    owner = step(pk, runs.claim, pk)
    runs.holding(pk, owner)
    step(pk, runs.hand_back)
    runs.let_go(pk, owner)
    owner = step(pk, runs.claim, pk)
    step(pk, runs.finish, pk, owner, status=Status.COMPLETED, verdict="benign", summary="walk")
    other = make_investigation("TEST-2").pk
    step(other, runs.finish, other, step(other, runs.claim, other), status=Status.FAILED, end_reason="walk")
    unstarted = make_investigation("TEST-3", released_at=None).pk  # held, its integration revoked
    step(unstarted, runs.end_unstarted, [unstarted], "walk")
    assert seen == pairs(Investigation.TRANSITIONS)


def test_the_gate_services_make_every_move_of_the_table_and_no_other(waiting, analyst, make_user, settings):
    """Decisions, execution (taken over after a worker died, and failed at the backend), expiry and
    cancellation, each by its real service on real tool servers and the lab: their recorded moves
    are the table's, all of them."""
    investigation, first = waiting
    ActionRequest.objects.filter(pk=first.pk).update(approvals_needed=2)
    approvals.approve(first.pk, analyst)  # one of two: pending -> pending
    approvals.approve(first.pk, make_user("bob", ANALYST))
    approvals.execute(first.pk)
    assert ActionRequest.objects.get(pk=first.pk).state == State.SUCCEEDED

    agent.run(investigation.pk)  # resumed with the result: the next request
    second = investigation.action_requests.get(state=State.PENDING)
    approvals.approve(second.pk, analyst)
    # A worker took it and died before it reached the backend; the backend now refuses it (throttled: it did
    # not act, so it fails; a 5xx, after which it may have acted, would keep it executing, to be asked about).
    ActionRequest.objects.filter(pk=second.pk).update(
        state=State.EXECUTING, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    faults.inject(second.server.split("-")[0], "rate_limit")
    approvals.execute(second.pk)
    assert ActionRequest.objects.get(pk=second.pk).state == State.FAILED

    # Writes nobody can tell about (their worker died with them at the EDR, whose check fails too):
    # unconfirmed, until a person says it happened (succeeded) or not (failed).
    for host, happened in (("ws-eng-02", True), ("ws-hr-03", False)):
        unknown = left_unconfirmable(investigation, host)
        faults.inject("edr", "error_5xx", remaining=1)
        approvals.execute(unknown.pk)
        assert ActionRequest.objects.get(pk=unknown.pk).state == State.UNCONFIRMED
        approvals.confirm_outcome(unknown.pk, analyst, happened, "walk")

    rejected, expired, cancelled = (new_request(investigation) for _ in range(3))
    for request in (rejected, expired, cancelled):
        approvals._transition(request, "", State.PENDING, "agent", "walk")
    approvals.reject(rejected.pk, analyst, "walk")
    ActionRequest.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    assert approvals.expire_due() == [expired.pk]
    with transaction.atomic():
        assert approvals.cancel_pending(investigation.pk, "walk") == [cancelled.pk]

    moves = set(
        ActionTransition.objects.filter(request__investigation=investigation).values_list("from_state", "to_state")
    )
    assert ("", ActionRequest.INITIAL) in moves
    assert moves - {("", ActionRequest.INITIAL)} == pairs(ActionRequest.TRANSITIONS)


def test_a_database_error_after_the_move_to_executing_leaves_no_move_unrecorded(waiting, analyst):
    """execute() committed approved -> executing on its own and recorded it after: a database error between
    the two (a pool's timeout) left the request executing with no record of how it got there, and the sweep's
    re-run recorded executing -> executing, so the history never showed approved -> executing."""
    _, request = waiting
    approvals.approve(request.pk, analyst)
    failed = []

    def away_at_the_record(execute, sql, params, many, context):
        if not failed and sql.startswith('INSERT INTO "investigations_actiontransition"'):
            failed.append(sql)
            raise OperationalError("couldn't get a connection after 10.00 sec")  # as the pool says it
        return execute(sql, params, many, context)

    with pytest.raises(OperationalError), connection.execute_wrapper(away_at_the_record):
        approvals.execute(request.pk)  # the execute_action task; Celery does not retry it
    after = ActionRequest.objects.get(pk=request.pk).state
    assert after == State.APPROVED, f"the move to {after} committed without its record"

    approvals.execute(request.pk)  # the sweep's re-run
    request.refresh_from_db()
    assert request.state == State.SUCCEEDED
    moves = list(request.transitions.values_list("from_state", "to_state"))
    assert moves == [("", "pending"), ("pending", "approved"), ("approved", "executing"), ("executing", "succeeded")]


@pytest.mark.django_db
def test_a_requests_page_shows_the_states_it_can_still_become_and_hands_the_table_to_the_script(
    client, analyst, make_investigation
):
    investigation = make_investigation()
    client.force_login(analyst)
    page = client.get(f"/approvals/{new_request(investigation).pk}/").content.decode()
    line = page[page.index('class="can-become"') :]
    line = line[: line.index("</p>")]
    shown = [state for state in State.values if f'data-state="{state}"' in line]
    assert shown == ["approved", "executing", "succeeded", "failed", "rejected", "expired", "cancelled", "unconfirmed"]
    assert 'id="request-states"' in page and '"pending": ["pending"]' in page  # the trails, from the table

    page = client.get(f"/approvals/{new_request(investigation, State.EXPIRED).pk}/").content.decode()
    line = page[page.index('class="can-become"') :]
    line = line[: line.index("</p>")]
    assert "data-state=" not in line and "its state is final" in line and "hidden" not in line
