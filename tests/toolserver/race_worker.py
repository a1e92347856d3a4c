"""A worker process for the write race test. Imports nothing of Django at module level: a
spawned child unpickles this function before it has set Django up."""

import os
import threading

ISOLATE = {"host": "SRV-APP-03", "reason": "Beaconing every 60 s to a C2 domain."}


def worker_process(environment: dict, threads: int, start, results):
    """A worker as in production: its own Django, supervisor and edr-response process."""
    os.environ.update(environment)
    import django

    django.setup()
    from toolserver.gateway import CallContext, Gateway
    from toolserver.supervisor import get_supervisor

    get_supervisor().list_tools("edr-response")  # spawned before the race, not during it
    gateway = Gateway()
    ready = threading.Barrier(threads)
    outcomes = []

    def call():
        ready.wait()
        outcomes.append(gateway.call("isolate_host", ISOLATE, CallContext("inv-race", "alert-race", approval="race-approval")))

    start.wait()
    workers = [threading.Thread(target=call) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(outcomes)
    get_supervisor().stop()
