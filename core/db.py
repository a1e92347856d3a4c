"""A worker thread's database connection, held only while it reads or writes."""

from django.db import connection


def release_connection() -> None:
    """Give this thread's connection back (to the process's pool, in production) before it waits on
    the network: a worker process with hundreds of investigations in flight, each waiting seconds on
    a model turn or a tool call, then needs a connection only for the moments it reads or writes, and
    its connections stay within its pool however many are in flight. Inside a transaction it keeps it."""
    if not connection.in_atomic_block:
        connection.close()
