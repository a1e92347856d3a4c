"""50 concurrent identical isolate calls from separate worker processes: one isolation."""

import multiprocessing

import pytest
from django.db import connection

from investigations.models import AuditRecord
from tests.support import STOP_S, WAIT_S, database_url_of, set_rate_limit
from tests.toolserver.race_worker import worker_process
from toolserver.lab.models import LabWrite
from toolserver.models import IdempotencyRecord

pytestmark = [pytest.mark.production, pytest.mark.django_db(transaction=True)]

PROCESSES, THREADS = 10, 5


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
