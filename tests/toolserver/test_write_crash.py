"""Item 9 of issue 13: a write killed at any point of its path leaves an audit record, never nothing.

A separate process (tests/toolserver/crash_writer.py) fires one approved isolation through the
gateway; the test SIGKILLs it, and everything it started, at a chosen moment. Afterwards the
trail holds one "dispatched" record for every write the lab received. The moments are held by
the lab's slow fault (the request at the backend) and, on PostgreSQL, by row locks the test
holds on the chain's head, the lab's host and the idempotency row, which the writer waits on at
exactly one step each.
"""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection

from investigations.models import AuditHead, AuditRecord
from tests.support import ROOT, console_env, database_url_of, set_rate_limit, wait_until
from tests.toolserver.crash_writer import ISOLATE
from toolserver.lab import faults
from toolserver.lab.models import LabFault, LabWrite, Ticket
from toolserver.models import IdempotencyRecord

pytestmark = pytest.mark.django_db(transaction=True)


class Writer:
    def __init__(self, lab, *call: str, **environment: str):
        env = console_env(DATABASE_URL=database_url_of(connection.settings_dict), **lab.environment(), **environment)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.toolserver.crash_writer", *call],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a group of its own: the kill reaches it and what it started
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def writer(lab):
    set_rate_limit("edr-response", 1000)
    started = []

    def start(*call: str, **environment: str) -> Writer:
        started.append(Writer(lab, *call, **environment))
        return started[-1]

    yield start
    for process in started:
        process.kill()
        if not process.process.stdout.closed:
            print(process.process.stdout.read())  # shown when the test failed


def dispatched():
    return AuditRecord.objects.filter(tool="isolate_host", outcome="dispatched")


def received():
    return LabWrite.objects.filter(action="isolate_host")


def assert_every_write_received_is_in_the_trail(expected: int) -> None:
    assert received().count() == expected
    assert dispatched().count() == received().count()
    assert set(received().values_list("idempotency_key", flat=True)) <= set(
        dispatched().values_list("idempotency_key", flat=True)
    )


def test_killed_while_the_write_is_at_the_backend_the_trail_says_outcome_unknown(writer, client, manager):
    faults.inject("edr", "slow", delay_ms=2000, remaining=1)
    process = writer()
    arrived = LabFault.objects.filter(backend="edr", applied=1)
    wait_until(arrived.exists, timeout=60, what="the isolation to reach the lab")
    process.kill()

    # The lab had the request (its fault held it); whether it still acted once its caller was gone
    # is the backend's business: the trail must say that a write left, and that its outcome is unknown.
    assert dispatched().count() == 1
    assert set(received().values_list("idempotency_key", flat=True)) <= set(
        dispatched().values_list("idempotency_key", flat=True)
    )
    assert not AuditRecord.objects.filter(tool="isolate_host").exclude(outcome="dispatched").exists()
    client.force_login(manager)
    page = client.get(f"/audit/records/{dispatched().get().seq}/").content.decode()
    assert "Outcome unknown" in page


@pytest.mark.production
def test_killed_while_the_backend_acts_the_trail_has_the_write(writer):
    with locks(host_lock().acquire()) as (host,):
        process = writer()
        wait_until(
            lambda: dispatched().exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the lab to wait on the host with the isolation",
        )
        process.kill()
        host.release()  # the lab's handler carries on without its caller
        wait_until(received().exists, timeout=30, what="the lab to carry out the isolation")
    assert_every_write_received_is_in_the_trail(1)


def test_a_write_that_completes_has_its_dispatch_and_then_its_outcome(writer):
    process = writer()
    output, _ = process.process.communicate(timeout=90)
    assert json.loads(output.strip().splitlines()[-1])["status"] == "ok", output
    assert_every_write_received_is_in_the_trail(1)
    outcomes = list(AuditRecord.objects.filter(tool="isolate_host").order_by("seq").values_list("outcome", flat=True))
    assert outcomes == ["dispatched", "ok"]


# -- the other moments, held by PostgreSQL row locks ---------------------------------------------
class RowLock:
    """A row locked FOR UPDATE by a connection of its own, until released."""

    def __init__(self, sql: str, *params):
        self.sql, self.params, self.connection = sql, params, None

    def acquire(self) -> "RowLock":
        self.connection = psycopg.connect(database_url_of(connection.settings_dict))
        self.connection.execute(self.sql, self.params).fetchall()
        return self

    def release(self) -> None:
        if self.connection is not None:
            self.connection.rollback()
            self.connection.close()
            self.connection = None


