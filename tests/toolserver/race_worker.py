"""A worker process for the write race test. Imports nothing of Django at module level: a
spawned child unpickles this function before it has set Django up."""

import os
import threading

ISOLATE = {"host": "SRV-APP-03", "reason": "Beaconing every 60 s to a C2 domain."}


def worker_process(environment: dict, threads: int, start, results, wait_s: float):
    """A worker as in production: its own Django, supervisor and edr-response process.

    Every wait is bounded by `wait_s`: a sibling that never arrives breaks the barrier, and this
    process reports what it has and ends, rather than waiting for ever."""
    os.environ.update(environment)
    import django

    django.setup()
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import get_supervisor

    outcomes = []
    try:
        get_supervisor().list_tools("edr-response")  # spawned before the race, not during it
        gateway = Gateway()
        ready = threading.Barrier(threads)

        def call():
            ready.wait(timeout=wait_s)
            outcomes.append(
                gateway.call("isolate_host", ISOLATE, CallContext("inv-race", "alert-race", approval="race-approval"))
            )

        start.wait(timeout=wait_s)
        workers = [threading.Thread(target=call, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=wait_s)
    finally:
        results.put(list(outcomes))
        get_supervisor().stop()
