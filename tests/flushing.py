"""How a `transactional_db` test's flush empties the database and leaves it as a migrate does, cheaply.

Django's flush empties every table, then sends post_migrate, so that each app writes its rows again: the
content types, the permissions, the roles, the catalog's servers and tools, the write tools' policies.
Two costs come with it, paid by every transactional test:

- On PostgreSQL the tables are emptied by one TRUNCATE of all of them, which makes each a new file synced
  to disk: 0.35 s a test on this machine, idle. DELETE of the few rows a test wrote takes milliseconds.
  `session_replication_role = replica` lets those DELETEs past the audit trail's append-only triggers and
  the foreign keys' checks, as TRUNCATE passes them. Setting it takes a superuser: the tests connect as
  `postgres` (the Makefile's DATABASE_URL). SET LOCAL ends with the flush's transaction.
- The post_migrate receivers take another 0.35 s a test (Django's create_permissions, once an app, is most
  of it), to write the same rows each time. So a run's first flush (`keep_baseline`, at the test database's
  setup) sends post_migrate as Django does and keeps a copy of the rows it leaves, in plain tables beside
  Django's, which a flush leaves alone (as tests/seeded_estate.py keeps the lab's estate); each later flush
  copies them back, with the ids they had, in its own transaction, and sends no post_migrate.
  A flush that resets the sequences (`django_db_reset_sequences`) is left to Django: rows with their old
  ids would meet the sequences' new ones.
"""

from contextlib import contextmanager

from django.core.management import call_command
from django.core.management.commands import flush
from django.db import connection
from django.db.backends.postgresql.base import DatabaseOperations as PostgresOperations
from django.db.backends.sqlite3.base import DatabaseOperations as SqliteOperations

_baselines: dict[str, dict[str, list[str]]] = {}  # a test database's name -> its kept tables -> their columns
_copying_back: set[str] = set()  # the aliases whose flush now under way copies the baseline back


def _copy_of(ops, table: str) -> str:
    return ops.quote_name(f"baseline_copy_{table}")


def _flush_sql(empty):
    """`sql_flush` of a backend whose own way of emptying the tables is `empty`, that then copies the
    baseline back (once it is kept), in the same transaction."""

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        baseline = _baselines.get(self.connection.settings_dict["NAME"])
        if reset_sequences or not tables or baseline is None:
            _copying_back.discard(self.connection.alias)
            return empty(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        _copying_back.add(self.connection.alias)
        copies = []
        for table in tables:
            if table in baseline:  # the tables are Django's own (introspected), each name quoted
                columns = ", ".join(self.quote_name(column) for column in baseline[table])
                copies.append(
                    f"INSERT INTO {self.quote_name(table)} ({columns}) "  # noqa: S608
                    f"SELECT {columns} FROM {_copy_of(self, table)}"
                )
        return [*empty(self, style, tables, allow_cascade=allow_cascade), *copies]

    return sql_flush


def _delete_on_postgresql(self, style, tables, *, reset_sequences=False, allow_cascade=False):
    if reset_sequences or not tables:
        return _truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
    deletes = [f"DELETE FROM {self.quote_name(table)}" for table in tables]  # noqa: S608 (Django's table names)
    return ["SET LOCAL session_replication_role = replica", *deletes]


def _post_migrate_unless_copied_back(verbosity, interactive, database, **kwargs):
    if database in _copying_back:
        return
    _emit_post_migrate(verbosity, interactive, database, **kwargs)


_truncate = PostgresOperations.sql_flush
_sqlite_flush = SqliteOperations.sql_flush
_emit_post_migrate = flush.emit_post_migrate_signal


@contextmanager
def installed():
    PostgresOperations.sql_flush = _flush_sql(_delete_on_postgresql)
    SqliteOperations.sql_flush = _flush_sql(_sqlite_flush)
    flush.emit_post_migrate_signal = _post_migrate_unless_copied_back
    try:
        yield
    finally:
        PostgresOperations.sql_flush = _truncate
        SqliteOperations.sql_flush = _sqlite_flush
        flush.emit_post_migrate_signal = _emit_post_migrate


def keep_baseline() -> None:
    """Flush the test database as Django does (post_migrate included), then keep a copy of every table
    the flush left rows in."""
    _baselines.pop(connection.settings_dict["NAME"], None)
    call_command("flush", verbosity=0, interactive=False, reset_sequences=False)
    ops, baseline = connection.ops, {}
    with connection.cursor() as cursor:
        for table in connection.introspection.django_table_names(only_existing=True, include_views=False):
            cursor.execute(f"SELECT * FROM {ops.quote_name(table)} LIMIT 1")  # noqa: S608
            if cursor.fetchone() is None:
                continue
            columns = [column[0] for column in cursor.description]
            cursor.execute(f"DROP TABLE IF EXISTS {_copy_of(ops, table)}")
            cursor.execute(f"CREATE TABLE {_copy_of(ops, table)} AS SELECT * FROM {ops.quote_name(table)}")  # noqa: S608
            baseline[table] = columns
    _baselines[connection.settings_dict["NAME"]] = baseline
