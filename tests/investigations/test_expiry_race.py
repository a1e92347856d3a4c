"""No decision after the deadline (issue 13 item 2).

The race: a decision waits for the request's row lock (another decision, the sweep) while the
deadline passes. Before, the decision's expiry check ran before it took the lock, so once it got the
lock it recorded an approval dated after expires_at. Now the time is read after the lock, compared
with the deadline and used as the approval's time; past it, the request expires instead.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from investigations.approvals import services as approvals
from investigations.models import ActionApproval, ActionRequest
from tests.support import wait_until

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]


def waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_that_waited_past_the_deadline_for_the_lock_is_refused_and_the_request_expires(
    waiting, analyst, decision
):
    _, request = waiting
    deadline = timezone.now() + timedelta(seconds=1)
    ActionRequest.objects.filter(pk=request.pk).update(expires_at=deadline)
    locked, release, outcome = threading.Event(), threading.Event(), {}

    def hold_the_lock():  # as a concurrent decision or the sweep would
        try:
            with transaction.atomic():
                ActionRequest.objects.select_for_update().get(pk=request.pk)
                locked.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    def decide():
        try:
            if decision == "approve":
                approvals.approve(request.pk, analyst, "looks right")
            else:
                approvals.reject(request.pk, analyst, "not now")
            outcome["result"] = "decided"
        except approvals.NotPending as refused:
            outcome["result"] = str(refused)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    assert locked.wait(timeout=10)
    decider = threading.Thread(target=decide)
    decider.start()
    wait_until(waiting_for_a_lock, timeout=10, what="the decision to wait for the row lock")
    wait_until(lambda: timezone.now() > deadline, timeout=10, what="the deadline to pass")
    release.set()
    holder.join(timeout=10)
    decider.join(timeout=30)
    assert not decider.is_alive()

    request.refresh_from_db()
    assert outcome["result"] == "This request expired before anyone decided."
    assert request.state == "expired"
    assert not ActionApproval.objects.filter(request=request).exists()


def test_an_approval_is_dated_when_its_deadline_was_checked(waiting, analyst):
    _, request = waiting
    approvals.approve(request.pk, analyst)
    (approval,) = ActionApproval.objects.filter(request=request)
    request.refresh_from_db()
    assert approval.created_at < request.expires_at


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_checked_before_the_deadline_is_recorded_at_that_moment(waiting, analyst, decision):
    """A decision compared its moment with the deadline, but its history step (the time the request's page
    shows) was dated at its insert and the row's updated_at by another reading of the clock: after the
    deadline, had it passed meanwhile. A rejection has no approval row: these were its only dates."""
    _, request = waiting
    before = set(request.transitions.values_list("pk", flat=True))
    passed: dict = {}

    def deadline_passes_before_the_move(execute, sql, params, many, context):
        # Compared in time; the deadline passes before the guarded update and its record follow (a busy
        # server): set to this moment, after the check, however long the check took on a loaded machine.
        if sql.startswith('UPDATE "investigations_actionrequest"') and not passed:
            passed["deadline"] = timezone.now()
            update = 'UPDATE "investigations_actionrequest" SET "expires_at" = %s WHERE "id" = %s'
            execute(update, (passed["deadline"], request.pk), False, context)
            wait_until(lambda: timezone.now() > passed["deadline"], timeout=10, what="the deadline to pass")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(deadline_passes_before_the_move):
        if decision == "approve":
            approvals.approve(request.pk, analyst, "looks right")
        else:
            approvals.reject(request.pk, analyst, "not now")
    request.refresh_from_db()
    assert request.state == ("approved" if decision == "approve" else "rejected")
    (step,) = request.transitions.exclude(pk__in=before)
    deadline = passed["deadline"]
    assert step.at == request.updated_at < deadline, f"dated {step.at} and {request.updated_at}, deadline {deadline}"
