"""A write raced by others of its key reaches its backend once: 50 concurrent identical isolate calls
from separate worker processes; a live write whose process's pool is busy; a run whose claim was taken
over before it sent."""

import multiprocessing
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from core.db import own_connection, release_connection
from investigations.models import AuditRecord
from tests.support import STOP_S, WAIT_S, database_url_of, every_pooled_connection_but_this_threads, set_rate_limit
from tests.toolserver.race_worker import worker_process
from toolserver import idempotency, schemas
from toolserver.catalog import SERVERS
from toolserver.envelope import ok
from toolserver.gateway import CallContext, Gateway
from toolserver.lab.models import LabWrite
from toolserver.meta import META_CHECK_DONE, META_IDEMPOTENCY_KEY
from toolserver.models import IdempotencyRecord

pytestmark = pytest.mark.django_db(transaction=True)

PROCESSES, THREADS = 10, 5
ISOLATE = {"host": "WS-FIN-07", "reason": "Beaconing to a known C2 domain every 60 s."}
CONTEXT = CallContext(correlation_id="inv-race", trigger="alert-race", approval="action-request-1")


class Edr:
    """The EDR behind the supervisor, a stand-in: it holds the first isolation at the backend until let go
    (`hold`); asked whether a write already happened, it says not (yet), as a write still being applied is.
    `on_check` runs when it is asked."""

    def __init__(self, *, hold=False, on_check=lambda: None):
        self.sends: list[str] = []
        self.at_backend, self.let_go = threading.Event(), threading.Event()
        self.hold, self.on_check = hold, on_check

    def call(self, server, tool, arguments, meta, backend=None):
        release_connection()  # as the supervisor does while a backend answers
        if meta.get(META_CHECK_DONE):
            self.on_check()
            return ok({"check": "not_done"}, source="edr"), "ok"
        self.sends.append(meta[META_IDEMPOTENCY_KEY])
        self.at_backend.set()
        if self.hold and len(self.sends) == 1:
            assert self.let_go.wait(WAIT_S)
        return ok({"host": "WS-FIN-07", "isolated": True}, source="edr"), "ok"


@pytest.mark.production
def test_fifty_concurrent_isolations_reach_the_backend_once(lab):
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    set_rate_limit("edr-response", 1000)  # the race is about idempotency: room for every caller
    environment = {**lab.environment(), "DATABASE_URL": database_url_of(connection.settings_dict)}
    processes = [
        context.Process(target=worker_process, args=(environment, THREADS, start, results, WAIT_S))
        for _ in range(PROCESSES)
    ]
    try:
        for process in processes:
            process.start()
        # Each process answers within its own bounded waits (start-up, barriers, calls): 3 x WAIT_S at most.
        outcomes = [outcome for _ in processes for outcome in results.get(timeout=3 * WAIT_S)]
    finally:
        for process in processes:  # none is left for pytest to wait on at exit
            process.join(timeout=STOP_S)
            if process.is_alive():
                process.kill()
                process.join(timeout=STOP_S)

    assert len(outcomes) == PROCESSES * THREADS
    assert {outcome["status"] for outcome in outcomes} == {"ok"}, outcomes
    assert len({outcome["data"]["action_id"] for outcome in outcomes}) == 1
    assert sum(1 for outcome in outcomes if not outcome["data"].get("replayed")) == 1
    assert LabWrite.objects.filter(action="isolate_host").count() == 1
    assert LabWrite.objects.get(action="isolate_host").outcome == "performed"
    assert IdempotencyRecord.objects.get().state == "succeeded"
    assert AuditRecord.objects.filter(tool="isolate_host").exclude(outcome="dispatched").count() == PROCESSES * THREADS
    assert AuditRecord.objects.filter(tool="isolate_host", outcome="dispatched").count() == 1  # only the winner sent it


@pytest.mark.production  # the pool is PostgreSQL's
def test_a_live_writes_claim_is_kept_while_every_pooled_connection_is_busy(settings):
    """Its claim was renewed on a pooled connection: with the pool busy (hundreds of investigations in a
    worker process) for longer than a lease, the claim ran out under the write still at its backend,
    and another worker (the sweep's re-run) took it over, asked the backend (not done yet) and sent it
    again."""
    settings.TOOLSERVER_WRITE_LEASE_S = 2  # renewed every 2/3 s
    settings.TOOLSERVER_WRITE_WAIT_S = 6  # a repeat waits three leases before it is told in progress
    set_rate_limit("edr-response", 1000)  # room after the race above, whose calls count in this minute
    edr = Edr(hold=True)
    results = {}

    def write(name: str, *, elsewhere: bool = False) -> None:
        try:
            if elsewhere:  # another worker process: connections of its own, not this process's pool
                own_connection()
            results[name] = Gateway(supervisor=edr).call("isolate_host", dict(ISOLATE), CONTEXT)
        finally:
            connection.close()

    first = threading.Thread(target=write, args=("first",))
    first.start()
    taken = []
    try:
        assert edr.at_backend.wait(WAIT_S), results
        taken = every_pooled_connection_but_this_threads()
        second = threading.Thread(target=write, args=("second",), kwargs={"elsewhere": True})
        second.start()
        second.join(WAIT_S)
        assert not second.is_alive()
    finally:
        for pooled in taken:
            connection.pool.putconn(pooled)
        edr.let_go.set()
        first.join(WAIT_S)
    assert not first.is_alive()
    assert len(edr.sends) == 1, f"sent {len(edr.sends)} times; the second run got {results['second']}"
    assert (results["second"]["reason"], results["second"]["retryable"]) == ("in_progress", True)
    assert results["first"]["status"] == "ok"
    assert IdempotencyRecord.objects.get().state == "succeeded"


def test_a_run_whose_claim_was_taken_over_before_it_sent_does_not_send():
    """A run that took over an abandoned claim stalled (asking the backend, then waiting for a pooled
    connection) past its lease, and another run took the claim over in turn: it sent the write all the
    same, beside the run now holding the key. Its claim is checked, fenced, just before it sends."""
    set_rate_limit("edr-response", 1000)
    edr_response = SERVERS["edr-response"]
    isolate = edr_response.tool("isolate_host")
    write = idempotency.write_key(isolate, schemas.HostAction(**ISOLATE), CONTEXT.trigger)
    idempotency.claim(edr_response, isolate, write, CONTEXT.trigger)
    IdempotencyRecord.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # its holder died

    def taken_over_meanwhile() -> None:
        IdempotencyRecord.objects.update(claim_token="the-next-run", lease_until=timezone.now() + timedelta(hours=1))

    edr = Edr(on_check=taken_over_meanwhile)
    result = Gateway(supervisor=edr).call("isolate_host", dict(ISOLATE), CONTEXT)

    assert edr.sends == []
    assert (result["reason"], result["retryable"]) == ("in_progress", True)  # a retry gets the next run's result
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.claim_token) == ("running", "the-next-run")  # not released: not this run's
    assert not AuditRecord.objects.filter(outcome="dispatched").exists()