@contextmanager
def locks(*held: RowLock):
    try:
        yield held
    finally:
        for lock in held:
            lock.release()


def someone_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def end_the_settling_update() -> None:
    """The killed writer's settling UPDATE was sent before the kill and would commit once the lock is
    free: end it, as if the kill had come before it left."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE \"toolserver_idempotencyrecord\"%%'"
        )


def head_lock() -> RowLock:
    AuditHead.objects.get_or_create(pk=1)  # made on first use: a flush between tests removed it
    return RowLock("SELECT * FROM investigations_audithead WHERE id = 1 FOR UPDATE")


def host_lock() -> RowLock:
    return RowLock("SELECT * FROM lab_host WHERE hostname = %s FOR UPDATE", ISOLATE["host"])


def key_lock() -> RowLock:
    return RowLock("SELECT * FROM toolserver_idempotencyrecord FOR UPDATE")


@pytest.mark.production
def test_killed_after_the_claim_before_the_dispatch_record_nothing_reached_the_backend(writer):
    with locks(head_lock().acquire()):
        process = writer()
        wait_until(
            lambda: IdempotencyRecord.objects.exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the writer to claim the key and wait to record the dispatch",
        )
        process.kill()
    assert_every_write_received_is_in_the_trail(0)


@pytest.mark.production
def test_killed_after_the_backend_answered_before_the_key_was_settled(writer):
    with locks(head_lock().acquire(), key_lock()) as (head, key):
        process = writer()
        wait_until(
            lambda: IdempotencyRecord.objects.exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the writer to claim the key",
        )
        key.acquire()
        head.release()  # the dispatch is recorded, the lab acts, the key's settlement waits
        wait_until(
            lambda: received().exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the lab's answer, and the writer waiting to settle the key",
        )
        process.kill()
        end_the_settling_update()
    assert_every_write_received_is_in_the_trail(1)
    assert IdempotencyRecord.objects.get().state == "running"


@pytest.mark.production
def test_killed_after_the_key_was_settled_before_the_outcome_record(writer):
    with locks(host_lock().acquire(), head_lock().acquire()) as (host, head):
        process = writer()
        wait_until(
            lambda: IdempotencyRecord.objects.exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the writer to claim the key",
        )
        head.release()
        wait_until(
            lambda: dispatched().exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the dispatch record, and the lab waiting on the host",
        )
        head.acquire()
        host.release()  # the lab acts, the writer settles the key, the outcome record waits
        wait_until(IdempotencyRecord.objects.filter(state="succeeded").exists, timeout=60, what="the key to be settled")
        process.kill()
    assert_every_write_received_is_in_the_trail(1)


# -- item 3: exactly once without the backend's help ---------------------------------------------
TICKET = {"title": "Beaconing from SRV-APP-03", "severity": "high", "body": "C2 beacon every 60 s."}


def crash_between_call_and_settle(writer, backend: RowLock, *call: str) -> None:
    """The first writer's call reaches the lab, and it is killed before it settles the key.

    `backend` is the row the lab's write locks first (the host, the ticket counter): held, it keeps
    the call at the lab until the test holds the key's row too.
    """
    with locks(backend.acquire(), key_lock()) as (_, key):
        process = writer(*call, GATEHOUSE_WRITE_LEASE_S="1")
        wait_until(
            lambda: IdempotencyRecord.objects.exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the write to wait at the lab",
        )
        key.acquire()
        backend.release()
        wait_until(
            lambda: LabWrite.objects.exists() and someone_waits_on_a_lock(),
            timeout=60,
            what="the lab's answer, and the writer waiting to settle the key",
        )
        process.kill()
        end_the_settling_update()
    assert IdempotencyRecord.objects.get().state == "running"


def recovered(writer, *call: str) -> dict:
    """A second worker takes the abandoned key over (its lease of 1 s ran out) and finishes the write."""
    output, _ = writer(*call, GATEHOUSE_WRITE_LEASE_S="1").process.communicate(timeout=90)
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.production
def test_a_backend_that_does_not_deduplicate_sees_one_call_after_a_crash_between_call_and_settle(writer):
    faults.inject("edr", "no_dedupe")  # the lab ignores Idempotency-Key, as an EDR without one would
    crash_between_call_and_settle(writer, host_lock())
    result = recovered(writer)

    assert list(received().values_list("outcome", flat=True)) == ["performed"]  # one call, never a second
    assert result["status"] == "ok" and result["data"]["found_done"], result
    assert IdempotencyRecord.objects.get().state == "succeeded"
    checked = AuditRecord.objects.filter(tool="isolate_host").order_by("seq").last()
    assert (checked.outcome, checked.backend_status) == ("ok", "checked")  # recorded: found done, not sent again


def ticket_counter() -> RowLock:
    """The row the lab locks to number tickets: held, it keeps an open_ticket at the lab."""
    LabFault.objects.get_or_create(backend="ticketing")
    return RowLock("SELECT * FROM lab_labfault WHERE backend = 'ticketing' FOR UPDATE")


@pytest.mark.production
def test_an_open_ticket_crash_between_call_and_settle_finds_the_ticket_instead_of_opening_another(writer):
    """The ticket carries the write's idempotency key: the next worker asks the ticketing system for it
    (even one that does not deduplicate on the key) and records the ticket it finds, sending nothing."""
    call = ("open_ticket", json.dumps(TICKET))
    faults.inject("ticketing", "no_dedupe")  # a ticketing system that would open a second ticket
    crash_between_call_and_settle(writer, ticket_counter(), *call)
    result = recovered(writer, *call)

    assert list(LabWrite.objects.filter(action="open_ticket").values_list("outcome", flat=True)) == ["performed"]
    assert Ticket.objects.count() == 1
    assert result["status"] == "ok" and result["data"]["found_done"], result
    assert result["data"]["ticket_id"] == str(Ticket.objects.get().number)
    assert IdempotencyRecord.objects.get().state == "succeeded"  # a repeat replays the ticket found
    checked = AuditRecord.objects.filter(tool="open_ticket").order_by("seq").last()
    assert (checked.outcome, checked.backend_status) == ("ok", "checked")


@pytest.mark.production
def test_a_write_whose_backend_cannot_tell_goes_to_a_person_instead_of_again(writer):
    call = ("open_ticket", json.dumps(TICKET))
    faults.clear("ticketing")
    crash_between_call_and_settle(writer, ticket_counter(), *call)
    faults.inject("ticketing", "error_5xx", remaining=1)  # the ticketing system cannot answer whether it happened
    result = recovered(writer, *call)

    assert LabWrite.objects.filter(action="open_ticket").count() == 1
    assert (result["status"], result.get("reason"), result.get("retryable")) == ("error", "outcome_unknown", False), (
        result
    )
    assert IdempotencyRecord.objects.get().state == "failed"  # settled until a person confirms (approvals.services)


def last_envelope(process: Writer) -> dict:
    output, _ = process.process.communicate(timeout=90)
    return json.loads(output.strip().splitlines()[-1])


@pytest.mark.production
def test_a_ticket_whose_answer_came_too_late_is_looked_for_before_it_is_opened_again(writer):
    """The ticketing system answered after the worker stopped waiting (GATEHOUSE_BACKEND_TIMEOUT_S): the
    worker was told `ticketing_timeout`, and the ticket was opened all the same. Before, the timeout freed
    the key and the retry the agent asks for (approved again) opened a second ticket; now the retry asks
    the ticketing system first, finds the ticket and sends nothing."""
    call = ("open_ticket", json.dumps(TICKET))
    faults.clear("ticketing")
    with locks(ticket_counter().acquire()):  # the ticket waits at the lab, numbering it, past the worker's wait
        first = last_envelope(writer(*call, GATEHOUSE_BACKEND_TIMEOUT_S="1"))
    assert (first["status"], first.get("reason"), first.get("retryable")) == ("error", "ticketing_timeout", True), first
    wait_until(lambda: Ticket.objects.count() == 1, timeout=60, what="the lab to open the ticket it held")
    faults.inject("ticketing", "no_dedupe")  # a ticketing system that would open a second ticket

    again = last_envelope(writer(*call))

    assert Ticket.objects.count() == 1
    assert list(LabWrite.objects.filter(action="open_ticket").values_list("outcome", flat=True)) == ["performed"]
    assert again["status"] == "ok" and again["data"]["found_done"], again
    assert again["data"]["ticket_id"] == str(Ticket.objects.get().number)
    checked = AuditRecord.objects.filter(tool="open_ticket").order_by("seq").last()
    assert (checked.outcome, checked.backend_status) == ("ok", "checked")
