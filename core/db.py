"""A worker thread's database connection, held only while it reads or writes."""

import logging
import threading
from collections.abc import Callable
from contextlib import contextmanager

from django.db import DEFAULT_DB_ALIAS, connection, connections

log = logging.getLogger(__name__)


def release_connection() -> None:
    """Give this thread's connection back (to the process's pool, in production) before it waits on
    the network: a worker process with hundreds of investigations in flight, each waiting seconds on
    a model turn or a tool call, then needs a connection only for the moments it reads or writes, and
    its connections stay within its pool however many are in flight. Inside a transaction it keeps it."""
    if not connection.in_atomic_block:
        connection.close()


def own_connection() -> None:
    """From now on this thread's connection is its own, opened outside the process's pool: a thread that
    must not wait behind the others (the lease keeper, whose lateness loses a live worker its
    investigations; a write's renewals, renewed_every) never waits for a pooled one. One more connection than the pool, at most, per thread
    that asks. On the embedded default (SQLite, no pool) every thread's connection is its own already."""
    pooled = connections[DEFAULT_DB_ALIAS]
    options = pooled.settings_dict["OPTIONS"]
    if not options.get("pool"):
        return
    unpooled = {**pooled.settings_dict, "OPTIONS": {name: value for name, value in options.items() if name != "pool"}}
    connections[DEFAULT_DB_ALIAS] = pooled.__class__(unpooled, alias=DEFAULT_DB_ALIAS)  # this thread's alone


@contextmanager
def renewed_every(interval_s: float, renew: Callable[[], bool], name: str):
    """While the block runs (a write waiting on its backend, minutes maybe), a thread of its own calls
    renew() every `interval_s`, until the block ends or renew() says there is nothing left to renew. Its
    connection is its own (own_connection), as the lease keeper's is: behind hundreds of threads waiting
    for a pooled one, a renewal could come after the lease ran out, and another worker take over a write
    still at its backend, and send it again. It is open only for each renewal, closed after it (so none
    is left open when the thread ends). A renewal that raises (the database away for a moment) is logged
    and tried again at the next interval, as the lease keeper does: ending the thread there would let the
    lease run out under a live write."""
    stop = threading.Event()

    def keep() -> None:
        own_connection()
        while not stop.wait(interval_s):
            try:
                go_on = renew()
            except Exception:
                log.warning("%s: could not renew; trying again in %.1f s", name, interval_s, exc_info=True)
                go_on = True
            finally:
                connection.close()
            if not go_on:
                return

    keeper = threading.Thread(target=keep, name=name, daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join(timeout=10)
