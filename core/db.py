"""A worker thread's database connection, held only while it reads or writes."""

from django.db import DEFAULT_DB_ALIAS, connection, connections


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
    investigations) never waits for a pooled one. One more connection than the pool, at most, per thread
    that asks. On the embedded default (SQLite, no pool) every thread's connection is its own already."""
    pooled = connections[DEFAULT_DB_ALIAS]
    options = pooled.settings_dict["OPTIONS"]
    if not options.get("pool"):
        return
    unpooled = {**pooled.settings_dict, "OPTIONS": {name: value for name, value in options.items() if name != "pool"}}
    connections[DEFAULT_DB_ALIAS] = pooled.__class__(unpooled, alias=DEFAULT_DB_ALIAS)  # this thread's alone
