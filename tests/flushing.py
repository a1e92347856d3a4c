"""How a `transactional_db` test's flush empties the database and leaves it as a migrate does, cheaply.

Django's flush empties every table, then sends post_migrate, so that each app writes its rows again. Two
costs come with it, paid by every transactional test:

- On PostgreSQL the tables are emptied by one TRUNCATE of all of them, which makes each a new file synced
  to disk: 0.35 s a test on this machine, idle. DELETE of the few rows a test wrote takes milliseconds.
  `session_replication_role = replica` lets those DELETEs past the audit trail's append-only triggers and
  the foreign keys' checks, as TRUNCATE passes them. Setting it takes a superuser: the tests connect as
  `postgres` (the Makefile's DATABASE_URL). SET LOCAL ends with the flush's transaction.
- Two of post_migrate's receivers, Django's `create_contenttypes` and `create_permissions`, write the
  same rows each time (35-65 ms a test on this machine, idle; up to 0.24 s on a slow day): what they
  write follows from the models alone. So a run's first flush (`keep_baseline`, at the test database's
  setup) is Django's own, and keeps a copy of the content types and permissions it leaves, in plain
  tables beside Django's, which a flush leaves alone (as tests/seeded_estate.py keeps the lab's estate).
  Each later flush copies them back, with the ids they had, in its own transaction, and then sends
  post_migrate without those two receivers: every other receiver (the roles' permissions, the catalog,
  the policies, guardian's cache) runs as it would. A flush that resets the sequences
  (`django_db_reset_sequences`) is left to Django: rows with their old ids would meet the sequences' new
  ones.
"""

from contextlib import contextmanager

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.management import create_contenttypes
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.commands import flush
from django.db import connection
from django.db.backends.postgresql.base import DatabaseOperations as PostgresOperations
from django.db.backends.sqlite3.base import DatabaseOperations as SqliteOperations
from django.db.models.signals import post_migrate

from tests import table_copies

KEPT = (ContentType, Permission)  # what the two receivers a copy-back flush leaves out write
# How post_migrate keys the two (django.dispatch: a dispatch_uid, else the function's id).
LEFT_OUT = {"django.contrib.auth.management.create_permissions", id(create_contenttypes)}

KIND = "baseline"  # its copies' names: baseline_copy_<table>

_kept: set[str] = set()  # the test databases (by name) whose baseline is kept
_copying_back: set[str] = set()  # the aliases whose flush now under way copies the baseline back


def _flush_sql(empty):
    """`sql_flush` of a backend whose own way of emptying the tables is `empty`, that then copies the
    baseline back (once it is kept), in the same transaction."""

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        kept = self.connection.settings_dict["NAME"] in _kept
        if reset_sequences or not kept or not {model._meta.db_table for model in KEPT} <= set(tables):
            _copying_back.discard(self.connection.alias)
            return empty(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        _copying_back.add(self.connection.alias)
        copies = [table_copies.put_back(model, KIND) for model in KEPT]
        return [*empty(self, style, tables, allow_cascade=allow_cascade), *copies]

    return sql_flush


def _delete_on_postgresql(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    if reset_sequences or not tables:
        return _truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    deletes = [f"DELETE FROM {self.quote_name(table)}" for table in tables]  # noqa: S608 (Django's table names)
    return ["SET LOCAL session_replication_role = replica", *deletes]


def _post_migrate(verbosity, interactive, database, **kwargs):
    """post_migrate as Django's flush sends it, but after a copy-back without the receivers whose rows came
    back. The content types came back with the ids they had when kept: the cache that maps models to
    them (create_contenttypes empties it) is emptied here."""
    if database not in _copying_back:
        return _emit_post_migrate(verbosity, interactive, database, **kwargs)
    ContentType.objects.clear_cache()
    receivers = post_migrate.receivers  # restored as it was (the same list, in its order), whatever happens
    post_migrate.receivers = [receiver for receiver in receivers if receiver[0][0] not in LEFT_OUT]
    try:
        _emit_post_migrate(verbosity, interactive, database, **kwargs)
    finally:
        post_migrate.receivers = receivers


_truncate = PostgresOperations.sql_flush
_sqlite_flush = SqliteOperations.sql_flush
_emit_post_migrate = flush.emit_post_migrate_signal


@contextmanager
def installed():
    PostgresOperations.sql_flush = _flush_sql(_delete_on_postgresql)
    SqliteOperations.sql_flush = _flush_sql(_sqlite_flush)
    flush.emit_post_migrate_signal = _post_migrate
    try:
        yield
    finally:
        PostgresOperations.sql_flush = _truncate
        SqliteOperations.sql_flush = _sqlite_flush
        flush.emit_post_migrate_signal = _emit_post_migrate


def keep_baseline() -> None:
    """Flush the test database as Django does (post_migrate whole), then keep a copy of the content types
    and permissions it leaves."""
    _kept.discard(connection.settings_dict["NAME"])
    call_command("flush", verbosity=0, interactive=False, reset_sequences=False)
    with connection.cursor() as cursor:
        for model in KEPT:
            table_copies.keep(cursor, model, KIND)
    _kept.add(connection.settings_dict["NAME"])
